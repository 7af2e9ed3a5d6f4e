"""Iceberg's maintenance procedures on a daily table (`shopstream.spark.table_maintenance`): after
a date published by several runs and their branches dropped, the table keeps one snapshot and one
file, an orphan file of a killed write is gone, and readers see the same rows throughout."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from shopstream import daily_tables
from shopstream.spark import table_maintenance
from shopstream.spark.lake_init import ensure_namespace
from shopstream.spark.output_tables import ensure_output_table, write_to_branch
from shopstream.spark.status_table import STATUS_TABLE, ensure_status_table, merge_batch
from tests import iceberg_read

pytestmark = pytest.mark.integration

DAY = "2026-11-20"
RUNS = [f"run-{n}" for n in range(4)]


def test_a_republished_date_is_compacted_to_one_snapshot_and_file_and_orphans_go(spark, fresh_lake_namespace):
    frame = spark.sql(
        f"SELECT DATE'{DAY}' AS date, TIMESTAMP'{DAY} 00:00:00' + make_interval(0, 0, 0, 0, id, 0, 0) "
        "AS hour, id AS orders FROM range(24)"
    )
    ensure_namespace(spark)
    ensure_output_table(spark, "hourly_sales", frame)
    for run in RUNS:  # the same date published by four runs, each from its own branch
        write_to_branch(spark, "hourly_sales", frame, ["hour"], run)
        daily_tables.publish_output("hourly_sales", DAY, run)
    published = iceberg_read.rows("hourly_sales", order="hour")
    for run in RUNS:  # what `publication.vacuum` does to versions past the retention
        daily_tables.remove_branches(run)
    table = iceberg_read.table("hourly_sales")
    data = os.path.join(table.location().removeprefix("file://"), "data")
    orphan = os.path.join(data, "killed-write.parquet")
    with open(orphan, "wb") as f:
        f.write(b"PAR1 left by a job killed mid-write")
    week_ago = (dt.datetime.now() - dt.timedelta(days=8)).timestamp()
    os.utime(orphan, (week_ago, week_ago))
    files_before = sum(len(names) for _, _, names in os.walk(data))

    # A retention of 0: every snapshot but the current one is past it (orphans wait 3 days anyway).
    done = table_maintenance.maintain(spark, "hourly_sales", retain=dt.timedelta(0))

    assert (done.snapshots, done.data_files, done.orphans_removed) == (1, 1, 1), done
    assert done.snapshots_expired_files_deleted >= len(RUNS) - 1, "superseded runs' files deleted"
    assert not os.path.exists(orphan)
    assert sum(len(names) for _, _, names in os.walk(data)) < files_before
    assert iceberg_read.rows("hourly_sales", order="hour") == published, "readers see the same rows"


def test_the_status_tables_upserts_are_compacted_without_their_deletes(spark, fresh_lake_namespace):
    from tests.test_order_status_stream import status_batch

    first = status_batch(spark, *((f"O{n}", "NEW", 0) for n in range(20)))
    table = ensure_status_table(spark, first.schema)
    merge_batch(table, first, 0, "query")
    for batch, status in enumerate(("CANCELLED", "RETURNED"), start=1):  # each replaces rows: deletes
        merge_batch(table, status_batch(spark, *((f"O{n}", status, batch) for n in range(0, 20, 3))), batch,
                    "query")  # fmt: skip
    current = iceberg_read.rows(STATUS_TABLE, "order_id, current_status")
    assert spark.sql(f"SELECT count(*) FROM {table}.delete_files").first()[0] > 0

    done = table_maintenance.maintain(spark, STATUS_TABLE, retain=dt.timedelta(0))

    assert spark.sql(f"SELECT count(*) FROM {table}.delete_files").first()[0] == 0
    assert (done.snapshots, done.data_files) == (1, 1), done
    assert iceberg_read.rows(STATUS_TABLE, "order_id, current_status") == current


def test_the_raw_tables_closed_dates_are_compacted_and_its_open_dates_left_alone(spark, fresh_lake_namespace):
    """The live ingest commits a file a minute into each date it receives: maintenance rewrites a
    date once no event of it can still be valid (a rewrite changes the date's fingerprint, so an
    open date would be transformed again for nothing), and readers see the same rows."""
    from shopstream.config import compaction_after_days
    from shopstream.raw_table import RAW_EVENTS, partition_stats
    from shopstream.raw_table import load as load_raw_table
    from tests.raw_rows import data_files, read_raw, write_raw

    today = dt.datetime.now(dt.UTC).date()
    closed, open_ = today - dt.timedelta(days=compaction_after_days() + 1), today - dt.timedelta(days=1)
    for minute in range(4):  # four commits, a file per date each
        write_raw(spark, spark.sql(
            f"SELECT concat('ORD-{minute}-', id) AS order_id, CAST(1 AS INT) AS quantity, d AS date "
            f"FROM range(5) CROSS JOIN (SELECT explode(array(DATE'{closed}', DATE'{open_}')) AS d)"
        ))  # fmt: skip
    rows = sorted(read_raw().fetchall())
    before = partition_stats(load_raw_table())

    done = table_maintenance.maintain(spark, RAW_EVENTS, retain=dt.timedelta(0))

    files = {day: [f for f in data_files() if f"date={day}" in f] for day in (closed, open_)}
    assert (len(files[closed]), len(files[open_])) == (1, 4), files
    assert done.snapshots == 1 and sorted(read_raw().fetchall()) == rows
    after = partition_stats(load_raw_table())
    assert after[str(open_)] == before[str(open_)], "the open date's fingerprint is unchanged"
    assert after[str(closed)][0] == before[str(closed)][0] == 20


def test_making_a_table_that_exists_leaves_its_rows_and_snapshots_be(spark, fresh_lake_namespace):
    """What a job that finds its table made by another does (the status table once replaced it)."""
    from tests.test_order_status_stream import status_batch

    batch = status_batch(spark, ("O1", "NEW", 0), ("O2", "NEW", 0))
    name = ensure_status_table(spark, batch.schema)
    merge_batch(name, batch, 0, "q")
    snapshots = iceberg_read.table(STATUS_TABLE).snapshots()

    assert ensure_status_table(spark, batch.schema) == name
    again = spark.sql(f"CREATE TABLE IF NOT EXISTS {name} (order_id string) USING iceberg")  # the race's way

    assert again.collect() == [] and iceberg_read.table(STATUS_TABLE).snapshots() == snapshots
    assert iceberg_read.rows(STATUS_TABLE, "order_id", order="order_id") == [("O1",), ("O2",)]
