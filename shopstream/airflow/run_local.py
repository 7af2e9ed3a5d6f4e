"""Runs the `ecommerce_pipeline` DAG once, for real, with an embedded Airflow (SQLite metadata DB in
the state folder, Connections for the local stack), and prints what every task did.

    python -m shopstream.airflow.run_local --scheduled        # the run the scheduler creates now
    python -m shopstream.airflow.run_local --date 2026-11-25  # a manual run naming the date

A scheduled run transforms the day that has just closed (the run's data interval, taken from the
DAG's own timetable); a manual run transforms the date it names (the `run_date` param).

The Kafka broker must be running (`make broker-up`); `make run` does all of it. Airflow reads its
configuration from the environment when first imported, so the runner prepares the environment
and then runs the DAG in a child interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from shopstream.airflow.connections import as_environment, local_connections
from shopstream.config import REPO_ROOT, paths
from shopstream.files import write_json_atomically

DAGS_FOLDER = REPO_ROOT / "dags"


def airflow_environment(spark_master: str | None, retries: int | None = None) -> dict[str, str]:
    """The process environment of an embedded Airflow whose state lives in .state/airflow."""
    home = paths().state / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # spark-submit and the venv's tools first on PATH, whatever shell started us.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
        }
    )
    env.update(as_environment(local_connections(spark_master)))
    if retries is not None:
        env["SHOPSTREAM_TASK_RETRIES"] = str(retries)
    return env


def migrate_db(env: dict[str, str]) -> None:
    """`airflow db migrate`, unless this Airflow version already brought this very database to its
    schema: the command costs ≈ 5 s even when there is nothing to do, on every run."""
    database = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    stamp = database.with_name("airflow.db.migrated")
    if stamp.exists() and json.loads(stamp.read_text()) == migration_stamp(database):
        return
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    stamp.write_text(json.dumps(migration_stamp(database)))


def migration_stamp(database: Path) -> dict[str, str | None]:
    """What a migration leaves behind: the installed Airflow and the database's schema revision."""
    return {"airflow": importlib.metadata.version("apache-airflow"), "revision": schema_revision(database)}


def schema_revision(database: Path) -> str | None:
    """The schema revision Airflow's migrations left in the SQLite database (None: no database)."""
    if not database.exists():
        return None
    with contextlib.closing(sqlite3.connect(database)) as db:
        try:
            rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.OperationalError:  # not migrated at all
            return None
    return rows[0][0] if rows else None


def _run_dag_in_this_process(date: str | None, run_conf: dict, only: str | None,
                             scheduled_for: str | None = None) -> int:  # fmt: skip
    """Child side: Airflow is configured by the environment now. `date` None: the run the
    scheduler creates now (its data interval is the closed day), or, with `scheduled_for`, the
    one it created for that day; else a manual run naming `date`, whose logical date is the
    midnight after it (the scheduled run of that date's)."""
    from airflow.dag_processing.dagbag import DagBag

    from shopstream.airflow.scheduling import (
        BeforeStartDate,
        check_not_before_start,
        midnight,
        next_scheduled_run,
        scheduled_run_for,
    )

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        print(json.dumps({"import_errors": {str(k): v for k, v in bag.import_errors.items()}}))
        return 2
    dag = bag.dags["ecommerce_pipeline"]
    if date is None:
        info = (
            scheduled_run_for(dag, dt.date.fromisoformat(scheduled_for))
            if scheduled_for
            else next_scheduled_run(dag)
        )
        run_after, interval = info.run_after, info.data_interval
    else:
        day = dt.date.fromisoformat(date)
        try:
            check_not_before_start(dag, day)
        except BeforeStartDate as error:
            refused = {"state": "refused", "date": date, "error": str(error)}
            print("SHOPSTREAM_DAG_RESULT " + json.dumps(refused))
            return 2
        run_after, interval = midnight(day + dt.timedelta(days=1)), None
        run_conf = {**run_conf, "run_date": date}
    # --only TASK: every other task is marked successful without running (re-checking outputs).
    skip = f"^(?!{only}$).*" if only else None
    # dag.test makes a manual run whose data interval the timetable infers from its logical date:
    # for the run_after of a scheduled run that is the scheduled run's very interval.
    run = dag.test(logical_date=run_after, run_after=run_after, run_conf=run_conf, mark_success_pattern=skip)
    if interval is not None and (run.data_interval_start, run.data_interval_end) != tuple(interval):
        raise RuntimeError(f"the run's data interval is not the scheduler's {interval}")
    transformed = date or run.data_interval_start.date().isoformat()
    instances = {ti.task_id: ti for ti in run.get_task_instances()}
    tasks = {
        task.task_id: {
            "state": str(instances[task.task_id].state),
            "seconds": round(instances[task.task_id].duration or 0, 1),
            "tries": instances[task.task_id].try_number,
        }
        for task in dag.topological_sort()
        if task.task_id in instances
    }
    result = {
        "state": str(run.state),
        "date": transformed,
        "run_type": "manual" if date else "scheduled",
        "data_interval": [run.data_interval_start.isoformat(), run.data_interval_end.isoformat()],
        "tasks": tasks,
    }
    print("SHOPSTREAM_DAG_RESULT " + json.dumps(result))
    return 0 if str(run.state) == "success" else 1


