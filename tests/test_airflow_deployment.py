"""The DAG run by a real Airflow deployment (`shopstream.devstack.airflow_deployment`): the API
server, the scheduler, the dag-processor and the triggerer as processes on free ports, LocalExecutor,
the metadata in PostgreSQL. Nobody triggers a run: the deployment unpauses `ecommerce_pipeline`,
the scheduler itself creates the closed day's run and the executor completes it; the published
analytics equal the DuckDB oracle over the events read back from Kafka. That run's ingest task
fails once (someone's ingest holds the raw sink when it starts) and the scheduler retries it after
the (shortened) delay; a task that keeps failing fails its run and its alert arrives at a real SMTP
server. `airflow backfill create` makes the scheduler run three past
dates, oldest first; the admin finds the run's eight tasks successful in the UI's grid (Debian's
Chromium)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shopstream.airflow.pipeline import DAG_ID, TASK_IDS
from shopstream.config import ORDERS_TOPIC, REPO_ROOT, paths
from shopstream.devstack import airflow_runs
from shopstream.devstack.airflow_deployment import AirflowDeployment, metadata_database_uri
from shopstream.devstack.kafka_broker import throwaway_broker
from shopstream.devstack.processes import free_port
from shopstream.spark.ingest_guard import AVAILABLE_NOW, WriterLock
from tests import duckdb_oracle, iceberg_read, oracle
from tests.conftest import produce
from tests.duckdb_oracle import ORACLE_COLUMNS
from tests.kafka_read import distinct_events, read_topic
from tests.smtp_sink import Mailbox, smtp_server

pytestmark = pytest.mark.integration

DATE = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()  # the closed day
COUNT = 1000
RUN_TIMEOUT_S = 900
EVER = dt.datetime.min.replace(tzinfo=dt.UTC)  # `wait_for` counts every finished run
RETRY_DELAY_S = 10
ALERT_TO = "data-team@shop.example"
PAST = tuple((dt.date.fromisoformat(DATE) - dt.timedelta(days=n)) for n in (4, 3, 2))
PAST_COUNT = 600
CHROMIUM = "/usr/bin/chromium"
README_SCREENSHOT = REPO_ROOT / "docs" / "images" / "airflow_grid.png"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of its own: the scheduler's run reads the pipeline's topic, which no other module
    may write meanwhile."""
    with throwaway_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def pipeline_home(broker, serving_db, tmp_path_factory) -> Iterator[Path]:
    """The pipeline's settings for the deployment and this module (its own folders, the broker, the
    store, one retry after a short delay, alerts by mail), and the closed day's events in the topic."""
    home = tmp_path_factory.mktemp("airflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPSTREAM_STATE_DIR", str(home / "state"))
        mp.setenv("SHOPSTREAM_DATA_DIR", str(home / "data"))
        mp.setenv("SHOPSTREAM_KAFKA_BOOTSTRAP", broker.bootstrap)
        mp.setenv("SHOPSTREAM_SERVING_DB", serving_db.dsn)
        mp.setenv("SHOPSTREAM_TASK_RETRIES", "1")
        mp.setenv("SHOPSTREAM_RETRY_DELAY_SECONDS", str(RETRY_DELAY_S))
        mp.setenv("SHOPSTREAM_ALERT_EMAIL", ALERT_TO)
        mp.delenv("SHOPSTREAM_KAFKA_CONFIG", raising=False)
        # The day's events are in the topic before the scheduler may start its run.
        produce(broker, ORDERS_TOPIC, "--count", str(COUNT), "--seed", "61", "--malformed-ratio", "0.03",
                "--start", DATE, "--span", "24h")  # fmt: skip
        yield home


@pytest.fixture(scope="module")
def someones_ingest(pipeline_home) -> Iterator[WriterLock]:
    """Someone's ingest run, holding the raw sink when the scheduler's first run starts."""
    lock = WriterLock(paths().ingest_checkpoints)
    assert lock.acquire(AVAILABLE_NOW)
    yield lock
    lock.release()


