"""Every number the dashboard shows, as plain queries (no web framework here): the live panels
from the serving store, the health panel from the store, the streaming checkpoints and Kafka, and
the closed days from the published batch outputs. The benchmark times these very functions.

Times are UTC. Money is Decimal in the shop's currency (`shopstream.metrics.CURRENCY`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from shopstream import publication
from shopstream.config import INGEST_QUERY, LIVE_QUERY, ORDERS_TOPIC, paths
from shopstream.metrics import TOP_N_PRODUCTS

WINDOW_MINUTES = 60  # "the last hour": per-minute charts, top products, the hour's KPIs
REFRESH_SECONDS = 2.0  # the page re-reads its live and health panels this often


def refresh_seconds() -> float:
    """`SHOPSTREAM_DASHBOARD_REFRESH` (seconds), else REFRESH_SECONDS."""
    return float(os.environ.get("SHOPSTREAM_DASHBOARD_REFRESH", REFRESH_SECONDS))


TOTALS = "orders, cancelled, returned, units, gross, reversals, net"


@dataclass(frozen=True)
class Kpis:
    orders: int
    cancelled: int
    returned: int
    units: int
    gross: Decimal
    reversals: Decimal
    net: Decimal

    @property
    def cancellation_rate(self) -> float | None:
        return self.cancelled / self.orders if self.orders else None

    @property
    def return_rate(self) -> float | None:
        return self.returned / self.orders if self.orders else None


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def window_start(now: dt.datetime, minutes: int = WINDOW_MINUTES) -> dt.datetime:
    """The first minute of the last `minutes` whole or current minutes (the current one included)."""
    return now.replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes - 1)


def day_start(now: dt.datetime) -> dt.datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def kpis(conn: psycopg.Connection, since: dt.datetime) -> Kpis:
    """Totals of the minutes from `since` on."""
    sums = ", ".join(f"coalesce(sum({m}), 0)" for m in TOTALS.split(", "))
    row = conn.execute(f"SELECT {sums} FROM live_totals WHERE minute >= %s", (since,)).fetchone()
    return Kpis(*(int(v) for v in row[:4]), *(Decimal(v) for v in row[4:]))


def per_minute(conn: psycopg.Connection, now: dt.datetime, minutes: int = WINDOW_MINUTES) -> list[tuple]:
    """(minute, orders, net) for each of the last `minutes` minutes, zeros where nothing sold."""
    return conn.execute(
        "SELECT m, coalesce(t.orders, 0), coalesce(t.net, 0) "
        "FROM generate_series(%s::timestamptz, %s::timestamptz, interval '1 minute') AS m "
        "LEFT JOIN live_totals t ON t.minute = m ORDER BY m",
        (window_start(now, minutes), now.replace(second=0, microsecond=0)),
    ).fetchall()


def top_products(conn: psycopg.Connection, now: dt.datetime, n: int = TOP_N_PRODUCTS) -> list[tuple]:
    """(product_id, product_name, category, net units, net revenue) of the last hour's best
    sellers: the batch job's tie rule (units, then revenue, then product id)."""
    return conn.execute(
        "SELECT product_id, min(product_name), min(category), sum(units) AS units, sum(net) AS net "
        "FROM live_products WHERE minute >= %s GROUP BY product_id "
        "ORDER BY units DESC, net DESC, product_id LIMIT %s",
        (window_start(now), n),
    ).fetchall()


def revenue_by_region(conn: psycopg.Connection, since: dt.datetime) -> list[tuple]:
    """(region, orders, net) from `since`, most revenue first."""
    return conn.execute(
        "SELECT region, sum(orders), sum(net) FROM live_sales WHERE minute >= %s "
        "GROUP BY region ORDER BY sum(net) DESC, region",
        (since,),
    ).fetchall()


@dataclass(frozen=True)
class QueryHealth:
    name: str
    batch_id: int
    committed_at: dt.datetime
    offsets_behind: int | None


def live_queries(conn: psycopg.Connection) -> list[QueryHealth]:
    rows = conn.execute("SELECT name, batch_id, committed_at, offsets_behind FROM live_queries ORDER BY name")
    return [QueryHealth(*row) for row in rows.fetchall()]


