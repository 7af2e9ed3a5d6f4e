"""The raw table under the live ingest's 1-minute commits, simulated day after day with the daily
maintenance: what the table holds, and what a commit costs, as the days go by.

    .venv/bin/python -m bench.table_growth [--days 11] [--commits-per-day 1440]

A simulated minute commits its data files as Iceberg's streaming sink does (a fast append through
the table's Java API, the summary naming the query and the epoch): a file of today's valid rows,
a quarantined file every 30th minute, a late event's file of yesterday every 60th; each a real
Parquet file of the table's schema. After each day `table_maintenance.maintain` runs on the table
(compaction of the closed dates, manifests, expiry). The days pass in minutes, so maintenance gets
a simulated clock: a simulated moment maps to the real moment the simulation reached it. Orphan
files are not looked for: Iceberg refuses to within a real day, and no write here fails.
The catalog must be set up (`bench_lake`). A year is ≈ 525,600 commits, beyond any run here:
the figures per day show whether the counts settle (bounded) or grow with every day.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import bench_lake, temp_home
from shopstream import raw_table
from shopstream.config import QUARANTINED, VALID, VERDICT
from shopstream.lake import spark_table
from shopstream.raw_table import RAW_EVENTS
from shopstream.spark.raw_events import ensure_raw_table
from shopstream.spark.table_maintenance import maintain

ROWS_PER_FILE = 20
QUARANTINE_EVERY, LATE_EVERY = 30, 60  # minutes


@dataclass(frozen=True)
class Day:
    """The raw table after a simulated day and its maintenance."""

    day: int
    data_files: int  # in the current snapshot
    snapshots: int
    files_on_disk: int  # under the table's folder: data and metadata
    metadata_bytes: int  # the current metadata file
    commit_ms: float  # median commit of the day's last hour, before the maintenance


class SimulatedClock:
    """Simulated time -> the real moment the simulation reached it (linear within a day)."""

    def __init__(self, start: dt.datetime) -> None:
        self.start = start
        self.reached: list[dt.datetime] = [dt.datetime.now(dt.UTC)]  # real start of each simulated day

    def next_day(self) -> None:
        self.reached.append(dt.datetime.now(dt.UTC))

    def today(self) -> dt.date:
        return (self.start + dt.timedelta(days=len(self.reached) - 1)).date()

    def ago(self, age: dt.timedelta) -> dt.datetime:
        days = (len(self.reached) - 1) - age / dt.timedelta(days=1)
        if days <= 0:
            return self.reached[0] - dt.timedelta(seconds=1)
        whole = int(days)
        if whole >= len(self.reached) - 1:
            return self.reached[-1]
        return self.reached[whole] + (self.reached[whole + 1] - self.reached[whole]) * (days - whole)


def arrow_rows(schema: pa.Schema, verdict: str, date: dt.date) -> pa.Table:
    rows = [{VERDICT: verdict, "date": date, "order_id": f"ORD-{i}"} for i in range(ROWS_PER_FILE)]
    return pa.Table.from_pylist(rows, schema=schema)


class MinuteCommits:
    """Commits a simulated minute's files to the raw table through its Java API."""

    def __init__(self, spark) -> None:
        self.jvm = spark._jvm
        self.table = self.jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(
            spark._jsparkSession, spark_table(RAW_EVENTS)
        )
        self.schema = raw_table.load().schema().as_arrow()  # with the field ids Iceberg reads by
        self.query = str(uuid.uuid4())
        self.epoch = 0

    def data_file(self, verdict: str, date: dt.date):
        partition = f"{VERDICT}={verdict}/date={date}"
        location = f"{self.table.location()}/data/{partition}/{uuid.uuid4()}.parquet"
        path = Path(location.removeprefix("file:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow_rows(self.schema, verdict, date), path)
        builder = self.jvm.org.apache.iceberg.DataFiles.builder(self.table.spec())
        return (
            builder.withPath(location).withFormat("parquet").withPartitionPath(partition)
            .withRecordCount(ROWS_PER_FILE).withFileSizeInBytes(path.stat().st_size).build()
        )  # fmt: skip

    def commit(self, minute: int, today: dt.date) -> float:
        files = [self.data_file(VALID, today)]
        if minute % QUARANTINE_EVERY == 0:
            files.append(self.data_file(QUARANTINED, today))
        if minute % LATE_EVERY == 0:
            files.append(self.data_file(VALID, today - dt.timedelta(days=1)))
        started = time.monotonic()
        append = self.table.newFastAppend()
        for file in files:
            append = append.appendFile(file)
        append.set("spark.sql.streaming.queryId", self.query)
        append.set("spark.sql.streaming.epochId", str(self.epoch))
        append.commit()
        self.epoch += 1
        return time.monotonic() - started


def files_on_disk_and_metadata_bytes(table_dir: Path) -> tuple[int, int]:
    """Files under the table's folder (data and metadata), and the current metadata file's size."""
    on_disk = sum(1 for p in table_dir.rglob("*") if p.is_file())
    metadata = raw_table.load().metadata_location.removeprefix("file:").removeprefix("//")
    return on_disk, Path(metadata).stat().st_size


def simulate(days: int, commits_per_day: int, spark, progress=print) -> list[Day]:
    """`days` simulated days of `commits_per_day` commits each, maintained after each day."""
    ensure_raw_table(spark, spark_schema(spark))
    commits = MinuteCommits(spark)
    table_dir = Path(commits.table.location().removeprefix("file:"))
    clock = SimulatedClock(dt.datetime.combine(dt.date.today() - dt.timedelta(days=days), dt.time(), dt.UTC))
    result = []
    for day in range(days):
        seconds = [commits.commit(minute, clock.today()) for minute in range(commits_per_day)]
        clock.next_day()
        # What maintain counted after its procedures: the table's data files and snapshots.
        done = maintain(spark, RAW_EVENTS, today=clock.today(), ago=clock.ago, remove_orphans=False)
        commits.table.refresh()
        on_disk, metadata_bytes = files_on_disk_and_metadata_bytes(table_dir)
        commit_ms = statistics.median(seconds[-60:]) * 1000
        result.append(Day(day + 1, done.data_files, done.snapshots, on_disk, metadata_bytes, commit_ms))
        progress(f"      day {day + 1}/{days}: {result[-1]}")
    return result


def simulate_apart(days: int, commits_per_day: int, progress=print) -> list[Day]:
    """`simulate` in a new Python and JVM with a catalog of its own: its maintenance gets a whole
    session (in the bench's shared one, after the other stages, `expire_snapshots` ran short of
    execution memory). The day lines are relayed as they come."""
    command = [sys.executable, "-m", "bench.table_growth", "--days", str(days),
               "--commits-per-day", str(commits_per_day), "--json"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        lines = []
        for line in child.stdout:
            lines.append(line)
            if not line.startswith("["):
                progress(line.rstrip())
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"the simulated days failed (exit {child.returncode}); its errors are above")
    return [Day(**day) for day in json.loads(lines[-1])]


def spark_schema(spark):
    """The ingest rows' schema, as the raw table takes them (from an empty Kafka frame)."""
    from shopstream.spark.orders import parse_orders, sink_rows

    kafka = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, " \
        "timestampType int"  # fmt: skip
    return sink_rows(parse_orders(spark.createDataFrame([], kafka))).schema


def main() -> None:
    from bench.batch import bench_session

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--days", type=int, default=11)  # the compaction's 9 days and 2 more
    parser.add_argument("--commits-per-day", type=int, default=1440)
    parser.add_argument("--json", action="store_true", help="end with the days as one line of JSON")
    args = parser.parse_args()
    with temp_home() as home, bench_lake(home):
        spark = bench_session(home, comet=False, lake=True)
        started = time.monotonic()
        days = simulate(args.days, args.commits_per_day, spark, lambda line: print(line, flush=True))
        print(f"{args.days * args.commits_per_day:,} commits in {time.monotonic() - started:.0f} s")
        spark.stop()
    if args.json:
        print(json.dumps([dataclasses.asdict(day) for day in days]))


if __name__ == "__main__":
    main()
