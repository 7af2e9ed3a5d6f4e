"""The tables in object storage, by configuration alone: with the warehouse an s3:// URI of an
S3-compatible server and its endpoint and keys as Iceberg's file-IO properties, the DAG run for
real (dag.test: real broker, spark-submit of the jobs) writes every table there and nothing on the
local disk, Iceberg's maintenance runs on them, and Spark SQL, PyIceberg + DuckDB and Trino read
them with only the settings files a user gets, equal to the oracle over the events in Kafka."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from shopstream import daily_tables, publication
from shopstream.airflow.pipeline import TASK_IDS
from shopstream.airflow.run_local import run_dag
from shopstream.config import ORDERS_TOPIC, paths
from shopstream.devstack.kafka_broker import throwaway_broker
from shopstream.kafka_admin import topic_stats
from shopstream.lake import LAKE_IO_ENV, lake_settings, namespace, write_client_settings
from shopstream.raw_table import RAW_EVENTS
from tests import iceberg_read, lake_readers
from tests.conftest import point_pipeline_at, produce
from tests.kafka_read import read_topic
from tests.s3_server import s3_server

pytestmark = pytest.mark.integration

DATE = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()  # the scheduled run's day
COUNT = 1000


@pytest.fixture(scope="module")
def s3_stack(lake_catalog, tmp_path_factory):
    """A broker, state and data folders of the module's own, and the warehouse in an S3 bucket."""
    home = tmp_path_factory.mktemp("s3lake")
    with (
        throwaway_broker(home / "kafka") as broker,
        s3_server(home) as store,
        pytest.MonkeyPatch.context() as mp,
    ):
        point_pipeline_at(mp, home, broker.bootstrap)
        mp.setenv("SHOPSTREAM_WAREHOUSE", f"s3://{store.bucket}/warehouse")
        mp.setenv(LAKE_IO_ENV, json.dumps(store.iceberg_io()))
        yield broker, store


@pytest.fixture(scope="module")
def scheduled_run(s3_stack) -> dict:
    broker, _ = s3_stack
    produce(broker, ORDERS_TOPIC, "--count", str(COUNT), "--seed", "77", "--malformed-ratio", "0.03",
            "--start", DATE, "--span", "24h")  # fmt: skip
    return run_dag(None, expected_events=COUNT, retries=0, quiet=True)


def test_the_dag_writes_every_table_into_the_bucket_and_nothing_on_local_disk(scheduled_run, s3_stack):
    _, store = s3_stack
    assert scheduled_run["state"] == "success", scheduled_run
    assert {t: i["state"] for t, i in scheduled_run["tasks"].items()} == dict.fromkeys(TASK_IDS, "success")
    assert publication.published(DATE) is not None
    keys = store.object_keys()
    for name in (RAW_EVENTS, *daily_tables.OUTPUTS, publication.PUBLICATIONS):
        location = iceberg_read.table(name).location()
        assert location.startswith(f"s3://{store.bucket}/warehouse/"), (name, location)
        prefix = location.removeprefix(f"s3://{store.bucket}/")
        assert any(k.startswith(f"{prefix}/data/") and k.endswith(".parquet") for k in keys), name
        assert any(k.startswith(f"{prefix}/metadata/") for k in keys), name
    assert not paths().warehouse.exists(), "nothing in the local warehouse"


def test_icebergs_maintenance_runs_on_the_tables_in_the_bucket(scheduled_run):
    """Its orphan-file search lists the table's location through Iceberg's file IO: with Hadoop's
    file systems (no s3:// here) it failed."""
    assert scheduled_run["state"] == "success"
    done = subprocess.run([sys.executable, "-m", "shopstream.spark.table_maintenance", "--retain-days", "0"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert iceberg_read.rows(RAW_EVENTS, "count(*)") == [(COUNT,)], "every event once, after maintenance"


def test_spark_sql_pyiceberg_and_trino_read_the_bucket_with_the_users_settings_and_equal_the_oracle(
    scheduled_run, s3_stack, tmp_path
):
    broker, _ = s3_stack
    assert scheduled_run["state"] == "success"
    write_client_settings(lake_settings(), tmp_path)
    dates = publication.published_dates()
    assert DATE in dates
    produced = topic_stats(ORDERS_TOPIC, broker.bootstrap).messages
    want = lake_readers.oracle_outputs(read_topic(broker.bootstrap, ORDERS_TOPIC, produced), dates)
    assert sum(len(rows) for rows in want.values()) > 50, "the oracle has rows to compare"
    for reader, got in lake_readers.read_everywhere(tmp_path, dates).items():
        assert got == want, (reader, namespace())


def test_the_jobs_check_finds_the_bucket_writable_and_leaves_no_probe_behind(s3_stack):
    from shopstream.lake_check import check_lake

    _, store = s3_stack
    check_lake()
    assert not [key for key in store.object_keys() if "probe" in key]


def test_a_missing_bucket_is_named_with_what_to_check(s3_stack):
    from dataclasses import replace

    from shopstream.lake_check import LakeCheckError, check_lake

    with pytest.raises(LakeCheckError, match=r"warehouse s3://no-such-bucket/w .*bucket exists"):
        check_lake(replace(lake_settings(), warehouse="s3://no-such-bucket/w"))
