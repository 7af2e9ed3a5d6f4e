"""A local Airflow deployment, managed like the broker and the database: the API server (UI), the
scheduler, the dag-processor and the triggerer as four background processes, with LocalExecutor
and the metadata database `shopstream_airflow` in the project's PostgreSQL.

    python -m shopstream.devstack.airflow_deployment up      # make airflow-up: prints the UI's URL
    python -m shopstream.devstack.airflow_deployment status  # make airflow-status
    python -m shopstream.devstack.airflow_deployment down    # make airflow-down

`up` migrates the metadata database, writes the profile's Connections into it
(`shopstream.airflow.connections.local_connections`, from a file of mode 600), starts the four
components and waits until the API server reports each of them healthy. Then it unpauses the
DAGs it runs (`UNPAUSED`; every DAG is paused at creation, so a DAG nobody chose never runs), so
the scheduler creates and runs the closed day's run of `ecommerce_pipeline` by itself. Login:
user `admin`, its password in `<home>/simple_auth_manager_passwords.json.generated` (Airflow's
simple auth manager writes it once; `describe` prints where). `SHOPSTREAM_AIRFLOW_PORT` sets the
UI's port (default 8080), `SHOPSTREAM_AIRFLOW_UNPAUSED` the DAGs to unpause (comma-separated; `make
run` unpauses only `ecommerce_pipeline`, so no maintenance run competes with it for the cores).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shopstream.config import REPO_ROOT, paths, serving_db_dsn
from shopstream.devstack.kafka_security import write_private_json
from shopstream.devstack.processes import ManagedProcess, port_is_open, service_main, stop_at_once

AIRFLOW_DATABASE = "shopstream_airflow"  # beside the serving store's, made by `make db-up`
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
DEFAULT_PORT = 8080
READY_TIMEOUT = 180.0
ADMIN = "admin"
DAGS_FOLDER = REPO_ROOT / "dags"
AIRFLOW_CLI = Path(sys.executable).parent / "airflow"  # this environment's, beside its python
UNPAUSED = ("ecommerce_pipeline", "shopstream_maintenance")
PARSE_TIMEOUT = 120.0


class AirflowDeploymentError(RuntimeError):
    """The deployment did not come up; the message says why and where the logs are."""


def metadata_database_uri(server_dsn: str | None = None) -> str:
    """The metadata database on the serving store's server (libpq URI)."""
    parts = urlsplit(server_dsn or serving_db_dsn())
    return urlunsplit(parts._replace(path=f"/{AIRFLOW_DATABASE}"))


