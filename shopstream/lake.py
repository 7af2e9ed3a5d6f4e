"""The Iceberg catalog shopstream's tables live in (issue 31): where it is, and how Spark and
PyIceberg reach it. Any engine that speaks Iceberg's JDBC catalog (Spark SQL, PyIceberg + DuckDB,
Trino, Flink) reads the tables with these settings and no shopstream code.

Embedded default: a JDBC catalog in the project's own PostgreSQL (database `shopstream_catalog`
beside the serving store, made by `make db-up`), files under `data/warehouse`. Configuration
alone points it elsewhere:

- `SHOPSTREAM_LAKE_CATALOG`: the catalog database as a libpq URI
  (postgresql://user:pass@host:port/db), or the Airflow Connection `shopstream_lake` (a
  `postgres` Connection; its extra `warehouse` names the warehouse). The DAGs' tasks resolve that
  Connection when they run (`shopstream.airflow.connections.use_lake_connection`, and the Spark
  jobs' environment), so a deployment defines it once like the others;
- `SHOPSTREAM_WAREHOUSE`: the warehouse URI (file:///..., s3://bucket/path, hdfs://...);
- `SHOPSTREAM_LAKE_IO`: Iceberg's file-IO catalog properties as a JSON object, or the Connection's
  extras of that name (`s3.endpoint`, `s3.access-key-id`, `s3.secret-access-key`,
  `s3.path-style-access`, `client.region`, `io-impl`): an s3://, s3a:// or s3n:// warehouse is
  read and written through Iceberg's S3FileIO, its credentials else from the AWS default chain;
- `SHOPSTREAM_LAKE_NAMESPACE`: the namespace of the tables (default `shopstream`; the tests give
  each module its own).

    python -m shopstream.spark.lake_init    # the namespace, and the settings for other tools
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from shopstream.config import airflow_connection_extra, airflow_connection_uri, paths, serving_db_dsn

CATALOG = "lake"  # the catalog's name in Spark SQL: lake.shopstream.<table>
NAMESPACE = "shopstream"  # the default of `namespace()`
CATALOG_DATABASE = "shopstream_catalog"
LAKE_CONN_ID = "shopstream_lake"  # an Airflow `postgres` Connection id
LAKE_CONN_ENV = f"AIRFLOW_CONN_{LAKE_CONN_ID.upper()}"  # where Airflow passes it to a process
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
LAKE_IO_ENV = "SHOPSTREAM_LAKE_IO"
IO_PROPERTY_PREFIXES = ("s3.", "client.", "io-impl")  # Iceberg's file-IO catalog properties
S3_SCHEMES = ("s3", "s3a", "s3n")  # what Iceberg's S3FileIO, PyIceberg and Trino's S3 file system read
S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"
# Iceberg's (Java) property -> PyIceberg's and Trino's names of the same setting.
PYICEBERG_IO_NAMES = {"client.region": "s3.region"}
TRINO_IO_NAMES = {
    "s3.endpoint": "s3.endpoint",
    "client.region": "s3.region",
    "s3.path-style-access": "s3.path-style-access",
    "s3.access-key-id": "s3.aws-access-key",
    "s3.secret-access-key": "s3.aws-secret-key",
}


@dataclass(frozen=True)
class LakeSettings:
    """Where the catalog's database and the tables' files are."""

    host: str
    port: int
    database: str
    user: str  # as they are, not URI-encoded
    password: str
    warehouse: str  # a URI
    io: dict[str, str] = field(default_factory=dict)  # Iceberg's file-IO properties (`s3.endpoint`...)

    @property
    def in_object_storage(self) -> bool:
        return urlsplit(self.warehouse).scheme in S3_SCHEMES

    @property
    def jdbc_uri(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    @property
    def sqlalchemy_uri(self) -> str:
        """The same database as PyIceberg's SqlCatalog reaches it."""
        login = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql+psycopg2://{login}@{self.host}:{self.port}/{self.database}"


def _catalog_dsn() -> str:
    if os.environ.get("SHOPSTREAM_LAKE_CATALOG"):
        return os.environ["SHOPSTREAM_LAKE_CATALOG"]
    airflow_conn = os.environ.get(LAKE_CONN_ENV)
    if airflow_conn:
        return airflow_connection_uri(airflow_conn)
    # The serving store's server, its catalog database.
    parts = urlsplit(serving_db_dsn())
    return urlunsplit(parts._replace(path=f"/{CATALOG_DATABASE}"))


def _connection_extra() -> dict[str, str]:
    """The extras of the Airflow Connection `shopstream_lake`, if one is set."""
    value = os.environ.get(LAKE_CONN_ENV)
    return airflow_connection_extra(value) if value else {}


