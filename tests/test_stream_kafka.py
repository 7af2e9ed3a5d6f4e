"""The streaming job on a real broker: every record lands in the raw table exactly once, valid or
quarantined, also across a SIGKILL and restart. Checked against the records read back from Kafka,
the table read by PyIceberg. Each test has a raw table of its own (a namespace per test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from shopstream.config import QUARANTINED, VALID
from shopstream.data_loss import DATA_LOSS_LEDGER, data_losses
from shopstream.devstack.processes import free_port
from shopstream.kafka_admin import topic_stats
from shopstream.raw_table import DEDUPLICATED, date_rows, partition_stats, writer_properties
from shopstream.raw_table import load as load_raw_table
from shopstream.spark.raw_events import set_properties
from shopstream.spark.source_gaps import AGED_OUT, REWOUND, EventsAgedOut, TopicRewound
from shopstream.spark.stream_consumer import run
from shopstream.spark.streaming import (
    AVAILABLE_NOW_VERSIONS,
    MIN_BATCHES_TO_RETAIN,
    SinkCheckpointMismatch,
    StreamSettings,
    run_conf,
    session_conf,
)
from tests import oracle
from tests.conftest import produce
from tests.dates import days_ago
from tests.kafka_read import distinct_events, read_topic, redeliver
from tests.raw_rows import commits, read_raw

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def own_raw_table(fresh_lake_namespace) -> None:
    """Each test ingests into a raw table of its own."""


def settings_for(tmp_path: Path, bootstrap: str, topic: str, **overrides) -> StreamSettings:
    checkpoints = tmp_path / "checkpoints"
    return StreamSettings(bootstrap=bootstrap, topic=topic, checkpoint_dir=checkpoints, **overrides)


def expected_from_kafka(bootstrap: str, topic: str, count: int):
    """(valid events by (partition, offset), bad (partition, offset)s) per the test's oracle."""
    valid, bad = {}, set()
    for m in read_topic(bootstrap, topic, expected=count):
        if oracle.problems(m.value):
            bad.add((m.partition, m.offset))
        else:
            valid[(m.partition, m.offset)] = json.loads(m.value)
    assert len(valid) + len(bad) == count
    return valid, bad


def landed(settings: StreamSettings):
    raw = read_raw(VALID)
    quarantine = read_raw(QUARANTINED)
    raw_rows = raw.select("kafka_partition, kafka_offset, order_id, order_status, date").fetchall()
    bad_rows = quarantine.select("kafka_partition, kafka_offset, reason").fetchall()
    return raw_rows, bad_rows


