"""One writer per raw table and checkpoint, with the live ingest service running for real (a `--trigger`
stream_consumer process, as `make stream-up` starts it) on the test broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shopstream.config import VALID
from shopstream.devstack.ingest_service import IngestService
from shopstream.spark.stream_consumer import run
from shopstream.spark.streaming import StreamSettings
from tests.conftest import point_pipeline_at, produce
from tests.dates import days_ago
from tests.kafka_read import read_topic
from tests.raw_rows import partitions_by_commit, read_raw

pytestmark = pytest.mark.integration


def landed() -> list[tuple[int, int]]:
    return sorted(read_raw(VALID).select("kafka_partition, kafka_offset").fetchall())


def test_one_writer_per_sink_and_the_scheduled_ingest_waits_for_the_live_service(
    spark, kafka_broker, topic, tmp_path, monkeypatch
):
    point_pipeline_at(monkeypatch, tmp_path, kafka_broker.bootstrap)
    produce(kafka_broker, topic, "--count", "3000", "--seed", "91", "--start", days_ago(1))
    settings = StreamSettings(bootstrap=kafka_broker.bootstrap, topic=topic, available_now=True)
    service = IngestService(trigger="2 seconds", topic=topic)
    service.start()
    try:
        assert service.running()
        live_pid = service.process.pid()
        # A second live writer on the same sink fails fast, naming the first.
        second = subprocess.run(
            [sys.executable, "-m", "shopstream.spark.stream_consumer", "--topic", topic, "--trigger", "2s"],
            env=dict(os.environ), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"pid {live_pid}" in second.stderr and "one query per table" in second.stderr

        # More events arrive; the DAG's ingest step (--available-now) starts no query of its own
        # but returns once the live query has committed everything the topic held.
        produce(kafka_broker, topic, "--count", "2000", "--seed", "92", "--start", days_ago(1))
        assert run(settings, spark) == {"raw": 0, "quarantine": 0, "redelivered": 0}
        in_kafka = sorted((m.partition, m.offset) for m in read_topic(kafka_broker.bootstrap, topic, 5000))
        assert landed() == in_kafka, "every record committed by the live query, each once"
    finally:
        assert service.stop()
    assert not service.running()
    # Each commit of the live query added one file per partition (a day of 1-minute batches is
    # then ≈ 1,440 files a date, not 4 per batch).
    live_commits = partitions_by_commit()
    assert live_commits
    for partitions in live_commits.values():
        assert len(partitions) == len(set(partitions)), partitions

    # With the service stopped, the scheduled ingest drains the topic itself.
    produce(kafka_broker, topic, "--count", "1000", "--seed", "93", "--start", days_ago(1))
    assert run(settings, spark) == {"raw": 1000, "quarantine": 0, "redelivered": 0}
    in_kafka = sorted((m.partition, m.offset) for m in read_topic(kafka_broker.bootstrap, topic, 6000))
    assert landed() == in_kafka
