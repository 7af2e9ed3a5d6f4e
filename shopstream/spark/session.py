"""One way to get a SparkSession for every shopstream job, in-process or under spark-submit.

The master comes from spark-submit's `--master`, else `SHOPSTREAM_SPARK_MASTER`, else the
profile's (`local[2]`; `spark://127.0.0.1:7077` with SHOPSTREAM_PROFILE=cluster); Spark's
Kafka connector jars come from the folder `make setup` filled; the rest of
the configuration from `config/spark/spark-defaults.conf` (via SPARK_CONF_DIR).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NoReturn

from shopstream.config import REPO_ROOT, paths, spark_master
from shopstream.spark.comet import comet_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_CONF_DIR = REPO_ROOT / "config" / "spark"


def kafka_connector_jars(required: bool = True) -> list[str]:
    """The connector jars `make setup` resolved. `required=False` lists what is there (the DAG,
    at parse time: a missing folder then fails the Spark task, not the DAG import)."""
    jars = sorted(str(p) for p in paths().spark_kafka_jars.glob("*.jar"))
    if required and not jars:
        raise RuntimeError(f"no Spark Kafka connector jars in {paths().spark_kafka_jars}: run `make setup`")
    return jars


# The throughput collector: on 2 cores G1's concurrent work competes with the tasks (measured:
# 1M events ingested in 19.9 s -> 17.9 s with a cold JVM, 10.5 s -> 9.6 s warm).
JVM_OPTIONS = "-XX:+UseParallelGC"


def job_conf(comet: bool = True, required: bool = True) -> dict[str, str]:
    """Settings every job session needs that depend on the state folder (not in spark-defaults),
    with Comet's for a batch job (`comet`; see `shopstream.spark.comet`). The streaming jobs run
    without it: Kafka's source, JSON parsing and the state store are not native, and with Comet
    1M events ingested no faster (docs/benchmarks.md). `required=False`: at DAG parse time a
    missing jar fails the Spark task, not the import."""
    state = paths().state
    return {
        "spark.sql.warehouse.dir": str(state / "spark-warehouse"),
        "spark.driver.extraJavaOptions": f"{JVM_OPTIONS} -Dderby.system.home={state / 'derby'}",
        "spark.executor.extraJavaOptions": JVM_OPTIONS,
        **(comet_conf(required) if comet else {}),
    }


def get_spark(app_name: str, conf: Mapping[str, str] | None = None, comet: bool = True) -> SparkSession:
    """The active session if there is one (tests, spark-submit), else a new one configured here
    (with Comet unless `comet` is False or SHOPSTREAM_COMET=0)."""
    os.environ.setdefault("SPARK_CONF_DIR", str(SPARK_CONF_DIR))
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
        builder = builder.config("spark.jars", ",".join(kafka_connector_jars()))
        for key, value in job_conf(comet).items():
            builder = builder.config(key, value)
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
