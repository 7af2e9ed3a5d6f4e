"""The DAG run for real by Airflow (dag.test with a SQLite metadata DB): real broker, real
spark-submit of all three jobs, real sensor and validation; then a run on corrupted output."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from email.message import EmailMessage

import psycopg
import pyarrow as pa
import pytest

from shopstream import daily_tables, publication
from shopstream.airflow.pipeline import TASK_IDS
from shopstream.airflow.run_local import run_dag
from shopstream.config import ORDERS_TOPIC, QUARANTINED
from shopstream.kafka_admin import topic_stats
from shopstream.lake import lake_settings, namespace
from shopstream.validation import validate
from tests import iceberg_read, lake_readers, oracle
from tests.conftest import point_pipeline_at, produce
from tests.kafka_read import distinct_events, read_topic, redeliver
from tests.raw_rows import copies_in_raw, read_raw
from tests.smtp_sink import smtp_server

pytestmark = pytest.mark.integration

# The day that closed at the last midnight UTC: what the scheduler's run transforms now.
DATE = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
COUNT = 2000


def days_before(days: int) -> str:
    return (dt.date.fromisoformat(DATE) - dt.timedelta(days=days)).isoformat()


def published_rows(output: str, date: str, columns: str = "*", order: str = "ALL") -> list[tuple]:
    """What readers of the table `output` see of `date` (its `main`), read by PyIceberg + DuckDB."""
    return iceberg_read.rows(output, columns, order, "main", f"date = DATE '{date}'")


def published_rdd(data, date: str):
    """The RDD job's text output of `date` in the version its publication names."""
    version = publication.published_version(date)
    assert version is not None, f"{date} not published"
    return publication.output_dir(data / "transformed", version, "rdd_revenue_by_product", date)


@pytest.fixture(scope="module")
def local_stack(kafka_broker, lake_catalog, tmp_path_factory):
    """The pipeline's state and data in throwaway folders, pointed at the test broker."""
    home = tmp_path_factory.mktemp("dag")
    with pytest.MonkeyPatch.context() as mp:
        point_pipeline_at(mp, home, kafka_broker.bootstrap)
        yield home / "data"


@pytest.fixture(scope="module")
def first_run(local_stack, kafka_broker):
    # The reliability drill's mix: 5% malformed and 1% out-of-domain events.
    produced = produce(kafka_broker, ORDERS_TOPIC, "--count", str(COUNT), "--seed", "41",
                       "--malformed-ratio", "0.05", "--out-of-domain-ratio", "0.01",
                       "--start", DATE, "--span", "24h")  # fmt: skip
    # Exactly the run the scheduler creates now (from the DAG's timetable), not a named date.
    result = run_dag(None, expected_events=COUNT, retries=0, quiet=True)
    return {**result, "produced": produced}


DOMAIN_REASONS = ("unknown order_status ", "quantity not positive: ", "unit_price not positive: ")


def test_every_task_succeeds_and_outputs_validate(first_run, local_stack, kafka_broker):
    assert first_run["state"] == "success", first_run
    # The scheduled run's data interval is the closed day, and that is the date it transformed.
    assert first_run["run_type"] == "scheduled" and first_run["date"] == DATE
    assert [t[:10] for t in first_run["data_interval"]] == [DATE, days_before(-1)]
    assert list(first_run["tasks"]) == list(TASK_IDS)
    assert {t: info["state"] for t, info in first_run["tasks"].items()} == dict.fromkeys(TASK_IDS, "success")

    report = json.loads((local_stack / "transformed" / "_validation" / f"{DATE}.json").read_text())
    assert report["passed"] and len(report["checks"]) >= 20

    # The DAG's revenue equals the revenue of the valid events that were produced (oracle).
    events = [json.loads(m.value) for m in read_topic(kafka_broker.bootstrap, ORDERS_TOPIC, COUNT)
              if not oracle.problems(m.value)]  # fmt: skip
    sign = {"NEW": 1, "CANCELLED": -1, "RETURNED": -1}
    expected = sum(sign[e["order_status"]] * e["quantity"] * Decimal(str(e["unit_price"])) for e in events)
    rdd_dir = published_rdd(local_stack, DATE)
    rdd_total = sum(
        Decimal(line.split("\t")[1]) for p in rdd_dir.glob("part-*") for line in p.read_text().splitlines()
    )
    assert rdd_total == expected
    reasons = read_raw(QUARANTINED).select("reason").fetchall()
    produced = first_run["produced"]
    assert len(reasons) == COUNT - len(events) == produced["malformed"] + produced["out_of_domain"]
    assert all(reason for (reason,) in reasons), "every quarantined record says why"
    domain = [r for (r,) in reasons if r.startswith(DOMAIN_REASONS)]
    assert len(domain) == produced["out_of_domain"] > 0


