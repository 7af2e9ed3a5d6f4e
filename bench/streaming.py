"""Streaming ingest: N events already in Kafka -> stream_consumer --available-now -> the raw table
(valid and quarantined rows by date), next to Kafka's ConsumerPerformance reading the same topic.

    .venv/bin/python -m bench.streaming [--count 1000000]

Starts its own broker on free ports in a temp dir; times the Spark session start (JVM) apart
from the streaming run (query start to termination).
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
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.spark.session import get_spark
from shopstream.spark.stream_consumer import run


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
        started = time.monotonic()
        written = run(stream_settings(home, kafka, topic), spark)
        seconds = time.monotonic() - started
    assert sum(written.values()) == count, written
    return {
        "count": count,
        "session_seconds": jvm_seconds,
        "seconds": seconds,
        "per_s": count / seconds,
        "reference_per_s": reference,
        **written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    with temp_home() as home, bench_lake(home):
        r = measure(parser.parse_args().count)
    print(f"spark session start : {r['session_seconds']:.1f} s")
    print(f"streaming ingest    : {r['per_s']:,.0f} events/s ({r['seconds']:.1f} s; raw {r['raw']:,}, "
          f"quarantine {r['quarantine']:,})")  # fmt: skip
    print(f"ConsumerPerformance : {r['reference_per_s']:,.0f} messages/s")


if __name__ == "__main__":
    main()
