"""The Spark side of the daily tables (`shopstream.daily_tables`): each output's Iceberg table,
made on first use from the output's own schema, and the write of a run's dates into its branch."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import partitioning

from shopstream.daily_tables import BUCKET_COLUMN, BUCKETED_OUTPUT, BUCKETS, branch_for
from shopstream.lake import CATALOG, namespace, spark_table


def ensure_namespace(spark: SparkSession) -> None:
    """The tables' namespace, created if missing: once, before the outputs' concurrent writes (two
    creations at once collide in the catalog's database)."""
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace()}")


def ensure_table(spark: SparkSession, output: str, frame: DataFrame) -> str:
    """The output's table, created with `frame`'s schema if missing: partitioned by `date` (and
    `bucket(4, product_id)` for sales_by_product). Returns its Spark SQL name."""
    name = spark_table(output)
    if spark.catalog.tableExists(name):
        return name
    layout = [F.col("date")]
    if output == BUCKETED_OUTPUT:
        layout.append(partitioning.bucket(BUCKETS, BUCKET_COLUMN))
    try:
        frame.limit(0).writeTo(name).using("iceberg").partitionedBy(*layout).create()
    except AnalysisException as error:  # made meanwhile by another run's job: the same table
        if "TABLE_OR_VIEW_ALREADY_EXISTS" not in str(error):
            raise
    return name


def write_to_branch(spark: SparkSession, output: str, frame: DataFrame, sort_by: Sequence[str],
                    version: str) -> None:  # fmt: skip
    """Replaces the dates present in `frame` on the run's branch of the output's table (made from
    `main` if new), leaving its other dates alone; sorted within each date, so that a re-run of a
    date writes the same rows in the same order. The table must exist (`ensure_table`, given a
    frame that is not observed: its creation would be the observation's one action)."""
    name = spark_table(output)
    branch = branch_for(version)
    spark.sql(f"ALTER TABLE {name} CREATE BRANCH IF NOT EXISTS `{branch}`")
    frame.sortWithinPartitions("date", *sort_by).writeTo(f"{name}.branch_{branch}").overwritePartitions()
