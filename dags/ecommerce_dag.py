"""The daily e-commerce analytics pipeline; the DAG is built in `shopstream.airflow.pipeline`."""

from shopstream.airflow.pipeline import build_ecommerce_dag

dag = build_ecommerce_dag()
