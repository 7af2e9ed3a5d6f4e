"""What both batch jobs share: reading the raw layer, the `--date` argument, and idempotent,
deterministic writes (re-running a date replaces that date only, with identical content)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopstream.config import paths
from shopstream.schema import ORDER_STATUSES
from shopstream.spark.orders import valid_rows


class MissingInputError(RuntimeError):
    """The raw layer (or the requested date in it) is not there; the message says what to run."""


def parse_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--date {text!r} is not YYYY-MM-DD") from error


def batch_arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--date", type=parse_date, default=None, help="logical date YYYY-MM-DD (default: all)"
    )
    parser.add_argument("--raw-dir", type=Path, default=None, help="raw layer (default: data/raw)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: data/transformed")
    return parser


def read_raw(
    spark: SparkSession, raw_dir: Path, date: str | None, columns: Sequence[str] | None = None
) -> DataFrame:
    """The raw layer's valid rows, read from the sink's root so that Spark honours its commit log
    (`_spark_metadata`) and never sees files of an uncommitted batch; pruned to `date` (partition
    pruning: only that date's folder of `verdict=valid` is scanned)."""
    if not (raw_dir / "_spark_metadata").is_dir():
        raise MissingInputError(
            f"no raw layer at {raw_dir}: run the streaming job first "
            "(python -m shopstream.spark.stream_consumer --available-now)"
        )
    sink = spark.read.parquet(str(raw_dir))
    if date is not None:
        sink = sink.where(F.col("date") == F.lit(date).cast("date"))
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


def write_date_partitions(frame: DataFrame, path: Path, sort_by: Sequence[str]) -> None:
    """Overwrites only the `date` partitions present in `frame`, one sorted file per date, so
    that re-running a date gives the same rows in the same order and leaves other dates alone."""
    (
        frame.repartition("date")
        .sortWithinPartitions("date", *sort_by)
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("date")
        .parquet(str(path))
    )


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


def output_root(output_dir: Path | None) -> Path:
    return (output_dir or paths().transformed).resolve()


def batch_main(
    description: str, run: Callable[..., object], log: logging.Logger, argv: Sequence[str] | None
) -> int:
    """The command line of a batch job: `--date`, folders, and a clear exit on missing input."""
    args = batch_arg_parser(description).parse_args(argv)
    try:
        run(args.date, args.raw_dir, args.output_dir)
    except MissingInputError as error:
        log.error("%s", error)
        return 2
    return 0
