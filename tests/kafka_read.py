"""Reads a whole topic back with the confluent-kafka client (independent of the producer)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def read_topic(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 60.0,
    login: dict[str, str] | None = None,
    group_prefix: str = "test",
) -> list[Message]:
    """All messages of `topic` (at least `expected`), in partition/offset order. `login`: SASL
    settings for a secured cluster, whose ACLs may allow only some consumer group names."""
    consumer = Consumer(
        {
            **(login or {}),
            "bootstrap.servers": bootstrap,
            "group.id": f"{group_prefix}-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # Every partition from its beginning; nothing is committed.
    partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=5000, timeout=1.0):
                assert m.error() is None, m.error()
                messages.append(Message(m.partition(), m.offset(), m.key(), m.value()))
        # Nothing beyond what was expected may be there either.
        messages.extend(
            Message(m.partition(), m.offset(), m.key(), m.value())
            for m in consumer.consume(num_messages=1000, timeout=2.0)
            if m.error() is None
        )
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m.partition, m.offset))


def redeliver(bootstrap: str, topic: str, messages: list[Message]) -> None:
    """Sends `messages` to `topic` again, byte for byte (key and value), as an upstream retry or a
    replayed batch would."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for m in messages:
        producer.produce(topic, key=m.key, value=m.value)
    assert producer.flush(30) == 0, "re-delivered messages not acknowledged"


def distinct_events(events: list[dict]) -> list[dict]:
    """Each event once, by its identity (order id, status, time): the suite's own reading of it."""
    return list({(e["order_id"], e["order_status"], e["timestamp"]): e for e in events}.values())
