"""Module 3B: the analytics outputs with DataFrames and Spark SQL.

    spark-submit --properties-file config/spark/spark-defaults.conf \\
        shopstream/spark/batch_df_etl.py --date 2026-11-20

The cleaned raw rows of the date(s) are rolled up in one pass to the finest grain any output
needs (date, hour, product, region, status) and that small base is cached; every output is a
further roll-up of it. Each output is an Iceberg table of the catalog `lake` (`shopstream.lake`),
partitioned by `date`; the job writes the run's dates into the run's branch of each table, which
only a passed validation publishes (`shopstream.daily_tables`):
  hourly_sales       per hour: orders, gross/net revenue, reversals, avg_order_value
  top_products       top 10 products by net quantity, ranked with a SQL window function
  regional_revenue   revenue per region joined with data/regions.csv; unknown codes kept as UNKNOWN
  status_by_category pivot of order_status counts per category
  sales_by_product   per product totals, also bucketed: bucket(4, product_id), Iceberg's transform
Money follows the revenue rule in `shopstream.metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from shopstream.catalogue import REGIONS_DDL
from shopstream.config import REGIONS_CSV
from shopstream.contract import MONEY_SCALE, NEW, ORDER_STATUSES, SUM_MONEY_PRECISION
from shopstream.daily_tables import OUTPUTS
from shopstream.metrics import TOP_N_PRODUCTS, TOP_PRODUCTS_ORDER, UNKNOWN_REGION
from shopstream.spark.batch import COPIES, RunInputs, batch_main, events_once, read_valid_rows, usable
from shopstream.spark.comet import log_native_coverage
from shopstream.spark.lake_init import ensure_namespace
from shopstream.spark.orders import event_cents, revenue_sign
from shopstream.spark.output_tables import ensure_output_table, write_to_branch
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("df_etl")
MONEY = f"decimal({SUM_MONEY_PRECISION},{MONEY_SCALE})"  # any day's sum of contract-valid events


def base_orders(spark: SparkSession, inputs: RunInputs) -> DataFrame:
    """Event counts, quantities and cents per (date, hour, product, region, status), with
    their signed (revenue-rule) versions and the re-delivered copies dropped (each event counts
    once, see `distinct_events`): one scan of the raw rows, a few tens of thousands of
    rows whatever their number, so caching it is cheap and no output rescans the raw layer.
    The scan sums integer cents (exact; native under Comet), and so does the base: each output
    sums cents and turns each sum into its decimal amount (`money`). Cached by the caller."""
    needed = ("date", "timestamp", "order_id", "product_id", "product_name", "category", "region",
              "order_status", "quantity", "unit_price")  # fmt: skip
    rolled_up = (
        events_once(read_valid_rows(spark, inputs, needed).where(usable(inputs)), inputs)
        .groupBy(
            "date", F.date_trunc("hour", "timestamp").alias("hour"), "product_id", "product_name",
            "category", "region", "order_status",
        )
        .agg(F.count("*").alias("events"), F.sum("quantity").alias("quantity"),
             F.sum(event_cents()).alias("cents"),
             F.sum(F.col(COPIES) - 1).alias("duplicates"))
    )  # fmt: skip
    # Hash-partitioned by date, the small roll-up already has the layout every output needs:
    # their group-bys and window (all by date first) and their per-date writes reuse it, so each
    # output is one Spark stage instead of three (two more shuffles, each its own AQE job).
    return rolled_up.repartition("date").select(
        "date", "hour", "product_id", "product_name", "category", "region", "order_status", "events",
        "duplicates", "quantity", "cents", (revenue_sign() * F.col("cents")).alias("signed_cents"),
        (revenue_sign() * F.col("quantity")).alias("signed_quantity"),
    )  # fmt: skip


def money(cents: F.Column) -> F.Column:
    """The exact decimal amount of a sum of cents."""
    return (cents.cast("decimal(38,0)") / 100).cast(MONEY)


def _is_new() -> F.Column:
    return F.col("order_status") == NEW


def _new_orders() -> F.Column:
    """Orders placed (NEW events) within a group of base rows."""
    return F.coalesce(F.sum(F.when(_is_new(), F.col("events"))), F.lit(0))


def hourly_sales(base: DataFrame) -> DataFrame:
    gross = money(F.sum(F.when(_is_new(), F.col("cents"))))
    orders = _new_orders()
    return base.groupBy("date", "hour").agg(
        orders.alias("orders"),
        F.coalesce(gross, F.lit(0)).cast(MONEY).alias("gross_revenue"),
        F.coalesce(money(F.sum(F.when(~_is_new(), F.col("cents")))), F.lit(0)).cast(MONEY).alias("reversals"),
        money(F.sum("signed_cents")).alias("net_revenue"),
        F.when(orders > 0, F.round(gross / orders, 2)).cast(MONEY).alias("avg_order_value"),
    )


def sales_by_product(base: DataFrame) -> DataFrame:
    return base.groupBy("date", "product_id", "product_name", "category").agg(
        F.sum("signed_quantity").alias("net_quantity"),
        money(F.sum("signed_cents")).alias("net_revenue"),
        _new_orders().alias("orders"),
    )


def top_products(spark: SparkSession, by_product: DataFrame) -> DataFrame:
    by_product.createOrReplaceTempView("sales_by_product_v")
    return spark.sql(
        f"""
        SELECT date, rank, product_id, product_name, category, net_quantity, net_revenue
        FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY date ORDER BY {TOP_PRODUCTS_ORDER}) AS rank
            FROM sales_by_product_v
        )
        WHERE rank <= {TOP_N_PRODUCTS}
        """
    )


def regions(spark: SparkSession) -> DataFrame:
    return spark.read.csv(str(REGIONS_CSV), header=True, schema=REGIONS_DDL).drop("weight")


def regional_revenue(spark: SparkSession, base: DataFrame) -> DataFrame:
    per_region = base.groupBy("date", "region").agg(
        _new_orders().alias("orders"),
        money(F.sum("signed_cents")).alias("net_revenue"),
    )
    joined = per_region.join(regions(spark), per_region.region == F.col("region_code"), "left")
    unknown = F.col("region_code").isNull()
    return joined.select(
        "date",
        F.col("region").alias("region_code"),
        F.when(unknown, F.lit(UNKNOWN_REGION)).otherwise(F.col("region_name")).alias("region_name"),
        F.when(unknown, F.lit(UNKNOWN_REGION)).otherwise(F.col("country")).alias("country"),
        F.when(unknown, F.lit(UNKNOWN_REGION)).otherwise(F.col("continent")).alias("continent"),
        "orders",
        "net_revenue",
    )


def status_by_category(base: DataFrame) -> DataFrame:
    # Listing the statuses keeps the columns stable even on a day without one of them.
    return (
        base.groupBy("date", "category")
        .pivot("order_status", list(ORDER_STATUSES))
        .agg(F.sum("events"))
        .fillna(0)
    )


def run(inputs: RunInputs, spark=None) -> dict[str, int]:
    """Writes every output for the run's dates into the run's branch of its table; returns rows
    written per output."""
    spark = spark or get_spark("shopstream-df-etl", lake=True)
    started = time.monotonic()
    base = base_orders(spark, inputs).cache()
    try:
        rows_in, duplicates = base.agg(F.sum("events"), F.sum("duplicates")).first()
        rows_in, duplicates = rows_in or 0, duplicates or 0
        log_native_coverage(log, "roll-up of the raw rows", base)
        if rows_in == 0:
            log.warning("no raw events for %s: nothing to write", ", ".join(inputs.dates) or "any date")
            return {name: 0 for name in OUTPUTS}
        # Not cached: a roll-up of the small cached base costs less than one more Spark job.
        by_product = sales_by_product(base)
        frames = {
            "hourly_sales": (hourly_sales(base), ["hour"]),
            "top_products": (top_products(spark, by_product), ["rank"]),
            "regional_revenue": (regional_revenue(spark, base), ["region_code"]),
            "status_by_category": (status_by_category(base), ["category"]),
            "sales_by_product": (by_product, ["product_id"]),
        }
        # Rows written per output (and unknown regions) counted as the rows pass by, not by
        # reading the outputs back: the overwrite replaces exactly the dates written.
        counters = {name: [F.count(F.lit(1)).alias("rows")] for name in frames}
        unknown_regions = F.count_if(F.col("region_name") == UNKNOWN_REGION).alias("unknown")
        counters["regional_revenue"].append(unknown_regions)
        observations = {name: Observation(name) for name in frames}

        def write_observed(name: str) -> None:
            frame, sort_by = frames[name]
            ensure_output_table(spark, name, frame)
            write_to_branch(spark, name, frame.observe(observations[name], *counters[name]), sort_by,
                            inputs.version)  # fmt: skip

        # Each output is a small roll-up of the cached base, so its write is mostly per-job cost
        # (planning, scheduling, the commit): run them as concurrent jobs.
        ensure_namespace(spark)
        with ThreadPoolExecutor(max_workers=len(frames)) as pool:
            list(pool.map(write_observed, frames))
        written = {name: observations[name].get["rows"] for name in frames}
        unknown = observations["regional_revenue"].get["unknown"]
        if unknown:
            log.warning(
                "%d region code(s) not in %s: reported as %s", unknown, REGIONS_CSV.name, UNKNOWN_REGION
            )
    finally:
        base.unpersist()
    log.info(
        "%s: %d events in (%d re-delivered copies dropped), wrote %s in %.1f s",
        ", ".join(inputs.dates),
        rows_in,
        duplicates,
        written,
        time.monotonic() - started,
    )
    return {**written, "duplicates_dropped": duplicates}


def main(argv: Sequence[str] | None = None) -> int:
    return batch_main(__doc__, run, log, argv)


if __name__ == "__main__":
    exit_after(main)