def _io_properties(extra: dict[str, str]) -> dict[str, str]:
    """SHOPSTREAM_LAKE_IO, else the file-IO properties among the Connection's `extra`."""
    if os.environ.get(LAKE_IO_ENV):
        return {str(k): str(v) for k, v in json.loads(os.environ[LAKE_IO_ENV]).items()}
    return {k: v for k, v in extra.items() if k.startswith(IO_PROPERTY_PREFIXES)}


def lake_settings() -> LakeSettings:
    """The catalog by configuration (see the module's docstring)."""
    parts = urlsplit(_catalog_dsn())
    extra = _connection_extra()  # parsed once: its JSON form goes through Airflow's Connection
    warehouse = (os.environ.get("SHOPSTREAM_WAREHOUSE") or extra.get("warehouse")
                 or paths().warehouse.resolve().as_uri())  # fmt: skip
    return LakeSettings(
        host=parts.hostname or "127.0.0.1", port=parts.port or 5432, database=parts.path.lstrip("/"),
        user=unquote(parts.username or ""), password=unquote(parts.password or ""), warehouse=warehouse,
        io=_io_properties(extra),
    )  # fmt: skip


def iceberg_io(settings: LakeSettings) -> dict[str, str]:
    """The file-IO properties Iceberg's Java catalogs get: S3FileIO for object storage unless
    another `io-impl` is named (Iceberg's default, Hadoop's file systems, reads no s3:// here)."""
    default = {"io-impl": S3_FILE_IO} if settings.in_object_storage else {}
    return {**default, **settings.io}


def iceberg_jars(required: bool = True) -> list[str]:
    """Iceberg's Spark runtime, its AWS bundle (S3FileIO) and the catalog's JDBC driver, as `make
    setup` resolved them."""
    jars = sorted(str(p) for p in paths().iceberg_jars.glob("*.jar"))
    if required and not jars:
        raise RuntimeError(f"no Iceberg jars in {paths().iceberg_jars}: run `make setup`")
    return jars


def spark_conf(settings: LakeSettings) -> dict[str, str]:
    """Spark's settings for the catalog `lake` (the jars come from `iceberg_jars`)."""
    prefix = f"spark.sql.catalog.{CATALOG}"
    return {
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": settings.jdbc_uri,
        f"{prefix}.jdbc.user": settings.user,
        f"{prefix}.jdbc.password": settings.password,
        f"{prefix}.warehouse": settings.warehouse,
        # The catalog's schema with views (as PyIceberg makes it too): without, Spark refuses even
        # to look up whether a table exists.
        f"{prefix}.jdbc.schema-version": "V1",
        # PyIceberg commits too (publication): a session never plans on a table state it cached.
        f"{prefix}.cache-enabled": "false",
        **{f"{prefix}.{key}": value for key, value in iceberg_io(settings).items()},
    }


def airflow_connection(settings: LakeSettings) -> dict:
    """The Airflow Connection `shopstream_lake` (JSON form) of these settings: the catalog's
    PostgreSQL database, the warehouse URI and the file-IO properties in its extra."""
    return {"conn_type": "postgres", "host": settings.host, "port": settings.port, "login": settings.user,
            "password": settings.password, "schema": settings.database,
            "extra": {"warehouse": settings.warehouse, **settings.io}}  # fmt: skip


def pyiceberg_properties(settings: LakeSettings) -> dict[str, str]:
    """PyIceberg's `SqlCatalog(CATALOG, **these)`: the same catalog without a JVM (its file IO
    chosen by the warehouse's scheme)."""
    return {"uri": settings.sqlalchemy_uri, "warehouse": settings.warehouse, **_pyiceberg_io(settings.io)}


def _pyiceberg_io(io: dict[str, str]) -> dict[str, str]:
    """`io` by PyIceberg's names. It addresses S3 buckets by path unless forced to virtual hosts."""
    named = {PYICEBERG_IO_NAMES.get(k, k): v for k, v in io.items() if k != "io-impl"}
    if named.pop("s3.path-style-access", "true").lower() == "false":
        named["s3.force-virtual-addressing"] = "true"
    return named


def namespace() -> str:
    """The namespace of shopstream's tables: SHOPSTREAM_LAKE_NAMESPACE, else `shopstream`."""
    return os.environ.get("SHOPSTREAM_LAKE_NAMESPACE") or NAMESPACE


def table_id(name: str) -> str:
    """A table's identifier in PyIceberg (`shopstream.hourly_sales`)."""
    return f"{namespace()}.{name}"


def spark_table(name: str) -> str:
    """A table's name in Spark SQL (`lake.shopstream.hourly_sales`)."""
    return f"{CATALOG}.{table_id(name)}"


