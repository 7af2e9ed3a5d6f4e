"""The Spark side of the daily tables (`shopstream.daily_tables`): each output's Iceberg table,
made on first use from the output's own schema, and the write of a run's dates into its branch."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

from shopstream.daily_tables import BUCKET_COLUMN, BUCKETED_OUTPUT, BUCKETS, branch_for
from shopstream.lake import spark_table
from shopstream.spark import lake_init


def ensure_output_table(spark: SparkSession, output: str, frame: DataFrame) -> str:
    """The output's table, created with `frame`'s schema if missing (no Spark job runs): partitioned
    by `date` (and `bucket(4, product_id)` for sales_by_product). Returns its Spark SQL name."""
    layout = f"date, bucket({BUCKETS}, {BUCKET_COLUMN})" if output == BUCKETED_OUTPUT else "date"
    return lake_init.ensure_table(spark, output, frame.schema, layout)


def write_to_branch(spark: SparkSession, output: str, frame: DataFrame, sort_by: Sequence[str],
                    version: str) -> None:  # fmt: skip
    """Replaces the dates present in `frame` on the run's branch of the output's table (made from
    `main` if new), leaving its other dates alone; sorted within each date, so that a re-run of a
    date writes the same rows in the same order. The table must exist (`ensure_output_table`)."""
    name = spark_table(output)
    branch = branch_for(version)
    spark.sql(f"ALTER TABLE {name} CREATE BRANCH IF NOT EXISTS `{branch}`")
    frame.sortWithinPartitions("date", *sort_by).writeTo(f"{name}.branch_{branch}").overwritePartitions()
