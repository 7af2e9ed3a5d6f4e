"""The live dashboard's serving store (PostgreSQL): its tables, the exactly-once upsert of each
micro-batch's per-minute increments, and the queries the dashboard runs.

Exactly once: a micro-batch's increments and the id of that batch are committed in one
transaction, and a batch whose id is not above the last committed one is skipped (Spark replays
a batch after a crash with the same id and the same offsets). So a restart or a replayed batch
never counts twice, and a late event simply adds to its minute, however late (no watermark
drops it from the store).

Times are UTC (`timestamptz`, the server runs in UTC); money is numeric(38,2) in the shop's
currency (`shopstream.metrics.CURRENCY`).

    python -m shopstream.serving reset     # empty the store (with a wiped aggregation checkpoint)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from shopstream.config import serving_db_dsn

# Per minute of event time: by region and category, by product, and all together (the KPIs and
# per-minute charts read the small totals table, never the wide ones, for their speed).
SALES_KEYS = ("minute", "region", "category")
PRODUCT_KEYS = ("minute", "product_id")
MEASURES = ("orders", "cancelled", "returned", "units", "gross", "reversals", "net")
PRODUCT_MEASURES = ("orders", "units", "net")
INTAKE_MEASURES = ("records", "quarantined")  # per minute of arrival in Kafka

SCHEMA = """
CREATE TABLE IF NOT EXISTS live_sales (
    minute timestamptz NOT NULL, region text NOT NULL, category text NOT NULL,
    orders bigint NOT NULL, cancelled bigint NOT NULL, returned bigint NOT NULL, units bigint NOT NULL,
    gross numeric(38,2) NOT NULL, reversals numeric(38,2) NOT NULL, net numeric(38,2) NOT NULL,
    PRIMARY KEY (minute, region, category)
);
CREATE TABLE IF NOT EXISTS live_totals (
    minute timestamptz PRIMARY KEY,
    orders bigint NOT NULL, cancelled bigint NOT NULL, returned bigint NOT NULL, units bigint NOT NULL,
    gross numeric(38,2) NOT NULL, reversals numeric(38,2) NOT NULL, net numeric(38,2) NOT NULL
);
CREATE TABLE IF NOT EXISTS live_products (
    minute timestamptz NOT NULL, product_id text NOT NULL, product_name text NOT NULL,
    category text NOT NULL, orders bigint NOT NULL, units bigint NOT NULL, net numeric(38,2) NOT NULL,
    PRIMARY KEY (minute, product_id)
);
CREATE TABLE IF NOT EXISTS live_intake (
    minute timestamptz PRIMARY KEY, records bigint NOT NULL, quarantined bigint NOT NULL
);
-- One row per aggregation query: the fence of exactly-once (last committed batch) and its health.
CREATE TABLE IF NOT EXISTS live_queries (
    name text PRIMARY KEY, checkpoint text NOT NULL, batch_id bigint NOT NULL,
    committed_at timestamptz NOT NULL, batch_rows bigint NOT NULL DEFAULT 0,
    offsets_behind bigint, progress_at timestamptz
);
"""
# Stores made before money widened to any day's sum (numeric(14,2) overflowed at 100 events of the
# largest amount the contract allows): widened in place, without a rewrite.
WIDEN_MONEY = "".join(
    f"ALTER TABLE {table} ALTER COLUMN {column} TYPE numeric(38,2);\n"
    for table, columns in (
        ("live_sales", MEASURES[4:]),
        ("live_totals", MEASURES[4:]),
        ("live_products", ("net",)),
    )
    for column in columns
)
TABLES = ("live_sales", "live_totals", "live_products", "live_intake", "live_queries")


class StoreMismatch(RuntimeError):
    """The store holds counts of another aggregation checkpoint (or of a wiped one)."""


def connect(dsn: str | None = None, **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(dsn or serving_db_dsn(), **kwargs)


def create_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(SCHEMA)
        precision = conn.execute(
            "SELECT numeric_precision FROM information_schema.columns "
            "WHERE table_name = 'live_totals' AND column_name = 'net'"
        ).fetchone()
        if precision and precision[0] < 38:
            conn.execute(WIDEN_MONEY)


def reset(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
    create_schema(conn)


@dataclass(frozen=True)
class BatchIncrements:
    """One micro-batch's increments: rows of (keys..., measures...) in the orders above."""

    sales: Sequence[tuple]
    products: Sequence[tuple]  # (minute, product_id, product_name, category, orders, units, net)
    intake: Sequence[tuple]


def last_batch(conn: psycopg.Connection, name: str) -> tuple[str, int] | None:
    """(checkpoint, last committed batch id) of the query `name`, or None if it never wrote."""
    row = conn.execute("SELECT checkpoint, batch_id FROM live_queries WHERE name = %s", (name,)).fetchone()
    return (row[0], row[1]) if row else None


