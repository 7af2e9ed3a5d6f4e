"""The continuous ingest service: `stream_consumer` with a processing-time trigger, run as a
managed background process (pid and log file in the state folder) like the local broker.

    python -m shopstream.devstack.ingest_service up      # make stream-up
    python -m shopstream.devstack.ingest_service status
    python -m shopstream.devstack.ingest_service down    # make stream-down

`SHOPSTREAM_STREAM_TRIGGER` sets the micro-batch interval (default 1m). While it runs, the DAG's
`run_streaming_job` starts no query of its own: it waits for this one to commit what the topic
held (see `shopstream.spark.ingest_guard`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from shopstream.config import ORDERS_TOPIC, paths
from shopstream.devstack.processes import ManagedProcess, service_main
from shopstream.spark.ingest_guard import LIVE, WriterLock
from shopstream.spark.streaming import DEFAULT_TRIGGER

READY_TIMEOUT = 120.0


class IngestServiceError(RuntimeError):
    """The service did not come up; the message says why and where its log is."""


class IngestService:
    name = "ingest service"

    def __init__(
        self, home: Path | None = None, trigger: str | None = None, topic: str = ORDERS_TOPIC
    ) -> None:
        self.home = home or paths().state / "ingest"
        self.trigger = trigger or os.environ.get("SHOPSTREAM_STREAM_TRIGGER", DEFAULT_TRIGGER)
        self.topic = topic
        self.process = ManagedProcess(self.home / "stream.pid", self.home / "stream.log")
        self.lock = WriterLock(paths().checkpoints / "stream_consumer")

    def start(self) -> None:
        """Starts the live query and returns once it holds the sink's writer lock."""
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "shopstream.spark.stream_consumer", "--trigger", self.trigger,
                   "--topic", self.topic]  # fmt: skip
        self.process.launch(command, env=dict(os.environ))
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.running():
            if self.process.pid() is None or time.monotonic() > deadline:
                tail = self.process.log_file.read_text()[-2000:] if self.process.log_file.exists() else ""
                raise IngestServiceError(
                    f"the ingest query did not start; its log {self.process.log_file}:\n{tail}"
                )
            time.sleep(0.5)

    def stop(self) -> bool:
        # SIGTERM: Spark stops the query between micro-batches; the checkpoint stays consistent.
        return self.process.stop(timeout=60)

    def running(self) -> bool:
        pid, holder = self.process.pid(), self.lock.holder()
        return pid is not None and holder is not None and holder.pid == pid and holder.mode == LIVE

    def describe(self) -> str:
        holder = self.lock.holder()
        who = holder.describe() if self.running() and holder else "not running"
        return f"{who}; trigger {self.trigger}; log {self.process.log_file}"


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, IngestService, (IngestServiceError,), argv)


if __name__ == "__main__":
    sys.exit(main())
