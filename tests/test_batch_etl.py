"""Both batch jobs on raw data made through the real path (order-sim -> Kafka -> streaming job),
every output checked against DuckDB over the events read back from Kafka.

The stream here keeps re-delivered copies (`deduplicate=False`), as a raw layer written before
the stream de-duplicated, or copies beyond its window, would hold them: the batch jobs must count
each event once by themselves."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from shopstream import daily_tables, publication
from shopstream.daily_tables import branch_for
from shopstream.lake import spark_table
from shopstream.raw_table import DEDUPLICATED, VALIDATED, writer_properties
from shopstream.spark import batch_df_etl, batch_rdd_etl, comet
from shopstream.spark.batch import MissingInputError, RunInputs, run_inputs
from shopstream.spark.session import job_conf
from shopstream.spark.stream_consumer import run
from shopstream.spark.streaming import StreamSettings
from tests import duckdb_oracle, iceberg_read, oracle
from tests.conftest import produce
from tests.dates import days_ago
from tests.kafka_read import distinct_events, read_topic, redeliver
from tests.raw_rows import write_raw

pytestmark = pytest.mark.integration

DAYS = (days_ago(3), days_ago(2))
COUNT = 6000
REDELIVERED = 300


@pytest.fixture(scope="module")
def pipeline(spark, kafka_broker, tmp_path_factory):
    """Raw layer through the real path, both jobs run for all dates, and the oracle."""
    home = tmp_path_factory.mktemp("batch")
    topic = f"batch-{home.name}"
    produce(kafka_broker, topic, "--count", str(COUNT), "--seed", "31", "--malformed-ratio", "0.01",
            "--start", DAYS[0], "--span", "48h")  # fmt: skip
    # 300 valid events arrive a second time (an upstream retry): each must still count once.
    valid = [
        m for m in read_topic(kafka_broker.bootstrap, topic, expected=COUNT) if not oracle.problems(m.value)
    ]
    redeliver(kafka_broker.bootstrap, topic, valid[::7][:REDELIVERED])
    delivered = [json.loads(m.value) for m in read_topic(kafka_broker.bootstrap, topic, COUNT + REDELIVERED)
                 if not oracle.problems(m.value)]  # fmt: skip
    assert len(delivered) == len(valid) + REDELIVERED
    events = distinct_events(delivered)
    assert len(events) == len(valid)
    settings = StreamSettings(
        bootstrap=kafka_broker.bootstrap, topic=topic,
        checkpoint_dir=home / "checkpoints", available_now=True, deduplicate=False,
    )  # fmt: skip
    run(settings, spark)
    assert DEDUPLICATED not in writer_properties(), "copies kept: the jobs must do their own pass"
    root = home / "transformed"
    inputs = run_inputs(root, None, "v1")  # every date of the raw table
    assert inputs.dates == list(DAYS)
    rdd_counts = batch_rdd_etl.run(inputs, spark)
    df_written = batch_df_etl.run(inputs, spark)
    return {
        "root": root, "out": inputs.out, "inputs": inputs, "events": events,
        "settings": settings, "topic": topic,
        "oracle": duckdb_oracle.connect(events), "rdd_counts": rdd_counts, "df_written": df_written,
    }  # fmt: skip


def output_rows(
    output: str, columns: str, order: str, version: str = "v1", where: str = "true"
) -> list[tuple]:
    """A run's rows of an output, on its branch (read by PyIceberg + DuckDB)."""
    return iceberg_read.rows(output, columns, order, branch_for(version), where)


