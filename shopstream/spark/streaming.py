"""What every streaming job of shopstream shares: its settings, the Kafka source, Iceberg tables
bound to their checkpoint, the trigger and the command line.

The jobs (`stream_consumer`: the ingest into the raw layer; `order_status_stream`: the current
status of each order; `live_sales`) build their queries from these parts, check their source with
`source_gaps` and run them with `stream_progress`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shopstream.config import (
    ORDERS_TOPIC,
    java_client_options,
    kafka_bootstrap,
    kafka_security_options,
    paths,
)
from shopstream.kafka_admin import KafkaCheckError, TopicStats, topic_stats
from shopstream.lake_check import LakeCheckError
from shopstream.spark.ingest_guard import SinkBusy
from shopstream.spark.session import job_logger
from shopstream.spark.source_gaps import EventsLost

log = job_logger("stream")

DEFAULT_TRIGGER = "1 minute"
MAX_POLL_RECORDS = 10_000
# How long the broker may hold a fetch that finds no new records (Kafka's default: 500 ms).
# Each Kafka task of a micro-batch waited that long once, its CPU idle, presumably on its pooled
# consumer's read-ahead parked at the end of the topic. Spark's tasks read known offset ranges, so
# nothing waits for new records; a user's --kafka-option still wins. Measured: docs/benchmarks.md,
# "Settings and their measurements" (as are the other settings here).
FETCH_MAX_WAIT_MS = 20
TASKS_PER_CORE = 3  # the default minPartitions, per core of the session
NO_DATA_BATCHES = "spark.sql.streaming.noDataMicroBatches.enabled"
CHANGELOG_CHECKPOINTING = "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"
UNLOAD_ON_COMMIT = "spark.sql.streaming.stateStore.unloadOnCommit"
MIN_BATCHES_TO_RETAIN = "spark.sql.streaming.minBatchesToRetain"
# State versions (and offset/commit log entries) an availableNow query keeps: Spark's 100 are 100
# minutes of a 1-minute service but 100 days of daily runs, each version holding the state files
# of its day, so the state folder grew every run. Recovery needs the latest version only.
AVAILABLE_NOW_VERSIONS = 10


@dataclass
class StreamSettings:
    bootstrap: str
    topic: str = ORDERS_TOPIC
    checkpoint_dir: Path = field(default_factory=lambda: paths().ingest_checkpoints)
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
    # Go on past events Kafka deleted before this query read them (`check_source_continuity`),
    # recording the gap; without it such a run stops and says so. For availableNow runs only.
    accept_data_loss: bool = False


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
        # Lost offsets (retention, a re-created topic) stop the query instead of being skipped,
        # unless the run was told to go on past a gap it recorded (`check_source_continuity`).
        .option("failOnDataLoss", "false" if settings.accept_data_loss else "true")
        # Records per poll: the default 500 made each task poll thousands of times.
        .option("kafka.max.poll.records", str(MAX_POLL_RECORDS))
        .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
    )
    # More tasks than topic partitions (3 partitions on 2 cores left one core idle for a third
    # of every batch); Spark splits large offset ranges evenly. Not for a run that goes on past lost
    # events: split ranges put two concurrent tasks on one Kafka partition, and Spark's seek to a
    # range's earliest offset still held (failOnDataLoss off) then raced the other task for a pooled
    # consumer ("KafkaConsumer is not safe for multi-threaded access": twice in CI, session 21).
    min_partitions = settings.min_partitions
    if min_partitions is None:
        min_partitions = TASKS_PER_CORE * spark.sparkContext.defaultParallelism
    if min_partitions and not settings.accept_data_loss:
        reader = reader.option("minPartitions", str(min_partitions))
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    for key, value in java_client_options(settings.kafka_options).items():
        reader = reader.option(f"kafka.{key}", value)
    return reader.load()


def start_triggered(writer, spark, settings: StreamSettings, drained_by_data: bool = False,
                    table: str | None = None):  # fmt: skip
    """Starts `writer` (into `table`, if given) with the settings' trigger and the session settings
    of that kind of run (`run_conf`), for this query alone: a query reads them when it starts (its
    session is cloned then), and the session is left as it was."""
    retained = int(spark.conf.get(MIN_BATCHES_TO_RETAIN, "100"))
    with session_conf(spark, run_conf(settings, drained_by_data, retained)):
        triggered = trigger_writer(writer, settings)
        return triggered.toTable(table) if table else triggered.start()


def run_conf(settings: StreamSettings, drained_by_data: bool = False, retained: int = 100) -> dict[str, str]:
    """Settings for an availableNow run: a process that ends when the run does, long before
    Spark's state maintenance (every 60 s, in the background) would first upload a snapshot of
    the state or delete old files. Each commit then writes a snapshot (no changelog) and runs that
    maintenance itself, so the next run loads the last snapshot instead of replaying every
    changelog ever written (a cost that grows with every run).
    `drained_by_data`: the run also ends with its last data batch, without the batch Spark adds
    when the watermark moved; for a query whose output never waits for the watermark (the
    ingest's de-dup only evicts keys with it, which the next run's first batch does as well) that
    batch is a fixed cost of every run (and a scan of the whole state).
    It keeps at most AVAILABLE_NOW_VERSIONS versions of its state (fewer if the session's
    `retained` says so). A continuous query keeps the spark-defaults (changelogs, background
    maintenance, 100 versions)."""
    if not settings.available_now:
        return {}
    conf = {CHANGELOG_CHECKPOINTING: "false", UNLOAD_ON_COMMIT: "true",
            MIN_BATCHES_TO_RETAIN: str(min(retained, AVAILABLE_NOW_VERSIONS))}  # fmt: skip
    if drained_by_data:
        conf[NO_DATA_BATCHES] = "false"
    return conf


@contextmanager
def session_conf(spark, conf: dict[str, str]) -> Iterator[None]:
    """`conf` set in the session for the duration, then every key as it was."""
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def trigger_writer(writer, settings: StreamSettings):
    """`writer` with the settings' trigger: drain what is there (availableNow) or every interval."""
    if settings.available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=settings.trigger)


