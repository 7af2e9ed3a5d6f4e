"""The raw sink's file list over time, on fake commit logs (plain files): the log keeps only its
retention, the seals keep every committed file, and readers see the union."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from shopstream import publication
from shopstream.sink_log import (
    Sealing,
    committed_dates,
    committed_files,
    committed_files_by_date,
    delete_replaced,
    logged_files,
    original_files,
    partition_files,
    record_compaction,
    resolve_compacted,
    seal,
)
from shopstream.spark.raw_compaction import remove_orphans

OLD, NEW = "2026-11-01", "2026-11-30"


@pytest.fixture
def raw(tmp_path):
    """An empty raw sink, in a folder whose name looks like a partition (`k=v`) as some do."""
    sink = tmp_path / "run=1" / "raw"
    (sink / "_spark_metadata").mkdir(parents=True)
    return sink


def data_file(raw, day: str, name: str, verdict: str = "valid") -> str:
    return str(raw / f"verdict={verdict}" / f"date={day}" / f"part-{name}.parquet")


def compacted_file(raw, day: str, name: str) -> str:
    """A file as `raw_compaction` names what it writes."""
    return str(raw / "verdict=valid" / f"date={day}" / f"compacted-{name}.parquet")


def write_log(raw, name: str, files: list[str]) -> None:
    """One entry of Spark's file sink log: a batch (`7`) or a compaction (`9.compact`)."""
    records = [{"path": f"file://{f}", "size": 1, "isDir": False, "modificationTime": 0,
                "blockReplication": 1, "blockSize": 1, "action": "add"} for f in files]  # fmt: skip
    (raw / "_spark_metadata" / name).write_text("\n".join(["v1", *map(json.dumps, records)]))


def test_a_compaction_that_drops_old_entries_loses_no_file_once_the_writer_sealed(raw):
    old = [data_file(raw, OLD, "a"), data_file(raw, OLD, "b"), data_file(raw, OLD, "q", "quarantined")]
    write_log(raw, "0", old)
    write_log(raw, "1", [data_file(raw, NEW, "c")])
    before = committed_files_by_date(raw)
    fingerprint = publication.raw_inputs(raw, [OLD, NEW])

    assert seal(raw) == 3  # valid/OLD, quarantined/OLD, valid/NEW
    assert seal(raw) == 0  # nothing new: no seal rewritten
    # Spark compacts with a retention: OLD's entries leave the log; its later batches add files.
    write_log(raw, "1.compact", [data_file(raw, NEW, "c")])
    write_log(raw, "2", [data_file(raw, NEW, "d")])
    assert logged_files(raw) == {data_file(raw, NEW, "c"), data_file(raw, NEW, "d")}

    assert committed_files_by_date(raw, dates=[OLD]) == {OLD: before[OLD]}
    assert committed_files(raw, "quarantined", OLD) == [data_file(raw, OLD, "q", "quarantined")]
    assert committed_files(raw, "valid", NEW) == [data_file(raw, NEW, "c"), data_file(raw, NEW, "d")]
    assert committed_dates(raw) == [OLD, NEW]
    # A date's file list is the same whether its files are in the log or in a seal: a published
    # date is not seen as changed because its entries moved.
    assert publication.raw_inputs(raw, [OLD]) == {OLD: fingerprint[OLD]}


def test_only_the_latest_compaction_and_the_batches_after_it_are_read(raw):
    # Batch 0 is redundant once 1.compact exists (Spark deletes it minutes later): a compaction
    # that dropped its file by retention is what the log holds now.
    write_log(raw, "0", [data_file(raw, OLD, "a")])
    write_log(raw, "1.compact", [data_file(raw, NEW, "b")])
    write_log(raw, "2", [data_file(raw, NEW, "c")])
    assert logged_files(raw) == {data_file(raw, NEW, "b"), data_file(raw, NEW, "c")}


def test_a_seal_only_grows_and_is_rewritten_only_when_the_log_has_more(raw):
    write_log(raw, "0", [data_file(raw, NEW, "a")])
    seal(raw)
    sealed = raw / "_sealed" / "verdict=valid" / f"date={NEW}.json"
    assert json.loads(sealed.read_text())["files"] == [data_file(raw, NEW, "a")]
    write_log(raw, "1.compact", [data_file(raw, NEW, "b")])  # `a` dropped from the log, `b` new
    assert seal(raw) == 1
    assert json.loads(sealed.read_text())["files"] == [data_file(raw, NEW, "a"), data_file(raw, NEW, "b")]
    assert not list(sealed.parent.glob(".*.tmp"))


def test_sealing_runs_at_once_then_once_per_interval(raw):
    now, heard = [100.0], []
    sealing = Sealing(raw, interval=3600, on_sealed=heard.append, clock=lambda: now[0])
    write_log(raw, "0", [data_file(raw, NEW, "a")])
    assert sealing.now() == 1
    write_log(raw, "1", [data_file(raw, NEW, "b")])
    now[0] += 3599
    assert sealing.when_due() == 0  # not yet: the log is not read
    now[0] += 1
    assert sealing.when_due() == 1
    assert heard == [1, 1]


