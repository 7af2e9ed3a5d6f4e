"""The live dashboard's local PostgreSQL as `make db-up` starts it, in the conditions CI gives it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from shopstream.devstack.postgres import local_postgres
from shopstream.devstack.processes import free_port


def test_db_up_under_a_closed_umask_reaches_its_own_state_folder(monkeypatch):
    """Started by root with umask 077, the state folders are created closed to everyone else, but
    the server runs as `postgres` and must pass through them (and the private temporary folder above
    them): `up` opens the way (o+x) and works."""
    home = Path(tempfile.mkdtemp(prefix="shopstream-umask-"))
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("SHOPSTREAM_SERVING_DB_PORT", str(free_port()))
    previous = os.umask(0o077)
    server = local_postgres()
    try:
        server.start()
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("shopstream",)
        assert server.connection_file.stat().st_mode & 0o077 == 0  # the credentials stay private
    finally:
        os.umask(previous)
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_the_server_log_keeps_one_file_per_weekday(tmp_path, monkeypatch):
    """A year of running leaves at most seven log files: the collector writes today's weekday file,
    emptied when that weekday comes round again, and never rotates by size into the same file."""
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SHOPSTREAM_SERVING_DB_PORT", str(free_port()))
    server = local_postgres()
    try:
        server.start()
        # log_filename is shown to superusers only: the weekday file below proves it.
        with psycopg.connect(server.dsn) as conn:
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('logging_collector', "
                "'log_truncate_on_rotation', 'log_rotation_age', 'log_rotation_size')"
            ).fetchall())  # fmt: skip
        assert settings == {
            "logging_collector": "on", "log_truncate_on_rotation": "on", "log_rotation_age": "1440",
            "log_rotation_size": "0",
        }  # fmt: skip
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn.replace("shopstream:", "shopstream:wrong"), connect_timeout=5)
        today = dt.datetime.now(dt.UTC).strftime("%a")
        log = server.log_dir / f"postgresql-{today}.log"
        deadline = time.monotonic() + 10  # the collector writes asynchronously
        while "password authentication failed" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"the failed login never reached {log}"
            time.sleep(0.2)
        assert [p.name for p in server.log_dir.iterdir()] == [log.name]
    finally:
        server.stop()
