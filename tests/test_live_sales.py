"""The live aggregation on real Kafka, Spark and PostgreSQL: the store equals an independent
computation over the events read back from Kafka, each counted once, across runs, re-deliveries
and a SIGKILL mid-stream."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from shopstream import serving
from shopstream.spark.live_sales import QUERY_NAME, run
from shopstream.spark.streaming import StreamSettings
from tests import live_oracle
from tests.conftest import produce
from tests.dates import minutes_ago
from tests.kafka_read import read_topic, redeliver

pytestmark = pytest.mark.integration


def live_settings(tmp_path, bootstrap: str, topic: str, **overrides) -> StreamSettings:
    return StreamSettings(bootstrap=bootstrap, topic=topic, checkpoint_dir=tmp_path / "live", **overrides)


def test_store_equals_the_events_counted_once_across_runs_and_redeliveries(
    spark, kafka_broker, topic, tmp_path, store
):
    bootstrap = kafka_broker.bootstrap
    produce(kafka_broker, topic, "--count", "6000", "--seed", "31", "--malformed-ratio", "0.02",
            "--start", minutes_ago(90), "--span", "90m")  # fmt: skip
    first = read_topic(bootstrap, topic, expected=6000)
    redeliver(bootstrap, topic, first[:500])  # an upstream retry: the same records again
    settings = live_settings(tmp_path, bootstrap, topic, available_now=True)

    run(settings, spark, store)

    truth = live_oracle.truth(read_topic(bootstrap, topic, expected=6500))
    assert live_oracle.store(store) == truth
    assert len(truth["totals"]) >= 85, "events spread over the last 90 minutes"
    assert truth["quarantined"] > 100 and truth["totals"]

    # More events, and copies of events counted in the first run: the numbers move by exactly
    # the new events.
    produce(
        kafka_broker, topic, "--count", "2000", "--seed", "32", "--start", minutes_ago(30), "--span", "30m"
    )
    redeliver(bootstrap, topic, first[2000:2300])
    run(settings, spark, store)

    after = live_oracle.truth(read_topic(bootstrap, topic, expected=8800))
    assert live_oracle.store(store) == after
    assert after["totals"] != truth["totals"]
    with serving.connect(store) as conn:
        checkpoint, batch_id = serving.last_batch(conn, QUERY_NAME)
    assert checkpoint == str(settings.checkpoint_dir / "query") and batch_id >= 1


def test_sigkill_mid_stream_then_restart_neither_loses_nor_double_counts(
    spark, kafka_broker, topic, tmp_path, store
):
    bootstrap = kafka_broker.bootstrap
    produce(kafka_broker, topic, "--count", "20000", "--seed", "41", "--malformed-ratio", "0.01",
            "--start", minutes_ago(120), "--span", "120m")  # fmt: skip
    settings = live_settings(tmp_path, bootstrap, topic)
    command = [
        sys.executable, "-m", "shopstream.spark.live_sales", "--bootstrap", bootstrap, "--topic", topic,
        "--trigger", "1s", "--max-offsets-per-trigger", "2000",
        "--checkpoint-dir", str(settings.checkpoint_dir),
    ]  # fmt: skip
    log_file = (tmp_path / "live.log").open("w")
    live = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "SHOPSTREAM_SERVING_DB": store},
    )  # fmt: skip
    try:
        # Crash once the store holds a few batches, while more are still to come.
        deadline = time.monotonic() + 180
        while (batch := _stored_batch(store)) is None or batch < 2:
            assert live.poll() is None, (tmp_path / "live.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no batch reached the store within 180 s"
            time.sleep(0.1)
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait()
    partial = live_oracle.store(store)
    assert sum(t[0] for t in partial["totals"].values()) > 0, "killed after the first batches"
    assert partial["records"] < 20000, "killed before the end"

    produce(
        kafka_broker, topic, "--count", "3000", "--seed", "42", "--start", minutes_ago(60), "--span", "60m"
    )
    settings.available_now = True
    run(settings, spark, store)

    assert live_oracle.store(store) == live_oracle.truth(read_topic(bootstrap, topic, expected=23000))


def _stored_batch(dsn: str) -> int | None:
    with serving.connect(dsn) as conn:
        try:
            recorded = serving.last_batch(conn, QUERY_NAME)
        except Exception:  # noqa: BLE001 - the query has not created its tables yet
            return None
    return recorded[1] if recorded else None


def test_a_replayed_batch_is_skipped_and_a_foreign_or_wiped_checkpoint_refused(store):
    minute = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    batch = serving.BatchIncrements(
        sales=[
            (minute, "EU-WEST", "Books", 2, 1, 0, 3, Decimal("30.00"), Decimal("10.00"), Decimal("20.00"))
        ],
        products=[(minute, "P-1", "A book", "Books", 2, 3, Decimal("20.00"))],
        intake=[(minute, 4, 1)],
    )
    with serving.connect(store) as conn:
        assert serving.apply_batch(conn, QUERY_NAME, "/ckpt", 0, batch, 4)
        assert not serving.apply_batch(conn, QUERY_NAME, "/ckpt", 0, batch, 4), "a replay of batch 0"
        assert serving.apply_batch(conn, QUERY_NAME, "/ckpt", 1, batch, 4)
        totals = conn.execute("SELECT orders, net FROM live_totals").fetchall()
        assert totals == [(4, Decimal("40.00"))]

        serving.check_store_matches(conn, QUERY_NAME, "/ckpt", 1)
        serving.check_store_matches(conn, QUERY_NAME, "/ckpt", 2)  # planned, not yet in the store
        with pytest.raises(serving.StoreMismatch, match="from checkpoint /ckpt"):
            serving.check_store_matches(conn, QUERY_NAME, "/other", 5)
        with pytest.raises(serving.StoreMismatch, match="wiped or restored"):
            serving.check_store_matches(conn, QUERY_NAME, "/ckpt", None)


def test_prune_deletes_only_the_minutes_before_the_retention(store):
    old, recent = (
        dt.datetime(2026, 10, 1, 10, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
    )
    with serving.connect(store) as conn:
        for batch_id, minute in enumerate((old, recent)):
            batch = serving.BatchIncrements(
                sales=[(minute, "CA", "Books", 1, 0, 0, 1, Decimal("5.00"), Decimal(0), Decimal("5.00"))],
                products=[(minute, "P-1", "A book", "Books", 1, 1, Decimal("5.00"))],
                intake=[(minute, 1, 0)],
            )
            serving.apply_batch(conn, QUERY_NAME, "/ckpt", batch_id, batch, 1)
        assert serving.prune(conn, dt.datetime(2026, 11, 1, tzinfo=dt.UTC)) == 4  # one row per table
        for table in serving.PRUNED_TABLES:
            assert conn.execute(f"SELECT minute FROM {table}").fetchall() == [(recent,)]
