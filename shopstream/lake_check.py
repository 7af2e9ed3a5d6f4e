"""Fails fast, saying what to do, when the tables' catalog database or their object store cannot
be reached: a job checks before it opens its Spark session (under `python -m`, before any JVM
starts; under spark-submit, before its query), where Iceberg would fail after the task's retries
with a Java stack trace.

    check_lake()   # raises LakeCheckError, or returns the settings it checked
"""

from __future__ import annotations

import uuid

from shopstream.config import ServingDbNotConfigured
from shopstream.lake import LAKE_CONN_ID, LAKE_IO_ENV, LakeSettings, lake_settings, pyiceberg_properties

CONNECT_TIMEOUT_S = 5


class LakeCheckError(RuntimeError):
    """The catalog database or the warehouse is not usable; the message says which and what to do."""


def check_lake(settings: LakeSettings | None = None) -> LakeSettings:
    """The catalog database answers, and a warehouse in object storage takes a write; else
    LakeCheckError. (A local or HDFS warehouse is made by its first write: nothing to check.)"""
    settings = settings or configured_settings()
    check_catalog_database(settings)
    if settings.in_object_storage:
        check_object_store(settings)
    return settings


def configured_settings() -> LakeSettings:
    """`lake.lake_settings()`; without any catalog configured, LakeCheckError."""
    try:
        return lake_settings()
    except ServingDbNotConfigured:  # the embedded catalog is a database of the local PostgreSQL
        raise LakeCheckError(
            "no catalog database for the tables: run `make db-up` (the local PostgreSQL holds it), or set "
            f"SHOPSTREAM_LAKE_CATALOG or the Airflow Connection {LAKE_CONN_ID} to yours"
        ) from None


def check_catalog_database(settings: LakeSettings) -> None:
    import psycopg

    try:
        psycopg.connect(host=settings.host, port=settings.port, dbname=settings.database, user=settings.user,
                        password=settings.password, connect_timeout=CONNECT_TIMEOUT_S).close()  # fmt: skip
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())[:200]
        raise LakeCheckError(
            f"the tables' catalog database {settings.jdbc_uri} does not answer ({reason}): run `make db-up` "
            f"for the local one, or point SHOPSTREAM_LAKE_CATALOG or the Airflow Connection {LAKE_CONN_ID} "
            "at yours"
        ) from None


def check_object_store(settings: LakeSettings) -> None:
    """Writes and deletes a small object under the warehouse, through PyIceberg's file IO (PyArrow
    then leaves the warehouse's folder marker, as S3 consoles make them)."""
    from pyiceberg.io import load_file_io

    probe = f"{settings.warehouse.rstrip('/')}/.shopstream-probe-{uuid.uuid4().hex}"
    properties = {**pyiceberg_properties(settings), "s3.connect-timeout": str(CONNECT_TIMEOUT_S)}
    try:
        io = load_file_io(properties, probe)
        with io.new_output(probe).create(overwrite=True) as out:
            out.write(b"shopstream checks that it may write here")
        io.delete(probe)
    except Exception as error:  # noqa: BLE001 - whatever the store answers, the user gets it with what to check
        reason = " ".join(str(error).split())[:300]
        raise LakeCheckError(
            f"cannot write to the tables' warehouse {settings.warehouse} ({type(error).__name__}: {reason}): "
            f"check that the bucket exists and the endpoint, region and keys in {LAKE_IO_ENV} or the extra "
            f"of the Airflow Connection {LAKE_CONN_ID} (s3.endpoint, client.region, s3.access-key-id, "
            "s3.secret-access-key)"
        ) from None
