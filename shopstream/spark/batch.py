"""What both batch jobs share: the raw rows a run reads (pinned per version), the `--date(s)` and
`--version` arguments, and file moves for the RDD job's text output (`shopstream.publication`:
nothing a run writes is visible to readers until validation publishes it)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopstream import publication
from shopstream.config import paths
from shopstream.contract import EVENT_IDENTITY, ORDER_STATUSES
from shopstream.sink_log import committed_dates, resolve_compacted, writer_deduplicated, writer_validated
from shopstream.spark.orders import valid_rows


class MissingInputError(RuntimeError):
    """The raw layer (or the requested date in it) is not there; the message says what to run."""


def parse_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--date {text!r} is not YYYY-MM-DD") from error


def parse_dates(text: str) -> list[str]:
    return [parse_date(day) for day in text.split(",") if day]


def batch_arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--date", type=parse_date, default=None, help="date YYYY-MM-DD (default: all)")
    which.add_argument("--dates", type=parse_dates, default=None, help="dates, comma-separated")
    parser.add_argument(
        "--version", default=None,
        help="the version of the transformed layer to write (default: a new one; the DAG passes its run's)",
    )  # fmt: skip
    parser.add_argument("--raw-dir", type=Path, default=None, help="raw layer (default: data/raw)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: data/transformed")
    return parser


@dataclass(frozen=True)
class RunInputs:
    """What a run of a batch job reads and where it writes: its dates, the raw files of each
    (pinned in the version, see `publication.raw_inputs`) and the version's folder."""

    raw_dir: Path
    root: Path
    version: str
    dates: list[str]
    files: list[str]

    @property
    def out(self) -> Path:
        return publication.version_root(self.root, self.version)


def run_inputs(raw_dir: Path | None, output_dir: Path | None, dates: Sequence[str] | None,
               version: str | None) -> RunInputs:  # fmt: skip
    """The inputs of a run: the raw files of `dates` (None: every date of the raw layer) pinned
    in the version when the version's first job starts, so that the other job and the validation
    of the same version read exactly the same rows, whatever ingest commits meanwhile."""
    raw_dir = (raw_dir or paths().raw_sink).resolve()
    if not (raw_dir / "_spark_metadata").is_dir():
        raise MissingInputError(
            f"no raw layer at {raw_dir}: run the streaming job first "
            "(python -m shopstream.spark.stream_consumer --available-now)"
        )
    root = publication.transformed_root(output_dir)
    version = version or publication.new_version()
    pinned = publication.read_inputs(root, version)
    dates = sorted(dates) if dates is not None else sorted(pinned) or committed_dates(raw_dir)
    missing = [d for d in dates if d not in pinned]
    if missing:
        pinned |= publication.raw_inputs(raw_dir, missing)
        publication.write_inputs(root, version, pinned)
    # Pinned files a compaction rewrote since are read in their new files (the same rows).
    files = [f for d in dates for f in resolve_compacted(raw_dir, pinned[d]["files"])]
    return RunInputs(raw_dir, root, version, list(dates), files)


def read_valid_rows(
    spark: SparkSession, inputs: RunInputs, columns: Sequence[str] | None = None
) -> DataFrame:
    """The valid rows of the run's pinned raw files (committed ones only, listed from the sink's
    commit log, so never a file of an uncommitted batch). With no files, an empty frame of the
    raw layer's schema (read from the sink's root, pruned to the dates)."""
    if inputs.files:
        sink = spark.read.option("basePath", str(inputs.raw_dir)).parquet(*inputs.files)
    else:
        sink = spark.read.parquet(str(inputs.raw_dir)).where(F.col("date").cast("string").isin(inputs.dates))
    raw = valid_rows(sink)
    return raw.select(*columns) if columns else raw


def well_formed() -> Column:
    """Rows whose fields the analytics can use. The streaming job already quarantines anything
    else; this guards the batch jobs against a raw layer written by something older or foreign."""
    required = ("order_id", "product_id", "order_status", "quantity", "unit_price", "timestamp", "region")
    condition = F.lit(True)
    for name in required:
        condition = condition & F.col(name).isNotNull()
    return (
        condition
        & F.col("order_status").isin(*ORDER_STATUSES)
        & (F.col("quantity") > 0)
        & (F.col("unit_price") > 0)
    )


