"""Latency: order-sim producing live at a fixed rate while stream_consumer runs with a processing
-time trigger; per row, the time its micro-batch was committed to the raw table minus its Kafka
record timestamp, as p50 and p99.

    .venv/bin/python -m bench.latency [--rate 1000] [--seconds 300] [--trigger "1 minute"]

The commit time of a row is the time of the table's snapshot that added its data file (the
snapshot id each manifest entry keeps), i.e. when the row became visible to readers. The catalog
must be set up (`bench_lake`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import duckdb

from bench.common import bench_broker, bench_lake, fresh_topic, stream_settings, temp_home
from shopstream import raw_table
from shopstream.config import order_sim_binary
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.kafka_admin import KafkaCheckError, topic_stats
from shopstream.spark.session import get_spark
from shopstream.spark.stream_consumer import start_queries

DELETED = 2  # a manifest entry's status: the file left the table


def commit_times() -> dict[str, float]:
    """Data file -> epoch seconds of the raw table's snapshot that added it."""
    table = raw_table.load()
    snapshots = {s.snapshot_id: s.timestamp_ms / 1000 for s in table.snapshots()}
    entries = table.inspect.entries().to_pylist()
    return {e["data_file"]["file_path"].removeprefix("file://"): snapshots[e["snapshot_id"]]
            for e in entries if e["status"] != DELETED}  # fmt: skip


def latencies() -> list[float]:
    result = []
    for file, committed in commit_times().items():
        stamps = duckdb.sql(f"SELECT epoch_ms(kafka_timestamp) FROM read_parquet('{file}')").fetchall()
        result.extend(committed - ms / 1000 for (ms,) in stamps)
    return sorted(result)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def wait_for_topic(bootstrap: str, topic: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if topic_stats(topic, bootstrap).messages > 0:
                return
        except KafkaCheckError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def measure(rate: int, seconds: int, trigger: str, spark=None, broker: LocalBroker | None = None) -> dict:
    spark = spark or get_spark("shopstream-bench", {"spark.ui.enabled": "false"}, comet=False, lake=True)
    count = rate * seconds
    topic = fresh_topic()
    with temp_home() as home, bench_broker(home, broker) as broker:
        settings = stream_settings(home, broker, topic, available_now=False, trigger=trigger)
        producer = subprocess.Popen(
            [str(order_sim_binary()), "--brokers", broker.bootstrap, "--topic", topic, "--no-updates",
             "--rate", str(rate), "--count", str(count), "--start", "now"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_topic(broker.bootstrap, topic)
        queries = start_queries(spark, settings)
        try:
            assert producer.wait(timeout=seconds + 120) == 0, "order-sim failed"
            [ingest] = queries
            deadline = time.monotonic() + 3 * 60
            while time.monotonic() < deadline:  # until the last events are committed
                done = sum(
                    p.get("numInputRows", 0) for p in map(json.loads, (x.json for x in ingest.recentProgress))
                )
                if done >= count and not any(q.status["isTriggerActive"] for q in queries):
                    break
                time.sleep(1)
        finally:
            for query in queries:
                query.stop()
        values = latencies()
    assert len(values) == count, (len(values), count)
    return {"rate": rate, "seconds": seconds, "trigger": trigger, "rows": len(values),
            "p50": percentile(values, 50), "p99": percentile(values, 99)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--trigger", default="1 minute")
    args = parser.parse_args()
    with temp_home() as home, bench_lake(home):
        r = measure(args.rate, args.seconds, args.trigger)
    print(f"{r['rows']:,} rows at {r['rate']}/s, trigger {r['trigger']}: "
          f"p50 {r['p50']:.1f} s, p99 {r['p99']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
