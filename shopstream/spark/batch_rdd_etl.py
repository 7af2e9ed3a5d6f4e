"""Module 3A: net revenue per product with key-value RDDs, saved as text.

    spark-submit --properties-file config/spark/spark-defaults.conf \\
        shopstream/spark/batch_rdd_etl.py --date 2026-11-20

Raw rows of every date asked for, each event once (re-deliveries merged by `EVENT_IDENTITY`) ->
one RDD of Arrow record batches, summed per (date, product, status) within each partition;
accumulators count per date the records seen, the re-delivered copies dropped, the CANCELLED
records filtered out of the sales RDD, and malformed records; sales (NEW +, RETURNED -) and
cancellations (-) are reduced by (date, product_id) (the revenue rule of `shopstream.metrics`);
each date is saved with `saveAsTextFile` as sorted `product_id<TAB>revenue` lines under
`rdd_revenue_by_product/date=<date>/` of the run's version (see `shopstream.publication`), with its
counts in `_counts.json` beside it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from operator import add
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark import RDD, AccumulatorParam, StorageLevel
from pyspark.serializers import NoOpSerializer
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from shopstream.contract import CANCELLED
from shopstream.files import text_output_lines
from shopstream.metrics import REVENUE_SIGN
from shopstream.spark.batch import (
    COPIES,
    RunInputs,
    batch_main,
    events_once,
    read_valid_rows,
    replace_dir,
    usable,
)
from shopstream.spark.session import exit_after, get_spark, job_logger

log = job_logger("rdd_etl")

OUTPUT_NAME = "rdd_revenue_by_product"
CENTS_PER_UNIT = 100
SUM_CENTS = pa.decimal128(38, 0)


def sale_batches(spark, inputs: RunInputs) -> tuple[RDD, pa.Schema]:
    """The run's events as an RDD of Arrow record batches (each an IPC message in bytes) and
    their schema: date, product_id, order_status, cents (quantity x unit price, exact), copies
    (how often the event was delivered) and usable.

    "Usable" is the shared rule (`batch.usable`) evaluated by Spark, so both batch jobs agree on
    which rows count; money travels as integer cents multiplied by the JVM. Rows reach Python as
    columnar batches, not one object per row (as pickled `Row`s, or one text line each, the
    conversion cost most of the job; docs/benchmarks.md, session 10).
    """
    needed = ("order_id", "product_id", "order_status", "quantity", "unit_price", "timestamp", "region")
    cents = F.col("quantity").cast("long") * (F.col("unit_price") * CENTS_PER_UNIT).cast("long")
    events = events_once(read_valid_rows(spark, inputs, (*needed, "date")), inputs)
    frame = events.select(
        F.col("date").cast("string").alias("date"), "product_id", "order_status", cents.alias("cents"),
        F.col(COPIES).cast("long").alias(COPIES), usable(inputs).alias("usable"),
    )  # fmt: skip
    # Dataset.toArrowBatchRdd is what toPandas and the Arrow UDFs build on (public in the JVM,
    # not wrapped by PySpark): each element is one serialized record batch.
    batches = frame._jdf.toArrowBatchRdd().toJavaRDD()
    return RDD(batches, spark.sparkContext, NoOpSerializer()), to_arrow_schema(frame.schema)


class CounterParam(AccumulatorParam):
    """Accumulators of counts per date: one job covers every date asked for."""

    def zero(self, value: Counter) -> Counter:
        return Counter()

    def addInPlace(self, total: Counter, more: Counter) -> Counter:
        total.update(more)
        return total


def count_per_date(table: pa.Table, weight: str | None = None) -> Counter:
    """Rows per date of `table`, or the sum of its column `weight` per date."""
    aggregate, total = ((weight, "sum"), f"{weight}_sum") if weight else (([], "count_all"), "count_all")
    per_date = table.group_by("date").aggregate([aggregate])
    return Counter(dict(zip(per_date["date"].to_pylist(), per_date[total].to_pylist(), strict=True)))


KEY = ("date", "product_id", "order_status")


def totals_by_key(batches, schema: pa.Schema, seen, malformed, duplicates):
    """The usable events of a partition's record batches summed per (date, product_id,
    order_status): yields (date, product_id, order_status, cents, records) tuples. Counts per date
    go to the accumulators once per partition."""
    read = [pa.ipc.read_record_batch(pa.py_buffer(batch), schema) for batch in batches]
    table = pa.Table.from_batches(read, schema)
    counted = table.filter(table["usable"])
    seen.add(count_per_date(table))
    malformed.add(count_per_date(table.filter(pc.invert(table["usable"]))))
    extra_copies = counted.append_column("extra", pc.subtract(counted[COPIES], 1))
    duplicates.add(+count_per_date(extra_copies, "extra"))  # +: only dates with a copy dropped
    # Summed as decimals: an int64 sum wraps silently past 9.2e18 cents (rule `money` bounds each
    # event's cents, not their number).
    wide = counted.set_column(
        counted.schema.get_field_index("cents"), "cents", pc.cast(counted["cents"], SUM_CENTS)
    )
    totals = wide.group_by(list(KEY)).aggregate([("cents", "sum"), ([], "count_all")])
    for date, product, status, cents, records in zip(
        *(totals[name].to_pylist() for name in (*KEY, "cents_sum", "count_all")), strict=True
    ):
        yield date, product, status, int(cents), records


def signed_cents(total: tuple[str, str, str, int, int]) -> tuple[tuple[str, str], int]:
    """((date, product_id), revenue in cents) of a `totals_by_key` record, with the sign of
    `shopstream.metrics.REVENUE_SIGN`."""
    date, product_id, status, cents, _ = total
    return (date, product_id), REVENUE_SIGN[status] * cents


def format_line(product_id: str, cents: int) -> str:
    whole, rest = divmod(abs(cents), CENTS_PER_UNIT)
    return f"{product_id}\t{'-' if cents < 0 else ''}{whole}.{rest:02d}"


def revenue_by_date_product(spark, inputs: RunInputs):
    """((date, product_id), net cents) of the run's dates, persisted and computed,
    with the accumulators' counts per date: (revenue, seen, cancelled, malformed, duplicates)."""
    sc = spark.sparkContext
    seen, cancelled, malformed, duplicates = (sc.accumulator(Counter(), CounterParam()) for _ in range(4))

    def not_cancelled(total) -> bool:
        if total[2] == CANCELLED:
            cancelled.add(Counter({total[0]: total[4]}))  # the records this partial total stands for
            return False
        return True

    # Each partition is first summed per (date, product, status) by Arrow's group-by: the
    # map-side combine reduceByKey would do, without a Python object per record. What the
    # key-value steps below handle is then a few hundred partial totals per partition, not
    # millions of records; persisted (spilling, never dropped) so the two branches read them once
    # and every accumulator counts each record exactly once.
    batches, schema = sale_batches(spark, inputs)
    totals = batches.mapPartitions(lambda part: totals_by_key(part, schema, seen, malformed, duplicates))
    totals = totals.persist(StorageLevel.MEMORY_AND_DISK)
    # CANCELLED orders are filtered out of the sales; the revenue rule then books each
    # cancellation as a reversal on its own date, so the two key-value RDDs are combined.
    sales = totals.filter(not_cancelled).map(signed_cents)
    reversals = totals.filter(lambda total: total[2] == CANCELLED).map(signed_cents)
    # A few hundred keys per date: as many reduce tasks as cores, not one per input split.
    revenue = sales.union(reversals).reduceByKey(add, sc.defaultParallelism)
    revenue = revenue.persist(StorageLevel.MEMORY_AND_DISK)
    revenue.count()  # one action runs the whole lineage once: each accumulator counts each record once
    totals.unpersist()
    return revenue, seen.value, cancelled.value, malformed.value, duplicates.value


