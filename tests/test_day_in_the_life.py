"""A day in the life of the pipeline, on the real engines, the way it runs in production: the
live ingest service running, events produced across a midnight (compressed clock), the runs the
DAG's timetable creates for each closed day, late events of a published day, 300 re-delivered
events, and a batch job SIGKILLed mid-write. At the end every published output of both days
equals DuckDB's computation over the events read back from Kafka (each event once), and each
day's validation passed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from shopstream import daily_tables, publication
from shopstream.airflow.pipeline import TASK_IDS
from shopstream.airflow.run_local import run_dag
from shopstream.config import ORDERS_TOPIC, VALID, paths
from shopstream.daily_tables import branch_for
from shopstream.devstack.ingest_service import IngestService
from shopstream.devstack.kafka_broker import throwaway_broker
from tests import duckdb_oracle, iceberg_read, oracle
from tests.conftest import point_pipeline_at, produce
from tests.dates import days_ago
from tests.kafka_read import distinct_events, read_topic, redeliver
from tests.raw_rows import copies_in_raw, read_raw

pytestmark = pytest.mark.integration

D1, D2 = days_ago(2), days_ago(1)  # two closed days; the first events cross the midnight between them
REDELIVERED = 300
COLUMNS = {
    "hourly_sales": (
        "timezone('UTC', hour), orders, gross_revenue, reversals, net_revenue, avg_order_value",
        "hour",
    ),
    "top_products": ("rank, product_id, net_quantity, net_revenue", "rank"),
    "regional_revenue": ("region_code, region_name, orders, net_revenue", "region_code"),
    "status_by_category": ('category, "NEW", "CANCELLED", "RETURNED"', "category"),
}


@pytest.fixture
def stack(tmp_path, monkeypatch, lake_catalog):
    """Its own broker and state: the live service and the DAG use the production topic names."""
    with throwaway_broker(tmp_path / "kafka") as broker:
        point_pipeline_at(monkeypatch, tmp_path, broker.bootstrap)
        yield broker


def published_outputs(root, day: str) -> dict[str, object]:
    """What readers see of `day`: each table's rows on `main`, and the published RDD text."""
    found: dict[str, object] = {
        name: iceberg_read.rows(name, where=f"date = DATE '{day}'") for name in daily_tables.OUTPUTS
    }
    rdd = publication.output_dir(root, publication.published_version(day), "rdd_revenue_by_product", day)
    return found | {str(f): f.read_bytes() for f in sorted(rdd.iterdir())}


