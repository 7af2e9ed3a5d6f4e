"""Start and stop a real single-node Apache Kafka broker (KRaft: broker + controller) on loopback.

The broker runs from the jars that `make setup` resolved from Maven Central into
`.state/jars/kafka`; its data, log and pid file live in one folder of the ignored state dir.

    python -m shopstream.devstack.kafka_broker up      # start (idempotent) and wait until ready
    python -m shopstream.devstack.kafka_broker down    # stop what `up` started
    python -m shopstream.devstack.kafka_broker status
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shopstream.config import (
    DEFAULT_KAFKA_BOOTSTRAP,
    DEFAULT_KAFKA_CONTROLLER_PORT,
    REPO_ROOT,
    extra_jvm_options,
    paths,
)
from shopstream.devstack.kafka_security import Credentials, listeners
from shopstream.devstack.processes import ManagedProcess, free_port, port_is_open, service_main

LOG4J_CONFIG = REPO_ROOT / "config" / "kafka" / "log4j2.properties"
READY_TIMEOUT_S = 60.0


class BrokerError(RuntimeError):
    """The broker could not be started, or is not usable; the message says what to do."""


def _server_properties(node_id: int, listeners: str, log_dir: Path, voters: str, replication: int) -> str:
    # Internal topics and new topics replicate to `replication` nodes (1 on a single node); with
    # 3 nodes an acknowledged write is on at least 2 (min.insync.replicas). Topics are never
    # auto-created, so a missing topic is reported instead of silently appearing empty. Records are
    # kept 14 days: twice the lateness horizon, so a week without any ingest run loses nothing
    # (an ingest that finds events deleted unread stops and names them: `source_gaps`).
    min_isr = 2 if replication >= 3 else 1
    return f"""\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
{listeners}log.dirs={log_dir}
num.partitions=3
auto.create.topics.enable=false
default.replication.factor={replication}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replication}
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
log.retention.hours=336
"""


@dataclass
class LocalBroker:
    """One KRaft node whose files all live under `home`."""

    home: Path
    port: int = int(DEFAULT_KAFKA_BOOTSTRAP.rsplit(":", 1)[1])
    controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT
    jars: Path | None = None
    node_id: int = 1
    heap: str = "768m"
    # For a node of a cluster (see shopstream.devstack.kafka_cluster): the quorum's voters, the cluster's
    # id (every node is formatted with the same one) and the replication of its topics.
    voters: str | None = None
    cluster_id: str | None = None
    replication: int = 1
    # SASL/SCRAM users: with them the node requires a login and enforces ACLs
    # (see shopstream.devstack.kafka_security); without, it serves plaintext to anyone on loopback.
    credentials: Credentials | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    def _jars(self) -> Path:
        jars = self.jars or paths().kafka_jars
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"no Kafka jars in {jars}: run `make setup` first")
        return jars

    def _java(self, main_class: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            *extra_jvm_options(),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self._jars()}/*",
            main_class,
            *args,
        ]

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(self.pid_file, self.log_file)

    def pid(self) -> int | None:
        return self.process.pid()

    def _format_storage(self) -> None:
        """Formats KRaft storage once; an already formatted data dir is kept (and its topics)."""
        self.home.mkdir(parents=True, exist_ok=True)
        voters = self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}"
        listener_lines = (
            self.credentials.listener_properties(self.port, self.controller_port)
            if self.credentials
            else listeners("PLAINTEXT", self.port, self.controller_port, "PLAINTEXT")
        )
        self.properties_file.write_text(
            _server_properties(self.node_id, listener_lines, self.data_dir, voters, self.replication)
        )
        self.properties_file.chmod(0o600)  # it holds the admin password when secured
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or kraft_cluster_id()
        result = subprocess.run(
            self._java(
                # `--cluster-id=` form: a random id may start with "-" and would read as a flag.
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                f"--config={self.properties_file}",
                *(self.credentials.scram_format_args() if self.credentials else []),
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage in {self.data_dir} failed:\n{result.stderr}")

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Starts the broker unless ours already runs, then waits until it serves metadata."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Starts the node's process without waiting: the nodes of a cluster only become ready
        together, once a quorum of controllers runs."""
        if self.pid() is not None:
            return
        for p in (self.port, self.controller_port):
            if port_is_open(p):
                raise BrokerError(
                    f"port {p} on 127.0.0.1 is taken by another process; stop it or choose "
                    "other ports (SHOPSTREAM_KAFKA_BOOTSTRAP / SHOPSTREAM_KAFKA_CONTROLLER_PORT)"
                )
        self._format_storage()
        self.process.launch(self._java("kafka.Kafka", str(self.properties_file), heap=self.heap))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Waits until the broker answers a metadata request, or fails saying where to look."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise BrokerError(f"Kafka broker exited during start-up; {self._log_tail()}")
            if port_is_open(self.port):
                try:
                    AdminClient(self.client_config("admin")).list_topics(timeout=5)
                    return
                except Exception:  # noqa: BLE001 - not ready yet; retried until the deadline
                    pass
            time.sleep(0.5)
        raise BrokerError(
            f"Kafka broker at {self.bootstrap} not ready after {timeout:.0f} s; {self._log_tail()}"
        )

    def _log_tail(self, lines: int = 15) -> str:
        """Where the node's log is and its last lines: a CI run's output may be all there is."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return f"its log {self.log_file} ends:\n" + "\n".join(text.splitlines()[-lines:])

    def client_config(self, role: str = "admin") -> dict[str, str]:
        """librdkafka settings to reach this node as `role` (admin, producer, spark)."""
        login = self.credentials.client_settings(role) if self.credentials else {}
        return {"bootstrap.servers": self.bootstrap, **login}

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops the broker gracefully (SIGTERM), then forcibly. Returns whether one ran."""
        return self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: for reliability drills."""
        self.process.kill()

    # For `service_main`.
    name = "Kafka broker"

    def describe(self) -> str:
        return f"{self.bootstrap}, log {self.log_file}"

    def running(self) -> bool:
        return self.pid() is not None


def kraft_cluster_id() -> str:
    # What `StorageTool random-uuid` prints: a random UUID, URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@contextmanager
def throwaway_broker(home: Path, heap: str = "512m") -> Iterator[LocalBroker]:
    """A running broker on free loopback ports with its files under `home`, never the user's
    one; stopped on exit. For tests, drills and benchmarks."""
    broker = LocalBroker(home=home, port=free_port(), controller_port=free_port(), heap=heap)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def default_broker() -> LocalBroker:
    """The broker `make broker-up` manages, on the configured local ports."""
    bootstrap = os.environ.get("SHOPSTREAM_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    host, _, port = bootstrap.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or "," in bootstrap:
        raise BrokerError(
            f"SHOPSTREAM_KAFKA_BOOTSTRAP={bootstrap} is not a local address: the embedded broker "
            "only runs on 127.0.0.1; unset it to use the local broker"
        )
    controller = int(os.environ.get("SHOPSTREAM_KAFKA_CONTROLLER_PORT", DEFAULT_KAFKA_CONTROLLER_PORT))
    return LocalBroker(home=paths().broker_dir, port=int(port), controller_port=controller)


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, default_broker, (BrokerError,), argv)


if __name__ == "__main__":
    sys.exit(main())
