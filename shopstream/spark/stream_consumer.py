"""Module 2: order events from Kafka into the date-partitioned raw Parquet layer, exactly once.

    spark-submit --jars "$(ls .state/jars/spark-kafka/*.jar | paste -sd,)" \\
        shopstream/spark/stream_consumer.py --available-now

(`python -m shopstream.spark.stream_consumer` does the same with the jars found for you.)

Two streaming queries read the topic: one writes valid rows to `raw/`, one writes rejected
records with their reason to `quarantine/`. Each has its own checkpoint and uses Spark's file
sink, whose commit log (`_spark_metadata/`) makes the output exactly-once across crashes and
restarts; readers must read the sink's root folder so that they honour that log.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shopstream.config import ORDERS_TOPIC, kafka_bootstrap, kafka_security_options, paths
from shopstream.kafka_admin import KafkaCheckError, topic_stats
from shopstream.kafka_security import java_client_options
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("stream")

DEFAULT_TRIGGER = "1 minute"


@dataclass
class StreamSettings:
    bootstrap: str
    topic: str = ORDERS_TOPIC
    raw_dir: Path = field(default_factory=lambda: paths().raw)
    quarantine_dir: Path = field(default_factory=lambda: paths().quarantine)
    checkpoint_dir: Path = field(default_factory=lambda: paths().checkpoints / "stream_consumer")
    available_now: bool = False
    trigger: str = DEFAULT_TRIGGER
    max_offsets_per_trigger: int | None = None
    # Extra Kafka client settings (security for a real cluster) in librdkafka's names, as the
    # Connection keeps them; the Spark source gets them in the Java client's as kafka.<key>.
    kafka_options: dict[str, str] = field(default_factory=dict)


def parse_trigger(text: str) -> str:
    """'1m', '30s', '2 minutes' -> Spark's processingTime interval string."""
    match = re.fullmatch(r"\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"bad trigger {text!r}: use e.g. 1m, 30s, '2 minutes'")
    amount, unit = int(match.group(1)), match.group(2)
    if amount <= 0:
        raise argparse.ArgumentTypeError("the trigger interval must be positive")
    return f"{amount} {'minutes' if unit.startswith('m') else 'seconds'}"


def check_source(settings: StreamSettings, timeout: float = 15.0) -> int:
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
    return stats.messages


def kafka_stream(spark, settings: StreamSettings):
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap)
        .option("subscribe", settings.topic)
        .option("startingOffsets", "earliest")
        # Lost offsets (retention, a re-created topic) stop the query instead of being skipped.
        .option("failOnDataLoss", "true")
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    for key, value in java_client_options(settings.kafka_options).items():
        reader = reader.option(f"kafka.{key}", value)
    return reader.load()


def start_sink(frame, name: str, path: Path, checkpoint: Path, settings: StreamSettings):
    writer = (
        frame.writeStream.queryName(name)
        .format("parquet")
        .partitionBy("date")
        .option("path", str(path))
        .option("checkpointLocation", str(checkpoint))
        .outputMode("append")
    )
    writer = (
        writer.trigger(availableNow=True)
        if settings.available_now
        else writer.trigger(processingTime=settings.trigger)
    )
    return writer.start()


def start_queries(spark, settings: StreamSettings) -> list:
    """Starts the raw and the quarantine query; returns them (both run until stopped/drained)."""
    from pyspark.sql import functions as F

    from shopstream.spark.orders import parse_orders, quarantine_rows, valid_rows

    parsed = parse_orders(kafka_stream(spark, settings))
    # Observed metrics ride along with each micro-batch's progress at no extra pass over the data.
    raw = valid_rows(parsed).observe("raw", F.count(F.lit(1)).alias("rows"))
    bad = quarantine_rows(parsed).observe("quarantine", F.count(F.lit(1)).alias("rows"))
    return [
        start_sink(raw, "raw", settings.raw_dir, settings.checkpoint_dir / "raw", settings),
        start_sink(
            bad, "quarantine", settings.quarantine_dir, settings.checkpoint_dir / "quarantine", settings
        ),
    ]


def _as_dict(progress) -> dict:
    return json.loads(progress.json) if hasattr(progress, "json") else dict(progress)


def log_progress(progress: dict) -> None:
    """One line per micro-batch: records in, rows written to this sink, duration."""
    observed = progress.get("observedMetrics") or {}
    written = next(iter(observed.values()), {}).get("rows", "?")
    # Stateful queries (the order-status join) also report their state and late drops.
    state = progress.get("stateOperators") or []
    stateful = (
        f", state {sum(op.get('numRowsTotal', 0) for op in state)} rows, "
        f"{sum(op.get('numRowsDroppedByWatermark', 0) for op in state)} dropped as late"
        if state
        else ""
    )
    log.info(
        "%s batch %s: %s records in, %s rows written, %.1f s%s",
        progress.get("name"),
        progress.get("batchId"),
        progress.get("numInputRows"),
        written,
        (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000,
        stateful,
    )


def await_queries(queries: list, poll_seconds: float = 2.0) -> dict[str, int]:
    """Waits for every query to end, logging each finished micro-batch as it appears (polling:
    a Python listener would need a py4j callback server racing the JVM's shutdown). Raises the
    first query failure. Returns the rows written per query."""
    seen: set[tuple[str, int]] = set()
    written: dict[str, int] = {q.name: 0 for q in queries}

    def drain_progress() -> None:
        for query in queries:
            for progress in map(_as_dict, query.recentProgress):
                key = (query.name, progress["batchId"])
                if key in seen or progress.get("numInputRows") is None:
                    continue
                seen.add(key)
                log_progress(progress)
                observed = (progress.get("observedMetrics") or {}).get(query.name) or {}
                written[query.name] += int(observed.get("rows", 0))

    while any(q.isActive for q in queries):
        next(q for q in queries if q.isActive).awaitTermination(poll_seconds)
        drain_progress()
    drain_progress()
    for query in queries:
        query.awaitTermination()  # re-raises a failed query's exception
    return written


def run_queries(queries: list) -> dict[str, int]:
    """Waits for the queries (see await_queries) and stops any still active, also on failure."""
    try:
        return await_queries(queries)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()


def run(settings: StreamSettings, spark=None) -> dict[str, int]:
    """Runs both queries: until drained (--available-now) or until stopped. Returns the rows
    written per sink during this run."""
    check_source(settings)
    spark = spark or get_spark("shopstream-stream-consumer")
    started = time.monotonic()
    totals = run_queries(start_queries(spark, settings))
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
    except KafkaCheckError as error:
        job_log.error("%s", error)
        return 2
    return 0


FOLDERS = ("raw", "quarantine", "checkpoint")


def parse_args(argv: Sequence[str] | None) -> StreamSettings:
    parser = stream_arg_parser(__doc__, FOLDERS)
    parser.add_argument("--topic", default=ORDERS_TOPIC)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    args = parser.parse_args(argv)
    settings = source_settings(args, args.topic, max_offsets_per_trigger=args.max_offsets_per_trigger)
    apply_folders(settings, args, FOLDERS)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    return stream_main(parse_args, run, log, argv)


if __name__ == "__main__":
    exit_after(main)
