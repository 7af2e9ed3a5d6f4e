"""Start and stop the live dashboard's serving database: a real PostgreSQL (Debian's package,
installed by `make setup`) as a managed local process on loopback, with its own data folder
under `.state/postgres`, its own superuser and application role, and random passwords.

    python -m shopstream.devstack.postgres up      # initialise once, start, wait until ready
    python -m shopstream.devstack.postgres down
    python -m shopstream.devstack.postgres status

`up` writes the application role's libpq URI (`{"uri": ...}`, mode 600) to
`.state/postgres/connection.json`; the product reads it when neither SHOPSTREAM_SERVING_DB nor
AIRFLOW_CONN_SHOPSTREAM_SERVING points elsewhere (see `shopstream.config.serving_db_dsn`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shopstream.config import DEFAULT_SERVING_DB_PORT, SERVING_DB_FILE, paths
from shopstream.devstack.airflow_deployment import AIRFLOW_DATABASE
from shopstream.devstack.kafka_security import write_private_json
from shopstream.devstack.processes import free_port, port_is_open, service_main
from shopstream.lake import CATALOG_DATABASE

READY_TIMEOUT_S = 60
# The server's own log collector keeps a week: one file per weekday under the data folder's `log/`,
# emptied when its day comes round again (a year of running leaves at most seven files). Only the
# lines before the collector starts go to `postgres.log`.
LOG_SETTINGS = {
    "logging_collector": "on",
    "log_filename": "postgresql-%a.log",
    "log_truncate_on_rotation": "on",
    "log_rotation_age": "1d",
    "log_rotation_size": "0",  # a size rotation would reopen the same weekday's file, not bound it
}
ADMIN_ROLE = "shopstream_admin"
# PostgreSQL refuses to run as root: started by root, the server runs as Debian's `postgres` user.
SERVER_USER = "postgres"


class PostgresError(RuntimeError):
    """The database could not be started or set up; the message says what to do."""


def pg_bin_dir() -> Path:
    """`SHOPSTREAM_PG_BIN`, else the newest Debian PostgreSQL's binaries."""
    if os.environ.get("SHOPSTREAM_PG_BIN"):
        return Path(os.environ["SHOPSTREAM_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise PostgresError(
            "PostgreSQL is not installed: run `make setup` (it installs Debian's `postgresql`), "
            "or set SHOPSTREAM_PG_BIN to the folder holding initdb and pg_ctl"
        )
    return found[-1].parent


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_user_reaches(folder: Path) -> bool:
    return subprocess.run(["runuser", "-u", SERVER_USER, "--", "test", "-x", str(folder)]).returncode == 0


@dataclass
class LocalPostgres:
    """One PostgreSQL server whose files all live under `home`."""

    home: Path
    port: int = DEFAULT_SERVING_DB_PORT
    database: str = "shopstream"
    role: str = "shopstream"

    name = "PostgreSQL"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def log_dir(self) -> Path:
        """The collector's weekday files (LOG_SETTINGS)."""
        return self.data_dir / "log"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def connection_file(self) -> Path:
        return self.home / SERVING_DB_FILE

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(pg_bin_dir() / tool), *args]
        return ["runuser", "-u", SERVER_USER, "--", *command] if _as_root() else command

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self._command(tool, *args), capture_output=True, text=True)
        if check and result.returncode != 0:
            raise PostgresError(
                f"{tool} {args[0]} failed ({result.returncode}); see {self.log_file} and {self.log_dir}:\n"
                f"{result.stderr}"
            )
        return result

    def _passwords(self) -> dict[str, str]:
        if not self.secrets_file.exists():
            write_private_json(
                self.secrets_file,
                {ADMIN_ROLE: secrets.token_urlsafe(24), self.role: secrets.token_urlsafe(24)},
            )
        return json.loads(self.secrets_file.read_text())

    def _hand_to_server_user(self, path: Path) -> None:
        if _as_root():
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def _open_way_to_home(self) -> None:
        """Lets the server user pass through the folders above `home` (o+x, no listing) up to the first
        one it can already reach: a umask of 077 or a private temporary folder would otherwise close
        the way. Only folders this user owns are opened, and each is named on stderr."""
        closed = []
        for folder in (self.home.resolve(), *self.home.resolve().parents):
            if _server_user_reaches(folder):
                break
            closed.append(folder)
        for folder in closed:
            if folder.stat().st_uid == os.geteuid() and not folder.stat().st_mode & stat.S_IXOTH:
                folder.chmod(folder.stat().st_mode | stat.S_IXOTH)
                print(f"opened {folder} to {SERVER_USER} (o+x) on the way to {self.home}", file=sys.stderr)

    def _initdb(self) -> None:
        """Creates the cluster once: password logins only, on 127.0.0.1 only, no Unix socket."""
        self.home.mkdir(parents=True, exist_ok=True)
        if _as_root():
            self._open_way_to_home()
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._hand_to_server_user(self.data_dir)
        if (
            _as_root()
            and subprocess.run(
                ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(self.data_dir)]
            ).returncode
        ):
            raise PostgresError(
                f"started as root, PostgreSQL runs as user {SERVER_USER}, who cannot reach {self.data_dir}: "
                "give its parent folders o+x, or put the state folder elsewhere (SHOPSTREAM_STATE_DIR)"
            )
        with tempfile.NamedTemporaryFile("w", dir=self.home, delete=False) as pwfile:
            pwfile.write(self._passwords()[ADMIN_ROLE])
        try:
            self._hand_to_server_user(Path(pwfile.name))
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", ADMIN_ROLE, f"--pwfile={pwfile.name}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            )  # fmt: skip
        finally:
            os.unlink(pwfile.name)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# shopstream: loopback only, TCP only; the port is given at start.\n"
                "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "log_timezone = 'UTC'\ntimezone = 'UTC'\n"
            )

    def running(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and self._run(
            "pg_ctl", "status", "-D", str(self.data_dir), check=False
        ).returncode == 0

    def start(self) -> None:
        """Initialises (first time), starts unless running, and provisions role and database."""
        if not self.running():
            if port_is_open(self.port):
                raise PostgresError(
                    f"port {self.port} on 127.0.0.1 is taken by another process; stop it or choose another "
                    "port (SHOPSTREAM_SERVING_DB_PORT)"
                )
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self.log_file.touch()
            self._hand_to_server_user(self.log_file)
            self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                "-t", str(READY_TIMEOUT_S), "-o", self._server_options(),
            )  # fmt: skip
        self._provision()

    def _server_options(self) -> str:
        """Given at every start, so a data folder made by an earlier version gets them too."""
        settings = " ".join(f"-c {name}={value}" for name, value in LOG_SETTINGS.items())
        return f"-p {self.port} {settings}"

    def _provision(self) -> None:
        """The application role and its database (idempotent), then the connection file."""
        import psycopg
        from psycopg import sql

        passwords = self._passwords()
        with psycopg.connect(
            self._uri(ADMIN_ROLE, passwords[ADMIN_ROLE], "postgres"), autocommit=True
        ) as admin:
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.role,)).fetchone() is None:
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(self.role), sql.Literal(passwords[self.role])
                    )
                )
            # The serving store's database, and beside it the Iceberg catalog's (shopstream.lake)
            # and the Airflow deployment's metadata (devstack.airflow_deployment).
            for database in (self.database, CATALOG_DATABASE, AIRFLOW_DATABASE):
                if (
                    admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                    is None
                ):
                    admin.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), sql.Identifier(self.role)
                        )
                    )
        uri = self._uri(self.role, passwords[self.role], self.database)
        write_private_json(self.connection_file, {"uri": uri})

    def _uri(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """The application role's connection URI."""
        return self._uri(self.role, self._passwords()[self.role], self.database)

    def stop(self) -> bool:
        if not self.running():
            return False
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        return True

    def describe(self) -> str:
        return (
            f"127.0.0.1:{self.port}/{self.database} (data {self.data_dir}; connection {self.connection_file})"
        )


def local_postgres() -> LocalPostgres:
    return LocalPostgres(
        paths().serving_db_dir, int(os.environ.get("SHOPSTREAM_SERVING_DB_PORT", DEFAULT_SERVING_DB_PORT))
    )


@contextmanager
def throwaway_postgres(parent: Path) -> Iterator[LocalPostgres]:
    """A server on a free port in a new folder under `parent` (tests, benchmarks); removed after."""
    home = Path(tempfile.mkdtemp(prefix="postgres-", dir=parent))
    server = LocalPostgres(home, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, local_postgres, (PostgresError,), argv)


if __name__ == "__main__":
    raise SystemExit(main())
