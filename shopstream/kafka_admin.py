"""Kafka checks shared by the CLI, the DAG's `check_kafka_topic` and the tests.

python -m shopstream.kafka_admin count --topic ecommerce_orders
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from shopstream.config import ORDERS_TOPIC, kafka_bootstrap


class KafkaCheckError(RuntimeError):
    """A broker or topic is not usable; the message says which and what to do."""


@dataclass(frozen=True)
class TopicStats:
    topic: str
    partitions: int
    messages: int  # sum over partitions of (high watermark - low watermark)


def _client_config(bootstrap: str, extra: dict[str, str] | None) -> dict[str, str]:
    return {"bootstrap.servers": bootstrap, **(extra or {})}


def topic_stats(
    topic: str = ORDERS_TOPIC,
    bootstrap: str | None = None,
    timeout: float = 10.0,
    extra_config: dict[str, str] | None = None,
) -> TopicStats:
    """Partition and message counts of a topic; fails clearly if the broker or topic is missing."""
    bootstrap = bootstrap or kafka_bootstrap()
    config = _client_config(bootstrap, extra_config)
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout)
    except KafkaException as error:
        raise KafkaCheckError(
            f"no Kafka broker answered at {bootstrap} within {timeout:.0f} s ({error}). "
            "Start the local one with `make broker-up`, or point the kafka_default Connection / "
            "SHOPSTREAM_KAFKA_BOOTSTRAP at a running cluster"
        ) from error
    topic_meta = metadata.topics.get(topic)
    if topic_meta is None or topic_meta.error is not None:
        raise KafkaCheckError(
            f"topic {topic} does not exist on {bootstrap}. Produce events first, e.g. "
            f"`target/release/order-sim --brokers {bootstrap} --topic {topic}`"
        )
    consumer = Consumer({**config, "group.id": "shopstream-topic-stats", "enable.auto.commit": False})
    try:
        messages = 0
        for partition in topic_meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            messages += high - low
    finally:
        consumer.close()
    return TopicStats(topic=topic, partitions=len(topic_meta.partitions), messages=messages)


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
