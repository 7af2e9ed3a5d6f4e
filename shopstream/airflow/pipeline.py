"""Builds the `ecommerce_pipeline` DAG. The DAG file in `dags/` only calls `build_ecommerce_dag()`.

Parsing touches no Connection, Variable or service: every address is resolved when a task runs,
from the Connections named in `shopstream.airflow.connections`.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param, TaskGroup

from shopstream.airflow import tasks
from shopstream.airflow.connections import FS_CONN_ID, KAFKA_CONN_ID, SPARK_CONN_ID
from shopstream.airflow.sensors import RawDateSensor
from shopstream.config import ORDERS_TOPIC, REPO_ROOT
from shopstream.lake import LAKE_CONN_ENV, LAKE_CONN_ID, iceberg_jars
from shopstream.spark.session import job_conf, kafka_connector_jars

DAG_ID = "ecommerce_pipeline"
TASK_IDS = (
    "start",
    "check_kafka_topic",
    "run_streaming_job",
    "wait_for_raw_data",
    "run_rdd_etl",
    "run_df_etl",
    "validate_output",
    "end",
)
RETRIES = 2
RETRY_DELAY = timedelta(minutes=5)
# Runs are created for dates from here on (catchup is off: the scheduler never backfills on its
# own). Early, so that a manual run or `make backfill` of any past date really runs its tasks:
# Airflow creates no task instances for a run whose logical date precedes the start date.
START_DATE = datetime(2020, 1, 1, tzinfo=UTC)
# At each midnight UTC, a run whose data interval is the day that just closed. (`@daily` is a
# zero-length interval in Airflow 3: its `ds` is the day that has just begun.)
DAILY = CronTriggerTimetable("0 0 * * *", timezone="UTC", interval=timedelta(days=1))
# The date a run transforms: the `run_date` param of a manual run that names one, else the start
# of the run's data interval (the closed day). Never `ds`: for this timetable a manual run's
# logical date is its trigger time, and a scheduled run's is the interval start.
RUN_DATE = "{{ params.run_date or data_interval_start | ds }}"
# The ingest goes on past events Kafka deleted before it read them only when a run says so.
ACCEPT_DATA_LOSS = "{{ '--accept-data-loss' if params.accept_data_loss else '--no-accept-data-loss' }}"
PLAN_TASK = "wait_for_raw_data"


def _plan(task_id: str, key: str) -> str:
    """A field of the plan (dates, version) that task `task_id` pushed, as a Jinja template."""
    value = f"ti.xcom_pull(task_ids='{task_id}')['{key}']"
    return "{{ %s | join(',') }}" % value if key == "dates" else "{{ %s }}" % value  # noqa: UP031


def _job_args(plan_task: str) -> list[str]:
    """A batch job's arguments: the dates and the version the run's plan chose."""
    return ["--dates", _plan(plan_task, "dates"), "--version", _plan(plan_task, "version")]


SPARK_JOBS = Path(__file__).resolve().parent.parent / "spark"

DOC = """
### ecommerce_pipeline
Daily analytics of the shop's order events.

1. **check_kafka_topic**: `ecommerce_orders` exists and holds events (Connection `kafka_default`),
   and the ingest can read on from its checkpoint: no events the retention deleted unread, no topic
   created again (unless the run accepts the loss, below). Fails without retries.
2. **run_streaming_job**: Spark Structured Streaming, `--available-now`: Kafka → the Iceberg table
   `lake.shopstream.raw_events`, valid rows by `date` (`verdict = 'valid'`) and rejected records
   with their reason (`verdict = 'quarantined'`), exactly once through its checkpoint, up to the
   topic's end offsets taken no earlier than the run date's midnight + 5 minutes. When the live
   ingest service runs, it starts no query but waits for the service to commit those offsets.
3. **wait_for_raw_data**: the raw table's current snapshot holds rows of the run date; then plans
   the run: the run date plus every date of the last 7 whose raw rows changed since they were
   published (late events, re-deliveries), the raw table's snapshot pinned in a new version.
4. **run_rdd_etl** / **run_df_etl**: the batch jobs for the planned dates (Connection
   `spark_default`), each event counted once: the RDD job's text into the run's version of
   `transformed/`, the DataFrame job's outputs into the run's branch of the Iceberg tables
   `lake.shopstream.*`, which readers do not see.
