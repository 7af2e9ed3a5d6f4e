"""Moves the file sinks of an earlier version into their tables, once, and says what it moved:
the raw layer (the streaming file sink's Parquet under `data/raw`) into `lake.<namespace>.raw_events`,
the order status job's rejected updates (`data/quarantine_updates`) into `quarantined_updates`.

    python -m shopstream.spark.migrate_raw [--raw-dir data/raw]     # or: shopstream migrate-raw

It reads only the files the old sink committed: those its commit log (`_spark_metadata/`) and its
seals (`_sealed/<partition>.json`) list, less those its compactions replaced; never an orphan of a
crashed batch. Their rows are appended in one commit whose summary names the folder
(`shopstream.migrated-from`): a second run finds it and moves nothing. The old sink's markers
(`_validated.json`, `_deduplicated.json`) become the raw table's properties. Keep the checkpoints:
the ingest and the order status job read on from their offsets into the tables. The daily outputs
and the order status are tables since earlier versions; delete the folders once satisfied.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from shopstream.config import paths
from shopstream.raw_table import DEDUPLICATED, RAW_EVENTS, VALIDATED
from shopstream.spark.lake_init import ensure_table
from shopstream.spark.raw_events import ensure_raw_table, set_properties
from shopstream.spark.session import exit_after, get_spark, job_logger
from shopstream.spark.status_table import QUARANTINE_TABLE

log = job_logger("migrate_raw")

MIGRATED_FROM = "shopstream.migrated-from"
SNAPSHOT_PROPERTY = f"spark.sql.iceberg.snapshot-property.{MIGRATED_FROM}"


def _log_entries(sink: Path) -> list[Path]:
    """The commit log's latest compaction and the batches after it (a compaction repeats all before)."""
    log_dir = sink / "_spark_metadata"
    entries = sorted((e for e in log_dir.iterdir() if e.name.split(".")[0].isdigit() and e.suffix != ".tmp"),
                     key=lambda e: int(e.name.split(".")[0])) if log_dir.is_dir() else []  # fmt: skip
    compactions = [i for i, e in enumerate(entries) if e.name.endswith(".compact")]
    return entries[compactions[-1] :] if compactions else entries


def committed_files(sink: Path) -> list[str]:
    """The old sink's committed data files: its log's and its seals', less what compactions replaced."""
    files: set[str] = set()
    for entry in _log_entries(sink):
        for record in map(json.loads, entry.read_text().splitlines()[1:]):
            path = unquote(urlparse(record["path"]).path)
            files.add(path) if record["action"] == "add" else files.discard(path)
    replaced: set[str] = set()
    for seal in sorted((sink / "_sealed").rglob("*.json")) if (sink / "_sealed").is_dir() else []:
        record = json.loads(seal.read_text())
        files |= set(record.get("files", []))
        replaced |= {f for compaction in record.get("compactions", []) for f in compaction["from"]}
    return sorted(files - replaced)


def already_migrated(spark, table: str, sink: Path) -> bool:
    found = spark.sql(f"SELECT 1 FROM {table}.snapshots WHERE summary['{MIGRATED_FROM}'] = '{sink}' LIMIT 1")
    return bool(found.take(1))


def migrate(spark, sink: Path, into: str = RAW_EVENTS) -> int:
    """Appends the old sink's committed rows to the table `into` (`RAW_EVENTS` or `QUARANTINE_TABLE`,
    made from their schema if missing); the rows moved, 0 if this folder was moved before."""
    files = committed_files(sink)
    if not files:
        log.info("%s holds no committed files: nothing to move", sink)
        return 0
    rows = spark.read.option("basePath", str(sink)).parquet(*files)
    if into == RAW_EVENTS:
        table = ensure_raw_table(spark, rows.schema)
    else:
        table = ensure_table(spark, into, rows.schema, "date")
    if already_migrated(spark, table, sink):
        log.info("%s was moved into %s before: nothing to do", sink, table)
        return 0
    columns = spark.table(table).columns
    count = rows.count()
    spark.conf.set(SNAPSHOT_PROPERTY, str(sink))
    try:
        rows.select(*columns).writeTo(table).append()
    finally:
        spark.conf.unset(SNAPSHOT_PROPERTY)
    if into == RAW_EVENTS:
        markers = {VALIDATED: sink / "_validated.json", DEDUPLICATED: sink / "_deduplicated.json"}
        set_properties(spark, {name: marker_value(file) for name, file in markers.items() if file.exists()})
    log.info("moved %d rows of %d files from %s into %s", count, len(files), sink, table)
    return count


def marker_value(file: Path) -> str:
    """An old sink marker's content as the table property's value (the window, or the rules)."""
    content = json.loads(file.read_text())
    return (
        str(content["redelivery_window_days"]) if "redelivery_window_days" in content else json.dumps(content)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", type=Path, default=None, help="the old raw sink (default: data/raw)")
    parser.add_argument("--quarantine-updates-dir", type=Path, default=None,
                        help="the old rejected updates' sink (default: data/quarantine_updates)")  # fmt: skip
    args = parser.parse_args(argv)
    data = paths().data
    sinks = {RAW_EVENTS: args.raw_dir or data / "raw",
             QUARANTINE_TABLE: args.quarantine_updates_dir or data / "quarantine_updates"}  # fmt: skip
    found = {table: sink.resolve() for table, sink in sinks.items() if (sink / "_spark_metadata").is_dir()}
    if not found:
        log.error("neither %s is a sink of an earlier version (no _spark_metadata): nothing to move",
                  " nor ".join(str(sink.resolve()) for sink in sinks.values()))  # fmt: skip
        return 2
    spark = get_spark("shopstream-migrate-raw", comet=False, lake=True)
    for table, sink in found.items():
        migrate(spark, sink, table)
    return 0


if __name__ == "__main__":
    exit_after(main)
