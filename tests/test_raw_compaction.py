"""A closed date's raw files compacted by the sink's writer, on real Kafka and Spark: the rows
stay those read back from Kafka (valid and quarantined), the date's published analytics stay valid
and unchanged, a version pinned before reads the new files, a crash before the commit changes
nothing, and the old files go once nothing needs them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from shopstream import daily_tables, publication, sink_log
from shopstream.config import VALID
from shopstream.daily_tables import branch_for
from shopstream.spark import batch_df_etl, batch_rdd_etl, raw_compaction
from shopstream.spark.batch import run_inputs
from shopstream.spark.stream_consumer import run
from shopstream.validation import publish_validated, validate
from tests import iceberg_read
from tests.conftest import produce
from tests.dates import days_ago
from tests.test_stream_kafka import expected_from_kafka, settings_for

pytestmark = pytest.mark.integration

DAY = days_ago(3)
EVENTS = 1200


def crash_before_commit(*args, **kwargs):
    raise OSError("disk full (simulated): the compaction stops before its commit")


def compacted(files: list[str]) -> bool:
    return all(Path(f).name.startswith(sink_log.COMPACTED_PREFIX) for f in files)


def outputs(version: str, output: str) -> list[tuple]:
    """A run's rows of `output` for DAY, on its branch (PyIceberg + DuckDB)."""
    return iceberg_read.rows(output, ref=branch_for(version), where=f"date = DATE '{DAY}'")


def test_a_closed_dates_files_are_compacted_once_with_the_same_rows_analytics_and_pins(
    spark, kafka_broker, topic, tmp_path, monkeypatch
):
    monkeypatch.setenv("SHOPSTREAM_COMPACTION_AFTER_DAYS", "30")  # DAY is not closed yet
    settings = settings_for(tmp_path, kafka_broker.bootstrap, topic, available_now=True,
                            max_offsets_per_trigger=100)  # fmt: skip
    produce(kafka_broker, topic, "--count", str(EVENTS), "--seed", "91", "--malformed-ratio", "0.03",
            "--start", DAY, "--span", "24h")  # fmt: skip
    run(settings, spark)  # 12 micro-batches: a file per batch and writer task in DAY's folder
    raw = settings.raw_dir
    old = sink_log.committed_files(raw, VALID, DAY)
    assert len(old) >= raw_compaction.MIN_FILES and not compacted(old)

    # DAY is transformed and published from those files (the version pins them).
    root = tmp_path / "transformed"
    inputs = run_inputs(raw, root, [DAY], "v1")
    batch_rdd_etl.run(inputs, spark)
    batch_df_etl.run(inputs, spark)
    publish_validated(validate(DAY, root, raw, version="v1"), root)
    published = publication.published(DAY)

    # DAY closes. A compaction that fails before its commit changes nothing (the drain succeeds).
    monkeypatch.setenv("SHOPSTREAM_COMPACTION_AFTER_DAYS", "2")
    monkeypatch.setattr(raw_compaction, "record_compaction", crash_before_commit)
    run(settings, spark)
    assert sink_log.committed_files(raw, VALID, DAY) == old
    orphans = list(raw.glob(f"verdict=*/date={DAY}/{sink_log.COMPACTED_PREFIX}*"))
    assert orphans, "the crashed compaction should have left its files (unlisted) behind"

    # The next drain compacts every partition of DAY with many files, and removes the orphans.
    monkeypatch.undo()
    monkeypatch.setenv("SHOPSTREAM_COMPACTION_AFTER_DAYS", "2")
    run(settings, spark)
    new = sink_log.committed_files(raw, VALID, DAY)
    assert len(new) == 1 and compacted(new)
    assert not any(o.exists() for o in orphans)
    for partition in [p for p in sink_log.sealed_partitions(raw) if p.endswith(f"date={DAY}")]:
        files = sink_log.partition_files(raw, partition)
        assert len(files) < raw_compaction.MIN_FILES, f"{partition} was left with {len(files)} files"
    assert raw_compaction.compacted_through(raw) == days_ago(2)

    # Unreadable events are quarantined under the day they arrived (today's, not closed yet); once
    # that day closes, its partition is compacted like any other.
    # How many of its micro-batches hold an unreadable record is chance (about 15 of the 1200
    # events, 12 batches): a partition of 2 files or more is compacted under this test's threshold.
    monkeypatch.setattr(raw_compaction, "MIN_FILES", 2)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    arrived = [p for p in sink_log.sealed_partitions(raw) if p.endswith(f"date={today}")]
    assert arrived and all(len(sink_log.partition_files(raw, p)) >= raw_compaction.MIN_FILES for p in arrived)
    monkeypatch.setenv("SHOPSTREAM_COMPACTION_AFTER_DAYS", "0")
    run(settings, spark)
    for partition in arrived:
        assert compacted(sorted(sink_log.partition_files(raw, partition))), partition

    # Its rows are the events read back from Kafka, each once (valid and quarantined alike).
    valid, bad = expected_from_kafka(kafka_broker.bootstrap, topic, EVENTS)
    every = duckdb.read_parquet(sink_log.committed_files(raw), hive_partitioning=True, union_by_name=True)
    landed = every.select("verdict, kafka_partition, kafka_offset").fetchall()
    assert len(landed) == EVENTS
    assert {(p, o) for v, p, o in landed if v == VALID} == set(valid)
    assert {(p, o) for v, p, o in landed if v != VALID} == bad

    # The date did not change: nothing to re-transform; its published analytics reconcile with
    # the compacted files, and the version pinned before reads them.
    assert publication.changed_dates(raw, [DAY]) == {}
    assert publication.published(DAY) == published
    assert run_inputs(raw, root, [DAY], "v1").files == new
    assert validate(DAY, root, raw).passed and validate(DAY, root, raw, version="v1").passed
    # Spark reads the compacted files into the same analytics, row for row.
    batch_df_etl.run(run_inputs(raw, root, [DAY], "v2"), spark)
    for output in daily_tables.OUTPUTS:
        assert sorted(outputs("v2", output)) == sorted(outputs("v1", output)), output

    # A drain later: nothing left to compact.
    run(settings, spark)
    assert sink_log.committed_files(raw, VALID, DAY) == new

    # The old files outlive the grace, then go (the published version's pin reads the new file).
    assert publication.vacuum_raw(raw, root) == []
    later = dt.datetime.now(dt.UTC) + sink_log.REPLACED_GRACE
    deleted = publication.vacuum_raw(raw, root, now=later)
    assert set(old) <= set(deleted) and not any(Path(f).exists() for f in deleted)
    assert validate(DAY, root, raw, version="v1").passed
