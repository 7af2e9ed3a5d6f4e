"""A short, human summary of one date's outputs (what `make run` prints at the end), from the
same numbers as the report.

python -m shopstream.summary --date 2026-11-25
"""

from __future__ import annotations

import argparse
import sys

from shopstream.config import paths


def summarise(date: str, data: dict | None = None) -> str:
    """The summary of `report.collect(date)` (collected here unless `data` is given)."""
    if data is None:
        from shopstream.report import collect

        data = collect(date)
    t, v = data["totals"], data["validation"]
    lines = [
        f"{date}: {t['orders']} orders, gross revenue {t['gross_revenue']}, net revenue {t['net_revenue']}, "
        f"{t['quarantined']} events quarantined, {t['duplicates_dropped']} re-delivered copies dropped",
        "top products by net quantity:",
        *(
            f"  {p['rank']}. {p['product']:<38} {p['net_quantity']:>5} units  {p['net_revenue']:>12}"
            for p in data["top_products"][:5]
        ),
        "top regions by net revenue:",
        *(f"  {r['region']:<20} {r['net_revenue']:>12}" for r in data["regions"][:5]),
        f"validation: {'PASSED' if v['passed'] else 'FAILED'} "
        f"({v['checks'] - len(v['failed'])}/{v['checks']} checks)",
        f"outputs: {paths().transformed} (published version {data['version']})",
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
