"""Iceberg's own maintenance of shopstream's tables: the raw events, the daily outputs, the
publications record, the order status and the rejected updates.

    spark-submit --properties-file config/spark/spark-defaults.conf \\
        shopstream/spark/table_maintenance.py [--retain-days 7]

For each table, Iceberg's Spark procedures, in this order:
  rewrite_data_files   small files of a date into one (the live ingest's file a minute, a date
                       republished many times, the publications' one-row appends), and every
                       file with deletes rewritten without its deleted rows (the order status's
                       merge-on-read upserts); of the raw events only the dates closed to late
                       events (`config.compaction_after_days`: a compaction changes a date's
                       fingerprint, so an open date would be transformed again for nothing)
  rewrite_position_delete_files   the delete files left, dropping those whose data files are gone
  rewrite_manifests    the metadata's manifests, one per date again
  expire_snapshots     snapshots older than the retention (the raw table's after a day: its
                       snapshots, one a minute, serve only a run's pin), and the files only they
                       referenced; a branch's snapshots stay while the branch does
                       (`publication.vacuum` drops the branches of versions past the retention)
  remove_orphan_files  files no snapshot references (a job killed mid-write), older than the
                       retention and never younger than 3 days, so that a write still in flight is
                       never touched; found by listing the table's location through its
                       own file IO (a warehouse in S3 has no Hadoop file system here)
Readers are never disturbed: each procedure is an Iceberg commit, and every snapshot a kept
publication recorded is younger than the retention or still current. The DAG
`shopstream_maintenance` runs it daily beside `ecommerce_pipeline`.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from shopstream.config import compaction_after_days
from shopstream.daily_tables import OUTPUTS
from shopstream.lake import CATALOG, spark_table
from shopstream.publication import DEFAULT_RETENTION, PUBLICATIONS
from shopstream.raw_table import RAW_EVENTS, SNAPSHOT_RETENTION
from shopstream.spark.session import exit_after, get_spark, job_logger
from shopstream.spark.status_table import QUARANTINE_TABLE, STATUS_TABLE

log = job_logger("table_maintenance")

TABLES = (RAW_EVENTS, *OUTPUTS, PUBLICATIONS, STATUS_TABLE, QUARANTINE_TABLE)
ORPHAN_MIN_AGE = dt.timedelta(days=3)  # files of a write in flight are younger than this


@dataclass(frozen=True)
class Maintained:
    """What the procedures did to one table, and what it holds after."""

    table: str
    files_rewritten: int
    snapshots_expired_files_deleted: int
    orphans_removed: int
    snapshots: int
    data_files: int


def _call(spark: SparkSession, procedure: str, **arguments: str) -> list:
    named = ", ".join(f"{name} => {value}" for name, value in arguments.items())
    return spark.sql(f"CALL {CATALOG}.system.{procedure}({named})").collect()


def real_ago(age: dt.timedelta) -> dt.datetime:
    """The moment `age` before now (taken at each call, so that a retention of 0 covers the commits
    of the procedures before it)."""
    return dt.datetime.now(dt.UTC) - age


def _timestamp(moment: dt.datetime) -> str:
    """`moment` as a Spark SQL timestamp, to the microsecond."""
    return f"TIMESTAMP '{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S.%f}'"


def compactable(name: str, today: dt.date | None = None) -> dict[str, str]:
    """`rewrite_data_files`' `where` for a table: the raw events' closed dates only."""
    if name != RAW_EVENTS:
        return {}
    closed_before = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=compaction_after_days())
    return {"where": f"\"date < DATE '{closed_before}'\""}


def maintain(
    spark: SparkSession,
    name: str,
    retain: dt.timedelta = DEFAULT_RETENTION,
    today: dt.date | None = None,
    ago: Callable[[dt.timedelta], dt.datetime] = real_ago,
    remove_orphans: bool = True,
) -> Maintained:
    """Runs the procedures on one table (see the module's docstring); the raw table keeps its
    snapshots for `raw_table.SNAPSHOT_RETENTION` at most. `today` and `ago` are the clock (the
    benchmark's simulated days set them, without `remove_orphans`: Iceberg refuses to look for
    orphans younger than a real day)."""
    table = f"'{spark_table(name)}'"  # catalog-qualified, or Iceberg takes the namespace for a catalog
    options = "map('min-input-files', '2', 'delete-file-threshold', '1')"
    where = compactable(name, today)
    [rewritten] = _call(spark, "rewrite_data_files", table=table, options=options, **where)
    _call(spark, "rewrite_position_delete_files", table=table, options="map('rewrite-all', 'true')")
    _call(spark, "rewrite_manifests", table=table)
    snapshots_kept = min(retain, SNAPSHOT_RETENTION) if name == RAW_EVENTS else retain
    [expired] = _call(spark, "expire_snapshots", table=table, older_than=_timestamp(ago(snapshots_kept)),
                      retain_last="1")  # fmt: skip
    orphans = []
    if remove_orphans:
        orphans_before = _timestamp(ago(max(retain, ORPHAN_MIN_AGE)))
        orphans = _call(spark, "remove_orphan_files", table=table, older_than=orphans_before,
                        prefix_listing="true")  # fmt: skip
    snapshots = spark.sql(f"SELECT count(*) FROM {spark_table(name)}.snapshots").first()[0]
    files = spark.sql(f"SELECT count(*) FROM {spark_table(name)}.data_files").first()[0]
    return Maintained(name, rewritten.rewritten_data_files_count, expired.deleted_data_files_count,
                      len(orphans), snapshots, files)  # fmt: skip


def maintain_all(spark: SparkSession, retain: dt.timedelta = DEFAULT_RETENTION) -> list[Maintained]:
    """`maintain` on every table shopstream has made so far."""
    done = []
    for name in TABLES:
        if not spark.catalog.tableExists(spark_table(name)):
            log.info("%s: not made yet, nothing to maintain", spark_table(name))
            continue
        done.append(maintain(spark, name, retain))
        log.info("%s", done[-1])
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retain-days", type=float, default=DEFAULT_RETENTION.days)
    args = parser.parse_args(argv)
    spark = get_spark("shopstream-table-maintenance", lake=True, comet=False)
    maintain_all(spark, dt.timedelta(days=args.retain_days))
    return 0


if __name__ == "__main__":
    exit_after(main)
