"""Parsing and validation of Kafka records (real Spark, static input: no broker needed)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from shopstream.config import QUARANTINED, VERDICT
from shopstream.spark.orders import QUARANTINE_COLUMNS, RAW_COLUMNS, parse_orders, sink_rows, valid_rows
from shopstream.spark.stream_progress import log_progress

GOOD = {
    "order_id": "ORD-00000000000000A1",
    "customer_id": "CUST-000001",
    "product_id": "P-1001",
    "product_name": "Wireless Earbuds Pro",
    "category": "Electronics",
    "quantity": 2,
    "unit_price": 129.99,
    "order_status": "NEW",
    "region": "DE",
    "timestamp": "2026-11-20T23:59:59.999Z",
}


def with_(**changes):
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...})


CASES = [
    (json.dumps(GOOD), None),
    ('{"order_id": "ORD-1", "customer', "invalid JSON (rule one-object)"),
    ("<<not json at all>>", "invalid JSON (rule one-object)"),
    (with_(quantity="two"), "quantity has the wrong type: string, not integer"),
    (with_(unit_price="free"), "unit_price has the wrong type: string, not number"),
    # Spark's own reader would coerce these: the contract's types are exact.
    (with_(unit_price="10.00"), "unit_price has the wrong type: string, not number"),
    (with_(region={"code": "US-E"}), "region has the wrong type: object, not string"),
    (with_(quantity=2.5), "quantity is not a whole number: 2.5"),
    (json.dumps(GOOD) + " {}", "invalid JSON (rule one-object)"),
    ("[" + json.dumps(GOOD) + "]", "not a JSON object (rule one-object)"),
    (with_(order_id=...), "missing order_id"),
    (with_(customer_id=None), "missing customer_id"),
    (with_(product_id=" "), "empty id"),
    (with_(order_status="SHIPPED"), "unknown order_status SHIPPED"),
    (with_(quantity=0), "quantity not positive: 0"),
    (with_(quantity=-2), "quantity not positive: -2"),
    (with_(unit_price=0), "unit_price not positive: 0"),
    (with_(unit_price=4.505), "unit_price has more than 2 decimals: 4.505"),
    (with_(timestamp="yesterday at noon"), "bad timestamp: yesterday at noon"),
    # Arrived 2026-11-21 08:00: more than 7 days after its time is too late, exactly 7 is not.
    (
        with_(timestamp="2026-11-14T07:59:59.999Z"),
        "too late: more than 7 days after its time, at 2026-11-21 08:00:00",
    ),
    (with_(timestamp="2026-11-14T08:00:00Z"), None),
    # ... and more than a day ahead of its arrival is too early (a broken clock), exactly a day is not.
    (
        with_(timestamp="2026-11-22T08:00:00.001Z"),
        "too early: more than 1 day ahead of its arrival, at 2026-11-21 08:00:00",
    ),
    (with_(timestamp="2026-11-22T08:00:00Z"), None),
    (None, "empty message"),
]


@pytest.fixture(scope="module")
def parsed(spark):
    arrived = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    rows = [
        (b"k", value.encode() if value is not None else None, "t", 0, offset, arrived)
        for offset, (value, _) in enumerate(CASES)
    ]
    records = spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    return sink_rows(parse_orders(records)).cache()


def test_every_record_gets_its_reason(parsed):
    reasons = {r.kafka_offset: r.reason for r in parsed.select("kafka_offset", "reason").collect()}
    assert [reasons[i] for i in range(len(CASES))] == [reason for _, reason in CASES]


def test_valid_rows_are_typed_and_partitioned_by_event_date_in_utc(parsed):
    rows = valid_rows(parsed).collect()
    assert len(rows) == sum(reason is None for _, reason in CASES) == 3
    [row] = [r for r in rows if r.kafka_offset == 0]
    assert tuple(row.asDict()) == RAW_COLUMNS
    assert row.unit_price == Decimal("129.99")
    assert row.quantity == 2
    assert row.date == date(2026, 11, 20), "23:59:59.999Z belongs to the 20th in UTC"
    assert (row.kafka_topic, row.kafka_partition, row.kafka_offset) == ("t", 0, 0)


def quarantine_rows(sink):
    """The sink's quarantined rows, with their own columns (as the raw table keeps them)."""
    return sink.where(F.col(VERDICT) == QUARANTINED).select(*QUARANTINE_COLUMNS)


def test_quarantine_keeps_the_untouched_value(parsed):
    rows = quarantine_rows(parsed).collect()
    assert len(rows) == len(CASES) - 3
    assert all(tuple(r.asDict()) == QUARANTINE_COLUMNS for r in rows)
    by_offset = {r.kafka_offset: r for r in rows}
    assert by_offset[2].value == "<<not json at all>>"
    assert (bytes(by_offset[2].value_bytes), bytes(by_offset[2].key_bytes)) == (b"<<not json at all>>", b"k")
    assert by_offset[2].date == date(2026, 11, 21), "no event time: filed under the arrival date"


def test_each_record_is_parsed_once_in_the_optimized_plan(spark):
    # Guards the 7x slowdown seen when the optimizer inlined the parse into each rule of the
    # validity filter: the executed plan must hold exactly one JSON parse.
    records = spark.createDataFrame(
        [], "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    sink = sink_rows(parse_orders(records))
    plan = lambda frame: frame._jdf.queryExecution().executedPlan().toString()  # noqa: E731
    for frame in (sink, valid_rows(sink), quarantine_rows(sink)):
        assert plan(frame).count("parseJson(") == 1, plan(frame)
    # The streamed frame evaluates the rejection rules (first outcome "empty message") once too,
    # though a dozen of its columns depend on their verdict.
    assert plan(sink).count("empty message") == 1, plan(sink)


def test_the_progress_line_names_the_state_rows_only_where_rocksdb_counts_them(caplog):
    # spark-defaults turn RocksDB's row count off (a read per write): it then reports 0 rows,
    # which the line must not present as an empty state.
    def line(state_rows: int) -> str:
        progress = {"name": "orders", "batchId": 3, "numInputRows": 10,
                    "durationMs": {"triggerExecution": 1500},
                    "observedMetrics": {"orders": {"raw": 9, "quarantine": 1}},
                    "stateOperators": [{"numRowsTotal": state_rows, "numRowsDroppedByWatermark": 2,
                                        "customMetrics": {"numDroppedDuplicateRows": 4}}]}  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="shopstream.stream"):
            log_progress(progress)
        return caplog.records[-1].getMessage()

    assert line(0) == (
        "orders batch 3: 10 records in, rows written: 9 raw, 1 quarantine "
        "(4 re-delivered copies dropped), 1.5 s, 2 dropped as late"
    )
    assert line(7).endswith("1.5 s, state 7 rows, 2 dropped as late")
