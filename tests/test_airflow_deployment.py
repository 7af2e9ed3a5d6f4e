"""The DAG run by a real Airflow deployment (`shopstream.devstack.airflow_deployment`): the API
server, the scheduler, the dag-processor and the triggerer as processes on free ports, LocalExecutor,
the metadata in PostgreSQL. Nobody triggers a run: the deployment unpauses `ecommerce_pipeline`,
the scheduler itself creates the closed day's run and the executor completes it; the published
analytics equal the DuckDB oracle over the events read back from Kafka."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from shopstream.airflow.pipeline import DAG_ID, TASK_IDS
from shopstream.config import ORDERS_TOPIC
from shopstream.devstack.airflow_deployment import AirflowDeployment, metadata_database_uri
from shopstream.devstack.kafka_broker import throwaway_broker
from shopstream.devstack.processes import free_port
from tests import duckdb_oracle, iceberg_read, oracle
from tests.conftest import produce
from tests.duckdb_oracle import ORACLE_COLUMNS
from tests.kafka_read import distinct_events, read_topic

pytestmark = pytest.mark.integration

DATE = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()  # the closed day
COUNT = 1000
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of its own: the scheduler's run reads the pipeline's topic, which no other module
    may write meanwhile."""
    with throwaway_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="module")
def deployment(broker, serving_db, lake_catalog, tmp_path_factory) -> Iterator[AirflowDeployment]:
    home = tmp_path_factory.mktemp("airflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPSTREAM_STATE_DIR", str(home / "state"))
        mp.setenv("SHOPSTREAM_DATA_DIR", str(home / "data"))
        mp.setenv("SHOPSTREAM_KAFKA_BOOTSTRAP", broker.bootstrap)
        mp.setenv("SHOPSTREAM_SERVING_DB", serving_db.dsn)
        mp.setenv("SHOPSTREAM_TASK_RETRIES", "0")
        mp.delenv("SHOPSTREAM_KAFKA_CONFIG", raising=False)
        # The day's events are in the topic before the scheduler may start its run.
        produce(broker, ORDERS_TOPIC, "--count", str(COUNT), "--seed", "61", "--malformed-ratio", "0.03",
                "--start", DATE, "--span", "24h")  # fmt: skip
        airflow = AirflowDeployment(home / "airflow", free_port(), metadata_database_uri(serving_db.dsn),
                                    unpaused=(DAG_ID,))  # fmt: skip
        airflow.start()
        try:
            yield airflow
        finally:
            airflow.stop()


def finished_run(airflow: AirflowDeployment, timeout: float = RUN_TIMEOUT_S) -> dict:
    """The DAG's first run once it has finished (success or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.dag_runs(DAG_ID)
        if runs and runs[-1]["state"] in ("success", "failed"):
            return runs[-1]
        time.sleep(5)
    raise AssertionError(f"no finished run of {DAG_ID} within {timeout} s: {airflow.dag_runs(DAG_ID)}")


def test_the_scheduler_creates_and_completes_the_closed_days_run(deployment, broker):
    run = finished_run(deployment)

    assert run["run_id"].startswith("scheduled__") and run["logical_date"].startswith(DATE), run
    assert run["state"] == "success", deployment.task_states(DAG_ID, run["run_id"])
    assert deployment.task_states(DAG_ID, run["run_id"]) == dict.fromkeys(TASK_IDS, "success")
    assert deployment.running(), "every component still healthy"

    delivered = [json.loads(m.value) for m in read_topic(broker.bootstrap, ORDERS_TOPIC, COUNT)
                 if not oracle.problems(m.value)]  # fmt: skip
    truth = duckdb_oracle.connect(distinct_events(delivered))
    for output, columns in ORACLE_COLUMNS.items():
        columns = columns.replace("hour,", "strftime(timezone('UTC', hour), '%Y-%m-%d %H:%M:%S') AS hour,")
        got = iceberg_read.rows(output, columns, where=f"date = DATE '{DATE}'")
        want = [row for row in duckdb_oracle.expected(truth, output) if str(row[0]) == DATE]
        assert sorted(tuple(map(str, r)) for r in got) == sorted(tuple(map(str, r)) for r in want), output


def test_the_admin_logs_in_and_the_deployments_secrets_are_its_owners_alone(deployment):
    request = urllib.request.Request(
        f"{deployment.url}/auth/token", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "admin", "password": deployment.admin_password()}).encode(),
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["access_token"]
    home = deployment.home
    for secret in (deployment.passwords_file, home / "secrets.json", home / "airflow.cfg"):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    connections = deployment.airflow("connections", "list", "-o", "json")
    assert {"kafka_default", "spark_default", "fs_default", "shopstream_lake"} <= set(
        c["conn_id"] for c in json.loads(connections[connections.index("[") :])
    ), "the profile's Connections are in the metadata database"
