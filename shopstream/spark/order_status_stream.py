"""The current status of each order: `ecommerce_orders` x `order_updates`, a stream-stream join.

    spark-submit --properties-file config/spark/spark-defaults.conf \\
        --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/order_status_stream.py --available-now

(`python -m shopstream.spark.order_status_stream` does the same, with jars, settings and class
archive found for you.)

NEW order events (validated exactly like the raw layer's) are joined with the status changes of
`order_updates` on `order_id`, within a bounded time range, as a full outer join:

* an order with an update inside the range is written as soon as both sides have arrived, with
  the update's status, reason and time;
* an order without one is written as NEW once the watermark has passed the end of its range:
  from then on no update can change it, so its state is dropped;
* an update with no NEW order in range (unknown order, or later than `--max-update-delay`) is
  written too, as an orphan with empty order details, never dropped silently.

Late data policy: each input's watermark trails its newest event time by `--lateness`; Spark
keeps join state until the (slower) watermark passes the range, then evicts it. A record later
than that may be dropped by Spark, which counts it in the query progress
(`numRowsDroppedByWatermark`, logged per micro-batch). State is therefore bounded by the orders
of the last `max_update_delay + lateness` of event time.

Updates that fail validation go to the Iceberg table `quarantined_updates` with the reason, their
untouched bytes and Kafka lineage, like orders do (written by Iceberg's streaming sink: exactly once).

Output: the Iceberg table `order_status` (`shopstream.spark.status_table`), **one row per order**,
its newest status by `status_time` (an order cancelled and then returned is RETURNED; an update
that arrived before its order still wins over the order's NEW), upserted by `MERGE INTO` once per
micro-batch; a replayed batch (a restart after a crash) changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopstream.config import ORDERS_TOPIC, UPDATES_TOPIC, paths
from shopstream.contract import NEW, UPDATE_STATUSES, update_spark_schema
from shopstream.data_loss import DATA_LOSS_LEDGER
from shopstream.lake_check import check_lake
from shopstream.spark.lake_init import ensure_table
from shopstream.spark.orders import (
    CORRUPT,
    QUARANTINE_COLUMNS,
    kafka_columns,
    parse_orders,
    rejected_record,
    with_parsed_value,
)
from shopstream.spark.session import exit_after, get_spark, job_logger
from shopstream.spark.source_gaps import check_source_continuity
from shopstream.spark.status_table import (
    QUARANTINE_TABLE,
    ensure_status_table,
    merge_batch,
    query_id,
    rank_sql,
)
from shopstream.spark.stream_progress import run_queries
from shopstream.spark.streaming import (
    StreamSettings,
    apply_folders,
    check_source,
    check_table_matches_checkpoint,
    kafka_stream,
    source_settings,
    start_triggered,
    stream_arg_parser,
    stream_main,
)

log = job_logger("order_status")

STATUS_COLUMNS = (
    "order_id", "customer_id", "product_id", "category", "quantity", "unit_price", "region",
    "order_time", "current_status", "status_reason", "status_time", "orphan_update", "date",
)  # fmt: skip


DEFAULT_LATENESS = "10 minutes"
DEFAULT_MAX_UPDATE_DELAY = "2 days"


@dataclass
class StatusSettings:
    # Bootstrap, trigger mode and Kafka options; its topic is the orders topic.
    stream: StreamSettings
    updates_topic: str = UPDATES_TOPIC
    checkpoint_dir: Path = field(default_factory=lambda: paths().order_status_checkpoints)
    lateness: str = DEFAULT_LATENESS
    max_update_delay: str = DEFAULT_MAX_UPDATE_DELAY

    @property
    def updates_source(self) -> StreamSettings:
        """The stream settings with the updates topic: same broker, trigger and options."""
        return dataclasses.replace(self.stream, topic=self.updates_topic)


def _update_rejection_reason() -> Column:
    """The first rule an update breaks, or null."""
    e = F.col("event")
    return (
        F.when(F.col("value").isNull(), F.lit("empty message"))
        .when(e.isNull() | e[CORRUPT].isNotNull(), F.lit("invalid JSON"))
        .when(F.coalesce(F.length(F.trim(e["order_id"])), F.lit(0)) == 0, F.lit("missing order_id"))
        .when(e["new_status"].isNull(), F.lit("missing new_status"))
        .when(
            ~e["new_status"].isin(*UPDATE_STATUSES),
            F.concat(F.lit("unknown new_status "), e["new_status"]),
        )
        .when(
            F.col("update_time").isNull(),
            F.concat(F.lit("bad timestamp: "), F.coalesce(e["timestamp"], F.lit("missing"))),
        )
    )


def parse_updates(kafka_records: DataFrame) -> DataFrame:
    """order_updates records -> parsed update, lineage, `date` and `reason` (null when valid)."""
    parsed = with_parsed_value(kafka_columns(kafka_records), update_spark_schema())
    parsed = parsed.withColumn("update_time", F.try_to_timestamp(F.col("event")["timestamp"]))
    parsed = parsed.withColumn("reason", _update_rejection_reason())
    return parsed.withColumn("date", F.to_date(F.coalesce("update_time", "kafka_timestamp")))


def new_orders(parsed_orders: DataFrame, lateness: str) -> DataFrame:
    e = F.col("event")
    return (
        parsed_orders.where(F.col("reason").isNull() & (e["order_status"] == NEW))
        .select(
            *(e[n].alias(n) for n in ("order_id", "customer_id", "product_id", "category", "quantity")),
            e["unit_price"].alias("unit_price"),
            e["region"].alias("region"),
            F.col("event_time").alias("order_time"),
        )
        .withWatermark("order_time", lateness)
    )


def valid_updates(parsed_updates: DataFrame, lateness: str) -> DataFrame:
    e = F.col("event")
    return (
        parsed_updates.where(F.col("reason").isNull())
        .select(
            e["order_id"].alias("update_order_id"),
            e["new_status"].alias("new_status"),
            e["reason"].alias("update_reason"),
            F.col("update_time"),
        )
        .withWatermark("update_time", lateness)
    )


def current_status(orders: DataFrame, updates: DataFrame, max_update_delay: str) -> DataFrame:
    """The full outer join with its time range (which is what lets Spark evict state)."""
    in_range = (F.col("order_id") == F.col("update_order_id")) & F.col("update_time").between(
        F.col("order_time"), F.col("order_time") + F.expr(f"INTERVAL {max_update_delay}")
    )
    joined = orders.join(updates, in_range, "full_outer")
    return joined.select(
        F.coalesce("order_id", "update_order_id").alias("order_id"),
        "customer_id", "product_id", "category", "quantity", "unit_price", "region", "order_time",
        F.coalesce("new_status", F.lit(NEW)).alias("current_status"),
        F.col("update_reason").alias("status_reason"),
        F.coalesce("update_time", "order_time").alias("status_time"),
        F.col("order_time").isNull().alias("orphan_update"),
        F.to_date(F.coalesce("order_time", "update_time")).alias("date"),
    )  # fmt: skip


def newest_per_order(rows: DataFrame) -> DataFrame:
    """One row per order id: the one with the newest status (time, then life-cycle rank)."""
    rank = F.expr(rank_sql())
    newest_first = Window.partitionBy("order_id").orderBy(F.col("status_time").desc(), rank.desc())
    return rows.withColumn("_n", F.row_number().over(newest_first)).where(F.col("_n") == 1).drop("_n")


STATUS_QUERY, QUARANTINE_QUERY = "status", "quarantine"  # their folders in the checkpoint folder


def start_status_upserts(status: DataFrame, settings: StatusSettings):
    """The join rows into the status table, one MERGE per micro-batch (`spark.status_table`)."""
    table = ensure_status_table(status.sparkSession, status.select(*STATUS_COLUMNS).schema)
    checkpoint = settings.checkpoint_dir / STATUS_QUERY

    def upsert(batch: DataFrame, batch_id: int) -> None:
        merge_batch(table, newest_per_order(batch).select(*STATUS_COLUMNS), batch_id, query_id(checkpoint))

    writer = (
        status.writeStream.queryName("order_status")
        .foreachBatch(upsert)
        .option("checkpointLocation", str(checkpoint))
        .outputMode("append")
    )
    return start_triggered(writer, status.sparkSession, settings.stream)


def start_quarantine(bad: DataFrame, settings: StatusSettings):
    """The rejected updates into their table, through Iceberg's streaming sink."""
    spark = bad.sparkSession
    table = ensure_table(spark, QUARANTINE_TABLE, bad.schema, "date")
    checkpoint = settings.checkpoint_dir / QUARANTINE_QUERY
    check_table_matches_checkpoint(spark, table, checkpoint)
    writer = (
        bad.writeStream.queryName("quarantine_updates").format("iceberg").outputMode("append")
        .option("checkpointLocation", str(checkpoint))
    )  # fmt: skip
    return start_triggered(writer, spark, settings.stream, table=table)


