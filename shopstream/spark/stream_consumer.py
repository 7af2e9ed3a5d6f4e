"""Module 2: order events from Kafka into the date-partitioned raw Parquet layer, exactly once.

    spark-submit --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/stream_consumer.py --available-now

(`python -m shopstream.spark.stream_consumer` does the same with the jars found for you.)

One streaming query reads the topic, parses each record once and writes it to the raw sink
(`data/raw/`) under its verdict: valid rows to `verdict=valid/date=…/`, rejected records with
their untouched value and reason to `verdict=quarantined/date=…/`. Spark's file sink and its
commit log (`_spark_metadata/`), tied to the query's checkpoint, make the output exactly-once
across crashes and restarts; readers must read the sink's root folder so that they honour that
log (`batch_common.read_raw` does).

One writer per sink (`ingest_guard`): the query holds a lock beside its checkpoint. A second
`--trigger` writer fails fast naming the first; an `--available-now` run that finds the live
service (`make stream-up`) at work starts no query and waits until it has committed every offset
the topic held when the run started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shopstream.config import (
    ORDERS_TOPIC,
    VALID,
    VERDICT,
    java_client_options,
    kafka_bootstrap,
    kafka_security_options,
    paths,
)
from shopstream.kafka_admin import KafkaCheckError, TopicStats, topic_stats
from shopstream.spark.ingest_guard import AVAILABLE_NOW, LIVE, SinkBusy, WriterLock, wait_for_offsets
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("stream")

DEFAULT_TRIGGER = "1 minute"
MAX_POLL_RECORDS = 10_000
TASKS_PER_CORE = 3  # the default minPartitions, per core of the session
SINKS = ("raw", "quarantine")  # what `run` counts: rows written per verdict
REDELIVERED = "redelivered"  # ... and the re-delivered copies the stream dropped
COUNTED = (*SINKS, REDELIVERED)
# How long an --available-now run waits for the live query to commit what the topic held.
FOLLOW_TIMEOUT_SECONDS = 1800


@dataclass
class StreamSettings:
    bootstrap: str
    topic: str = ORDERS_TOPIC
    raw_dir: Path = field(default_factory=lambda: paths().raw)
    checkpoint_dir: Path = field(default_factory=lambda: paths().checkpoints / "stream_consumer")
    available_now: bool = False
    trigger: str = DEFAULT_TRIGGER
    max_offsets_per_trigger: int | None = None
    # Spark tasks per micro-batch at least (None: 3 per core of the session; 0: one per Kafka
    # partition). More tasks balance the cores; each task writes its own files, so more files.
    min_partitions: int | None = None
    # Extra Kafka client settings (security for a real cluster) in librdkafka's names, as the
    # Connection keeps them; the Spark source gets them in the Java client's as kafka.<key>.
    kafka_options: dict[str, str] = field(default_factory=dict)
    # The date whose events this run must complete (the DAG's run date): its topic end offsets
    # are taken no earlier than the end of that day plus the grace (`day_closed_at`).
    complete_day: str | None = None
    # Drop re-delivered events in the stream (`orders.without_redeliveries`). Fixed for the life
    # of a checkpoint: Spark keeps the de-duplication's state in it.
    deduplicate: bool = field(default_factory=lambda: os.environ.get("SHOPSTREAM_STREAM_DEDUP", "1") != "0")


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


def parse_trigger(text: str) -> str:
    """'1m', '30s', '2 minutes' -> Spark's processingTime interval string."""
    match = re.fullmatch(r"\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"bad trigger {text!r}: use e.g. 1m, 30s, '2 minutes'")
    amount, unit = int(match.group(1)), match.group(2)
    if amount <= 0:
        raise argparse.ArgumentTypeError("the trigger interval must be positive")
    return f"{amount} {'minutes' if unit.startswith('m') else 'seconds'}"


def check_source(settings: StreamSettings, timeout: float = 15.0) -> TopicStats:
    """Fails fast, naming the broker or topic, before Spark would wait on a missing one forever."""
    stats = topic_stats(
        settings.topic, settings.bootstrap, timeout=timeout, extra_config=settings.kafka_options
    )
    log.info(
        "source %s on %s: %d messages in %d partitions",
        stats.topic,
        settings.bootstrap,
        stats.messages,
        stats.partitions,
    )
    return stats


def kafka_stream(spark, settings: StreamSettings):
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap)
        .option("subscribe", settings.topic)
        .option("startingOffsets", "earliest")
        # Lost offsets (retention, a re-created topic) stop the query instead of being skipped.
        .option("failOnDataLoss", "true")
        # Records per poll: the default 500 made each task poll thousands of times (measured on
        # 1M events: Kafka read 2.8 s -> 2.0 s warm, 7.0 s -> 6.2 s in a fresh JVM).
        .option("kafka.max.poll.records", str(MAX_POLL_RECORDS))
    )
    # More tasks than topic partitions (3 partitions on 2 cores left one core idle for a third
    # of every batch); Spark splits large offset ranges evenly.
    min_partitions = settings.min_partitions
    if min_partitions is None:
        min_partitions = TASKS_PER_CORE * spark.sparkContext.defaultParallelism
    if min_partitions:
        reader = reader.option("minPartitions", str(min_partitions))
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    for key, value in java_client_options(settings.kafka_options).items():
        reader = reader.option(f"kafka.{key}", value)
    return reader.load()


