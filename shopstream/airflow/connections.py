"""The Airflow Connections the pipeline uses, and their values for the embedded local stack.

Nothing here is read at DAG parse time: tasks resolve Connections when they run. To point the
pipeline at real clusters, define these connection ids in the Airflow deployment (UI, CLI,
secrets backend or AIRFLOW_CONN_* variables) with the cluster's addresses; no code changes.
"""

from __future__ import annotations

import contextlib
import json
import os

from shopstream.config import kafka_client_config, paths
from shopstream.config import spark_master as config_spark_master
from shopstream.lake import LAKE_CONN_ENV, LAKE_CONN_ID, airflow_connection, lake_settings

KAFKA_CONN_ID = "kafka_default"  # apache-kafka provider type: client config in the extras
SPARK_CONN_ID = "spark_default"  # apache-spark provider type: master in host (+ port)
FS_CONN_ID = "fs_default"  # base path of the data layers, for the FileSensor


def local_connections(spark_master: str | None = None) -> dict[str, dict]:
    """Connection id -> Airflow connection JSON for the local stack (or SHOPSTREAM_* overrides)."""
    return {
        KAFKA_CONN_ID: {"conn_type": "kafka", "extra": kafka_client_config()},
        SPARK_CONN_ID: {
            "conn_type": "spark",
            "host": spark_master or config_spark_master(),
            "extra": {"deploy-mode": "client"},
        },
        FS_CONN_ID: {"conn_type": "fs", "extra": {"path": str(paths().data)}},
        LAKE_CONN_ID: airflow_connection(lake_settings()),
    }


def use_lake_connection() -> None:
    """Points this task's process at the catalog of the Connection `shopstream_lake` (looked up at
    run time, wherever the deployment keeps it), unless the environment names one already; without
    that Connection, the local defaults of `shopstream.lake` hold."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    if os.environ.get("SHOPSTREAM_LAKE_CATALOG") or os.environ.get(LAKE_CONN_ENV):
        return
    with contextlib.suppress(AirflowNotFoundException):  # none defined: the local defaults
        os.environ[LAKE_CONN_ENV] = Connection.get(LAKE_CONN_ID).get_uri()


def as_environment(connections: dict[str, dict]) -> dict[str, str]:
    """AIRFLOW_CONN_<ID> variables: Airflow reads connections from these before its database."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in connections.items()}