def test_available_now_lands_every_record_exactly_once(spark, kafka_broker, topic, tmp_path):
    produce(kafka_broker, topic, "--count", "20000", "--seed", "13", "--malformed-ratio", "0.01",
            "--start", days_ago(4), "--span", "72h")  # fmt: skip
    valid, bad = expected_from_kafka(kafka_broker.bootstrap, topic, 20000)
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True)

    written = run(settings, spark)

    raw_rows, bad_rows = landed(settings)
    assert written == {"raw": len(valid), "quarantine": len(bad), "redelivered": 0}
    assert len(raw_rows) + len(bad_rows) == 20000
    assert {(p, o) for p, o, *_ in raw_rows} == set(valid)
    assert {(p, o) for p, o, _ in bad_rows} == bad
    assert all(reason for *_, reason in bad_rows)
    assert 100 < len(bad) < 300

    # The table's partitions: a verdict, then the event's date (Iceberg's own partition metadata).
    table = load_raw_table()
    event_dates = {e["timestamp"][:10] for e in valid.values()}
    assert set(partition_stats(table, VALID)) == event_dates == {days_ago(n) for n in (4, 3, 2)}
    assert set(partition_stats(table, QUARANTINED)) <= event_dates | {days_ago(0)}
    for verdict in (VALID, QUARANTINED):  # the sensor's per-date count agrees with every entry's
        counts = {day: rows for day, (rows, _) in partition_stats(table, verdict).items()}
        assert {day: date_rows(table, day, verdict) for day in counts} == counts
        assert date_rows(table, days_ago(30), verdict) == 0
    # Money survives to the cent: the raw layer's revenue equals the events' own.
    raw_revenue = read_raw(VALID).aggregate("sum(quantity * unit_price)").fetchall()[0][0]
    oracle_cents = sum(e["quantity"] * round(e["unit_price"] * 100) for e in valid.values())
    assert round(raw_revenue * 100) == oracle_cents

    # A new table written with the stream's de-duplication says so: the batch jobs skip their pass.
    assert DEDUPLICATED in writer_properties()
    # A second run finds nothing new and commits nothing; a table that has commits but no such
    # property (an older writer's) is not marked later: only a table's first writer can vouch.
    set_properties(spark, {DEDUPLICATED: None})
    before = commits()
    assert run(settings, spark) == {"raw": 0, "quarantine": 0, "redelivered": 0}
    assert DEDUPLICATED not in writer_properties()
    assert [c["id"] for c in commits() if c["operation"] == "append"] == [
        c["id"] for c in before if c["operation"] == "append"
    ]
    assert len(landed(settings)[0]) == len(valid)
    # The table with a checkpoint that is not its own would read the topic again: refused.
    settings.checkpoint_dir = tmp_path / "another-checkpoint"
    with pytest.raises(SinkCheckpointMismatch, match="belong together"):
        run(settings, spark)


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(spark, kafka_broker, topic, tmp_path):
    produce(kafka_broker, topic, "--count", "20000", "--seed", "21", "--malformed-ratio", "0.01",
            "--start", days_ago(4))  # fmt: skip
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic)
    command = [
        sys.executable, "-m", "shopstream.spark.stream_consumer",
        "--bootstrap", kafka_broker.bootstrap, "--topic", topic, "--trigger", "1s",
        "--max-offsets-per-trigger", "2000", "--checkpoint-dir", str(settings.checkpoint_dir),
    ]  # fmt: skip
    log_file = (tmp_path / "stream.log").open("w")
    stream = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Wait for the second committed batch, then crash mid-stream.
        commit = settings.checkpoint_dir / "orders" / "commits" / "1"
        deadline = time.monotonic() + 120
        while not commit.exists():
            assert stream.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no batch committed within 120 s"
            time.sleep(0.2)
    finally:
        os.killpg(stream.pid, signal.SIGKILL)
        stream.wait()
    before = len(commits())
    raw_so_far, _ = landed(settings)
    assert 0 < len(raw_so_far) < 20000, "killed after the first batches, before the end"

    produce(kafka_broker, topic, "--count", "5000", "--seed", "22", "--start", days_ago(3))
    valid, bad = expected_from_kafka(kafka_broker.bootstrap, topic, 25000)
    settings.available_now = True
    run(settings, spark)

    raw_rows, bad_rows = landed(settings)
    assert len(commits()) > before
    raw_offsets = [(p, o) for p, o, *_ in raw_rows]
    assert len(raw_offsets) == len(set(raw_offsets)), "duplicated records in raw"
    assert set(raw_offsets) == set(valid), "lost or extra records in raw"
    assert {(p, o) for p, o, _ in bad_rows} == bad
    keys = [(order_id, status) for _, _, order_id, status, _ in raw_rows]
    assert len(keys) == len(set(keys)) == len(valid)
    assert set(keys) == {(e["order_id"], e["order_status"]) for e in valid.values()}


def test_redelivered_events_land_once_within_a_batch_and_across_batches(spark, kafka_broker, topic, tmp_path):
    produce(kafka_broker, topic, "--count", "3000", "--seed", "41", "--malformed-ratio", "0.02",
            "--start", days_ago(3), "--span", "48h")  # fmt: skip
    messages = read_topic(kafka_broker.bootstrap, topic, expected=3000)
    valid = [m for m in messages if not oracle.problems(m.value)]
    malformed = [m for m in messages if oracle.problems(m.value)]
    # Copies in the same micro-batch as their original, malformed ones among them (kept: every
    # bad record is quarantined, each copy with its own offset).
    redeliver(kafka_broker.bootstrap, topic, valid[::10] + malformed[:5])
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True)
    first = run(settings, spark)
    # Copies in a later micro-batch: found in the state the first run left in the checkpoint.
    redeliver(kafka_broker.bootstrap, topic, valid[5::10])
    second = run(settings, spark)

    copies = len(valid[::10]) + 5 + len(valid[5::10])
    delivered = read_topic(kafka_broker.bootstrap, topic, expected=3000 + copies)
    events = distinct_events([json.loads(m.value) for m in delivered if not oracle.problems(m.value)])
    assert len(events) == len(valid)
    assert first == {"raw": len(valid), "quarantine": len(malformed) + 5, "redelivered": len(valid[::10])}
    assert second == {"raw": 0, "quarantine": 0, "redelivered": len(valid[5::10])}
    raw_rows, bad_rows = landed(settings)
    # Each event once in raw, by its identity, as the suite reads it from the topic.
    assert sorted((order_id, status) for _, _, order_id, status, _ in raw_rows) == sorted(
        (e["order_id"], e["order_status"]) for e in events
    )
    assert len(bad_rows) == len(malformed) + 5
    # The window's state lives in the checkpoint: switching the de-duplication off for it is refused.
    settings.deduplicate = False
    with pytest.raises(SinkCheckpointMismatch, match="made with the stream's de-duplication"):
        run(settings, spark)


