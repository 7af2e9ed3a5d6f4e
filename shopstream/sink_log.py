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
"""

from __future__ import annotations

import json
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


def _read_seal(seal: Path) -> set[str]:
    return set(json.loads(seal.read_text())["files"]) if seal.exists() else set()


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
        sealed = _read_seal(target)
        if not files <= sealed:
            write_json_atomically(target, {"files": sorted(sealed | files)}, indent=None)
            written += 1
    return written


class Sealing:
    """The writer's sealing of `sink`: `now()`, then `when_due()` again once every `interval`
    seconds (a continuous query calls it on each poll); `on_sealed` hears how many seals each
    sealing wrote."""

    def __init__(self, sink: Path, interval: float, on_sealed: Callable[[int], None] = lambda n: None,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.sink, self.interval, self.on_sealed, self.clock = sink, interval, on_sealed, clock
        self.last: float | None = None

    def now(self) -> int:
        written = seal(self.sink)
        self.last = self.clock()
        self.on_sealed(written)
        return written

    def when_due(self) -> int:
        return self.now() if self.last is None or self.clock() - self.last >= self.interval else 0


def _sealed_files(sink: Path, verdict: str | None, dates: Iterable[str] | None) -> set[str]:
    root = sink / SEALS_DIR
    if not root.is_dir():
        return set()
    verdicts = [f"{VERDICT}={verdict}"] if verdict else sorted(p.name for p in root.glob(f"{VERDICT}=*"))
    if dates is None:
        seals = [s for v in verdicts for s in sorted((root / v).glob("date=*.json"))]
    else:
        seals = [root / v / f"date={d}.json" for v in verdicts for d in dates]
    return set().union(*map(_read_seal, seals))


def _committed(sink: Path, verdict: str | None, dates: Iterable[str] | None) -> list[str]:
    dates = None if dates is None else set(dates)
    files = logged_files(sink)  # the log first: an entry leaves it only once a seal holds it
    files |= _sealed_files(sink, verdict, dates)
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
