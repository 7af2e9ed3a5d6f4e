"""`make bench`: every stage next to its reference, in one run, as one table.

    .venv/bin/python -m bench.run            # full sizes (~30 min), writes docs/benchmarks.md
    .venv/bin/python -m bench.run --smoke    # small sizes (~4 min), writes .state/bench-smoke.md

Stages: producer (vs Kafka's ProducerPerformance), generation alone, producer memory, streaming
ingest (vs Kafka's ConsumerPerformance), both batch jobs (vs DuckDB on the same files), the
README's main command end to end, latency at the 1-minute and 5-second triggers, the live
dashboard's three (event → store latency, live aggregation throughput, dashboard queries), and the
raw table under simulated days of the live service's 1-minute commits. The smoke
run executes the same code on small sizes so that CI proves the harness works; its figures mean
nothing. No stage asserts a time: targets are reported as met or not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import batch, e2e, latency, live, producer, streaming, table_growth
from bench.common import bench_broker, bench_lake, exit_on_sigterm, temp_home
from shopstream.config import REPO_ROOT, paths
from shopstream.devstack.kafka_broker import LocalBroker

DOC = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"


@dataclass(frozen=True)
class Sizes:
    produce: int
    stream: int
    batch: tuple[int, ...]
    e2e: int
    latency_rate: int
    latency_seconds: int
    slow_trigger: str
    fast_trigger: str
    live_count: int  # events the live aggregation drains alongside ingest
    live_days: int  # days of per-minute aggregates behind the dashboard's queries
    warm_up: bool = True  # the batch jobs and DuckDB timed warm (batch.steady_state), else one cold run
    e2e_live_feed: int = 2000  # `make run`'s live feed of today's events at 200/s
    growth_days: int = 11  # simulated days of the raw table's commits: the compaction's 9 days and 2 more
    growth_commits: int = 1440  # commits per simulated day: one a minute


FULL = Sizes(
    2_000_000, 1_000_000, (1_000_000, 10_000_000), 500, 1000, 300, "1 minute", "5 seconds", 1_000_000, 30
)
SMOKE = Sizes(
    20_000, 20_000, (20_000,), 500, 200, 5, "2 seconds", "1 seconds", 20_000, 2,
    warm_up=False, e2e_live_feed=200, growth_days=2, growth_commits=20,
)  # fmt: skip


@dataclass
class Row:
    stage: str
    figure: str
    reference: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: bool | None = None

    def cells(self) -> list[str]:
        met = {True: "yes", False: "**no**", None: "—"}[self.met]
        return [self.stage, self.figure, self.reference, self.ratio, self.target, met]


def rate(value: float, unit: str = "events/s") -> str:
    return f"{value:,.0f} {unit}"


def producer_rows(sizes: Sizes, broker: LocalBroker) -> list[Row]:
    r = producer.measure(sizes.produce, broker)
    ratio = r["produce_per_s"] / r["reference_per_s"]
    return [
        Row(f"Producer: order-sim → Kafka, {r['count']:,} events of {r['record_size']} B",
            rate(r["produce_per_s"]), f"ProducerPerformance {rate(r['reference_per_s'], 'records/s')}",
            f"{ratio:.2f}×", "≥ 400k/s and ≥ 1.5×", r["produce_per_s"] >= 400_000 and ratio >= 1.5),
        Row(f"Generation alone (`--dry-run`), best of {producer.GENERATION_RUNS} runs",
            rate(r["generate_per_s"]), target="≥ 3M/s", met=r["generate_per_s"] >= 3_000_000),
        Row("order-sim peak RSS (producing)", f"{r['max_rss_mb']:.0f} MB", target="≤ 100 MB",
            met=r["max_rss_mb"] <= 100),
    ]  # fmt: skip


def streaming_rows(sizes: Sizes, spark, broker: LocalBroker) -> list[Row]:
    r = streaming.measure(sizes.stream, spark, broker)
    return [
        Row(f"Streaming ingest, {r['count']:,} events, availableNow, warm Spark session",
            rate(r["per_s"]), f"ConsumerPerformance {rate(r['reference_per_s'], 'msgs/s')}",
            f"{r['per_s'] / r['reference_per_s']:.2f}×", "≥ 100k/s", r["per_s"] >= 100_000),
        Row(f"Streaming ingest into the raw table (Iceberg) vs into a Parquet file sink, {r['count']:,} "
            f"events, best of {streaming.ROUNDS} each, taking turns",
            f"{r['seconds']:.1f} s", f"Parquet file sink {r['parquet_seconds']:.1f} s",
            f"{r['seconds'] / r['parquet_seconds']:.2f}×", "≤ 1.10× (at most 10% slower)",
            r["seconds"] <= 1.10 * r["parquet_seconds"]),
    ]  # fmt: skip


def growth_rows(sizes: Sizes) -> list[Row]:
    days = table_growth.simulate_apart(sizes.growth_days, sizes.growth_commits)
    first, before, last = days[0], days[-2] if len(days) > 1 else days[0], days[-1]
    settled = last.snapshots <= 1.05 * before.snapshots and last.data_files - before.data_files <= 4
    return [
        Row(f"Raw table under {sizes.growth_days} simulated days of {sizes.growth_commits:,} commits a day, "
            "maintained daily (day-by-day figures: `python -m bench.table_growth`)",
            f"after the last day: {last.data_files:,} data files, {last.snapshots:,} snapshots, "
            f"{last.files_on_disk:,} files on disk, metadata file {last.metadata_bytes / 1e3:,.0f} KB; "
            f"commit {last.commit_ms:.0f} ms",
            f"the day before: {before.data_files:,} data files, {before.snapshots:,} snapshots; "
            f"day 1's commit {first.commit_ms:.0f} ms", "—",
            "settled: the last day adds ≤ 4 data files and ≤ 5% snapshots", settled),
    ]  # fmt: skip


def warmth(warm_up_runs: int) -> str:
    """How `batch.steady_state` timed a figure."""
    if not warm_up_runs:
        return "one cold run"
    return f"median of {batch.TIMED_RUNS} after {warm_up_runs} warm-up runs"


def batch_rows(sizes: Sizes, spark, broker: LocalBroker) -> list[Row]:
    rows = []
    for count in sizes.batch:
        r = batch.measure(count, spark, broker, sizes.warm_up)
        judged = count == max(sizes.batch)  # the targets are set for the largest size
        if judged:  # the streaming job built this raw layer: several batches, one JVM warm-up
            stage = f"Streaming ingest, {count:,} events, {batch.STREAM_BATCH:,} per micro-batch"
            stage += " (building the batch stage's raw layer)"
            rows.append(Row(stage, rate(count / r["stream_seconds"])))
            first, last = r["batch_seconds"][0], r["batch_seconds"][-1]
            rows.append(Row(f"… its last full micro-batch vs its first (the de-dup's state grows; "
                            f"{len(r['batch_seconds'])} full batches)",
                            f"last {last:.1f} s", f"first {first:.1f} s", f"{last / first:.2f}×",
                            "≤ 1.25×", last <= 1.25 * first))  # fmt: skip
        duckdb_seconds = r["duckdb_seconds"]
        for engine, label in (("spark", "Spark alone (SHOPSTREAM_COMET=0)"), ("comet", "Spark + Comet")):
            seconds = r["engines"][engine]
            rdd_rate = r["rows"] / seconds["rdd_seconds"]
            ratio = seconds["df_seconds"] / duckdb_seconds
            judge = judged and engine == "comet"  # the targets hold for the default engine
            how = warmth(seconds["warm_up_runs"])
            rows += [
                Row(f"Batch RDD job, {r['rows']:,} raw rows, {label}",
                    f"{rdd_rate:,.0f} rows/s ({seconds['rdd_seconds']:.1f} s, {how})",
                    target="≥ 1M rows/s" if judge else "—", met=rdd_rate >= 1_000_000 if judge else None),
                Row(f"Batch DataFrame job, {r['rows']:,} raw rows, {label}",
                    f"{seconds['df_seconds']:.1f} s ({how})",
                    f"DuckDB {duckdb_seconds:.2f} s ({warmth(r['duckdb_warm_up_runs'])})",
                    f"{ratio:.1f}×",
                    "≤ 3× DuckDB" if judge else "—", ratio <= 3 if judge else None),
            ]  # fmt: skip
    return rows


def e2e_rows(sizes: Sizes) -> list[Row]:
    r = e2e.measure(sizes.e2e, sizes.e2e_live_feed)
    tasks = ", ".join(f"{t} {s:.0f}" for t, s in r["tasks"].items() if s >= 0.5)
    return [
        Row(f"End to end: `make run` after setup, {r['count']} events (seconds per task: {tasks})",
            f"{r['seconds']:.0f} s", target="≤ 240 s", met=r["seconds"] <= 240),
    ]  # fmt: skip


def latency_rows(sizes: Sizes, spark, broker: LocalBroker) -> list[Row]:
    rows = []
    for trigger, target in ((sizes.slow_trigger, 75.0), (sizes.fast_trigger, None)):
        r = latency.measure(sizes.latency_rate, sizes.latency_seconds, trigger, spark, broker)
        rows.append(
            Row(f"Latency commit − Kafka timestamp, {r['rate']}/s for {r['seconds']} s, trigger {trigger}",
                f"p50 {r['p50']:.1f} s, p99 {r['p99']:.1f} s",
                target=f"p99 ≤ {target:.0f} s" if target else "reported",
                met=r["p99"] <= target if target else None)
        )  # fmt: skip
    return rows


def live_rows(sizes: Sizes, spark, broker: LocalBroker) -> list[Row]:
    from shopstream.dashboard.queries import refresh_seconds

    queries = live.query_latency(sizes.live_days)
    drained = live.throughput(sizes.live_count, spark, broker)
    seen = live.latency(sizes.latency_rate, sizes.latency_seconds, spark, broker)
    # The page shows what the store holds at its next refresh: up to one refresh interval later.
    on_page = seen["p99"] + refresh_seconds()
    per_query = ", ".join(
        f"{name} {ms:.0f}" for name, ms in queries["p95_ms"].items() if name != "whole refresh"
    )
    return [
        Row(f"Live: event produced → counted in the store, {seen['rate']}/s for {seen['seconds']} s, "
            f"trigger {seen['trigger']} (on the page: + the {refresh_seconds():g} s refresh)",
            f"p50 {seen['p50']:.1f} s, p99 {seen['p99']:.1f} s (page ≤ {on_page:.1f} s)",
            target="p99 ≤ 10 s on the page", met=on_page <= 10),
        Row(f"Live aggregation, {drained['count']:,} events drained"
            f"{' alongside the ingest of the same topic' if drained['alongside_ingest'] else ''}",
            rate(drained["per_s"]), target="≥ 20k/s", met=drained["per_s"] >= 20_000),
        Row(f"Dashboard refresh, {queries['days']} days of per-minute aggregates ({queries['rows']:,} rows; "
            f"p95 ms per query: {per_query})", f"p95 {queries['p95_ms']['whole refresh']:.0f} ms",
            target="p95 ≤ 200 ms", met=queries["p95_ms"]["whole refresh"] <= 200),
    ]  # fmt: skip


def first_line(error: Exception) -> str:
    """The error's first line, short enough for a table cell (no `|`)."""
    return (str(error).strip().splitlines() or [""])[0][:200].replace("|", "/")