def start_queries(spark, settings: StatusSettings) -> list:
    orders = new_orders(parse_orders(kafka_stream(spark, settings.stream)), settings.lateness)
    parsed_updates = parse_updates(kafka_stream(spark, settings.updates_source))
    updates = valid_updates(parsed_updates, settings.lateness)
    status = current_status(orders, updates, settings.max_update_delay).observe(
        "order_status", F.count(F.lit(1)).alias("order_status")
    )
    record = rejected_record()
    bad = (
        parsed_updates.where(F.col("reason").isNotNull())
        .select(*(record[n].alias(n) if n in record else F.col(n) for n in QUARANTINE_COLUMNS))
        .observe("quarantine_updates", F.count(F.lit(1)).alias("quarantine_updates"))
    )
    return [start_status_upserts(status, settings), start_quarantine(bad, settings)]


def run(settings: StatusSettings, spark=None) -> dict[str, int]:
    """Runs the join (until drained with --available-now, else until stopped); returns the rows
    written per sink."""
    sources = [(source, check_source(source)) for source in (settings.stream, settings.updates_source)]
    for query in (STATUS_QUERY, QUARANTINE_QUERY):
        for source, stats in sources:
            check_source_continuity(source, stats, settings.checkpoint_dir / query,
                                    settings.checkpoint_dir / DATA_LOSS_LEDGER)  # fmt: skip
    check_lake()
    spark = spark or get_spark("shopstream-order-status", comet=False, lake=True)
    totals = run_queries(start_queries(spark, settings), ("order_status", "quarantine_updates"))
    log.info("order status run finished: %s", totals)
    return totals


FOLDERS = ("checkpoint",)


def parse_args(argv: Sequence[str] | None) -> StatusSettings:
    parser = stream_arg_parser(__doc__, FOLDERS)
    parser.add_argument("--orders-topic", default=ORDERS_TOPIC)
    parser.add_argument("--updates-topic", default=UPDATES_TOPIC)
    parser.add_argument("--lateness", default=DEFAULT_LATENESS, help="watermark delay of both inputs")
    parser.add_argument(
        "--max-update-delay",
        default=DEFAULT_MAX_UPDATE_DELAY,
        help="an update joins its order only within this time",
    )
    args = parser.parse_args(argv)
    settings = StatusSettings(
        stream=source_settings(args, args.orders_topic),
        updates_topic=args.updates_topic,
        lateness=args.lateness,
        max_update_delay=args.max_update_delay,
    )
    apply_folders(settings, args, FOLDERS)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    return stream_main(parse_args, run, log, argv)


if __name__ == "__main__":
    exit_after(main)
