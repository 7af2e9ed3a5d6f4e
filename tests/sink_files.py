"""Reads a Spark streaming file sink the way Spark defines it: only the files its commit log
(`_spark_metadata/`) lists, so that orphans of a crashed batch are not counted. Plain Python and
DuckDB: independent of the Spark code under test."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb


def committed_files(sink: Path) -> list[str]:
    files: set[str] = set()
    log_dir = sink / "_spark_metadata"
    for entry in sorted(log_dir.iterdir()) if log_dir.exists() else []:
        if entry.name.startswith(".") or entry.suffix == ".tmp":
            continue
        lines = entry.read_text().splitlines()
        assert lines and lines[0] == "v1", f"unknown sink log format in {entry}"
        for line in lines[1:]:
            record = json.loads(line)
            path = unquote(urlparse(record["path"]).path)
            if record["action"] == "add":
                files.add(path)
            else:
                files.discard(path)
    return sorted(files)


def read_sink(sink: Path) -> duckdb.DuckDBPyRelation:
    files = committed_files(sink)
    assert files, f"no committed files in {sink}"
    return duckdb.read_parquet(files, hive_partitioning=True)