# --- compactions (the files are fake: `record_compaction` only records what replaced what) ----


def touch(*files: str) -> None:
    for f in files:
        Path(f).parent.mkdir(parents=True, exist_ok=True)
        Path(f).write_text("")


def compacted_day(raw):
    """OLD's three valid files, the first two in the log still, all sealed, then compacted into
    one; returns (old files, new file)."""
    old = [data_file(raw, OLD, name) for name in "abc"]
    touch(*old)
    write_log(raw, "0", old[:1])
    seal(raw)
    write_log(raw, "1.compact", old[1:])  # `a` left the log for its seal; `b` and `c` are in both
    seal(raw)
    new = compacted_file(raw, OLD, "x")
    touch(new)
    record_compaction(raw, f"verdict=valid/date={OLD}", set(old), [new], rows=3, now=T0)
    return old, new


T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_a_compaction_replaces_the_old_files_for_readers_and_sealing_never_brings_them_back(raw):
    _, new = compacted_day(raw)
    assert committed_files(raw, "valid", OLD) == [new]  # though `b` and `c` are still in the log
    assert committed_files_by_date(raw) == {OLD: [new]}
    assert committed_dates(raw) == [OLD]
    assert seal(raw) == 0
    write_log(raw, "2", [data_file(raw, OLD, "late")])  # a late file after the compaction is added
    seal(raw)
    assert committed_files(raw, "valid", OLD) == [new, data_file(raw, OLD, "late")]


def test_a_compaction_changes_no_fingerprint_and_pins_are_read_through_it(raw):
    old = [data_file(raw, OLD, name) for name in "abc"]
    write_log(raw, "0", old)
    before = publication.raw_inputs(raw, [OLD])[OLD]
    seal(raw)
    new = compacted_file(raw, OLD, "x")
    record_compaction(raw, f"verdict=valid/date={OLD}", set(old), [new], rows=3, now=T0)
    after = publication.raw_inputs(raw, [OLD])[OLD]
    assert after == {"files": [new], "fingerprint": before["fingerprint"]}
    # A version pinned before reads the new file; one that pinned part of the files keeps them.
    assert resolve_compacted(raw, old) == [new]
    assert resolve_compacted(raw, old[:2]) == old[:2]
    assert original_files(raw, [new]) == old


def test_replaced_files_are_deleted_after_the_grace_unless_a_kept_version_needs_them(raw):
    old, new = compacted_day(raw)
    day = dt.timedelta(days=1)
    assert delete_replaced(raw, [old], grace=day, now=T0 + day / 2) == []  # within the grace
    assert delete_replaced(raw, [old, old[:2]], grace=day, now=T0 + day) == []  # a partial pin
    assert all(Path(f).exists() for f in old)
    assert sorted(delete_replaced(raw, [old, [new]], grace=day, now=T0 + day)) == old
    assert not any(Path(f).exists() for f in old) and Path(new).exists()
    assert delete_replaced(raw, [], grace=day, now=T0 + 2 * day) == []  # done once
    assert committed_files(raw, "valid", OLD) == [new]


def test_a_second_compaction_of_a_partition_chains_with_the_first(raw):
    old, first = compacted_day(raw)
    late = [data_file(raw, OLD, "late1"), data_file(raw, OLD, "late2")]
    touch(*late)
    write_log(raw, "2", late)
    seal(raw)
    second = compacted_file(raw, OLD, "y")
    touch(second)
    record_compaction(raw, f"verdict=valid/date={OLD}", {first, *late}, [second], rows=5,
                      now=T0 + dt.timedelta(hours=1))  # fmt: skip
    assert committed_files(raw, "valid", OLD) == [second]
    assert resolve_compacted(raw, old + late) == [second]
    assert resolve_compacted(raw, old) == [first]  # pinned before the late files: the first one
    assert original_files(raw, [second]) == sorted(old + late)
    # The first compaction's file is needed by that pin: both notes wait for it.
    day = dt.timedelta(days=1)
    assert sorted(delete_replaced(raw, [old], grace=day, now=T0 + 2 * day)) == old
    assert Path(first).exists()
    # A later compaction's clean-up of crashed ones removes only files no seal names.
    orphan = compacted_file(raw, OLD, "z")
    touch(orphan)
    partition = f"verdict=valid/date={OLD}"
    remove_orphans(raw, partition, partition_files(raw, partition))
    assert Path(first).exists() and Path(second).exists() and not Path(orphan).exists()


