"""Compaction of the raw layer's closed dates: a date's many small files rewritten into a few.

    python -m shopstream.spark.raw_compaction [--raw-dir data/raw] [--since 2026-01-01]

The live ingest service commits a micro-batch a minute, so each date it receives gets a file a
minute (≈ 1,440 a day, ≈ 500k a year to list and keep; measured, a day of 1.25M events: the RDD
job 10.2 s and the DataFrame job 7.3 s over its 1,440 files, 1.4 s and 2.9 s over one file; its
compaction 9 to 12 s, once). Once a date is closed — no event of it can
still arrive valid (`config.compaction_after_days`) — its sink's writer rewrites each of its
partitions into files of about TARGET_FILE_BYTES, checks that they hold exactly the old files'
rows, and commits them in the partition's seal in one atomic rename (`sink_log.record_compaction`).
A crash before that leaves only files no reader lists, removed by the next compaction of the
partition. The old files stay until no kept version of the transformed layer needs them
(`sink_log.delete_replaced`, run with every publication).

The writer compacts — the ingest (`stream_consumer`) at the end of each drain and once a day
while it runs live — under the sink's writer lock, like every change to the sink; this command
takes that lock too (and refuses while the live service holds it: that service compacts itself).

Each run looks at the closed dates since the last run's (its marker, COMPACTED_THROUGH_MARKER), and
at least the COMPACTION_SCAN_DAYS before the last closed date: an outage of any length leaves no
closed date behind, and a sink's first run looks at its whole history once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from shopstream.config import COMPACTION_SCAN_DAYS, compaction_after_days, paths
from shopstream.files import write_json_atomically
from shopstream.publication import parquet_rows
from shopstream.sink_log import (
    COMPACTED_PREFIX,
    SEALS_DIR,
    Periodic,
    committed_by_partition,
    known_files,
    partition_date,
    record_compaction,
    seal,
    sealed_partitions,
)
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("compaction")

MIN_FILES = 10  # a partition with fewer files is left as it is
TARGET_FILE_BYTES = 128 * 1024 * 1024
STAGING = "_compacting"  # under SEALS_DIR: readers of the sink's root skip folders starting with `_`


# In the sink's root (Parquet readers skip `_` files): the last closed date a run looked at.
COMPACTED_THROUGH_MARKER = "_compacted_through.json"
EVERY_DATE = "0000-01-01"  # a window's first date that takes in the whole history


def compacted_through(sink: Path) -> str | None:
    """The last closed date a finished compaction run looked at (None: no run yet)."""
    marker = sink / COMPACTED_THROUGH_MARKER
    return json.loads(marker.read_text())["through"] if marker.exists() else None


def closed_dates_window(
    today: dt.date, since: str | None = None, through: str | None = None
) -> tuple[str, str]:
    """The dates to look at, as [first, last] ISO dates: up to the last closed date, from `since`
    if given, else from the day after `through` (the last run's last date) or COMPACTION_SCAN_DAYS
    before the last closed date, whichever is earlier; every date when no run came before."""
    last = today - dt.timedelta(days=compaction_after_days())
    if since:
        return since, last.isoformat()
    if through is None:
        return EVERY_DATE, last.isoformat()
    scan_from = (last - dt.timedelta(days=COMPACTION_SCAN_DAYS)).isoformat()
    return min(_day_after(through), scan_from), last.isoformat()


def _day_after(date: str) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()


def record_compacted_through(sink: Path, first: str, last: str, through: str | None) -> None:
    """Marks `last` as looked at, unless the window left a gap after the previous run's last date
    `through` (a `--since` later than it): those dates still wait for a run."""
    if through is not None and first > _day_after(through):
        return
    if through is None or last > through:
        write_json_atomically(sink / COMPACTED_THROUGH_MARKER, {"through": last}, indent=None)


def partitions_to_compact(
    sink: Path, first: str, last: str, min_files: int | None = None
) -> dict[str, set[str]]:
    """The sealed partitions of dates first..last (ISO strings compare as dates) with at least
    `min_files` (default MIN_FILES, read at call time) committed files, and those files."""
    least = MIN_FILES if min_files is None else min_files
    window = {d for d in map(partition_date, sealed_partitions(sink)) if first <= d <= last}
    return {p: files for p, files in committed_by_partition(sink, window).items() if len(files) >= least}


def compact_partition(spark, sink: Path, partition: str, files: set[str]) -> dict:
    """Rewrites `files` of `partition` into a few files and commits them (see the module)."""
    remove_orphans(sink, partition, files)
    rows = parquet_rows(sorted(files))
    size = sum(os.path.getsize(f) for f in files)
    job = uuid.uuid4().hex[:12]
    staging = sink / SEALS_DIR / STAGING / job
    # The files only (no partition columns): they are written back into the same partition folder.
    frame = spark.read.option("mergeSchema", "true").parquet(*sorted(files))
    frame.coalesce(max(1, math.ceil(size / TARGET_FILE_BYTES))).write.parquet(str(staging))
    written = sorted(staging.glob("part-*.parquet"))
    if parquet_rows([str(f) for f in written]) != rows:
        shutil.rmtree(staging)
        raise RuntimeError(f"{partition}: the compacted files do not hold the {rows} rows of the old ones")
    folder = sink / partition
    new = []
    for f in written:
        target = folder / f"{COMPACTED_PREFIX}{job}-{f.name}"
        os.replace(f, target)  # same file system: a rename
        new.append(str(target))
    compaction = record_compaction(sink, partition, files, new, rows)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: %d files (%.1f MB) compacted into %d, %d rows", partition, len(files), size / 1e6,
             len(new), rows)  # fmt: skip
    return compaction


def remove_orphans(sink: Path, partition: str, committed: set[str]) -> None:
    """Files of an earlier compaction of `partition` that crashed before its commit: no reader
    lists them and no seal names them; this one replaces them."""
    known = committed | known_files(sink, partition)
    for f in (sink / partition).glob(f"{COMPACTED_PREFIX}*"):
        if str(f) not in known:
            f.unlink()
    shutil.rmtree(sink / SEALS_DIR / STAGING, ignore_errors=True)


def compact_closed_dates(spark, sink: Path, today: dt.date | None = None, since: str | None = None) -> int:
    """Compacts every closed partition of the window (`closed_dates_window`) with many files; the
    caller holds the sink's writer lock. Returns how many partitions it compacted."""
    sink = sink.absolute()  # the seals name files by absolute path, as the sink's log does
    seal(sink)  # every committed file in a seal first: compactions read partitions from them
    through = compacted_through(sink)
    first, last = closed_dates_window(today or dt.datetime.now(dt.UTC).date(), since, through)
    todo = partitions_to_compact(sink, first, last)
    for partition, files in sorted(todo.items()):
        compact_partition(spark, sink, partition, files)
    record_compacted_through(sink, first, last, through)  # only once every partition of the window is done
    return len(todo)


COMPACTION_INTERVAL_SECONDS = 24 * 3600


class Compacting(Periodic):
    """The writer's compaction of `sink`'s closed dates, at its first `when_due()` and then once
    every `interval` seconds. A failure is logged, never raised: the writer's work is the ingest,
    and the next time tries again."""

    def __init__(
        self, spark, sink: Path, interval: float = COMPACTION_INTERVAL_SECONDS, clock=time.monotonic
    ) -> None:
        super().__init__(interval, clock)
        self.spark, self.sink = spark, sink

    def run(self) -> int:
        try:
            return compact_closed_dates(self.spark, self.sink)
        except Exception as error:  # noqa: BLE001 - housekeeping must not stop the ingest
            log.warning("compaction of %s failed (the next one tries again): %s", self.sink, error)
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    from shopstream.spark.ingest_guard import SinkBusy, WriterLock

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", type=Path, default=None, help="default: data/raw")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="the ingest's (its writer lock)")
    parser.add_argument(
        "--since",
        default=None,
        metavar="YYYY-MM-DD",
        help=f"look at closed dates from this one (default: those since the last run, at least the last "
        f"{COMPACTION_SCAN_DAYS}; every date on a sink's first run)",
    )
    args = parser.parse_args(argv)
    sink = (args.raw_dir or paths().raw_sink).resolve()
    lock = WriterLock(args.checkpoint_dir or paths().ingest_checkpoints)
    if not lock.acquire("compaction"):
        holder = lock.holder()
        who = holder.describe() if holder else "unknown"
        raise SinkBusy(f"{sink} has a writer ({who}), which compacts it itself: run this when no ingest runs")
    with lock:
        spark = get_spark("shopstream-raw-compaction", comet=False)
        count = compact_closed_dates(spark, sink, since=args.since)
    log.info("compacted %d partitions of %s", count, sink)
    return 0


if __name__ == "__main__":
    exit_after(main)
