"""Paths, topic names and endpoints: defined once here, imported by every job, DAG and test.

Every value can be overridden by an environment variable, so the same code runs against the
embedded local stack or a real cluster by configuration alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# Topic names and the default broker address are part of the event contract (shared with the
# Rust producer); here with the rest of the configuration.
from shopstream.contract import DEFAULT_KAFKA_BOOTSTRAP, ORDERS_TOPIC, UPDATES_TOPIC  # noqa: F401
from shopstream.home import REPO_ROOT

DEFAULT_KAFKA_CONTROLLER_PORT = 9093
# In the loopback cluster's folder: the Spark jobs' client login, written by `make cluster-up`.
SPARK_CLIENT_FILE = "spark-client.json"

# One switch between the embedded single-node stack and the loopback clusters of
# `make cluster-up` (3 Kafka nodes, a Spark master with 2 workers). Only defaults differ: every
# job, the producer and the DAG read the same settings (env and Airflow Connections win).
PROFILES = ("local", "cluster")


def profile() -> str:
    name = os.environ.get("SHOPSTREAM_PROFILE", "local")
    if name not in PROFILES:
        raise ValueError(f"SHOPSTREAM_PROFILE={name}: use one of {', '.join(PROFILES)}")
    return name


def default_kafka_bootstrap() -> str:
    if profile() == "cluster":
        first = int(os.environ.get("SHOPSTREAM_CLUSTER_KAFKA_PORT", 19092))
        return ",".join(f"127.0.0.1:{first + i}" for i in range(3))
    return DEFAULT_KAFKA_BOOTSTRAP


def spark_master() -> str:
    """`SHOPSTREAM_SPARK_MASTER`, else the profile's: local[2] or the loopback standalone master."""
    if "SHOPSTREAM_SPARK_MASTER" in os.environ:
        return os.environ["SHOPSTREAM_SPARK_MASTER"]
    if profile() == "cluster":
        return f"spark://127.0.0.1:{os.environ.get('SHOPSTREAM_CLUSTER_SPARK_PORT', 7077)}"
    return "local[2]"


def _path_from_env(name: str, default: Path) -> Path:
    return Path(os.environ.get(name, str(default))).resolve()


@dataclass(frozen=True)
class Paths:
    """Where shopstream keeps its state (never committed) and its data layers."""

    state: Path
    data: Path

    @property
    def jars(self) -> Path:
        # Installed by `make setup`: shared by every state folder (tests use throwaway ones).
        return _path_from_env("SHOPSTREAM_JARS_DIR", REPO_ROOT / ".state" / "jars")

    @property
    def kafka_jars(self) -> Path:
        return self.jars / "kafka"

    @property
    def spark_kafka_jars(self) -> Path:
        return self.jars / "spark-kafka"

    @property
    def comet_jars(self) -> Path:
        """Apache DataFusion Comet, Spark's native (Rust) execution: `make setup` fills it."""
        return self.jars / "comet"

    @property
    def iceberg_jars(self) -> Path:
        """Apache Iceberg's Spark runtime and the JDBC driver of its catalog: `make setup` fills it."""
        return self.jars / "iceberg"

    @property
    def warehouse(self) -> Path:
        """The Iceberg tables' files when no other warehouse is configured (`shopstream.lake`)."""
        return self.data / "warehouse"

    @property
    def class_archive(self) -> Path:
        """The Spark jobs' class-data archive (AppCDS) that `make setup` trains for these jars."""
        return self.jars / "class-archive" / "spark-jobs.jsa"

    @property
    def broker_dir(self) -> Path:
        return self.state / "kafka"

    @property
    def cluster_kafka_dir(self) -> Path:
        """The loopback Kafka cluster of `make cluster-up`: nodes, ids and credentials."""
        return self.state / "cluster" / "kafka"

    @property
    def serving_db_dir(self) -> Path:
        """The local serving database of the live dashboard (`make db-up`): its data folder,
        log, and the connection file the product reads when nothing else is configured."""
        return self.state / "postgres"

    @property
    def transformed(self) -> Path:
        return self.data / "transformed"

    @property
    def checkpoints(self) -> Path:
        # Offsets of one Kafka deployment mean nothing to another: each profile has its own.
        return self.state / "checkpoints" if profile() == "local" else self.state / profile() / "checkpoints"

    @property
    def ingest_checkpoints(self) -> Path:
        """The ingest's (Kafka → raw sink): its writer lock and one folder per query (`INGEST_QUERY`)."""
        return self.checkpoints / "stream_consumer"

    @property
    def live_checkpoints(self) -> Path:
        """The live aggregation's (Kafka → serving store): its writer lock and `LIVE_QUERY`."""
        return self.checkpoints / "live_sales"

    @property
    def order_status_checkpoints(self) -> Path:
        return self.checkpoints / "order_status"


