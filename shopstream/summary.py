"""A short, human summary of one date's outputs (what `make run` prints at the end), from the
numbers the report collected (`report.collect`):

    python -m shopstream.report --date 2026-11-25 --summary
"""

from __future__ import annotations

from shopstream.config import paths


def summarise(date: str, data: dict) -> str:
    """The summary of `data`, what `report.collect(date)` returned."""
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
    if t.get("lost_unread"):
        lines.insert(1, f"  {t['lost_unread']} events were lost before the ingest read them "
                        "(raw/_data_loss.json): this day may miss some of them")  # fmt: skip
    return "\n".join(lines)
