"""The analytics of one date as a page to look at: `data/report/index.html` with PNG charts beside
it, and `report.json` with every number shown (what the tests compare with the outputs).

    python -m shopstream.report --date 2026-11-25
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import sys
from decimal import Decimal
from pathlib import Path

import duckdb

from shopstream import publication, raw_table
from shopstream.config import QUARANTINED, paths
from shopstream.daily_tables import read_output
from shopstream.data_loss import DATA_LOSS_LEDGER, data_losses, ingest_ledger
from shopstream.lake import open_catalog, table_id
from shopstream.summary import summarise


def _rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def collect(date: str) -> dict:
    """Every number the report shows, read from the published outputs of `date`: each table at the
    snapshot its publication recorded, so all come from one run whatever was published since."""
    catalog = open_catalog()
    entries = publication.history(date, catalog)
    record = publication.published_by_date(entries).get(date)
    if record is None:
        raise SystemExit(
            f"{date} has no published outputs in {table_id('publications')}: run the DAG for it first"
        )
    version = record.version
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # the hours are instants (timestamptz): shown in UTC
    for name in ("hourly_sales", "top_products", "regional_revenue", "status_by_category"):
        con.register(name, read_output(name, date, record.snapshots[name], catalog))
    hourly = _rows(
        con, "SELECT hour, orders, gross_revenue, reversals, net_revenue FROM hourly_sales ORDER BY hour"
    )
    top = _rows(con, "SELECT rank, product_name, net_quantity, net_revenue FROM top_products ORDER BY rank")
    regions = _rows(
        con, "SELECT region_name, orders, net_revenue FROM regional_revenue ORDER BY net_revenue DESC"
    )
    status = _rows(
        con, 'SELECT category, "NEW", "CANCELLED", "RETURNED" FROM status_by_category ORDER BY category'
    )
    rdd_folder = publication.output_dir(
        publication.transformed_root(), version, "rdd_revenue_by_product", date
    )
    quarantined = raw_table.rows(date, QUARANTINED, columns=("reason",))
    reasons = (
        con.register("quarantined", quarantined)
        .execute("SELECT reason, count(*) FROM quarantined GROUP BY 1 ORDER BY 2 DESC, 1")
        .fetchall()
        if quarantined is not None
        else []
    )
    money = lambda v: str(Decimal(v).quantize(Decimal("0.01")))  # noqa: E731
    duplicates = sum(
        json.loads(counts.read_text())["duplicates_dropped"] for counts in rdd_folder.glob("_counts.json")
    )
    return {
        "date": date,
        "version": version,
        "totals": {
            "orders": sum(r[1] for r in hourly),
            "gross_revenue": money(sum((r[2] for r in hourly), Decimal(0))),
            "reversals": money(sum((r[3] for r in hourly), Decimal(0))),
            "net_revenue": money(sum((r[4] for r in hourly), Decimal(0))),
            "quarantined": sum(n for _, n in reasons),
            "duplicates_dropped": duplicates,
            "lost_unread": lost_unread(date),
        },
        "hourly": [
            {"hour": h.strftime("%H:00"), "orders": o, "gross": money(g), "net": money(n)}
            for h, o, g, _, n in hourly
        ],
        "top_products": [
            {"rank": r, "product": p, "net_quantity": q, "net_revenue": money(v)} for r, p, q, v in top
        ],
        "regions": [{"region": r, "orders": o, "net_revenue": money(v)} for r, o, v in regions],
        "status_by_category": [
            {"category": c, "NEW": n, "CANCELLED": x, "RETURNED": r} for c, n, x, r in status
        ],
        "quarantine_reasons": [{"reason": r, "count": n} for r, n in reasons],
        "validation": validation_status(record, entries),
    }


def lost_unread(date: str) -> int:
    """Events lost before the ingest read them (Kafka's retention deleted them, or a topic created
    again held them) that may be of `date`, from the gaps the ingest recorded when told to go on
    (`--accept-data-loss`). Their dates are unknown; a gap accepted more than a day before `date`
    began holds none of its events (Kafka had them before then, and an event is stamped at most a
    day ahead)."""
    earliest = (dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()
    gaps = data_losses(ingest_ledger())
    return sum(g["events"] for g in gaps if g["accepted_at"][:10] >= earliest)


def validation_status(record: publication.Publication, entries: list[publication.Publication]) -> dict:
    """What the validation said, as the DAG recorded it (never re-run here): the published version
    passed all its checks, or it would not be published; a later run that failed them is reported
    beside it, with the checks it failed."""
    status = {"passed": True, "checks": record.checks_passed, "failed": []}
    later = next((p for p in entries if not p.passed and p.recorded_at > record.recorded_at), None)
    if later:
        status["later_run"] = {"version": later.version, "failed": later.failed_checks.split(", ")}
    return status


def _charts(data: dict, folder: Path) -> list[tuple[str, str]]:
    """Draws the charts as PNGs; returns (file name, caption) pairs."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    charts = []

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        charts.append((name, caption))

    fig, ax = plt.subplots(figsize=(9, 3.6))
    hours = [h["hour"] for h in data["hourly"]]
    ax.bar(hours, [float(h["gross"]) for h in data["hourly"]], color="#9ecae1", label="gross (NEW)")
    ax.bar(hours, [float(h["net"]) for h in data["hourly"]], color="#3182bd", label="net")
    ax.set_title(f"Revenue per hour, {data['date']} (UTC)")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.legend()
    save(fig, "hourly_revenue.png", "Gross and net revenue per hour")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    top = list(reversed(data["top_products"]))
    ax.barh([t["product"] for t in top], [t["net_quantity"] for t in top], color="#31a354")
    ax.set_title("Top products by net quantity")
    ax.tick_params(axis="y", labelsize=8)
    save(fig, "top_products.png", "Top 10 products by net units sold")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    regions = list(reversed(data["regions"]))
    ax.barh([r["region"] for r in regions], [float(r["net_revenue"]) for r in regions], color="#756bb1")
    ax.set_title("Net revenue by region")
    save(fig, "regional_revenue.png", "Net revenue per region")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    categories = [s["category"] for s in data["status_by_category"]]
    bottom = [0] * len(categories)
    for status, color in (("NEW", "#74c476"), ("CANCELLED", "#fd8d3c"), ("RETURNED", "#de2d26")):
        values = [s[status] for s in data["status_by_category"]]
        ax.bar(categories, values, bottom=bottom, label=status, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("Order status mix by category")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend()
    save(fig, "status_mix.png", "Events per status and category")
    return charts


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222 }
.kpi { display: inline-block; margin: 0 2em 1em 0 } .kpi b { display: block; font-size: 1.6em }
.kpi span { color: #666 } figure { display: inline-block; margin: 0 1em 1em 0 }
table { border-collapse: collapse; margin-bottom: 1.5em }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right }
"""


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _later_run(validation: dict) -> str:
    later = validation.get("later_run")
    if not later:
        return ""
    failed = html.escape(", ".join(later["failed"]))
    return (
        f" A later run (version {html.escape(later['version'])}) failed validation ({failed}): not published."
    )


def _data_loss(events: int) -> str:
    if not events:
        return ""
    return (f" <b>{events} events were lost before the ingest read them</b> (Kafka's retention, or a "
            f"topic created again: {DATA_LOSS_LEDGER} beside the ingest's checkpoint); their dates are "
            f"unknown: this day may miss some of them.")  # fmt: skip


def build(date: str, folder: Path | None = None, data: dict | None = None) -> Path:
    folder = folder or paths().data / "report"
    folder.mkdir(parents=True, exist_ok=True)
    data = data or collect(date)
    (folder / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    charts = _charts(data, folder)
    t, v = data["totals"], data["validation"]
    headline = {
        "orders": t["orders"],
        "gross revenue": t["gross_revenue"],
        "reversals": t["reversals"],
        "net revenue": t["net_revenue"],
        "quarantined events": t["quarantined"],
        "re-deliveries dropped": t["duplicates_dropped"],
        "validation": f"{'passed' if v['passed'] else 'FAILED'} ({v['checks']} checks)",
    }
    kpis = "".join(
        f"<div class=kpi><b>{html.escape(str(value))}</b><span>{label}</span></div>"
        for label, value in headline.items()
    )
    images = "".join(
        f"<figure><img src='{n}' alt='{c}'><figcaption>{c}</figcaption></figure>" for n, c in charts
    )
    page = f"""<!doctype html><html><head><meta charset=utf-8><title>shopstream {date}</title>
<style>{STYLE}</style></head><body><h1>Order analytics, {date}</h1>{kpis}<h2>Charts</h2>{images}
<h2>Top products</h2>{_table(data["top_products"])}<h2>Regions</h2>{_table(data["regions"])}
<h2>Data quality</h2><p>Validation: {"passed" if v["passed"] else "FAILED: " + ", ".join(v["failed"])}.
{_later_run(v)}
Published version: {html.escape(data["version"])}. Each event counts once: {t["duplicates_dropped"]}
re-delivered copies were dropped.{_data_loss(t["lost_unread"])}</p>
<h3>Quarantined events by reason</h3>{_table(data["quarantine_reasons"])}</body></html>"""
    target = folder / "index.html"
    target.write_text(page)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--date", required=True)
    parser.add_argument("--summary", action="store_true", help="print the text summary first")
    args = parser.parse_args(argv)
    data = collect(args.date)  # once, for both
    if args.summary:
        print(summarise(args.date, data))
    print(f"report: {build(args.date, data=data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
