"""One way to get a SparkSession for every shopstream job, in-process or under spark-submit.

The master comes from spark-submit's `--master`, else `SHOPSTREAM_SPARK_MASTER`, else the
profile's (`local[2]`; `spark://127.0.0.1:7077` with SHOPSTREAM_PROFILE=cluster); Spark's
Kafka connector jars come from the folder `make setup` filled; the rest of the configuration
from `config/spark/spark-defaults.conf`, handed to every job as settings (`job_conf`) rather
than through SPARK_CONF_DIR: a configuration folder on the JVM's class path would bar its
class-data archive (`shopstream.spark.class_archive`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NoReturn

from shopstream.config import REPO_ROOT, extra_jvm_options, paths, spark_master
from shopstream.spark.class_archive import archive_java_options
from shopstream.spark.comet import comet_class_path_conf, comet_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_DEFAULTS = REPO_ROOT / "config" / "spark" / "spark-defaults.conf"
LOG4J_CONFIG = REPO_ROOT / "config" / "spark" / "log4j2.properties"


def kafka_connector_jars(required: bool = True) -> list[str]:
    """The connector jars `make setup` resolved. `required=False` lists what is there (the DAG,
    at parse time: a missing folder then fails the Spark task, not the DAG import)."""
    jars = sorted(str(p) for p in paths().spark_kafka_jars.glob("*.jar"))
    if required and not jars:
        raise RuntimeError(f"no Spark Kafka connector jars in {paths().spark_kafka_jars}: run `make setup`")
    return jars


# The throughput collector: on 2 cores G1's concurrent work competes with the tasks.
# HotSpot never compiles a method of more than 8,000 bytes of bytecode unless told to; the ingest's
# generated code (parse, validate, route per record) is such a method and ran interpreted.
# Both measured in docs/benchmarks.md, "Settings and their measurements".
JVM_OPTIONS = "-XX:+UseParallelGC -XX:-DontCompileHugeMethods"


def jvm_options() -> str:
    """JVM_OPTIONS, then `SHOPSTREAM_JVM_OPTIONS` (`config.extra_jvm_options`)."""
    return " ".join([JVM_OPTIONS, *extra_jvm_options()])


def spark_defaults() -> dict[str, str]:
    """config/spark/spark-defaults.conf (`key value` lines, `#` comments) as settings."""
    lines = (line.strip() for line in SPARK_DEFAULTS.read_text().splitlines())
    return dict(line.split(None, 1) for line in lines if line and not line.startswith("#"))


def job_java_options(class_archive: bool = True) -> str:
    """The driver JVM's options: the collector, Derby's and log4j's files, the class archive."""
    options = [
        jvm_options(),
        f"-Dderby.system.home={paths().state / 'derby'}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
    ]
    return " ".join([*options, archive_java_options()] if class_archive else options).strip()


def job_conf(comet: bool = True, required: bool = True) -> dict[str, str]:
    """Every job session's settings: spark-defaults, those that depend on the state folder, and
    Comet's for a batch job (`comet`; see `shopstream.spark.comet`). The streaming jobs run
    without it: Kafka's source, JSON parsing and the state store are not native, and with Comet
    1M events ingested no faster (docs/benchmarks.md). `required=False`: at DAG parse time a
    missing jar fails the Spark task, not the import."""
    return {
        **spark_defaults(),
        "spark.sql.warehouse.dir": str(paths().state / "spark-warehouse"),
        "spark.driver.extraJavaOptions": job_java_options(),
        "spark.executor.extraJavaOptions": jvm_options(),
        "spark.python.daemon.module": "shopstream.spark.worker_daemon",
        **comet_class_path_conf(required=required and comet),
        **(comet_conf() if comet else {}),
    }


def _lake_jars(lake: bool) -> list[str]:
    from shopstream.lake import iceberg_jars

    return iceberg_jars() if lake else []


def get_spark(
    app_name: str, conf: Mapping[str, str] | None = None, comet: bool = True, lake: bool = False
) -> SparkSession:
    """The active session if there is one (tests, spark-submit), else a new one configured here
    (with Comet unless `comet` is False or SHOPSTREAM_COMET=0; with the Iceberg catalog
    `shopstream.lake` when `lake`)."""
    # Python workers must run the same interpreter (and so the same pyspark) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Bind the driver to loopback, never to whatever interface the hostname resolves to.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in (conf or {}).items():
            active.conf.set(key, value)
        return active

    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the master and jars are already in the launch configuration.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(spark_master())
        builder = builder.config("spark.jars", ",".join(kafka_connector_jars() + _lake_jars(lake)))
        for key, value in job_conf(comet).items():
            builder = builder.config(key, value)
    if lake:
        from shopstream.lake import lake_settings, spark_conf

        conf = {**spark_conf(lake_settings()), **(conf or {})}
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def job_logger(name: str) -> logging.Logger:
    """Logs of our jobs on stderr, next to (and quieter than) Spark's own."""
    logger = logging.getLogger(f"shopstream.{name}")
    if not logging.getLogger("shopstream").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root = logging.getLogger("shopstream")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logger


def exit_after(main: Callable[[], int]) -> NoReturn:
    """Entry point of a job script: runs `main`, stops the Spark session it left, exits with its code."""
    code = main()
    from pyspark.sql import SparkSession

    if (session := SparkSession.getActiveSession()) is not None:
        session.stop()
    sys.exit(code)
