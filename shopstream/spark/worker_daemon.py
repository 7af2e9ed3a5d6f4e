"""The Python worker daemon of every shopstream Spark job: PySpark's own (`pyspark.daemon`),
started without the zipped copies of pyspark that Spark puts first on the workers' PYTHONPATH
(`python/lib/pyspark.zip`, py4j's zip, spark-core's jar) when the same pyspark is installed in
the environment, as `make setup` installs it.

Why: PySpark's worker calls `importlib.invalidate_caches()` for every task, and Python 3.11's
zip importer then reads the index of its archive again: pyspark.zip (thousands of entries) six
times per task, most of a small task's time (docs/benchmarks.md). Where pyspark exists only in the zip (a
cluster's Spark distribution without the pip package), the path is left as it is.

Configured by `spark.python.daemon.module` (see `shopstream.spark.session.job_conf`); nothing
in this module may import pyspark before the path is settled.
"""

from __future__ import annotations

import fnmatch
import os
import sys

# What Spark's PythonUtils.sparkPythonPath puts on a worker's path.
SPARK_ARCHIVES = ("pyspark.zip", "py4j-*-src.zip", "spark-core_*.jar")


def installed_pyspark(entries: list[str]) -> bool:
    """Whether a folder among `entries` holds the pyspark package."""
    return any(os.path.isfile(os.path.join(entry or ".", "pyspark", "__init__.py")) for entry in entries)


def without_zipped_pyspark(entries: list[str]) -> list[str]:
    """`entries` (sys.path) without Spark's archives when pyspark is installed in a folder."""

    def spark_archive(entry: str) -> bool:
        return any(fnmatch.fnmatch(os.path.basename(entry), name) for name in SPARK_ARCHIVES)

    rest = [entry for entry in entries if not spark_archive(entry)]
    return rest if installed_pyspark(rest) else entries


if __name__ == "__main__":
    kept = without_zipped_pyspark(sys.path)
    for dropped in set(sys.path) - set(kept):
        # Finding this module already made an importer for each; invalidate_caches() asks all.
        sys.path_importer_cache.pop(dropped, None)
    sys.path[:] = kept
    from pyspark.daemon import manager

    manager()
