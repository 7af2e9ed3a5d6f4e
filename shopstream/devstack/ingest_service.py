"""The continuous streaming services, each a Spark job with a processing-time trigger run as a
managed background process (pid and log file in the state folder) like the local broker:

    python -m shopstream.devstack.ingest_service up      # make stream-up: stream_consumer
    python -m shopstream.devstack.ingest_service status
    python -m shopstream.devstack.ingest_service down    # make stream-down
    python -m shopstream.devstack.ingest_service up --live   # make live-up: live_sales

`SHOPSTREAM_STREAM_TRIGGER` sets the ingest's micro-batch interval (default 1m),
`SHOPSTREAM_LIVE_TRIGGER` the live aggregation's (default 5s). While the ingest service runs, the
DAG's `run_streaming_job` starts no query of its own: it waits for this one to commit what the
topic held (see `shopstream.spark.ingest_guard`).
"""

from __future__ import annotations

import os
import sys
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
    module = "shopstream.spark.stream_consumer"

    def __init__(
        self, home: Path | None = None, trigger: str | None = None, topic: str = ORDERS_TOPIC
    ) -> None:
        self.home = home or paths().state / "ingest"
        self.trigger = trigger or os.environ.get("SHOPSTREAM_STREAM_TRIGGER", DEFAULT_TRIGGER)
        self.topic = topic
        self.process = ManagedProcess(self.home / "stream.pid", self.home / "stream.log")
        self.lock = WriterLock(paths().ingest_checkpoints)

    def start(self) -> None:
        """Starts the live query and returns once it holds the sink's writer lock."""
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", self.module, "--trigger", self.trigger, "--topic", self.topic]
        self.process.launch(command, env=dict(os.environ))
        self.process.wait_until(self.running, IngestServiceError, f"the {self.name}", READY_TIMEOUT)

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


class LiveSalesService(IngestService):
    """The live aggregation (`shopstream.spark.live_sales`) into the dashboard's store."""

    name = "live aggregation"
    module = "shopstream.spark.live_sales"

    def __init__(self, trigger: str | None = None, topic: str = ORDERS_TOPIC) -> None:
        from shopstream.spark.live_sales import LIVE_TRIGGER

        super().__init__(
            paths().state / "live", trigger or os.environ.get("SHOPSTREAM_LIVE_TRIGGER", LIVE_TRIGGER), topic
        )
        self.lock = WriterLock(paths().live_checkpoints)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    live = "--live" in argv
    service = LiveSalesService if live else IngestService
    return service_main(__doc__, service, (IngestServiceError,), [a for a in argv if a != "--live"])


if __name__ == "__main__":
    sys.exit(main())