def log_failure(name: str, error: Exception) -> None:
    import traceback

    print(f"      stage {name} failed:", flush=True)
    traceback.print_exception(error)


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown CPU",
    )  # fmt: skip
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    system = f"{platform.system()} {platform.release()}"
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024**2:.0f} GiB, {system}, "
        f"Python {platform.python_version()}, {java}; broker on the same machine"
    )


def table(rows: list[Row], smoke: bool, seconds: float) -> str:
    header = ["stage", "shopstream", "reference", "ratio", "target", "met?"]
    lines = [
        f"{BEGIN}",
        f"### `make bench{' SMOKE=1' if smoke else ''}`, {dt.date.today().isoformat()}"
        f" ({seconds / 60:.1f} min)",
        "",
        f"Machine: {machine()}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row.cells()) + " |" for row in rows),
        END,
    ]
    return "\n".join(lines) + "\n"


def write(text: str, target: Path) -> None:
    """Replaces the harness's block in `target` (or appends it), leaving the prose around it."""
    old = target.read_text() if target.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1 :]
    else:
        new = old + ("\n" if old else "") + text
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small sizes: proves the harness, not the speed")
    parser.add_argument("--output", type=Path, default=None, help="markdown file to write the table into")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    output = args.output or (paths().state / "bench-smoke.md" if args.smoke else DOC)

    exit_on_sigterm()  # a stopped bench still stops its broker and database
    started = time.monotonic()
    rows: list[Row] = []
    failed: list[str] = []
    # One broker for the stages that need one (the end-to-end stage runs `make run`'s own):
    # starting a broker per stage is not what any stage measures.
    # One catalog too (a throwaway PostgreSQL): each stage's tables in a namespace of its own.
    with temp_home() as home, bench_broker(home) as broker, bench_lake(home):
        session_started = time.monotonic()
        spark = batch.bench_session(home, comet=False, lake=True)  # the streaming stages' session
        rows.append(Row("Spark session start (JVM), reported apart from the stages",
                        f"{time.monotonic() - session_started:.1f} s"))  # fmt: skip
        stages: list[tuple[str, Callable[[], list[Row]]]] = [
            ("producer", lambda: producer_rows(sizes, broker)),
            ("streaming ingest", lambda: streaming_rows(sizes, spark, broker)),
            ("batch jobs", lambda: batch_rows(sizes, spark, broker)),
            ("end to end", lambda: e2e_rows(sizes)),
            ("latency", lambda: latency_rows(sizes, spark, broker)),
            ("live dashboard", lambda: live_rows(sizes, spark, broker)),
            ("raw table over time", lambda: growth_rows(sizes)),
        ]
        for number, (name, stage) in enumerate(stages, 1):
            stage_started = time.monotonic()
            print(f"[{number}/{len(stages)}] {name} ...", flush=True)
            try:
                new_rows = stage()
            # Any failure of a stage: the stages before keep their figures, the table is still written.
            except Exception as error:  # noqa: BLE001
                log_failure(name, error)
                failed.append(name)
                new_rows = [Row(f"Stage `{name}` failed", f"{type(error).__name__}: {first_line(error)}")]
            rows += new_rows
            for row in new_rows:
                print(f"      {row.stage}: {row.figure} (target {row.target}, met: {row.cells()[-1]})")
            print(f"      {time.monotonic() - stage_started:.0f} s", flush=True)
        spark.stop()
    text = table(rows, args.smoke, time.monotonic() - started)
    print("\n" + text)
    write(text, output)
    print(f"written to {output}" + (f"; failed stages: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
