"""Independent validation of order events in plain Python: the test suite's own reading of the
contract, written apart from the Spark jobs so that it can check them."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from shopstream.catalogue import product_catalogue, region_codes
from shopstream.contract import ORDER_FIELDS, ORDER_STATUSES

ORDER_ID_PREFIX = "ORD-"  # how order-sim names its orders


def problems(payload: bytes | str) -> list[str]:
    """Every reason the payload is not a valid order event; empty if it is valid."""
    try:
        event = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ["not valid JSON"]
    if not isinstance(event, dict):
        return ["not a JSON object"]
    found = []
    for name, kind in ORDER_FIELDS:
        value = event.get(name)
        if value is None:
            found.append(f"missing {name}")
        elif kind is float and not (isinstance(value, int | float) and not isinstance(value, bool)):
            found.append(f"{name} not a number")
        elif kind is not float and not isinstance(value, kind):
            found.append(f"{name} not {kind.__name__}")
    if found:
        return found
    if not event["order_id"].startswith(ORDER_ID_PREFIX):
        found.append("order_id prefix")
    if event["order_status"] not in ORDER_STATUSES:
        found.append("unknown status")
    if event["quantity"] <= 0:
        found.append("quantity not positive")
    if event["unit_price"] <= 0:
        found.append("price not positive")
    if event["region"] not in region_codes():
        found.append("unknown region")
    product = product_catalogue().get(event["product_id"])
    if product is None:
        found.append("unknown product")
    elif (product["product_name"], product["category"], Decimal(product["unit_price"])) != (
        event["product_name"],
        event["category"],
        Decimal(str(event["unit_price"])),
    ):
        found.append("product fields differ from the catalogue")
    ts = event["timestamp"]
    try:
        if not ts.endswith("Z"):
            raise ValueError
        datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        found.append("timestamp not ISO-8601 UTC")
    return found
