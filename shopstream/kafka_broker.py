"""Start and stop a real single-node Apache Kafka broker (KRaft: broker + controller) on loopback.

The broker runs from the jars that `make setup` resolved from Maven Central into
`.state/jars/kafka`; its data, log and pid file live in one folder of the ignored state dir.

    python -m shopstream.kafka_broker up      # start (idempotent) and wait until ready
    python -m shopstream.kafka_broker down    # stop what `up` started
    python -m shopstream.kafka_broker status
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from shopstream.config import (
    DEFAULT_KAFKA_BOOTSTRAP,
    DEFAULT_KAFKA_CONTROLLER_PORT,
    REPO_ROOT,
    paths,
)

LOG4J_CONFIG = REPO_ROOT / "config" / "kafka" / "log4j2.properties"
READY_TIMEOUT_S = 60.0


class BrokerError(RuntimeError):
    """The broker could not be started, or is not usable; the message says what to do."""


def _server_properties(
    node_id: int, port: int, controller_port: int, log_dir: Path, voters: str, replication: int
) -> str:
    # Internal topics and new topics replicate to `replication` nodes (1 on a single node); with
    # 3 nodes an acknowledged write is on at least 2 (min.insync.replicas). Topics are never
    # auto-created, so a missing topic is reported instead of silently appearing empty.
    min_isr = 2 if replication >= 3 else 1
    return f"""\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={log_dir}
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
log.retention.hours=168
"""


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        # Reap it if it is our own exited child: a zombie still answers kill(pid, 0).
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: started by an earlier `broker up`
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LocalBroker:
    """One KRaft node whose files all live under `home`."""

    home: Path
    port: int = int(DEFAULT_KAFKA_BOOTSTRAP.rsplit(":", 1)[1])
    controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT
    jars: Path | None = None
    node_id: int = 1
    heap: str = "768m"
    # For a node of a cluster (see shopstream.kafka_cluster): the quorum's voters, the cluster's
    # id (every node is formatted with the same one) and the replication of its topics.
    voters: str | None = None
    cluster_id: str | None = None
    replication: int = 1

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
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self._jars()}/*",
            main_class,
            *args,
        ]

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _format_storage(self) -> None:
        """Formats KRaft storage once; an already formatted data dir is kept (and its topics)."""
        self.home.mkdir(parents=True, exist_ok=True)
        voters = self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}"
        self.properties_file.write_text(
            _server_properties(
                self.node_id, self.port, self.controller_port, self.data_dir, voters, self.replication
            )
        )
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or _kraft_cluster_id()
        result = subprocess.run(
            self._java(
                # `--cluster-id=` form: a random id may start with "-" and would read as a flag.
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                f"--config={self.properties_file}",
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
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties_file), heap=self.heap),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the shell that started it; stopped by `down`
            )
        self.pid_file.write_text(str(process.pid))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Waits until the broker answers a metadata request, or fails saying where to look."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise BrokerError(f"Kafka broker exited during start-up; see {self.log_file}")
            if port_is_open(self.port):
                try:
                    AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=5)
                    return
                except Exception:  # noqa: BLE001 - not ready yet; retried until the deadline
                    pass
            time.sleep(0.5)
        raise BrokerError(
            f"Kafka broker at {self.bootstrap} not ready after {timeout:.0f} s; see {self.log_file}"
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops the broker gracefully (SIGTERM), then forcibly. Returns whether one ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash would: for reliability drills."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)


def _kraft_cluster_id() -> str:
    # What `StorageTool random-uuid` prints: a random UUID, URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        broker = default_broker()
        if args.action == "up":
            started = time.monotonic()
            broker.start()
            print(
                f"Kafka broker ready at {broker.bootstrap} ({time.monotonic() - started:.1f} s); "
                f"log: {broker.log_file}"
            )
        elif args.action == "down":
            stopped = broker.stop()
            print("Kafka broker stopped" if stopped else "no Kafka broker was running")
        else:
            pid = broker.pid()
            print(f"Kafka broker running, pid {pid}, at {broker.bootstrap}" if pid else "not running")
            return 0 if pid else 3
    except BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
