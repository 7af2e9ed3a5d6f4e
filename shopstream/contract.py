"""The order-event contract, read from `contracts/order_event.schema.json` (JSON Schema): the
single source of field names, types, statuses, money precision, the event's identity, the
`order_updates` record and the topic names, shared with the Rust producer (its build script
reads the same file).

Imports nothing of shopstream but `home` (where the file is), so every module may import it.
Spark types are built lazily so that importing this module (e.g. while Airflow parses a DAG)
does not import pyspark.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING

from shopstream.home import REPO_ROOT

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

CONTRACT_FILE = REPO_ROOT / "contracts" / "order_event.schema.json"
if not CONTRACT_FILE.is_file():
    raise FileNotFoundError(
        f"the event contract {CONTRACT_FILE} is missing: an installed shopstream needs SHOPSTREAM_HOME, a "
        "folder with its contracts/, config/ and data/ (a checkout; README, 'Deploy into your Airflow')"
    )
CONTRACT: dict = json.loads(CONTRACT_FILE.read_text())
UPDATE_CONTRACT: dict = CONTRACT["$defs"]["order_update"]

_JSON_TYPES = {"string": str, "integer": int, "number": float}

# (field, JSON type) in the contract's order: what the producer writes.
ORDER_FIELDS: tuple[tuple[str, type], ...] = tuple(
    (name, _JSON_TYPES[spec["type"]]) for name, spec in CONTRACT["properties"].items()
)
ORDER_FIELD_NAMES = tuple(name for name, _ in ORDER_FIELDS)
ORDER_STATUSES: tuple[str, ...] = tuple(CONTRACT["properties"]["order_status"]["enum"])
NEW, CANCELLED, RETURNED = ORDER_STATUSES
# Ids that must hold a non-blank string (the contract's `minLength` 1 and a non-space).
REQUIRED_IDS = tuple(n for n, spec in CONTRACT["properties"].items() if spec.get("minLength", 0) >= 1)
# An event's identity. A re-delivered event (a producer retry, a replayed batch, a resent file)
# repeats all three; no two distinct events share them (an order has one NEW event and at most one
# CANCELLED or RETURNED, each at its own time). Every event is counted once per identity.
EVENT_IDENTITY: tuple[str, ...] = tuple(CONTRACT["x-identity"])
# Money is exact to the cent: Decimal(12, 2) in Spark, never a float sum.
MONEY_PRECISION: int = CONTRACT["properties"]["unit_price"]["x-money"]["precision"]
MONEY_SCALE: int = CONTRACT["properties"]["unit_price"]["x-money"]["scale"]
# The largest price, and the largest amount (quantity x unit_price) of one event: rule `money`.
MAX_MONEY: Decimal = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE) - Decimal(1).scaleb(-MONEY_SCALE)
# Every figure summed from events: a day of events at MAX_MONEY each cannot reach its 36 digits.
SUM_MONEY_PRECISION = 38
MAX_QUANTITY: int = CONTRACT["properties"]["quantity"]["maximum"]

# The `order_updates` topic: one status change per CANCELLED/RETURNED order event, same order_id
# and timestamp.
UPDATE_FIELD_NAMES = tuple(UPDATE_CONTRACT["properties"])
UPDATE_STATUSES: tuple[str, ...] = tuple(UPDATE_CONTRACT["properties"]["new_status"]["enum"])

ORDERS_TOPIC: str = CONTRACT["x-topics"]["orders"]
UPDATES_TOPIC: str = CONTRACT["x-topics"]["updates"]
DEFAULT_KAFKA_BOOTSTRAP: str = CONTRACT["x-default-bootstrap"]


def update_spark_schema() -> StructType:
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([StructField(name, StringType(), True) for name in UPDATE_FIELD_NAMES])