# The streaming queries' own folders inside their jobs' checkpoint folders (Paths.*_checkpoints):
# read by the jobs and by the dashboard's health panel (offsets committed).
INGEST_QUERY = "orders"
LIVE_QUERY = "query"


# The raw table's first partition column: the validation verdict on each Kafka record.
VERDICT = "verdict"
VALID, QUARANTINED = "valid", "quarantined"


def paths() -> Paths:
    return Paths(
        state=_path_from_env("SHOPSTREAM_STATE_DIR", REPO_ROOT / ".state"),
        # The cluster profile's layers live apart (data/cluster/) so the two never mix.
        data=_path_from_env(
            "SHOPSTREAM_DATA_DIR", REPO_ROOT / "data" / ("" if profile() == "local" else profile())
        ),
    )


def kafka_client_config() -> dict[str, str]:
    """Kafka client settings (librdkafka/Java names: bootstrap.servers, security.protocol, ...).

    From `SHOPSTREAM_KAFKA_CONFIG` (a JSON object: what an Airflow `kafka` Connection keeps in
    its extras, handed over in the environment so credentials never appear on a command line),
    else from the JSON file `SHOPSTREAM_KAFKA_CONFIG_FILE` (a mounted secret; in the cluster
    profile, the Spark principal's login that `make cluster-up` writes); the bootstrap list from
    there, else `SHOPSTREAM_KAFKA_BOOTSTRAP`, else the profile's brokers."""
    config = json.loads(os.environ.get("SHOPSTREAM_KAFKA_CONFIG") or "{}") or kafka_settings_file()
    config.setdefault(
        "bootstrap.servers", os.environ.get("SHOPSTREAM_KAFKA_BOOTSTRAP") or default_kafka_bootstrap()
    )
    return {str(k): str(v) for k, v in config.items()}


def kafka_client_file() -> Path | None:
    """`SHOPSTREAM_KAFKA_CONFIG_FILE`, else in the cluster profile the loopback cluster's file
    of the Spark jobs' login; None in the local profile (no security)."""
    if "SHOPSTREAM_KAFKA_CONFIG_FILE" in os.environ:
        return Path(os.environ["SHOPSTREAM_KAFKA_CONFIG_FILE"])
    return paths().cluster_kafka_dir / SPARK_CLIENT_FILE if profile() == "cluster" else None


def kafka_settings_file() -> dict[str, str]:
    """The settings in `kafka_client_file()`, if there is one and it exists (the cluster
    profile's before `make cluster-up`: none yet)."""
    file = kafka_client_file()
    return json.loads(file.read_text()) if file and file.exists() else {}


def kafka_bootstrap() -> str:
    return kafka_client_config()["bootstrap.servers"]


# Consumer-group settings belong to each consumer (Spark's source, a check's probe), not to the
# connection: a Connection's extras may carry them for other tools.
_CONSUMER_GROUP_KEYS = frozenset({"group.id", "auto.offset.reset", "enable.auto.commit"})