def start_sink(frame, name: str, path: Path, checkpoint: Path, settings: StreamSettings,
               partition_by: Sequence[str] = ("date",)):  # fmt: skip
    check_sink_matches_checkpoint(path, checkpoint)
    writer = (
        frame.writeStream.queryName(name)
        .format("parquet")
        .partitionBy(*partition_by)
        .option("path", str(path))
        .option("checkpointLocation", str(checkpoint))
        .outputMode("append")
    )
    return trigger_writer(writer, settings).start()


def trigger_writer(writer, settings: StreamSettings):
    """`writer` with the settings' trigger: drain what is there (availableNow) or every interval."""
    if settings.available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=settings.trigger)


class SinkCheckpointMismatch(RuntimeError):
    """The output folder and the checkpoint given to a streaming query are not each other's."""


def _holds_batches(log_dir: Path) -> bool:
    return log_dir.is_dir() and any(p.name.split(".")[0].isdigit() for p in log_dir.iterdir())


def check_sink_matches_checkpoint(sink: Path, checkpoint: Path) -> None:
    """A file sink skips every batch id its commit log already holds: with a new checkpoint
    against an old sink, Spark would silently drop the first batches. Refuse instead. (A batch is
    in the checkpoint's offset log before the sink commits it, so a sink with batches and a
    checkpoint without offsets never belong together.)"""
    if _holds_batches(sink / "_spark_metadata") and not _holds_batches(checkpoint / "offsets"):
        raise SinkCheckpointMismatch(
            f"{sink} already holds committed batches but the checkpoint {checkpoint} is new: they "
            "belong together. Restore that sink's checkpoint, or move the sink away to start over "
            "(`make clean` clears both for the local defaults)."
        )


def check_checkpoint_matches_dedup(checkpoint: Path, deduplicate: bool) -> None:
    """The de-duplication's state lives in the checkpoint: a checkpoint started without it
    cannot take it up later (Spark finds no state to resume), nor drop it. Say so plainly."""
    if not _holds_batches(checkpoint / "offsets"):
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


def start_queries(spark, settings: StreamSettings) -> list:
    """Starts the ingest query (runs until stopped, or drained with availableNow)."""
    from pyspark.sql import functions as F

    from shopstream.spark.orders import parse_orders, sink_rows, without_redeliveries

    valid = F.col(VERDICT) == VALID
    rows = sink_rows(parse_orders(kafka_stream(spark, settings)))
    if settings.deduplicate:
        rows = without_redeliveries(rows)
    # Observed metrics ride along with each micro-batch's progress at no extra pass over the data.
    rows = rows.observe("orders", F.count_if(valid).alias("raw"), F.count_if(~valid).alias("quarantine"))
    checkpoint = settings.checkpoint_dir / "orders"
    check_checkpoint_matches_dedup(checkpoint, settings.deduplicate)
    return [start_sink(rows, "orders", settings.raw_dir, checkpoint, settings, (VERDICT, "date"))]


def _as_dict(progress) -> dict:
    return json.loads(progress.json) if hasattr(progress, "json") else dict(progress)


def rows_written(progress: dict) -> dict[str, int]:
    """Rows a micro-batch wrote per sink: the query's observation (named after the query) counts
    them, one metric per sink; plus the re-delivered copies its de-duplication dropped, if any."""
    observed = (progress.get("observedMetrics") or {}).get(progress.get("name")) or {}
    written = {sink: int(rows) for sink, rows in observed.items()}
    dropped = [
        op["customMetrics"]["numDroppedDuplicateRows"]
        for op in progress.get("stateOperators") or []
        if "numDroppedDuplicateRows" in (op.get("customMetrics") or {})
    ]
    if dropped:
        written[REDELIVERED] = int(sum(dropped))
    return written


