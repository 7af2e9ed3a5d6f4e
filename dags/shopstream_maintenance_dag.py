"""Iceberg maintenance of the tables, daily; the DAG is built in `shopstream.airflow.maintenance`."""

from shopstream.airflow.maintenance import build_maintenance_dag

dag = build_maintenance_dag()
