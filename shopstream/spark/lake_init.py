"""Creates shopstream's namespace in the Iceberg catalog (idempotent) and prints the settings
another tool needs to read its tables (`shopstream.lake`).

    .venv/bin/python -m shopstream.spark.lake_init
"""

from __future__ import annotations

import sys

from shopstream.lake import CATALOG, LakeSettings, lake_settings, namespace
from shopstream.spark.session import get_spark


def init(spark=None) -> LakeSettings:
    """The namespace `lake.shopstream`, created through Spark SQL if missing; the settings."""
    spark = spark or get_spark("shopstream-lake-init", lake=True)
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace()}")
    return lake_settings()


def main() -> int:
    settings = init()
    print(f"catalog {CATALOG} (JDBC) at {settings.jdbc_uri}")
    print(f"warehouse {settings.warehouse}, namespace {namespace()}")
    print(f"PyIceberg: SqlCatalog({CATALOG!r}, uri=<the catalog database>, warehouse={settings.warehouse!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
