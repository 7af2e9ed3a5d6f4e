"""Class-data sharing for the Spark jobs' JVMs (AppCDS). Before its first task a job's JVM loads,
parses and verifies ≈ 10,000 classes from Spark's ≈ 250 jars; `make setup` runs a short training
workload once with `-XX:ArchiveClassesAtExit`, and every job JVM then maps the archive
(`-XX:SharedArchiveFile`, see `session.job_conf`) instead of loading those classes one by one.

    python -m shopstream.spark.class_archive     # (re)train when the JDK or the class path changed

The JVM accepts an archive only for the class path and JDK it was made with: the archive's
fingerprint (each class path jar's size and time, the JDK) is kept beside it, and a job whose
class path differs (Comet switched off, another Spark) simply runs without it. Classes of jars
added at run time (`spark.jars`: the Kafka connector) and generated code are never archived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from shopstream.config import paths
from shopstream.spark.comet import comet_enabled, comet_jars


def pyspark_jars() -> list[Path]:
    import pyspark

    return sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))


def archived_class_path() -> list[Path]:
    """The jobs' JVM class path as Spark's launcher builds it: extraClassPath (Comet's jars, given to
    every job so that one archive serves them all), then Spark's own jars."""
    extra = [Path(j) for j in comet_jars(required=False)] if comet_enabled() else []
    return [*extra, *pyspark_jars()]


def java_home() -> Path:
    """The JDK Spark's launcher runs: JAVA_HOME, else the `java` on PATH."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"]).resolve()
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else Path("/nonexistent")


def fingerprint() -> str:
    """What the JVM checks before it maps an archive: the JDK and each class path jar."""
    digest = hashlib.sha256()
    for item in (java_home() / "lib" / "modules", *archived_class_path()):
        stat = item.stat() if item.exists() else None
        digest.update(f"{item}:{stat and stat.st_size}:{stat and int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def _fingerprint_file(archive: Path) -> Path:
    return archive.with_suffix(".fingerprint")


def usable_archive() -> Path | None:
    """The trained archive when it was made for this JDK and class path, else None."""
    archive = paths().class_archive
    stamp = _fingerprint_file(archive)
    if archive.exists() and stamp.exists() and stamp.read_text().strip() == fingerprint():
        return archive
    return None


def archive_java_options() -> str:
    """The JVM option that maps the archive, or "" without a usable one (or with
    SHOPSTREAM_CLASS_ARCHIVE=0, to compare)."""
    archive = usable_archive() if os.environ.get("SHOPSTREAM_CLASS_ARCHIVE", "1") != "0" else None
    return f"-XX:SharedArchiveFile={archive}" if archive else ""


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
    from shopstream.spark.session import get_spark, job_java_options

    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.name}.partial")
    partial.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="class-archive-") as folder:
        dump = f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds=error"  # not its warnings per skipped class
        options = f"{job_java_options(class_archive=False)} {dump}"
        spark = get_spark(
            "shopstream-class-archive",
            {"spark.ui.enabled": "false", "spark.sql.warehouse.dir": f"{folder}/warehouse",
             "spark.driver.extraJavaOptions": options},
        )  # fmt: skip
        jvm = spark.sparkContext._gateway.proc
        training_workload(spark, Path(folder))
        spark.stop()
        jvm.stdin.close()  # the gateway JVM exits when its parent's pipe closes, dumping the archive
        jvm.wait(timeout=300)
    if not partial.exists():
        raise RuntimeError(f"the training JVM wrote no class archive ({partial}); exit code {jvm.returncode}")
    partial.replace(archive)
    _fingerprint_file(archive).write_text(fingerprint() + "\n")


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
