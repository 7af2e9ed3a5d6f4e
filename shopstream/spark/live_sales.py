"""Live sales: the order stream rolled up per minute into the serving store, exactly once.

    spark-submit --properties-file config/spark/spark-defaults.conf \\
        --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/live_sales.py --trigger 5s

(`python -m shopstream.spark.live_sales` does the same, with jars, settings and class
archive found for you;
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

from shopstream import serving
from shopstream.config import (
    LIVE_QUERY,
    ORDERS_TOPIC,
    VALID,
    VERDICT,
    ServingDbNotConfigured,
    paths,
    serving_db_dsn,
)
from shopstream.contract import CANCELLED, NEW, RETURNED
from shopstream.data_loss import DATA_LOSS_LEDGER
from shopstream.spark.ingest_guard import LIVE, SinkBusy, WriterLock, newest_batch
from shopstream.spark.session import exit_after, get_spark, job_logger
from shopstream.spark.source_gaps import check_source_continuity
from shopstream.spark.stream_progress import await_queries
from shopstream.spark.streaming import (
    StreamSettings,
    apply_folders,
    check_source,
    kafka_stream,
    source_settings,
    start_triggered,
    stream_arg_parser,
    stream_main,
)

log = job_logger("live")

QUERY_NAME = "live_sales"
LIVE_TRIGGER = "5 seconds"
FOLDERS = ("checkpoint",)


def _cents_to_money(cents: int | None) -> Decimal:
    return Decimal(cents or 0).scaleb(-2)


# The three roll-ups of a micro-batch, as grouping sets of one aggregation: one Spark job and one
# shuffle per micro-batch (instead of caching the batch and running three).
SALES_SET = ("minute", "region", "category")
PRODUCTS_SET = ("minute", "product_id", "product_name", "category")
INTAKE_SET = ("arrived",)
GROUPING_COLUMNS = ("minute", "region", "category", "product_id", "product_name", "arrived")


def grouping_id(grouping_set: Sequence[str]) -> int:
    """Spark's grouping_id() of the rows of `grouping_set`: one bit per grouping column (the
    first the most significant), set where the column is not grouped."""
    n = len(GROUPING_COLUMNS)
    return sum(1 << (n - 1 - i) for i, c in enumerate(GROUPING_COLUMNS) if c not in grouping_set)


def batch_increments(batch) -> serving.BatchIncrements:
    """A micro-batch of de-duplicated sink rows -> its increments per minute of event time (by
    region and category, by product) and per minute of arrival (records, quarantined): small, at
    most minutes x regions x products rows, computed by Spark and collected to the driver."""
    from pyspark.sql import functions as F

    from shopstream.spark.orders import event_cents, revenue_sign

    valid = F.col(VERDICT) == VALID
    status = F.col("order_status")
    # Integer cents, summed as decimals (as in the batch job's base roll-up). Quarantined rows have
    # null event fields, so they add nothing to the event measures.
    cents = event_cents()
    rows = batch.withColumns(
        {"minute": F.date_trunc("minute", "timestamp"), "arrived": F.date_trunc("minute", "kafka_timestamp")}
    )
    sets = [list(SALES_SET), list(PRODUCTS_SET), list(INTAKE_SET)]
    rolled = rows.groupingSets(sets, *GROUPING_COLUMNS).agg(
        F.grouping_id().alias("set"),
        F.count_if(valid & (status == NEW)), F.count_if(valid & (status == CANCELLED)),
        F.count_if(valid & (status == RETURNED)), F.sum(revenue_sign() * F.col("quantity")),
        F.sum(F.when(status == NEW, cents)), F.sum(F.when(status != NEW, cents)),
        F.sum(revenue_sign() * cents), F.count("*"), F.count_if(~valid),
    )  # fmt: skip
    sales, products, intake = [], [], []
    sets = {
        grouping_id(SALES_SET): sales,
        grouping_id(PRODUCTS_SET): products,
        grouping_id(INTAKE_SET): intake,
    }
    for row in rolled.collect():
        minute, region, category, product_id, name, arrived, group, o, x, r, units, *money, records, bad = row
        if group == grouping_id(INTAKE_SET):
            intake.append((arrived, records, bad))
        elif minute is None:
            continue  # the quarantined records' group: no event time
        elif group == grouping_id(SALES_SET):
            sales.append((minute, region, category, o, x, r, int(units or 0), *map(_cents_to_money, money)))
        else:
            products.append(
                (minute, product_id, name, category, o, int(units or 0), _cents_to_money(money[2]))
            )
    return serving.BatchIncrements(sales=sales, products=products, intake=intake)


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

    checkpoint = settings.checkpoint_dir / LIVE_QUERY
    with serving.connect(dsn) as conn:
        serving.create_schema(conn)
        # The offset log's newest batch: the store may have committed it even if Spark's commit log
        # has not (a replay then skips it).
        planned = newest_batch(checkpoint, "offsets")
        serving.check_store_matches(conn, QUERY_NAME, str(checkpoint), planned)
    rows = without_redeliveries(sink_rows(parse_orders(kafka_stream(spark, settings))))
    store = serving.connect(dsn, autocommit=True)

    def write_batch(batch, batch_id: int) -> None:
        increments = batch_increments(batch)
        rows_in = sum(r[1] for r in increments.intake)
        if not serving.apply_batch(store, QUERY_NAME, str(checkpoint), batch_id, increments, rows_in):
            log.info("batch %d was already in the store (a replay): skipped", batch_id)

    writer = rows.writeStream.queryName(QUERY_NAME).foreachBatch(write_batch)
    writer = writer.option("checkpointLocation", str(checkpoint))
    return start_triggered(writer, spark, settings), store


def run(settings: StreamSettings, spark=None, dsn: str | None = None) -> int:
    """Runs the aggregation until drained (--available-now) or stopped, holding its writer lock.
    Returns the number of micro-batches it processed."""
    dsn = dsn or serving_db_dsn()
    stats = check_source(settings)
    lock = WriterLock(settings.checkpoint_dir)
    if not lock.acquire(LIVE):
        holder = lock.holder()
        raise SinkBusy(
            f"the live aggregation of {settings.checkpoint_dir} already runs "
            f"({holder.describe() if holder else 'unknown'}): stop it first (`make live-down`)"
        )
    with lock:
        ledger = settings.checkpoint_dir / DATA_LOSS_LEDGER
        check_source_continuity(settings, stats, settings.checkpoint_dir / LIVE_QUERY, ledger)
        spark = spark or get_spark("shopstream-live-sales", comet=False)
        query, store = start_query(spark, settings, dsn)
        # Progress goes through a connection of its own: the batches' runs in Spark's callback
        # thread, inside their transactions.
        progress_store = None
        try:
            progress_store = serving.connect(dsn, autocommit=True)
            return follow(query, progress_store)
        finally:
            if query.isActive:
                query.stop()
            store.close()
            if progress_store is not None:
                progress_store.close()


PRUNE_EVERY_SECONDS = 3600


def follow(query, store, poll_seconds: float = 1.0) -> int:
    """Logs each micro-batch and records the query's lag in the store (the health panel), and
    prunes rows older than the retention once an hour, until the query ends; re-raises its
    failure."""
    batches = 0
    next_prune = time.monotonic()

    def prune_hourly() -> None:
        nonlocal next_prune
        if time.monotonic() >= next_prune:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=serving.retention_days())
            log.info("pruned %d per-minute rows before %s", serving.prune(store, cutoff), cutoff)
            next_prune = time.monotonic() + PRUNE_EVERY_SECONDS

    def record_lag(progress: dict) -> None:
        nonlocal batches
        batches += 1
        serving.record_progress(store, QUERY_NAME, offsets_behind(progress), dt.datetime.now(dt.UTC))

    await_queries([query], (), poll_seconds, on_progress=record_lag, on_poll=prune_hourly)
    return batches


def parse_args(argv: Sequence[str] | None) -> StreamSettings:
    parser = stream_arg_parser(__doc__, FOLDERS)
    parser.set_defaults(trigger=LIVE_TRIGGER)
    parser.add_argument("--topic", default=ORDERS_TOPIC)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    args = parser.parse_args(argv)
    settings = source_settings(args, args.topic, max_offsets_per_trigger=args.max_offsets_per_trigger)
    settings.checkpoint_dir = paths().live_checkpoints
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
