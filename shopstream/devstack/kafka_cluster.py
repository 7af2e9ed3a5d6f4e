"""A three-node Apache Kafka cluster on loopback (KRaft: every node a broker and a controller,
a quorum of three), from the same Maven jars as the single local broker.

    python -m shopstream.devstack.kafka_cluster up      # start (idempotent) and wait until all serve
    python -m shopstream.devstack.kafka_cluster down
    python -m shopstream.devstack.kafka_cluster status
    python -m shopstream.devstack.kafka_cluster client-config producer   # JSON for SHOPSTREAM_KAFKA_CONFIG

Topics replicate to all three nodes with min.insync.replicas=2: an acknowledged write survives
the loss of any one node, and producing stops (instead of losing data) when two are down.
Clients log in with SASL/SCRAM and ACLs apply: `up` creates the pipeline's topics and lets the
producer only write them and the Spark jobs only read them (see shopstream.devstack.kafka_security).
Ports: brokers SHOPSTREAM_CLUSTER_KAFKA_PORT (default 19092) and the next two, controllers
100 above them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shopstream.config import ORDERS_TOPIC, SPARK_CLIENT_FILE, UPDATES_TOPIC, paths
from shopstream.devstack.kafka_broker import READY_TIMEOUT_S, BrokerError, LocalBroker, kraft_cluster_id
from shopstream.devstack.kafka_security import CREDENTIALS_FILE, ROLES, Credentials, grant_pipeline_acls
from shopstream.devstack.processes import service_main, stop_at_once

NODES = 3
DEFAULT_FIRST_PORT = 19092
PIPELINE_TOPICS = [ORDERS_TOPIC, UPDATES_TOPIC]
PARTITIONS = 3
CONTROLLER_PORT_OFFSET = 100
# A cluster's ports relative to its first: each node's listener, then its controller's.
PORT_OFFSETS = [*range(NODES), *(CONTROLLER_PORT_OFFSET + i for i in range(NODES))]


@dataclass
class LocalCluster:
    home: Path
    first_port: int = DEFAULT_FIRST_PORT
    nodes: int = NODES
    heap: str = "512m"
    brokers: list[LocalBroker] = field(init=False)
    credentials: Credentials = field(init=False)

    def __post_init__(self) -> None:
        first = self.first_port
        ports = [(first + i, first + CONTROLLER_PORT_OFFSET + i) for i in range(self.nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports))
        cluster_id = self._cluster_id()
        self.credentials = Credentials.load_or_create(self.home / CREDENTIALS_FILE)
        # The Spark jobs' login, where the cluster profile's configuration looks for it.
        self.credentials.write_client_settings("spark", self.home / SPARK_CLIENT_FILE)
        self.brokers = [
            LocalBroker(home=self.home / f"node{i + 1}", port=port, controller_port=controller, node_id=i + 1,
                        heap=self.heap, voters=voters, cluster_id=cluster_id, replication=self.nodes,
                        credentials=self.credentials)
            for i, (port, controller) in enumerate(ports)
        ]  # fmt: skip

    def _cluster_id(self) -> str:
        """One id for all nodes, kept in the cluster's folder so that restarts reuse it."""
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            id_file.write_text(kraft_cluster_id())
        return id_file.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def client_config(self, role: str) -> dict[str, str]:
        """librdkafka settings for `role` (admin, producer, spark): all nodes and its login."""
        return {"bootstrap.servers": self.bootstrap, **self.credentials.client_settings(role)}

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Launches every node, waits for each (none is ready before a quorum runs), then
        provisions the pipeline's topics."""
        for broker in self.brokers:
            broker.launch()
        deadline = time.monotonic() + timeout
        for broker in self.brokers:
            broker.wait_ready(max(1.0, deadline - time.monotonic()))
        self.provision(PIPELINE_TOPICS)

    def provision(self, topics: list[str], timeout: float = 30.0) -> None:
        """Creates `topics` as admin (3 partitions, replicated to every node) unless they exist,
        and grants the producer and the Spark principal their ACLs on them. Idempotent."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin_config = self.client_config("admin")
        admin = AdminClient(admin_config)
        existing = admin.list_topics(timeout=timeout).topics
        missing = [NewTopic(t, PARTITIONS, self.nodes) for t in topics if t not in existing]
        for future in admin.create_topics(missing, request_timeout=timeout).values() if missing else []:
            future.result()
        grant_pipeline_acls(admin_config, topics, timeout)
        self.wait_until_granted(topics, timeout)

    def wait_until_granted(self, topics: list[str], timeout: float = 30.0) -> None:
        """Waits until every node lets the producer describe `topics`: KRaft brokers apply new
        topics and ACLs from the metadata log each at its own pace, and a client sent to a node
        that has not yet would be refused (seen as a flaky TopicAuthorizationFailed)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        for broker in self.brokers:
            # The producer's login, sent to this node alone.
            client = AdminClient({**self.client_config("producer"), "bootstrap.servers": broker.bootstrap})
            while True:
                found = client.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
                if all(t in found and found[t].error is None and found[t].partitions for t in topics):
                    break
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"{broker.bootstrap} did not grant the producer {topics} within {timeout} s"
                    )
                time.sleep(0.2)

    def stop(self) -> bool:
        """Stops every node at once: one after the other, the last node waits for a controller
        quorum that is gone until its stop times out (39 s for three nodes, 7 s at once)."""
        return stop_at_once([broker.stop for broker in self.brokers])

    # For `service_main`.
    name = "Kafka cluster"

    def describe(self) -> str:
        up = [b.node_id for b in self.brokers if b.running()]
        return f"{self.bootstrap}, nodes running {up or 'none'} of {self.nodes}"

    def running(self) -> bool:
        return all(b.running() for b in self.brokers)


def default_cluster() -> LocalCluster:
    first = int(os.environ.get("SHOPSTREAM_CLUSTER_KAFKA_PORT", DEFAULT_FIRST_PORT))
    return LocalCluster(home=paths().cluster_kafka_dir, first_port=first)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client-config"]:
        # For scripts: `SHOPSTREAM_KAFKA_CONFIG="$(python -m shopstream.devstack.kafka_cluster client-config
        # producer)"` hands a role's login to a client without a command line showing it.
        if len(argv) != 2 or argv[1] not in ROLES:
            print(f"usage: client-config {{{','.join(ROLES)}}}", file=sys.stderr)
            return 2
        print(json.dumps(default_cluster().client_config(argv[1])))
        return 0
    return service_main(__doc__, default_cluster, (BrokerError,), argv)


if __name__ == "__main__":
    sys.exit(main())
