"""Makes shopstream's namespace and tables in the Iceberg catalog from Spark, each only if missing,
and prints the settings another tool needs to read them (`shopstream.lake`).

    .venv/bin/python -m shopstream.spark.lake_init
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from shopstream.lake import CATALOG, LakeSettings, lake_settings, namespace, spark_table
from shopstream.spark.session import get_spark


def ensure_namespace(spark: SparkSession) -> None:
    """The tables' namespace, created if missing. Call it once before concurrent table creations:
    two creations of the namespace at once collide in the catalog's database."""
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace()}")


def ensure_table(spark: SparkSession, table: str, schema: StructType, partitioned_by: str,
                 properties: dict[str, str] | None = None) -> str:  # fmt: skip
    """The table `table` (in `namespace()`), created if missing with `schema`'s columns, all
    nullable, partitioned by `partitioned_by` (Spark SQL transforms, e.g. "date, bucket(4,
    product_id)") and with `properties`; its Spark SQL name. A table another job creates
    meanwhile is the same table: Spark's IF NOT EXISTS leaves it be (no snapshot is written)."""
    name = spark_table(table)
    if spark.catalog.tableExists(name):
        return name
    ensure_namespace(spark)
    columns = ", ".join(f"`{field.name}` {field.dataType.simpleString()}" for field in schema.fields)
    pairs = ", ".join(f"'{key}' = '{value}'" for key, value in (properties or {}).items())
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {name} ({columns}) USING iceberg PARTITIONED BY ({partitioned_by})"
        + (f" TBLPROPERTIES ({pairs})" if pairs else "")
    )
    return name


def init(spark=None) -> LakeSettings:
    """The namespace `lake.shopstream`, created through Spark SQL if missing; the settings."""
    spark = spark or get_spark("shopstream-lake-init", lake=True)
    ensure_namespace(spark)
    return lake_settings()


def main() -> int:
    settings = init()
    print(f"catalog {CATALOG} (JDBC) at {settings.jdbc_uri}")
    print(f"warehouse {settings.warehouse}, namespace {namespace()}")
    print(f"PyIceberg: SqlCatalog({CATALOG!r}, uri=<the catalog database>, warehouse={settings.warehouse!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
