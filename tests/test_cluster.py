"""Scale-out drills on real clusters on loopback: a 3-node Kafka cluster (KRaft, RF 3,
min.insync.replicas 2, SASL/SCRAM logins and ACLs) and a Spark standalone master with 2 workers,
each on free ports in a temp dir. Run alone with `make test-cluster`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from shopstream import publication
from shopstream.config import ORDERS_TOPIC, REPO_ROOT, order_sim_binary
from shopstream.daily_tables import OUTPUTS
from shopstream.devstack.kafka_cluster import PORT_OFFSETS, LocalCluster
from shopstream.devstack.kafka_security import SPARK_GROUP_PREFIX
from shopstream.devstack.processes import free_port
from shopstream.devstack.spark_cluster import LocalSparkCluster
from shopstream.spark.stream_consumer import run
from shopstream.spark.streaming import StreamSettings
from shopstream.validation import RDD_OUTPUT
from tests import duckdb_oracle, iceberg_read, oracle
from tests.dates import days_ago
from tests.duckdb_oracle import ORACLE_COLUMNS
from tests.kafka_read import distinct_events, read_topic
from tests.raw_rows import read_raw, write_raw

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory):
    cluster = LocalCluster(home=tmp_path_factory.mktemp("kafka-cluster"), first_port=free_port(PORT_OFFSETS))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    # Finished applications' folders deleted within seconds, not a week, and logs rolled over at
    # 2 KB (executors' at Spark's smallest size, 80 KB), not 20 MB: see the housekeeping test. The
    # setting holds for the module, so a worker restarted by a test (the killed-worker drill) keeps it.
    cluster = LocalSparkCluster(home=tmp_path_factory.mktemp("spark-cluster"), master_port=free_port(),
                                ui_port=free_port(), worker_memory="1g", app_data_ttl_seconds=3,
                                cleanup_interval_seconds=2)  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPSTREAM_SERVICE_LOG_MAX_MB", "0.002")
        cluster.start()
        yield cluster
        cluster.stop()


@pytest.fixture
def cluster_topic(kafka_cluster, topic) -> str:
    """A fresh topic the producer may write and the Spark principal read (as cluster-up does for
    the pipeline's two)."""
    kafka_cluster.provision([topic])
    return topic


def login(cluster: LocalCluster, role: str) -> dict[str, str]:
    """A role's SASL settings without the bootstrap list."""
    return cluster.credentials.client_settings(role)


def order_sim(
    cluster: LocalCluster, topic: str, *args: str, role: str | None = "producer"
) -> subprocess.Popen:
    """order-sim as `role` (its login in the environment, as run_pipeline hands it over)."""
    env = {k: v for k, v in os.environ.items() if k != "SHOPSTREAM_KAFKA_CONFIG"}
    if role:
        env["SHOPSTREAM_KAFKA_CONFIG"] = json.dumps(cluster.client_config(role))
    return subprocess.Popen(
        [str(order_sim_binary()), "--brokers", cluster.bootstrap, "--topic", topic, "--no-updates", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_topics_are_replicated_three_times_with_two_in_sync_required(kafka_cluster, cluster_topic):
    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = cluster_topic
    sim = order_sim(kafka_cluster, topic, "--count", "10", "--seed", "1")
    assert sim.wait(60) == 0, sim.stderr.read()
    admin = AdminClient(kafka_cluster.client_config("admin"))
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    assert len(partitions) == 3 and all(len(p.replicas) == 3 for p in partitions.values())
    [configs] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    assert configs.result(10)["min.insync.replicas"].value == "2"


def test_kill_one_kafka_node_while_producing_loses_and_duplicates_nothing(
    kafka_cluster, spark, tmp_path, cluster_topic, fresh_lake_namespace
):
    topic = cluster_topic
    count = 200_000
    sim = order_sim(kafka_cluster, topic, "--count", str(count), "--rate", "40000", "--seed", "71",
                    "--start", days_ago(3), "--span", "24h")  # fmt: skip
    time.sleep(2)
    assert sim.poll() is None, "still producing when the node dies"
    victim = kafka_cluster.brokers[1]
    victim.kill()
    try:
        out, err = sim.communicate(timeout=240)
        assert sim.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["delivered"] == count
    finally:
        victim.start()

    settings = StreamSettings(
        bootstrap=kafka_cluster.bootstrap, topic=topic, checkpoint_dir=tmp_path / "cp", available_now=True,
        kafka_options=login(kafka_cluster, "spark"),
    )  # fmt: skip
    assert run(settings, spark) == {"raw": count, "quarantine": 0, "redelivered": 0}
    copies = read_raw().aggregate("order_id, order_status, count(*) AS n").fetchall()
    assert len(copies) == count and max(n for *_, n in copies) == 1


def test_two_nodes_down_stops_the_producer_in_bounded_time_naming_the_cause(kafka_cluster, cluster_topic):
    topic = cluster_topic
    first = order_sim(kafka_cluster, topic, "--count", "1000", "--seed", "72")
    assert first.wait(60) == 0, first.stderr.read()
    reader = login(kafka_cluster, "admin")  # the check's reader, not the pipeline's
    acknowledged = {m.value for m in read_topic(kafka_cluster.bootstrap, topic, 1000, login=reader)}
    assert len(acknowledged) == 1000  # every record before the outage, each distinct
    down = kafka_cluster.brokers[1:]
    for broker in down:
        broker.kill()
    try:
        started = time.monotonic()
        second = order_sim(
            kafka_cluster, topic, "--count", "1000", "--seed", "73", "--delivery-timeout-secs", "15"
        )
        _, err = second.communicate(timeout=120)
        took = time.monotonic() - started
        assert second.returncode != 0
        assert took < 60, f"failed after {took:.0f} s"
        assert "2 of 3 brokers not reachable" in err and "in-sync replicas" in err, err[-2000:]
    finally:
        for broker in down:
            broker.launch()
        for broker in kafka_cluster.brokers:
            broker.wait_ready()
    # Every record acknowledged before the outage is still there once the nodes are back. (Counting
    # distinct order ids instead was wrong: a CANCELLED/RETURNED event repeats its order's id.)
    after = {m.value for m in read_topic(kafka_cluster.bootstrap, topic, 1000, login=reader)}
    assert acknowledged <= after


def test_dataframe_job_survives_a_killed_spark_worker_with_correct_outputs(spark_cluster, spark, tmp_path,
                                                                         fresh_lake_namespace):  # fmt: skip
    # A raw table of 300k rows, read by the job the production way (the catalog, a snapshot).
    rows = spark.range(300_000).selectExpr(
        "concat('ORD-', id) AS order_id", "concat('CUST-', id % 977) AS customer_id",
        "concat('P-', 1000 + id % 37) AS product_id", "'Product' AS product_name", "'Toys' AS category",
        "CAST(1 + id % 3 AS INT) AS quantity", "CAST(9.99 AS DECIMAL(12,2)) AS unit_price",
        "CASE WHEN id % 10 = 0 THEN 'CANCELLED' ELSE 'NEW' END AS order_status", "'DE' AS region",
        "TIMESTAMP'2026-11-12 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id % 86400) AS timestamp",
        "DATE'2026-11-12' AS date",
    )  # fmt: skip
    write_raw(spark, rows)
    env = {
        **os.environ,
        "SHOPSTREAM_SPARK_MASTER": spark_cluster.master_url,
        "SHOPSTREAM_STATE_DIR": str(tmp_path / "state"),
    }  # its warehouse, not the user's
    job = subprocess.Popen(
        [sys.executable, "-m", "shopstream.spark.batch_df_etl", "--date", "2026-11-12",
         "--output-dir", str(tmp_path / "out")],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(12)  # executors are up and the cache build has started
    assert job.poll() is None, job.stdout.read()[-3000:]
    spark_cluster.kill_worker(1)
    output, _ = job.communicate(timeout=400)
    spark_cluster.start()  # the worker back, for the tests after this one
    assert job.returncode == 0, output[-3000:]

    [branch] = [ref for ref in iceberg_read.table("hourly_sales").refs() if ref != "main"]  # the job's run
    [hourly] = iceberg_read.rows("hourly_sales", "sum(orders), sum(net_revenue)", ref=branch)
    new = sum(1 for i in range(300_000) if i % 10)
    revenue = sum((1 + i % 3) * (1 if i % 10 else -1) for i in range(300_000)) * 999
    assert hourly == (new, Decimal(revenue) / 100)


def test_workers_roll_executor_logs_and_delete_a_finished_applications_folder(spark_cluster, tmp_path):
    work_dirs = sorted(spark_cluster.home.glob("worker*-work"))
    before = {app for work in work_dirs for app in work.glob("app-*")}
    app = subprocess.run(
        [sys.executable, "-c", "import sys; from pyspark.sql import SparkSession;"
         " s = SparkSession.builder.master(sys.argv[1]).getOrCreate();"
         # 400 KB of executor output: past Spark's smallest roll-over size (80 KB) on each worker.
         " s.sparkContext.parallelize(range(8), 8).foreach(lambda i: sys.stderr.write('x' * 50000 + '\\n'));"
         " print(s.sparkContext.applicationId, s.range(1000).repartition(4).count())",
         spark_cluster.master_url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )  # fmt: skip
    assert app.returncode == 0, app.stderr[-3000:]
    app_id, count = app.stdout.split()[-2:]
    assert count == "1000"
    mine = [work / app_id for work in work_dirs if (work / app_id).exists()]
    assert mine and not set(mine) & before, "the application's executors wrote their folders"
    rolled = [log for folder in mine for log in folder.glob("*/stderr--*")]
    assert rolled, "the executors' logs rolled over at their limit"

    deadline = time.monotonic() + 60
    while any(folder.exists() for folder in mine) and time.monotonic() < deadline:
        time.sleep(1)
    assert not any(folder.exists() for folder in mine), "a finished application's folder was kept"


def published_rows(data, date: str) -> dict[str, list]:
    """Every published output of one date in the oracle's columns and order (tables), and the RDD
    job's text as (date, product, revenue) rows."""
    found = {}
    for name, columns in ORACLE_COLUMNS.items():
        columns = columns.replace("hour,", "timezone('UTC', hour) AS hour,")  # the oracle's naive UTC hour
        found[name] = iceberg_read.rows(name, columns, order="ALL", where=f"date = DATE '{date}'")
    rdd = publication.output_dir(data / "transformed", publication.published_version(date), RDD_OUTPUT, date)
    lines = sorted(line.split("\t") for p in rdd.glob("part-*") for line in p.read_text().splitlines())
    found[RDD_OUTPUT] = [
        (dt.date.fromisoformat(date), product, Decimal(revenue)) for product, revenue in lines
    ]
    return found


def test_the_dag_in_the_cluster_profile_equals_the_oracle(kafka_cluster, spark_cluster, tmp_path, monkeypatch,
                                                          lake_catalog, lake_namespace):  # fmt: skip
    """The local profile's code, pointed at the cluster by configuration alone (3 secured brokers,
    a Spark master): every output of the date equals the oracle over the events read back."""
    from shopstream.airflow.run_local import run_dag

    date = days_ago(2)
    home = tmp_path / "cluster"
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("SHOPSTREAM_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("SHOPSTREAM_KAFKA_BOOTSTRAP", kafka_cluster.bootstrap)
    monkeypatch.setenv("SHOPSTREAM_SPARK_MASTER", spark_cluster.master_url)
    monkeypatch.setenv("SHOPSTREAM_KAFKA_CONFIG", json.dumps(kafka_cluster.client_config("spark")))
    monkeypatch.setenv("SHOPSTREAM_LAKE_NAMESPACE", f"{lake_namespace}_cluster")
    sim = order_sim(kafka_cluster, ORDERS_TOPIC, "--count", "2000", "--seed", "81",
                    "--malformed-ratio", "0.02", "--start", date, "--span", "24h")  # fmt: skip
    assert sim.wait(120) == 0, sim.stderr.read()

    result = run_dag(date, expected_events=2000, retries=0, quiet=True)

    assert result["state"] == "success", result
    topic = read_topic(kafka_cluster.bootstrap, ORDERS_TOPIC, 2000, login=login(kafka_cluster, "admin"))
    events = distinct_events([json.loads(m.value) for m in topic if not oracle.problems(m.value)])
    truth = duckdb_oracle.connect([e for e in events if e["timestamp"].startswith(date)])
    got = published_rows(home / "data", date)
    assert set(got) == {*OUTPUTS, RDD_OUTPUT}
    for output in got:
        want = duckdb_oracle.expected(truth, output)
        assert sorted(got[output]) == sorted(want) and want, output


def test_clients_without_a_login_or_with_a_wrong_password_are_refused(kafka_cluster):
    from shopstream.kafka_admin import KafkaCheckError, topic_stats

    anonymous = order_sim(kafka_cluster, ORDERS_TOPIC, "--count", "1", role=None)
    _, err = anonymous.communicate(timeout=60)
    assert anonymous.returncode != 0 and "sasl.username" in err, err[-2000:]

    wrong = {**login(kafka_cluster, "producer"), "sasl.password": "not-the-password"}
    env = {**os.environ, "SHOPSTREAM_KAFKA_CONFIG": json.dumps(wrong)}
    refused = subprocess.run(
        [str(order_sim_binary()), "--brokers", kafka_cluster.bootstrap, "--count", "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "refused the credentials" in refused.stderr, refused.stderr[-2000:]
    assert "not-the-password" not in refused.stderr + refused.stdout  # never echoed

    with pytest.raises(KafkaCheckError, match="refused the login"):
        topic_stats(ORDERS_TOPIC, kafka_cluster.bootstrap, timeout=10, extra_config=wrong)
    with pytest.raises(KafkaCheckError, match="no Kafka broker answered"):
        topic_stats(ORDERS_TOPIC, kafka_cluster.bootstrap, timeout=5)


def test_the_producer_may_only_write_its_topics_and_spark_may_only_read_them(kafka_cluster, cluster_topic):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    sim = order_sim(kafka_cluster, cluster_topic, "--count", "20", "--seed", "5")
    assert sim.wait(60) == 0, sim.stderr.read()  # allowed: write the pipeline's topic
    spark = login(kafka_cluster, "spark")  # allowed: read it, in a group named as Spark names its own
    read = read_topic(
        kafka_cluster.bootstrap, cluster_topic, 20, login=spark, group_prefix=SPARK_GROUP_PREFIX
    )
    assert len(read) == 20

    # The producer cannot read it.
    consumer = Consumer({**kafka_cluster.client_config("producer"), "group.id": "producer-read-attempt"})
    consumer.assign([TopicPartition(cluster_topic, p, 0) for p in range(3)])
    try:
        polled = [m for _ in range(10) for m in consumer.consume(10, timeout=1.0)]
    finally:
        consumer.close()
    assert all(m.error() for m in polled), "the producer read records"
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in {m.error().code() for m in polled}, polled

    # ...nor write a topic without its ACLs (which exists: the admin made it).
    unlisted = f"{cluster_topic}-unlisted"
    admin = AdminClient(kafka_cluster.client_config("admin"))
    admin.create_topics([NewTopic(unlisted, 1, 3)])[unlisted].result(30)
    sim = order_sim(kafka_cluster, unlisted, "--count", "5")
    _, err = sim.communicate(timeout=60)
    assert sim.returncode != 0 and "not authorized to write topic" in err, err[-2000:]

    # The Spark principal cannot write the pipeline's topic.
    failures: list[KafkaError] = []
    producer = Producer({**kafka_cluster.client_config("spark"), "message.timeout.ms": 10_000})
    producer.produce(cluster_topic, b"{}", on_delivery=lambda error, _: failures.append(error))
    producer.flush(20)
    assert failures and failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failures
