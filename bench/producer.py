"""Producer: order-sim against a real local broker next to Kafka's ProducerPerformance, plus
generation alone and order-sim's peak memory.

    .venv/bin/python -m bench.producer [--count 2000000]

Starts its own broker on free ports in a temp dir (never the user's); both producers write a
fresh 3-partition topic with the same settings (acks=all, idempotent, lz4, linger 5 ms) and the
same record size (order-sim's mean).
"""

from __future__ import annotations

import argparse

from bench.common import bench_broker, fresh_topic, order_sim, producer_performance, temp_home
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.kafka_admin import topic_stats

GENERATION_RUNS = 3


def generation_rate(count: int) -> float:
    """Events/s of `--dry-run`, best of GENERATION_RUNS: one run of 2M events lasts ≈ 0.6 s, so
    whatever else the machine does in that moment moves it (2.8 to 3.5M/s seen on an idle machine
    with a started JVM beside it)."""
    runs = (order_sim("--dry-run", "--no-updates", "--count", str(count), "--seed", "1")
            for _ in range(GENERATION_RUNS))  # fmt: skip
    return max(run["events_per_second"] for run in runs)


def measure(count: int, broker: LocalBroker | None = None) -> dict:
    generate_per_s = generation_rate(count)
    topic = fresh_topic()
    with temp_home() as home, bench_broker(home, broker) as broker:
        rss_file = home / "order-sim.rss"
        run = order_sim("--brokers", broker.bootstrap, "--topic", topic, "--no-updates", "--partitions", "3",
                        "--count", str(count), "--seed", "1", max_rss_file=rss_file)  # fmt: skip
        stats = topic_stats(topic, broker.bootstrap)
        assert stats.messages == count == run["delivered"], (stats, run)
        record_size = round(run["bytes"] / count)
        reference = producer_performance(broker, count, record_size)
        max_rss_mb = int(rss_file.read_text().split()[-1]) / 1024
    return {
        "count": count,
        "generate_per_s": generate_per_s,
        "produce_per_s": run["events_per_second"],
        "produce_seconds": run["seconds"],
        "record_size": record_size,
        "reference_per_s": reference,
        "max_rss_mb": max_rss_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=2_000_000)
    result = measure(parser.parse_args().count)
    print(f"generate+serialise  : {result['generate_per_s']:>12,.0f} events/s")
    print(
        f"order-sim -> Kafka  : {result['produce_per_s']:>12,.0f} events/s ({result['record_size']} B/event)"
    )
    print(f"ProducerPerformance : {result['reference_per_s']:>12,.0f} records/s")
    print(f"order-sim peak RSS  : {result['max_rss_mb']:>12.1f} MB")


if __name__ == "__main__":
    main()
