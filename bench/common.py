"""What the benchmarks share: a throwaway broker with a topic filled by order-sim."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shopstream.config import order_sim_binary
from shopstream.kafka_broker import LocalBroker, free_port
from shopstream.spark.stream_consumer import StreamSettings

TOPIC = "bench"


@contextmanager
def filled_topic(home: Path, count: int, *order_sim_args: str) -> Iterator[LocalBroker]:
    """A broker on free ports under `home` (never the user's) whose TOPIC holds `count` events."""
    broker = LocalBroker(home=home / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        subprocess.run(
            [str(order_sim_binary()), "--brokers", broker.bootstrap, "--topic", TOPIC,
             "--count", str(count), "--seed", "1", "--no-updates", *order_sim_args],
            check=True, capture_output=True,
        )  # fmt: skip
        yield broker
    finally:
        broker.stop()


def stream_settings(home: Path, broker: LocalBroker, **overrides) -> StreamSettings:
    """The streaming job drained (--available-now) into folders under `home`."""
    return StreamSettings(
        bootstrap=broker.bootstrap, topic=TOPIC, raw_dir=home / "raw", quarantine_dir=home / "quarantine",
        checkpoint_dir=home / "checkpoints", available_now=True, **overrides,
    )  # fmt: skip
