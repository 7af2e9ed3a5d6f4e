"""Reads the raw table as any Iceberg reader does (PyIceberg into DuckDB, at the table's current
snapshot unless told), independent of the Spark code under test; and writes a frame into it the
way the jobs' tests need a raw layer."""

from __future__ import annotations

import duckdb

from shopstream.config import VALID, VERDICT
from tests import iceberg_read

RAW_EVENTS = "raw_events"


def raw_table():
    return iceberg_read.table(RAW_EVENTS)


def read_raw(verdict: str | None = None, snapshot: int | None = None) -> duckdb.DuckDBPyRelation:
    """The table's rows (of `verdict`: `valid`, `quarantined`)."""
    con = duckdb.connect()  # one per relation: several may be open at once
    con.register("data", raw_table().scan(snapshot_id=snapshot).to_arrow())
    where = f"WHERE {VERDICT} = '{verdict}'" if verdict else ""
    return con.sql(f"SELECT * FROM data {where}")


def data_files(verdict: str | None = None) -> list[str]:
    """The data files of the current snapshot (of `verdict`)."""
    files = raw_table().inspect.files().to_pylist()
    return sorted(f["file_path"] for f in files if verdict is None or f["partition"][VERDICT] == verdict)


def commits() -> list[dict]:
    """The table's snapshots, oldest first: id, operation and summary (the streaming sink's query
    id and epoch among it)."""
    return [{"id": s.snapshot_id, "operation": s.summary.operation.value, **s.summary.additional_properties}
            for s in sorted(raw_table().snapshots(), key=lambda s: s.sequence_number)]  # fmt: skip


def copies_in_raw() -> int:
    """How many valid rows repeat an event already there (same order id, status and time): 0 when
    the stream dropped every re-delivery."""
    rows = read_raw(VALID).aggregate("count(*) - count(DISTINCT (order_id, order_status, timestamp))")
    return rows.fetchall()[0][0]


def write_raw(spark, frame) -> None:
    """Appends `frame` (with a `date` column) as valid rows of the raw table, made from its schema
    if missing (the batch jobs read only the columns they need)."""
    from pyspark.sql import functions as F

    from shopstream.lake import spark_table
    from shopstream.spark.raw_events import ensure_raw_table

    frame = frame.withColumn(VERDICT, F.lit(VALID))
    ensure_raw_table(spark, frame.schema)
    frame.writeTo(spark_table(RAW_EVENTS)).append()


def partitions_by_commit() -> dict[int, list[tuple]]:
    """Per append commit: the partition (verdict, date) of each data file it added."""
    added = [e for e in raw_table().inspect.entries().to_pylist() if e["status"] == 1]
    result: dict[int, list[tuple]] = {}
    for entry in added:
        partition = entry["data_file"]["partition"]
        result.setdefault(entry["snapshot_id"], []).append((partition[VERDICT], partition["date"]))
    return result
