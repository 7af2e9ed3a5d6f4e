"""The pure parts of one-writer ingest and day completeness: the writer lock, the committed
offsets read from a checkpoint, and when a day counts as closed (no Spark, no broker)."""

from __future__ import annotations

import datetime as dt
import json

from shopstream.spark import stream_consumer
from shopstream.spark.ingest_guard import (
    AVAILABLE_NOW,
    LIVE,
    WriterLock,
    caught_up,
    committed_offsets,
)
from shopstream.spark.source_gaps import aged_out, rewound


def test_the_lock_has_one_holder_who_names_itself(tmp_path):
    first, second = WriterLock(tmp_path), WriterLock(tmp_path)
    assert first.acquire(LIVE)
    assert not second.acquire(AVAILABLE_NOW)
    holder = second.holder()
    assert holder.mode == LIVE and f"pid {holder.pid}" in holder.describe()
    first.release()
    with second:
        assert second.acquire(AVAILABLE_NOW) and second.holder().mode == AVAILABLE_NOW
    assert first.acquire(LIVE), "released on leaving the with block"
    first.release()


def write_batch(query, batch: int, *sources: dict[str, dict[str, int]], committed: bool) -> None:
    """A batch of the query's offset log as Spark writes it (one line per source), and its commit."""
    (query / "offsets").mkdir(parents=True, exist_ok=True)
    (query / "commits").mkdir(parents=True, exist_ok=True)
    lines = ["v1", json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": 0}), *map(json.dumps, sources)]
    (query / "offsets" / str(batch)).write_text("\n".join(lines))
    if committed:
        (query / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_committed_offsets_are_those_of_the_newest_committed_batch(tmp_path):
    query = tmp_path / "orders"
    assert committed_offsets(query) == {}
    write_batch(query, 0, {"t": {"0": 10, "1": 7}}, committed=True)
    write_batch(query, 1, {"t": {"0": 20, "1": 9}}, committed=False)  # planned, not yet committed
    assert committed_offsets(query) == {"t": {0: 10, 1: 7}}
    assert caught_up(committed_offsets(query), "t", {0: 10, 1: 7, 2: 0})
    assert not caught_up(committed_offsets(query), "t", {0: 20, 1: 9})
    write_batch(query, 1, {"t": {"0": 20, "1": 9}}, committed=True)
    assert caught_up(committed_offsets(query), "t", {0: 20, 1: 9})
    # A join of two topics: a line per source.
    write_batch(query, 2, {"t": {"0": 21}}, {"u": {"0": 3}}, committed=True)
    assert committed_offsets(query) == {"t": {0: 21}, "u": {0: 3}}


def test_offsets_deleted_before_the_query_read_them_are_a_gap_per_partition():
    committed = {"t": {0: 10, 1: 7, 2: 5}}
    # Partition 0 lost 10..14 unread; 1 was read past the deletions; 2 exactly up to them; 3 was
    # never read (a new query starts at the oldest event: nothing it had to read is gone).
    assert aged_out(committed, "t", {0: 15, 1: 3, 2: 5, 3: 40}) == {0: (10, 15)}
    assert aged_out(committed, "other", {0: 15}) == {}
    # A topic created again ends before the committed offsets: what it holds would be skipped.
    assert rewound(committed, "t", {0: 0, 1: 0, 2: 0}, {0: 12, 1: 7, 2: 4}) == {2: (0, 4)}


def test_a_day_is_complete_after_its_midnight_plus_the_grace(monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_DAY_GRACE_SECONDS", "300")
    assert stream_consumer.day_closed_at("2026-11-27") == dt.datetime(2026, 11, 28, 0, 5, tzinfo=dt.UTC)
    slept = []
    at_midnight = lambda: dt.datetime(2026, 11, 28, 0, 0, 30, tzinfo=dt.UTC)  # noqa: E731
    assert stream_consumer.wait_until_day_closed("2026-11-27", now=at_midnight, sleep=slept.append) == 270
    assert slept == [270]
    assert stream_consumer.wait_until_day_closed("2026-11-20", now=at_midnight, sleep=slept.append) == 0
    assert slept == [270], "a day long closed: no wait"
