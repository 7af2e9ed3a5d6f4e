"""DAG runs of `ecommerce_pipeline` made by a running Airflow deployment (`make airflow-up`, or
your own): the scheduler's run of a closed day, a manual run naming a date, and backfills, which
Airflow's scheduler makes (`airflow backfill create`). Each is waited for and summed up as a
`RunResult` (state, each task's state and seconds).

    python -m shopstream.devstack.airflow_runs closed-day            # the scheduler's run (make run)
    python -m shopstream.devstack.airflow_runs date 2026-11-25       # a manual run naming a date
    python -m shopstream.devstack.airflow_runs backfill 2026-11-20 2026-11-22   # make backfill

The deployment must be up (`make airflow-up`): these commands only ask it for runs. A run's
date is the day it transforms (its data interval); for this DAG's daily timetable the scheduler
makes that run at the next midnight, which is how a backfill's dates map to Airflow's range.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from shopstream.airflow.pipeline import DAG_ID, TASK_IDS
from shopstream.airflow.scheduling import midnight
from shopstream.devstack.airflow_deployment import AirflowDeployment, AirflowDeploymentError
from shopstream.files import write_json_atomically

RUN_TIMEOUT_S = 1800
POLL_S = 3.0
FINISHED = ("success", "failed")


@dataclass(frozen=True)
class TaskResult:
    state: str
    seconds: float


@dataclass(frozen=True)
class RunResult:
    run_id: str
    date: str  # the day the run transformed (its logical date, or the date a manual run named)
    state: str
    tasks: dict[str, TaskResult]

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def _instant(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _seconds(row: dict) -> float:
    start, end = _instant(row.get("start_date")), _instant(row.get("end_date"))
    return (end - start).total_seconds() if start and end else 0.0


def result_of(deployment: AirflowDeployment, run: dict, date: str | None = None) -> RunResult:
    rows = deployment.task_rows(DAG_ID, run["run_id"])
    tasks = {row["task_id"]: TaskResult(row["state"] or "none", _seconds(row)) for row in rows}
    ordered = {task: tasks[task] for task in TASK_IDS if task in tasks}
    return RunResult(run["run_id"], date or (run["logical_date"] or "")[:10], run["state"], ordered)


def wait_for(deployment: AirflowDeployment, wanted: Callable[[dict], bool], count: int, since: dt.datetime,
             timeout: float = RUN_TIMEOUT_S) -> list[dict]:  # fmt: skip
    """The DAG's `count` runs that `wanted` picks, once each has finished after `since` (a run
    cleared to run again counts when it finishes anew), oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in deployment.dag_runs(DAG_ID) if wanted(r)]
        done = [r for r in runs if r["state"] in FINISHED and (_instant(r["end_date"]) or since) > since]
        if len(done) >= count:
            return sorted(done, key=lambda r: r["logical_date"] or "")
        if time.monotonic() > deadline:
            raise AirflowDeploymentError(
                f"{count} run(s) of {DAG_ID} did not finish within {timeout:.0f} s (now: "
                f"{[(r['run_id'], r['state']) for r in runs]}); see the UI at {deployment.url}"
            )
        time.sleep(POLL_S)


def midnight_after(day: dt.date) -> str:
    return midnight(day + dt.timedelta(days=1)).isoformat()


def of_date(day: dt.date) -> Callable[[dict], bool]:
    """Picks the runs whose data interval is `day` (the scheduler's and backfills')."""
    return lambda run: (
        (run["logical_date"] or "")[:10] == day.isoformat() and not run["run_id"].startswith("manual")
    )


def closed_day(deployment: AirflowDeployment, day: dt.date, timeout: float = RUN_TIMEOUT_S) -> RunResult:
    """The scheduler's run for `day` (the closed day: the DAG, unpaused, makes it by itself). If
    it had already finished before this call, it is cleared, so the scheduler runs it again."""
    since = dt.datetime.now(dt.UTC)
    deadline = time.monotonic() + 60
    while not (runs := [r for r in deployment.dag_runs(DAG_ID) if of_date(day)(r)]):
        if time.monotonic() > deadline:
            raise AirflowDeploymentError(
                f"the scheduler made no run of {DAG_ID} for {day} within 60 s: is the DAG unpaused "
                f"(the deployment unpauses it) and {day} the day that closed last?"
            )
        time.sleep(POLL_S)
    if all(r["state"] in FINISHED for r in runs):
        start = midnight(day).isoformat()
        deployment.airflow("tasks", "clear", "--yes", "-s", start, "-e", start, DAG_ID)
    [run] = wait_for(deployment, of_date(day), 1, since, timeout)[-1:]
    return result_of(deployment, run)


def manual(deployment: AirflowDeployment, day: dt.date, conf: dict | None = None,
           timeout: float = RUN_TIMEOUT_S) -> RunResult:  # fmt: skip
    """A manual run naming `day` (the `run_date` param), waited for."""
    since = dt.datetime.now(dt.UTC)
    run_id = deployment.trigger(DAG_ID, {"run_date": day.isoformat(), **(conf or {})})
    [run] = wait_for(deployment, lambda r: r["run_id"] == run_id, 1, since, timeout)
    return result_of(deployment, run, day.isoformat())


def backfill(deployment: AirflowDeployment, first: dt.date, last: dt.date,
             timeout: float = RUN_TIMEOUT_S) -> list[RunResult]:  # fmt: skip
    """An Airflow backfill of the days `first`..`last`: the scheduler runs them oldest first, one
    at a time (the runs' ingests share the raw sink), re-running days that already ran."""
    if last < first:
        raise ValueError(f"backfill range {first}..{last} is empty: the first date is after the last")
    since = dt.datetime.now(dt.UTC)
    deployment.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", midnight_after(first),
                       "--to-date", midnight_after(last), "--max-active-runs", "1",
                       "--reprocess-behavior", "completed")  # fmt: skip
    days = {(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)}

    def wanted(run: dict) -> bool:
        return run["run_id"].startswith("backfill__") and (run["logical_date"] or "")[:10] in days

    runs = wait_for(deployment, wanted, len(days), since, timeout)
    return [result_of(deployment, run) for run in runs]


def print_result(result: RunResult) -> None:
    print(f"\nDAG {DAG_ID}, run {result.run_id} for {result.date}: {result.state.upper()}")
    for task_id, task in result.tasks.items():
        print(f"  {task_id:<20} {task.state:<16} {task.seconds:>6.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_subparsers(dest="what", required=True)
    what.add_parser("closed-day", help="wait for the scheduler's run of the day that closed last")
    one = what.add_parser("date", help="a manual run that transforms DATE")
    one.add_argument("date", type=dt.date.fromisoformat)
    many = what.add_parser("backfill", help="an Airflow backfill of FIRST..LAST, oldest first")
    many.add_argument("first", type=dt.date.fromisoformat)
    many.add_argument("last", type=dt.date.fromisoformat)
    parser.add_argument("--result-file", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    deployment = AirflowDeployment()
    if not deployment.comes_up():
        print(f"the Airflow deployment is not running: `make airflow-up` starts it ({deployment.describe()})")
        return 2
    if args.what == "backfill":
        results = backfill(deployment, args.first, args.last)
    elif args.what == "date":
        results = [manual(deployment, args.date)]
    else:
        results = [closed_day(deployment, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))]
    for result in results:
        print_result(result)
    print(f"\nthe runs in the UI: {deployment.url}/dags/{DAG_ID}")
    if args.result_file:
        write_json_atomically(args.result_file, {"runs": [asdict(r) for r in results]})
    return 0 if all(r.succeeded for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
