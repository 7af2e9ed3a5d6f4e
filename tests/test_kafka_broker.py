"""The project's own KRaft broker launcher, against the real Kafka StorageTool."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopstream.devstack import kafka_broker
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.devstack.processes import free_port


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One random id in 64 starts with "-"; it once made CI fail at broker start.
    dash_id = "-Pw5Gm0nT1qA8wXcYl2Zbg"
    monkeypatch.setattr(kafka_broker, "kraft_cluster_id", lambda: dash_id)
    broker = LocalBroker(home=tmp_path, port=free_port(), controller_port=free_port())

    broker._format_storage()

    meta = (broker.data_dir / "meta.properties").read_text()
    assert f"cluster.id={dash_id}" in meta


def test_the_extra_jvm_options_reach_the_brokers_jvm(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_JVM_OPTIONS", "-XX:TieredStopAtLevel=1 -Xss2m")
    (tmp_path / "kafka_2.13-4.1.1.jar").touch()
    command = LocalBroker(home=tmp_path, jars=tmp_path)._java("kafka.Kafka")
    assert command[command.index("-XX:TieredStopAtLevel=1") + 1] == "-Xss2m"
    assert command[-1] == "kafka.Kafka"
