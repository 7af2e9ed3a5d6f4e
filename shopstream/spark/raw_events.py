"""The Spark side of the raw table (`shopstream.raw_table`): made before the ingest's query from
its rows' schema, written by Iceberg's streaming sink (exactly once per micro-batch: each commit
records the query's id and epoch, and an epoch already committed is skipped on replay), read at
a run's pinned snapshot."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from shopstream.config import VERDICT
from shopstream.lake import spark_table
from shopstream.raw_table import RAW_EVENTS, TABLE_PROPERTIES
from shopstream.spark.lake_init import ensure_table

# Per-partition writers in each task, no sort before the write: a micro-batch's rows arrive in
# Kafka's order, across dates and verdicts (Iceberg's advice for streaming writes).
FANOUT = {"fanout-enabled": "true"}


def ensure_raw_table(spark: SparkSession, schema) -> str:
    """The raw table, created with the ingest rows' `schema` if missing, partitioned by verdict and
    date, with `raw_table.TABLE_PROPERTIES` (no snapshot until the first commit); its Spark SQL name."""
    return ensure_table(spark, RAW_EVENTS, schema, f"{VERDICT}, date", TABLE_PROPERTIES)


def set_properties(spark: SparkSession, properties: dict[str, str | None]) -> None:
    """Sets (or, for None, removes) table properties of the raw table."""
    name = spark_table(RAW_EVENTS)
    kept = {k: v for k, v in properties.items() if v is not None}
    gone = [k for k, v in properties.items() if v is None]
    if kept:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in kept.items())
        spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({pairs})")
    if gone:
        spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES IF EXISTS ({', '.join(repr(k) for k in gone)})")


def read_raw(spark: SparkSession, snapshot: int | None = None) -> DataFrame:
    """The raw table as of `snapshot` (a run's pin; None: now)."""
    reader = spark.read if snapshot is None else spark.read.option("versionAsOf", str(snapshot))
    return reader.table(spark_table(RAW_EVENTS))
