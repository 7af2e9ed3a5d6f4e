"""Reads a Spark streaming file sink (the order status's quarantine of updates) the way Spark
defines it: only the files its commit log (`_spark_metadata/`) lists, so that orphans of a crashed
batch are not counted. Plain Python and DuckDB: independent of the Spark code under test."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb

from shopstream.config import VERDICT


def commit_log(sink: Path) -> list[tuple[Path, list[tuple[str, str]]]]:
    """The sink's commit-log entries in batch order, each with its (action, file path) records.
    A compaction entry (`N.compact`) repeats every record before it."""
    log_dir = sink / "_spark_metadata"
    entries = [
        e for e in (log_dir.iterdir() if log_dir.exists() else [])
        if not e.name.startswith(".") and e.suffix != ".tmp"
    ]  # fmt: skip
    result = []
    for entry in sorted(entries, key=lambda e: int(e.name.split(".")[0])):
        lines = entry.read_text().splitlines()
        assert lines and lines[0] == "v1", f"unknown sink log format in {entry}"
        records = [json.loads(line) for line in lines[1:]]
        result.append((entry, [(r["action"], unquote(urlparse(r["path"]).path)) for r in records]))
    return result


def committed_files(sink: Path, verdict: str | None = None) -> list[str]:
    """The data files the sink's commit log holds now; with `verdict`, those of that partition."""
    files: set[str] = set()
    for _, records in commit_log(sink):
        for action, path in records:
            if action == "add":
                files.add(path)
            else:
                files.discard(path)
    if verdict is not None:
        files = {f for f in files if f"/{VERDICT}={verdict}/" in f}
    return sorted(files)


def read_sink(sink: Path, verdict: str | None = None) -> duckdb.DuckDBPyRelation:
    """The sink's committed rows; with `verdict`, only those of that partition."""
    files = committed_files(sink, verdict)
    assert files, f"no committed files in {sink}" + (f" for verdict {verdict}" if verdict else "")
    return duckdb.read_parquet(files, hive_partitioning=True, union_by_name=True)
