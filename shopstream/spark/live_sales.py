"""Live sales: the order stream rolled up per minute into the serving store, exactly once.

    spark-submit --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/live_sales.py --trigger 5s

(`python -m shopstream.spark.live_sales` does the same with the jars found for you;
`make live-up` runs it as a service.)

One streaming query reads the orders topic and parses and de-duplicates each record exactly as
the ingest does (`orders.parse_orders`, `sink_rows`, `without_redeliveries`: a re-delivered
copy never counts). Each micro-batch is rolled up per minute of event time, by region and
category and by product, with the revenue rule of the batch jobs (`shopstream.metrics`), plus
the records and quarantined records per minute of arrival; `shopstream.serving.apply_batch`
adds those increments to PostgreSQL in the same transaction that records the batch id, so a
restart or a replayed batch never counts twice and a late event still reaches its minute.

Why increments fenced by batch id rather than a stateful windowed aggregation upserting whole
windows: no event-time watermark drops late events from the live view, the query keeps no
aggregation state (only the de-duplication's), and the store's rows stay exact however late
an event arrives (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from shopstream import serving
from shopstream.config import ORDERS_TOPIC, VALID, VERDICT, ServingDbNotConfigured, paths, serving_db_dsn
from shopstream.contract import CANCELLED, NEW, RETURNED
from shopstream.spark.ingest_guard import LIVE, SinkBusy, WriterLock
from shopstream.spark.session import exit_after, get_spark, job_logger
from shopstream.spark.streaming import (
    StreamSettings,
    apply_folders,
    check_source,
    kafka_stream,
    log_progress,
    progress_dict,
    source_settings,
    stream_arg_parser,
    stream_main,
    trigger_writer,
)

log = job_logger("live")

QUERY_NAME = "live_sales"
LIVE_TRIGGER = "5 seconds"
FOLDERS = ("checkpoint",)


def default_checkpoint() -> Path:
    return paths().checkpoints / QUERY_NAME


def _cents_to_money(cents: int | None) -> Decimal:
    return Decimal(cents or 0).scaleb(-2)


def batch_increments(batch):
    """A micro-batch of de-duplicated sink rows -> its per-minute increments (small: at most
    minutes x regions x categories rows), computed by Spark and collected to the driver."""
    from pyspark.sql import functions as F

    from shopstream.spark.orders import revenue_sign, valid_rows

    valid = valid_rows(batch)
    minute = F.date_trunc("minute", "timestamp").alias("minute")
    status = F.col("order_status")
    # Integer cents: exact, and cheap to sum (as in the batch job's base roll-up).
    cents = (F.col("quantity") * F.col("unit_price") * 100).cast("long")
    units = F.sum(revenue_sign() * F.col("quantity"))
    net = F.sum(revenue_sign() * cents)
    sales = valid.groupBy(minute, "region", "category").agg(
        F.count_if(status == NEW), F.count_if(status == CANCELLED), F.count_if(status == RETURNED), units,
        F.sum(F.when(status == NEW, cents)), F.sum(F.when(status != NEW, cents)), net,
    )  # fmt: skip
    products = valid.groupBy(minute, "product_id", "product_name", "category").agg(
        F.count_if(status == NEW), units, net
    )
    intake = batch.groupBy(F.date_trunc("minute", "kafka_timestamp")).agg(
        F.count("*"), F.count_if(F.col(VERDICT) != VALID)
    )
    return serving.BatchIncrements(
        sales=[
            (m, r, c, o, x, ret, int(u or 0), *map(_cents_to_money, money))
            for m, r, c, o, x, ret, u, *money in sales.collect()
        ],
        products=[
            (m, p, n, c, o, int(u or 0), _cents_to_money(v)) for m, p, n, c, o, u, v in products.collect()
        ],
        intake=[tuple(row) for row in intake.collect()],
    )


def committed_batch(checkpoint: Path) -> int | None:
    """The newest batch id the query's offset log planned (the store may have committed it even if
    Spark's commit log has not: a replay then skips it)."""
    offsets = checkpoint / "offsets"
    ids = [int(p.name) for p in offsets.iterdir() if p.name.isdigit()] if offsets.is_dir() else []
    return max(ids, default=None)


