"""The `shopstream` command: one entry point for every job and tool of the package.

    shopstream --help                      # the commands
    shopstream ingest --available-now      # = python -m shopstream.spark.stream_consumer --available-now
    shopstream validate --date 2026-11-20  # each command's own --help tells its options

Each command runs its module's `main` with the remaining arguments, in this process (a Spark job
starts its session here, as `python -m` would). The modules stay runnable with `python -m` too,
which is what the DAG's `spark-submit` tasks use. The module is imported only when its command
runs, so `shopstream --help` needs neither Spark nor Airflow.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    # The pipeline's jobs (what the DAG runs).
    "ingest": Command("shopstream.spark.stream_consumer", "stream Kafka's order events into the raw layer"),
    "rdd-etl": Command("shopstream.spark.batch_rdd_etl", "the RDD job: revenue per product of a date"),
    "df-etl": Command("shopstream.spark.batch_df_etl", "the DataFrame job: the daily Iceberg tables"),
    "validate": Command("shopstream.validation", "check a run's outputs of a date, and publish them"),
    "report": Command("shopstream.report", "the HTML report (with PNG charts) of a published date"),
    # Outside the DAG.
    "order-status": Command("shopstream.spark.order_status_stream", "the current status of each order"),
    "live-sales": Command("shopstream.spark.live_sales", "the live aggregation behind the dashboard"),
    "serving": Command("shopstream.serving", "the live side's PostgreSQL store"),
    "topic": Command("shopstream.kafka_admin", "count or create the pipeline's Kafka topics"),
    "lake": Command("shopstream.lake", "where the tables are, and how to query them"),
    "lake-init": Command("shopstream.spark.lake_init", "create the tables' namespace in the catalog"),
    "publication": Command("shopstream.publication", "what is published, per date"),
    "migrate-raw": Command(
        "shopstream.spark.migrate_raw", "move an earlier version's raw and rejected-update sinks into tables"
    ),
    "run-local": Command("shopstream.airflow.run_local", "one DAG run in this process (dag.test)"),
    # The embedded local stack (make broker-up, db-up, airflow-up, ...).
    "broker": Command("shopstream.devstack.kafka_broker", "the local Kafka broker: up/down/status"),
    "db": Command("shopstream.devstack.postgres", "the local PostgreSQL: up/down/status"),
    "airflow": Command("shopstream.devstack.airflow_deployment", "the local Airflow: up/down/status"),
    "runs": Command("shopstream.devstack.airflow_runs", "DAG runs and backfills by the deployment"),
    "ingest-service": Command("shopstream.devstack.ingest_service", "the continuous ingest: up/down/status"),
    "dashboard": Command("shopstream.devstack.dashboard_service", "the live dashboard: up/down/status"),
    "cluster": Command("shopstream.devstack.kafka_cluster", "the 3-node Kafka cluster: up/down/status"),
    "spark-cluster": Command("shopstream.devstack.spark_cluster", "the Spark standalone cluster"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    head = "usage: shopstream COMMAND [ARGS...]  (shopstream COMMAND --help)"
    return f"{head}\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"shopstream: no command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    sys.argv = [f"shopstream {name}", *rest]  # the module's own --help names the command
    run = importlib.import_module(command.module).main
    return run(rest) if inspect.signature(run).parameters else run()


if __name__ == "__main__":
    sys.exit(main())
