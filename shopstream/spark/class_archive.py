"""Class-data sharing for the Spark jobs' JVMs (AppCDS). Before its first task a job's JVM loads,
parses and verifies ≈ 10,000 classes from Spark's ≈ 250 jars; `make setup` runs a short training
workload once with `-XX:ArchiveClassesAtExit`, and every job JVM then maps the archive
(`-XX:SharedArchiveFile`, see `session.job_conf`) instead of loading those classes one by one.

    python -m shopstream.spark.train_class_archive   # (re)train when the JDK or the class path changed

The JVM accepts an archive only for the class path and JDK it was made with: the archive's
fingerprint (each class path jar's size and time, the JDK) is kept beside it, and a job whose
class path differs (Comet switched off, another Spark) simply runs without it. Classes of jars
added at run time (`spark.jars`: the Kafka connector) and generated code are never archived.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib.util import find_spec
from pathlib import Path

from shopstream.config import paths
from shopstream.spark.comet import comet_enabled, comet_jars


def pyspark_jars() -> list[Path]:
    # Found, not imported: the DAG file asks at every parse, and importing pyspark costs ≈ 0.4 s.
    return sorted((Path(find_spec("pyspark").origin).parent / "jars").glob("*.jar"))


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


def usable_archive() -> Path | None:
    """The trained archive when it was made for this JDK and class path, else None."""
    archive = paths().class_archive
    stamp = fingerprint_file(archive)
    if archive.exists() and stamp.exists() and stamp.read_text().strip() == fingerprint():
        return archive
    return None


def archive_java_options() -> str:
    """The JVM option that maps the archive, or "" without a usable one (or with
    SHOPSTREAM_CLASS_ARCHIVE=0, to compare)."""
    archive = usable_archive() if os.environ.get("SHOPSTREAM_CLASS_ARCHIVE", "1") != "0" else None
    return f"-XX:SharedArchiveFile={archive}" if archive else ""


def fingerprint_file(archive: Path) -> Path:
    return archive.with_suffix(".fingerprint")
