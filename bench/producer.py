"""Producer throughput: order-sim against a real local broker, plus generation alone.

    .venv/bin/python -m bench.producer [--count 1000000]

Starts its own broker on free ports in a temp dir (never the user's), produces to a fresh
3-partition topic with the production settings (acks=all, idempotent, lz4, linger 5 ms), and
prints events/s. Results are recorded by hand in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from shopstream.config import order_sim_binary
from shopstream.kafka_admin import topic_stats
from shopstream.kafka_broker import LocalBroker, free_port


def order_sim(*args: str) -> dict:
    result = subprocess.run([str(order_sim_binary()), *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()

    dry = order_sim("--dry-run", "--no-updates", "--count", str(args.count), "--seed", "1")
    print(f"generate+serialise : {dry['events_per_second']:>12,.0f} events/s ({dry['seconds']} s)")

    with tempfile.TemporaryDirectory() as home:
        broker = LocalBroker(home=Path(home), port=free_port(), controller_port=free_port())
        started = time.monotonic()
        broker.start()
        print(f"broker start       : {time.monotonic() - started:>12.1f} s")
        try:
            run = order_sim(
                "--brokers", broker.bootstrap, "--topic", "bench", "--no-updates", "--count", str(args.count)
            )
            stats = topic_stats("bench", broker.bootstrap)
        finally:
            broker.stop()
    assert stats.messages == args.count == run["delivered"], (stats, run)
    print(
        f"produce to Kafka   : {run['events_per_second']:>12,.0f} events/s "
        f"({run['seconds']} s, {run['bytes'] / args.count:.0f} B/event, {stats.messages:,} in topic)"
    )


if __name__ == "__main__":
    main()