def log_progress(progress: dict) -> None:
    """One line per micro-batch: records in, rows written per sink, duration."""
    counts = rows_written(progress)
    redelivered = counts.pop(REDELIVERED, None)
    written = ", ".join(f"{rows} {sink}" for sink, rows in counts.items()) or "?"
    if redelivered is not None:
        written += f" ({redelivered} re-delivered copies dropped)"
    # Stateful queries (the order-status join) also report their state and late drops.
    state = progress.get("stateOperators") or []
    stateful = (
        f", state {sum(op.get('numRowsTotal', 0) for op in state)} rows, "
        f"{sum(op.get('numRowsDroppedByWatermark', 0) for op in state)} dropped as late"
        if state
        else ""
    )
    log.info(
        "%s batch %s: %s records in, rows written: %s, %.1f s%s",
        progress.get("name"),
        progress.get("batchId"),
        progress.get("numInputRows"),
        written,
        (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000,
        stateful,
    )


def await_queries(queries: list, sinks: Sequence[str], poll_seconds: float = 2.0) -> dict[str, int]:
    """Waits for every query to end, logging each finished micro-batch as it appears (polling:
    a Python listener would need a py4j callback server racing the JVM's shutdown). Raises the
    first query failure. Returns the rows written per sink (see `rows_written`)."""
    seen: set[tuple[str, int]] = set()
    written: dict[str, int] = dict.fromkeys(sinks, 0)

    def drain_progress() -> None:
        for query in queries:
            for progress in map(_as_dict, query.recentProgress):
                key = (query.name, progress["batchId"])
                if key in seen or progress.get("numInputRows") is None:
                    continue
                seen.add(key)
                log_progress(progress)
                for sink, rows in rows_written(progress).items():
                    written[sink] += rows

    while any(q.isActive for q in queries):
        next(q for q in queries if q.isActive).awaitTermination(poll_seconds)
        drain_progress()
    drain_progress()
    for query in queries:
        query.awaitTermination()  # re-raises a failed query's exception
    return written


def run_queries(queries: list, sinks: Sequence[str]) -> dict[str, int]:
    """Waits for the queries (see await_queries) and stops any still active, also on failure."""
    try:
        return await_queries(queries, sinks)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()


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
            f"{settings.raw_dir} already has a writer ({holder.describe() if holder else 'unknown'}): one "
            "query per sink and checkpoint. Stop it first (`make stream-down` for the live service) or "
            "let it finish."
        )
    log.info("the live ingest service writes this sink (%s): waiting for it instead", holder.describe())
    timeout = float(os.environ.get("SHOPSTREAM_FOLLOW_TIMEOUT_SECONDS", FOLLOW_TIMEOUT_SECONDS))
    query = settings.checkpoint_dir / "orders"
    if wait_for_offsets(query, settings.topic, stats.end_offsets, lock, timeout, log=log.info):
        log.info("the live query has committed %s up to %s", settings.topic, stats.end_offsets)
        lock.release()
        return None
    log.info("the live ingest service stopped: this run ingests the rest itself")
    return lock


def run(settings: StreamSettings, spark=None) -> dict[str, int]:
    """Runs the ingest query: until drained (--available-now) or until stopped, holding the sink's
    writer lock. Returns the rows written per sink during this run (nothing when the live service
    did the work)."""
    if settings.complete_day:
        wait_until_day_closed(settings.complete_day)
    stats = check_source(settings)  # the end offsets this run must reach, taken after the wait
    lock = take_the_sink(settings, stats)
    if lock is None:
        return dict.fromkeys(COUNTED, 0)
    with lock:
        spark = spark or get_spark("shopstream-stream-consumer")
        started = time.monotonic()
        totals = run_queries(start_queries(spark, settings), COUNTED)
    log.info("stream run finished in %.1f s: %s", time.monotonic() - started, totals)
    return totals


def stream_arg_parser(description: str, folders: Sequence[str]) -> argparse.ArgumentParser:
    """The options every streaming job shares: Kafka source, trigger mode, output `folders`
    (each a `--<name>-dir`), extra Kafka client settings."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (default: SHOPSTREAM_KAFKA_BOOTSTRAP)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--available-now", action="store_true", help="process everything available, then exit")
    mode.add_argument(
        "--trigger", type=parse_trigger, default=DEFAULT_TRIGGER, help="micro-batch interval (default 1m)"
    )
    for name in folders:
        parser.add_argument(f"--{name}-dir", type=Path, default=None)
    parser.add_argument(
        "--kafka-option", action="append", default=[], metavar="KEY=VALUE", help="extra Kafka client setting"
    )
    return parser


def source_settings(args: argparse.Namespace, topic: str, **extra) -> StreamSettings:
    """StreamSettings from the options of `stream_arg_parser` (folders are applied apart)."""
    return StreamSettings(
        bootstrap=args.bootstrap or kafka_bootstrap(),
        topic=topic,
        available_now=args.available_now,
        trigger=args.trigger,
        kafka_options={**kafka_security_options(), **dict(kv.split("=", 1) for kv in args.kafka_option)},
        **extra,
    )


def apply_folders(settings, args: argparse.Namespace, folders: Sequence[str]) -> None:
    """Sets `<name>_dir` on `settings` for each folder given on the command line."""
    for name in folders:
        given = getattr(args, f"{name}_dir")
        if given is not None:
            setattr(settings, f"{name}_dir", given.resolve())


def stream_main(parse: Callable[[Sequence[str] | None], object], job: Callable[[object], object],
                job_log: logging.Logger, argv: Sequence[str] | None) -> int:  # fmt: skip
    """Runs a streaming job from its command line; a missing broker or topic exits 2 with the
    message saying which."""
    try:
        job(parse(argv))
    except (KafkaCheckError, SinkCheckpointMismatch, SinkBusy, TimeoutError) as error:
        job_log.error("%s", error)
        return 2
    return 0


FOLDERS = ("raw", "checkpoint")


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
