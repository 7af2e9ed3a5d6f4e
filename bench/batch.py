"""Batch jobs on Spark alone and on Spark + Comet, next to DuckDB computing the same outputs
from the same raw Parquet files (the raw table's data files).

    .venv/bin/python -m bench.batch [--count 1000000]

Builds the raw layer through the real path (order-sim -> own broker on free ports -> streaming
job, into the stage's raw table), then times the RDD job and the DataFrame job in a new Spark
process per engine (Comet's settings are fixed when the JVM starts; 1 GB driver), and DuckDB
running the reference SQL of tests/duckdb_oracle.py over the table's valid data files (listed
from its metadata by PyIceberg). The catalog must be set up (`bench_lake`). Both engines are
timed warm, by one rule (`steady_state`): runs repeat until two in a row agree within 5% on every
job, then the median of the next three counts. A fresh JVM's second run of a 5 s job still took
20% longer than its fourth (JIT), so a fixed single warm-up compared Spark half-warm with a warm
DuckDB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from bench.common import bench_lake, filled_topic, fresh_topic, stream_settings, temp_home
from shopstream import raw_table
from shopstream.config import VALID, VERDICT
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.spark import batch_df_etl, batch_rdd_etl
from shopstream.spark.batch import read_valid_rows, run_inputs
from shopstream.spark.session import get_spark
from shopstream.spark.stream_consumer import run
from tests import duckdb_oracle
from tests.dates import days_ago

STREAM_BATCH = 2_000_000  # maxOffsetsPerTrigger while building the raw layer


def build_raw(home: Path, count: int, spark, shared: LocalBroker | None = None) -> tuple[float, list[float]]:
    """The raw table of `count` events through the real path; the streaming job's seconds (2M
    events per micro-batch: the ingest rate once the first batch has warmed the JVM up) and the
    seconds of each full batch (its `triggerExecution`; not the remainder's), in order."""
    topic = fresh_topic()
    batches: list[float] = []

    def record(progress: dict) -> None:
        if (progress.get("numInputRows") or 0) >= 0.9 * min(count, STREAM_BATCH):  # Kafka splits unevenly
            batches.append(progress["durationMs"]["triggerExecution"] / 1000)

    with filled_topic(home, count, topic, "--start", days_ago(4), "--span", "72h", shared=shared) as broker:
        settings = stream_settings(home, broker, topic, max_offsets_per_trigger=STREAM_BATCH)
        return timed(lambda: run(settings, spark, on_progress=record)), batches


def valid_data_files() -> list[str]:
    """The raw table's data files of valid rows now, from its metadata (no data read)."""
    from pyiceberg.expressions import EqualTo

    scan = raw_table.load().scan(row_filter=EqualTo(VERDICT, VALID))
    return [task.file.file_path.removeprefix("file://") for task in scan.plan_files()]


def duckdb_reference(warm_up: bool = True) -> dict:
    """`duckdb_once` timed by `steady_state` (without `warm_up`, one run)."""
    files = valid_data_files()
    deduplicated = raw_table.DEDUPLICATED in raw_table.writer_properties()
    return steady_state(lambda: {"seconds": duckdb_once(files, deduplicated)}, warm_up)


def duckdb_once(files: list[str], deduplicated: bool) -> float:
    """Seconds for DuckDB to compute every output of both jobs from the raw files, each event
    once as the jobs count them: with a de-duplication pass only where they make one (a raw table
    whose ingest did not drop re-deliveries)."""
    started = time.monotonic()
    con = duckdb.connect()
    once = "" if deduplicated else "DISTINCT ON (order_id, order_status, timestamp) "
    con.execute(
        f"CREATE VIEW events AS SELECT {once}order_id, customer_id, "
        "product_id, product_name, category, quantity, unit_price, order_status, region, timestamp AS ts "
        f"FROM read_parquet({files!r}, hive_partitioning=false)"
    )
    con.execute("CREATE TABLE regions AS SELECT * FROM read_csv_auto('data/regions.csv')")
    con.execute(duckdb_oracle.BASE)
    for query in duckdb_oracle.QUERIES.values():
        con.execute(query).fetchall()
    return time.monotonic() - started


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def bench_session(home: Path, comet: bool = True, lake: bool = False):
    """One warm Spark session with 1 GB of driver memory and a throwaway warehouse; Comet as the
    batch jobs run it (`comet`, unless SHOPSTREAM_COMET=0) or, for the streaming stages, off;
    with the Iceberg catalog (`lake`) for the DataFrame job's tables."""
    return get_spark(
        "shopstream-bench",
        {
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
            "spark.sql.warehouse.dir": str(home / "wh"),
        },
        comet=comet,
        lake=lake,
    )


ENGINES = {"spark": "0", "comet": "1"}  # engine -> SHOPSTREAM_COMET

TIMED_RUNS = 3
WARM_TOLERANCE = 0.05  # two runs in a row this close on every figure: warm
MAX_WARM_UP_RUNS = 8


def steady_state(run_once: Callable[[], dict[str, float]], warm_up: bool = True) -> dict:
    """Each figure of `run_once` once warm: runs repeat until two in a row agree within
    WARM_TOLERANCE on every figure (at most MAX_WARM_UP_RUNS), then the median of the next
    TIMED_RUNS counts; `warm_up_runs` says how many ran before. Without `warm_up`, one cold run
    (the smoke run's)."""
    previous = run_once()
    if not warm_up:
        return {**previous, "warm_up_runs": 0}
    warm_up_runs = 1
    while warm_up_runs < MAX_WARM_UP_RUNS:
        current = run_once()
        warm_up_runs += 1
        if all(abs(current[k] - previous[k]) <= WARM_TOLERANCE * previous[k] for k in current):
            break
        previous = current
    runs = [run_once() for _ in range(TIMED_RUNS)]
    return {**{k: statistics.median(run[k] for run in runs) for k in runs[0]}, "warm_up_runs": warm_up_runs}


def time_jobs(home: Path, warm_up: bool = True) -> dict:
    """Both jobs over every date of the raw table in this process's new session, timed by
    `steady_state`."""
    spark = bench_session(home, lake=True)
    versions = itertools.count()

    def run_both() -> dict[str, float]:
        inputs = run_inputs(home / "out", None, f"run-{next(versions)}")
        return {"rdd_seconds": timed(lambda: batch_rdd_etl.run(inputs, spark)),
                "df_seconds": timed(lambda: batch_df_etl.run(inputs, spark))}  # fmt: skip

    return steady_state(run_both, warm_up)


def jobs_on(engine: str, home: Path, warm_up: bool = True) -> dict[str, float]:
    """`time_jobs` in a new Python and JVM with Comet on or off."""
    env = {**os.environ, "SHOPSTREAM_COMET": ENGINES[engine], "SHOPSTREAM_STATE_DIR": str(home / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.batch", "--time-jobs", "--home", str(home),
         *([] if warm_up else ["--no-warm-up"])],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"the batch jobs on {engine} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def measure(count: int, spark=None, broker: LocalBroker | None = None, warm_up: bool = True) -> dict:
    with temp_home() as home:
        spark = spark or bench_session(home, comet=False, lake=True)
        stream_seconds, batch_seconds = build_raw(home, count, spark, broker)
        inputs = run_inputs(home / "out", None, "bench")  # every date of the raw table
        rows = read_valid_rows(spark, inputs, ["date"]).count()
        engines = {engine: jobs_on(engine, home / engine, warm_up) for engine in ENGINES}
        reference = duckdb_reference(warm_up)
    return {
        "rows": rows,
        "engines": engines,
        "duckdb_seconds": reference["seconds"],
        "duckdb_warm_up_runs": reference["warm_up_runs"],
        "stream_seconds": stream_seconds,
        "batch_seconds": batch_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--time-jobs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-warm-up", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_jobs:
        print(json.dumps(time_jobs(args.home, warm_up=not args.no_warm_up)))
        return
    with temp_home() as home, bench_lake(home):
        r = measure(args.count)
    print(f"raw rows              : {r['rows']:,}")
    for engine, seconds in r["engines"].items():
        rdd, df = seconds["rdd_seconds"], seconds["df_seconds"]
        print(f"RDD job, {engine:<6}       : {rdd:6.1f} s  ({r['rows'] / rdd:,.0f} rows/s)")
        print(
            f"DataFrame job, {engine:<6} : {df:6.1f} s  ({df / r['duckdb_seconds']:.1f}x DuckDB)"
            f"  after {seconds['warm_up_runs']} warm-up runs"
        )
    print(f"DuckDB, same outputs  : {r['duckdb_seconds']:6.1f} s")


if __name__ == "__main__":
    main()
