"""The live dashboard (Streamlit): what is selling right now, the closed days, and the pipeline's
health. Run by `make dashboard` (http://127.0.0.1:8501); every number comes from
`shopstream.dashboard.queries`.

    streamlit run shopstream/dashboard/app.py --server.address 127.0.0.1 --server.port 8501
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import psycopg
import streamlit as st

from shopstream.catalogue import regions_by_code
from shopstream.config import ServingDbNotConfigured, serving_db_dsn
from shopstream.dashboard import queries as q
from shopstream.metrics import CURRENCY

REFRESH_SECONDS = q.refresh_seconds()


def money(value: Decimal | float | int | str) -> str:
    """An amount to the cent; its currency is in the label or column name."""
    return f"{Decimal(value):,.2f}"


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


@st.cache_resource
def connection() -> psycopg.Connection:
    return psycopg.connect(serving_db_dsn(), autocommit=True)


def store() -> psycopg.Connection | None:
    """The serving store's connection, reopened if it broke; None (and a message) if unreachable."""
    try:
        conn = connection()
        if conn.closed or conn.broken:
            connection.clear()
            conn = connection()
        return conn
    except (psycopg.OperationalError, ServingDbNotConfigured) as error:
        connection.clear()
        st.error(f"The serving database is unreachable: {error}. Start it with `make db-up` (and the live "
                 "aggregation with `make live-up`), or point SHOPSTREAM_SERVING_DB at yours.")  # fmt: skip
        return None


def kpi_row(title: str, kpis: q.Kpis, suffix: str) -> None:
    st.markdown(f"**{title}**")
    # Two rows, so that a tile is wide enough for a whole amount (seven in a row cut off millions).
    cols = st.columns(4)
    cols[0].metric(f"Orders {suffix}", f"{kpis.orders:,}")
    cols[1].metric(f"Units {suffix}", f"{kpis.units:,}")
    cols[2].metric(f"Cancellation rate {suffix}", rate(kpis.cancellation_rate))
    cols[3].metric(f"Return rate {suffix}", rate(kpis.return_rate))
    money_tiles({"Gross": kpis.gross, "Reversals": kpis.reversals, "Net revenue": kpis.net}, f" {suffix}")


def money_tiles(amounts: dict[str, Decimal], suffix: str = "") -> None:
    """One row of tiles, one per amount, labelled with the currency."""
    for col, (label, amount) in zip(st.columns(len(amounts)), amounts.items(), strict=True):
        col.metric(f"{label}{suffix} ({CURRENCY})", money(amount))


@st.fragment(run_every=REFRESH_SECONDS)
def live_panel() -> None:
    conn = store()
    if conn is None:
        return
    view = q.live_view(conn, q.now_utc())
    now = view.now
    kpi_row(f"Today so far ({now:%Y-%m-%d}, UTC)", view.today, "today")
    kpi_row(f"Last {q.WINDOW_MINUTES} minutes", view.last_hour, "last hour")

    minutes = pd.DataFrame(view.per_minute, columns=["minute (UTC)", "orders", f"net ({CURRENCY})"])
    minutes[f"net ({CURRENCY})"] = minutes[f"net ({CURRENCY})"].astype(float)
    left, right = st.columns(2)
    left.markdown("**Orders per minute** (UTC)")
    left.bar_chart(minutes, x="minute (UTC)", y="orders", height=220)
    right.markdown(f"**Net revenue per minute** ({CURRENCY}, UTC)")
    right.line_chart(minutes, x="minute (UTC)", y=f"net ({CURRENCY})", height=220)

    left, right = st.columns(2)
    left.markdown(f"**Top products, last {q.WINDOW_MINUTES} minutes** (net units, then net revenue)")
    net = f"net ({CURRENCY})"
    top = pd.DataFrame(view.top_products, columns=["product", "name", "category", "net units", net])
    top[net] = top[net].map(money)
    left.dataframe(top, hide_index=True, use_container_width=True)
    right.markdown(f"**Net revenue by region, today** ({CURRENCY})")
    regions = regions_by_code()
    by_region = pd.DataFrame(
        [(regions.get(r, {}).get("region_name", r), o, float(n)) for r, o, n in view.by_region_today],
        columns=["region", "orders", f"net ({CURRENCY})"],
    )
    right.bar_chart(by_region, x="region", y=f"net ({CURRENCY})", height=260)
    st.caption(f"Updated {now:%H:%M:%S} UTC · refreshes every {REFRESH_SECONDS:g} s")


