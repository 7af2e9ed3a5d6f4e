"""The live dashboard's local PostgreSQL as `make db-up` starts it, in the conditions CI gives it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg

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
