"""What both batch jobs share: the raw rows a run reads (the raw table at the snapshot pinned in
its version), the `--date(s)` and `--version` arguments, and file moves for the RDD job's text
output (`shopstream.publication`: nothing a run writes is visible to readers until validation
publishes it)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopstream import publication, raw_table
from shopstream.config import VALID, VERDICT
from shopstream.contract import EVENT_IDENTITY, ORDER_STATUSES
from shopstream.lake import spark_table
from shopstream.spark.orders import valid_rows
from shopstream.spark.raw_events import read_raw


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
    parser.add_argument("--output-dir", type=Path, default=None, help="default: data/transformed")
    return parser


@dataclass(frozen=True)
class RunInputs:
    """What a run of a batch job reads and where it writes: its dates, the raw table's snapshot
    each is read at (pinned in the version, see `publication.write_inputs`), what the ingest says
    of the table's rows (`raw_table.VALIDATED`, `DEDUPLICATED`) and the version's folder."""

    root: Path
    version: str
    dates: list[str]
    snapshots: dict[str, int | None]
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return publication.version_root(self.root, self.version)


def run_inputs(output_dir: Path | None, dates: Sequence[str] | None, version: str | None) -> RunInputs:
    """The inputs of a run: the raw table's snapshot for `dates` (None: every date it holds)
    pinned in the version when the version's first job starts, so that the other job and the
    validation of the same version read exactly the same rows, whatever ingest commits meanwhile."""
    table = raw_table.load()
    if table is None:
        raise MissingInputError(
            f"no raw table {spark_table(raw_table.RAW_EVENTS)} in the catalog: run the streaming "
            "job first (python -m shopstream.spark.stream_consumer --available-now)"
        )
    root = publication.transformed_root(output_dir)
    version = version or publication.new_version()
    pinned = publication.read_inputs(root, version)
    dates = sorted(dates) if dates is not None else sorted(pinned) or raw_table.committed_dates()
    missing = [d for d in dates if d not in pinned]
    if missing:
        pinned |= {d: i.as_dict() for d, i in raw_table.date_inputs(missing).items()}
        publication.write_inputs(root, version, pinned)
    snapshots = {d: pinned[d]["snapshot"] for d in dates}
    return RunInputs(root, version, list(dates), snapshots, dict(table.properties))


def read_valid_rows(
    spark: SparkSession, inputs: RunInputs, columns: Sequence[str] | None = None
) -> DataFrame:
    """The valid rows of the run's dates, each at its pinned snapshot of the raw table (one read
    per snapshot; a version's dates are pinned together, so usually one)."""
    by_snapshot: dict[int | None, list[dt.date]] = {}
    for date, snapshot in inputs.snapshots.items():
        by_snapshot.setdefault(snapshot, []).append(dt.date.fromisoformat(date))
    reads = [
        read_raw(spark, snapshot).where((F.col(VERDICT) == VALID) & F.col("date").isin(days))
        for snapshot, days in by_snapshot.items()
    ] or [read_raw(spark).where(F.lit(False))]
    raw = valid_rows(reduce(DataFrame.unionByName, reads))
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


def usable(inputs: RunInputs) -> Column:
    """`well_formed()` for the run's raw rows, or simply true where their writer validated every
    row against the contract (`raw_table.VALIDATED`: the ingest quarantines whatever breaks a
    rule, and its rules include these). Then no column is read only to be
    checked: the order id, the widest, is not read at all."""
    return F.lit(True) if raw_table.VALIDATED in inputs.properties else well_formed()


COPIES = "copies"


def distinct_events(raw: DataFrame) -> DataFrame:
    """One row per event of the well-formed rows, with `copies`: how many times it reached the raw
    layer. Rows that are not well-formed keep one row each (copies 1): counted, not merged.

    Copies are rare (the stream already drops re-deliveries within its window), so they are found
    before anything is merged: a 64-bit hash of each event's identity (`EVENT_IDENTITY`) is counted
    (one narrow shuffle of longs), the hashes seen more than once are broadcast, and only the rows
    carrying one of them are grouped by identity; every other row is an event seen once. A hash
    collision only adds a row to that small group, where the identity itself decides. Shuffling
    every row by identity instead cost far more (docs/benchmarks.md).

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


def events_once(raw: DataFrame, inputs: RunInputs) -> DataFrame:
    """`distinct_events` of `raw` (the run's raw rows), or the rows as they are (copies 1) when
    the table's ingest dropped re-deliveries from its first commit on (`raw_table.DEDUPLICATED`):
    its rows are each event once already, and the pass costs a shuffle."""
    if raw_table.DEDUPLICATED in inputs.properties:
        logging.getLogger("shopstream.batch").info(
            "the raw table was written by a de-duplicating ingest: no batch de-duplication pass"
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
        inputs = run_inputs(args.output_dir, dates, args.version)
        log.info("version %s: %s", inputs.version, ", ".join(inputs.dates) or "no dates")
        run(inputs)
    except MissingInputError as error:
        log.error("%s", error)
        return 2
    return 0
