"""What the benchmarks share: a broker (one for a whole `make bench` run, or a throwaway one
when a stage runs alone), fresh topics filled by order-sim, and Kafka's own performance tools as
references."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shopstream.config import order_sim_binary, paths
from shopstream.devstack.kafka_broker import LocalBroker, throwaway_broker
from shopstream.spark.streaming import StreamSettings

TOPIC = "bench"
BROKER_HEAP = LocalBroker.heap  # what `make broker-up` runs with: benchmarks measure that broker
PARTITIONS = 3
# The producer settings order-sim uses; the reference tools get the same ones.
PRODUCER_PROPS = {"acks": "all", "enable.idempotence": "true", "linger.ms": "5", "compression.type": "lz4"}


def run_stoppable(command: list[str], timeout: float, **popen_options) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True)` in a process group of its own:
    on timeout, or when this process is stopped meanwhile (SIGTERM: `exit_on_sigterm`), the group
    gets SIGTERM first, so a script's cleanup (`make run`'s trap, `bench.run`'s context managers)
    stops the broker and database it started; SIGKILL only 60 s later. Raises TimeoutExpired."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, **popen_options)  # fmt: skip
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except BaseException:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
        raise
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


def exit_on_sigterm() -> None:
    """SIGTERM ends this process through its `finally`s and context managers (which stop the broker
    and database it started), as Ctrl-C would, instead of at once."""
    signal.signal(signal.SIGTERM, _exit_by_signal)


def _exit_by_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def order_sim(*args: str, max_rss_file: Path | None = None) -> dict:
    """Runs order-sim and returns its JSON summary; with `max_rss_file`, under GNU time so that
    the process's peak resident memory (KiB) lands in that file."""
    command = [str(order_sim_binary()), *args]
    if max_rss_file is not None:
        command = ["/usr/bin/time", "-f", "%M", "-o", str(max_rss_file), *command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"order-sim failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fill(broker: LocalBroker, topic: str, count: int, *order_sim_args: str) -> dict:
    return order_sim("--brokers", broker.bootstrap, "--topic", topic, "--count", str(count), "--seed", "1",
                     "--no-updates", "--partitions", str(PARTITIONS), *order_sim_args)  # fmt: skip


def fresh_topic() -> str:
    """A topic name of its own, so that stages sharing a broker never read each other's events."""
    return f"{TOPIC}-{uuid.uuid4().hex[:8]}"


@contextmanager
def bench_lake(home: Path) -> Iterator[None]:
    """An Iceberg catalog of the benchmark's own (a throwaway PostgreSQL, a warehouse under
    `home`), named in this process's environment for the jobs and the processes it starts. Each
    stage's tables live in a namespace of their own (`temp_home`)."""
    from urllib.parse import urlsplit, urlunsplit

    from shopstream.devstack.postgres import throwaway_postgres
    from shopstream.lake import CATALOG_DATABASE

    settings = ("SHOPSTREAM_LAKE_CATALOG", "SHOPSTREAM_WAREHOUSE")
    before = {name: os.environ.get(name) for name in settings}
    with throwaway_postgres(Path(tempfile.gettempdir())) as server:
        catalog = urlunsplit(urlsplit(server.dsn)._replace(path=f"/{CATALOG_DATABASE}"))
        os.environ.update(dict(zip(settings, (catalog, (home / "warehouse").as_uri()), strict=True)))
        try:
            yield
        finally:
            for name, value in before.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


@contextmanager
def bench_broker(home: Path, shared: LocalBroker | None = None) -> Iterator[LocalBroker]:
    """`shared` when given (`make bench` starts one broker for all stages: its start-up is not
    what any stage measures), else a throwaway broker under `home`, stopped on exit."""
    if shared is not None:
        yield shared
        return
    with throwaway_broker(home / "kafka", heap=BROKER_HEAP) as broker:
        yield broker


@contextmanager
def filled_topic(
    home: Path, count: int, topic: str, *order_sim_args: str, shared: LocalBroker | None = None
) -> Iterator[LocalBroker]:
    """A broker (see `bench_broker`) whose `topic` holds `count` events."""
    with bench_broker(home, shared) as broker:
        fill(broker, topic, count, *order_sim_args)
        yield broker


def stream_settings(home: Path, broker: LocalBroker, topic: str, **overrides) -> StreamSettings:
    """The streaming job drained (--available-now) into the stage's raw table, its checkpoint
    under `home`."""
    options = {"checkpoint_dir": home / "checkpoints", "available_now": True, **overrides}
    return StreamSettings(bootstrap=broker.bootstrap, topic=topic, **options)


def kafka_tool(main_class: str, *args: str) -> str:
    """Runs one of Kafka's own tools (from the kafka-tools jar resolved at setup); its stdout."""
    command = [
        "java",
        "-Xmx512m",
        "-cp",
        f"{paths().kafka_jars}/*",
        f"org.apache.kafka.tools.{main_class}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{main_class} failed: {result.stderr[-2000:]}")
    return result.stdout


def create_topic(broker: LocalBroker, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=30)


def producer_performance(broker: LocalBroker, count: int, record_size: int) -> float:
    """Kafka's ProducerPerformance with order-sim's settings: records/s."""
    reference = fresh_topic()
    create_topic(broker, reference)
    props = [f"bootstrap.servers={broker.bootstrap}", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items())]
    size = ["--num-records", str(count), "--record-size", str(record_size), "--throughput", "-1"]
    out = kafka_tool("ProducerPerformance", "--topic", reference, *size, "--producer-props", *props)
    # Last line: "N records sent, X records/sec (Y MB/sec), ..."
    return float(re.findall(r"([\d.]+) records/sec", out)[-1])


def consumer_performance(broker: LocalBroker, topic: str, count: int) -> float:
    """Kafka's ConsumerPerformance reading `topic`: messages/s of its fetch phase."""
    out = kafka_tool("ConsumerPerformance", "--bootstrap-server", broker.bootstrap, "--topic", topic,
                     "--messages", str(count))  # fmt: skip
    header, values = [line for line in out.splitlines() if line.strip()][-2:]
    row = dict(
        zip([h.strip() for h in header.split(",")], [v.strip() for v in values.split(",")], strict=True)
    )
    return float(row["fetch.nMsg.sec"])


@contextmanager
def temp_home() -> Iterator[Path]:
    """A throwaway folder for one stage, removed after it, and a namespace of the catalog of its
    own (`SHOPSTREAM_LAKE_NAMESPACE`): stages never share a raw table."""
    home = Path(tempfile.mkdtemp(prefix="shopstream-bench-"))
    before = os.environ.get("SHOPSTREAM_LAKE_NAMESPACE")
    os.environ["SHOPSTREAM_LAKE_NAMESPACE"] = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        yield home
    finally:
        os.environ.pop("SHOPSTREAM_LAKE_NAMESPACE") if before is None else os.environ.update(
            SHOPSTREAM_LAKE_NAMESPACE=before
        )
        remove_tree(home)


def remove_tree(path: Path, attempts: int = 20) -> None:
    """Removes `path`, retrying for a few seconds: the shared Spark session's state-store
    maintenance can still upload a snapshot into a stopped query's checkpoint (a `make bench`
    ended in `Directory not empty` over a fresh `state/0/3/60.zip`)."""
    for _ in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except OSError:  # a file written or removed under it meanwhile: try again while it exists
            if not path.exists():
                return
            time.sleep(0.5)
    shutil.rmtree(path, ignore_errors=True)
