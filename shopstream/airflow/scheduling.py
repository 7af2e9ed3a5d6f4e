"""What the scheduler does with the `ecommerce_pipeline` DAG, asked of the DAG's own timetable, so
that local runs and tests run exactly the run the scheduler would create."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.timetables.base import DagRunInfo


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def next_scheduled_run(dag, previous_day: dt.date | None = None) -> DagRunInfo:
    """The next run the scheduler creates for `dag` (timetable, start date and catchup as the DAG
    declares them): after the run that transformed `previous_day`, or, for a DAG that has not run
    (None), the one it creates now."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    last = None
    if previous_day is not None:
        last = DataInterval(midnight(previous_day), midnight(previous_day + dt.timedelta(days=1)))
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)
    info = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=last, restriction=restriction
    )
    if info is None:
        raise RuntimeError(f"the timetable of {dag.dag_id} schedules no further run")
    return info


def scheduled_run_for(dag, day: dt.date) -> DagRunInfo:
    """The run the scheduler created (or creates) at the midnight after `day`, whose data
    interval is `day`: asked of the timetable as a scheduler that has run every day before would
    (catchup's replay of the past, so that any closed day's run can be reproduced)."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    previous = DataInterval(midnight(day - dt.timedelta(days=1)), midnight(day))
    info = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=previous,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
    )
    if info is None or info.data_interval.start != midnight(day):
        raise RuntimeError(f"the timetable of {dag.dag_id} creates no run for {day}: {info}")
    return info


class BeforeStartDate(ValueError):
    """A date the DAG would create no task instances for (its run would 'succeed' doing nothing)."""


def check_not_before_start(dag, day: dt.date) -> None:
    start = dag.start_date.date()
    if day < start:
        raise BeforeStartDate(
            f"{day} is before the start date of {dag.dag_id} ({start}): Airflow would create no task "
            "instances and report an empty success. Move START_DATE in shopstream/airflow/pipeline.py "
            "earlier to process it."
        )