@st.fragment(run_every=REFRESH_SECONDS)
def health_panel() -> None:
    conn = store()
    if conn is None:
        return
    now = q.now_utc()
    health = q.store_health(conn, now)
    cols = st.columns(3)
    if health.queries:
        live = health.queries[0]
        age = (now - live.committed_at).total_seconds()
        cols[0].metric("Last live batch committed", f"{live.committed_at:%H:%M:%S} UTC", f"{age:.0f} s ago",
                       delta_color="off")  # fmt: skip
        behind = "?" if live.offsets_behind is None else f"{live.offsets_behind:,}"
        cols[1].metric("Live batches", f"{live.batch_id + 1:,}", f"{behind} offsets behind (last progress)",
                       delta_color="off")  # fmt: skip
    else:
        cols[0].metric("Last live batch committed", "none yet")
    records, quarantined = health.records, health.quarantined
    share = rate(quarantined / records if records else None)
    cols[2].metric(f"Quarantine rate, last {q.WINDOW_MINUTES} min", share,
                   f"{quarantined:,} of {records:,} records", delta_color="off")  # fmt: skip
    lag_tiles(q.ingest_lag())
    failing = q.failing_dates()
    if failing:
        dates = ", ".join(r["date"] for r in failing)
        st.error(f"Failing validation, not published with their latest data: {dates}. The next run "
                 "tries them again; their reports are in data/transformed/_validation/.")  # fmt: skip
        st.dataframe(pd.DataFrame(failing), hide_index=True, use_container_width=True)
    st.markdown("**Daily runs** (the DAG's published dates and their validation)")
    runs = q.dag_runs()
    if runs:
        st.dataframe(pd.DataFrame(runs), hide_index=True, use_container_width=True)
    else:
        st.info("No date published yet: the DAG publishes each closed day (`make run`).")


def lag_tiles(lags: dict[str, int | str]) -> None:
    """Offsets behind the topic's end: a tile per query that knows its number, a warning for each
    that does not (the message would not fit a tile)."""
    numbers = {name: lag for name, lag in lags.items() if isinstance(lag, int)}
    if numbers:
        for col, (name, lag) in zip(st.columns(len(numbers)), numbers.items(), strict=True):
            col.metric(f"Offsets behind the topic's end: {name}", f"{lag:,}")
    for name, message in lags.items():
        if name not in numbers:
            st.warning(f"Offsets behind the topic's end, {name}: {message}")


def closed_days_panel() -> None:
    from shopstream import publication, report

    dates = list(reversed(publication.published_dates()))
    if not dates:
        st.info("No closed day published yet: the daily DAG run publishes each one (`make run`).")
        return
    date = st.selectbox("Date (UTC)", dates)
    data = report.collect(date)
    totals = data["totals"]
    cols = st.columns(2)
    cols[0].metric("Orders", f"{totals['orders']:,}")
    cols[1].metric("Quarantined", f"{totals['quarantined']:,}")
    money_tiles({"Gross": totals["gross_revenue"], "Reversals": totals["reversals"],
                 "Net revenue": totals["net_revenue"]})  # fmt: skip
    validation = data["validation"]
    later = f" · a later run failed: {validation['later_run']}" if "later_run" in validation else ""
    st.caption(
        f"Published version {data['version']} · validation passed ({validation['checks']} checks){later}"
    )
    hourly = pd.DataFrame(data["hourly"]).astype({"net": float, "gross": float})
    st.markdown(f"**Net revenue per hour** ({CURRENCY}, UTC)")
    st.bar_chart(hourly, x="hour", y="net", height=220)
    left, right = st.columns(2)
    left.markdown(f"**Top products** (net revenue in {CURRENCY})")
    left.dataframe(pd.DataFrame(data["top_products"]), hide_index=True, use_container_width=True)
    right.markdown(f"**Revenue by region** (net revenue in {CURRENCY})")
    right.dataframe(pd.DataFrame(data["regions"]), hide_index=True, use_container_width=True)
    st.markdown("**Order status by category** (events)")
    st.dataframe(pd.DataFrame(data["status_by_category"]), hide_index=True, use_container_width=True)


def main() -> None:
    st.set_page_config(page_title="shopstream live", layout="wide")
    st.title("shopstream · live sales")
    st.caption(f"Times in UTC · money in {CURRENCY} · the live view counts each event once, however late")
    live, days, health = st.tabs(["Live", "Closed days", "Health"])
    with live:
        live_panel()
    with days:
        closed_days_panel()
    with health:
        health_panel()


if __name__ == "__main__":  # as Streamlit runs it
    main()
