"""One event contract (`contracts/order_event.schema.json`) for the Rust producer and the Spark
jobs: edge cases pushed through both, over a real broker.

- order-sim, drawing from a catalogue with unicode names and quoted CSV fields, writes events and
  updates that validate against the JSON Schema, with the names the csv module reads;
- Spark's parser agrees with the contract on each hand-made edge case (offsets in timestamps,
  3-decimal prices, unicode), and keeps what the producer wrote to the cent;
- a price finer than the cent is refused by both languages' catalogue readers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from jsonschema import Draft202012Validator

from shopstream.catalogue import CatalogueError, read_products
from shopstream.contract import CONTRACT, MONEY_SCALE, ORDER_FIELD_NAMES, UPDATE_CONTRACT
from tests.conftest import produce, run_order_sim
from tests.dates import days_ago
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration

EDGE_CATALOGUE = "\n".join(
    [
        "product_id,product_name,category,unit_price,weight",
        'P-1,"Socks, 3-pack",Fashion,9.99,3',
        'P-2,Café crème ☕,"Food ""fine""",4.5,2',
        "P-3,日本茶 (sencha),Food,12,1",
        "",
    ]
)
EVENTS = Draft202012Validator(CONTRACT)
UPDATES = Draft202012Validator(UPDATE_CONTRACT)


def contract_verdict(event: dict) -> bool:
    """Whether the contract admits `event`: the JSON Schema, the money scale (`x-money`, which
    JSON Schema's float `multipleOf` cannot state exactly) and an RFC 3339 timestamp."""
    if not EVENTS.is_valid(event):
        return False
    decimals = -Decimal(str(event["unit_price"])).as_tuple().exponent
    try:
        datetime.fromisoformat(event["timestamp"])
    except ValueError:
        return False
    return decimals <= MONEY_SCALE


@pytest.fixture
def edge_catalogue(tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(EDGE_CATALOGUE, encoding="utf-8")
    return path


def test_order_sim_writes_what_the_contract_says_with_the_catalogue_python_reads(
    kafka_broker, topic, edge_catalogue
):
    produce(kafka_broker, topic, "--products", str(edge_catalogue), "--count", "400", "--seed", "5",
            "--start", days_ago(1))  # fmt: skip
    events = [json.loads(m.value) for m in read_topic(kafka_broker.bootstrap, topic, 400)]
    updates = [json.loads(m.value) for m in read_topic(kafka_broker.bootstrap, f"{topic}-updates", 1)]
    for event in events:
        assert EVENTS.is_valid(event), list(EVENTS.iter_errors(event))
        assert contract_verdict(event), event
    for update in updates:
        assert UPDATES.is_valid(update), list(UPDATES.iter_errors(update))
    assert updates, "status changes went to the updates topic"
    # Names exactly as Python's csv module reads the file (quotes, commas, unicode).
    products = read_products(edge_catalogue)
    for event in events:
        product = products[event["product_id"]]
        assert (event["product_name"], event["category"]) == (product["product_name"], product["category"])
        assert Decimal(str(event["unit_price"])) == Decimal(product["unit_price"])
    assert {e["product_name"] for e in events} == {"Socks, 3-pack", "Café crème ☕", "日本茶 (sencha)"}


def test_spark_agrees_with_the_contract_on_each_edge_case(spark, kafka_broker, topic):
    from pyspark.sql import functions as F

    from shopstream.spark.orders import parse_orders

    day = days_ago(1)
    base = {"order_id": "ORD-1", "customer_id": "CUST-000001", "product_id": "P-2",
            "product_name": "Café crème ☕", "category": 'Food "fine"', "quantity": 2, "unit_price": 4.5,
            "order_status": "NEW", "region": "EU-W", "timestamp": f"{day}T12:00:00.000Z"}  # fmt: skip
    cases = {
        "unicode": base,
        "offset timestamp": {**base, "order_id": "ORD-2", "timestamp": f"{day}T01:30:00+02:00"},
        "3-decimal price": {**base, "order_id": "ORD-3", "unit_price": 4.505},
        "whole price": {**base, "order_id": "ORD-4", "unit_price": 12},
        "missing field": {k: v for k, v in base.items() if k != "region"},
        "unknown status": {**base, "order_id": "ORD-5", "order_status": "SHIPPED"},
        "blank id": {**base, "order_id": " "},
        "zero quantity": {**base, "order_id": "ORD-6", "quantity": 0},
    }
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)  # the broker creates none itself
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for name, event in cases.items():
        producer.produce(topic, key=name.encode(), value=json.dumps(event, ensure_ascii=False).encode())
    assert producer.flush(30) == 0
    assert len(read_topic(kafka_broker.bootstrap, topic, len(cases))) == len(cases)  # topic ready

    records = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_broker.bootstrap)
        .option("subscribe", topic)
        .load()
    )
    columns = (F.col("key_bytes").cast("string").alias("case"), "reason", "event_time", "date", "event")
    parsed = {r["case"]: r for r in parse_orders(records).select(*columns).collect()}

    assert set(parsed) == set(cases)
    for name, event in cases.items():
        assert (parsed[name]["reason"] is None) == contract_verdict(event), (name, parsed[name]["reason"])
    assert parsed["3-decimal price"]["reason"] == "unit_price has more than 2 decimals: 4.505"
    # An offset is honoured: 01:30+02:00 is 23:30 UTC the day before, and files under that date.
    in_utc = datetime.fromisoformat(f"{day}T01:30:00+02:00").astimezone(UTC)
    assert parsed["offset timestamp"]["event_time"].replace(tzinfo=UTC) == in_utc
    assert parsed["offset timestamp"]["date"] == in_utc.date()
    unicode = parsed["unicode"]["event"]
    assert (unicode["product_name"], unicode["category"]) == ("Café crème ☕", 'Food "fine"')
    assert unicode["unit_price"] == Decimal("4.50") and parsed["whole price"]["event"]["unit_price"] == 12
    assert set(ORDER_FIELD_NAMES) <= set(unicode.asDict())


def test_a_price_finer_than_the_cent_is_refused_by_both_catalogue_readers(tmp_path):
    path = tmp_path / "products.csv"
    path.write_text("product_id,product_name,category,unit_price,weight\nP-9,Tea,Food,9.995,1\n")
    with pytest.raises(CatalogueError, match=r"P-9 costs 9\.995: at most 2 decimals"):
        read_products(path)
    result = run_order_sim("--products", str(path), "--dry-run", "--count", "10")
    assert result.returncode != 0
    assert "product P-9" in result.stderr and "more than 2 decimals" in result.stderr, result.stderr