def crash_a_batch_job_mid_write(root, dates: list[str]) -> None:
    """Starts the DataFrame job into a version of its own and SIGKILLs it once it commits to its
    branch (the first table written)."""
    command = [sys.executable, "-m", "shopstream.spark.batch_df_etl", "--dates", ",".join(dates)]
    job = subprocess.Popen(
        [*command, "--version", "crashed"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not any(iceberg_read.snapshot_id(name, branch_for("crashed")) for name in written_tables()):
        assert job.poll() is None, "the job ended before it was killed"
        assert time.monotonic() < deadline, "the job wrote nothing within 180 s"
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def written_tables() -> list[str]:
    """The daily tables that exist (the job makes them on its first run)."""
    return [name for name in daily_tables.OUTPUTS if iceberg_read.exists(name)]


def test_a_day_in_the_life(stack):
    root = paths().transformed
    # Evening of D1 to the small hours of D2, then the live ingest service (3-second trigger).
    produce(stack, ORDERS_TOPIC, "--count", "4000", "--seed", "101", "--malformed-ratio", "0.02",
            "--start", f"{D1}T20:00:00Z", "--span", "8h")  # fmt: skip
    service = IngestService(trigger="3 seconds")
    service.start()
    try:
        # The run the scheduler created at D2's midnight: it transforms D1, its ingest step
        # waiting for the live query instead of writing the sink itself.
        first = run_dag(None, scheduled_for=D1, expected_events=4000, retries=0, quiet=True)
        assert (first["state"], first["date"], first["run_type"]) == ("success", D1, "scheduled"), first
        d1_first = publication.published(D1)

        # The rest of D2; 200 events of D1 arriving late; 300 events delivered a second time.
        produce(stack, ORDERS_TOPIC, "--count", "3000", "--seed", "102", "--start", f"{D2}T04:00:00Z",
                "--span", "20h")  # fmt: skip
        produce(stack, ORDERS_TOPIC, "--count", "200", "--seed", "103", "--start", f"{D1}T10:00:00Z",
                "--span", "2h")  # fmt: skip
        valid = [m for m in read_topic(stack.bootstrap, ORDERS_TOPIC, 7200) if not oracle.problems(m.value)]
        redeliver(stack.bootstrap, ORDERS_TOPIC, valid[::20][:REDELIVERED])

        # A batch job killed mid-write: readers still see D1's published outputs, untouched.
        before = published_outputs(root, D1)
        crash_a_batch_job_mid_write(root, [D1, D2])
        assert publication.published(D1) == d1_first and published_outputs(root, D1) == before
        # That crash was 8 days ago: the next publication vacuums it (past the retention, unseen).
        crashed, eight_days = root / "_versions" / "crashed", 8 * 86400
        os.utime(crashed, (time.time() - eight_days, time.time() - eight_days))

        # The run created at the next midnight transforms D2, and D1 again for its late events.
        second = run_dag(None, scheduled_for=D2, expected_events=7200, retries=0, quiet=True)
        assert (second["state"], second["date"]) == ("success", D2), second
        assert {t: i["state"] for t, i in second["tasks"].items()} == dict.fromkeys(TASK_IDS, "success")
        assert not crashed.exists(), "a failed version past the retention is vacuumed"
        assert (root / "_versions" / d1_first.version).is_dir(), "superseded, within the retention: kept"
        assert iceberg_read.snapshot_id("hourly_sales", branch_for("crashed")) is None, "its branch dropped"
    finally:
        assert service.stop()
    # Every valid event of the two days is in the raw table, as any Iceberg reader sees it.
    assert {str(d) for (d,) in read_raw(VALID).select("date").distinct().fetchall()} == {D1, D2}

    delivered = [json.loads(m.value) for m in read_topic(stack.bootstrap, ORDERS_TOPIC, 7200 + REDELIVERED)
                 if not oracle.problems(m.value)]  # fmt: skip
    assert len(delivered) == len(valid) + REDELIVERED
    events = distinct_events(delivered)
    assert len(events) == len(valid), "nothing lost"
    truth = duckdb_oracle.connect(events)
    dropped = 0
    for day in (D1, D2):
        record = publication.published(day)
        assert record.version != "crashed"
        report = json.loads((root / "_validation" / f"{day}.json").read_text())
        assert report["passed"] and report["version"] == record.version, report
        for output, (columns, order) in COLUMNS.items():
            got = iceberg_read.rows(output, columns, order, where=f"date = DATE '{day}'")
            want = [r[1:] for r in duckdb_oracle.expected(truth, output) if str(r[0]) == day]
            assert got == want, (day, output)
        rdd = publication.output_dir(root, record.version, "rdd_revenue_by_product", day)
        lines = [line for part in sorted(rdd.glob("part-*")) for line in part.read_text().splitlines()]
        revenue = duckdb_oracle.expected(truth, "rdd_revenue_by_product")
        want = [f"{p}\t{r.quantize(Decimal('0.01'))}" for d, p, r in revenue if str(d) == day]
        assert lines == want, day
        dropped += json.loads((rdd / "_counts.json").read_text())["duplicates_dropped"]
    assert [p.version for p in publication.history(D1)][1] == d1_first.version, "D1 recomputed"
    # The live ingest dropped every copy (the batch jobs, de-duplicating again, found none left).
    assert copies_in_raw() == 0 and dropped == 0, "each re-delivered event counted once"
