"""The order-event schema, defined once and shared by the producer's tests and every Spark job.

The Rust producer (`crates/order-sim`) writes exactly these JSON fields. Spark types are built
lazily so that importing this module (e.g. while Airflow parses a DAG) does not import pyspark.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from typing import TYPE_CHECKING

from shopstream.config import PRODUCTS_CSV, REGIONS_CSV

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

NEW, CANCELLED, RETURNED = "NEW", "CANCELLED", "RETURNED"
ORDER_STATUSES = (NEW, CANCELLED, RETURNED)

# (field, JSON type): the producer's contract.
ORDER_FIELDS: tuple[tuple[str, type], ...] = (
    ("order_id", str),
    ("customer_id", str),
    ("product_id", str),
    ("product_name", str),
    ("category", str),
    ("quantity", int),
    ("unit_price", float),
    ("order_status", str),
    ("region", str),
    ("timestamp", str),
)
ORDER_FIELD_NAMES = tuple(name for name, _ in ORDER_FIELDS)
# An event's identity. A re-delivered event (a producer retry, a replayed batch, a resent file)
# repeats all three; no two distinct events share them (an order has one NEW event and at most one
# CANCELLED or RETURNED, each at its own time). Every event is counted once per identity.
EVENT_IDENTITY = ("order_id", "order_status", "timestamp")

# The `order_updates` topic: one status change per CANCELLED/RETURNED order event, same order_id
# and timestamp (the producer's contract).
UPDATE_FIELD_NAMES = ("order_id", "new_status", "reason", "timestamp")
UPDATE_STATUSES = (CANCELLED, RETURNED)

ORDER_ID_PREFIX = "ORD-"
# data/regions.csv, as a Spark DDL schema (read with the header, never inferred).
REGIONS_DDL = (
    "region_code string, region_name string, country string, continent string, currency string, weight int"
)
# Money is exact to the cent: Decimal(12, 2) in Spark, never a float sum.
MONEY_PRECISION, MONEY_SCALE = 12, 2


def order_spark_schema() -> StructType:
    """Explicit Spark schema of an order event (no inference anywhere)."""
    from pyspark.sql.types import DecimalType, IntegerType, StringType, StructField, StructType

    spark_types = {
        "quantity": IntegerType(),
        "unit_price": DecimalType(MONEY_PRECISION, MONEY_SCALE),
    }
    return StructType(
        [StructField(name, spark_types.get(name, StringType()), True) for name in ORDER_FIELD_NAMES]
    )


def update_spark_schema() -> StructType:
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([StructField(name, StringType(), True) for name in UPDATE_FIELD_NAMES])


@lru_cache(maxsize=1)
def product_catalogue() -> dict[str, dict[str, str]]:
    """product_id -> {product_name, category, unit_price, weight} from data/products.csv."""
    with PRODUCTS_CSV.open(newline="") as f:
        return {row["product_id"]: row for row in csv.DictReader(f)}


@lru_cache(maxsize=1)
def region_codes() -> tuple[str, ...]:
    with REGIONS_CSV.open(newline="") as f:
        return tuple(row["region_code"] for row in csv.DictReader(f))
