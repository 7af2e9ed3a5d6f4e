"""What the DAG's Python tasks do. Kept out of the DAG file so that parsing it stays cheap and
so that the logic is testable without a scheduler."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from shopstream.airflow.connections import KAFKA_CONN_ID
from shopstream.config import ORDERS_TOPIC
from shopstream.kafka_admin import KafkaCheckError, topic_stats

log = logging.getLogger(__name__)


def kafka_config_from_connection(conn_id: str = KAFKA_CONN_ID) -> dict[str, str]:
    """Client settings kept in the kafka Connection's extras (the apache-kafka provider's format)."""
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    if "bootstrap.servers" not in extra:
        raise ValueError(f"connection {conn_id} has no 'bootstrap.servers' in its extras")
    return {str(k): str(v) for k, v in extra.items()}


def check_kafka_topic(topic: str = ORDERS_TOPIC, conn_id: str = KAFKA_CONN_ID, min_messages: int = 1) -> int:
    """Fails (without retries: retrying will not create a topic) unless the topic exists and holds
    at least `min_messages` messages. Returns the message count (pushed to XCom)."""
    from airflow.sdk.exceptions import AirflowFailException

    config = kafka_config_from_connection(conn_id)
    bootstrap = config.pop("bootstrap.servers")
    for key in ("group.id", "auto.offset.reset", "enable.auto.commit"):
        config.pop(key, None)
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
    return stats.messages


def validate_output(date: str, transformed_dir: str | None = None) -> dict:
    """Runs every data-quality check of the date's outputs; fails the run with the report."""
    from airflow.sdk.exceptions import AirflowFailException

    from shopstream.validation import validate, write_report

    transformed = Path(transformed_dir) if transformed_dir else None
    report = validate(date, transformed)
    where = write_report(report, transformed)
    log.info("%s\nreport: %s", report.text(), where)
    if not report.passed:
        failed = ", ".join(c.name for c in report.failed)
        raise AirflowFailException(f"validation failed for {date}: {failed}\n{report.text()}")
    return json.loads(report.to_json())


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