5. **validate_output**: data-quality checks of every output of every planned date, reconciled with
   the raw rows; each date that passes is published onto the tables' `main` branch, and every
   validation recorded in `lake.shopstream.publications`. Reports in
   `transformed/_validation/<date>.json`.

Schedule: every midnight UTC a run transforms the day that has just closed (its data interval).
Params: `run_date` (YYYY-MM-DD: a manual run that names the date to transform; default: the run's
data interval, i.e. the previous day), `expected_events` (minimum number of messages the topic must
hold), `accept_data_loss` (default false: when the topic's retention deleted events before the
ingest read them, or the topic was created again, `run_streaming_job` fails naming them; a manual
run with it true records the gap in `_data_loss.json` beside the ingest's checkpoint and goes on).
"""


def _spark_env(lake: bool = False) -> dict[str, str]:
    env = {
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        # The Kafka Connection's client settings, resolved at run time; never on a command line.
        "SHOPSTREAM_KAFKA_CONFIG": "{{ conn.%s.extra }}" % KAFKA_CONN_ID,  # noqa: UP031 - Jinja braces
    }
    if lake:  # the catalog's Connection in Airflow's URI form (`shopstream.lake` reads it)
        env[LAKE_CONN_ENV] = "{{ conn.%s.get_uri() }}" % LAKE_CONN_ID  # noqa: UP031 - Jinja braces
    return env


def spark_task(task_id: str, job: str, args: list[str], timeout: timedelta, comet: bool = True,
                lake: bool = False) -> SparkSubmitOperator:  # fmt: skip
    """A spark-submit of one job; `lake`: with Iceberg's runtime (the job writes the catalog's tables)."""
    jars = kafka_connector_jars(required=False) + (iceberg_jars(required=False) if lake else [])
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=SPARK_CONN_ID,
        application=str(SPARK_JOBS / f"{job}.py"),
        application_args=args,
        name=f"shopstream-{job}",
        jars=",".join(jars),
        conf=job_conf(comet, required=False),
        env_vars=_spark_env(lake),
        execution_timeout=timeout,
    )


# The failure alert's e-mail: which DAG, task and date, the try and the error (any shopstream DAG:
# `params.get`, as the maintenance DAG has no run_date).
ALERT_DATE = "{{ params.get('run_date') or data_interval_start | ds }}"
ALERT_SUBJECT = "shopstream: {{ dag.dag_id }}.{{ ti.task_id }} failed for " + ALERT_DATE
ALERT_BODY = (
    "<p>Task <b>{{ ti.task_id }}</b> of DAG <b>{{ dag.dag_id }}</b> failed for the date "
    + ALERT_DATE
    + " (run {{ run_id }}, try {{ ti.try_number }}).</p><pre>{{ exception }}</pre>"
    "<p>Its log is in the Airflow UI (the run's grid, this task).</p>"
)


def default_args() -> dict:
    alert_email = os.environ.get("SHOPSTREAM_ALERT_EMAIL")
    callbacks = [tasks.log_failure]
    if alert_email:
        callbacks.append(SmtpNotifier(to=alert_email, smtp_conn_id="smtp_default", subject=ALERT_SUBJECT,
                                      html_content=ALERT_BODY))  # fmt: skip
    return {
        "owner": "shopstream",
        "retries": int(os.environ.get("SHOPSTREAM_TASK_RETRIES", RETRIES)),
        "retry_delay": timedelta(
            seconds=float(os.environ.get("SHOPSTREAM_RETRY_DELAY_SECONDS", RETRY_DELAY.total_seconds()))
        ),
        "on_failure_callback": callbacks,
    }


def common_dag_settings() -> dict:
    """What every shopstream DAG shares: runs from START_DATE on, no catch-up by the scheduler, one
    run at a time, the tasks' retries and failure alerts."""
    return {"start_date": START_DATE, "catchup": False, "max_active_runs": 1, "default_args": default_args()}


