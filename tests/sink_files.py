"""Reads a Spark streaming file sink the way Spark defines it: only the files its commit log
(`_spark_metadata/`) lists, so that orphans of a crashed batch are not counted. Plain Python and
DuckDB: independent of the Spark code under test."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb

from shopstream.config import VALID, VERDICT


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


def write_through_file_sink(spark, frame, home: Path) -> Path:
    """Writes `frame` (with a `date` column) as the valid rows of a raw layer the production way:
    through a streaming file sink, so that it has the commit log the jobs read. Returns the sink
    folder."""
    from pyspark.sql import functions as F

    frame = frame.withColumn(VERDICT, F.lit(VALID))
    frame.write.parquet(str(home / "staged"))
    (
        spark.readStream.schema(frame.schema).parquet(str(home / "staged"))
        .writeStream.format("parquet").partitionBy(VERDICT, "date").trigger(availableNow=True)
        .option("checkpointLocation", str(home / "cp")).start(str(home / "raw"))
        .awaitTermination()
    )  # fmt: skip
    return home / "raw"


def read_sink(sink: Path, verdict: str | None = None) -> duckdb.DuckDBPyRelation:
    """The sink's committed rows; with `verdict`, only those of that partition (`valid`,
    `quarantined`: the raw sink's two kinds of row)."""
    files = committed_files(sink, verdict)
    assert files, f"no committed files in {sink}" + (f" for verdict {verdict}" if verdict else "")
    return duckdb.read_parquet(files, hive_partitioning=True, union_by_name=True)


def copies_in_raw(sink: Path) -> int:
    """How many valid rows of the sink repeat an event already there (same order id, status and
    time): 0 when the stream dropped every re-delivery."""
    rows = read_sink(sink, VALID).aggregate("count(*) - count(DISTINCT (order_id, order_status, timestamp))")
    return rows.fetchall()[0][0]
