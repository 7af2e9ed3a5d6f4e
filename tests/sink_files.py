"""Reads a Spark streaming file sink the way Spark defines it: only the files its commit log
(`_spark_metadata/`) lists, so that orphans of a crashed batch are not counted. Plain Python and
DuckDB: independent of the Spark code under test."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb


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


def committed_files(sink: Path) -> list[str]:
    files: set[str] = set()
    for _, records in commit_log(sink):
        for action, path in records:
            if action == "add":
                files.add(path)
            else:
                files.discard(path)
    return sorted(files)


def write_through_file_sink(spark, frame, home: Path) -> Path:
    """Writes `frame` (with a `date` column) as a raw layer the production way: through a
    streaming file sink, so that it has the commit log the jobs read. Returns the sink folder."""
    frame.write.parquet(str(home / "staged"))
    (
        spark.readStream.schema(frame.schema).parquet(str(home / "staged"))
        .writeStream.format("parquet").partitionBy("date").trigger(availableNow=True)
        .option("checkpointLocation", str(home / "cp")).start(str(home / "raw"))
        .awaitTermination()
    )  # fmt: skip
    return home / "raw"


def read_sink(sink: Path) -> duckdb.DuckDBPyRelation:
    files = committed_files(sink)
    assert files, f"no committed files in {sink}"
    return duckdb.read_parquet(files, hive_partitioning=True)