def build_ecommerce_dag() -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="Kafka -> Spark streaming -> raw Iceberg table -> RDD + DataFrame ETL -> validation",
        doc_md=DOC,
        schedule=DAILY,
        **common_dag_settings(),
        params={
            "run_date": Param(None, type=["null", "string"], format="date", description="override the date"),
            "expected_events": Param(
                1, type="integer", minimum=0, description="minimum messages in the topic"
            ),
            "accept_data_loss": Param(
                False, type="boolean", description="go on past events Kafka deleted unread"
            ),
        },
        tags=["shopstream"],
    ) as dag:
        start = EmptyOperator(task_id="start")
        check_topic = PythonOperator(
            task_id="check_kafka_topic",
            python_callable=tasks.check_kafka_topic,
            op_kwargs={
                "topic": ORDERS_TOPIC,
                "conn_id": KAFKA_CONN_ID,
                "min_messages": "{{ params.expected_events }}",
                "accept_data_loss": "{{ params.accept_data_loss }}",
            },
        )
        stream = spark_task(
            "run_streaming_job",
            "stream_consumer",
            ["--available-now", "--topic", ORDERS_TOPIC, "--complete-day", RUN_DATE, ACCEPT_DATA_LOSS],
            timeout=timedelta(minutes=60),
            comet=False,
            lake=True,
        )
        wait_for_raw = RawDateSensor(
            task_id=PLAN_TASK,
            fs_conn_id=FS_CONN_ID,
            run_date=RUN_DATE,
            version="{{ run_id }}",
            poke_interval=int(os.environ.get("SHOPSTREAM_RAW_POKE_SECONDS", 30)),
            timeout=int(os.environ.get("SHOPSTREAM_RAW_WAIT_SECONDS", timedelta(minutes=20).total_seconds())),
            mode="reschedule",
        )
        rdd = spark_task(
            "run_rdd_etl", "batch_rdd_etl", _job_args(PLAN_TASK), timedelta(minutes=30), lake=True
        )
        df = spark_task("run_df_etl", "batch_df_etl", _job_args(PLAN_TASK), timedelta(minutes=30), lake=True)
        validate = PythonOperator(
            task_id="validate_output",
            python_callable=tasks.validate_output,
            op_kwargs={"date": RUN_DATE, "plan_task": PLAN_TASK},
        )
        end = EmptyOperator(task_id="end")

        start >> check_topic >> stream >> wait_for_raw >> rdd >> df >> validate >> end
    return dag


BACKFILL_DAG_ID = "ecommerce_backfill"
BACKFILL_CONFIG = REPO_ROOT / "config" / "backfill.json"


def backfill_dates(config_path: Path = BACKFILL_CONFIG) -> dict[str, list[str]]:
    """Range name -> its dates, from the config file (a repository file: fine to read at parse time)."""
    ranges = json.loads(config_path.read_text())["ranges"]
    result = {}
    for r in ranges:
        first, last = date.fromisoformat(r["start"]), date.fromisoformat(r["end"])
        if last < first:
            raise ValueError(f"backfill range {r['name']}: end {last} is before start {first}")
        result[r["name"]] = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return result


def build_backfill_dag(config_path: Path = BACKFILL_CONFIG) -> DAG:
    """A DAG generated from config: per configured date range a task group, per date in it the
    batch jobs and validation, re-run from the raw layer. Ranges run one after another."""
    with DAG(
        dag_id=BACKFILL_DAG_ID,
        description="Re-run the batch jobs and validation for configured date ranges",
        doc_md=f"Generated from `{config_path.name}`: one task group per date range.",
        schedule=None,
        **common_dag_settings(),
        max_active_tasks=1,  # Spark jobs one at a time: they size themselves to the machine
        tags=["shopstream", "backfill"],
    ) as dag:
        previous = EmptyOperator(task_id="start")
        for name, dates in backfill_dates(config_path).items():
            with TaskGroup(group_id=name) as group:
                for day in dates:
                    suffix = day.replace("-", "")
                    plan = PythonOperator(
                        task_id=f"plan_{suffix}",
                        python_callable=tasks.plan_date,
                        op_kwargs={"date": day, "label": "{{ run_id }}", "fs_conn_id": FS_CONN_ID},
                    )
                    args = _job_args(f"{name}.plan_{suffix}")
                    rdd = spark_task(f"rdd_{suffix}", "batch_rdd_etl", args, timedelta(minutes=30), lake=True)
                    df = spark_task(f"df_{suffix}", "batch_df_etl", args, timedelta(minutes=30), lake=True)
                    check = PythonOperator(
                        task_id=f"validate_{suffix}",
                        python_callable=tasks.validate_output,
                        op_kwargs={"date": day, "plan_task": f"{name}.plan_{suffix}"},
                    )
                    plan >> rdd >> df >> check
            previous >> group
            previous = group
        previous >> EmptyOperator(task_id="end")
    return dag
