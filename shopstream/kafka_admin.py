"""Kafka checks shared by the CLI, the DAG's `check_kafka_topic` and the tests.

python -m shopstream.kafka_admin count --topic ecommerce_orders
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from shopstream.config import ORDERS_TOPIC, kafka_client_config, split_client_config


class KafkaCheckError(RuntimeError):
    """A broker or topic is not usable; the message says which and what to do."""


@dataclass(frozen=True)
class TopicStats:
    topic: str
    partitions: int
    messages: int  # sum over partitions of (high watermark - low watermark)
    end_offsets: dict[int, int] = field(default_factory=dict)  # partition -> high watermark
    # partition -> low watermark: the first offset Kafka still holds (retention deletes before it)
    start_offsets: dict[int, int] = field(default_factory=dict)


def _client_config(bootstrap: str, extra: dict[str, str] | None, errors: list[KafkaError]) -> dict:
    # The error callback keeps librdkafka's reasons (a refused login, a plaintext client on a SASL
    # listener) for the message; without it a failed probe only says "timed out".
    return {"bootstrap.servers": bootstrap, **(extra or {}), "error_cb": errors.append}


def _unreachable(bootstrap: str, timeout: float, error: Exception, seen: list[KafkaError]) -> KafkaCheckError:
    refused = [e for e in seen if e.code() == KafkaError._AUTHENTICATION]
    if refused:
        return KafkaCheckError(
            f"Kafka at {bootstrap} refused the login ({refused[0].str()}): check sasl.username and "
            "sasl.password in the kafka_default Connection's extras / SHOPSTREAM_KAFKA_CONFIG"
        )
    reason = seen[0].str() if seen else str(error)
    return KafkaCheckError(
        f"no Kafka broker answered at {bootstrap} within {timeout:.0f} s ({reason}). "
        "Start the local one with `make broker-up`, or point the kafka_default Connection / "
        "SHOPSTREAM_KAFKA_BOOTSTRAP at a running cluster (one that requires SASL also needs "
        "security.protocol, sasl.mechanism, sasl.username and sasl.password in its extras)"
    )


def topic_stats(
    topic: str = ORDERS_TOPIC,
    bootstrap: str | None = None,
    timeout: float = 10.0,
    extra_config: dict[str, str] | None = None,
) -> TopicStats:
    """Partition and message counts of a topic; fails clearly if the broker or topic is missing,
    the login is refused or the principal may not see the topic. Without `bootstrap`, the
    configured cluster and its security settings."""
    if bootstrap is None:
        bootstrap, configured = split_client_config(kafka_client_config())
        extra_config = {**configured, **(extra_config or {})}
    errors: list[KafkaError] = []
    config = _client_config(bootstrap, extra_config, errors)
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        admin.poll(0.2)  # serves the queued error events to error_cb
        raise _unreachable(bootstrap, timeout, error, errors) from error
    topic_meta = metadata.topics.get(topic)
    if topic_meta is None or topic_meta.error is not None:
        # A secured cluster lists only the topics the principal may describe.
        user = config.get("sasl.username")
        acl_hint = f" (or {user} may not see it: it needs DESCRIBE and READ ACLs on it)" if user else ""
        raise KafkaCheckError(
            f"topic {topic} does not exist on {bootstrap}{acl_hint}. Produce events first, e.g. "
            f"`target/release/order-sim --brokers {bootstrap} --topic {topic}`"
        )
    consumer = Consumer({**config, "group.id": "shopstream-topic-stats", "enable.auto.commit": False})
    try:
        messages, starts, ends = 0, {}, {}
        for partition in topic_meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            messages, starts[partition], ends[partition] = messages + high - low, low, high
    finally:
        consumer.close()
    return TopicStats(topic=topic, partitions=len(topic_meta.partitions), messages=messages,
                      end_offsets=ends, start_offsets=starts)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kafka topic checks")
    parser.add_argument("action", choices=["count"])
    parser.add_argument("--topic", default=ORDERS_TOPIC)
    parser.add_argument("--bootstrap", default=None, help="default: SHOPSTREAM_KAFKA_BOOTSTRAP")
    args = parser.parse_args(argv)
    try:
        stats = topic_stats(args.topic, args.bootstrap)
    except KafkaCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"topic {stats.topic}: {stats.messages} messages in {stats.partitions} partitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
