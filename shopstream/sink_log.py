"""The files a Spark streaming file sink has committed, read from its commit log
(`_spark_metadata/`) and its seals in plain Python: what readers outside Spark (validation, the
report, the batch jobs' pinned inputs) must read instead of globbing folders, which would also
find the orphan files of a crashed batch.

Log format (Spark's `FileStreamSinkLog`, version 1): one file per batch, `N` or `N.compact`
(a compaction repeats every entry before it); a first line `v1`, then one JSON object per file
with its `path` (a URI) and `action` (`add` or `delete`).

Seals (`_sealed/<partition>.json`, e.g. `_sealed/verdict=valid/date=2026-11-20.json`): the
committed files of one partition, copied out of the log by its writer (`seal`). Spark's log keeps
every file ever committed and rewrites all of it at each compaction (every 10 batches): a year of
the live service's 1-minute batches at 4 files each is ≈ 2M entries, 15 s per compaction and 29 s per read,
and the driver runs out of memory listing them. So the raw sink's log keeps only a retention
(`config.sink_log_retention`: Spark's file sink option `retention` drops older entries when it
compacts) and the seals keep the rest, one small file per partition. The writer seals before its
query starts and while it runs, so every entry is in a seal before a compaction may drop it;
readers read the log first, then the seals, and see the union.

Compactions (`shopstream.spark.raw_compaction`): the live service writes a file a minute into each
date it receives; once a date is closed (no event of it can still be valid) the writer rewrites
its files into a few and records, in the date's seal, which files replaced which (`compactions`:
`from`, `to`). Readers then see the new files instead of the old (`_committed`), inputs pinned
before it are read through it (`resolve_compacted`: the same rows), a date's fingerprint is
taken over its files as committed (`original_files`), and the old files are deleted once no kept
version needs them (`delete_replaced`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from shopstream.config import VALID, VERDICT
from shopstream.files import write_json_atomically

LOG_DIR = "_spark_metadata"
SEALS_DIR = "_sealed"
COMPACT = ".compact"


def _batch_files(sink: Path) -> list[Path]:
    log_dir = sink / LOG_DIR
    if not log_dir.is_dir():
        return []
    entries = [e for e in log_dir.iterdir() if e.name.split(".")[0].isdigit() and e.suffix != ".tmp"]
    return sorted(entries, key=lambda e: int(e.name.split(".")[0]))


def _current_log_files(sink: Path) -> list[Path]:
    """The latest compaction and the batches after it: a compaction repeats what the batches
    before it hold (Spark deletes those some minutes later), so reading them again is waste."""
    entries = _batch_files(sink)
    compactions = [i for i, e in enumerate(entries) if e.name.endswith(COMPACT)]
    return entries[compactions[-1] :] if compactions else entries


def logged_files(sink: Path) -> set[str]:
    """The data files the commit log holds now (its compaction and deletes applied)."""
    files: set[str] = set()
    for entry in _current_log_files(sink):
        lines = entry.read_text().splitlines()
        if not lines or lines[0] != "v1":
            raise ValueError(f"{entry}: not a version 1 file sink log")
        for record in map(json.loads, lines[1:]):
            path = unquote(urlparse(record["path"]).path)
            if record["action"] == "add":
                files.add(path)
            else:
                files.discard(path)
    return files


def _partition_of(path: str) -> str:
    """`verdict=valid/date=2026-11-20` for a file of that partition: the `k=v` folders right above
    the file (not a folder of that shape higher up, above the sink)."""
    folders = path.split("/")[:-1]
    keys = len(folders) - next((i for i, f in enumerate(reversed(folders)) if "=" not in f), len(folders))
    return "/".join(folders[keys:])


def _seal_path(sink: Path, partition: str) -> Path:
    return sink / SEALS_DIR / f"{partition}.json"


def _read_record(seal: Path) -> dict:
    """A seal: its partition's `files` and the `compactions` that replaced some of them."""
    record = json.loads(seal.read_text()) if seal.exists() else {}
    return {"files": record.get("files", []), "compactions": record.get("compactions", [])}


def _record_of(sink: Path, partition: str) -> dict:
    return _read_record(_seal_path(sink, partition))


def _replaced(record: dict) -> set[str]:
    return set().union(*(c["from"] for c in record["compactions"]))