def test_report_shows_the_numbers_of_the_outputs(first_run, local_stack):
    from shopstream.report import build

    assert first_run["state"] == "success"
    page = build(DATE)
    data = json.loads((page.parent / "report.json").read_text())
    rdd_dir = published_rdd(local_stack, DATE)
    rdd_total = sum(
        Decimal(line.split("\t")[1]) for p in rdd_dir.glob("part-*") for line in p.read_text().splitlines()
    )
    assert Decimal(data["totals"]["net_revenue"]) == rdd_total
    top = published_rows("top_products", DATE, "product_name, net_quantity", "rank")
    assert [(t["product"], t["net_quantity"]) for t in data["top_products"]] == top
    # Records with no readable event time are filed under their arrival date, not this one.
    quarantined = read_raw(QUARANTINED).filter(f"date = DATE '{DATE}'").aggregate("count(*)")
    assert data["totals"]["quarantined"] == quarantined.fetchall()[0][0] > 0
    assert data["validation"]["passed"] is True
    shown = {r["reason"].split(":")[0].removesuffix(" SHIPPED") for r in data["quarantine_reasons"]}
    # Unreadable records (no event time) are filed under their arrival date, not this one.
    assert {"unknown order_status", "quantity not positive", "missing order_id"} <= shown, shown
    assert sum(r["count"] for r in data["quarantine_reasons"]) == data["totals"]["quarantined"]

    text = page.read_text()
    assert data["totals"]["net_revenue"] in text
    for chart in ("hourly_revenue.png", "top_products.png", "regional_revenue.png", "status_mix.png"):
        assert f"src='{chart}'" in text
        assert (page.parent / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mailbox(monkeypatch) -> Iterator[list[EmailMessage]]:
    """A real SMTP server on loopback as the DAG's `smtp_default`, alerts on: what it receives."""
    with smtp_server() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(server.connection()))
        monkeypatch.setenv("SHOPSTREAM_ALERT_EMAIL", ALERT_TO)
        yield server.received


ALERT_TO = "data-team@shop.example"


def test_corrupted_output_fails_validate_output_naming_the_check_and_mails_the_alert(
    first_run, local_stack, mailbox
):
    assert first_run["state"] == "success"
    # An 11th row with a null product, committed to what readers see: breaks two rules at once.
    table = iceberg_read.table("top_products")
    good = table.current_snapshot().snapshot_id
    first = table.scan(row_filter=f"date = '{DATE}' AND rank = 1").to_arrow()
    corrupt = first.set_column(first.schema.get_field_index("rank"), "rank", pa.array([11], pa.int32()))
    corrupt = corrupt.set_column(corrupt.schema.get_field_index("product_id"), "product_id",
                                 pa.array([None], pa.string()))  # fmt: skip
    table.append(corrupt.cast(table.schema().as_arrow()))

    result = run_dag(DATE, expected_events=COUNT, retries=0, only="validate_output", quiet=True)

    assert result["state"] == "failed"
    assert result["tasks"]["validate_output"]["state"] == "failed"
    assert result["tasks"]["end"]["state"] == "upstream_failed"
    report = json.loads((local_stack / "transformed" / "_validation" / f"{DATE}.json").read_text())
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert failed == {"top_products.at_most_10_ranked", "top_products.no_null_keys"}
    # The failure alert reached the SMTP server: to whom, which DAG, task and date, and why.
    [alert] = mailbox
    assert alert["To"] == ALERT_TO
    assert alert["Subject"] == f"shopstream: ecommerce_pipeline.validate_output failed for {DATE}"
    body = alert.get_body(("html",)).get_content()
    assert "top_products.no_null_keys" in body and "try 1" in body, body
    # Iceberg's own undo: main back at the published snapshot, and the date validates again.
    iceberg_read.table("top_products").manage_snapshots().set_current_snapshot(good).commit()
    assert validate(DATE).passed