def usable(raw_dir: Path) -> Column:
    """`well_formed()` for the rows of the raw layer at `raw_dir`, or simply true where its writer
    validated every row against the contract (`sink_log.writer_validated`: the ingest quarantines
    whatever breaks a rule, and its rules include these). Then no column is read only to be
    checked: the order id, the widest, is not read at all (10M rows: 0.6 s of the DataFrame
    job's 2.6 s roll-up)."""
    return F.lit(True) if writer_validated(raw_dir) else well_formed()


COPIES = "copies"


def distinct_events(raw: DataFrame) -> DataFrame:
    """One row per event of the well-formed rows, with `copies`: how many times it reached the raw
    layer. Rows that are not well-formed keep one row each (copies 1): counted, not merged.

    Copies are rare (the stream already drops re-deliveries within its window), so they are found
    before anything is merged: a 64-bit hash of each event's identity (`EVENT_IDENTITY`) is counted
    (one narrow shuffle of longs), the hashes seen more than once are broadcast, and only the rows
    carrying one of them are grouped by identity; every other row is an event seen once. A hash
    collision only adds a row to that small group, where the identity itself decides. Shuffling
    every row by identity instead cost 20 s more per job on 10M rows (docs/benchmarks.md).

    A re-delivery repeats the whole event, so the suspects are grouped by all their columns (a
    hash aggregation keeping only a count). Two rows with one identity that differ elsewhere break
    the contract: they count as two events here, and the validation's reconciliation with the raw
    layer (distinct identities) fails their date, naming it."""
    assert set(EVENT_IDENTITY) <= set(raw.columns), "the event's identity must be among the columns"
    key = "_identity_hash"
    keyed = raw.withColumn(key, F.when(well_formed(), F.xxhash64(*EVENT_IDENTITY)))
    repeated = (
        keyed.where(F.col(key).isNotNull()).groupBy(key).count().where(F.col("count") > 1)
        .select(key, F.lit(True).alias("_repeated"))
    )  # fmt: skip
    flagged = keyed.join(F.broadcast(repeated), key, "left")
    once = flagged.where(F.col("_repeated").isNull()).select(*raw.columns, F.lit(1).alias(COPIES))
    merged = flagged.where(F.col("_repeated")).groupBy(*raw.columns).agg(F.count(F.lit(1)).alias(COPIES))
    return once.unionByName(merged)


def events_once(raw: DataFrame, raw_dir: Path) -> DataFrame:
    """`distinct_events` of `raw` (rows of the sink at `raw_dir`), or the rows as they are (copies
    1) when the sink's ingest dropped re-deliveries from its first batch on (`sink_log.
    writer_deduplicated`): its rows are each event once already, and the pass costs a shuffle."""
    if writer_deduplicated(raw_dir):
        logging.getLogger("shopstream.batch").info(
            "%s was written by a de-duplicating ingest: no batch de-duplication pass", raw_dir
        )
        return raw.withColumn(COPIES, F.lit(1))
    return distinct_events(raw)


def _hadoop_path(spark: SparkSession, path: str):
    """A Hadoop Path and its FileSystem: the same code works on local disk, HDFS or S3."""
    jvm_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return jvm_path, jvm_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def delete_path(spark: SparkSession, path: str) -> None:
    jvm_path, fs = _hadoop_path(spark, path)
    if fs.exists(jvm_path):
        fs.delete(jvm_path, True)


def replace_dir(spark: SparkSession, staged: str, final: str) -> None:
    """Moves a fully written folder into place, replacing what was there."""
    delete_path(spark, final)
    final_path, fs = _hadoop_path(spark, final)
    fs.mkdirs(final_path.getParent())
    if not fs.rename(_hadoop_path(spark, staged)[0], final_path):
        raise RuntimeError(f"could not move {staged} to {final}")


def batch_main(
    description: str, run: Callable[..., object], log: logging.Logger, argv: Sequence[str] | None
) -> int:
    """The command line of a batch job: `--date(s)`, `--version`, folders, and a clear exit on
    missing input."""
    args = batch_arg_parser(description).parse_args(argv)
    dates = args.dates if args.dates is not None else ([args.date] if args.date else None)
    try:
        inputs = run_inputs(args.raw_dir, args.output_dir, dates, args.version)
        log.info("version %s: %s", inputs.version, ", ".join(inputs.dates) or "no dates")
        run(inputs)
    except MissingInputError as error:
        log.error("%s", error)
        return 2
    return 0
