"""The DAG's sensor on the raw layer, with a message a person can act on when no data comes."""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from shopstream.config import QUARANTINED, VALID, verdict_dir


def no_raw_data_message(date: str, raw_root: Path) -> str:
    """Why there is nothing to transform for `date`, and what to do about it."""
    quarantine_root = verdict_dir(raw_root, QUARANTINED)
    quarantined = sorted((quarantine_root / f"date={date}").glob("*.parquet"))
    seen = (
        f"its records all went to quarantine ({quarantine_root}/date={date}, {len(quarantined)} files: "
        "see their `reason` column)"
        if quarantined
        else "the topic held no events of that date"
    )
    return (
        f"no raw events for {date} in {verdict_dir(raw_root, VALID)}: the streaming job processed "
        "everything in the topic "
        f"and {seen}. Nothing to transform, so the ETL and validation tasks are skipped. "
        f"If events for {date} are still to come, produce them and clear this DAG run."
    )


class RawPartitionSensor(FileSensor):
    """FileSensor on the run date's raw partition. When it times out, the run's tasks downstream
    are skipped with `no_raw_data_message` instead of failing the run: an empty day is not an
    error, and retrying would wait for data that will not come."""

    template_fields = (*FileSensor.template_fields, "run_date")

    def __init__(self, *, run_date: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_date = run_date

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout as timeout:
            from airflow.providers.standard.hooks.filesystem import FSHook

            data = Path(FSHook(self.fs_conn_id).get_path())  # the Connection, at run time only
            message = no_raw_data_message(self.run_date, data / "raw")
            self.log.warning("%s", message)
            raise AirflowSkipException(message) from timeout
