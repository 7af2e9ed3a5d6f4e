"""Streaming ingest throughput: N events already in Kafka -> stream_consumer --available-now ->
validated raw Parquet by date (+ quarantine).

    .venv/bin/python -m bench.streaming [--count 1000000]

Starts its own broker on free ports in a temp dir, fills a fresh topic with order-sim, then times
Spark session start (JVM) and the streaming run separately.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import filled_topic, stream_settings
from shopstream.spark.session import get_spark
from shopstream.spark.stream_consumer import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with filled_topic(home, args.count, "--malformed-ratio", "0.01") as broker:
            started = time.monotonic()
            spark = get_spark("shopstream-bench-stream", {"spark.ui.enabled": "false"})
            jvm_seconds = time.monotonic() - started
            started = time.monotonic()
            written = run(stream_settings(home, broker), spark)
            seconds = time.monotonic() - started
            spark.stop()
    assert sum(written.values()) == args.count, written
    print(f"spark session start: {jvm_seconds:.1f} s")
    print(
        f"streaming ingest   : {args.count / seconds:,.0f} events/s ({seconds:.1f} s for {args.count:,}; "
        f"raw {written['raw']:,}, quarantine {written['quarantine']:,})"
    )


if __name__ == "__main__":
    main()
