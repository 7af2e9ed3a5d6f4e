"""The Rust producer against a real Kafka broker, read back with an independent client."""

from __future__ import annotations

import json
import time

import pytest

from shopstream.contract import CANCELLED, NEW, ORDER_FIELD_NAMES, RETURNED
from shopstream.devstack.processes import free_port
from shopstream.kafka_admin import KafkaCheckError, topic_stats
from tests import oracle
from tests.conftest import produce, run_order_sim
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration

START = "2026-11-20"


def test_5000_events_are_valid_ordered_and_reproducible(kafka_broker, topic):
    summary = produce(kafka_broker, topic, "--count", "5000", "--seed", "7", "--start", START)
    assert summary["delivered"] == summary["generated"] == 5000
    assert summary["failed"] == summary["malformed"] == 0

    messages = read_topic(kafka_broker.bootstrap, topic, expected=5000)
    assert len(messages) == 5000
    assert {m.partition for m in messages} == {0, 1, 2}, "default of 3 partitions, all used"

    events = [json.loads(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert oracle.problems(message.value) == [], event
        assert tuple(event) == ORDER_FIELD_NAMES
        assert message.key.decode() == event["order_id"], "keyed by order_id"
        assert event["timestamp"].startswith(START)

    statuses = {e["order_status"] for e in events}
    assert statuses == {NEW, CANCELLED, RETURNED}

    # Keyed by order id, so an order's events share a partition and arrive in order there.
    first_new: dict[str, dict] = {}
    for event in events:
        oid = event["order_id"]
        if event["order_status"] == NEW:
            assert oid not in first_new, f"{oid} NEW twice"
            first_new[oid] = event
            continue
        original = first_new.get(oid)
        assert original is not None, f"{event['order_status']} of {oid} has no earlier NEW"
        assert event["timestamp"] >= original["timestamp"]
        same = {k: v for k, v in event.items() if k not in ("order_status", "timestamp")}
        assert same == {k: v for k, v in original.items() if k not in ("order_status", "timestamp")}

    # Each product always has one name, category and price.
    per_product = {(e["product_id"], e["product_name"], e["category"], e["unit_price"]) for e in events}
    assert len(per_product) == len({e["product_id"] for e in events})

    second_topic = f"{topic}-again"
    produce(kafka_broker, second_topic, "--count", "5000", "--seed", "7", "--start", START)
    again = read_topic(kafka_broker.bootstrap, second_topic, expected=5000)
    assert [(m.partition, m.key, m.value) for m in again] == [(m.partition, m.key, m.value) for m in messages]


def test_malformed_events_are_counted_and_really_broken(kafka_broker, topic):
    summary = produce(kafka_broker, topic, "--count", "4000", "--seed", "11", "--malformed-ratio", "0.05",
                      "--out-of-domain-ratio", "0.02", "--start", START)  # fmt: skip
    messages = read_topic(kafka_broker.bootstrap, topic, expected=4000)
    broken = [m for m in messages if oracle.problems(m.value)]
    assert len(messages) == summary["delivered"] == 4000
    assert len(broken) == summary["malformed"] + summary["out_of_domain"]
    assert 120 < summary["malformed"] < 300 and 40 < summary["out_of_domain"] < 130
    reasons = {oracle.problems(m.value)[0] for m in broken}
    assert {"not valid JSON", "unknown status", "quantity not positive"} <= reasons


def test_topic_is_created_with_requested_partitions_and_counted(kafka_broker, topic):
    produce(kafka_broker, topic, "--count", "300", "--partitions", "5", "--seed", "1")
    stats = topic_stats(topic, kafka_broker.bootstrap)
    assert (stats.partitions, stats.messages) == (5, 300)


def test_missing_topic_and_missing_broker_are_named(kafka_broker):
    with pytest.raises(KafkaCheckError, match="topic no-such-topic does not exist"):
        topic_stats("no-such-topic", kafka_broker.bootstrap)
    with pytest.raises(KafkaCheckError, match="make broker-up"):
        topic_stats("ecommerce_orders", f"127.0.0.1:{free_port()}", timeout=3)


def test_no_broker_fails_fast_naming_the_address():
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_order_sim("--brokers", address, "--count", "10", timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert address in result.stderr
    assert "make broker-up" in result.stderr


def test_dry_run_generates_without_kafka():
    result = run_order_sim("--dry-run", "--count", "20000", "--seed", "3", "--brokers", "127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True
    assert (summary["generated"], summary["delivered"]) == (20000, 0)