class SinkCheckpointMismatch(RuntimeError):
    """The output folder and the checkpoint given to a streaming query are not each other's."""


def holds_batches(log_dir: Path) -> bool:
    return log_dir.is_dir() and any(p.name.split(".")[0].isdigit() for p in log_dir.iterdir())


def check_table_matches_checkpoint(spark, table: str, checkpoint: Path) -> bool:
    """Iceberg's streaming sink skips only the epochs its own query committed: a new checkpoint
    against a table that holds commits would read the topics from their start again and commit every
    record a second time. Refuse instead. Returns whether the checkpoint is new (no batch yet)."""
    new = not holds_batches(checkpoint / "offsets")
    rows_committed = f"SELECT 1 FROM {table}.snapshots WHERE CAST(summary['total-records'] AS BIGINT) > 0"
    if new and spark.sql(f"{rows_committed} LIMIT 1").take(1):
        raise SinkCheckpointMismatch(
            f"{table} already holds committed rows but the checkpoint {checkpoint} is new: they belong "
            "together. Restore the table's checkpoint, or drop the table to start over (`make clean` "
            "clears both for the local defaults)."
        )
    return new


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
    parser.add_argument(
        "--accept-data-loss", action=argparse.BooleanOptionalAction, default=False,
        help="go on past events Kafka deleted before this query read them, recording the gap",
    )  # fmt: skip
    return parser


def source_settings(args: argparse.Namespace, topic: str, **extra) -> StreamSettings:
    """StreamSettings from the options of `stream_arg_parser` (folders are applied apart)."""
    if args.accept_data_loss and not args.available_now:
        # Spark's failOnDataLoss is per query: a continuous one would skip later losses unrecorded.
        raise SystemExit("--accept-data-loss goes with --available-now: drain once past the gap, "
                         "then start the continuous query again")  # fmt: skip
    return StreamSettings(
        bootstrap=args.bootstrap or kafka_bootstrap(),
        topic=topic,
        available_now=args.available_now,
        trigger=args.trigger,
        kafka_options={**kafka_security_options(), **dict(kv.split("=", 1) for kv in args.kafka_option)},
        accept_data_loss=args.accept_data_loss,
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
    """Runs a streaming job from its command line; a missing broker or topic, or a catalog or
    object store out of reach, exits 2 with the message saying which."""
    try:
        job(parse(argv))
    except (KafkaCheckError, LakeCheckError, SinkCheckpointMismatch, SinkBusy, EventsLost, TimeoutError) as e:
        job_log.error("%s", e)
        return 2
    return 0
