"""SASL/SCRAM users and ACLs of the loopback Kafka cluster (the cluster profile).

Three principals, each with only what it needs:
- `admin`: the brokers' own (inter-broker and controller traffic), super user; creates the
  topics and grants the ACLs;
- `shopstream-producer` (order-sim): WRITE and DESCRIBE on the pipeline's topics, nothing else;
- `shopstream-spark` (the Spark jobs and the DAG's topic check): READ and DESCRIBE on them.

Passwords are random, generated at the first `make cluster-up` into the cluster's folder
(`credentials.json`, mode 600: a stand-in for a secrets manager) and reach clients through the
environment (`SHOPSTREAM_KAFKA_CONFIG`) or the Airflow Connection, never a command line or a log.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

MECHANISM = "SCRAM-SHA-256"
ADMIN = "admin"
PRODUCER = "shopstream-producer"
SPARK = "shopstream-spark"
ROLES = {"admin": ADMIN, "producer": PRODUCER, "spark": SPARK}
# The users' passwords, in the cluster's folder.
CREDENTIALS_FILE = "credentials.json"
# The Spark Kafka source names its consumer groups spark-kafka-source-<uuid>-…
SPARK_GROUP_PREFIX = "spark-kafka-source"


def write_private_json(file: Path, content: dict, exclusive: bool = False) -> None:
    """`content` as JSON in `file`, readable by its owner only (mode 600 from the start, never
    briefly world-readable). `exclusive`: fail if the file exists instead of replacing it."""
    file.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(os.open(file, flags, 0o600), "w") as out:
        json.dump(content, out)


@dataclass(frozen=True)
class Credentials:
    passwords: dict[str, str]  # user -> password

    @classmethod
    def load(cls, file: Path) -> Credentials:
        return cls(json.loads(file.read_text()))

    @classmethod
    def load_or_create(cls, file: Path) -> Credentials:
        """The cluster's users; random passwords are made (once) when the file does not exist."""
        if not file.exists():
            file.parent.mkdir(parents=True, exist_ok=True)
            # Hex passwords: no character that StorageTool's --add-scram syntax or JAAS would parse.
            users = {user: secrets.token_hex(16) for user in ROLES.values()}
            write_private_json(file, users, exclusive=True)
        return cls.load(file)

    def write_client_settings(self, role: str, file: Path) -> None:
        """The role's client settings as a JSON file (mode 600): what the product reads through
        `SHOPSTREAM_KAFKA_CONFIG_FILE` (the cluster profile's default path), as it would read a
        mounted secret of a managed cluster."""
        write_private_json(file, self.client_settings(role))

    def client_settings(self, role: str) -> dict[str, str]:
        """librdkafka settings (confluent-kafka, order-sim, the Airflow Connection) for a role."""
        user = ROLES[role]
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.passwords[user],
        }

    def scram_format_args(self) -> list[str]:
        """StorageTool `format` arguments that put every user in the cluster's first metadata, so
        that the brokers can authenticate each other before any admin request is possible."""
        return [f"--add-scram={MECHANISM}=[name={user},password={pw}]" for user, pw in self.passwords.items()]

    def listener_properties(self, port: int, controller_port: int) -> str:
        """server.properties lines: SCRAM on the client listener (also used between brokers, as
        `admin`), PLAIN with a static `admin` on the controller listener (KRaft controllers
        cannot use SCRAM: its credentials live in the metadata they serve), ACLs enforced."""
        admin_password = self.passwords[ADMIN]
        scram_login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{admin_password}";'
        )
        plain_login = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN}" password="{admin_password}" user_{ADMIN}="{admin_password}";'
        )
        return (
            listeners("CLIENT", port, controller_port, "SASL_PLAINTEXT")
            + f"""\
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.client.scram-sha-256.sasl.jaas.config={scram_login}
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={plain_login}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{ADMIN}
allow.everyone.if.no.acl.found=false
"""
        )


def listeners(name: str, port: int, controller_port: int, protocol: str) -> str:
    """server.properties lines for a node's two loopback listeners: `name` for clients and
    between brokers, CONTROLLER for the quorum, both speaking `protocol`."""
    return f"""\
listeners={name}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={name}://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name={name}
listener.security.protocol.map={name}:{protocol},CONTROLLER:{protocol}
"""


def grant_pipeline_acls(admin_config: dict[str, str], topics: list[str], timeout: float = 30.0) -> None:
    """Producer: WRITE + DESCRIBE on `topics`; Spark: READ + DESCRIBE on them and READ on its
    consumer groups. Granting an existing ACL again is a no-op."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    def allow(user, kind, name, operation, pattern=ResourcePatternType.LITERAL) -> AclBinding:
        return AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)

    grants = {
        PRODUCER: (AclOperation.WRITE, AclOperation.DESCRIBE),
        SPARK: (AclOperation.READ, AclOperation.DESCRIBE),
    }
    bindings = [
        allow(user, ResourceType.TOPIC, topic, operation)
        for topic in topics
        for user, operations in grants.items()
        for operation in operations
    ]
    bindings.append(
        allow(SPARK, ResourceType.GROUP, SPARK_GROUP_PREFIX, AclOperation.READ, ResourcePatternType.PREFIXED)
    )
    admin = AdminClient(admin_config)  # kept alive until the futures resolve
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
