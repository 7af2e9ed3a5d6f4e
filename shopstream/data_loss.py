"""The ledger of events Kafka deleted before a query read them, written beside the query's
checkpoint when a run was told to go on past them (`source_gaps.check_source_continuity`,
`--accept-data-loss`): one entry per topic, partition, first lost offset and cause, so that a
retried run does not record a gap twice. The report names the gaps of the ingest's ledger."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from shopstream.config import paths
from shopstream.files import write_json_atomically

DATA_LOSS_LEDGER = "_data_loss.json"


def ingest_ledger() -> Path:
    """The ingest's ledger (beside its checkpoints)."""
    return paths().ingest_checkpoints / DATA_LOSS_LEDGER


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
