"""Batch jobs next to DuckDB computing the same outputs from the same raw Parquet files.

    .venv/bin/python -m bench.batch [--count 1000000]

Builds the raw layer through the real path (order-sim -> own broker on free ports -> streaming
job), then times the RDD job, the DataFrame job (in one warm Spark session, 1 GB driver) and
DuckDB running the reference SQL of tests/duckdb_oracle.py over the committed raw files.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb

from bench.common import filled_topic, fresh_topic, stream_settings, temp_home
from shopstream.config import VALID
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.spark import batch_df_etl, batch_rdd_etl
from shopstream.spark.batch import read_valid_rows, run_inputs
from shopstream.spark.session import get_spark
from shopstream.spark.stream_consumer import run
from tests import duckdb_oracle
from tests.dates import days_ago
from tests.sink_files import committed_files

STREAM_BATCH = 2_000_000  # maxOffsetsPerTrigger while building the raw layer


def build_raw(home: Path, count: int, spark, shared: LocalBroker | None = None) -> tuple[Path, float]:
    """The raw layer of `count` events through the real path; also the streaming job's seconds
    (2M events per micro-batch: the ingest rate once the first batch has warmed the JVM up)."""
    topic = fresh_topic()
    with filled_topic(home, count, topic, "--start", days_ago(4), "--span", "72h", shared=shared) as broker:
        settings = stream_settings(home, broker, topic, max_offsets_per_trigger=STREAM_BATCH)
        stream_seconds = timed(lambda: run(settings, spark))
    return settings.raw_dir, stream_seconds


def duckdb_reference(raw: Path) -> float:
    """Seconds for DuckDB to compute every output of both jobs from the raw files, each event
    once (as the jobs count them)."""
    started = time.monotonic()
    con = duckdb.connect()
    files = committed_files(raw, VALID)
    con.execute(
        "CREATE VIEW events AS SELECT DISTINCT ON (order_id, order_status, timestamp) order_id, customer_id, "
        "product_id, product_name, category, quantity, unit_price, order_status, region, timestamp AS ts "
        f"FROM read_parquet({files!r}, hive_partitioning=true)"
    )
    con.execute("CREATE TABLE regions AS SELECT * FROM read_csv_auto('data/regions.csv')")
    con.execute(duckdb_oracle.BASE)
    for query in duckdb_oracle.QUERIES.values():
        con.execute(query).fetchall()
    return time.monotonic() - started


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def bench_session(home: Path):
    """One warm Spark session with 1 GB of driver memory and a throwaway warehouse."""
    return get_spark(
        "shopstream-bench",
        {
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
            "spark.sql.warehouse.dir": str(home / "wh"),
        },
    )


def measure(count: int, spark=None, broker: LocalBroker | None = None) -> dict:
    with temp_home() as home:
        spark = spark or bench_session(home)
        raw, stream_seconds = build_raw(home, count, spark, broker)
        inputs = run_inputs(raw, home / "out", None, "bench")  # every date of the raw layer
        rows = read_valid_rows(spark, inputs, ["date"]).count()
        rdd = timed(lambda: batch_rdd_etl.run(inputs, spark))
        df = timed(lambda: batch_df_etl.run(inputs, spark))
        reference = duckdb_reference(raw)
    return {"rows": rows, "rdd_seconds": rdd, "df_seconds": df, "duckdb_seconds": reference,
            "stream_seconds": stream_seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    r = measure(parser.parse_args().count)
    print(f"raw rows              : {r['rows']:,}")
    print(f"RDD job               : {r['rdd_seconds']:6.1f} s  ({r['rows'] / r['rdd_seconds']:,.0f} rows/s)")
    print(f"DataFrame job         : {r['df_seconds']:6.1f} s")
    print(f"DuckDB, same outputs  : {r['duckdb_seconds']:6.1f} s  "
          f"(DataFrame job / DuckDB = {r['df_seconds'] / r['duckdb_seconds']:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
