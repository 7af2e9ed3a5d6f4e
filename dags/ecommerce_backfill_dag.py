"""Backfills generated from config/backfill.json; the DAG is built in `shopstream.airflow.pipeline`."""

from shopstream.airflow.pipeline import build_backfill_dag

dag = build_backfill_dag()
