"""A short, human summary of one date's outputs (what `make run` prints at the end).

python -m shopstream.summary --date 2026-11-25
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from shopstream.config import paths
from shopstream.validation import validate


def _scan(name: str, date: str) -> str:
    return f"read_parquet('{paths().transformed / name / f'date={date}'}/*.parquet')"


def summarise(date: str) -> str:
    con = duckdb.connect()
    orders, gross, net = con.execute(
        f"SELECT sum(total_orders), sum(gross_revenue), sum(total_revenue) FROM {_scan('hourly_sales', date)}"
    ).fetchall()[0]
    top = con.execute(
        "SELECT rank, product_name, net_quantity, net_revenue "
        f"FROM {_scan('top_products', date)} ORDER BY rank LIMIT 5"
    ).fetchall()
    regions = con.execute(
        f"SELECT region_name, net_revenue FROM {_scan('regional_revenue', date)} "
        "ORDER BY net_revenue DESC LIMIT 5"
    ).fetchall()
    quarantined = 0
    quarantine_dir = paths().quarantine / f"date={date}"
    if any(quarantine_dir.glob("*.parquet")):
        quarantined = con.execute(
            f"SELECT count(*) FROM read_parquet('{quarantine_dir}/*.parquet')"
        ).fetchall()[0][0]
    report = validate(date)
    lines = [
        f"{date}: {orders} orders, gross revenue {gross}, net revenue {net}, "
        f"{quarantined} events quarantined",
        "top products by net quantity:",
        *(f"  {r}. {name:<38} {qty:>5} units  {rev:>12}" for r, name, qty, rev in top),
        "top regions by net revenue:",
        *(f"  {name:<20} {rev:>12}" for name, rev in regions),
        f"validation: {'PASSED' if report.passed else 'FAILED'} "
        f"({len(report.checks) - len(report.failed)}/{len(report.checks)} checks)",
        f"outputs: {paths().transformed}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--date", required=True)
    print(summarise(parser.parse_args(argv).date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
