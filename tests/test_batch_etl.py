"""Both batch jobs on raw data made through the real path (order-sim -> Kafka -> streaming job),
every output checked against DuckDB over the events read back from Kafka."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from shopstream.spark import batch_df_etl, batch_rdd_etl
from shopstream.spark.batch_common import MissingInputError
from shopstream.spark.stream_consumer import StreamSettings, run
from tests import duckdb_oracle, oracle
from tests.conftest import produce
from tests.kafka_read import read_topic
from tests.sink_files import write_through_file_sink

pytestmark = pytest.mark.integration

DAYS = ("2026-11-20", "2026-11-21")
COUNT = 6000


@pytest.fixture(scope="module")
def pipeline(spark, kafka_broker, tmp_path_factory):
    """Raw layer through the real path, both jobs run for all dates, and the oracle."""
    home = tmp_path_factory.mktemp("batch")
    topic = f"batch-{home.name}"
    produce(kafka_broker, topic, "--count", str(COUNT), "--seed", "31", "--malformed-ratio", "0.01",
            "--start", DAYS[0], "--span", "48h")  # fmt: skip
    events = [
        json.loads(m.value)
        for m in read_topic(kafka_broker.bootstrap, topic, expected=COUNT)
        if not oracle.problems(m.value)
    ]
    settings = StreamSettings(
        bootstrap=kafka_broker.bootstrap, topic=topic, raw_dir=home / "raw",
        checkpoint_dir=home / "checkpoints", available_now=True,
    )  # fmt: skip
    run(settings, spark)
    out = home / "transformed"
    rdd_counts = batch_rdd_etl.run(None, settings.raw_dir, out, spark)
    df_written = batch_df_etl.run(None, settings.raw_dir, out, spark)
    return {
        "raw": settings.raw_dir, "out": out, "events": events, "oracle": duckdb_oracle.connect(events),
        "rdd_counts": rdd_counts, "df_written": df_written,
    }  # fmt: skip


def parquet_rows(path: Path, columns: str, order: str) -> list[tuple]:
    query = (
        f"SELECT {columns} FROM read_parquet('{path}/*/*.parquet', hive_partitioning=true) ORDER BY {order}"
    )
    return duckdb.sql(query).fetchall()


def rdd_lines(out: Path, date: str) -> list[str]:
    folder = out / batch_rdd_etl.OUTPUT_NAME / f"date={date}"
    return [line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


def test_rdd_revenue_and_counters_match_the_oracle(pipeline):
    expected = duckdb_oracle.expected(pipeline["oracle"], "rdd_revenue_by_product")
    for day in DAYS:
        want = [f"{p}\t{r.quantize(Decimal('0.01'))}" for d, p, r in expected if d.isoformat() == day]
        assert rdd_lines(pipeline["out"], day) == want
    counts = {c["date"]: c for c in pipeline["rdd_counts"]}
    for day in DAYS:
        day_events = [e for e in pipeline["events"] if e["timestamp"].startswith(day)]
        assert counts[day]["records_seen"] == len(day_events)
        assert counts[day]["cancelled_filtered"] == sum(e["order_status"] == "CANCELLED" for e in day_events)
        assert counts[day]["malformed"] == 0
        on_disk = json.loads(
            (pipeline["out"] / "rdd_revenue_by_product" / f"date={day}" / "_counts.json").read_text()
        )
        assert on_disk == counts[day]


def test_hourly_sales_match_the_oracle(pipeline):
    got = parquet_rows(
        pipeline["out"] / "hourly_sales",
        "date, hour, total_orders, gross_revenue, refunds, total_revenue, avg_order_value",
        "date, hour",
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "hourly_sales")
    assert len(got) == 48


def test_top_products_match_the_oracle_with_the_tie_rule(pipeline):
    got = parquet_rows(
        pipeline["out"] / "top_products", "date, rank, product_id, net_quantity, net_revenue", "date, rank"
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "top_products")
    assert [r[1] for r in got] == list(range(1, 11)) * 2


def test_regional_revenue_matches_the_oracle(pipeline):
    got = parquet_rows(
        pipeline["out"] / "regional_revenue",
        "date, region_code, region_name, orders, net_revenue",
        "date, region_code",
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "regional_revenue")


def test_status_pivot_matches_the_oracle(pipeline):
    got = parquet_rows(
        pipeline["out"] / "status_by_category",
        'date, category, "NEW", "CANCELLED", "RETURNED"',
        "date, category",
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "status_by_category")


def test_sales_by_product_is_also_a_bucketed_table(pipeline, spark):
    detail = {
        r.col_name: r.data_type
        for r in spark.sql(f"DESCRIBE TABLE EXTENDED {batch_df_etl.BUCKETED_TABLE}").collect()
    }
    assert detail["Num Buckets"] == str(batch_df_etl.BUCKETS)
    assert detail["Bucket Columns"] == "[`product_id`]"
    assert spark.table(batch_df_etl.BUCKETED_TABLE).count() == pipeline["df_written"]["sales_by_product"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.startswith(".")}  # fmt: skip


def test_rerunning_a_date_is_identical_and_leaves_other_dates_alone(pipeline, spark):
    out, raw = pipeline["out"], pipeline["raw"]
    first_day = {name: parquet_rows(out / name, "*", "ALL") for name in batch_df_etl.OUTPUTS}
    other_day_files = {name: snapshot(out / name / f"date={DAYS[1]}") for name in batch_df_etl.OUTPUTS}
    rdd_text = snapshot(out / "rdd_revenue_by_product" / f"date={DAYS[0]}")

    batch_rdd_etl.run(DAYS[0], raw, out, spark)
    batch_df_etl.run(DAYS[0], raw, out, spark)

    assert snapshot(out / "rdd_revenue_by_product" / f"date={DAYS[0]}") == rdd_text, "RDD text byte-identical"
    for name in batch_df_etl.OUTPUTS:
        assert parquet_rows(out / name, "*", "ALL") == first_day[name], name
        assert snapshot(out / name / f"date={DAYS[1]}") == other_day_files[name], (
            f"{name} of {DAYS[1]} touched"
        )
    assert spark.table(batch_df_etl.BUCKETED_TABLE).count() == pipeline["df_written"]["sales_by_product"]


def test_a_date_without_events_writes_nothing_and_says_so(pipeline, spark, caplog):
    empty_day = (dt.date.fromisoformat(DAYS[1]) + dt.timedelta(days=30)).isoformat()
    assert batch_df_etl.run(empty_day, pipeline["raw"], pipeline["out"], spark) == dict.fromkeys(
        batch_df_etl.OUTPUTS, 0
    )
    counts = batch_rdd_etl.run(empty_day, pipeline["raw"], pipeline["out"], spark)
    assert counts[0]["records_seen"] == 0
    assert "no raw events" in caplog.text


def test_missing_raw_layer_is_a_clear_error(spark, tmp_path):
    with pytest.raises(MissingInputError, match="run the streaming job first"):
        batch_rdd_etl.run("2026-11-20", tmp_path / "nothing", tmp_path / "out", spark)
    with pytest.raises(MissingInputError, match="run the streaming job first"):
        batch_df_etl.run("2026-11-20", tmp_path / "nothing", tmp_path / "out", spark)


def test_rdd_job_counts_malformed_rows_that_reached_the_raw_layer(spark, tmp_path):
    # A raw layer written by something other than our stream job (still through a file sink,
    # so it has the commit log): one good row, a null product and a non-positive quantity.
    rows = [
        ("ORD-1", "C-1", "P-1", "Earbuds", "Electronics", 2, Decimal("10.50"), "NEW", "DE"),
        ("ORD-2", "C-1", None, "Earbuds", "Electronics", 1, Decimal("10.50"), "NEW", "DE"),
        ("ORD-3", "C-2", "P-1", "Earbuds", "Electronics", 0, Decimal("10.50"), "NEW", "DE"),
    ]
    stamp = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    frame = spark.createDataFrame(
        [(*r, stamp, dt.date(2026, 11, 20)) for r in rows],
        "order_id string, customer_id string, product_id string, product_name string, category string, "
        "quantity int, unit_price decimal(12,2), order_status string, region string, "
        "timestamp timestamp, date date",
    )
    write_through_file_sink(spark, frame, tmp_path)

    [counts] = batch_rdd_etl.run("2026-11-20", tmp_path / "raw", tmp_path / "out", spark)

    assert (counts["records_seen"], counts["malformed"], counts["products"]) == (3, 2, 1)
    assert rdd_lines(tmp_path / "out", "2026-11-20") == ["P-1\t21.00"]


def test_rdd_lines_print_cents_exactly_including_net_refunds():
    assert batch_rdd_etl.format_line("P-1", 2100) == "P-1\t21.00"
    assert batch_rdd_etl.format_line("P-2", -5) == "P-2\t-0.05"
    assert batch_rdd_etl.format_line("P-3", -123456) == "P-3\t-1234.56"
    assert batch_rdd_etl.format_line("P-4", 0) == "P-4\t0.00"


def test_rdd_partition_totals_count_per_date_and_keep_a_tab_in_a_product_id():
    class Total:  # what the accumulators receive from one partition
        def __init__(self):
            self.value = Counter()

        def add(self, more):
            self.value.update(more)

    lines = ["2026-11-20\tP-1\tNEW\t2100", "2026-11-20\tP-1\tNEW\t5", "2026-11-20\tP\t9\tRETURNED\t5",
             "2026-11-21\tP-1\tNEW\t7", "2026-11-21", "2026-11-21"]  # fmt: skip
    seen, malformed = Total(), Total()
    totals = sorted(batch_rdd_etl.totals_by_key(iter(lines), seen, malformed))
    assert totals == [
        ("2026-11-20", "P\t9", "RETURNED", 5, 1),
        ("2026-11-20", "P-1", "NEW", 2105, 2),
        ("2026-11-21", "P-1", "NEW", 7, 1),
    ]
    assert seen.value == {"2026-11-20": 3, "2026-11-21": 3}
    assert malformed.value == {"2026-11-21": 2}
