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
from operator import add
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import functions as F

from shopstream.config import paths
from shopstream.metrics import REVENUE_SIGN
from shopstream.schema import CANCELLED
from shopstream.spark.batch_common import (
    batch_main,
    output_root,
    raw_dates,
    read_raw,
    replace_dir,
    well_formed,
)
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("rdd_etl")

OUTPUT_NAME = "rdd_revenue_by_product"
CENTS_PER_UNIT = 100


def sale_records(spark, raw_dir: Path, date: str):
    """One compact tuple per raw row: (usable, product_id, order_status, quantity, unit_cents).

    `usable` is the shared `well_formed()` rule evaluated by Spark, so both batch jobs agree on
    which rows count. Money travels as integer cents: exact, and Python adds ints far faster
    than it unpickles and adds Decimals (measured 22.6 s -> see docs/benchmarks.md at 1M rows).
    """
    needed = ("order_id", "product_id", "order_status", "quantity", "unit_price", "timestamp", "region")
    return (
        read_raw(spark, raw_dir, date, needed)
        .select(
            well_formed().alias("usable"),
            "product_id",
            "order_status",
            "quantity",
            (F.col("unit_price") * CENTS_PER_UNIT).cast("long").alias("unit_cents"),
        )
        .rdd.map(tuple)
    )


def signed_cents(record) -> tuple[str, int]:
    """(product_id, revenue in cents) with the sign of `shopstream.metrics.REVENUE_SIGN`."""
    _, product_id, status, quantity, unit_cents = record
    return product_id, REVENUE_SIGN[status] * quantity * unit_cents


def format_line(product_id: str, cents: int) -> str:
    whole, rest = divmod(abs(cents), CENTS_PER_UNIT)
    return f"{product_id}\t{'-' if cents < 0 else ''}{whole}.{rest:02d}"


def revenue_for_date(spark, raw_dir: Path, date: str, out_dir: Path) -> dict[str, int | str]:
    sc = spark.sparkContext
    seen, cancelled, malformed = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0)

    def keep_usable(record) -> bool:
        seen.add(1)
        if not record[0]:
            malformed.add(1)
        return record[0]

    def not_cancelled(record) -> bool:
        if record[2] == CANCELLED:
            cancelled.add(1)
            return False
        return True

    # Persisted (spilling, never dropped) so the two branches below read it once and every
    # accumulator counts each record exactly once.
    usable = sale_records(spark, raw_dir, date).filter(keep_usable).persist(StorageLevel.MEMORY_AND_DISK)
    # CANCELLED orders are filtered out of the sales; the revenue rule then books each
    # cancellation as a reversal on its own date, so the two key-value RDDs are combined.
    sales = usable.filter(not_cancelled).map(signed_cents)
    reversals = usable.filter(lambda record: record[2] == CANCELLED).map(signed_cents)
    revenue = sales.union(reversals).reduceByKey(add).sortByKey(numPartitions=1)

    final = out_dir / OUTPUT_NAME / f"date={date}"
    staged = out_dir / OUTPUT_NAME / f"_staging-{uuid.uuid4().hex}"
    # One action runs the whole lineage once, so each accumulator counts each record once.
    revenue.map(lambda kv: format_line(*kv)).saveAsTextFile(str(staged))
    usable.unpersist()
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
