"""The orders x order_updates stream-stream join on the real broker, checked against a plain
Python computation over both topics read back from Kafka."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from confluent_kafka import Producer

from shopstream.spark.order_status_stream import STATUS_COLUMNS, StatusSettings, run
from shopstream.spark.status_table import QUARANTINE_TABLE, STATUS_TABLE, ensure_status_table, merge_batch
from shopstream.spark.streaming import StreamSettings
from tests import iceberg_read, oracle
from tests.conftest import produce
from tests.dates import days_ago
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration

DAY, NEXT_DAY = days_ago(3), days_ago(2)
MAX_DELAY = timedelta(hours=6)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def send(bootstrap: str, topic: str, *values: str) -> None:
    """Produces `values`, asserting each was delivered (flush alone forgets failed deliveries)."""
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value.encode(), on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0 and not errors, errors


def parse_json(message) -> dict | None:
    try:
        return json.loads(message.value)
    except ValueError:
        return None


def expected_status(orders_msgs, update_msgs) -> dict[str, tuple]:
    """order_id -> (current_status, status_reason, orphan) for the orders and updates of DAY."""
    orders = {}
    for m in orders_msgs:
        if oracle.problems(m.value):
            continue
        event = json.loads(m.value)
        if event["order_status"] == "NEW" and event["timestamp"].startswith(DAY):
            orders[event["order_id"]] = ts(event["timestamp"])
    updates = [
        u for u in map(parse_json, update_msgs) if u and u.get("new_status") in ("CANCELLED", "RETURNED")
    ]
    status = {order_id: ("NEW", None, False) for order_id in orders}
    # The newest update of each order wins (by time: a return after a cancellation is RETURNED).
    for u in sorted(updates, key=lambda u: ts(u["timestamp"])):
        placed = orders.get(u["order_id"])
        if placed is not None and placed <= ts(u["timestamp"]) <= placed + MAX_DELAY:
            status[u["order_id"]] = (u["new_status"], u["reason"], False)
        elif placed is None and u["timestamp"].startswith(DAY):
            status[u["order_id"]] = (u["new_status"], u["reason"], True)
    return status


def update(order_id: str, status: str, at: str, reason: str = "customer_request") -> str:
    return json.dumps({"order_id": order_id, "new_status": status, "reason": reason, "timestamp": at})


def read_status() -> list[dict]:
    """The status table's rows (PyIceberg + DuckDB), as dicts of STATUS_COLUMNS."""
    columns = ", ".join(STATUS_COLUMNS)
    return [dict(zip(STATUS_COLUMNS, r, strict=True)) for r in iceberg_read.rows(STATUS_TABLE, columns)]


