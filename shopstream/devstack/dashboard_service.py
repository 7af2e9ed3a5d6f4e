"""The live dashboard (Streamlit, `shopstream/dashboard/app.py`) as a managed background process
on loopback, like the broker:

    python -m shopstream.devstack.dashboard_service up      # make dashboard: prints the URL
    python -m shopstream.devstack.dashboard_service status
    python -m shopstream.devstack.dashboard_service down    # make dashboard-down

`SHOPSTREAM_DASHBOARD_PORT` (default 8501) sets its port; it reads the serving store named by
SHOPSTREAM_SERVING_DB / AIRFLOW_CONN_SHOPSTREAM_SERVING / `make db-up`'s connection file.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from shopstream.config import REPO_ROOT, paths
from shopstream.devstack.processes import ManagedProcess, port_is_open, service_main

APP = REPO_ROOT / "shopstream" / "dashboard" / "app.py"
DEFAULT_PORT = 8501
READY_TIMEOUT = 60.0


class DashboardError(RuntimeError):
    """The dashboard did not come up; the message says why and where its log is."""


class DashboardService:
    name = "dashboard"

    def __init__(self, home: Path | None = None, port: int | None = None) -> None:
        self.home = home or paths().state / "dashboard"
        self.port = port or int(os.environ.get("SHOPSTREAM_DASHBOARD_PORT", DEFAULT_PORT))
        self.process = ManagedProcess(self.home / "dashboard.pid", self.home / "dashboard.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.running():
            return
        if self.process.pid() is None and port_is_open(self.port):
            raise DashboardError(
                f"port {self.port} on 127.0.0.1 is taken by another process; stop it or choose another "
                "port (SHOPSTREAM_DASHBOARD_PORT)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.launch(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
             "--server.port", str(self.port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--global.developmentMode", "false", "--client.toolbarMode", "viewer"],
            env=dict(os.environ),
        )  # fmt: skip
        self.process.wait_until(self.running, DashboardError, "the dashboard", READY_TIMEOUT)

    def running(self) -> bool:
        if self.process.pid() is None:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                return response.read().strip() == b"ok"
        except OSError:
            return False

    def stop(self) -> bool:
        return self.process.stop(timeout=15)

    def describe(self) -> str:
        return f"{self.url} (log {self.process.log_file})"


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, DashboardService, (DashboardError,), argv)


if __name__ == "__main__":
    sys.exit(main())
