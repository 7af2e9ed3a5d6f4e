"""End to end: the README's main command (`make run`'s script) after setup, with per-task seconds
from Airflow's task instances.

    .venv/bin/python -m bench.e2e [--count 500]

Runs scripts/run_pipeline.sh with its state, data, broker, database and dashboard in a temp dir on
free ports, so the user's own stack and data are never touched. It includes the live side that
`make run` starts (PostgreSQL, the live aggregation, the dashboard, a 10-s live feed) and the
Airflow deployment whose scheduler runs the DAG (its start is part of the figure).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.common import run_stoppable, temp_home
from shopstream.config import REPO_ROOT, paths
from shopstream.devstack.processes import free_port


def measure(count: int = 500, live_feed: int = 2000) -> dict:
    with temp_home() as home:
        env = {
            **os.environ,
            "LIVE_COUNT": str(live_feed),
            "SHOPSTREAM_STATE_DIR": str(home / "state"),
            "SHOPSTREAM_DATA_DIR": str(home / "data"),
            "SHOPSTREAM_JARS_DIR": str(paths().jars),
            "SHOPSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "SHOPSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
            # The live side (PostgreSQL, the dashboard) on free ports too.
            "SHOPSTREAM_SERVING_DB_PORT": str(free_port()),
            "SHOPSTREAM_DASHBOARD_PORT": str(free_port()),
            "SHOPSTREAM_AIRFLOW_PORT": str(free_port()),
        }
        # The run's own database and catalog (the script starts them), never the caller's.
        for name in ("SHOPSTREAM_KAFKA_CONFIG", "SHOPSTREAM_SERVING_DB", "AIRFLOW_CONN_SHOPSTREAM_SERVING",
                     "SHOPSTREAM_LAKE_CATALOG", "AIRFLOW_CONN_SHOPSTREAM_LAKE", "SHOPSTREAM_WAREHOUSE",
                     "SHOPSTREAM_LAKE_NAMESPACE"):  # fmt: skip
            env.pop(name, None)
        started = time.monotonic()
        result = run_stoppable(["bash", "scripts/run_pipeline.sh", str(count)], 1200, cwd=REPO_ROOT, env=env)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(
                f"run_pipeline.sh failed:\n{result.stdout[-3000:]}\nits stderr:\n{result.stderr[-3000:]}"
            )
        (run,) = json.loads((home / "state" / "dag-run.json").read_text())["runs"]
    tasks = {task: info["seconds"] for task, info in run["tasks"].items()}
    return {"count": count, "seconds": seconds, "tasks": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    r = measure(parser.parse_args().count)
    for task, seconds in r["tasks"].items():
        print(f"{task:<20} {seconds:6.1f} s")
    print(f"{'whole command':<20} {r['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
