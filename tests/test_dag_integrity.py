"""The DAG as Airflow loads it: no import errors, the exact shape, and production defaults.
Parsing must not touch a Connection (Airflow's DagBag integrity-test practice)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from airflow.providers.standard.sensors.filesystem import FileSensor

from shopstream.airflow import pipeline
from shopstream.config import REPO_ROOT

EXPECTED_EDGES = list(zip(pipeline.TASK_IDS, pipeline.TASK_IDS[1:], strict=False))
OPERATORS = {
    "start": "EmptyOperator",
    "check_kafka_topic": "PythonOperator",
    "run_streaming_job": "SparkSubmitOperator",
    "wait_for_raw_data": "RawDateSensor",  # committed raw rows of the date, then the run's plan
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
    assert sorted(bag.dags) == ["ecommerce_backfill", "ecommerce_pipeline", "shopstream_maintenance"]
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
    assert dag.timetable.expression == "0 0 * * *" and dag.timetable == pipeline.DAILY
    assert dag.catchup is False and dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.retry_delay == timedelta(minutes=5), task.task_id
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert any(getattr(cb, "__name__", "") == "log_failure" for cb in callbacks), task.task_id


def test_batch_jobs_run_with_comet_and_the_streaming_job_without(dag):
    """Comet's plugin, shuffle manager, class path and off-heap pool reach the batch jobs'
    spark-submit; the ingest runs on Spark alone (Comet does not speed it up)."""
    for task_id in ("run_rdd_etl", "run_df_etl"):
        conf = dag.get_task(task_id).conf
        assert conf["spark.plugins"] == "org.apache.spark.CometPlugin", task_id
        assert conf["spark.shuffle.manager"].endswith("CometShuffleManager"), task_id
        assert "comet-spark-spark4.1" in conf["spark.driver.extraClassPath"], task_id
        assert conf["spark.memory.offHeap.enabled"] == "true", task_id
    assert "spark.plugins" not in dag.get_task("run_streaming_job").conf


def test_every_spark_task_gets_spark_defaults_and_one_class_path_for_the_class_archive(dag):
    """spark-defaults reach spark-submit as settings (no SPARK_CONF_DIR on the class path), and the
    three jobs share one class path, so the one archive `make setup` trains serves them all."""
    confs = {t: dag.get_task(t).conf for t in ("run_streaming_job", "run_rdd_etl", "run_df_etl")}
    for task_id, conf in confs.items():
        assert conf["spark.sql.session.timeZone"] == "UTC", task_id
        assert "-XX:SharedArchiveFile=" in conf["spark.driver.extraJavaOptions"], task_id
        assert "SPARK_CONF_DIR" not in dag.get_task(task_id).env_vars, task_id
    assert len({conf["spark.driver.extraClassPath"] for conf in confs.values()}) == 1


def test_the_extra_jvm_options_reach_every_spark_tasks_driver_and_executors(dag):
    # conftest sets SHOPSTREAM_JVM_OPTIONS for the tests' JVMs.
    for task_id in ("run_streaming_job", "run_rdd_etl", "run_df_etl"):
        conf = dag.get_task(task_id).conf
        for side in ("driver", "executor"):
            options = conf[f"spark.{side}.extraJavaOptions"].split()
            assert "-XX:TieredStopAtLevel=1" in options, (task_id, side)


def test_connections_and_run_date_parameters(dag):
    tasks = {t.task_id: t for t in dag.tasks}
    assert tasks["check_kafka_topic"].op_kwargs["conn_id"] == "kafka_default"
    # The first check refuses a gap in the topic unless the run accepts it, as the ingest does.
    assert tasks["check_kafka_topic"].op_kwargs["accept_data_loss"] == "{{ params.accept_data_loss }}"
    for task_id in ("run_streaming_job", "run_rdd_etl", "run_df_etl"):
        assert tasks[task_id]._conn_id == "spark_default"
        assert tasks[task_id].env_vars["SHOPSTREAM_KAFKA_CONFIG"] == "{{ conn.kafka_default.extra }}"
    # Every job reads or writes the catalog's tables: each gets its Connection, rendered at run time.
    lake = {task_id: tasks[task_id].env_vars.get("AIRFLOW_CONN_SHOPSTREAM_LAKE") for task_id in tasks
            if hasattr(tasks[task_id], "env_vars")}  # fmt: skip
    assert lake == dict.fromkeys(("run_streaming_job", "run_rdd_etl", "run_df_etl"),
                                 "{{ conn.shopstream_lake.get_uri() }}")  # fmt: skip
    run_date = "{{ params.run_date or data_interval_start | ds }}"
    accept = "{{ '--accept-data-loss' if params.accept_data_loss else '--no-accept-data-loss' }}"
    assert tasks["run_streaming_job"].application_args == [
        "--available-now", "--topic", "ecommerce_orders", "--complete-day", run_date, accept
    ]  # fmt: skip
    template = dag.get_template_env().from_string(accept)
    assert template.render(params=dag.params.dump()) == "--no-accept-data-loss"  # unless a run says so
    assert template.render(params={"accept_data_loss": True}) == "--accept-data-loss"
    sensor = tasks["wait_for_raw_data"]
    assert isinstance(sensor, FileSensor), "the seed's operator"
    assert sensor.filepath == f"warehouse/*/raw_events/data/verdict=valid/date={run_date}"
    assert sensor.fs_conn_id == "fs_default"
    assert sensor.mode == "reschedule" and sensor.poke_interval == 30 and sensor.timeout == 1200
    assert (sensor.run_date, sensor.version) == (run_date, "{{ run_id }}")
    plan = "ti.xcom_pull(task_ids='wait_for_raw_data')"
    for task_id in ("run_rdd_etl", "run_df_etl"):
        assert tasks[task_id].application_args == [
            "--dates", "{{ " + plan + "['dates'] | join(',') }}", "--version", "{{ " + plan + "['version'] }}"
        ]  # fmt: skip
    assert tasks["validate_output"].op_kwargs == {"date": run_date, "plan_task": "wait_for_raw_data"}
    assert set(dag.params.keys()) == {"run_date", "expected_events", "accept_data_loss"}


def _rendered_run_date(dag, data_interval_start: datetime, run_date: str | None = None) -> str:
    template = dag.get_template_env().from_string(pipeline.RUN_DATE)
    return template.render(params={"run_date": run_date}, data_interval_start=data_interval_start)


def test_the_run_the_scheduler_creates_transforms_the_day_that_closed(dag):
    from shopstream.airflow.scheduling import next_scheduled_run, scheduled_run_for

    # Catchup is off, so the scheduler's next run depends on the time: a DAG that transformed the
    # day before yesterday last gets, at the last midnight UTC, a run whose data interval (where
    # every task's date comes from) is yesterday.
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    for previous in (yesterday - timedelta(days=1), None):  # None: a DAG that never ran
        info = next_scheduled_run(dag, previous_day=previous)
        assert info.run_after == datetime.combine(today, time(), tzinfo=UTC)
        assert (info.data_interval.start.date(), info.data_interval.end.date()) == (yesterday, today)
        assert _rendered_run_date(dag, info.data_interval.start) == yesterday.isoformat()
    # A manual run may name its date.
    assert _rendered_run_date(dag, info.data_interval.start, run_date="2026-02-19") == "2026-02-19"
    # The run the scheduler created for any closed day: at the next midnight, over that day.
    past = scheduled_run_for(dag, date(2026, 2, 19))
    assert past.run_after == datetime(2026, 2, 20, tzinfo=UTC)
    assert (past.data_interval.start, past.data_interval.end) == (
        datetime(2026, 2, 19, tzinfo=UTC), datetime(2026, 2, 20, tzinfo=UTC)
    )  # fmt: skip


def test_a_date_before_the_start_date_is_refused_with_a_message(dag):
    from shopstream.airflow.scheduling import BeforeStartDate, check_not_before_start

    check_not_before_start(dag, date(2026, 2, 19))  # well after the start date: processed
    with pytest.raises(BeforeStartDate, match="before the start date of ecommerce_pipeline"):
        check_not_before_start(dag, dag.start_date.date() - timedelta(days=1))


def test_backfill_dag_has_a_group_per_configured_range(bag):
    backfill = bag.dags["ecommerce_backfill"]
    configured = pipeline.backfill_dates()
    groups = {t.task_id.split(".")[0] for t in backfill.tasks if "." in t.task_id}
    assert groups == set(configured)
    for name, dates in configured.items():
        for day in dates:
            d = day.replace("-", "")
            plan, rdd, df, check = (
                backfill.get_task(f"{name}.{kind}_{d}") for kind in ("plan", "rdd", "df", "validate")
            )
            assert plan.downstream_task_ids == {rdd.task_id} and plan.op_kwargs["date"] == day
            assert rdd.downstream_task_ids == {df.task_id} and df.downstream_task_ids == {check.task_id}
            assert f"task_ids='{plan.task_id}'" in rdd.application_args[1]
    assert backfill.schedule is None and backfill.max_active_tasks == 1


def test_backfill_dag_follows_its_config_file(tmp_path):
    config = tmp_path / "backfill.json"
    config.write_text('{"ranges": [{"name": "q", "start": "2026-12-30", "end": "2027-01-02"}]}')
    assert pipeline.backfill_dates(config) == {"q": ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]}
    dag = pipeline.build_backfill_dag(config)
    assert len([t for t in dag.tasks if t.task_id.startswith("q.")]) == 16
    config.write_text('{"ranges": [{"name": "bad", "start": "2026-12-30", "end": "2026-12-01"}]}')
    with pytest.raises(ValueError, match="before start"):
        pipeline.backfill_dates(config)


def test_the_backfills_plans_find_the_transformed_layer_through_the_fs_connection(
    tmp_path, monkeypatch, lake_catalog
):
    """The backfill's plan tasks and the main DAG's sensor read the data root from one place, the
    `fs_default` Connection: a deployment that moves the data sets it once. (The plan reads the
    raw and publications tables: `lake_catalog`, else the test passed only after another had
    started it.)"""
    from airflow.sdk.exceptions import AirflowSkipException

    from shopstream.airflow import tasks

    connection_root, environment_root = tmp_path / "from-connection", tmp_path / "from-environment"
    connection = {"conn_type": "fs", "extra": {"path": str(connection_root)}}
    monkeypatch.setenv("AIRFLOW_CONN_FS_DEFAULT", json.dumps(connection))
    monkeypatch.setenv("SHOPSTREAM_DATA_DIR", str(environment_root))
    assert tasks.data_paths().transformed == connection_root / "transformed"
    expected = "no raw events for 2026-01-01 in the raw table"
    with pytest.raises(AirflowSkipException, match=re.escape(expected)):
        tasks.plan_date("2026-01-01", "manual__test")


def test_the_maintenance_dag_runs_icebergs_procedures_daily_beside_the_pipeline(bag):
    maintenance = bag.dags["shopstream_maintenance"]
    assert [t.task_id for t in maintenance.topological_sort()] == ["start", "maintain_tables", "end"]
    task = maintenance.get_task("maintain_tables")
    assert task.application.endswith("shopstream/spark/table_maintenance.py")
    assert "iceberg-spark-runtime" in task.jars, "the job reaches the catalog"
    assert task.env_vars["AIRFLOW_CONN_SHOPSTREAM_LAKE"] == "{{ conn.shopstream_lake.get_uri() }}"
    assert maintenance.timetable.expression == "0 3 * * *" and not maintenance.catchup


def test_parsing_the_dag_files_imports_no_spark_or_table_library():
    """Every task process and the dag-processor parse them: pyspark alone cost ≈ 0.4 s a parse."""
    import subprocess
    import sys

    code = (
        "import runpy, sys; from pathlib import Path\n"
        "for f in sorted(Path('dags').glob('*.py')): runpy.run_path(str(f))\n"
        "heavy = {'pyspark', 'pyiceberg', 'pyarrow', 'duckdb'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    parsed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    assert parsed.stdout.strip().splitlines()[-1] == "[]"
