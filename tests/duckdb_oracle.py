"""The analytics recomputed with DuckDB SQL from plain event dicts: the suite's independent
reference for every batch output. The revenue rule is written out again here on purpose
(NEW +, CANCELLED -, RETURNED -) rather than imported from the code under test."""

from __future__ import annotations

import csv
from decimal import ROUND_HALF_UP, Decimal

import duckdb

from shopstream.config import REGIONS_CSV

CENT = Decimal("0.01")

EVENTS_DDL = """
CREATE TABLE events (
    order_id VARCHAR, customer_id VARCHAR, product_id VARCHAR, product_name VARCHAR, category VARCHAR,
    quantity INTEGER, unit_price DECIMAL(12,2), order_status VARCHAR, region VARCHAR, ts TIMESTAMP
)"""

BASE = """
CREATE VIEW base AS
SELECT *, CAST(ts AS DATE) AS date, date_trunc('hour', ts) AS hour,
       CAST(quantity * unit_price AS DECIMAL(18,2)) AS amount,
       CASE order_status WHEN 'NEW' THEN 1 ELSE -1 END AS sign
FROM events"""

QUERIES = {
    "rdd_revenue_by_product": """
        SELECT date, product_id, SUM(sign * amount) AS revenue FROM base GROUP BY ALL ORDER BY ALL""",
    "hourly_sales": """
        SELECT date, hour,
               COUNT(*) FILTER (WHERE order_status = 'NEW') AS orders,
               COALESCE(SUM(amount) FILTER (WHERE order_status = 'NEW'), 0) AS gross_revenue,
               COALESCE(SUM(amount) FILTER (WHERE order_status <> 'NEW'), 0) AS reversals,
               SUM(sign * amount) AS net_revenue
        FROM base GROUP BY ALL ORDER BY ALL""",
    "top_products": """
        SELECT date, rank, product_id, net_quantity, net_revenue FROM (
            SELECT date, product_id, SUM(sign * quantity) AS net_quantity, SUM(sign * amount) AS net_revenue,
                   ROW_NUMBER() OVER (PARTITION BY date ORDER BY SUM(sign * quantity) DESC,
                                      SUM(sign * amount) DESC, product_id) AS rank
            FROM base GROUP BY date, product_id)
        WHERE rank <= 10 ORDER BY date, rank""",
    "regional_revenue": """
        SELECT b.date, b.region AS region_code, COALESCE(r.region_name, 'UNKNOWN') AS region_name,
               COUNT(*) FILTER (WHERE order_status = 'NEW') AS orders, SUM(sign * amount) AS net_revenue
        FROM base b LEFT JOIN regions r ON b.region = r.region_code GROUP BY ALL ORDER BY ALL""",
    "sales_by_product": """
        SELECT date, product_id, SUM(sign * quantity) AS net_quantity, SUM(sign * amount) AS net_revenue,
               COUNT(*) FILTER (WHERE order_status = 'NEW') AS orders
        FROM base GROUP BY ALL ORDER BY ALL""",
    "status_by_category": """
        SELECT date, category,
               COUNT(*) FILTER (WHERE order_status = 'NEW') AS "NEW",
               COUNT(*) FILTER (WHERE order_status = 'CANCELLED') AS "CANCELLED",
               COUNT(*) FILTER (WHERE order_status = 'RETURNED') AS "RETURNED"
        FROM base GROUP BY ALL ORDER BY ALL""",
}


# The oracle's columns of each output, in its order.
ORACLE_COLUMNS = {
    "hourly_sales": "date, hour, orders, gross_revenue, reversals, net_revenue, avg_order_value",
    "top_products": "date, rank, product_id, net_quantity, net_revenue",
    "regional_revenue": "date, region_code, region_name, orders, net_revenue",
    "sales_by_product": "date, product_id, net_quantity, net_revenue, orders",
    "status_by_category": 'date, category, "NEW", "CANCELLED", "RETURNED"',
}


def connect(events: list[dict]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(EVENTS_DDL)
    text_fields = ("order_id", "customer_id", "product_id", "product_name", "category", "quantity")
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ) AT TIME ZONE 'UTC')",
        [
            (*(e[f] for f in text_fields), Decimal(str(e["unit_price"])), e["order_status"], e["region"],
             e["timestamp"])
            for e in events
        ],
    )  # fmt: skip
    with REGIONS_CSV.open(newline="") as f:
        rows = [(r["region_code"], r["region_name"]) for r in csv.DictReader(f)]
    con.execute("CREATE TABLE regions (region_code VARCHAR, region_name VARCHAR)")
    con.executemany("INSERT INTO regions VALUES (?, ?)", rows)
    con.execute(BASE)
    return con


def expected(con: duckdb.DuckDBPyConnection, output: str) -> list[tuple]:
    rows = con.execute(QUERIES[output]).fetchall()
    if output == "hourly_sales":
        # DuckDB divides decimals in floating point: take the average exactly, half-up to the cent.
        rows = [(*r, (r[3] / r[2]).quantize(CENT, ROUND_HALF_UP) if r[2] else None) for r in rows]
    return rows
