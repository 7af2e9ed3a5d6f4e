"""What the DAG's Python tasks do. Kept out of the DAG file so that parsing it stays cheap and
so that the logic is testable without a scheduler."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from shopstream.airflow.connections import FS_CONN_ID, KAFKA_CONN_ID, use_lake_connection
from shopstream.config import INGEST_QUERY, ORDERS_TOPIC, Paths, paths, split_client_config
from shopstream.kafka_admin import KafkaCheckError, topic_stats

log = logging.getLogger(__name__)


def kafka_config_from_connection(conn_id: str = KAFKA_CONN_ID) -> dict[str, str]:
    """Client settings kept in the kafka Connection's extras (the apache-kafka provider's format)."""
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    if "bootstrap.servers" not in extra:
        raise ValueError(f"connection {conn_id} has no 'bootstrap.servers' in its extras")
    return {str(k): str(v) for k, v in extra.items()}


def check_kafka_topic(topic: str = ORDERS_TOPIC, conn_id: str = KAFKA_CONN_ID, min_messages: int = 1,
                      accept_data_loss: bool | str = False) -> int:  # fmt: skip
    """Fails (without retries: retrying will not create a topic) unless the topic exists and holds
    at least `min_messages` messages, and, unless the run accepts data loss, unless the ingest can
    read on from its checkpoint (`source_gaps.source_gaps`: events the retention deleted unread, a
    topic created again). Returns the message count (pushed to XCom)."""
    from airflow.sdk.exceptions import AirflowFailException

    bootstrap, config = split_client_config(kafka_config_from_connection(conn_id))
    try:
        stats = topic_stats(topic, bootstrap, extra_config=config)
    except KafkaCheckError as error:
        raise AirflowFailException(str(error)) from error
    log.info(
        "topic %s on %s: %d messages in %d partitions", topic, bootstrap, stats.messages, stats.partitions
    )
    if stats.messages < int(min_messages):
        raise AirflowFailException(
            f"topic {topic} holds {stats.messages} messages, fewer than the {min_messages} expected: "
            "has the producer (order-sim) run?"
        )
    if str(accept_data_loss).lower() not in ("true", "1"):  # a rendered param is text
        check_ingest_can_read_on(topic, bootstrap, stats)
    return stats.messages


def check_ingest_can_read_on(topic: str, bootstrap: str, stats) -> None:
    """The ingest's own check (`source_gaps.check_source_continuity`) before `run_streaming_job`
    starts a JVM, and failing without retries: retrying will not bring deleted events back."""
    from airflow.sdk.exceptions import AirflowFailException

    from shopstream.data_loss import ingest_ledger
    from shopstream.spark.ingest_guard import committed_offsets
    from shopstream.spark.source_gaps import refusal, source_gaps

    layers = paths()  # as the ingest job finds its checkpoint and sink
    gaps = source_gaps(committed_offsets(layers.ingest_checkpoints / INGEST_QUERY), topic, stats)
    if gaps:
        raise AirflowFailException(str(refusal(topic, bootstrap, gaps, ingest_ledger())))


def data_paths(fs_conn_id: str = FS_CONN_ID) -> Paths:
    """The data layers under the fs Connection's path (read at run time only): the main DAG's
    sensor and the backfill's plans find the raw sink the same way, so a deployment sets it once."""
    from airflow.providers.standard.hooks.filesystem import FSHook

    return replace(paths(), data=Path(FSHook(fs_conn_id).get_path()))


def plan_date(date: str, label: str, fs_conn_id: str = FS_CONN_ID) -> dict:
    """A plan of one date (the backfill DAG's): its raw snapshot pinned in a new version."""
    from shopstream.publication import new_version, plan_run

    use_lake_connection()
    layers = data_paths(fs_conn_id)
    plan = plan_run(layers.transformed, date, new_version(label), lookback=0)
    if not plan["dates"]:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"no raw events for {date} in the raw table: nothing to transform")
    log.info("version %s: %s (%s raw rows)", plan["version"], date, plan["raw_rows"].get(date, 0))
    return plan


def validate_output(
    date: str,
    version: str | None = None,
    plan_task: str | None = None,
    transformed_dir: str | None = None,
    ti=None,
) -> dict:
    """Checks the outputs the run wrote (the dates and version its plan task pushed, else
    `version` for `date`) and publishes each date that passes: readers never see outputs that
    failed their checks, and one failing date (a late-changed one of the lookback) never holds
    back the others. Fails the run naming every date that failed, with its reports. Without a
    plan or version, checks the published outputs of `date`."""  # fmt: skip
    from airflow.sdk.exceptions import AirflowFailException

    from shopstream.validation import publish_validated, validate, write_report

    use_lake_connection()
    transformed = Path(transformed_dir) if transformed_dir else None
    plan = ti.xcom_pull(task_ids=plan_task) if ti is not None and plan_task else None
    dates, version = (plan["dates"], plan["version"]) if plan else ([date], version)
    reports = [validate(day, transformed, version=version) for day in dates]
    for report in reports:
        log.info("%s\nreport: %s", report.text(), write_report(report, transformed))
    if version:
        for report in reports:  # each date published if it passed; a failure recorded as one
            record = publish_validated(report, transformed)
            verb = "published" if record.passed else "recorded the failed validation of"
            log.info("%s %s: version %s, snapshots %s", verb, report.date, record.version, record.snapshots)
        vacuum_versions(transformed)
    failed = [f"{r.date}: {', '.join(c.name for c in r.failed)}" for r in reports if not r.passed]
    if failed:
        done = [r.date for r in reports if r.passed]
        texts = "\n".join(r.text() for r in reports if not r.passed)
        raise AirflowFailException(
            f"validation failed, not published: {'; '.join(failed)}"
            f" (published: {', '.join(done) if version and done else 'none'})\n{texts}"
        )
    return {r.date: r.as_dict() for r in reports}


def vacuum_versions(transformed: Path | None) -> None:
    """Every publication also deletes what readers no longer see past the retention (superseded
    and failed versions): else each daily run's version stays forever. A clean-up that fails
    leaves a warning, not a failed run: the dates are published, the next run tries again."""
    from shopstream import publication

    root = publication.transformed_root(transformed)
    try:
        deleted = publication.vacuum(root)
    except OSError as error:
        log.warning("vacuum of old versions failed (the next publication retries): %s", error)
        return
    if deleted:
        log.info("vacuumed %d folders of versions older than %s", len(deleted), publication.DEFAULT_RETENTION)


def log_failure(context) -> None:
    """Failure callback: always leaves a clear line in the log, whether or not SMTP is set up."""
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    log.error(
        "ALERT: task %s of DAG %s failed for %s (try %s): %s",
        getattr(ti, "task_id", "?"),
        getattr(ti, "dag_id", "?"),
        context.get("ds"),
        getattr(ti, "try_number", "?"),
        exception,
    )