@pytest.fixture(scope="module")
def deployment(
    pipeline_home, someones_ingest, serving_db, lake_catalog, mailbox
) -> Iterator[AirflowDeployment]:
    from shopstream.airflow.connections import local_connections

    airflow = AirflowDeployment(pipeline_home / "airflow", free_port(), metadata_database_uri(serving_db.dsn),
                                connections={**local_connections(), "smtp_default": mailbox.connection()},
                                unpaused=(DAG_ID,))  # fmt: skip
    airflow.start()
    try:
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture(scope="module")
def scheduled_run(deployment, someones_ingest) -> dict:
    """The run the scheduler creates for the closed day, finished. Its ingest task's first try
    fails (`someones_ingest` holds the sink); once it waits for its retry, the sink is let go, so
    the retry succeeds."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (runs := [r for r in deployment.dag_runs(DAG_ID) if r["run_id"].startswith("scheduled__")]):
        assert time.monotonic() < deadline, "the scheduler made no run"
        time.sleep(2)
    try:
        wait_for_task_state(deployment, runs[0]["run_id"], "run_streaming_job", "up_for_retry")
    finally:
        someones_ingest.release()
    return finished_run(deployment, runs[0]["run_id"])


def finished_run(airflow: AirflowDeployment, run_id: str | None = None, timeout=RUN_TIMEOUT_S) -> dict:
    """The DAG's run `run_id` (else the scheduler's) once it has finished (success or failed)."""

    def wanted(run: dict) -> bool:
        return run["run_id"] == run_id if run_id else run["run_id"].startswith("scheduled__")

    return airflow_runs.wait_for(airflow, wanted, 1, EVER, timeout)[-1]


def test_the_scheduler_creates_and_completes_the_closed_days_run(deployment, scheduled_run, broker):
    run = scheduled_run

    assert run["run_id"].startswith("scheduled__") and run["logical_date"].startswith(DATE), run
    assert run["state"] == "success", deployment.task_states(DAG_ID, run["run_id"])
    assert deployment.task_states(DAG_ID, run["run_id"]) == dict.fromkeys(TASK_IDS, "success")
    assert deployment.comes_up(), "every component still healthy"

    assert_published_equals_the_oracle(broker, COUNT, [DATE])


def assert_published_equals_the_oracle(broker, events: int, dates: list[str]) -> None:
    """Every output's published rows of `dates` equal the DuckDB oracle over the topic's first
    `events` events, read back from Kafka."""
    delivered = [json.loads(m.value) for m in read_topic(broker.bootstrap, ORDERS_TOPIC, events)
                 if not oracle.problems(m.value)]  # fmt: skip
    truth = duckdb_oracle.connect(distinct_events(delivered))
    for date in dates:
        for output, columns in ORACLE_COLUMNS.items():
            columns = columns.replace(
                "hour,", "strftime(timezone('UTC', hour), '%Y-%m-%d %H:%M:%S') AS hour,"
            )
            got = iceberg_read.rows(output, columns, where=f"date = DATE '{date}'")
            want = [row for row in duckdb_oracle.expected(truth, output) if str(row[0]) == date]
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


def wait_for_task_state(airflow: AirflowDeployment, run_id: str, task_id: str, state: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (states := airflow.task_states(DAG_ID, run_id)).get(task_id) != state:
        assert time.monotonic() < deadline, states
        time.sleep(2)


def tries(metadata_db: str, run_id: str, task_id: str) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """(try number, start, end) of each try of a task instance, from the metadata database."""
    with psycopg.connect(metadata_db) as conn:
        return conn.execute(
            "SELECT try_number, start_date, end_date FROM task_instance_history WHERE dag_id = %s AND "
            "run_id = %s AND task_id = %s UNION ALL SELECT try_number, start_date, end_date FROM "
            "task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s ORDER BY 1",
            (DAG_ID, run_id, task_id) * 2,
        ).fetchall()


def test_a_task_that_fails_once_is_retried_after_the_delay_and_the_run_succeeds(scheduled_run, serving_db):
    """The scheduled run's ingest task failed naming the sink's writer; the scheduler retried it
    after the delay, the sink was free, the run succeeded (`scheduled_run`)."""
    assert scheduled_run["state"] == "success"
    (first, _, failed_at), (second, retried_at, _) = tries(
        metadata_database_uri(serving_db.dsn), scheduled_run["run_id"], "run_streaming_job"
    )
    assert (first, second) == (1, 2)
    assert (retried_at - failed_at).total_seconds() >= RETRY_DELAY_S, "retried after the delay"


def test_a_task_that_keeps_failing_fails_the_run_and_its_alert_arrives_by_mail(
    deployment, scheduled_run, mailbox
):
    received = mailbox.received
    someone = WriterLock(paths().ingest_checkpoints)
    assert someone.acquire(AVAILABLE_NOW)
    try:  # held through every try
        run_id = deployment.trigger(DAG_ID, {"run_date": DATE})
        run = finished_run(deployment, run_id)
    finally:
        someone.release()

    assert run["state"] == "failed"
    assert deployment.task_states(DAG_ID, run_id)["run_streaming_job"] == "failed"
    deadline = time.monotonic() + 60
    while not received and time.monotonic() < deadline:
        time.sleep(1)
    [alert] = received
    assert alert["To"] == ALERT_TO
    assert alert["Subject"] == f"shopstream: {DAG_ID}.run_streaming_job failed for {DATE}"
    assert "try 2" in alert.get_body(("html",)).get_content(), "sent once, after the last try"


@pytest.mark.timeout(1200)  # three DAG runs: 3.5 min alone, 6.5-7.5 min in the suite
def test_an_airflow_backfill_runs_three_past_dates_oldest_first_each_published_and_correct(
    deployment, scheduled_run, broker
):
    before = outputs_of(DATE)
    produced = produce(broker, ORDERS_TOPIC, "--count", str(PAST_COUNT), "--seed", "67",
                       "--start", PAST[0].isoformat(), "--span", "72h")  # fmt: skip

    results = airflow_runs.backfill(deployment, PAST[0], PAST[-1], timeout=RUN_TIMEOUT_S)

    assert [(r.date, r.state) for r in results] == [(d.isoformat(), "success") for d in PAST]
    assert all(r.run_id.startswith("backfill__") for r in results)
    assert all(task.state == "success" for r in results for task in r.tasks.values())
    spans = [run_span(deployment, r.run_id) for r in results]
    assert all(done <= next_start for (_, done), (next_start, _) in itertools.pairwise(spans)), "oldest first"
    assert outputs_of(DATE) == before, "a backfill never touches another date"
    assert_published_equals_the_oracle(broker, COUNT + produced["generated"], [d.isoformat() for d in PAST])


def outputs_of(date: str) -> dict[str, list[tuple]]:
    return {
        output: sorted(iceberg_read.rows(output, "*", where=f"date = DATE '{date}'"))
        for output in ORACLE_COLUMNS
    }


def run_span(airflow: AirflowDeployment, run_id: str) -> tuple[dt.datetime, dt.datetime]:
    [run] = [r for r in airflow.dag_runs(DAG_ID) if r["run_id"] == run_id]
    return dt.datetime.fromisoformat(run["start_date"]), dt.datetime.fromisoformat(run["end_date"])


def test_the_admin_finds_the_runs_eight_tasks_successful_in_the_uis_grid(deployment, scheduled_run, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    run = scheduled_run
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(deployment.url)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(deployment.admin_password())
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{deployment.url}/")
            page.goto(f"{deployment.url}/dags/{DAG_ID}/runs/{run['run_id']}")

            expect(page.get_by_text(f"{len(TASK_IDS)} Task Instances")).to_be_visible(timeout=60_000)
            for task_id in TASK_IDS:
                cell = page.get_by_test_id(f"grid-{run['run_id']}-{task_id}")
                expect(cell).to_have_count(1)
                row = page.get_by_role("row").filter(has=page.get_by_role("link", name=task_id, exact=True))
                expect(row).to_contain_text("Success")
            shot = tmp_path / "airflow_grid.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
    if os.environ.get("SHOPSTREAM_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, README_SCREENSHOT)