def test_a_date_without_data_skips_the_etl_with_a_clear_message(first_run, local_stack, monkeypatch):
    assert first_run["state"] == "success"
    monkeypatch.setenv("SHOPSTREAM_RAW_WAIT_SECONDS", "5")
    monkeypatch.setenv("SHOPSTREAM_RAW_POKE_SECONDS", "2")

    # The sensor and what follows it (the ingest before it has nothing to do with the date).
    result = run_dag(days_before(20), expected_events=COUNT, retries=0, quiet=True,
                     only="wait_for_raw_data|run_rdd_etl|run_df_etl|validate_output|end")  # fmt: skip

    states = {t: info["state"] for t, info in result["tasks"].items()}
    assert result["state"] == "success", result
    assert [t for t, s in states.items() if s == "skipped"] == [
        "wait_for_raw_data", "run_rdd_etl", "run_df_etl", "validate_output", "end"
    ]  # fmt: skip
    assert publication.published(days_before(20)) is None


def test_a_date_before_the_start_date_is_refused_not_an_empty_success(local_stack):
    from shopstream.airflow.pipeline import START_DATE

    early = (START_DATE.date() - dt.timedelta(days=1)).isoformat()
    result = run_dag(early, retries=0, quiet=True)
    assert result["state"] == "refused" and "before the start date" in result["error"], result


def test_the_no_data_message_says_why_and_what_to_do(tmp_path):
    from shopstream.airflow.sensors import no_raw_data_message

    nothing = no_raw_data_message("2026-11-10", 0)
    assert "no raw events for 2026-11-10" in nothing and "held no events of that date" in nothing
    assert "produce them and clear this DAG run" in nothing
    all_bad = no_raw_data_message("2026-11-10", 3)
    assert "all went to quarantine" in all_bad and "3 records" in all_bad


PAST = tuple(days_before(n) for n in (5, 4, 3))


def outputs_of(data, date: str) -> dict[str, object]:
    """Every published output of one date (rows, and the RDD job's files): to prove that other
    runs left it untouched."""
    found: dict[str, object] = {name: published_rows(name, date) for name in daily_tables.OUTPUTS}
    for file in sorted(published_rdd(data, date).iterdir()):
        found[file.name] = file.read_bytes()
    return found


@pytest.fixture(scope="module")
def past_dates_run(first_run, local_stack, kafka_broker) -> dict:
    """A manual run for the last of three past dates whose events were never transformed, among
    them hostile records of the first (issue 33). Returns the run's result, what was produced, and
    DATE's published outputs from before the run."""
    assert first_run["state"] == "success"
    before = outputs_of(local_stack, DATE)
    produced = produce(kafka_broker, ORDERS_TOPIC, "--count", "1500", "--seed", "61",
                       "--start", PAST[0], "--span", "72h")  # fmt: skip
    hostile = hostile_records(kafka_broker.bootstrap, PAST[0])
    result = run_dag(PAST[-1], expected_events=COUNT, retries=0, quiet=True)
    return {"result": result, "produced": produced, "hostile": hostile, "date_before": before}


