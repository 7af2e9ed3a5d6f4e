"""The Iceberg catalog (issue 31, first slice): a table Spark SQL writes through shopstream's
catalog settings is read back by another process with PyIceberg + DuckDB alone, through the same
catalog database in the project's PostgreSQL, without importing shopstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shopstream.lake import CATALOG, lake_settings, namespace, pyiceberg_properties

pytestmark = pytest.mark.integration

WRITE = """
from shopstream.lake import spark_table
from shopstream.spark.lake_init import init
from shopstream.spark.session import get_spark

spark = get_spark("lake-test", {"spark.ui.enabled": "false"}, lake=True)
init(spark)
probe = spark_table("hourly_probe")
spark.sql(f'''CREATE TABLE {probe}
             (date DATE, hour TIMESTAMP, orders BIGINT, net_revenue DECIMAL(38,2))
             USING iceberg PARTITIONED BY (date)''')
spark.sql(f'''INSERT INTO {probe} VALUES
             (DATE'2026-12-03', TIMESTAMP'2026-12-03 10:00:00', 12, 1234.56),
             (DATE'2026-12-03', TIMESTAMP'2026-12-03 11:00:00', 3, -20.00),
             (DATE'2026-12-04', TIMESTAMP'2026-12-04 09:00:00', 7, 21474836467852516353.00)''')
print(spark.sql(f"SELECT count(*) FROM {probe}").collect()[0][0])
"""

# What a user's notebook does: PyIceberg and DuckDB only.
READ = f"""
import json, os, sys
from pyiceberg.catalog.sql import SqlCatalog

catalog = SqlCatalog("{CATALOG}", **json.loads(os.environ["CATALOG"]))
table = catalog.load_table(os.environ["NAMESPACE"] + ".hourly_probe")
con = table.scan(row_filter="date = '2026-12-03'").to_duckdb("hourly")
rows = con.execute("SELECT count(*), sum(orders), sum(net_revenue)::VARCHAR FROM hourly").fetchall()
total = table.scan().to_arrow().column("net_revenue").to_pylist()
print(json.dumps({{"day": rows[0], "all": [str(v) for v in sorted(total)],
                  "partitioned_by": str(table.spec()), "shopstream": "shopstream" in sys.modules}}))