def rdd_lines(out: Path, date: str) -> list[str]:
    folder = out / batch_rdd_etl.OUTPUT_NAME / f"date={date}"
    return [line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


def test_redelivered_events_count_once_and_the_jobs_say_how_many_they_dropped(pipeline):
    # Every output below is checked against the oracle over distinct events; here the counts.
    assert sum(c["duplicates_dropped"] for c in pipeline["rdd_counts"]) == REDELIVERED
    assert pipeline["df_written"]["duplicates_dropped"] == REDELIVERED
    for counts in pipeline["rdd_counts"]:
        on_disk = json.loads((pipeline["out"] / batch_rdd_etl.OUTPUT_NAME / f"date={counts['date']}" /
                              "_counts.json").read_text())  # fmt: skip
        assert on_disk["duplicates_dropped"] == counts["duplicates_dropped"] > 0


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
    got = output_rows(
        "hourly_sales",
        "date, timezone('UTC', hour), orders, gross_revenue, reversals, net_revenue, avg_order_value",
        "date, hour",
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "hourly_sales")
    assert len(got) == 48


def test_top_products_match_the_oracle_with_the_tie_rule(pipeline):
    got = output_rows("top_products", "date, rank, product_id, net_quantity, net_revenue", "date, rank")
    assert got == duckdb_oracle.expected(pipeline["oracle"], "top_products")
    assert [r[1] for r in got] == list(range(1, 11)) * 2


def test_regional_revenue_matches_the_oracle(pipeline):
    got = output_rows(
        "regional_revenue",
        "date, region_code, region_name, orders, net_revenue",
        "date, region_code",
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "regional_revenue")


def test_status_pivot_matches_the_oracle(pipeline):
    got = output_rows(
        "status_by_category",
        'date, category, "NEW", "CANCELLED", "RETURNED"',
        "date, category",
    )
    assert got == duckdb_oracle.expected(pipeline["oracle"], "status_by_category")


def test_sales_by_product_is_bucketed_by_product_in_its_iceberg_table(pipeline, spark):
    """The seed's bucketing, persisted: Iceberg's own bucket transform on product_id, beside date."""
    table = iceberg_read.table("sales_by_product")
    fields = {(f.name, str(f.transform)) for f in table.spec().fields}
    assert fields == {("date", "identity"), ("product_id_bucket", f"bucket[{daily_tables.BUCKETS}]")}, fields
    files = spark.sql(
        f"SELECT partition FROM {spark_table('sales_by_product')}.files VERSION AS OF '{branch_for('v1')}'"
    ).collect()
    assert {f.partition.product_id_bucket for f in files} == set(range(daily_tables.BUCKETS))
    assert len(output_rows("sales_by_product", "*", "ALL")) == pipeline["df_written"]["sales_by_product"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.startswith(".")}  # fmt: skip


def test_rerunning_a_date_is_identical_and_publishing_it_leaves_other_dates_alone(pipeline, spark):
    root, first = pipeline["root"], pipeline["out"]
    pinned = publication.read_inputs(root, "v1")
    for day in DAYS:
        publication.publish(day, "v1", pinned[day]["fingerprint"], checks=1)
    assert {o: iceberg_read.snapshot_id(o) for o in daily_tables.OUTPUTS} == publication.published(
        DAYS[1]
    ).snapshots
    published_first = {o: iceberg_read.rows(o) for o in daily_tables.OUTPUTS}

    again = run_inputs(root, [DAYS[0]], "v2")
    batch_rdd_etl.run(again, spark)
    batch_df_etl.run(again, spark)

    # The new version of the date is the same, byte for byte (text) and row for row (tables).
    rdd_dir = f"{batch_rdd_etl.OUTPUT_NAME}/date={DAYS[0]}"
    assert snapshot(again.out / rdd_dir) == snapshot(first / rdd_dir), "RDD text byte-identical"
    on_day = f"date = DATE '{DAYS[0]}'"
    for name in daily_tables.OUTPUTS:
        assert output_rows(name, "*", "ALL", "v2", on_day) == output_rows(name, "*", "ALL", "v1", on_day), (
            name
        )
    # Unpublished, the run's branch changes nothing readers see.
    assert {o: iceberg_read.rows(o) for o in daily_tables.OUTPUTS} == published_first
    # Published: readers of that date see the new version, of the other date still the first.
    record = publication.publish(DAYS[0], "v2", again_fingerprint(root, DAYS[0]), checks=1)
    assert publication.published_version(DAYS[0]) == "v2" and publication.published_version(DAYS[1]) == "v1"
    for name, snapshot_id in record.snapshots.items():
        assert snapshot_id == iceberg_read.snapshot_id(name)
        summary = iceberg_read.table(name).snapshot_by_id(snapshot_id).summary
        assert (summary["shopstream.run"], summary["shopstream.date"]) == ("v2", DAYS[0]), name
        assert iceberg_read.rows(name) == published_first[name], "the same rows, now from v2's files"
    assert [p.version for p in publication.history(DAYS[0])] == ["v2", "v1"]


def test_the_dataframe_jobs_roll_up_of_the_raw_rows_runs_natively_in_comet(pipeline, spark):
    """No silent fallback: the scan, the de-duplication and the roll-up all run in Comet."""
    base = batch_df_etl.base_orders(spark, pipeline["inputs"])
    base.count()
    operators = comet.physical_operators(base)
    assert {"CometIcebergNativeScan", "CometHashAggregate", "CometExchange"} <= set(operators), operators
    assert comet.non_native(base) == [], operators


def scanned_columns(spark, inputs: RunInputs) -> str:
    plan = batch_df_etl.base_orders(spark, inputs)._jdf.queryExecution().executedPlan().toString()
    [scan] = [line for line in plan.splitlines() if "IcebergNativeScan" in line or "BatchScan" in line]
    return scan


def test_a_layer_its_ingest_validated_is_rolled_up_without_reading_the_order_id(pipeline, spark, tmp_path):
    """The ingest marks its table validated: its rows then pass the guard of the batch jobs without
    a check (the guard's rules are a subset of the ingest's), and where the ingest also dropped
    re-deliveries the roll-up never scans the order id, the widest column. Without the mark the
    guard reads it (a foreign table: test_rdd_job_counts_malformed_rows_that_reached_the_raw_layer)."""
    original = pipeline["inputs"]
    assert VALIDATED in original.properties
    # The same rows, as a de-duplicating ingest would have marked them.
    inputs = dataclasses.replace(original, properties={**original.properties, DEDUPLICATED: "8"})
    assert "order_id" not in scanned_columns(spark, inputs)
    unvalidated = dataclasses.replace(inputs, properties={DEDUPLICATED: "8"})
    assert "order_id" in scanned_columns(spark, unvalidated)


# Comet's switches read per query (its plugin and shuffle manager stay loaded and pass through).
COMET_SWITCHES = ("spark.comet.enabled", "spark.comet.exec.enabled", "spark.comet.exec.shuffle.enabled")


@contextmanager
def comet_switched_off(spark):
    previous = {key: spark.conf.get(key, None) for key in COMET_SWITCHES}
    for key in COMET_SWITCHES:
        spark.conf.set(key, "false")
    try:
        yield
    finally:
        for key, value in previous.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def test_both_jobs_write_the_same_outputs_with_comet_off(pipeline, spark):
    """Both jobs once more over the same pinned raw files with Comet switched off (in the same
    session, to spare the suite two JVMs): Spark alone plans every operator, and every output
    equals the Comet run's."""
    root, first = pipeline["root"], pipeline["out"]
    with comet_switched_off(spark):
        inputs = run_inputs(root, [DAYS[0]], "v-spark")
        base = batch_df_etl.base_orders(spark, inputs)
        base.count()
        assert not [op for op in comet.physical_operators(base) if op.startswith("Comet")]
        batch_rdd_etl.run(inputs, spark)
        batch_df_etl.run(inputs, spark)
    spark_only = publication.version_root(root, "v-spark")
    rdd_dir = f"{batch_rdd_etl.OUTPUT_NAME}/date={DAYS[0]}"
    assert snapshot(spark_only / rdd_dir) == snapshot(first / rdd_dir), "RDD text byte-identical"
    on_day = f"date = DATE '{DAYS[0]}'"
    for name in daily_tables.OUTPUTS:
        assert output_rows(name, "*", "ALL", "v-spark", on_day) == output_rows(
            name, "*", "ALL", "v1", on_day
        ), name


def test_comet_is_off_for_every_job_with_shopstream_comet_0(monkeypatch):
    """The switch for clusters without Comet's jar: no plugin, no shuffle manager, no class path."""
    monkeypatch.setenv("SHOPSTREAM_COMET", "0")
    conf = job_conf(comet=True)
    assert not [key for key, value in conf.items() if "comet" in f"{key}={value}".lower()], conf
    assert "spark.shuffle.manager" not in conf and "spark.plugins" not in conf


def again_fingerprint(root: Path, day: str) -> str:
    return publication.read_inputs(root, "v2")[day]["fingerprint"]


def test_a_date_without_events_writes_nothing_and_says_so(pipeline, spark, caplog):
    empty_day = (dt.date.fromisoformat(DAYS[1]) + dt.timedelta(days=30)).isoformat()
    inputs = run_inputs(pipeline["root"], [empty_day], "v-empty")
    assert publication.read_inputs(pipeline["root"], "v-empty")[empty_day]["rows"] == 0
    assert batch_df_etl.run(inputs, spark) == dict.fromkeys(batch_df_etl.OUTPUTS, 0)
    counts = batch_rdd_etl.run(inputs, spark)
    assert counts[0]["records_seen"] == 0
    assert "no raw events" in caplog.text


def test_missing_raw_layer_is_a_clear_error(spark, tmp_path, fresh_lake_namespace):
    with pytest.raises(MissingInputError, match="run the streaming job first"):
        run_inputs(tmp_path / "out", ["2026-11-20"], None)
    assert batch_rdd_etl.main(["--date", "2026-11-20", "--output-dir", str(tmp_path / "out")]) == 2


def test_rdd_job_counts_malformed_rows_that_reached_the_raw_layer(spark, tmp_path, fresh_lake_namespace):
    # A raw table written by something other than our stream job (unvalidated): one good row, a
    # null product and a non-positive quantity.
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
    write_raw(spark, frame)

    inputs = run_inputs(tmp_path / "out", ["2026-11-20"], "v")
    [counts] = batch_rdd_etl.run(inputs, spark)

    assert (counts["records_seen"], counts["malformed"], counts["products"]) == (3, 2, 1)
    assert rdd_lines(inputs.out, "2026-11-20") == ["P-1\t21.00"]


def test_published_outputs_that_miss_late_events_fail_validation_naming_the_rerun(
    pipeline, spark, kafka_broker
):
    # Last of the tests on the shared pipeline: it adds raw rows to a published date.
    from shopstream.validation import validate

    root, day = pipeline["root"], DAYS[1]
    if publication.published(day) is None:  # run alone: publish the first version
        publication.publish(day, "v1", publication.read_inputs(root, "v1")[day]["fingerprint"], 1)
    assert validate(day, root).passed, "the published outputs equal the raw layer"

    produce(kafka_broker, pipeline["topic"], "--count", "50", "--seed", "33", "--start", day, "--span", "1h")
    run(pipeline["settings"], spark)  # 50 late events of the day reach the raw layer

    report = validate(day, root)
    [stale] = report.failed
    assert stale.name == "reconciles_with_raw"
    assert "stale or partial" in stale.detail and f"make backfill FROM={day} TO={day}" in stale.detail
    next_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    plan = publication.plan_run(root, next_day, "v-next", lookback=1)
    assert day in plan["late_dates"], "the next run recomputes it"


def test_rdd_lines_print_cents_exactly_including_net_refunds():
    assert batch_rdd_etl.format_line("P-1", 2100) == "P-1\t21.00"
    assert batch_rdd_etl.format_line("P-2", -5) == "P-2\t-0.05"
    assert batch_rdd_etl.format_line("P-3", -123456) == "P-3\t-1234.56"
    assert batch_rdd_etl.format_line("P-4", 0) == "P-4\t0.00"


def test_rdd_partition_totals_count_per_date_from_arrow_batches():
    class Total:  # what the accumulators receive from one partition
        def __init__(self):
            self.value = Counter()

        def add(self, more):
            self.value.update(more)

    schema = pa.schema([("date", pa.string()), ("product_id", pa.string()), ("order_status", pa.string()),
                        ("cents", pa.int64()), ("copies", pa.int64()), ("usable", pa.bool_())])  # fmt: skip
    rows = [("2026-11-20", "P-1", "NEW", 2100, 1, True), ("2026-11-20", "P-1", "NEW", 5, 3, True),
            ("2026-11-20", "P\t9", "RETURNED", 5, 1, True), ("2026-11-21", "P-1", "NEW", 7, 1, True),
            ("2026-11-21", None, None, None, 1, False),
            ("2026-11-21", "P-2", "LOST", 3, 1, False)]  # fmt: skip
    # Two batches, as Spark ships a partition: serialized IPC record batches.
    as_dicts = [dict(zip(schema.names, row, strict=True)) for row in rows]
    batches = [pa.RecordBatch.from_pylist(part, schema).serialize() for part in (as_dicts[:3], as_dicts[3:])]
    seen, malformed, duplicates = Total(), Total(), Total()
    totals = sorted(batch_rdd_etl.totals_by_key(iter(batches), schema, seen, malformed, duplicates))
    assert totals == [
        ("2026-11-20", "P\t9", "RETURNED", 5, 1),
        ("2026-11-20", "P-1", "NEW", 2105, 2),
        ("2026-11-21", "P-1", "NEW", 7, 1),
    ]
    assert seen.value == {"2026-11-20": 3, "2026-11-21": 3}
    assert malformed.value == {"2026-11-21": 2}
    assert duplicates.value == {"2026-11-20": 2}  # the event delivered 3 times