def check_store_matches(
    conn: psycopg.Connection, name: str, checkpoint: str, checkpoint_batch: int | None
) -> None:
    """Refuses to start when the store's counts do not belong to this checkpoint: written from
    another one, or ahead of it (the checkpoint was wiped or restored from an older copy), since
    replaying those batches would count them twice."""
    recorded = last_batch(conn, name)
    if recorded is None:
        return
    store_checkpoint, store_batch = recorded
    if store_checkpoint != checkpoint:
        raise StoreMismatch(
            f"the serving store's {name} counts come from checkpoint {store_checkpoint}, not {checkpoint}: "
            "use that checkpoint, or empty the store (`python -m shopstream.serving reset`) to rebuild it "
            "from this one"
        )
    if checkpoint_batch is None or checkpoint_batch < store_batch:
        raise StoreMismatch(
            f"the serving store has {name} up to batch {store_batch} but checkpoint {checkpoint} only up to "
            f"{checkpoint_batch}: it was wiped or restored. Empty the store (`python -m shopstream.serving "
            "reset`) and let the query rebuild it from the topic"
        )


def _adding_on_conflict(table: str, keys: Sequence[str], measures: Sequence[str]) -> str:
    """The clause that makes an insert into `table` add its measures to an existing row's."""
    adds = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in measures)
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {adds}"


def _upsert_sql(table: str, keys: Sequence[str], measures: Sequence[str], extra: Sequence[str] = ()) -> str:
    columns = (*keys, *extra, *measures)
    values = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) " + _adding_on_conflict(
        table, keys, measures
    )


SALES_FROM_BATCH = "INSERT INTO live_sales SELECT * FROM batch_sales " + _adding_on_conflict(
    "live_sales", SALES_KEYS, MEASURES
)
TOTALS_FROM_SALES = (
    f"INSERT INTO live_totals (minute, {', '.join(MEASURES)}) "
    f"SELECT minute, {', '.join(f'sum({m})' for m in MEASURES)} FROM batch_sales GROUP BY minute "
    + _adding_on_conflict("live_totals", ("minute",), MEASURES)
)


def apply_batch(conn: psycopg.Connection, name: str, checkpoint: str, batch_id: int, batch: BatchIncrements,
                batch_rows: int) -> bool:  # fmt: skip
    """Adds one micro-batch's increments and records its id, in one transaction; False (and
    nothing changed) when this batch id was already committed: a replay."""
    with conn.transaction():
        row = conn.execute(
            "SELECT checkpoint, batch_id FROM live_queries WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if row is not None and row[1] >= batch_id:
            return False
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS batch_sales (LIKE live_sales) ON COMMIT DELETE ROWS")
            _copy(cur, "batch_sales", (*SALES_KEYS, *MEASURES), batch.sales)
            cur.execute(SALES_FROM_BATCH)
            cur.execute(TOTALS_FROM_SALES)
            cur.executemany(
                _upsert_sql("live_products", PRODUCT_KEYS, PRODUCT_MEASURES, ("product_name", "category")),
                batch.products,
            )
            cur.executemany(_upsert_sql("live_intake", ("minute",), INTAKE_MEASURES), batch.intake)
            cur.execute(
                "INSERT INTO live_queries (name, checkpoint, batch_id, committed_at, batch_rows) "
                "VALUES (%s, %s, %s, now(), %s) ON CONFLICT (name) DO UPDATE SET "
                "batch_id = excluded.batch_id, checkpoint = excluded.checkpoint, "
                "committed_at = excluded.committed_at, batch_rows = excluded.batch_rows",
                (name, checkpoint, batch_id, batch_rows),
            )
    return True


def _copy(cur: psycopg.Cursor, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def record_progress(conn: psycopg.Connection, name: str, offsets_behind: int | None, at: dt.datetime) -> None:
    """The query's lag behind the topic's end, from its last progress report (health panel)."""
    with conn.transaction():
        conn.execute(
            "UPDATE live_queries SET offsets_behind = %s, progress_at = %s WHERE name = %s",
            (offsets_behind, at, name),
        )


# Per-minute rows older than this are deleted by the live aggregation (`prune`): the dashboard
# shows today and the last hour, closed days come from the batch outputs.
RETENTION_DAYS = 30
PRUNED_TABLES = ("live_sales", "live_totals", "live_products", "live_intake")


def retention_days() -> int:
    """`SHOPSTREAM_LIVE_RETENTION_DAYS`, else RETENTION_DAYS."""
    return int(os.environ.get("SHOPSTREAM_LIVE_RETENTION_DAYS", RETENTION_DAYS))


def prune(conn: psycopg.Connection, before: dt.datetime) -> int:
    """Deletes the per-minute rows of minutes before `before`; returns how many."""
    deleted = 0
    with conn.transaction():
        for table in PRUNED_TABLES:
            deleted += conn.execute(f"DELETE FROM {table} WHERE minute < %s", (before,)).rowcount
    return deleted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["reset", "init"])
    args = parser.parse_args(argv)
    with connect() as conn:
        (reset if args.action == "reset" else create_schema)(conn)
    print(f"serving store {'emptied' if args.action == 'reset' else 'ready'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