def _read_seal(seal: Path) -> set[str]:
    """The files of a seal that readers read (those a compaction replaced are not among them)."""
    return set(_read_record(seal)["files"])


def seal(sink: Path) -> int:
    """Copies each partition's committed files from the log into its seal wherever the log holds
    a file the seal lacks (a seal only grows). Called by the sink's writer alone, before its query
    starts and then at least once per retention. Returns how many seals it wrote."""
    by_partition: dict[str, set[str]] = {}
    for path in logged_files(sink):
        by_partition.setdefault(_partition_of(path), set()).add(path)
    written = 0
    for partition, files in sorted(by_partition.items()):
        target = _seal_path(sink, partition)
        record = _read_record(target)
        sealed, files = set(record["files"]), files - _replaced(record)  # a compacted file stays out
        if not files <= sealed:
            write_json_atomically(target, {**record, "files": sorted(sealed | files)}, indent=None)
            written += 1
    return written


class Periodic:
    """A housekeeping task of the sink's writer (`run`): `now()`, then `when_due()` again once
    every `interval` seconds (a continuous query calls it on each poll)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self.last: float | None = None

    def run(self) -> int:
        raise NotImplementedError

    def now(self) -> int:
        done = self.run()
        self.last = self.clock()
        return done

    def when_due(self) -> int:
        return self.now() if self.last is None or self.clock() - self.last >= self.interval else 0


class Sealing(Periodic):
    """The writer's sealing of `sink`; `on_sealed` hears how many seals each sealing wrote."""

    def __init__(self, sink: Path, interval: float, on_sealed: Callable[[int], None] = lambda n: None,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        super().__init__(interval, clock)
        self.sink, self.on_sealed = sink, on_sealed

    def run(self) -> int:
        written = seal(self.sink)
        self.on_sealed(written)
        return written


def _seals(sink: Path, verdict: str | None, dates: Iterable[str] | None) -> list[Path]:
    root = sink / SEALS_DIR
    if not root.is_dir():
        return []
    verdicts = [f"{VERDICT}={verdict}"] if verdict else sorted(p.name for p in root.glob(f"{VERDICT}=*"))
    if dates is None:
        return [s for v in verdicts for s in sorted((root / v).glob("date=*.json"))]
    return [root / v / f"date={d}.json" for v in verdicts for d in dates]


def _committed(sink: Path, verdict: str | None, dates: Iterable[str] | None) -> list[str]:
    dates = None if dates is None else set(dates)
    logged = logged_files(sink)  # the log first: an entry leaves it only once a seal holds it
    seals = set(_seals(sink, verdict, dates))
    # A logged file's partition may have been compacted (its seal then says what replaced it).
    seals |= {_seal_path(sink, _partition_of(f)) for f in logged}
    records = [_read_record(s) for s in seals]
    files = logged.union(*(r["files"] for r in records)) - set().union(*map(_replaced, records))
    return sorted(f for f in files if _of_verdict(f, verdict) and (dates is None or _date_of(f) in dates))


def committed_files(sink: Path, verdict: str | None = None, date: str | None = None) -> list[str]:
    """The data files committed to `sink` (its log and seals); with `verdict` and/or `date`, only
    those of that partition."""
    return _committed(sink, verdict, None if date is None else [date])


def committed_files_by_date(
    sink: Path, verdict: str = VALID, dates: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """The committed files of `verdict` grouped by their `date` partition (one read of the log),
    for `dates` only when given."""
    by_date: dict[str, list[str]] = {}
    for f in _committed(sink, verdict, dates):
        by_date.setdefault(_date_of(f), []).append(f)
    return by_date


def committed_dates(sink: Path, verdict: str = VALID) -> list[str]:
    """The dates of the committed files of `verdict` (the log's, and those with a seal)."""
    logged = {_date_of(f) for f in logged_files(sink) if _of_verdict(f, verdict)}
    sealed = (sink / SEALS_DIR / f"{VERDICT}={verdict}").glob("date=*.json")
    return sorted(logged | {s.stem.removeprefix("date=") for s in sealed})


def _date_of(path: str) -> str:
    return path.split("/date=")[1].split("/")[0]


def _of_verdict(path: str, verdict: str | None) -> bool:
    return verdict is None or f"/{VERDICT}={verdict}/" in path


# Written into a sink's root by an ingest that drops re-deliveries from the sink's very first batch
# on (`stream_consumer`): such a sink holds each valid event once, and the batch jobs skip their
# own de-duplication pass over it. Readers of Parquet ignore files starting with "_".
DEDUPLICATED_MARKER = "_deduplicated.json"


def writer_deduplicated(sink: Path) -> bool:
    """Whether every batch of `sink` was written by an ingest that dropped re-deliveries."""
    return (sink / DEDUPLICATED_MARKER).exists()


def mark_deduplicated(sink: Path, window_days: int) -> None:
    """Records that the sink's writer drops re-deliveries (call before its first batch only)."""
    _write_marker(sink, DEDUPLICATED_MARKER, {"redelivery_window_days": window_days})


# Written into a sink's root by the ingest (`stream_consumer`) before its first batch: each row it
# files as valid passed the contract's validation (`shopstream.spark.orders`), whose rules include
# the batch jobs' guard for raw layers of other writers (`shopstream.spark.batch.well_formed`).
VALIDATED_MARKER = "_validated.json"


def writer_validated(sink: Path) -> bool:
    """Whether every valid row of `sink` was validated against the contract by its writer."""
    return (sink / VALIDATED_MARKER).exists()


def mark_validated(sink: Path, rules: dict) -> None:
    """Records that the sink's writer validates each row by `rules` (call before its first batch)."""
    _write_marker(sink, VALIDATED_MARKER, rules)


def _write_marker(sink: Path, name: str, content: dict) -> None:
    write_json_atomically(sink / name, content, indent=None)


def unmark_deduplicated(sink: Path) -> None:
    (sink / DEDUPLICATED_MARKER).unlink(missing_ok=True)


# Written beside a query's output (the raw sink's root, the live query's checkpoint folder) when
# a run was told to go on past events Kafka deleted before the query read them (`streaming.
# check_source_continuity`, `--accept-data-loss`): one entry per topic, partition, first lost
# offset and cause, so that a retried run does not record a gap twice.
DATA_LOSS_LEDGER = "_data_loss.json"


def data_losses(ledger: Path) -> list[dict]:
    """The gaps recorded in `ledger`: topic, partition, first_offset, end_offset, events, cause,
    accepted_at."""
    return json.loads(ledger.read_text())["gaps"] if ledger.exists() else []


def record_data_loss(ledger: Path, topic: str, gap: dict[int, tuple[int, int]], cause: str) -> None:
    """Adds the offsets [first, end) per partition of `topic` that were lost (`cause`) to the
    ledger; a gap already there (a retried run) keeps one entry, reaching the furthest end seen."""
    entries = {(e["topic"], e["partition"], e["first_offset"], e["cause"]): e for e in data_losses(ledger)}
    accepted_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for p, (first, end) in gap.items():
        known = entries.get((topic, p, first, cause), {})
        end = max(end, known.get("end_offset", end))
        entries[(topic, p, first, cause)] = {
            "topic": topic, "partition": p, "first_offset": first, "end_offset": end, "events": end - first,
            "cause": cause, "accepted_at": known.get("accepted_at", accepted_at),
        }  # fmt: skip
    write_json_atomically(ledger, {"gaps": list(entries.values())})


# --- compactions of closed partitions (`shopstream.spark.raw_compaction` writes the files) ------

COMPACTED_PREFIX = "compacted-"
PENDING_DIR = "_replaced"  # under SEALS_DIR: one file per compaction whose old files still exist
# How long a compaction's old files outlive it at least: a reader that listed them just before (no
# pin: the report, an ad-hoc read) may still be reading.
REPLACED_GRACE = dt.timedelta(days=1)


def committed_by_partition(sink: Path, dates: Iterable[str]) -> dict[str, set[str]]:
    """The committed files of `dates` (every verdict) grouped by partition (one read of the log)."""
    by_partition: dict[str, set[str]] = {}
    for f in _committed(sink, None, dates):
        by_partition.setdefault(_partition_of(f), set()).add(f)
    return by_partition


def partition_date(partition: str) -> str:
    """`2026-11-20` of `verdict=valid/date=2026-11-20`."""
    return _date_of(f"/{partition}/")


def partition_files(sink: Path, partition: str) -> set[str]:
    """The committed files of one partition (`verdict=valid/date=…`) now."""
    return committed_by_partition(sink, [partition_date(partition)]).get(partition, set())


def sealed_partitions(sink: Path) -> list[str]:
    """Every partition with a seal, e.g. `verdict=valid/date=2026-11-20`."""
    return [f"{s.parent.name}/{s.stem}" for s in _seals(sink, None, None)]


def record_compaction(sink: Path, partition: str, old: set[str], new: list[str], rows: int,
                      now: dt.datetime | None = None) -> dict:  # fmt: skip
    """Commits a compaction of `partition`: readers see `new` (files holding exactly the `rows` of
    `old`) instead of `old`, from one atomic rename of the seal on. The old files stay on disk
    until `delete_replaced`; a pending note lists them for it. Called by the sink's writer only."""
    current = partition_files(sink, partition)
    if not old <= current:
        missing = sorted(old - current)[:3]
        raise ValueError(f"{partition}: the files to replace are not all committed: {missing}")
    at = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    compaction = {"at": at, "rows": rows, "from": sorted(old), "to": sorted(new)}
    compactions = [*_record_of(sink, partition)["compactions"], compaction]
    record = {"files": sorted((current - old) | set(new)), "compactions": compactions}
    write_json_atomically(_seal_path(sink, partition), record, indent=None)  # the commit
    # Only then the note for `delete_replaced` (a crash in between leaves the old files on disk).
    pending = sink / SEALS_DIR / PENDING_DIR / f"{Path(new[0]).stem}.json"
    write_json_atomically(pending, {"partition": partition, **compaction}, indent=None)
    return compaction


def known_files(sink: Path, partition: str) -> set[str]:
    """Every file of `partition` its seal names: committed, or replaced by or written by a
    compaction (which a kept version may still read)."""
    record = _record_of(sink, partition)
    moved = [set(c["from"]) | set(c["to"]) for c in record["compactions"]]
    return set(record["files"]).union(*moved)


def _compactions_of(sink: Path, files: Iterable[str]) -> list[dict]:
    """The compactions of the partitions `files` belong to, oldest first."""
    partitions = {_partition_of(f) for f in files}
    found = [c for p in sorted(partitions) for c in _record_of(sink, p)["compactions"]]
    return sorted(found, key=lambda c: c["at"])


def resolve_compacted(sink: Path, files: Iterable[str]) -> list[str]:
    """Pinned files as they are read now: where a compaction replaced all of a group of them, the
    files it wrote instead (the same rows). A pin holding only part of a group keeps its files
    (`delete_replaced` keeps them on disk for it)."""
    current = set(files)
    for c in _compactions_of(sink, current):
        if set(c["from"]) <= current:
            current = (current - set(c["from"])) | set(c["to"])
    return sorted(current)


def original_files(sink: Path, files: Iterable[str]) -> list[str]:
    """`files` with every compaction undone: the files as the sink committed them, so that a
    date's fingerprint does not change when its files are only rewritten."""
    current = set(files)
    for c in reversed(_compactions_of(sink, current)):
        if set(c["to"]) <= current:
            current = (current - set(c["to"])) | set(c["from"])
    return sorted(current)


def delete_replaced(sink: Path, pins: Iterable[Iterable[str]], grace: dt.timedelta,
                    now: dt.datetime | None = None) -> list[str]:  # fmt: skip
    """Deletes the files compactions replaced at least `grace` ago (a reader that listed them just
    before may still be reading), unless a pin (the raw files a kept version of the transformed
    layer was computed from) still needs them once resolved (`resolve_compacted`). Returns them."""
    folder = sink / SEALS_DIR / PENDING_DIR
    notes = sorted(folder.glob("*.json")) if folder.is_dir() else []
    now = now or dt.datetime.now(dt.UTC)
    due = [(n, json.loads(n.read_text())) for n in notes]
    due = [(n, c) for n, c in due if now - dt.datetime.fromisoformat(c["at"]) >= grace]
    if not due:
        return []
    needed = set().union(*(resolve_compacted(sink, pin) for pin in pins))
    deleted = []
    for note, compaction in due:
        committed = _record_of(sink, compaction["partition"])["compactions"]
        if needed & set(compaction["from"]) or not any(c["to"] == compaction["to"] for c in committed):
            continue
        for f in compaction["from"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(f)
                deleted.append(f)
        note.unlink()
    return deleted