def test_a_note_of_a_compaction_the_seal_does_not_hold_deletes_nothing(raw):
    old, _ = compacted_day(raw)
    notes = raw / "_sealed" / "_replaced"
    (note,) = notes.iterdir()
    stray = json.loads(note.read_text()) | {"to": [compacted_file(raw, OLD, "never-committed")]}
    note.write_text(json.dumps(stray))
    assert delete_replaced(raw, [], grace=dt.timedelta(0), now=T0) == []
    assert all(Path(f).exists() for f in old)


def test_the_live_writer_compacts_at_its_first_poll_then_once_a_day_and_survives_a_failure(raw, monkeypatch):
    from shopstream.spark import raw_compaction

    now, calls = [0.0], []

    def compact(spark, sink):
        calls.append(now[0])
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return 1

    monkeypatch.setattr(raw_compaction, "compact_closed_dates", compact)
    compacting = raw_compaction.Compacting(None, raw, interval=86400, clock=lambda: now[0])
    assert compacting.when_due() == 1
    now[0] = 86399.0
    assert compacting.when_due() == 0 and calls == [0.0]
    now[0] = 86400.0
    assert compacting.when_due() == 0  # failed: logged, not raised (the ingest goes on)
    now[0] = 2 * 86400.0
    assert compacting.when_due() == 1 and calls == [0.0, 86400.0, 172800.0]


def test_each_compaction_run_looks_at_every_closed_date_since_the_last_run(raw, monkeypatch):
    from shopstream.spark import raw_compaction

    monkeypatch.setenv("SHOPSTREAM_COMPACTION_AFTER_DAYS", "9")
    today = dt.date(2026, 12, 31)  # the last closed date: 12-22
    window = raw_compaction.closed_dates_window
    assert window(today) == (raw_compaction.EVERY_DATE, "2026-12-22")  # a sink's first run
    assert window(today, through="2026-12-21") == ("2026-12-15", "2026-12-22")  # at least 7 days
    assert window(today, through="2026-11-09") == ("2026-11-10", "2026-12-22")  # after an outage
    assert window(today, since="2026-12-01", through="2026-11-09") == ("2026-12-01", "2026-12-22")

    # The service was down for a month: its first run compacts the dates it missed, then marks them.
    many = {day: [data_file(raw, day, f"{day}-{i}") for i in range(raw_compaction.MIN_FILES)]
            for day in ("2026-11-12", "2026-12-10", "2026-12-24")}  # fmt: skip
    write_log(raw, "0", [f for files in many.values() for f in files])
    (raw / raw_compaction.COMPACTED_THROUGH_MARKER).write_text('{"through": "2026-11-09"}')
    compacted = []
    monkeypatch.setattr(
        raw_compaction, "compact_partition", lambda spark, sink, p, files: compacted.append(p)
    )
    assert raw_compaction.compact_closed_dates(None, raw, today=today) == 2
    assert compacted == ["verdict=valid/date=2026-11-12", "verdict=valid/date=2026-12-10"]  # 12-24: open
    assert raw_compaction.compacted_through(raw) == "2026-12-22"

    # A run by hand from a later date than the marker's next leaves the gap's dates waiting.
    (raw / raw_compaction.COMPACTED_THROUGH_MARKER).write_text('{"through": "2026-11-09"}')
    raw_compaction.compact_closed_dates(None, raw, today=today, since="2026-12-01")
    assert raw_compaction.compacted_through(raw) == "2026-11-09"

    # A failed compaction marks nothing: the next run looks at the same dates again.
    def fail(spark, sink, partition, files):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(raw_compaction, "compact_partition", fail)
    with pytest.raises(OSError):
        raw_compaction.compact_closed_dates(None, raw, today=today)
    assert raw_compaction.compacted_through(raw) == "2026-11-09"


def test_a_gap_accepted_twice_is_recorded_once_and_reported_for_the_days_it_may_touch(tmp_path, monkeypatch):
    from shopstream import report, sink_log

    monkeypatch.setenv("SHOPSTREAM_DATA_DIR", str(tmp_path))
    ledger = tmp_path / "raw" / sink_log.DATA_LOSS_LEDGER
    sink_log.record_data_loss(ledger, "orders", {0: (10, 15), 2: (7, 9)}, "retention")
    # A retried run finds the same gap (retention went on deleting meanwhile): still one entry.
    sink_log.record_data_loss(ledger, "orders", {0: (10, 16)}, "retention")
    gaps = sink_log.data_losses(ledger)
    assert [(g["partition"], g["first_offset"], g["end_offset"], g["events"]) for g in gaps] == [
        (0, 10, 16, 6), (2, 7, 9, 2)
    ]  # fmt: skip
    today = dt.datetime.now(dt.UTC).date()
    # Kafka held those events before today: they may be of any day up to tomorrow, none after.
    assert report.lost_unread((today - dt.timedelta(days=30)).isoformat()) == 8
    assert report.lost_unread((today + dt.timedelta(days=1)).isoformat()) == 8
    assert report.lost_unread((today + dt.timedelta(days=2)).isoformat()) == 0