"""


def run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_table_spark_writes_is_read_by_pyiceberg_and_duckdb_without_shopstream(
    serving_db, tmp_path: Path, monkeypatch
):
    env = {"SHOPSTREAM_SERVING_DB": serving_db.dsn, "SHOPSTREAM_WAREHOUSE": (tmp_path / "warehouse").as_uri()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert run(WRITE, env) == "3"

    # The reader gets only the two settings a user would paste (what `lake_init` prints).
    settings = {"CATALOG": json.dumps(pyiceberg_properties(lake_settings())), "NAMESPACE": namespace()}
    read = json.loads(run(READ, settings))
    assert read["day"] == [2, 15, "1214.56"]
    assert read["all"] == ["-20.00", "1234.56", "21474836467852516353.00"]
    assert "date" in read["partitioned_by"] and read["shopstream"] is False
    assert list((tmp_path / "warehouse").rglob("*.parquet")), "the data files are Parquet in the warehouse"


@pytest.fixture
def no_lake_overrides(monkeypatch):
    """Only the Connection `shopstream_lake` says where the catalog is (no SHOPSTREAM_* override)."""
    for name in ("SHOPSTREAM_LAKE_CATALOG", "SHOPSTREAM_WAREHOUSE", "SHOPSTREAM_LAKE_IO"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("form", ["get_uri", "as_json"])
def test_the_lake_connection_airflow_renders_for_a_task_names_the_catalog_and_warehouse(
    form, no_lake_overrides, monkeypatch
):
    """The DAGs' tasks get the catalog as Airflow renders the Connection `shopstream_lake`
    (`{{ conn.shopstream_lake.get_uri() }}`; a user's AIRFLOW_CONN_* may hold the JSON form): the
    same settings come back out of either."""
    from airflow.sdk import Connection

    from shopstream.lake import LAKE_CONN_ENV, LAKE_CONN_ID, LakeSettings, airflow_connection

    wanted = LakeSettings(host="catalog.internal", port=6432, database="lake", user="etl@shop",
                          password="p@ss:/word", warehouse="s3a://analytics/warehouse", io=S3_IO)  # fmt: skip
    fields = airflow_connection(wanted)
    connection = Connection(conn_id=LAKE_CONN_ID, **{**fields, "extra": json.dumps(fields["extra"])})
    rendered = getattr(connection, form)()
    monkeypatch.setenv(LAKE_CONN_ENV, rendered)
    assert lake_settings() == wanted


def test_the_client_settings_name_the_same_catalog_for_pyiceberg_spark_sql_and_trino(tmp_path):
    from shopstream.lake import LakeSettings, write_client_settings

    settings = LakeSettings("127.0.0.1", 5433, "shopstream_catalog", "lake user", "p@ss", "file:///w")
    written = write_client_settings(settings, tmp_path)
    assert all(oct(file.stat().st_mode)[-3:] == "600" for file in written)  # they hold the password
    trino = dict(
        line.split("=", 1) for line in (tmp_path / "trino" / f"{CATALOG}.properties").read_text().splitlines()
    )
    assert (
        trino["iceberg.jdbc-catalog.connection-url"] == "jdbc:postgresql://127.0.0.1:5433/shopstream_catalog"
    )
    assert trino["iceberg.jdbc-catalog.default-warehouse-dir"] == "file:///w"
    assert f"{CATALOG}.uri jdbc:postgresql://127.0.0.1:5433/shopstream_catalog" in (
        tmp_path / "spark-lake.conf"
    ).read_text().replace("spark.sql.catalog.", "")


S3_IO = {
    "s3.endpoint": "http://minio.internal:9000", "s3.path-style-access": "true", "client.region": "eu-west-1",
    "s3.access-key-id": "AKIA1", "s3.secret-access-key": "s/cr: #t",
}  # fmt: skip


def test_a_warehouse_in_s3_gets_each_engines_names_for_the_same_file_io_settings(tmp_path):
    from shopstream.lake import LakeSettings, write_client_settings

    settings = LakeSettings("127.0.0.1", 5433, "shopstream_catalog", "u", "p", "s3://bucket/wh", S3_IO)
    write_client_settings(settings, tmp_path)
    trino = dict(
        line.split("=", 1) for line in (tmp_path / "trino" / f"{CATALOG}.properties").read_text().splitlines()
    )
    spark = dict(line.split(" ", 1) for line in (tmp_path / "spark-lake.conf").read_text().splitlines())
    import yaml

    pyiceberg = yaml.safe_load((tmp_path / ".pyiceberg.yaml").read_text())["catalog"][CATALOG]
    assert {k: trino[k] for k in trino if k.startswith(("s3.", "fs."))} == {
        "fs.native-s3.enabled": "true", "s3.endpoint": "http://minio.internal:9000", "s3.region": "eu-west-1",
        "s3.path-style-access": "true", "s3.aws-access-key": "AKIA1", "s3.aws-secret-key": "s/cr: #t",
    }  # fmt: skip
    prefix = f"spark.sql.catalog.{CATALOG}."
    assert {k.removeprefix(prefix): v for k, v in spark.items() if k.startswith(f"{prefix}s3.")} == {
        k: v for k, v in S3_IO.items() if k.startswith("s3.")
    }
    assert spark[f"{prefix}io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert spark[f"{prefix}client.region"] == "eu-west-1"
    assert {k: str(v) for k, v in pyiceberg.items() if k.startswith("s3.")} == {
        "s3.endpoint": "http://minio.internal:9000", "s3.region": "eu-west-1",
        "s3.access-key-id": "AKIA1", "s3.secret-access-key": "s/cr: #t",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("warehouse", "io", "io_impl"),
    [
        ("file:///w", {}, None),
        ("hdfs://nn/w", {}, None),
        ("s3a://bucket/w", {}, "org.apache.iceberg.aws.s3.S3FileIO"),
        ("s3://bucket/w", {"io-impl": "com.example.FileIO"}, "com.example.FileIO"),
    ],
)
def test_object_storage_is_read_through_s3_file_io_unless_another_is_named(warehouse, io, io_impl):
    from shopstream.lake import LakeSettings, spark_conf

    conf = spark_conf(LakeSettings("h", 1, "d", "u", "p", warehouse, io))
    assert conf.get(f"spark.sql.catalog.{CATALOG}.io-impl") == io_impl


def test_only_file_io_properties_of_the_connections_extras_are_taken(no_lake_overrides, monkeypatch):
    from shopstream.lake import LAKE_CONN_ENV

    extra = {
        "warehouse": "s3://b/w",
        "sslmode": "require",
        "s3.endpoint": "http://s3:9000",
        "client.region": "r",
    }
    monkeypatch.setenv(LAKE_CONN_ENV, json.dumps({"conn_type": "postgres", "host": "h", "extra": extra}))
    assert lake_settings().io == {"s3.endpoint": "http://s3:9000", "client.region": "r"}


def test_a_job_without_any_catalog_configured_is_told_what_to_do(tmp_path, monkeypatch):
    from shopstream.lake import LAKE_CONN_ENV
    from shopstream.lake_check import LakeCheckError, check_lake

    for name in ("SHOPSTREAM_LAKE_CATALOG", "SHOPSTREAM_SERVING_DB", "AIRFLOW_CONN_SHOPSTREAM_SERVING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(LAKE_CONN_ENV, raising=False)
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(tmp_path))  # no local database's file there
    with pytest.raises(LakeCheckError, match=r"no catalog database for the tables: run `make db-up`"):
        check_lake()
