"""Builds the `shopstream_maintenance` DAG: Iceberg's maintenance of the tables every day at 03:00
UTC (`shopstream.spark.table_maintenance`), beside `ecommerce_pipeline`, whose task chain stays
the seed's. The DAG file in `dags/` only calls `build_maintenance_dag()`."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronTriggerTimetable

from shopstream.airflow.pipeline import common_dag_settings, spark_task

MAINTENANCE_DAG_ID = "shopstream_maintenance"
# Three hours after the daily run's start: its publication is done, and the next is far.
SCHEDULE = CronTriggerTimetable("0 3 * * *", timezone="UTC")

DOC = """
### shopstream_maintenance
Iceberg's own procedures on every shopstream table (`lake.shopstream.*`): `rewrite_data_files`,
`rewrite_manifests`, then `expire_snapshots` and `remove_orphan_files` past the retention (7 days).
Readers are not disturbed: each is one Iceberg commit. Runs daily at 03:00 UTC.
"""


def build_maintenance_dag() -> DAG:
    with DAG(
        dag_id=MAINTENANCE_DAG_ID,
        description="Iceberg maintenance of shopstream's tables: compaction, snapshot expiry, orphan files",
        doc_md=DOC,
        schedule=SCHEDULE,
        **common_dag_settings(),
        tags=["shopstream", "maintenance"],
    ) as dag:
        maintain = spark_task(
            "maintain_tables", "table_maintenance", [], timedelta(minutes=30), comet=False, lake=True
        )
        EmptyOperator(task_id="start") >> maintain >> EmptyOperator(task_id="end")
    return dag