def test_a_run_naming_a_past_date_also_transforms_the_unpublished_dates_before_it(
    past_dates_run, local_stack, kafka_broker
):
    """The manual run's lookback window finds the two dates before it too (new since no
    publication), and the run publishes each date's own outputs. (Airflow's backfills run in the
    deployment's tests.)"""
    result, produced, hostile = (past_dates_run[k] for k in ("result", "produced", "hostile"))
    assert result["state"] == "success", result
    assert len({publication.published(day).version for day in PAST}) == 1, "one run published all three"
    assert outputs_of(local_stack, DATE) == past_dates_run["date_before"], (
        "a run never touches a date outside its window"
    )
    total = COUNT + produced["generated"] + len(hostile)
    events = [json.loads(m.value) for m in read_topic(kafka_broker.bootstrap, ORDERS_TOPIC, total)
              if not oracle.problems(m.value)]  # fmt: skip
    sign = {"NEW": 1, "CANCELLED": -1, "RETURNED": -1}
    for day in PAST:
        mine = [e for e in events if e["timestamp"].startswith(day)]
        expected = sum(sign[e["order_status"]] * e["quantity"] * Decimal(str(e["unit_price"])) for e in mine)
        [(orders, revenue)] = published_rows("hourly_sales", day, "sum(orders), sum(net_revenue)")
        assert (orders, revenue) == (sum(e["order_status"] == "NEW" for e in mine), expected), day
        assert json.loads((local_stack / "transformed" / "_validation" / f"{day}.json").read_text())["passed"]
    quarantined = read_raw(QUARANTINED).filter("value_bytes IS NOT NULL").select("value_bytes, reason")
    quarantined = quarantined.fetchall()
    assert {bytes(value): reason for value, reason in quarantined if bytes(value) in hostile} == hostile


def hostile_records(bootstrap: str, day: str) -> dict[bytes, str]:
    """Produces records of `day` that the contract refuses but Spark's lenient reading took (or
    that stopped the batch jobs); returns each with the reason the ingest must give."""
    from confluent_kafka import Producer

    event = {"order_id": "ORD-HOSTILE-1", "customer_id": "CUST-1", "product_id": "P-1001",
             "product_name": "Wireless Earbuds Pro", "category": "Electronics", "quantity": 2147483647,
             "unit_price": 9999999999.99, "order_status": "NEW", "region": "DE",
             "timestamp": f"{day}T12:00:00.000Z"}  # fmt: skip
    records = {
        json.dumps(event).encode(): "amount quantity x unit_price above 9999999999.99 (rule money): "
        "2147483647 x 9999999999.99",
        json.dumps({**event, "order_id": "ORD-HOSTILE-2", "quantity": 1, "unit_price": "10.00"}).encode():
        "unit_price has the wrong type: string, not number",
        json.dumps({**event, "order_id": "ORD-HOSTILE-3", "quantity": 1, "unit_price": 10,
                    "region": {"code": "US-E"}}).encode(): "region has the wrong type: object, not string",
        b"\xff\xfe{}\x80 not JSON": "not UTF-8 text (rule utf-8)",
    }  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in records:
        producer.produce(ORDERS_TOPIC, value=value)
    assert producer.flush(30) == 0
    return records


def catalog_connection(**options) -> psycopg.Connection:
    settings = lake_settings()
    return psycopg.connect(host=settings.host, port=settings.port, dbname=settings.database,
                           user=settings.user, password=settings.password, **options)  # fmt: skip


@contextlib.contextmanager
def catalog_row_locked(table: str) -> Iterator[None]:
    """A transaction holding the catalog's row of `table` (its `FOR UPDATE` lock): a commit to
    that table waits until the transaction ends (rolled back, changing nothing)."""
    with catalog_connection() as conn:
        held = conn.execute("SELECT 1 FROM iceberg_tables WHERE table_namespace = %s AND table_name = %s "
                            "FOR UPDATE", (namespace(), table)).fetchall()  # fmt: skip
        assert held, f"{table} not in the catalog"
        yield
        conn.rollback()


def wait_until_a_commit_waits(process: subprocess.Popen, timeout: float = 180) -> None:
    """Until a catalog commit (an UPDATE of iceberg_tables) waits for a lock; fails if `process`
    ends first (its output shown). Polled from a connection of its own, in autocommit: within one
    transaction PostgreSQL shows the same snapshot of pg_stat_activity each time."""
    deadline = time.monotonic() + timeout
    with catalog_connection(autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0][-3000:]
            waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   "AND query LIKE 'UPDATE iceberg_tables%'").fetchone()[0]  # fmt: skip
            if waiting:
                return
            time.sleep(0.2)
    raise AssertionError("no catalog commit waited on the held table")


