#!/usr/bin/env bash
# The README's main command: start the local Kafka broker, produce COUNT order events of the day
# that closed at the last midnight UTC (nothing timestamped in the future), run the DAG run the
# scheduler creates at that midnight (it transforms that day) with an embedded Airflow, print what
# it produced, and stop the broker again (also on failure or Ctrl-C).
# SHOPSTREAM_RUN_DATE=YYYY-MM-DD instead produces that date's events and runs a manual run naming it.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-500}
DATE=${SHOPSTREAM_RUN_DATE:-$(date -u -d yesterday +%F)}
RUN=(--scheduled)
[ -n "${SHOPSTREAM_RUN_DATE:-}" ] && RUN=(--date "$DATE")
PY=.venv/bin/python
started=$(date +%s)

started_broker=0
cleanup() { if [ "$started_broker" = 1 ]; then $PY -m shopstream.devstack.kafka_broker down; fi; }
trap cleanup EXIT

if [ "${SHOPSTREAM_PROFILE:-local}" = cluster ]; then
  # The loopback clusters are long-lived: started and stopped by make cluster-up / cluster-down.
  $PY -m shopstream.devstack.kafka_cluster status && $PY -m shopstream.devstack.spark_cluster status \
    || { echo "SHOPSTREAM_PROFILE=cluster: start the clusters first with make cluster-up"; exit 1; }
elif ! $PY -m shopstream.devstack.kafka_broker status >/dev/null; then
  $PY -m shopstream.devstack.kafka_broker up
  started_broker=1
fi
BROKERS=$($PY -c 'from shopstream.config import kafka_bootstrap; print(kafka_bootstrap())')
PRODUCER_CONFIG=${SHOPSTREAM_PRODUCER_KAFKA_CONFIG:-${SHOPSTREAM_KAFKA_CONFIG:-}}
if [ "${SHOPSTREAM_PROFILE:-local}" = cluster ] && [ -z "$PRODUCER_CONFIG" ]; then
  # The producer logs in as its own principal (it may only write the pipeline's topics); the
  # DAG's jobs read as the Spark principal (the profile's kafka_default Connection).
  PRODUCER_CONFIG=$($PY -m shopstream.devstack.kafka_cluster client-config producer)
fi
echo "==> [1/3] producing $COUNT order events for $DATE to $BROKERS"
SHOPSTREAM_KAFKA_CONFIG="$PRODUCER_CONFIG" \
  target/release/order-sim --brokers "$BROKERS" --count "$COUNT" --start "$DATE" --span 24h
$PY -m shopstream.kafka_admin count --topic ecommerce_orders
echo "==> [2/3] running the ecommerce_pipeline DAG (${RUN[*]}) for $DATE (Airflow log: .state/airflow-run.log)"
$PY -m shopstream.airflow.run_local "${RUN[@]}" --expected-events "$COUNT" 2> .state/airflow-run.log \
  || { echo "DAG run failed; last log lines:"; tail -40 .state/airflow-run.log; exit 1; }
echo "==> [3/3] outputs"
$PY -m shopstream.report --date "$DATE" --summary
echo "done in $(( $(date +%s) - started )) s"