def state_versions(checkpoint: Path) -> dict[str, dict[str, set[int]]]:
    """Per state partition of the ingest query: the versions it holds as snapshots and as changelogs."""
    found = {}
    for partition in sorted((checkpoint / "orders" / "state" / "0").glob("[0-9]*")):
        names = [f.name.split(".") for f in partition.iterdir() if not f.name.startswith(".")]
        found[partition.name] = {
            kind: {int(n[0]) for n in names if n[1:] == [kind]} for kind in ("zip", "changelog")
        }
    return found


def test_each_available_now_run_leaves_its_state_as_a_snapshot_and_prunes_old_versions(
    spark, kafka_broker, topic, tmp_path
):
    # The scheduler's runs are short processes: Spark's background maintenance (every 60 s) never
    # runs in them. Each run's own commit must leave the state loadable without replaying
    # changelogs, and delete what is past retention: else every run replays all history.
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True)
    with session_conf(spark, {"spark.sql.streaming.minBatchesToRetain": "2"}):
        for run_number in range(1, 4):
            produce(kafka_broker, topic, "--count", "300", "--seed", str(70 + run_number),
                    "--start", days_ago(2), "--span", "24h")  # fmt: skip
            assert run(settings, spark)["raw"] == 300
            versions = state_versions(settings.checkpoint_dir)
            assert versions and all(v["zip"] == set(range(max(1, run_number - 1), run_number + 1))
                                    and not v["changelog"] for v in versions.values()), versions  # fmt: skip


def test_available_now_runs_keep_ten_state_versions_unless_the_session_keeps_fewer():
    # Spark's 100 versions are 100 days of daily runs; the continuous service keeps Spark's own.
    scheduled = StreamSettings(bootstrap="b", topic="t", available_now=True)
    assert run_conf(scheduled)[MIN_BATCHES_TO_RETAIN] == str(AVAILABLE_NOW_VERSIONS) == "10"
    assert run_conf(scheduled, retained=2)[MIN_BATCHES_TO_RETAIN] == "2"
    assert MIN_BATCHES_TO_RETAIN not in run_conf(StreamSettings(bootstrap="b", topic="t"))


def run_stream_cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "shopstream.spark.stream_consumer", "--available-now", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result, time.monotonic() - started


def test_unreachable_broker_fails_fast_naming_it(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    result, seconds = run_stream_cli("--bootstrap", address, "--checkpoint-dir", str(tmp_path))
    assert result.returncode == 2 and seconds < 60
    assert f"no Kafka broker answered at {address}" in result.stderr


def test_missing_topic_fails_fast_naming_it(kafka_broker, tmp_path):
    result, seconds = run_stream_cli(
        "--bootstrap", kafka_broker.bootstrap, "--topic", "no_such_topic", "--checkpoint-dir", str(tmp_path)
    )
    assert result.returncode == 2 and seconds < 60
    assert "topic no_such_topic does not exist" in result.stderr


@pytest.mark.parametrize("out_of_reach", ["catalog database", "object store"])
def test_a_catalog_or_object_store_out_of_reach_fails_fast_naming_it(out_of_reach, kafka_broker, lake_catalog,
                                                                      tmp_path, monkeypatch):  # fmt: skip
    from shopstream.lake import LAKE_IO_ENV

    topic = f"lake-check-{out_of_reach.replace(' ', '-')}"
    produce(kafka_broker, topic, "--count", "5", "--seed", "3", "--no-updates")
    nobody = f"127.0.0.1:{free_port()}"
    if out_of_reach == "catalog database":
        monkeypatch.setenv("SHOPSTREAM_LAKE_CATALOG", f"postgresql://u:p@{nobody}/shopstream_catalog")
        expected = f"catalog database jdbc:postgresql://{nobody}/shopstream_catalog does not answer"
    else:
        monkeypatch.setenv("SHOPSTREAM_WAREHOUSE", "s3://shopstream-lake/warehouse")
        io = {"s3.endpoint": f"http://{nobody}", "client.region": "us-east-1", "s3.access-key-id": "k",
              "s3.secret-access-key": "s"}  # fmt: skip
        monkeypatch.setenv(LAKE_IO_ENV, json.dumps(io))
        expected = "cannot write to the tables' warehouse s3://shopstream-lake/warehouse"
    result, seconds = run_stream_cli(
        "--bootstrap", kafka_broker.bootstrap, "--topic", topic, "--checkpoint-dir", str(tmp_path)
    )
    assert result.returncode == 2 and seconds < 60
    assert expected in result.stderr, result.stderr[-2000:]
    assert "SparkContext" not in result.stderr, "named before a JVM started"


def retention_deletes_everything_up_to_now(bootstrap: str, topic: str) -> dict[int, int]:
    """What a topic's retention does to old segments: every record so far deleted (Kafka's log
    start offsets move to the end). Returns the partitions' first offsets now."""
    ends = topic_stats(topic, bootstrap).end_offsets
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(topic, p, end) for p, end in ends.items()]).values():
        future.result(timeout=30)
    assert topic_stats(topic, bootstrap).start_offsets == ends
    return ends


