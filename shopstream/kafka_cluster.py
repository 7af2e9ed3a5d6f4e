"""A three-node Apache Kafka cluster on loopback (KRaft: every node a broker and a controller,
a quorum of three), from the same Maven jars as the single local broker.

    python -m shopstream.kafka_cluster up      # start (idempotent) and wait until all serve
    python -m shopstream.kafka_cluster down
    python -m shopstream.kafka_cluster status

Topics replicate to all three nodes with min.insync.replicas=2: an acknowledged write survives
the loss of any one node, and producing stops (instead of losing data) when two are down.
Ports: brokers SHOPSTREAM_CLUSTER_KAFKA_PORT (default 19092) and the next two, controllers
100 above them.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shopstream.config import paths
from shopstream.kafka_broker import READY_TIMEOUT_S, BrokerError, LocalBroker, _kraft_cluster_id
from shopstream.processes import service_main

NODES = 3
DEFAULT_FIRST_PORT = 19092


@dataclass
class LocalCluster:
    home: Path
    first_port: int = DEFAULT_FIRST_PORT
    nodes: int = NODES
    heap: str = "512m"
    brokers: list[LocalBroker] = field(init=False)

    def __post_init__(self) -> None:
        ports = [(self.first_port + i, self.first_port + 100 + i) for i in range(self.nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports))
        cluster_id = self._cluster_id()
        self.brokers = [
            LocalBroker(home=self.home / f"node{i + 1}", port=port, controller_port=controller, node_id=i + 1,
                        heap=self.heap, voters=voters, cluster_id=cluster_id, replication=self.nodes)
            for i, (port, controller) in enumerate(ports)
        ]  # fmt: skip

    def _cluster_id(self) -> str:
        """One id for all nodes, kept in the cluster's folder so that restarts reuse it."""
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            id_file.write_text(_kraft_cluster_id())
        return id_file.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Launches every node, then waits for each: none is ready before a quorum runs."""
        for broker in self.brokers:
            broker.launch()
        deadline = time.monotonic() + timeout
        for broker in self.brokers:
            broker.wait_ready(max(1.0, deadline - time.monotonic()))

    def stop(self) -> bool:
        return any([broker.stop() for broker in self.brokers])

    # For `service_main`.
    name = "Kafka cluster"

    def describe(self) -> str:
        up = [b.node_id for b in self.brokers if b.running()]
        return f"{self.bootstrap}, nodes running {up or 'none'} of {self.nodes}"

    def running(self) -> bool:
        return all(b.running() for b in self.brokers)


def default_cluster() -> LocalCluster:
    first = int(os.environ.get("SHOPSTREAM_CLUSTER_KAFKA_PORT", DEFAULT_FIRST_PORT))
    return LocalCluster(home=paths().state / "cluster" / "kafka", first_port=first)


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, default_cluster, (BrokerError,), argv)


if __name__ == "__main__":
    sys.exit(main())
