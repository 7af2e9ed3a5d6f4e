"""The current status of each order as the Iceberg table `lake.<namespace>.order_status`: one
row per order, partitioned by the order's `date`, upserted one micro-batch at a time by `MERGE
INTO` (in the streaming join's `foreachBatch`).

Exactly once: each MERGE's snapshot records the streaming query's id and the batch id in its
summary (`shopstream.status-query`, `shopstream.status-batch`). A batch id the current snapshot's
ancestry already holds for this query is a replay (a restart after a crash lost the checkpoint's
commit) and is skipped: the table stays as it was, no snapshot added. Should the record be gone
(maintenance compacted and expired those snapshots), the MERGE is harmless anyway: a row is only
replaced by a strictly newer status, so a replay changes no row.

Merge-on-read: a 1-minute batch writes its new rows and delete files for the rows it replaces,
instead of rewriting every data file that holds one of its orders; the maintenance DAG compacts
them (`spark.table_maintenance`). Readers need nothing of shopstream: e.g. PyIceberg's
`load_table("shopstream.order_status").scan().to_arrow()`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from shopstream.contract import CANCELLED, NEW, RETURNED
from shopstream.spark.lake_init import ensure_table
from shopstream.spark.session import job_logger
from shopstream.spark.streaming import session_conf

log = job_logger("order_status")

STATUS_TABLE = "order_status"
QUARANTINE_TABLE = "quarantined_updates"  # updates that failed validation: reason, bytes, Kafka lineage
QUERY_PROPERTY, BATCH_PROPERTY = "shopstream.status-query", "shopstream.status-batch"
SNAPSHOT_PROPERTY = "spark.sql.iceberg.snapshot-property."  # Iceberg's session-wide commit property
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.merge.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.delete.mode": "merge-on-read",
}
# Of two statuses at the same time, the later in an order's life wins.
STATUS_RANK = {NEW: 0, CANCELLED: 1, RETURNED: 2}


def rank_sql(status: str = "current_status") -> str:
    """The life-cycle rank (STATUS_RANK) of the status in column `status`, in SQL."""
    cases = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in STATUS_RANK.items())
    return f"(CASE {status} {cases} ELSE 0 END)"


# Of two statuses of an order, the newer wins (by time, then rank).
NEWER = (f"(s.status_time > t.status_time OR (s.status_time = t.status_time AND "
         f"{rank_sql('s.current_status')} > {rank_sql('t.current_status')}))")  # fmt: skip


def ensure_status_table(spark: SparkSession, schema) -> str:
    """The table, created with `schema` (the join's columns) if missing; returns its name."""
    return ensure_table(spark, STATUS_TABLE, schema, "date", TABLE_PROPERTIES)


def query_id(checkpoint: Path) -> str:
    """The streaming query's id, as its checkpoint keeps it (`metadata`, written at its start):
    the same across restarts, new with a new checkpoint (whose batch ids start again at 0)."""
    return json.loads((checkpoint / "metadata").read_text().splitlines()[0])["id"]


def committed_batch(spark: SparkSession, name: str, query: str) -> int:
    """The newest batch id of `query` among the current snapshot's ancestors, -1 if none."""
    found = spark.sql(f"""
        SELECT max(CAST(s.summary['{BATCH_PROPERTY}'] AS BIGINT)) FROM {name}.snapshots s
        JOIN {name}.history h ON h.snapshot_id = s.snapshot_id AND h.is_current_ancestor
        WHERE s.summary['{QUERY_PROPERTY}'] = '{query}'""").first()[0]
    return -1 if found is None else found


def merge_batch(name: str, batch: DataFrame, batch_id: int, query: str) -> None:
    """Merges one batch (at most one row per order) into the table, recording `query` and
    `batch_id` in its snapshot; skipped if that batch was committed."""
    spark = batch.sparkSession
    if batch_id <= committed_batch(spark, name, query):
        log.info("order_status batch %d was committed before: a replay, skipped", batch_id)
        # Still run the batch through (to nowhere): the join's state stores commit only when
        # every partition is processed, and Spark refuses a batch that left them uncommitted.
        batch.write.format("noop").mode("overwrite").save()
        return
    columns = batch.columns
    batch.createOrReplaceTempView("status_batch")
    recorded = {QUERY_PROPERTY: query, BATCH_PROPERTY: str(batch_id)}
    properties = {SNAPSHOT_PROPERTY + key: value for key, value in recorded.items()}
    with session_conf(spark, properties):
        spark.sql(f"""
            MERGE INTO {name} t
            USING status_batch s ON t.order_id = s.order_id
            WHEN MATCHED AND {NEWER} THEN
              UPDATE SET {", ".join(f"{c} = s.{c}" for c in columns)}
            WHEN NOT MATCHED THEN
              INSERT ({", ".join(columns)}) VALUES ({", ".join(f"s.{c}" for c in columns)})""")