def split_client_config(config: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(bootstrap list, the other connection settings: security and the like) of a client config
    such as `kafka_client_config()` or a kafka Connection's extras."""
    options = {k: v for k, v in config.items() if k != "bootstrap.servers" and k not in _CONSUMER_GROUP_KEYS}
    return config["bootstrap.servers"], options


def kafka_security_options() -> dict[str, str]:
    """The client settings other than the bootstrap list and consumer-group ones."""
    return split_client_config(kafka_client_config())[1]


_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def java_client_options(settings: dict[str, str]) -> dict[str, str]:
    """librdkafka settings -> Java client settings (the Spark Kafka source's `kafka.*` options):
    the SASL user and password become a JAAS login, a PEM CA file a PEM trust store; the other
    settings are named alike."""
    options = {
        k: v for k, v in settings.items() if k not in ("sasl.username", "sasl.password", "ssl.ca.location")
    }
    if "ssl.ca.location" in settings:
        options |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": settings["ssl.ca.location"]}
    if "sasl.username" in settings:
        module = _LOGIN_MODULES[settings.get("sasl.mechanism", "SCRAM-SHA-256").upper()]
        user, password = settings["sasl.username"], settings.get("sasl.password", "")
        options["sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
    return options


# Lateness policy, one number for both ends: ingest quarantines an event that reaches Kafka more
# than this many days after its time (reason `too late`), and each daily run recomputes the dates
# up to this many days back whose raw rows changed since publication. So every accepted event
# reaches its date's published analytics, and no older date ever changes.
LATENESS_DAYS = 7


# Events stamped more than this many days after they reach Kafka are quarantined (`too early`): a
# clock that far ahead is broken, and the bound makes the ingest's de-duplication window complete
# (see `shopstream.spark.orders.redelivery_window_days`).
MAX_AHEAD_DAYS = 1


# A date's raw files are compacted (the maintenance DAG's `rewrite_data_files`) once no event of
# it can still be valid (`lateness_days` after it, plus the day an event may be stamped ahead and a
# day for the ingest to catch up): a compaction changes the date's fingerprint, so a date still
# open to late events would be transformed again for nothing.
def compaction_after_days() -> int:
    """`SHOPSTREAM_COMPACTION_AFTER_DAYS`, else the lateness horizon + MAX_AHEAD_DAYS + 1."""
    return int(os.environ.get("SHOPSTREAM_COMPACTION_AFTER_DAYS", lateness_days() + MAX_AHEAD_DAYS + 1))


def lateness_days() -> int:
    """`SHOPSTREAM_LATENESS_DAYS`, else LATENESS_DAYS."""
    return int(os.environ.get("SHOPSTREAM_LATENESS_DAYS", LATENESS_DAYS))


def extra_jvm_options() -> list[str]:
    """`SHOPSTREAM_JVM_OPTIONS`: added to every JVM shopstream starts (the Spark jobs' drivers and
    executors, the local Kafka brokers); the tests' `-XX:TieredStopAtLevel=1` spares the optimizing
    compiler's work in JVMs that exit within a minute."""
    return os.environ.get("SHOPSTREAM_JVM_OPTIONS", "").split()


def order_sim_binary() -> Path:
    return _path_from_env("SHOPSTREAM_ORDER_SIM", REPO_ROOT / "target" / "release" / "order-sim")


# The live dashboard's serving database (PostgreSQL). A port of its own, so that a system
# PostgreSQL on 5432 never collides with the project's.
DEFAULT_SERVING_DB_PORT = 5442
SERVING_CONN_ID = "shopstream_serving"  # an Airflow `postgres` Connection id
SERVING_DB_FILE = "connection.json"  # in Paths.serving_db_dir, written by `make db-up`


class ServingDbNotConfigured(RuntimeError):
    """No serving database is configured and the local one was never started."""


def serving_db_dsn() -> str:
    """libpq connection URI of the serving database: `SHOPSTREAM_SERVING_DB` (a URI or
    key=value conninfo), else the Airflow Connection `AIRFLOW_CONN_SHOPSTREAM_SERVING` (URI or
    JSON form, as Airflow keeps it), else the local database's file that `make db-up` writes."""
    if os.environ.get("SHOPSTREAM_SERVING_DB"):
        return os.environ["SHOPSTREAM_SERVING_DB"]
    airflow_conn = os.environ.get(f"AIRFLOW_CONN_{SERVING_CONN_ID.upper()}")
    if airflow_conn:
        return airflow_connection_uri(airflow_conn)
    local = paths().serving_db_dir / SERVING_DB_FILE
    if local.exists():
        return json.loads(local.read_text())["uri"]
    raise ServingDbNotConfigured(
        "no serving database: run `make db-up` (a local PostgreSQL), or set SHOPSTREAM_SERVING_DB "
        f"or AIRFLOW_CONN_{SERVING_CONN_ID.upper()} to a managed one (postgresql://user:pass@host:port/db)"
    )


def _airflow_uri(value: str) -> str:
    """An Airflow Connection in either form `AIRFLOW_CONN_*` may hold, as Airflow's URI form: the
    JSON form is turned into it by Airflow's own `Connection`. (Only then is Airflow imported: it
    reconfigures the process's logging, so the DAG hands the Spark jobs the URI form.)"""
    value = value.strip()
    if not value.startswith("{"):
        return value
    from airflow.sdk import Connection

    return Connection.from_json(value, conn_id="shopstream").get_uri()


def airflow_connection_uri(value: str) -> str:
    """An Airflow Connection (its URI or JSON form) as a libpq URI: Airflow's `postgres://` scheme
    is one libpq accepts; the extras Airflow puts in the query are left out (libpq refuses them)."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(_airflow_uri(value))._replace(query=""))


def airflow_connection_extra(value: str) -> dict[str, str]:
    """The extras of an Airflow Connection (its URI or JSON form), as Airflow's URI carries them."""
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(_airflow_uri(value)).query))


REGIONS_CSV = REPO_ROOT / "data" / "regions.csv"
PRODUCTS_CSV = REPO_ROOT / "data" / "products.csv"
