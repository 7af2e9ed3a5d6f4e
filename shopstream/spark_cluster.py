"""A Spark standalone cluster on loopback: one master and two workers (1 core each), started with
`spark-class` from the installed pyspark (its wheel has no `sbin/start-master.sh`).

    python -m shopstream.spark_cluster up      # start (idempotent), wait until both workers are ALIVE
    python -m shopstream.spark_cluster down
    python -m shopstream.spark_cluster status

Jobs reach it with `--master spark://127.0.0.1:7077` (the `spark_default` Connection of the
cluster profile). Pid and log files live in `.state/cluster/spark/`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shopstream.config import paths
from shopstream.kafka_broker import _pid_alive, port_is_open

DEFAULT_MASTER_PORT = 7077
READY_TIMEOUT_S = 90.0


class SparkClusterError(RuntimeError):
    """The cluster could not be started; the message says where to look."""


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@dataclass
class LocalSparkCluster:
    home: Path
    master_port: int = DEFAULT_MASTER_PORT
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "2g"
    ui_port: int = 8080  # the master's web UI, whose JSON status page is the readiness check

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def _processes(self) -> list[tuple[str, list[str]]]:
        master = ("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                             "--port", str(self.master_port), "--webui-port", str(self.ui_port)])  # fmt: skip
        worker = ["org.apache.spark.deploy.worker.Worker", self.master_url, "--host", "127.0.0.1",
                  "--cores", str(self.worker_cores), "--memory", self.worker_memory]  # fmt: skip
        workers = [
            (f"worker{i + 1}", [*worker, "--webui-port", "0",  # any free port
                                "--work-dir", str(self.home / f"worker{i + 1}-work")])
            for i in range(self.workers)
        ]  # fmt: skip
        return [master, *workers]

    def _pid_file(self, name: str) -> Path:
        return self.home / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _launch(self, name: str, args: list[str]) -> None:
        if self.pid(name) is not None:
            return
        env = {**os.environ, "SPARK_HOME": str(_spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_LOG_DIR": str(self.home), "SPARK_NO_DAEMONIZE": "1"}  # fmt: skip
        with (self.home / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(_spark_home() / "bin" / "spark-class"), *args], env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self._pid_file(name).write_text(str(process.pid))

    def alive_workers(self) -> int:
        """Workers the master reports ALIVE (its JSON status page), 0 if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as page:
                status = json.load(page)
        except OSError:
            return 0
        return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.pid("master") is None and port_is_open(self.master_port):
            raise SparkClusterError(f"port {self.master_port} is taken by another process")
        for name, args in self._processes():
            self._launch(name, args)
        deadline = time.monotonic() + timeout
        while self.alive_workers() < self.workers:
            if time.monotonic() > deadline:
                raise SparkClusterError(
                    f"Spark cluster at {self.master_url} not ready after {timeout:.0f} s "
                    f"({self.alive_workers()} of {self.workers} workers alive); see {self.home}/*.log"
                )
            time.sleep(1)

    def kill_worker(self, number: int) -> None:
        """SIGKILL one worker (and the executor it launched), as a crashed machine would."""
        pid = self.pid(f"worker{number}")
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)

    def stop(self) -> bool:
        stopped = False
        for name, _ in reversed(self._processes()):
            pid = self.pid(name)
            if pid is None:
                continue
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
            self._pid_file(name).unlink(missing_ok=True)
            stopped = True
        return stopped


def default_spark_cluster() -> LocalSparkCluster:
    port = int(os.environ.get("SHOPSTREAM_CLUSTER_SPARK_PORT", DEFAULT_MASTER_PORT))
    ui_port = int(os.environ.get("SHOPSTREAM_CLUSTER_SPARK_UI_PORT", 8080))
    return LocalSparkCluster(home=paths().state / "cluster" / "spark", master_port=port, ui_port=ui_port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    cluster = default_spark_cluster()
    try:
        if args.action == "up":
            started = time.monotonic()
            cluster.start()
            print(f"Spark master {cluster.master_url} with {cluster.workers} workers "
                  f"({time.monotonic() - started:.1f} s); UI http://127.0.0.1:{cluster.ui_port}")  # fmt: skip
        elif args.action == "down":
            print("Spark cluster stopped" if cluster.stop() else "no Spark cluster process was running")
        else:
            alive = cluster.alive_workers()
            print(f"Spark master {cluster.master_url}: {alive} of {cluster.workers} workers alive")
            return 0 if alive == cluster.workers else 3
    except SparkClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