def save_date(spark, revenue, date: str, out_dir: Path) -> Path:
    """`date`'s sorted 'product_id<TAB>revenue' lines, swapped in for the version's folder of
    that date (a retried task replaces its own earlier try)."""
    final = out_dir / OUTPUT_NAME / f"date={date}"
    staged = out_dir / OUTPUT_NAME / f"_staging-{uuid.uuid4().hex}"
    of_date = revenue.filter(lambda kv: kv[0][0] == date).map(lambda kv: (kv[0][1], kv[1]))
    of_date.sortByKey(numPartitions=1).map(lambda kv: format_line(*kv)).saveAsTextFile(str(staged))
    replace_dir(spark, str(staged), str(final))
    return final


def run(inputs: RunInputs, spark=None) -> list[dict]:
    """Revenue per product for the run's dates (in one pass) into its version; returns the
    counts of each date."""
    spark = spark or get_spark("shopstream-rdd-etl", lake=True)
    started = time.monotonic()
    revenue, seen, cancelled, malformed, duplicates = revenue_by_date_product(spark, inputs)
    results = []
    for day in inputs.dates:
        final = save_date(spark, revenue, day, inputs.out)
        counts = {
            "date": day,
            "records_seen": seen[day],
            "duplicates_dropped": duplicates[day],
            "cancelled_filtered": cancelled[day],
            "malformed": malformed[day],
            "products": len(text_output_lines(final)),
        }
        (final / "_counts.json").write_text(json.dumps(counts, indent=2) + "\n")
        if counts["records_seen"] == 0:
            log.warning("no raw events for %s: wrote an empty result", day)
        log.info("%s: %s", day, counts)
        results.append(counts)
    revenue.unpersist()
    log.info("%d date(s) in %.1f s", len(inputs.dates), time.monotonic() - started)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return batch_main(__doc__, run, log, argv)


if __name__ == "__main__":
    exit_after(main)
