"""The Spark jobs' class-data archive (AppCDS) that `make setup` trains: the jobs' JVM really maps
it, and an archive made for another JDK or class path is never handed to a JVM."""

from __future__ import annotations

import subprocess

import pytest

from shopstream.spark import class_archive

# Without the archive the JVM takes ≈ 1,200 classes from the JDK's own archive; with it, ≈ 9,000+.
ARCHIVED_CLASSES_AT_LEAST = 5000


def shared_classes_loaded(pid: int) -> int:
    jcmd = class_archive.java_home() / "bin" / "jcmd"
    counters = subprocess.run([str(jcmd), str(pid), "PerfCounter.print"], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip
    values = dict(line.split("=", 1) for line in counters.splitlines() if "=" in line)
    return int(values["java.cls.sharedLoadedClasses"])


@pytest.mark.integration
def test_the_jobs_jvm_loads_spark_from_the_trained_archive(spark):
    assert class_archive.usable_archive(), "no class archive for this class path: run `make setup`"
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    assert shared_classes_loaded(pid) >= ARCHIVED_CLASSES_AT_LEAST


def test_an_archive_made_for_other_jars_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_JARS_DIR", str(tmp_path))
    archive = tmp_path / "class-archive" / "spark-jobs.jsa"
    archive.parent.mkdir()
    archive.write_bytes(b"archive")
    class_archive.fingerprint_file(archive).write_text("made-elsewhere\n")
    assert class_archive.usable_archive() is None
    assert class_archive.archive_java_options() == ""
    class_archive.fingerprint_file(archive).write_text(class_archive.fingerprint() + "\n")
    assert class_archive.archive_java_options() == f"-XX:SharedArchiveFile={archive}"
    monkeypatch.setenv("SHOPSTREAM_CLASS_ARCHIVE", "0")
    assert class_archive.archive_java_options() == ""
