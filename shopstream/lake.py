"""The Iceberg catalog shopstream's tables live in (issue 31): where it is, and how Spark and
PyIceberg reach it. Any engine that speaks Iceberg's JDBC catalog (Spark SQL, PyIceberg + DuckDB,
Trino, Flink) reads the tables with these settings and no shopstream code.

Embedded default: a JDBC catalog in the project's own PostgreSQL (database `shopstream_catalog`
beside the serving store, made by `make db-up`), files under `data/warehouse`. Configuration
alone points it elsewhere:

- `SHOPSTREAM_LAKE_CATALOG`: the catalog database as a libpq URI
  (postgresql://user:pass@host:port/db), or the Airflow Connection `AIRFLOW_CONN_SHOPSTREAM_LAKE`;
- `SHOPSTREAM_WAREHOUSE`: the warehouse URI (file:///..., s3a://bucket/path, hdfs://...).

    python -m shopstream.spark.lake_init    # the namespace, and the settings for other tools
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from shopstream.config import airflow_connection_uri, paths, serving_db_dsn

CATALOG = "lake"  # the catalog's name in Spark SQL: lake.shopstream.<table>
NAMESPACE = "shopstream"
CATALOG_DATABASE = "shopstream_catalog"
LAKE_CONN_ID = "shopstream_lake"  # an Airflow `postgres` Connection id
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


@dataclass(frozen=True)
class LakeSettings:
    """Where the catalog's database and the tables' files are."""

    host: str
    port: int
    database: str
    user: str  # as they are, not URI-encoded
    password: str
    warehouse: str  # a URI

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
    airflow_conn = os.environ.get(f"AIRFLOW_CONN_{LAKE_CONN_ID.upper()}")
    if airflow_conn:
        return airflow_connection_uri(airflow_conn)
    # The serving store's server, its catalog database.
    parts = urlsplit(serving_db_dsn())
    return urlunsplit(parts._replace(path=f"/{CATALOG_DATABASE}"))


def lake_settings() -> LakeSettings:
    """The catalog by configuration (see the module's docstring)."""
    parts = urlsplit(_catalog_dsn())
    warehouse = os.environ.get("SHOPSTREAM_WAREHOUSE") or paths().warehouse.resolve().as_uri()
    return LakeSettings(
        host=parts.hostname or "127.0.0.1", port=parts.port or 5432, database=parts.path.lstrip("/"),
        user=unquote(parts.username or ""), password=unquote(parts.password or ""), warehouse=warehouse,
    )  # fmt: skip


def iceberg_jars(required: bool = True) -> list[str]:
    """Iceberg's Spark runtime and the catalog's JDBC driver, as `make setup` resolved them."""
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
    }


def pyiceberg_properties(settings: LakeSettings) -> dict[str, str]:
    """PyIceberg's `SqlCatalog(CATALOG, **these)`: the same catalog without a JVM."""
    return {"uri": settings.sqlalchemy_uri, "warehouse": settings.warehouse}
