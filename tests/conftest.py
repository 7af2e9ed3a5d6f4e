"""Shared fixtures: one real Kafka broker per test session (on free loopback ports, in a temp
dir, so it never touches a broker the user runs), a fresh topic per test, and the producer."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Airflow reads its home when first imported: give the test run a throwaway one (removed at exit).
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
# The Iceberg tables' files: a throwaway warehouse, never the repository's data/ (a test that wants
# its own sets SHOPSTREAM_WAREHOUSE itself).
_WAREHOUSE = tempfile.mkdtemp(prefix="warehouse-")
atexit.register(shutil.rmtree, _WAREHOUSE, ignore_errors=True)
os.environ["SHOPSTREAM_WAREHOUSE"] = Path(_WAREHOUSE).as_uri()
# The tests' JVMs (Spark jobs, brokers) handle a few thousand events and exit before the optimizing
# compiler's work pays off: C1 alone, a third less CPU per DAG run (docs/benchmarks.md, "Session
# 26"). The benchmarks keep the default.
os.environ.setdefault("SHOPSTREAM_JVM_OPTIONS", "-XX:TieredStopAtLevel=1")

from shopstream.config import order_sim_binary  # noqa: E402
from shopstream.devstack.kafka_broker import LocalBroker, throwaway_broker  # noqa: E402
from shopstream.devstack.postgres import LocalPostgres, throwaway_postgres  # noqa: E402


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    with throwaway_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def serving_db() -> Iterator[LocalPostgres]:
    """One real PostgreSQL per test session, on a free loopback port (the live dashboard's store).
    In the system temp folder: started by root, the server runs as `postgres`, who must reach it."""
    with throwaway_postgres(Path(tempfile.gettempdir())) as server:
        yield server


@pytest.fixture(scope="session")
def lake_catalog(serving_db) -> str:
    """The Iceberg catalog in the session's PostgreSQL (its database beside the serving store),
    for every process of the test run: SHOPSTREAM_LAKE_CATALOG, its URI."""
    from urllib.parse import urlsplit, urlunsplit

    from shopstream.lake import CATALOG_DATABASE

    uri = urlunsplit(urlsplit(serving_db.dsn)._replace(path=f"/{CATALOG_DATABASE}"))
    os.environ["SHOPSTREAM_LAKE_CATALOG"] = uri
    return uri


@pytest.fixture(scope="module", autouse=True)
def lake_namespace(request) -> Iterator[str]:
    """A namespace of the catalog per test module (SHOPSTREAM_LAKE_NAMESPACE): modules never see
    each other's tables or publications. Only a name: nothing is created until a test writes."""
    name = "t_" + uuid.uuid4().hex[:12]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHOPSTREAM_LAKE_NAMESPACE", name)
        yield name


@pytest.fixture
def fresh_lake_namespace(lake_namespace) -> Iterator[str]:
    """A namespace of its own for one test (see `lake_namespace`)."""
    name = f"{lake_namespace}_{uuid.uuid4().hex[:6]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHOPSTREAM_LAKE_NAMESPACE", name)
        yield name


@pytest.fixture
def store(serving_db) -> str:
    """The session's serving database, emptied for this test; its connection URI."""
    from shopstream import serving

    with serving.connect(serving_db.dsn) as conn:
        serving.reset(conn)
    return serving_db.dsn


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (rust-rdkafka's tests do the same)."""
    return f"orders-{uuid.uuid4().hex[:10]}"


def run_order_sim(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    binary = order_sim_binary()
    assert binary.exists(), f"{binary} missing: run `make setup`"
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout)


def point_pipeline_at(patch: pytest.MonkeyPatch, home: Path, bootstrap: str) -> None:
    """The pipeline's state and data under `home`, its Kafka client at `bootstrap` alone (no
    settings file of a cluster profile)."""
    patch.setenv("SHOPSTREAM_STATE_DIR", str(home / "state"))
    patch.setenv("SHOPSTREAM_DATA_DIR", str(home / "data"))
    patch.setenv("SHOPSTREAM_KAFKA_BOOTSTRAP", bootstrap)
    patch.delenv("SHOPSTREAM_KAFKA_CONFIG", raising=False)


def produce(broker: LocalBroker, topic: str, *args: str) -> dict:
    """Runs order-sim against the broker, asserts success and returns its JSON summary."""
    if "--updates-topic" not in args and "--no-updates" not in args:
        args = ("--updates-topic", f"{topic}-updates", *args)  # never the shared default topic
    result = run_order_sim("--brokers", broker.bootstrap, "--topic", topic, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory, lake_catalog):
    """One local SparkSession for the whole run (it takes ~10 s to start), with the catalog."""
    import logging

    from shopstream.spark.session import get_spark

    # py4j logs its shutdown after pytest has closed the streams it captured: keep it quiet.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = get_spark(
        "shopstream-tests",
        {
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.warehouse.dir": str(warehouse),
            # One session reads the partitions of every test's topics: past Spark's pool of 64
            # cached Kafka consumers it evicts while a task borrows one ("KafkaConsumer is not
            # safe for multi-threaded access", seen once in a fresh-clone run).
            "spark.kafka.consumer.cache.capacity": "1024",
        },
        lake=True,
    )
    yield session
    session.stop()
