"""Module 3A: net revenue per product with key-value RDDs, saved as text.

    spark-submit shopstream/spark/batch_rdd_etl.py --date 2026-11-20

For each date: raw rows -> RDD; accumulators count records seen, CANCELLED records filtered out
of the sales RDD, and malformed records; sales (NEW +, RETURNED -) and cancellations (-) are
reduced by product_id (the revenue rule of `shopstream.metrics`); the result is saved with
`saveAsTextFile` as sorted `product_id<TAB>revenue` lines under
`rdd_revenue_by_product/date=<date>/`, with the counts in `_counts.json` beside it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from operator import add
from pathlib import Path

from shopstream.config import paths
from shopstream.metrics import REVENUE_SIGN
from shopstream.schema import CANCELLED
from shopstream.spark.batch_common import (
    batch_main,
    output_root,
    raw_dates,
    read_raw,
    replace_dir,
)
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("rdd_etl")

OUTPUT_NAME = "rdd_revenue_by_product"
# Only what the job needs: Parquet reads just these columns.
COLUMNS = ("order_id", "product_id", "quantity", "unit_price", "order_status")
CENT = Decimal("0.01")


def is_malformed(row) -> bool:
    return (
        any(getattr(row, name) is None for name in COLUMNS)
        or row.order_status not in REVENUE_SIGN
        or row.quantity <= 0
        or row.unit_price <= 0
    )


def format_line(product_id: str, revenue: Decimal) -> str:
    return f"{product_id}\t{revenue.quantize(CENT, rounding=ROUND_HALF_UP)}"


def revenue_for_date(spark, raw_dir: Path, date: str, out_dir: Path) -> dict[str, int | str]:
    sc = spark.sparkContext
    seen, cancelled, malformed = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0)

    def keep_well_formed(row):
        seen.add(1)
        if is_malformed(row):
            malformed.add(1)
            return []
        return [row]

    def not_cancelled(row) -> bool:
        if row.order_status == CANCELLED:
            cancelled.add(1)
            return False
        return True

    rows = read_raw(spark, raw_dir, date, COLUMNS).rdd.flatMap(keep_well_formed).cache()
    amount = lambda row: row.quantity * row.unit_price  # noqa: E731 - Decimal, exact
    sales = rows.filter(not_cancelled).map(lambda r: (r.product_id, REVENUE_SIGN[r.order_status] * amount(r)))
    cancellations = rows.filter(lambda r: r.order_status == CANCELLED).map(
        lambda r: (r.product_id, REVENUE_SIGN[CANCELLED] * amount(r))
    )
    revenue = sales.union(cancellations).reduceByKey(add).sortByKey(numPartitions=1)

    final = out_dir / OUTPUT_NAME / f"date={date}"
    staged = out_dir / OUTPUT_NAME / f"_staging-{uuid.uuid4().hex}"
    # One action runs the whole lineage once, so each accumulator counts each record once.
    revenue.map(lambda kv: format_line(*kv)).saveAsTextFile(str(staged))
    rows.unpersist()
    replace_dir(spark, str(staged), str(final))

    counts = {
        "date": date,
        "records_seen": seen.value,
        "cancelled_filtered": cancelled.value,
        "malformed": malformed.value,
        "products": sum(1 for _ in _lines(final)),
    }
    (final / "_counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def _lines(folder: Path):
    for part in sorted(folder.glob("part-*")):
        yield from part.read_text().splitlines()


def run(
    date: str | None, raw_dir: Path | None = None, output_dir: Path | None = None, spark=None
) -> list[dict]:
    raw_dir = (raw_dir or paths().raw).resolve()
    spark = spark or get_spark("shopstream-rdd-etl")
    out = output_root(output_dir)
    dates = [date] if date else raw_dates(read_raw(spark, raw_dir, None, ["date"]))
    results = []
    for day in dates:
        started = time.monotonic()
        counts = revenue_for_date(spark, raw_dir, day, out)
        if counts["records_seen"] == 0:
            log.warning("no raw events for %s: wrote an empty result", day)
        log.info("%s in %.1f s: %s", day, time.monotonic() - started, counts)
        results.append(counts)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return batch_main(__doc__, run, log, argv)


if __name__ == "__main__":
    exit_after(main)
