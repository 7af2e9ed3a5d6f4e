"""The DAG as Airflow loads it: no import errors, the exact shape, and production defaults.
Parsing must not touch a Connection (Airflow's DagBag integrity-test practice)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shopstream.airflow import pipeline
from shopstream.config import REPO_ROOT

EXPECTED_EDGES = list(zip(pipeline.TASK_IDS, pipeline.TASK_IDS[1:], strict=False))
OPERATORS = {
    "start": "EmptyOperator",
    "check_kafka_topic": "PythonOperator",
    "run_streaming_job": "SparkSubmitOperator",
    "wait_for_raw_data": "RawPartitionSensor",  # a FileSensor that explains an empty day
    "run_rdd_etl": "SparkSubmitOperator",
    "run_df_etl": "SparkSubmitOperator",
    "validate_output": "PythonOperator",
    "end": "EmptyOperator",
}


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook

    def no_connections_at_parse_time(*args, **kwargs):
        raise AssertionError("the DAG file fetched a Connection while being parsed")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("SHOPSTREAM_TASK_RETRIES", "SHOPSTREAM_RAW_WAIT_SECONDS", "SHOPSTREAM_RAW_POKE_SECONDS"):
            mp.delenv(name, raising=False)
        mp.setattr(BaseHook, "get_connection", no_connections_at_parse_time)
        bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["ecommerce_backfill", "ecommerce_pipeline"]
    return bag


@pytest.fixture(scope="module")
def dag(bag):
    return bag.dags["ecommerce_pipeline"]


def test_tasks_and_dependencies_are_exactly_the_pipeline(dag):
    assert [t.task_id for t in dag.topological_sort()] == list(pipeline.TASK_IDS)
    edges = sorted((up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids)
    assert edges == sorted(EXPECTED_EDGES)
    assert {t.task_id: type(t).__name__ for t in dag.tasks} == OPERATORS


def test_schedule_retries_and_alerts(dag):
    assert dag.schedule == "@daily" and dag.timetable.expression == "0 0 * * *"
    assert dag.catchup is False and dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.retry_delay == timedelta(minutes=5), task.task_id
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert any(getattr(cb, "__name__", "") == "log_failure" for cb in callbacks), task.task_id


def test_connections_and_run_date_parameters(dag):
    tasks = {t.task_id: t for t in dag.tasks}
    assert tasks["check_kafka_topic"].op_kwargs["conn_id"] == "kafka_default"
    for task_id in ("run_streaming_job", "run_rdd_etl", "run_df_etl"):
        assert tasks[task_id]._conn_id == "spark_default"
        assert tasks[task_id].env_vars["SHOPSTREAM_KAFKA_CONFIG"] == "{{ conn.kafka_default.extra }}"
    assert tasks["run_streaming_job"].application_args[0] == "--available-now"
    from airflow.providers.standard.sensors.filesystem import FileSensor

    sensor = tasks["wait_for_raw_data"]
    assert isinstance(sensor, FileSensor) and sensor.fs_conn_id == "fs_default"
    assert sensor.mode == "reschedule" and sensor.poke_interval == 30 and sensor.timeout == 1200
    assert sensor.filepath == "raw/verdict=valid/date={{ params.run_date or ds }}/*.parquet"
    for task_id in ("run_rdd_etl", "run_df_etl"):
        assert tasks[task_id].application_args == ["--date", "{{ params.run_date or ds }}"]
    assert tasks["validate_output"].op_kwargs == {"date": "{{ params.run_date or ds }}"}
    assert set(dag.params.keys()) == {"run_date", "expected_events"}


def test_backfill_dag_has_a_group_per_configured_range(bag):
    backfill = bag.dags["ecommerce_backfill"]
    configured = pipeline.backfill_dates()
    groups = {t.task_id.split(".")[0] for t in backfill.tasks if "." in t.task_id}
    assert groups == set(configured)
    for name, dates in configured.items():
        for day in dates:
            d = day.replace("-", "")
            rdd, df, check = (backfill.get_task(f"{name}.{kind}_{d}") for kind in ("rdd", "df", "validate"))
            assert rdd.downstream_task_ids == {df.task_id} and df.downstream_task_ids == {check.task_id}
            assert rdd.application_args == ["--date", day]
    assert backfill.schedule is None and backfill.max_active_tasks == 1


def test_backfill_dag_follows_its_config_file(tmp_path):
    config = tmp_path / "backfill.json"
    config.write_text('{"ranges": [{"name": "q", "start": "2026-12-30", "end": "2027-01-02"}]}')
    assert pipeline.backfill_dates(config) == {"q": ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]}
    dag = pipeline.build_backfill_dag(config)
    assert len([t for t in dag.tasks if t.task_id.startswith("q.")]) == 12
    config.write_text('{"ranges": [{"name": "bad", "start": "2026-12-30", "end": "2026-12-01"}]}')
    with pytest.raises(ValueError, match="before start"):
        pipeline.backfill_dates(config)
