"""Module 2: order events from Kafka into the raw layer, the Iceberg table `raw_events`, exactly once.

    spark-submit --properties-file config/spark/spark-defaults.conf \\
        --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/stream_consumer.py --available-now

(`python -m shopstream.spark.stream_consumer` does the same, with jars, settings and class
archive found for you.)

One streaming query reads the topic, parses each record once and writes it to the table
`lake.<namespace>.raw_events` (`shopstream.raw_table`) under its verdict: valid rows in partitions
`verdict=valid/date=…`, rejected records with their untouched value and reason in
`verdict=quarantined/date=…`. Iceberg's streaming sink commits each micro-batch as one snapshot
that records the query's id and epoch, and skips an epoch it committed already: with the query's
checkpoint, the table holds every record once across crashes and restarts. Readers read any
snapshot of the table, from Spark, PyIceberg or any Iceberg engine.

One writer per sink (`ingest_guard`): the query holds a lock beside its checkpoint. A second
`--trigger` writer fails fast naming the first; an `--available-now` run that finds the live
service (`make stream-up`) at work starts no query and waits until it has committed every offset
the topic held when the run started.

Before its query starts, a run checks that it can read on from its checkpoint: events Kafka's
retention deleted unread, or a topic created again, stop it with a message naming them
(`source_gaps.check_source_continuity`); `--available-now --accept-data-loss` records the gap in
the ledger beside the checkpoint (`shopstream.data_loss`) and goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shopstream.config import INGEST_QUERY, ORDERS_TOPIC, VALID, VERDICT
from shopstream.contract import ORDER_FIELD_NAMES, ORDER_STATUSES
from shopstream.data_loss import DATA_LOSS_LEDGER
from shopstream.kafka_admin import TopicStats
from shopstream.lake import spark_table
from shopstream.lake_check import check_lake
from shopstream.raw_table import DEDUPLICATED, RAW_EVENTS, VALIDATED
from shopstream.spark.ingest_guard import AVAILABLE_NOW, LIVE, SinkBusy, WriterLock, wait_for_offsets
from shopstream.spark.raw_events import FANOUT, ensure_raw_table, set_properties
from shopstream.spark.session import exit_after, get_spark
from shopstream.spark.source_gaps import check_source_continuity
from shopstream.spark.stream_progress import REDELIVERED, run_queries
from shopstream.spark.streaming import (
    SinkCheckpointMismatch,
    StreamSettings,
    apply_folders,
    check_source,
    check_table_matches_checkpoint,
    holds_batches,
    kafka_stream,
    log,
    source_settings,
    start_triggered,
    stream_arg_parser,
    stream_main,
)

ROW_KINDS = ("raw", "quarantine")  # what `run` counts: rows written per verdict
COUNTED = (*ROW_KINDS, REDELIVERED)  # ... and the re-delivered copies the stream dropped
# How long an --available-now run waits for the live query to commit what the topic held.
FOLLOW_TIMEOUT_SECONDS = 1800


# Events are produced a little after their time (network, producer batching): a day's ingest is
# complete once the topic's end offsets are taken this long after its midnight.
DAY_GRACE_SECONDS = 300


def day_closed_at(day: str) -> dt.datetime:
    """When every event of `day` (YYYY-MM-DD, UTC) should be in the topic: the next midnight UTC
    plus the grace (`SHOPSTREAM_DAY_GRACE_SECONDS`)."""
    grace = float(os.environ.get("SHOPSTREAM_DAY_GRACE_SECONDS", DAY_GRACE_SECONDS))
    midnight = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(), dt.UTC)
    return midnight + dt.timedelta(seconds=grace)


def wait_until_day_closed(day: str, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                          sleep: Callable[[float], None] = time.sleep) -> float:  # fmt: skip
    """Sleeps until `day_closed_at(day)`; returns the seconds waited (0 for a day long closed)."""
    waited = max(0.0, (day_closed_at(day) - now()).total_seconds())
    if waited:
        log.info("events of %s may still arrive: waiting %.0f s, until %s", day, waited, day_closed_at(day))
        sleep(waited)
    return waited


def check_checkpoint_matches_dedup(checkpoint: Path, deduplicate: bool) -> None:
    """The de-duplication's state lives in the checkpoint: a checkpoint started without it
    cannot take it up later (Spark finds no state to resume), nor drop it. Say so plainly."""
    if not holds_batches(checkpoint / "offsets"):
        return  # a new checkpoint starts either way
    has_state = (checkpoint / "state").is_dir()
    if has_state != deduplicate:
        made, now = ("with", "without") if has_state else ("without", "with")
        raise SinkCheckpointMismatch(
            f"the checkpoint {checkpoint} was made {made} the stream's de-duplication and this run "
            f"is {now} it. Keep SHOPSTREAM_STREAM_DEDUP={'1' if has_state else '0'} for this "
            "checkpoint, or start a new sink and checkpoint (the batch jobs count each event once "
            "either way)."
        )


LIVE_WRITER_TASKS = 1


def ingest_rows(spark, settings: StreamSettings):
    """The ingest's streaming rows, as the raw table takes them: each record parsed once under its
    verdict, re-deliveries dropped (with `settings.deduplicate`), rows per verdict observed as
    metric "orders"."""
    from pyspark.sql import functions as F

    from shopstream.spark.orders import parse_orders, sink_rows, without_redeliveries

    valid = F.col(VERDICT) == VALID
    rows = sink_rows(parse_orders(kafka_stream(spark, settings)))
    if settings.deduplicate:
        rows = without_redeliveries(rows)
    if not settings.available_now:
        # The live service commits a batch a minute: written by one task, each batch is one file
        # per partition instead of one per de-dup task (4), ≈ 1,440 files a day for the batch jobs
        # to read instead of ≈ 5,800. The de-dup keeps its tasks; a drain (availableNow) keeps
        # its parallel writers for the backlog.
        rows = rows.repartition(LIVE_WRITER_TASKS)
    # Observed metrics ride along with each micro-batch's progress at no extra pass over the data.
    return rows.observe("orders", F.count_if(valid).alias("raw"), F.count_if(~valid).alias("quarantine"))


def start_queries(spark, settings: StreamSettings) -> list:
    """Starts the ingest query (runs until stopped, or drained with availableNow)."""
    from shopstream.spark.orders import redelivery_window_days

    rows = ingest_rows(spark, settings)
    checkpoint = settings.checkpoint_dir / INGEST_QUERY
    check_checkpoint_matches_dedup(checkpoint, settings.deduplicate)
    table = ensure_raw_table(spark, rows.schema)
    # What every row of the table is: validated against the contract's rules; de-duplicated when
    # every batch so far dropped re-deliveries (a run without it clears that before it commits).
    rules = json.dumps({"required": list(ORDER_FIELD_NAMES), "order_status": list(ORDER_STATUSES)})
    first_commit = check_table_matches_checkpoint(spark, table, checkpoint)
    if first_commit:
        window = str(redelivery_window_days()) if settings.deduplicate else None
        set_properties(spark, {VALIDATED: rules, DEDUPLICATED: window})
    elif not settings.deduplicate:
        set_properties(spark, {DEDUPLICATED: None})
    writer = (
        rows.writeStream.queryName("orders").format("iceberg").outputMode("append")
        .options(**FANOUT).option("checkpointLocation", str(checkpoint))
    )  # fmt: skip
    return [start_triggered(writer, spark, settings, drained_by_data=True, table=table)]


def take_the_sink(settings: StreamSettings, stats: TopicStats) -> WriterLock | None:
    """The sink's writer lock for this run, or None when the live ingest service holds it and
    has now committed every offset the topic held at `stats` (nothing left for this run to do).
    Raises SinkBusy when another writer holds it and this run may not wait for it."""
    lock = WriterLock(settings.checkpoint_dir)
    if lock.acquire(AVAILABLE_NOW if settings.available_now else LIVE):
        return lock
    holder = lock.holder()
    if not (settings.available_now and holder and holder.mode == LIVE):
        raise SinkBusy(
            f"{spark_table(RAW_EVENTS)} already has a writer ({holder.describe() if holder else 'unknown'}): "
            "one query per table and checkpoint. Stop it first (`make stream-down` for the live service) or "
            "let it finish."
        )
    log.info("the live ingest service writes this sink (%s): waiting for it instead", holder.describe())
    timeout = float(os.environ.get("SHOPSTREAM_FOLLOW_TIMEOUT_SECONDS", FOLLOW_TIMEOUT_SECONDS))
    query = settings.checkpoint_dir / INGEST_QUERY
    if wait_for_offsets(query, settings.topic, stats.end_offsets, lock, timeout, log=log.info):
        log.info("the live query has committed %s up to %s", settings.topic, stats.end_offsets)
        lock.release()
        return None
    log.info("the live ingest service stopped: this run ingests the rest itself")
    return lock


def run(
    settings: StreamSettings, spark=None, on_progress: Callable[[dict], None] | None = None
) -> dict[str, int]:
    """Runs the ingest query: until drained (--available-now) or until stopped, holding the sink's
    writer lock; each finished micro-batch's progress goes to `on_progress`. Returns the rows
    written per sink during this run (nothing when the live service did the work)."""
    if settings.complete_day:
        wait_until_day_closed(settings.complete_day)
    stats = check_source(settings)  # the end offsets this run must reach, taken after the wait
    check_lake()  # before the session: a catalog or object store out of reach is named, not a stack trace
    lock = take_the_sink(settings, stats)
    if lock is None:
        return dict.fromkeys(COUNTED, 0)
    with lock:
        ledger = settings.checkpoint_dir / DATA_LOSS_LEDGER
        check_source_continuity(settings, stats, settings.checkpoint_dir / INGEST_QUERY, ledger)
        spark = spark or get_spark("shopstream-stream-consumer", comet=False, lake=True)
        started = time.monotonic()
        totals = run_queries(start_queries(spark, settings), COUNTED, on_progress=on_progress)
    log.info("stream run finished in %.1f s: %s", time.monotonic() - started, totals)
    return totals


FOLDERS = ("checkpoint",)


def parse_args(argv: Sequence[str] | None) -> StreamSettings:
    parser = stream_arg_parser(__doc__, FOLDERS)
    parser.add_argument("--topic", default=ORDERS_TOPIC)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    parser.add_argument(
        "--min-partitions", type=int, default=None,
        help="Spark tasks per micro-batch at least (default: 3 per core; 0: one per Kafka partition)",
    )  # fmt: skip
    parser.add_argument(
        "--complete-day", default=None, metavar="YYYY-MM-DD",
        help="ingest everything up to the end of this day: wait for its midnight + grace first",
    )  # fmt: skip
    args = parser.parse_args(argv)
    limits = {"max_offsets_per_trigger": args.max_offsets_per_trigger, "min_partitions": args.min_partitions}
    settings = source_settings(args, args.topic, **limits, complete_day=args.complete_day)
    apply_folders(settings, args, FOLDERS)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    return stream_main(parse_args, run, log, argv)


if __name__ == "__main__":
    exit_after(main)