def quarantine_rate(conn: psycopg.Connection, since: dt.datetime) -> tuple[int, int]:
    """(records, quarantined) that arrived in Kafka from `since`."""
    row = conn.execute(
        "SELECT coalesce(sum(records), 0), coalesce(sum(quarantined), 0) FROM live_intake WHERE minute >= %s",
        (since,),
    ).fetchone()
    return int(row[0]), int(row[1])


@dataclass(frozen=True)
class LiveView:
    """Everything the live panel shows, read at one instant."""

    now: dt.datetime
    today: Kpis
    last_hour: Kpis
    per_minute: list[tuple]
    top_products: list[tuple]
    by_region_today: list[tuple]


def live_view(conn: psycopg.Connection, now: dt.datetime) -> LiveView:
    today = day_start(now)
    return LiveView(now, kpis(conn, today), kpis(conn, window_start(now)), per_minute(conn, now),
                    top_products(conn, now), revenue_by_region(conn, today))  # fmt: skip


@dataclass(frozen=True)
class StoreHealth:
    """What the health panel reads from the serving store: the queries' last batches, and the
    records and quarantined records that arrived in the last hour."""

    queries: list[QueryHealth]
    records: int
    quarantined: int


def store_health(conn: psycopg.Connection, now: dt.datetime) -> StoreHealth:
    return StoreHealth(live_queries(conn), *quarantine_rate(conn, window_start(now)))


def ingest_lag(topic: str = ORDERS_TOPIC, timeout: float = 3.0) -> dict[str, int | str]:
    """Offsets behind the topic's end per streaming query, from each query's checkpoint (what it
    has committed) and the topic's end offsets; a message instead of a number when unknown, or
    when events the query has not read are gone (its next run stops on them: say so now)."""
    from shopstream.kafka_admin import KafkaCheckError, topic_stats
    from shopstream.spark.ingest_guard import committed_offsets
    from shopstream.spark.source_gaps import gap_events, source_gaps

    try:
        stats = topic_stats(topic, timeout=timeout)
    except KafkaCheckError as error:
        return {"kafka": f"unreachable: {str(error).splitlines()[0]}"}
    lags: dict[str, int | str] = {}
    queries = {
        "ingest": paths().ingest_checkpoints / INGEST_QUERY,
        "live aggregation": paths().live_checkpoints / LIVE_QUERY,
    }
    for name, checkpoint in queries.items():
        offsets = committed_offsets(checkpoint)
        committed = offsets.get(topic)
        lost = sum(map(gap_events, source_gaps(offsets, topic, stats).values()))
        if committed is None:
            lags[name] = "no committed batch"
        elif lost:
            lags[name] = f"{lost:,} events lost unread: see its log (--accept-data-loss)"
        else:
            lags[name] = sum(max(0, end - committed.get(p, 0)) for p, end in stats.end_offsets.items())
    return lags


def dag_runs(limit: int = 14) -> list[dict]:
    """The newest published dates: the version the DAG published, when, and its validation (the
    catalog's publications table)."""
    entries = publication.history()  # newest first
    current, latest = publication.published_by_date(entries), publication.latest_by_date(entries)
    rows = []
    for date in sorted(current, reverse=True)[:limit]:
        record, newest = current[date], latest[date]
        rows.append({
            "date": date,
            "published version": record.version,
            "published at (UTC)": record.recorded_at.isoformat(timespec="seconds"),
            "checks passed": record.checks_passed,
            "last validation": last_validation(newest, record.version),
        })  # fmt: skip
    return rows


def failing_dates(entries: list[publication.Publication] | None = None, limit: int = 14) -> list[dict]:
    """The dates whose latest validation failed, newest first, from the publications table (or
    `entries`, newest first): a run transformed them and could not publish them (the other dates
    of that run were published; an earlier version of these stays what readers see). The next run
    tries them again; until one passes, they are named here."""
    entries = publication.history() if entries is None else entries
    latest = publication.latest_by_date(entries)
    failing = [latest[date] for date in sorted(latest, reverse=True) if not latest[date].passed]
    return [
        {"date": e.date.isoformat(), "version": e.version, "failed checks": e.failed_checks}
        for e in failing[:limit]
    ]


def last_validation(newest: publication.Publication, published_version: str) -> str:
    """'passed' / 'FAILED', naming the validated version when it is not the published one (a later
    run that failed its checks leaves the earlier version published)."""
    verdict = "passed" if newest.passed else "FAILED"
    return verdict if newest.version == published_version else f"{verdict} ({newest.version})"
