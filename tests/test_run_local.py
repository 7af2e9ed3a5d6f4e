"""The embedded Airflow runner's bookkeeping (pure logic: Airflow's own migration is stood in for
here; the DAG tests run the real one)."""

from __future__ import annotations

import sqlite3
import subprocess

from shopstream.airflow import run_local


def fake_migration(revision: str, calls: list):
    """Stands in for `airflow db migrate`: stamps the schema revision into the SQLite database."""

    def run(command, env, **kwargs):
        calls.append(command)
        with sqlite3.connect(f"{env['AIRFLOW_HOME']}/airflow.db") as db:
            db.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num TEXT)")
            db.execute("DELETE FROM alembic_version")
            db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        return subprocess.CompletedProcess(command, 0)

    return run


def test_the_database_is_migrated_once_per_airflow_version_and_schema(tmp_path, monkeypatch):
    env = {"AIRFLOW_HOME": str(tmp_path)}
    calls: list = []
    monkeypatch.setattr(run_local.subprocess, "run", fake_migration("rev1", calls))

    run_local.migrate_db(env)  # a new database: migrated
    run_local.migrate_db(env)  # the same version and schema: nothing to do
    assert len(calls) == 1 and calls[0][-2:] == ["db", "migrate"]

    with sqlite3.connect(tmp_path / "airflow.db") as db:  # a database from elsewhere, other schema
        db.execute("UPDATE alembic_version SET version_num = 'rev0'")
    run_local.migrate_db(env)
    assert len(calls) == 2

    monkeypatch.setattr(run_local.importlib.metadata, "version", lambda name: "99.0.0")  # an upgrade
    run_local.migrate_db(env)
    assert len(calls) == 3

    (tmp_path / "airflow.db").unlink()  # the database removed, its stamp left behind
    run_local.migrate_db(env)
    assert len(calls) == 4 and run_local.schema_revision(tmp_path / "airflow.db") == "rev1"
