"""The current status of each order: `ecommerce_orders` x `order_updates`, a stream-stream join.

    spark-submit --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/order_status_stream.py --available-now

(`python -m shopstream.spark.order_status_stream` does the same with the jars found for you.)

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

Updates that fail validation go to `quarantine_updates/` with the reason, like orders do.
Output: Parquet under `order_status/`, partitioned by the order's date, exactly once through
Spark's file sink and its checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopstream.config import ORDERS_TOPIC, UPDATES_TOPIC, kafka_bootstrap, kafka_security_options, paths
from shopstream.kafka_admin import KafkaCheckError
from shopstream.schema import NEW, UPDATE_STATUSES, update_spark_schema
from shopstream.spark.orders import CORRUPT, LINEAGE_COLUMNS, kafka_columns, parse_orders, with_parsed_value
from shopstream.spark.session import exit_after, get_spark, job_logger
from shopstream.spark.stream_consumer import (
    DEFAULT_TRIGGER,
    StreamSettings,
    await_queries,
    check_source,
    kafka_stream,
    parse_trigger,
    start_sink,
)

log = job_logger("order_status")

STATUS_COLUMNS = (
    "order_id", "customer_id", "product_id", "category", "quantity", "unit_price", "region",
    "order_time", "current_status", "status_reason", "status_time", "orphan_update", "date",
)  # fmt: skip
UPDATE_QUARANTINE_COLUMNS = ("value", "reason", "kafka_key", *LINEAGE_COLUMNS, "date")


@dataclass
class StatusSettings:
    # Bootstrap, trigger mode and Kafka options; its topic is the orders topic.
    stream: StreamSettings
    updates_topic: str = UPDATES_TOPIC
    output_dir: Path = field(default_factory=lambda: paths().order_status)
    quarantine_dir: Path = field(default_factory=lambda: paths().quarantine_updates)
    checkpoint_dir: Path = field(default_factory=lambda: paths().checkpoints / "order_status")
    lateness: str = "10 minutes"
    max_update_delay: str = "2 days"


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


def start_queries(spark, settings: StatusSettings) -> list:
    updates_stream = dataclasses.replace(settings.stream, topic=settings.updates_topic)
    orders = new_orders(parse_orders(kafka_stream(spark, settings.stream)), settings.lateness)
    parsed_updates = parse_updates(kafka_stream(spark, updates_stream))
    updates = valid_updates(parsed_updates, settings.lateness)
    status = current_status(orders, updates, settings.max_update_delay).observe(
        "order_status", F.count(F.lit(1)).alias("rows")
    )
    bad = (
        parsed_updates.where(F.col("reason").isNotNull())
        .select(*UPDATE_QUARANTINE_COLUMNS)
        .observe("quarantine_updates", F.count(F.lit(1)).alias("rows"))
    )
    checkpoints, stream = settings.checkpoint_dir, settings.stream
    return [
        start_sink(status, "order_status", settings.output_dir, checkpoints / "status", stream),
        start_sink(bad, "quarantine_updates", settings.quarantine_dir, checkpoints / "quarantine", stream),
    ]


def run(settings: StatusSettings, spark=None) -> dict[str, int]:
    """Runs the join (until drained with --available-now, else until stopped); returns the rows
    written per sink."""
    check_source(settings.stream)
    check_source(dataclasses.replace(settings.stream, topic=settings.updates_topic))
    spark = spark or get_spark("shopstream-order-status")
    queries = start_queries(spark, settings)
    try:
        totals = await_queries(queries)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
    log.info("order status run finished: %s", totals)
    return totals


def parse_args(argv: Sequence[str] | None) -> StatusSettings:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
    parser.add_argument("--orders-topic", default=ORDERS_TOPIC)
    parser.add_argument("--updates-topic", default=UPDATES_TOPIC)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--available-now", action="store_true", help="process everything available, then exit")
    mode.add_argument("--trigger", type=parse_trigger, default=DEFAULT_TRIGGER)
    parser.add_argument("--lateness", default="10 minutes", help="watermark delay of both inputs")
    parser.add_argument(
        "--max-update-delay", default="2 days", help="an update joins its order only within this time"
    )
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--quarantine-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    stream = StreamSettings(
        bootstrap=args.bootstrap or kafka_bootstrap(),
        topic=args.orders_topic,
        available_now=args.available_now,
        trigger=args.trigger,
        kafka_options={**kafka_security_options(), **dict(kv.split("=", 1) for kv in args.kafka_option)},
    )
    settings = StatusSettings(
        stream=stream,
        updates_topic=args.updates_topic,
        lateness=args.lateness,
        max_update_delay=args.max_update_delay,
    )
    for name in ("output_dir", "quarantine_dir", "checkpoint_dir"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name).resolve())
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        run(settings)
    except KafkaCheckError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    exit_after(main)