def offsets_behind(progress: dict) -> int | None:
    """Records between what the last micro-batch read and the topic's end, over all partitions."""
    sources = progress.get("sources") or []
    if not sources or not sources[0].get("latestOffset") or not sources[0].get("endOffset"):
        return None

    def parse(value):
        return json.loads(value) if isinstance(value, str) else value

    latest, end = parse(sources[0]["latestOffset"]), parse(sources[0]["endOffset"])
    return sum(
        int(o) - int(end.get(t, {}).get(p, 0)) for t, parts in latest.items() for p, o in parts.items()
    )


def start_query(spark, settings: StreamSettings, dsn: str):
    from shopstream.spark.orders import parse_orders, sink_rows, without_redeliveries

    checkpoint = settings.checkpoint_dir / "query"
    with serving.connect(dsn) as conn:
        serving.create_schema(conn)
        serving.check_store_matches(conn, QUERY_NAME, str(checkpoint), committed_batch(checkpoint))
    rows = without_redeliveries(sink_rows(parse_orders(kafka_stream(spark, settings))))
    store = serving.connect(dsn, autocommit=True)

    def write_batch(batch, batch_id: int) -> None:
        batch.persist()
        try:
            increments = batch_increments(batch)
            rows_in = sum(r[1] for r in increments.intake)
            if not serving.apply_batch(store, QUERY_NAME, str(checkpoint), batch_id, increments, rows_in):
                log.info("batch %d was already in the store (a replay): skipped", batch_id)
        finally:
            batch.unpersist()

    writer = rows.writeStream.queryName(QUERY_NAME).foreachBatch(write_batch)
    writer = writer.option("checkpointLocation", str(checkpoint))
    return trigger_writer(writer, settings).start(), store


def run(settings: StreamSettings, spark=None, dsn: str | None = None) -> int:
    """Runs the aggregation until drained (--available-now) or stopped, holding its writer lock.
    Returns the number of micro-batches it processed."""
    dsn = dsn or serving_db_dsn()
    check_source(settings)
    lock = WriterLock(settings.checkpoint_dir)
    if not lock.acquire(LIVE):
        holder = lock.holder()
        raise SinkBusy(
            f"the live aggregation of {settings.checkpoint_dir} already runs "
            f"({holder.describe() if holder else 'unknown'}): stop it first (`make live-down`)"
        )
    with lock:
        spark = spark or get_spark("shopstream-live-sales")
        query, store = start_query(spark, settings, dsn)
        try:
            return follow(query, store)
        finally:
            if query.isActive:
                query.stop()
            store.close()


def follow(query, store, poll_seconds: float = 1.0) -> int:
    """Logs each micro-batch and records the query's lag in the store (the health panel), until
    the query ends; re-raises its failure."""
    seen: set[int] = set()
    while True:
        active = query.isActive and not query.awaitTermination(poll_seconds)
        for progress in query.recentProgress:
            progress = progress_dict(progress)
            if progress["batchId"] in seen:
                continue
            seen.add(progress["batchId"])
            log_progress(progress)
            serving.record_progress(store, QUERY_NAME, offsets_behind(progress), dt.datetime.now(dt.UTC))
        if not active:
            break
    query.awaitTermination()  # re-raises a failed query's exception
    return len(seen)


def parse_args(argv: Sequence[str] | None) -> StreamSettings:
    parser = stream_arg_parser(__doc__, FOLDERS)
    parser.set_defaults(trigger=LIVE_TRIGGER)
    parser.add_argument("--topic", default=ORDERS_TOPIC)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    args = parser.parse_args(argv)
    settings = source_settings(args, args.topic, max_offsets_per_trigger=args.max_offsets_per_trigger)
    settings.checkpoint_dir = default_checkpoint()
    apply_folders(settings, args, FOLDERS)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    try:
        code = stream_main(parse_args, run, log, argv)
    except (serving.StoreMismatch, ServingDbNotConfigured) as error:
        log.error("%s", error)
        return 2
    log.info("live aggregation ended after %.0f s", time.monotonic() - started)
    return code


if __name__ == "__main__":
    exit_after(main)
