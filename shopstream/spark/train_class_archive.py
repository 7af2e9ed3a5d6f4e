"""Trains the Spark jobs' class-data archive (`shopstream.spark.class_archive`); `make setup` runs it.

    python -m shopstream.spark.train_class_archive   # skipped while the archive fits JDK and jars

A new JVM runs a small workload of the project's own transformations with
`-XX:ArchiveClassesAtExit` and dumps every class it loaded when it exits.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from shopstream.config import paths
from shopstream.spark.class_archive import fingerprint, fingerprint_file, usable_archive
from shopstream.spark.session import get_spark, job_java_options


def training_workload(spark, folder: Path) -> None:
    """What the jobs' JVMs do before their first useful task, in small, through the project's own
    transformations: Kafka-shaped records parsed, validated and de-duplicated by a streaming query
    (RocksDB state, file sink by verdict and date), the sink read back and rolled up, Parquet
    written by partition, and a Python RDD with key-value steps."""
    from pyspark.sql import functions as F

    from shopstream.config import VERDICT
    from shopstream.spark.orders import parse_orders, sink_rows, without_redeliveries

    arrived = dt.datetime(2026, 11, 20, 11, tzinfo=dt.UTC)
    records = [
        (None, json.dumps({"order_id": f"ORD-{i}", "customer_id": "C-1", "product_id": f"P-{i % 7}",
                           "product_name": "X", "category": "Books", "quantity": 2, "unit_price": 9.99,
                           "order_status": "NEW", "region": "DE",
                           "timestamp": f"2026-11-20T10:{i % 60:02d}:00Z"}).encode(),
         "training", 0, i, arrived)
        for i in range(500)
    ]  # fmt: skip
    kafka_like = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    spark.createDataFrame(records, kafka_like).write.parquet(str(folder / "kafka"))
    stream = spark.readStream.schema(kafka_like).parquet(str(folder / "kafka"))
    query = (
        without_redeliveries(sink_rows(parse_orders(stream)))
        .writeStream.format("parquet")
        .partitionBy(VERDICT, "date")
        .option("checkpointLocation", str(folder / "checkpoint"))
        .trigger(availableNow=True)
        .start(str(folder / "sink"))
    )
    query.awaitTermination()
    rolled = (
        spark.read.parquet(str(folder / "sink"))
        .groupBy("date", "product_id")
        .agg(F.count("*").alias("events"), F.sum("quantity").alias("quantity"))
    )
    rolled.write.mode("overwrite").partitionBy("date").parquet(str(folder / "rolled"))
    spark.read.parquet(str(folder / "rolled")).orderBy("product_id").collect()
    pairs = spark.sparkContext.parallelize(range(10_000), 2).map(lambda i: (i % 10, i))
    pairs.reduceByKey(lambda a, b: a + b).collect()


def train(archive: Path) -> None:
    """Runs the training workload in a new JVM that dumps its loaded classes when it exits, then
    moves the archive into place with its fingerprint (never a half-written archive)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.name}.partial")
    partial.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="class-archive-") as folder:
        dump = f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds=error"  # not its warnings per skipped class
        options = f"{job_java_options(class_archive=False)} {dump}"
        spark = get_spark(
            "shopstream-class-archive",
            {"spark.ui.enabled": "false", "spark.sql.warehouse.dir": f"{folder}/warehouse",
             "spark.driver.extraJavaOptions": options, "spark.comet.explain.fallback.enabled": "false"},
        )  # fmt: skip
        jvm = spark.sparkContext._gateway.proc
        training_workload(spark, Path(folder))
        spark.stop()
        jvm.stdin.close()  # the gateway JVM exits when its parent's pipe closes, dumping the archive
        jvm.wait(timeout=300)
    if not partial.exists():
        raise RuntimeError(f"the training JVM wrote no class archive ({partial}); exit code {jvm.returncode}")
    partial.replace(archive)
    fingerprint_file(archive).write_text(fingerprint() + "\n")


def main() -> int:
    archive = paths().class_archive
    if usable_archive():
        print("class archive up to date")
        return 0
    started = time.monotonic()
    print(f"training the Spark jobs' class archive -> {archive} (~1 min)", flush=True)
    train(archive)
    size = archive.stat().st_size / 1e6
    print(f"class archive: {size:.0f} MB in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