class AirflowDeployment:
    name = "Airflow"

    def __init__(self, home: Path | None = None, port: int | None = None, metadata_db: str | None = None,
                 connections: dict[str, dict] | None = None,
                 unpaused: Sequence[str] | None = None) -> None:  # fmt: skip
        self.home = home or paths().state / "airflow-deployment"
        self.port = port or int(os.environ.get("SHOPSTREAM_AIRFLOW_PORT", DEFAULT_PORT))
        self._metadata_db = metadata_db
        self._connections = connections
        chosen = os.environ.get("SHOPSTREAM_AIRFLOW_UNPAUSED")
        self.unpaused = tuple(unpaused if unpaused is not None else chosen.split(",") if chosen else UNPAUSED)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def process(self, component: str) -> ManagedProcess:
        return ManagedProcess(self.home / f"{component}.pid", self.home / f"{component}.log")

    def _secrets(self) -> dict[str, str]:
        """The keys every component must share (the API's JWT signing, the Connections'
        encryption), made once and kept in a file of mode 600."""
        file = self.home / "secrets.json"
        if not file.exists():
            from cryptography.fernet import Fernet

            write_private_json(file, {"jwt_secret": secrets.token_urlsafe(32),
                                      "fernet_key": Fernet.generate_key().decode()})  # fmt: skip
        return json.loads(file.read_text())

    def environment(self) -> dict[str, str]:
        """The components' (and the `airflow` CLI's) environment: this process's, plus the
        deployment's settings."""
        db = (self._metadata_db or metadata_database_uri()).removeprefix("postgresql:")
        keys = self._secrets()
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            # psycopg 3 for both of Airflow's engines (its async default, asyncpg, is not installed).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg:{db}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async:{db}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
        }  # fmt: skip

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Runs the `airflow` CLI against this deployment; its output, or an error naming it."""
        command = [str(AIRFLOW_CLI), *args]
        env = self.environment()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AirflowDeploymentError(f"`airflow {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def write_connections(self) -> None:
        """The profile's Connections into the metadata database (replacing older values), through a
        file of mode 600 that is removed after."""
        from shopstream.airflow.connections import local_connections

        connections = self._connections if self._connections is not None else local_connections()
        fields = {name: {**c, "extra": json.dumps(c.get("extra") or {})} for name, c in connections.items()}
        file = self.home / "connections.json"
        write_private_json(file, fields)
        try:
            self.airflow("connections", "import", "--overwrite", str(file))
        finally:
            file.unlink(missing_ok=True)

    def start(self) -> None:
        if self.running():
            return
        if all(self.process(c).pid() is None for c in COMPONENTS) and port_is_open(self.port):
            raise AirflowDeploymentError(
                f"port {self.port} on 127.0.0.1 is taken by another process; stop it or choose another "
                "port (SHOPSTREAM_AIRFLOW_PORT)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        self.write_connections()
        env = self.environment()
        for component in COMPONENTS:
            self.process(component).launch([str(AIRFLOW_CLI), component], env=env)
        self.process("api-server").wait_until(self.running, AirflowDeploymentError, "Airflow", READY_TIMEOUT)
        if self.passwords_file.exists():  # Airflow writes it readable by all
            self.passwords_file.chmod(0o600)
        self.unpause(self.unpaused)

    def admin_password(self) -> str:
        return json.loads(self.passwords_file.read_text())[ADMIN]

    def unpause(self, dag_ids: Sequence[str], timeout: float = PARSE_TIMEOUT) -> None:
        """Unpauses `dag_ids` once the dag-processor has parsed them into the metadata database."""
        deadline = time.monotonic() + timeout
        for dag_id in dag_ids:
            while True:
                try:
                    self.airflow("dags", "unpause", "--yes", dag_id)
                    break
                except AirflowDeploymentError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(2)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """A manual run of `dag_id` (with `conf`, e.g. {"run_date": "2026-12-04"}); its run id."""
        run_id = f"manual__{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%S.%f}"
        self.airflow("dags", "trigger", dag_id, "-c", json.dumps(conf or {}), "-r", run_id)
        return run_id

    def dag_runs(self, dag_id: str) -> list[dict]:
        """The DAG's runs (run_id, state, logical_date, run_type, ...), newest first."""
        return _json_rows(self.airflow("dags", "list-runs", dag_id, "-o", "json"))

    def task_rows(self, dag_id: str, run_id: str) -> list[dict]:
        """One run's task instances (task_id, state, start_date, end_date)."""
        return _json_rows(self.airflow("tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"))

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """task_id -> state of one run's task instances."""
        return {row["task_id"]: row["state"] for row in self.task_rows(dag_id, run_id)}

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=10) as response:
                return json.load(response)
        except (OSError, ValueError):
            return {}

    def running(self) -> bool:
        if any(self.process(c).pid() is None for c in COMPONENTS):
            return False
        health = self.health()
        return all(health.get(key, {}).get("status") == "healthy" for key in HEALTH_KEYS.values())

    def comes_up(self, timeout: float = 90.0) -> bool:
        """Whether it runs, or its components' processes do and report healthy within `timeout`:
        under load a component's heartbeat (or the API's answer) may lag a few seconds."""
        deadline = time.monotonic() + timeout
        while not self.running():
            if any(self.process(c).pid() is None for c in COMPONENTS) or time.monotonic() > deadline:
                return False
            time.sleep(2)
        return True

    def stop(self) -> bool:
        """Stops the scheduler, dag-processor and triggerer at once, then the API server, whose
        execution API they use until they have stopped (stopped beside them, the scheduler waits
        out its 30-s stop)."""
        api, *others = COMPONENTS
        stopped = stop_at_once([lambda c=c: self.process(c).stop(timeout=30) for c in others])
        return self.process(api).stop(timeout=30) or stopped

    def describe(self) -> str:
        up = [c for c in COMPONENTS if self.process(c).pid() is not None]
        return (f"UI {self.url} (user {ADMIN}, password in {self.passwords_file}); running: "
                f"{', '.join(up) or 'none'}; logs {self.home}/*.log")  # fmt: skip


def _json_rows(output: str) -> list[dict]:
    """The rows of a CLI command's `-o json` output: its JSON line (the CLI may print other lines,
    and a message instead when there are no rows)."""
    lines = [line for line in output.splitlines() if line.startswith("[")]
    return json.loads(lines[-1]) if lines else []


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, AirflowDeployment, (AirflowDeploymentError,), argv)


if __name__ == "__main__":
    sys.exit(main())
