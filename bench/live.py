"""The live dashboard's three targets (issue 14), each on the real engines and a throwaway
PostgreSQL:

    .venv/bin/python -m bench.live [--rate 1000] [--seconds 300] [--count 1000000] [--days 30]

* latency: order-sim produces `rate` events/s for `seconds` with wall-clock timestamps while the
  live aggregation runs with a 5-second trigger; the store's count of events is polled every
  0.2 s through the dashboard's own KPI query. Event k was produced at t0 + k/rate (t0: the first
  event's Kafka timestamp; order-sim paces evenly) and is visible once the count exceeds k.
* throughput: `count` events in a topic, the live aggregation draining them (availableNow, warm
  Spark session) while the ingest drains the same topic in its own Spark process, as in production.
* queries: `days` days of per-minute aggregates written into the store, then every query of a
  dashboard refresh timed 50 times (p95 per query and per whole refresh).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench.common import bench_broker, bench_lake, create_topic, fill, fresh_topic, temp_home
from bench.latency import percentile
from shopstream import serving
from shopstream.config import order_sim_binary
from shopstream.dashboard import queries as q
from shopstream.devstack.kafka_broker import LocalBroker
from shopstream.devstack.postgres import throwaway_postgres
from shopstream.spark.live_sales import LIVE_TRIGGER, start_query
from shopstream.spark.session import get_spark
from shopstream.spark.streaming import StreamSettings


@contextmanager
def bench_store():
    with throwaway_postgres(Path("/tmp")) as server:
        with serving.connect(server.dsn) as conn:
            serving.create_schema(conn)
        yield server.dsn


def counted(conn) -> int:
    """Events counted in the store so far (every status), through the dashboard's KPI query."""
    k = q.kpis(conn, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    return k.orders + k.cancelled + k.returned


def first_timestamp(broker: LocalBroker, topic: str) -> float:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": fresh_topic()})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        firsts = []
        for p in parts:
            consumer.assign([TopicPartition(topic, p, 0)])
            message = consumer.consume(1, timeout=10)
            if message:
                firsts.append(message[0].timestamp()[1] / 1000)
        return min(firsts)
    finally:
        consumer.close()


def latency(rate: int, seconds: int, spark, broker: LocalBroker, trigger: str = LIVE_TRIGGER) -> dict:
    count = rate * seconds
    topic = fresh_topic()
    with temp_home() as home, bench_store() as dsn:
        # The query runs before the first event: the figure is its steady state, not its start-up.
        create_topic(broker, topic)
        settings = StreamSettings(bootstrap=broker.bootstrap, topic=topic, checkpoint_dir=home / "live",
                                  trigger=trigger)  # fmt: skip
        query, store = start_query(spark, settings, dsn)
        while query.lastProgress is None:
            time.sleep(0.2)
        producer = subprocess.Popen(
            [str(order_sim_binary()), "--brokers", broker.bootstrap, "--topic", topic, "--no-updates",
             "--rate", str(rate), "--count", str(count), "--start", "now"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        samples: list[tuple[float, int]] = []
        try:
            with serving.connect(dsn, autocommit=True) as conn:
                deadline = time.monotonic() + seconds + 180
                while time.monotonic() < deadline:
                    samples.append((time.time(), counted(conn)))
                    if samples[-1][1] >= count:
                        break
                    time.sleep(0.2)
            assert producer.wait(timeout=60) == 0, "order-sim failed"
        finally:
            query.stop()
            store.close()
        t0 = first_timestamp(broker, topic)
    assert samples[-1][1] == count, f"the store counted {samples[-1][1]} of {count} events"
    values, i = [], 0
    for k in range(0, count, max(1, count // 5000)):
        while samples[i][1] <= k:
            i += 1
        values.append(samples[i][0] - (t0 + k / rate))
    values.sort()
    return {"rate": rate, "seconds": seconds, "trigger": trigger, "p50": percentile(values, 50),
            "p99": percentile(values, 99)}  # fmt: skip


def throughput(count: int, spark, broker: LocalBroker) -> dict:
    topic = fresh_topic()
    with temp_home() as home, bench_store() as dsn:
        fill(broker, topic, count)
        ingest = subprocess.Popen(
            [sys.executable, "-m", "shopstream.spark.stream_consumer", "--available-now", "--bootstrap",
             broker.bootstrap, "--topic", topic, "--checkpoint-dir", str(home / "ingest")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        settings = StreamSettings(bootstrap=broker.bootstrap, topic=topic, checkpoint_dir=home / "live",
                                  available_now=True)  # fmt: skip
        started = time.monotonic()
        query, store = start_query(spark, settings, dsn)
        try:
            query.awaitTermination()
        finally:
            store.close()
        seconds = time.monotonic() - started
        ingest_overlapped = ingest.poll() is None
        assert ingest.wait(timeout=600) == 0, "the ingest run failed"
        with serving.connect(dsn) as conn:
            assert counted(conn) == count
    return {
        "count": count,
        "seconds": seconds,
        "per_s": count / seconds,
        "alongside_ingest": ingest_overlapped,
    }


FILL = """
INSERT INTO live_sales
SELECT m, r, c, 5, 1, 1, 8, 500.00, 100.00, 400.00
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS m,
     unnest(%(regions)s::text[]) AS r, unnest(%(categories)s::text[]) AS c;
INSERT INTO live_totals
SELECT minute, sum(orders), sum(cancelled), sum(returned), sum(units), sum(gross), sum(reversals), sum(net)
FROM live_sales GROUP BY minute;
INSERT INTO live_products
SELECT m, p, 'name ' || p, 'category', 2, 3, 90.00
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS m,
     unnest(%(products)s::text[]) AS p;
INSERT INTO live_intake
SELECT m, 500, 5 FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS m;
INSERT INTO live_queries VALUES ('live_sales', '/bench', 1, now(), 0, 0, now());
ANALYZE;
"""


def dashboard_refresh(conn, now: dt.datetime) -> None:
    """The store's queries of one refresh of the live and health panels (the Kafka lag apart)."""
    q.live_view(conn, now)
    q.store_health(conn, now)


def query_latency(days: int, runs: int = 50) -> dict:
    from shopstream.catalogue import product_catalogue, region_codes

    now = q.now_utc()
    with bench_store() as dsn, serving.connect(dsn, autocommit=True) as conn:
        categories = sorted({p["category"] for p in product_catalogue().values()})
        started = time.monotonic()
        span = {"start": now - dt.timedelta(days=days), "end": now}
        params = {**span, "regions": list(region_codes()), "categories": categories,
                  "products": list(product_catalogue())}  # fmt: skip
        for statement in filter(str.strip, FILL.split(";")):
            conn.execute(statement, params if "%(" in statement else None)
        fill_seconds = time.monotonic() - started
        rows = conn.execute("SELECT count(*) FROM live_sales").fetchone()[0]
        timings: dict[str, list[float]] = {}
        for _ in range(runs):
            for name, call in (
                ("kpis today", lambda: q.kpis(conn, q.day_start(now))),
                ("per minute", lambda: q.per_minute(conn, now)),
                ("top products", lambda: q.top_products(conn, now)),
                ("by region today", lambda: q.revenue_by_region(conn, q.day_start(now))),
            ):
                t = time.perf_counter()
                call()
                timings.setdefault(name, []).append(time.perf_counter() - t)
            refresh_started = time.perf_counter()
            dashboard_refresh(conn, now)
            timings.setdefault("whole refresh", []).append(time.perf_counter() - refresh_started)
    p95 = {name: percentile(sorted(values), 95) * 1000 for name, values in timings.items()}
    return {"days": days, "rows": rows, "fill_seconds": fill_seconds, "p95_ms": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    print(query_latency(args.days))
    with temp_home() as home, bench_broker(home) as broker, bench_lake(home):  # the ingest's raw table
        spark = get_spark("shopstream-bench", {"spark.ui.enabled": "false"}, comet=False)
        print(throughput(args.count, spark, broker))
        print(latency(args.rate, args.seconds, spark, broker))


if __name__ == "__main__":
    main()
