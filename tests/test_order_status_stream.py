"""The orders x order_updates stream-stream join on the real broker, checked against a plain
Python computation over both topics read back from Kafka."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import pytest
from confluent_kafka import Producer

from shopstream.spark.order_status_stream import STATUS_COLUMNS, StatusSettings, StatusTable, run
from shopstream.spark.streaming import StreamSettings
from tests import oracle
from tests.conftest import produce
from tests.dates import days_ago
from tests.kafka_read import read_topic
from tests.sink_files import read_sink

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


def read_status(settings):
    files = StatusTable(settings.output_dir).files()
    return duckdb.read_parquet(files, hive_partitioning=True)


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
        updates_topic=updates_topic, output_dir=tmp_path / "status", quarantine_dir=tmp_path / "bad",
        checkpoint_dir=tmp_path / "cp", lateness="1 minute", max_update_delay="6 hours",
    )  # fmt: skip
    written = run(settings, spark)

    orders_msgs = read_topic(kafka_broker.bootstrap, topic, expected=3301)
    update_msgs = read_topic(
        kafka_broker.bootstrap, updates_topic, expected=day["updates"] + later["updates"] + 5
    )
    expected = expected_status(orders_msgs, update_msgs)
    sink = read_status(settings)
    assert tuple(sink.columns) == STATUS_COLUMNS
    rows = [dict(zip(sink.columns, r, strict=True)) for r in sink.fetchall()]
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
    reasons = sorted(r for (r,) in read_sink(settings.quarantine_dir).select("reason").fetchall())
    assert reasons == ["invalid JSON", "unknown new_status SHIPPED"]

    # A replayed batch (its commit lost in a crash, so Spark runs it again on restart) is skipped
    # by the upsert: the table stays exactly as it was.
    table = StatusTable(settings.output_dir)
    before = (table.state(), sorted(read_status(settings).fetchall()))
    commits = settings.checkpoint_dir / "status" / "commits"
    last = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    last.unlink()
    (commits / f".{last.name}.crc").unlink(missing_ok=True)  # the commit's checksum goes with it
    run(settings, spark)
    assert (table.state(), sorted(read_status(settings).fetchall())) == before
    assert written["quarantine_updates"] == 2


def test_the_status_table_keeps_only_the_versions_its_pointers_reference(tmp_path):
    # One version folder per micro-batch: a year of 1-minute batches would leave 525,600 of them
    # (each with Spark's _SUCCESS) unless the emptied ones go too.
    for version, date in (("v000000000001", "2026-11-01"), ("v000000000002", "2026-11-01"),
                          ("v000000000002", "2026-11-02"), ("v000000000003", "2026-11-02")):  # fmt: skip
        (tmp_path / version / f"date={date}").mkdir(parents=True)
        (tmp_path / version / "_SUCCESS").touch()
    previous = {"batch_id": 2, "dates": {"2026-11-01": "v000000000002", "2026-11-02": "v000000000002"}}
    current = {"batch_id": 3, "dates": {"2026-11-01": "v000000000002", "2026-11-02": "v000000000003"}}
    StatusTable(tmp_path)._drop_unreferenced(current, previous)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("v*/date=*")) == [
        "v000000000002/date=2026-11-01", "v000000000002/date=2026-11-02", "v000000000003/date=2026-11-02"
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.glob("v*")) == ["v000000000002", "v000000000003"]


def test_a_gap_in_either_topic_stops_the_join_before_it_starts(kafka_broker, topic, tmp_path):
    from shopstream.spark.streaming import EventsAgedOut
    from tests.test_ingest_guard import write_batch
    from tests.test_stream_kafka import retention_deletes_everything_up_to_now

    updates_topic = f"{topic}-updates"
    produce(kafka_broker, topic, "--count", "200", "--malformed-ratio", "0", "--start", days_ago(1))
    updates_end = retention_deletes_everything_up_to_now(kafka_broker.bootstrap, updates_topic)
    assert sum(updates_end.values()) > 0
    stream = StreamSettings(bootstrap=kafka_broker.bootstrap, topic=topic, available_now=True)
    settings = StatusSettings(stream=stream, updates_topic=updates_topic, output_dir=tmp_path / "out",
                              quarantine_dir=tmp_path / "bad", checkpoint_dir=tmp_path / "cp")  # fmt: skip
    # The join committed a first batch before any event: offset 0 of both topics, a line each.
    orders_at, updates_at = ({t: dict.fromkeys(map(str, updates_end), 0)} for t in (topic, updates_topic))
    write_batch(settings.checkpoint_dir / "status", 0, orders_at, updates_at, committed=True)

    # The orders are all there; the updates topic's retention deleted its events: refused before
    # Spark starts (the session argument is never used), naming that topic.
    with pytest.raises(EventsAgedOut, match=f"events of {updates_topic} that this query had not read"):
        run(settings, spark=object())