def raw_offsets(settings: StreamSettings) -> set[tuple[int, int]]:
    return set(read_raw(VALID).select("kafka_partition, kafka_offset").fetchall())


def hour_of_events() -> tuple[str, ...]:
    """order-sim options: well-formed events of an hour of yesterday (never late)."""
    return ("--malformed-ratio", "0", "--start", days_ago(1), "--span", "1h")


def ingested_first_events(spark, kafka_broker, topic: str, tmp_path: Path) -> StreamSettings:
    """A sink whose drains have read the topic's first 300 events: its settings."""
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True)
    produce(kafka_broker, topic, "--count", "300", "--seed", "5", *hour_of_events())
    run(settings, spark)
    return settings


def test_events_the_retention_deleted_before_ingest_stop_it_until_the_gap_is_accepted(
    spark, kafka_broker, topic, tmp_path
):
    settings = ingested_first_events(spark, kafka_broker, topic, tmp_path)
    batch = hour_of_events()
    ingested = {(m.partition, m.offset) for m in read_topic(kafka_broker.bootstrap, topic, expected=300)}
    committed = {p: max(o for q, o in ingested if q == p) + 1 for p, _ in ingested}

    # 200 more events arrive, and the topic's retention deletes them before any ingest ran.
    produce(kafka_broker, topic, "--count", "200", "--seed", "6", *batch)
    starts = retention_deletes_everything_up_to_now(kafka_broker.bootstrap, topic)
    produce(kafka_broker, topic, "--count", "100", "--seed", "7", *batch)
    after = {(m.partition, m.offset) for m in read_topic(kafka_broker.bootstrap, topic, expected=100)}

    # The ingest stops before its query, naming the gap and the way on; the raw layer is as it was.
    with pytest.raises(EventsAgedOut, match=r"no longer holds 200 events .*--accept-data-loss") as refused:
        run(settings, spark)
    for p, first in committed.items():
        assert f"partition {p} offsets {first}-{starts[p] - 1}" in str(refused.value)
    assert raw_offsets(settings) == ingested

    # Accepted once: the gap is recorded and the events Kafka still holds land, each once.
    accepted = settings_for(
        tmp_path, kafka_broker.bootstrap, topic, available_now=True, accept_data_loss=True
    )
    assert run(accepted, spark)["raw"] == 100
    assert raw_offsets(settings) == ingested | after
    gaps = data_losses(settings.checkpoint_dir / DATA_LOSS_LEDGER)
    assert {(g["topic"], g["partition"], g["first_offset"], g["end_offset"], g["cause"]) for g in gaps} == {
        (topic, p, first, starts[p], AGED_OUT) for p, first in committed.items()
    }
    assert sum(g["events"] for g in gaps) == 200
    # Past the gap the ingest runs as before, without the flag.
    assert run(settings, spark) == {"raw": 0, "quarantine": 0, "redelivered": 0}


