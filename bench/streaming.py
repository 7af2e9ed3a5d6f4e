"""Streaming ingest: N events already in Kafka -> stream_consumer --available-now -> the raw table
(valid and quarantined rows by date), next to the same query into Spark's Parquet file sink (the
raw layer before it was a table) and Kafka's ConsumerPerformance reading the same topic.

    .venv/bin/python -m bench.streaming [--count 1000000]

Starts its own broker on free ports in a temp dir; times the Spark session start (JVM) apart
from the streaming runs (query start to termination). The two sinks take turns, ROUNDS each, every
run with a checkpoint (and a table) of its own; the best run of each counts.
"""

from __future__ import annotations

import argparse
import time

from bench.common import (
    bench_lake,
    consumer_performance,
    filled_topic,
    fresh_topic,
    stream_settings,
    temp_home,
)
from shopstream.config import INGEST_QUERY, VERDICT
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.spark.session import get_spark
from shopstream.spark.stream_consumer import COUNTED, ingest_rows, start_queries
from shopstream.spark.stream_progress import run_queries
from shopstream.spark.streaming import StreamSettings, start_triggered

ROUNDS = 2


def iceberg_run(settings: StreamSettings, spark) -> dict[str, int]:
    """The product's ingest query, into the raw table."""
    return run_queries(start_queries(spark, settings), COUNTED)


def parquet_run(settings: StreamSettings, spark) -> dict[str, int]:
    """The same rows into a Parquet file sink partitioned by verdict and date."""
    checkpoint = settings.checkpoint_dir / INGEST_QUERY
    sink = settings.checkpoint_dir.parent / "parquet"
    rows = ingest_rows(spark, settings)
    writer = (
        rows.writeStream.queryName(INGEST_QUERY).format("parquet").partitionBy(VERDICT, "date")
        .option("path", str(sink)).option("checkpointLocation", str(checkpoint)).outputMode("append")
    )  # fmt: skip
    return run_queries([start_triggered(writer, spark, settings, drained_by_data=True)], COUNTED)


SINKS = {"parquet": parquet_run, "iceberg": iceberg_run}


def best_seconds(count: int, kafka: LocalBroker, topic: str, spark) -> dict[str, float]:
    """Per sink, the fastest of ROUNDS drains of `topic`, each starting over. The sinks take
    turns: a later run finds the JVM warmer, and neither sink gets all the warm runs."""
    seconds: dict[str, list[float]] = {name: [] for name in SINKS}
    for _ in range(ROUNDS):
        for name, sink in SINKS.items():
            with temp_home() as home:  # a checkpoint, and a namespace for the table, of this run's own
                started = time.monotonic()
                written = sink(stream_settings(home, kafka, topic), spark)
                seconds[name].append(time.monotonic() - started)
            assert written["raw"] + written["quarantine"] == count, (name, written)
    return {name: min(runs) for name, runs in seconds.items()}


def measure(count: int, spark=None, broker: LocalBroker | None = None) -> dict:
    started = time.monotonic()
    spark = spark or get_spark("shopstream-bench", {"spark.ui.enabled": "false"}, comet=False, lake=True)
    jvm_seconds = time.monotonic() - started
    topic = fresh_topic()
    with (
        temp_home() as home,
        filled_topic(home, count, topic, "--malformed-ratio", "0.01", shared=broker) as kafka,
    ):
        reference = consumer_performance(kafka, topic, count)
        best = best_seconds(count, kafka, topic, spark)
    seconds, parquet_seconds = best["iceberg"], best["parquet"]
    return {
        "count": count,
        "session_seconds": jvm_seconds,
        "seconds": seconds,
        "per_s": count / seconds,
        "parquet_seconds": parquet_seconds,
        "parquet_per_s": count / parquet_seconds,
        "reference_per_s": reference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    with temp_home() as home, bench_lake(home):
        r = measure(parser.parse_args().count)
    print(f"spark session start : {r['session_seconds']:.1f} s")
    print(f"streaming ingest    : {r['per_s']:,.0f} events/s into the raw table ({r['seconds']:.1f} s)")
    print(f"Parquet file sink   : {r['parquet_per_s']:,.0f} events/s ({r['parquet_seconds']:.1f} s)")
    print(f"ConsumerPerformance : {r['reference_per_s']:,.0f} messages/s")


if __name__ == "__main__":
    main()