@pytest.fixture(scope="module")
def killed_publication(past_dates_run, local_stack, kafka_broker) -> dict:
    """validate_output killed (SIGKILL) between two outputs' publication: late events of a
    published date are transformed by a run's jobs (validation and publication left out); then the
    README's `python -m shopstream.validation --publish` of that run is killed while its third
    table's commit waits on a row lock the test holds in the catalog. Returns the date, its
    publication before, the killed run's version and each output's snapshot before."""
    assert past_dates_run["result"]["state"] == "success"
    day, root = PAST[2], local_stack / "transformed"
    before = publication.published(day)
    produce(kafka_broker, ORDERS_TOPIC, "--count", "80", "--seed", "47", "--start", day, "--span", "2h")
    jobs = run_dag(None, expected_events=COUNT, retries=0, quiet=True,
                   only="run_streaming_job|wait_for_raw_data|run_rdd_etl|run_df_etl")  # fmt: skip
    assert jobs["state"] == "success", jobs
    [version] = [v for v in newest_versions(root) if day in publication.read_inputs(root, v)][:1]
    assert validate(day, root, version=version).passed, "the run's candidate is sound"
    snapshots = {output: iceberg_read.snapshot_id(output) for output in daily_tables.OUTPUTS}

    with catalog_row_locked(daily_tables.OUTPUTS[2]):
        publishing = subprocess.Popen(
            [sys.executable, "-m", "shopstream.validation", "--date", day, "--version", version, "--publish"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        wait_until_a_commit_waits(publishing)
        publishing.kill()
        publishing.communicate(timeout=30)
    return {"day": day, "before": before, "version": version, "snapshots": snapshots}


def test_a_publication_killed_between_two_tables_leaves_two_published_none_recorded_and_is_named(
    killed_publication, local_stack
):
    day, outputs = killed_publication["day"], daily_tables.OUTPUTS
    changed = [o for o in outputs if iceberg_read.snapshot_id(o) != killed_publication["snapshots"][o]]
    assert changed == list(outputs[:2]), "killed after two tables' commits, the third one waiting"
    assert publication.published(day) == killed_publication["before"], "no publication recorded"
    cut_short = validate(day, local_stack / "transformed")
    assert not cut_short.passed, "main mixes two runs' outputs of the date: named"


LATE, REDELIVERED = 300, 100


@pytest.fixture(scope="module")
def next_scheduled_run(killed_publication, kafka_broker) -> dict:
    """After the past dates' run (its three dates published) and the publication killed midway
    (`killed_publication`, the last of them): 300 more events of the middle date arrive late, and
    100 of its events a second time; then the scheduler's next run (for the closed day DATE).
    Returns its result, the past dates' publications before it, the late day's valid records and
    the topic's size before the late events."""
    late_day = PAST[1]
    before = {day: publication.published(day) for day in PAST}
    already = topic_stats(ORDERS_TOPIC, kafka_broker.bootstrap).messages
    produce(
        kafka_broker, ORDERS_TOPIC, "--count", str(LATE), "--seed", "43", "--start", late_day, "--span", "24h"
    )
    valid = [
        m
        for m in read_topic(kafka_broker.bootstrap, ORDERS_TOPIC, already + LATE)
        if not oracle.problems(m.value)
    ]
    of_late_day = [m for m in valid if json.loads(m.value)["timestamp"].startswith(late_day)]
    redeliver(kafka_broker.bootstrap, ORDERS_TOPIC, of_late_day[::7][:REDELIVERED])

    result = run_dag(None, expected_events=COUNT, retries=0, quiet=True)
    return {"result": result, "before": before, "of_late_day": of_late_day, "already": already}


def test_the_next_scheduled_run_recomputes_late_and_redelivered_events_and_completes_a_cut_publication(
    next_scheduled_run, killed_publication, local_stack, kafka_broker
):
    """The scheduler's next run finds the changed dates and recomputes them, each event once, and
    leaves the unchanged one alone."""
    root = local_stack / "transformed"
    late_day = PAST[1]
    result, before, of_late_day, already = (
        next_scheduled_run[k] for k in ("result", "before", "of_late_day", "already")
    )
    assert result["state"] == "success", result
    assert {t: i["state"] for t, i in result["tasks"].items()} == dict.fromkeys(TASK_IDS, "success")
    after = publication.published(late_day)
    assert after.version != before[late_day].version
    assert [p.version for p in publication.history(late_day)][:2] == [after.version, before[late_day].version]
    assert publication.published(PAST[0]) == before[PAST[0]], f"{PAST[0]} had no late events"
    # The publication cut short is completed: the date's rows changed since its last publication.
    completed = publication.published(killed_publication["day"])
    assert completed.version not in (killed_publication["before"].version, killed_publication["version"])
    assert validate(killed_publication["day"], root).passed
    # Every event of the late day counts, each once: the published outputs equal the events' own.
    topic = read_topic(kafka_broker.bootstrap, ORDERS_TOPIC, already + LATE + REDELIVERED)
    delivered = [json.loads(m.value) for m in topic if not oracle.problems(m.value)]
    events = [e for e in distinct_events(delivered) if e["timestamp"].startswith(late_day)]
    assert len(events) == len(of_late_day)
    sign = {"NEW": 1, "CANCELLED": -1, "RETURNED": -1}
    revenue = sum(sign[e["order_status"]] * e["quantity"] * Decimal(str(e["unit_price"])) for e in events)
    assert published_rows("hourly_sales", late_day, "sum(orders), sum(net_revenue)") == [
        (sum(e["order_status"] == "NEW" for e in events), revenue)
    ]  # fmt: skip
    counts = json.loads((published_rdd(local_stack, late_day) / "_counts.json").read_text())
    # The DAG's ingest dropped the copies already; the batch jobs found none left to drop.
    assert copies_in_raw() == 0 and counts["duplicates_dropped"] == 0
    report = json.loads((root / "_validation" / f"{late_day}.json").read_text())
    assert report["passed"] and report["version"] == after.version
    assert any(c["name"] == "reconciles_with_raw" and c["passed"] for c in report["checks"])


def newest_versions(root) -> list[str]:
    return [
        p.name for p in sorted((root / "_versions").iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    ]


def test_every_published_output_is_read_by_spark_sql_pyiceberg_and_trino_alone_and_equals_the_oracle(
    first_run, next_scheduled_run, local_stack, kafka_broker
):
    """What a user of the tables runs: plain Spark SQL and PyIceberg + DuckDB in processes that
    never import shopstream, and a Trino server, given only the catalog's settings files (`python -m
    shopstream.lake`).
    Every published date (on time, late, re-delivered, after a publication cut short) equals the
    oracle over the events read back from Kafka."""
    from shopstream.config import REPO_ROOT
    from shopstream.lake import example_queries, lake_settings, write_client_settings

    assert first_run["state"] == "success"
    folder = local_stack.parent / "state" / "lake"
    write_client_settings(lake_settings(), folder)
    dates = publication.published_dates()
    assert set(dates) >= {DATE, *PAST}
    want = lake_readers.oracle_outputs(read_all(kafka_broker.bootstrap), dates)
    for command in example_queries(DATE, folder):  # what `make run` prints for the user to paste
        command = command.replace(" .venv/bin/", f" {REPO_ROOT}/.venv/bin/")  # pasted in another folder
        pasted = subprocess.run(["bash", "-c", command], cwd=folder, env={**os.environ, "TZ": "UTC"},
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert pasted.returncode == 0 and pasted.stdout.count(f"{DATE} 23:00:00") == 1, pasted.stderr[-2000:]
    for reader, got in lake_readers.read_everywhere(folder, dates).items():
        assert got == want, reader


def read_all(bootstrap: str) -> list:
    return read_topic(bootstrap, ORDERS_TOPIC, topic_stats(ORDERS_TOPIC, bootstrap).messages)