def test_current_status_of_each_order_matches_an_independent_join(kafka_broker, spark, tmp_path, topic):
    updates_topic = f"{topic}-updates"
    day = produce(kafka_broker, topic, "--updates-topic", updates_topic, "--count", "3000", "--seed", "41",
                  "--start", DAY, "--span", "6h")  # fmt: skip
    # An update that arrives before its order.
    send(kafka_broker.bootstrap, updates_topic, update("ORD-EARLY", "CANCELLED", f"{DAY}T01:00:30.000Z"))
    template = json.loads(read_topic(kafka_broker.bootstrap, topic, expected=1)[0].value)
    early = {**template, "order_id": "ORD-EARLY", "order_status": "NEW", "timestamp": f"{DAY}T01:00:00.000Z"}
    send(kafka_broker.bootstrap, topic, json.dumps(early))
    # An order cancelled and then returned: two updates, the later one is its status.
    updates = [json.loads(m.value) for m in read_topic(kafka_broker.bootstrap, updates_topic, 2)]
    cancelled = next(u for u in updates if u["new_status"] == "CANCELLED" and u["order_id"] != "ORD-EARLY")
    returned_at = (ts(cancelled["timestamp"]) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[
        :-3
    ] + "Z"
    send(
        kafka_broker.bootstrap,
        updates_topic,
        update(cancelled["order_id"], "RETURNED", returned_at, "damaged"),
    )
    assert day["updates_delivered"] == day["updates"] > 300
    # An update for an order nobody placed, a broken one and one with an unknown status.
    send(kafka_broker.bootstrap, updates_topic,
         json.dumps({"order_id": "ORD-NOBODY", "new_status": "CANCELLED", "reason": "customer_request",
                     "timestamp": f"{DAY}T03:00:00.000Z"}),
         '{"order_id": "ORD-1", "new_st',
         json.dumps({"order_id": "ORD-2", "new_status": "SHIPPED", "reason": "x",
                     "timestamp": f"{DAY}T03:00:00.000Z"}))  # fmt: skip
    # Later events on both topics move both watermarks past every DAY order's range.
    later = produce(kafka_broker, topic, "--updates-topic", updates_topic, "--count", "300", "--seed", "42",
                    "--start", NEXT_DAY, "--span", "1h")  # fmt: skip

    settings = StatusSettings(
        stream=StreamSettings(bootstrap=kafka_broker.bootstrap, topic=topic, available_now=True),
        updates_topic=updates_topic, checkpoint_dir=tmp_path / "cp", lateness="1 minute",
        max_update_delay="6 hours",
    )  # fmt: skip
    written = run(settings, spark)

    orders_msgs = read_topic(kafka_broker.bootstrap, topic, expected=3301)
    update_msgs = read_topic(
        kafka_broker.bootstrap, updates_topic, expected=day["updates"] + later["updates"] + 5
    )
    expected = expected_status(orders_msgs, update_msgs)
    assert tuple(f.name for f in iceberg_read.table(STATUS_TABLE).schema().fields) == STATUS_COLUMNS
    rows = read_status()
    day_rows = [r for r in rows if str(r["date"]) == DAY]
    got = {r["order_id"]: (r["current_status"], r["status_reason"], r["orphan_update"]) for r in day_rows}

    assert len(day_rows) == len(got), "one row per order"
    assert got == expected
    assert got["ORD-NOBODY"] == ("CANCELLED", "customer_request", True)
    assert got["ORD-EARLY"] == ("CANCELLED", "customer_request", False), "the update that came first"
    assert got[cancelled["order_id"]] == ("RETURNED", "damaged", False), "cancelled, then returned"
    assert len({r["order_id"] for r in rows}) == len(rows), "one row per order over all dates"
    assert {s for s, _, _ in got.values()} == {"NEW", "CANCELLED", "RETURNED"}
    # NEXT_DAY orders are still inside their range: only those already updated are final.
    assert all(r["current_status"] != "NEW" for r in rows if str(r["date"]) == NEXT_DAY)
    # The rejected updates, in their table with the reason, their untouched bytes and Kafka lineage.
    rejected = iceberg_read.rows(QUARANTINE_TABLE, "reason, value_bytes, kafka_topic", order="reason")
    assert rejected == [("invalid JSON", b'{"order_id": "ORD-1", "new_st', updates_topic),
                        ("unknown new_status SHIPPED", rejected[1][1], updates_topic)]  # fmt: skip

    # A replayed batch (its commit lost in a crash, so Spark runs it again on restart) is skipped
    # by the upsert: the table stays exactly as it was, not even a snapshot added.
    before = (iceberg_read.snapshot_id(STATUS_TABLE), read_status())
    commits = settings.checkpoint_dir / "status" / "commits"
    last = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    last.unlink()
    (commits / f".{last.name}.crc").unlink(missing_ok=True)  # the commit's checksum goes with it
    run(settings, spark)
    assert (iceberg_read.snapshot_id(STATUS_TABLE), read_status()) == before
    assert written["quarantine_updates"] == 2


def status_batch(spark, *rows: tuple[str, str, int]):
    """A join batch of (order_id, current_status, minute of DAY's 10 o'clock) rows."""
    values = ", ".join(f"('{o}', '{status}', TIMESTAMP '{DAY} 10:{m:02d}:00')" for o, status, m in rows)
    return spark.sql(f"""
        SELECT order_id, 'C1' AS customer_id, 'P1' AS product_id, 'toys' AS category, 1 AS quantity,
               CAST(9.99 AS DECIMAL(12, 2)) AS unit_price, 'DE' AS region,
               TIMESTAMP '{DAY} 10:00:00' AS order_time, status AS current_status,
               CAST(NULL AS STRING) AS status_reason, at AS status_time, false AS orphan_update,
               DATE '{DAY}' AS date
        FROM VALUES {values} AS v(order_id, status, at)""")


@pytest.mark.usefixtures("fresh_lake_namespace")
def test_a_status_is_replaced_only_by_a_newer_one_and_a_replay_changes_nothing(spark):
    first = status_batch(spark, ("A", "NEW", 0), ("B", "CANCELLED", 5), ("C", "NEW", 0))
    table = ensure_status_table(spark, first.schema)
    merge_batch(table, first, 0, "query-1")
    second = status_batch(spark, ("A", "CANCELLED", 3), ("B", "NEW", 1), ("C", "NEW", 0))
    merge_batch(table, second, 1, "query-1")
    merge_batch(table, status_batch(spark, ("A", "RETURNED", 3)), 2, "query-1")  # same time: later in life
    expected = [("A", "RETURNED"), ("B", "CANCELLED"), ("C", "NEW")]
    assert iceberg_read.rows(STATUS_TABLE, "order_id, current_status") == expected
    snapshot = iceberg_read.snapshot_id(STATUS_TABLE)

    # Batch 2 again, whatever it holds: recorded in the table's snapshots, so skipped.
    merge_batch(table, status_batch(spark, ("A", "NEW", 9)), 2, "query-1")
    assert iceberg_read.snapshot_id(STATUS_TABLE) == snapshot
    # A replay whose record maintenance expired: merged, and no row changes.
    merge_batch(table, second, 1, "query-2")
    assert iceberg_read.rows(STATUS_TABLE, "order_id, current_status") == expected
    # A new checkpoint's query starts again at batch 0: not a replay.
    merge_batch(table, status_batch(spark, ("D", "NEW", 0)), 0, "query-3")
    assert iceberg_read.rows(STATUS_TABLE, "order_id, current_status") == [*expected, ("D", "NEW")]


def test_a_gap_in_either_topic_stops_the_join_before_it_starts(kafka_broker, topic, tmp_path):
    from shopstream.spark.source_gaps import EventsAgedOut
    from tests.test_ingest_guard import write_batch
    from tests.test_stream_kafka import retention_deletes_everything_up_to_now

    updates_topic = f"{topic}-updates"
    produce(kafka_broker, topic, "--count", "200", "--malformed-ratio", "0", "--start", days_ago(1))
    updates_end = retention_deletes_everything_up_to_now(kafka_broker.bootstrap, updates_topic)
    assert sum(updates_end.values()) > 0
    stream = StreamSettings(bootstrap=kafka_broker.bootstrap, topic=topic, available_now=True)
    settings = StatusSettings(stream=stream, updates_topic=updates_topic, checkpoint_dir=tmp_path / "cp")
    # The join committed a first batch before any event: offset 0 of both topics, a line each.
    orders_at, updates_at = ({t: dict.fromkeys(map(str, updates_end), 0)} for t in (topic, updates_topic))
    write_batch(settings.checkpoint_dir / "status", 0, orders_at, updates_at, committed=True)

    # The orders are all there; the updates topic's retention deleted its events: refused before
    # Spark starts (the session argument is never used), naming that topic.
    with pytest.raises(EventsAgedOut, match=f"events of {updates_topic} that this query had not read"):
        run(settings, spark=object())
