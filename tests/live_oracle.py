"""The live store's numbers computed in plain Python from the events read back from Kafka (the
suite's own reading of the revenue rule: NEW books, CANCELLED and RETURNED reverse), and the
store's tables read back the same shape, for comparison."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from tests import oracle
from tests.kafka_read import Message, distinct_events


def _minute(timestamp: str) -> datetime:
    return (
        datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        .astimezone(UTC)
        .replace(second=0, microsecond=0)
    )


def truth(messages: list[Message]) -> dict:
    """{'sales': {(minute, region, category): (orders, cancelled, returned, units, gross,
    reversals, net)}, 'products': {(minute, product_id): (orders, units, net)}, 'totals':
    {minute: (...as sales)}, 'records', 'quarantined'}: each valid event counted once."""
    valid = [json.loads(m.value) for m in messages if not oracle.problems(m.value)]
    events = distinct_events(valid)
    sales: dict = defaultdict(lambda: [0, 0, 0, 0, Decimal(0), Decimal(0), Decimal(0)])
    products: dict = defaultdict(lambda: [0, 0, Decimal(0)])
    totals: dict = defaultdict(lambda: [0, 0, 0, 0, Decimal(0), Decimal(0), Decimal(0)])
    for e in events:
        amount = e["quantity"] * Decimal(str(e["unit_price"]))
        new = e["order_status"] == "NEW"
        sign = 1 if new else -1
        minute = _minute(e["timestamp"])
        for row in (sales[(minute, e["region"], e["category"])], totals[minute]):
            row[0] += new
            row[1] += e["order_status"] == "CANCELLED"
            row[2] += e["order_status"] == "RETURNED"
            row[3] += sign * e["quantity"]
            row[4 if new else 5] += amount
            row[6] += sign * amount
        product = products[(minute, e["product_id"])]
        product[0] += new
        product[1] += sign * e["quantity"]
        product[2] += sign * amount
    return {
        "sales": {k: tuple(v) for k, v in sales.items()},
        "products": {k: tuple(v) for k, v in products.items()},
        "totals": {k: tuple(v) for k, v in totals.items()},
        "records": len(events) + len(messages) - len(valid),
        "quarantined": len(messages) - len(valid),
    }


def store(dsn: str) -> dict:
    """The same numbers as the store holds them."""
    with psycopg.connect(dsn) as conn:
        sales = conn.execute(
            "SELECT minute, region, category, orders, cancelled, returned, units, gross, reversals, net "
            "FROM live_sales"
        ).fetchall()
        products = conn.execute("SELECT minute, product_id, orders, units, net FROM live_products").fetchall()
        totals = conn.execute(
            "SELECT minute, orders, cancelled, returned, units, gross, reversals, net FROM live_totals"
        ).fetchall()
        records, quarantined = conn.execute(
            "SELECT coalesce(sum(records), 0), coalesce(sum(quarantined), 0) FROM live_intake"
        ).fetchone()
    return {
        "sales": {tuple(r[:3]): tuple(r[3:]) for r in sales},
        "products": {tuple(r[:2]): tuple(r[2:]) for r in products},
        "totals": {r[0]: tuple(r[1:]) for r in totals},
        "records": records,
        "quarantined": quarantined,
    }