def run_dag(date: str | None, spark_master: str | None = None, expected_events: int = 1,
            retries: int | None = None, only: str | None = None, quiet: bool = False,
            scheduled_for: str | None = None) -> dict:  # fmt: skip
    """Parent side: prepares Airflow and runs the DAG (a manual run naming `date`; None: the run
    the scheduler creates now, or the one it created for the day `scheduled_for`); returns the
    run's result."""
    env = airflow_environment(spark_master, retries)
    migrate_db(env)
    conf = {"expected_events": expected_events}
    command = [sys.executable, "-m", "shopstream.airflow.run_local", "--child"]
    if date is not None:
        command += ["--date", date]
    else:
        command += ["--scheduled", *([scheduled_for] if scheduled_for else [])]
    command += ["--conf", json.dumps(conf), *(["--only", only] if only else [])]
    child = subprocess.run(
        command,
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None,
    )  # fmt: skip
    for line in child.stdout.splitlines():
        if line.startswith("SHOPSTREAM_DAG_RESULT "):
            return json.loads(line.split(" ", 1)[1])
        if not quiet:
            print(line, file=sys.stderr)  # Airflow's own log: kept apart from the result
    raise RuntimeError(f"the DAG run did not report a result (exit code {child.returncode})")


def print_result(result: dict) -> None:
    if result["state"] == "refused":
        print(f"\nDAG ecommerce_pipeline for {result['date']}: REFUSED: {result['error']}")
        return
    print(f"\nDAG ecommerce_pipeline, {result['run_type']} run for {result['date']} "
          f"(data interval {' .. '.join(result['data_interval'])}): {result['state'].upper()}")  # fmt: skip
    for task_id, info in result["tasks"].items():
        print(f"  {task_id:<20} {info['state']:<10} {info['seconds']:>6.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", help="a manual run that transforms this date (YYYY-MM-DD)")
    when.add_argument("--scheduled", nargs="?", const="now", metavar="DAY",
                      help="the run the scheduler creates now (it transforms the closed day), "
                      "or the one it created for DAY")  # fmt: skip
    parser.add_argument("--spark-master", default=None, help="default: the profile's (local[2])")
    parser.add_argument("--expected-events", type=int, default=1)
    parser.add_argument("--retries", type=int, default=None, help="override the DAG's retries (tests use 0)")
    parser.add_argument("--only", default=None, help="run just this task, marking the others successful")
    parser.add_argument(
        "--result-file", type=Path, default=None, help="also write the runs' results (tasks, seconds) as JSON"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--conf", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scheduled_for = args.scheduled if args.scheduled not in (None, "now") else None
    if args.child:
        return _run_dag_in_this_process(args.date, json.loads(args.conf), args.only, scheduled_for)
    options = {"spark_master": args.spark_master, "expected_events": args.expected_events,
               "retries": args.retries, "only": args.only}  # fmt: skip
    # --scheduled leaves args.date None: run_dag then runs the scheduler's run.
    results = [run_dag(args.date, scheduled_for=scheduled_for, **options)]
    for result in results:
        print_result(result)
    if args.result_file:
        write_json_atomically(args.result_file, {"runs": results})
    return 0 if all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