def open_catalog():
    """The catalog through PyIceberg (no JVM), by configuration."""
    import logging

    from pyiceberg.catalog.sql import SqlCatalog

    # A catalog Spark made before its views (schema V0) makes PyIceberg warn at every load; it reads
    # and commits tables all the same.
    logging.getLogger("pyiceberg.catalog.sql").setLevel(logging.ERROR)
    return SqlCatalog(CATALOG, **pyiceberg_properties(lake_settings()))


def trino_properties(settings: LakeSettings) -> dict[str, str]:
    """A Trino catalog file (`etc/catalog/lake.properties`) for the same catalog: Trino's Iceberg
    connector with its JDBC catalog (tested with Trino 476), and its file system for the warehouse:
    local files, or its native S3 with the file-IO properties it has names for."""
    properties = {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.catalog-name": CATALOG,
        "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
        "iceberg.jdbc-catalog.connection-url": settings.jdbc_uri,
        "iceberg.jdbc-catalog.connection-user": settings.user,
        "iceberg.jdbc-catalog.connection-password": settings.password,
        "iceberg.jdbc-catalog.default-warehouse-dir": settings.warehouse,
    }
    if settings.warehouse.startswith("file:"):  # Trino reads local files only when told to
        properties |= {"fs.native-local.enabled": "true", "local.location": "/"}
    if settings.in_object_storage:
        properties |= {"fs.native-s3.enabled": "true"}
        properties |= {TRINO_IO_NAMES[k]: v for k, v in settings.io.items() if k in TRINO_IO_NAMES}
    return properties


def write_client_settings(settings: LakeSettings, folder: Path) -> tuple[Path, ...]:
    """The catalog's settings as PyIceberg, spark-sql and Trino read them, in files of mode 600 (they
    hold the catalog's password): `<folder>/.pyiceberg.yaml` (PyIceberg finds it with
    PYICEBERG_HOME), `<folder>/spark-lake.conf` (spark-sql --properties-file) and
    `<folder>/trino/lake.properties` (a Trino catalog file)."""
    (folder / "trino").mkdir(parents=True, exist_ok=True)
    properties = pyiceberg_properties(settings)
    # Each value a JSON string, which YAML reads as a string whatever it holds (a secret's `: #`).
    pyiceberg = f"catalog:\n  {CATALOG}:\n    type: sql\n" + "".join(
        f"    {k}: {json.dumps(v)}\n" for k, v in properties.items()
    )
    spark = {
        **spark_conf(settings), "spark.jars": ",".join(iceberg_jars()), "spark.ui.enabled": "false",
        "spark.sql.catalogImplementation": "in-memory",  # no Hive metastore files in the working folder
    }  # fmt: skip
    texts = {
        folder / ".pyiceberg.yaml": pyiceberg,
        folder / "spark-lake.conf": "".join(f"{k} {v}\n" for k, v in spark.items()),
        folder / "trino" / f"{CATALOG}.properties": "".join(
            f"{k}={v}\n" for k, v in trino_properties(settings).items()
        ),
    }
    for file, text in texts.items():
        file.touch(mode=0o600)
        file.chmod(0o600)
        file.write_text(text)
    return tuple(texts)


def example_queries(date: str, folder: Path) -> list[str]:
    """Commands a user can paste to query a published table of `date` (see `write_client_settings`)."""
    table = table_id("hourly_sales")
    sql = f"SELECT hour, orders, net_revenue FROM {CATALOG}.{table} WHERE date = DATE'{date}' ORDER BY hour"
    pyiceberg = (
        f"from pyiceberg.catalog import load_catalog; t = load_catalog('{CATALOG}').load_table('{table}'); "
        f"print(t.scan(row_filter=\\\"date = '{date}'\\\").to_duckdb('t')"
        ".sql('SELECT hour, orders, net_revenue FROM t ORDER BY hour'))"
    )
    spark_home = Path(find_spec("pyspark").origin).parent  # the wheel's; spark-sql would ask `python3`
    return [
        f'SPARK_HOME={spark_home} .venv/bin/spark-sql --properties-file {folder}/spark-lake.conf -e "{sql}"',
        f'PYICEBERG_HOME={folder} .venv/bin/python -c "{pyiceberg}"',
    ]


def main(argv: list[str] | None = None) -> int:
    """Prints where the tables are and commands that query them (writing their settings files)."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Where shopstream's Iceberg tables are, and how to query them"
    )
    parser.add_argument("--date", required=True, help="a published date, for the example queries")
    args = parser.parse_args(argv)
    settings = lake_settings()
    folder = paths().state / "lake"
    write_client_settings(settings, folder)
    print(f"tables: {CATALOG}.{namespace()}.* (JDBC catalog {settings.jdbc_uri}, files {settings.warehouse})")
    print(f"query them (settings in {folder}, mode 600; a Trino catalog file in {folder}/trino):")
    for command in example_queries(args.date, folder):
        print(f"  {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