def test_the_live_aggregation_names_a_gap_before_it_starts(kafka_broker, topic, tmp_path):
    from shopstream.config import LIVE_QUERY
    from shopstream.spark import live_sales
    from shopstream.spark.ingest_guard import LIVE, WriterLock
    from tests.test_ingest_guard import write_batch

    produce(kafka_broker, topic, "--count", "60", "--malformed-ratio", "0", "--start", days_ago(1))
    starts = retention_deletes_everything_up_to_now(kafka_broker.bootstrap, topic)
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True)
    # Its checkpoint committed a first, empty batch (offsets 0) before the 60 events came.
    write_batch(
        settings.checkpoint_dir / LIVE_QUERY, 0, {topic: dict.fromkeys(map(str, starts), 0)}, committed=True
    )

    # Refused before Spark or the store are touched (neither exists here), its lock given back.
    with pytest.raises(EventsAgedOut, match=r"no longer holds 60 events .*--accept-data-loss"):
        live_sales.run(settings, dsn="postgresql://127.0.0.1:1/never-used")
    assert WriterLock(settings.checkpoint_dir).acquire(LIVE)


def create_again(bootstrap: str, topic: str) -> None:
    """Deletes the topic and waits until it is gone (order-sim then creates it anew, offsets at 0)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_topic_created_again_stops_the_ingest_naming_what_spark_would_skip(
    spark, kafka_broker, topic, tmp_path
):
    settings = ingested_first_events(spark, kafka_broker, topic, tmp_path)
    batch = hour_of_events()
    committed = topic_stats(topic, kafka_broker.bootstrap).end_offsets

    create_again(kafka_broker.bootstrap, topic)
    produce(kafka_broker, topic, "--count", "30", "--seed", "8", *batch)  # offsets from 0 again
    ends = topic_stats(topic, kafka_broker.bootstrap).end_offsets
    assert all(ends[p] < committed[p] for p in ends)

    with pytest.raises(TopicRewound, match=r"created again.*--accept-data-loss") as refused:
        run(settings, spark)
    for p, end in ends.items():
        assert f"partition {p} ends at {end}" in str(refused.value)

    # Accepted: Spark reads on from the new topic's end; what it held is recorded as skipped.
    accepted = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True,
                            accept_data_loss=True)  # fmt: skip
    assert run(accepted, spark)["raw"] == 0
    gaps = data_losses(settings.checkpoint_dir / DATA_LOSS_LEDGER)
    assert {(g["partition"], g["first_offset"], g["end_offset"], g["cause"]) for g in gaps} == {
        (p, 0, end, REWOUND) for p, end in ends.items() if end > 0
    }
    assert sum(g["events"] for g in gaps) == 30
    # Events produced after it land as before, without the flag.
    produce(kafka_broker, topic, "--count", "40", "--seed", "9", *batch)
    assert run(settings, spark)["raw"] == 40


def test_the_dags_first_check_names_a_gap_before_the_ingest_starts(
    kafka_broker, topic, tmp_path, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    from shopstream.airflow import tasks
    from shopstream.config import INGEST_QUERY, paths
    from tests.test_ingest_guard import write_batch

    connection = {"conn_type": "kafka", "extra": {"bootstrap.servers": kafka_broker.bootstrap}}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(connection))
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(tmp_path / "state"))
    produce(kafka_broker, topic, "--count", "60", "--malformed-ratio", "0", "--start", days_ago(1))
    starts = retention_deletes_everything_up_to_now(kafka_broker.bootstrap, topic)
    produce(kafka_broker, topic, "--count", "20", "--malformed-ratio", "0", "--start", days_ago(1))
    # The ingest's checkpoint (where the job finds it) committed an empty first batch before.
    query = paths().ingest_checkpoints / INGEST_QUERY
    write_batch(query, 0, {topic: dict.fromkeys(map(str, starts), 0)}, committed=True)

    # Fails without retries, before any JVM, with the ingest's own message ...
    with pytest.raises(AirflowFailException, match=r"no longer holds 60 events .*accept_data_loss true"):
        tasks.check_kafka_topic(topic, min_messages="1", accept_data_loss="False")
    # ... unless the run accepts the loss (the rendered param is text); the ingest records it then.
    assert tasks.check_kafka_topic(topic, min_messages="1", accept_data_loss="True") == 20
    # The dashboard's health panel says so meanwhile, instead of an offsets-behind figure.
    from shopstream.dashboard import queries

    monkeypatch.setenv("SHOPSTREAM_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.delenv("SHOPSTREAM_KAFKA_CONFIG", raising=False)
    assert queries.ingest_lag(topic)["ingest"].startswith("60 events lost unread")
