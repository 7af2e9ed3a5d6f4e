"""The DAG's sensor on the raw layer: waits for the run date's committed raw rows (in the raw
table), then plans the run (which dates to transform, see `shopstream.publication.plan_run`), with
a message a person can act on when no data comes."""

from __future__ import annotations

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from shopstream import raw_table
from shopstream.airflow.connections import use_lake_connection
from shopstream.airflow.tasks import data_paths
from shopstream.config import QUARANTINED, VALID, VERDICT
from shopstream.lake import spark_table


def no_raw_data_message(date: str, quarantined: int) -> str:
    """Why there is nothing to transform for `date` (`quarantined`: its records in quarantine),
    and what to do about it."""
    table = spark_table(raw_table.RAW_EVENTS)
    seen = (
        f"its records all went to quarantine ({quarantined} records in {table} WHERE {VERDICT} = "
        f"'{QUARANTINED}' AND date = DATE '{date}': see their `reason` column)"
        if quarantined
        else "the topic held no events of that date"
    )
    return (
        f"no raw events for {date} in {table}: the streaming job processed everything in the topic "
        f"and {seen}. Nothing to transform, so the ETL and validation tasks are skipped. "
        f"If events for {date} are still to come, produce them and clear this DAG run."
    )


def raw_date_folder(run_date: str) -> str:
    """Where the table's files of `run_date`'s valid rows are, relative to the data root (the fs
    Connection's path) for the local warehouse (`data/warehouse`); `run_date` may be a template."""
    return f"warehouse/*/{raw_table.RAW_EVENTS}/data/{VERDICT}={VALID}/date={run_date}"


class RawDateSensor(FileSensor):
    """The seed's FileSensor, on the run date's valid rows of the raw table (`raw_date_folder`
    names their files under the fs Connection's path). It succeeds once the table's current
    snapshot holds rows of `run_date` (its partition metadata, through the catalog): a file is not
    enough (an uncommitted batch leaves files too, and a warehouse may be object storage).
    Then plans the run: its date and every date of the lookback window whose raw rows changed
    since publication (late data), pinned as the inputs of the run's version; the plan is its
    XCom. When no rows of the run date come, the run still transforms the late dates if there are
    any, else its tasks downstream are skipped with `no_raw_data_message`: an empty day is not an
    error."""

    template_fields = (*FileSensor.template_fields, "run_date", "version")

    def __init__(self, *, fs_conn_id: str, run_date: str, version: str, **kwargs) -> None:
        super().__init__(filepath=raw_date_folder(run_date), fs_conn_id=fs_conn_id, **kwargs)
        self.run_date, self.version = run_date, version

    def poke(self, context) -> bool:
        use_lake_connection()
        return raw_table.date_rows(raw_table.load(), self.run_date) > 0

    def execute(self, context):
        from shopstream.publication import new_version, plan_run

        try:
            super().execute(context)
            arrived = True
        except AirflowSensorTimeout:
            arrived = False
        use_lake_connection()  # the plan reads the raw table and the publications table
        layers = data_paths(self.fs_conn_id)
        plan = plan_run(layers.transformed, self.run_date, new_version(self.version))
        if not plan["dates"]:
            quarantined = raw_table.date_rows(raw_table.load(), self.run_date, QUARANTINED)
            message = no_raw_data_message(self.run_date, quarantined)
            self.log.warning("%s", message)
            raise AirflowSkipException(message)
        if not arrived:
            self.log.warning("no raw events for %s: transforming only the late dates", self.run_date)
        for date in plan["dates"]:
            why = (
                "late events or re-deliveries since publication" if date in plan["late_dates"] else "run date"
            )
            self.log.info("will transform %s (%s raw rows; %s)", date, plan["raw_rows"][date], why)
        return plan
