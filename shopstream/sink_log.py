"""The files a Spark streaming file sink has committed, read from its commit log
(`_spark_metadata/`) in plain Python: what readers outside Spark (validation, the report) must
read instead of globbing folders, which would also find the orphan files of a crashed batch.

Log format (Spark's `FileStreamSinkLog`, version 1): one file per batch, `N` or `N.compact`
(a compaction repeats every entry before it); a first line `v1`, then one JSON object per file
with its `path` (a URI) and `action` (`add` or `delete`).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from shopstream.config import VALID, VERDICT

LOG_DIR = "_spark_metadata"


def _batch_files(sink: Path) -> list[Path]:
    log_dir = sink / LOG_DIR
    if not log_dir.is_dir():
        return []
    entries = [e for e in log_dir.iterdir() if e.name.split(".")[0].isdigit() and e.suffix != ".tmp"]
    return sorted(entries, key=lambda e: int(e.name.split(".")[0]))


def committed_files(sink: Path, verdict: str | None = None, date: str | None = None) -> list[str]:
    """The data files the commit log holds now (compactions and deletes applied); with `verdict`
    and/or `date`, only those of that partition."""
    files: set[str] = set()
    for entry in _batch_files(sink):
        lines = entry.read_text().splitlines()
        if not lines or lines[0] != "v1":
            raise ValueError(f"{entry}: not a version 1 file sink log")
        for record in map(json.loads, lines[1:]):
            path = unquote(urlparse(record["path"]).path)
            if record["action"] == "add":
                files.add(path)
            else:
                files.discard(path)
    wanted = [f"/{VERDICT}={verdict}/" if verdict else "", f"/date={date}/" if date else ""]
    return sorted(f for f in files if all(w in f for w in wanted))


def committed_files_by_date(sink: Path, verdict: str = VALID) -> dict[str, list[str]]:
    """The committed files of `verdict`, grouped by their `date` partition (one read of the log)."""
    by_date: dict[str, list[str]] = {}
    for f in committed_files(sink, verdict):
        by_date.setdefault(f.split("/date=")[1].split("/")[0], []).append(f)
    return by_date


def committed_dates(sink: Path, verdict: str = VALID) -> list[str]:
    """The dates of the committed files of `verdict`."""
    return sorted(committed_files_by_date(sink, verdict))


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
    sink.mkdir(parents=True, exist_ok=True)
    staged = sink / f".{name}.tmp"
    staged.write_text(json.dumps(content))
    staged.replace(sink / name)


def unmark_deduplicated(sink: Path) -> None:
    (sink / DEDUPLICATED_MARKER).unlink(missing_ok=True)
