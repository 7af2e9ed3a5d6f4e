"""A Spark standalone cluster on loopback: one master and two workers (1 core each), started with
`spark-class` from the installed pyspark (its wheel has no `sbin/start-master.sh`).

    python -m shopstream.devstack.spark_cluster up      # start (idempotent), wait for both workers
    python -m shopstream.devstack.spark_cluster down
    python -m shopstream.devstack.spark_cluster status

Jobs reach it with `--master spark://127.0.0.1:7077` (the `spark_default` Connection of the
cluster profile). Pid and log files live in `.state/cluster/spark/`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shopstream.config import paths
from shopstream.devstack import service_log
from shopstream.devstack.processes import ManagedProcess, port_is_open, service_main

DEFAULT_MASTER_PORT = 7077
DEFAULT_UI_PORT = 8090
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
    # The master's web UI, whose JSON status page is the readiness check: not Spark's 8080, which
    # is the Airflow deployment's UI (`make airflow-up`), up at the same time in the cluster profile.
    ui_port: int = DEFAULT_UI_PORT
    # A finished application's folder on a worker (the jars it shipped, ≈ 10 MB per executor: a
    # year of daily DAG runs left ≈ 20 GB) is deleted this long after its last write.
    app_data_ttl_seconds: int = 7 * 86400
    cleanup_interval_seconds: int = 1800

    def worker_options(self) -> str:
        """Spark's own housekeeping for workers that run for a year: finished applications'
        folders deleted after `app_data_ttl_seconds`, executors' logs rolled over like ours."""
        options = {
            "spark.worker.cleanup.enabled": "true",  # only stopped applications' folders
            "spark.worker.cleanup.interval": self.cleanup_interval_seconds,
            "spark.worker.cleanup.appDataTtl": self.app_data_ttl_seconds,
            "spark.executor.logs.rolling.strategy": "size",
            "spark.executor.logs.rolling.maxSize": service_log.max_bytes(),
            "spark.executor.logs.rolling.maxRetainedFiles": service_log.BACKUPS,
        }
        return " ".join(f"-D{key}={value}" for key, value in options.items())

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

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(self.home / f"{name}.pid", self.home / f"{name}.log")

    def _launch(self, name: str, args: list[str]) -> None:
        spark_home = _spark_home()
        env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_LOG_DIR": str(self.home), "SPARK_NO_DAEMONIZE": "1",
               "SPARK_WORKER_OPTS": self.worker_options()}  # fmt: skip
        self.process(name).launch([str(spark_home / "bin" / "spark-class"), *args], env)

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
        if self.process("master").pid() is None and port_is_open(self.master_port):
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
        """SIGKILL one worker and the executor it launched, as a crashed machine would."""
        self.process(f"worker{number}").kill()

    def stop(self) -> bool:
        """Workers first, then the master. Returns whether anything ran."""
        stopped = [self.process(name).stop(timeout=20) for name, _ in reversed(self._processes())]
        return any(stopped)

    # For `service_main`.
    name = "Spark cluster"

    def describe(self) -> str:
        return (
            f"master {self.master_url}, {self.alive_workers()} of {self.workers} workers alive, "
            f"UI http://127.0.0.1:{self.ui_port}"
        )

    def running(self) -> bool:
        return self.alive_workers() == self.workers


def default_spark_cluster() -> LocalSparkCluster:
    port = int(os.environ.get("SHOPSTREAM_CLUSTER_SPARK_PORT", DEFAULT_MASTER_PORT))
    ui_port = int(os.environ.get("SHOPSTREAM_CLUSTER_SPARK_UI_PORT", DEFAULT_UI_PORT))
    return LocalSparkCluster(home=paths().state / "cluster" / "spark", master_port=port, ui_port=ui_port)


def main(argv: list[str] | None = None) -> int:
    return service_main(__doc__, default_spark_cluster, (SparkClusterError,), argv)


if __name__ == "__main__":
    sys.exit(main())
