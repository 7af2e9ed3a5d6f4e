"""The Python worker daemon of the Spark jobs (`shopstream.spark.worker_daemon`): workers import
the installed pyspark, not Spark's zipped copies, whose indexes Python 3.11 re-reads per task."""

from __future__ import annotations

import sys

import pytest

from shopstream.spark.worker_daemon import without_zipped_pyspark

SPARK_HOME = "/opt/venv/lib/python3.11/site-packages/pyspark"
SPARK_PATH = [f"{SPARK_HOME}/python/lib/pyspark.zip", f"{SPARK_HOME}/python/lib/py4j-0.10.9.9-src.zip",
              f"{SPARK_HOME}/jars/spark-core_2.13-4.1.3.jar"]  # fmt: skip


def test_sparks_archives_leave_the_path_when_pyspark_is_installed(tmp_path):
    (tmp_path / "pyspark").mkdir()
    (tmp_path / "pyspark" / "__init__.py").write_text("")
    path = ["/work", *SPARK_PATH, "/usr/lib/python311.zip", str(tmp_path)]
    assert without_zipped_pyspark(path) == ["/work", "/usr/lib/python311.zip", str(tmp_path)]


def test_the_path_stays_when_pyspark_exists_only_in_sparks_zip(tmp_path):
    path = ["/work", *SPARK_PATH, str(tmp_path)]
    assert without_zipped_pyspark(path) == path


@pytest.mark.integration
def test_a_python_task_imports_the_installed_pyspark(spark):
    def where_from(_):
        import pyspark  # the worker's, not the driver's

        yield pyspark.__file__, [entry for entry in sys.path if entry.endswith((".zip", ".jar"))]

    [(module_file, archives)] = spark.sparkContext.parallelize([0], 1).mapPartitions(where_from).collect()
    assert ".zip" not in module_file and module_file.endswith("pyspark/__init__.py")
    assert not [entry for entry in archives if "pyspark" in entry or "py4j" in entry], archives
