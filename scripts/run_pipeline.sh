#!/usr/bin/env bash
# The README's main command: start the local Kafka broker, produce COUNT order events of the day
# that closed at the last midnight UTC (nothing timestamped in the future), start the Airflow
# deployment, whose scheduler runs the DAG for that day, print what it produced, and stop what it
# started again (also on failure or Ctrl-C).
# The live side runs alongside: PostgreSQL, the live aggregation and the dashboard start first (its
# URL is printed), a live feed of today's events follows, and at the end an interactive terminal
# keeps everything running until Ctrl-C (SHOPSTREAM_KEEP_RUNNING=0: stop at once, as CI does).
# SHOPSTREAM_RUN_DATE=YYYY-MM-DD instead produces that date's events and runs a manual run naming it.
# SHOPSTREAM_LIVE=0 skips the live side; LIVE_COUNT sets the live feed's events (2000, 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-500}
DATE=${SHOPSTREAM_RUN_DATE:-$(date -u -d yesterday +%F)}
PY=.venv/bin/python
started_at=$(date +%s)

started_broker=0
started=()  # services this script started, stopped in reverse order at exit
cleanup() {
  for ((i=${#started[@]}-1; i>=0; i--)); do ${started[i]} || true; done
  if [ "$started_broker" = 1 ]; then $PY -m shopstream.devstack.kafka_broker down; fi
}
trap cleanup EXIT
start_service() {  # start_service <devstack module> [options]: up unless its status says it runs
  local module=shopstream.devstack.$1; shift
  if ! $PY -m "$module" status "$@" >/dev/null 2>&1; then
    $PY -m "$module" up "$@"; started+=("$PY -m $module down $*")
  fi
}

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
LIVE=${SHOPSTREAM_LIVE:-1}
[ "${SHOPSTREAM_PROFILE:-local}" = cluster ] && LIVE=0  # the live side runs on the local stack
# PostgreSQL holds the Iceberg catalog of the daily tables (and the live side's store).
start_service postgres
if [ "$LIVE" = 1 ]; then echo "==> [0/3] live side: the live aggregation, the dashboard"; fi
echo "==> [1/3] producing $COUNT order events for $DATE to $BROKERS"
SHOPSTREAM_KAFKA_CONFIG="$PRODUCER_CONFIG" \
  target/release/order-sim --brokers "$BROKERS" --count "$COUNT" --start "$DATE" --span 24h
$PY -m shopstream.kafka_admin count --topic ecommerce_orders
if [ "$LIVE" = 1 ]; then
  start_service ingest_service --live
  start_service dashboard_service
  URL=$($PY -c 'from shopstream.devstack.dashboard_service import DashboardService; print(DashboardService().url)')
  echo "    dashboard: $URL (today's sales, live; closed days; health)"
  echo "    live feed: ${LIVE_COUNT:=2000} events of today at 200/s"
  target/release/order-sim --brokers "$BROKERS" --count "$LIVE_COUNT" --rate 200 --start now 2>/dev/null | tail -1
fi
# The DAG runs in a real Airflow deployment (scheduler, LocalExecutor, API server and UI), started
# here unless one runs already: unpaused, the scheduler makes the closed day's run by itself (a run
# of that day that finished earlier is cleared and runs again); SHOPSTREAM_RUN_DATE triggers a manual
# run naming the date. The run's result (its tasks' states and seconds) lands beside the run's state.
STATE_DIR=$($PY -c 'from shopstream.config import paths; print(paths().state)')
mkdir -p "$STATE_DIR"
echo "==> [2/3] the Airflow deployment's scheduler runs the ecommerce_pipeline DAG for $DATE"
SHOPSTREAM_AIRFLOW_UNPAUSED=ecommerce_pipeline start_service airflow_deployment
AIRFLOW_URL=$($PY -c 'from shopstream.devstack.airflow_deployment import AirflowDeployment as A; print(A().url)')
WHICH=(closed-day)
[ -n "${SHOPSTREAM_RUN_DATE:-}" ] && WHICH=(date "$DATE")
$PY -m shopstream.devstack.airflow_runs --result-file "$STATE_DIR/dag-run.json" "${WHICH[@]}" \
  || { echo "DAG run failed: its task logs are in the UI, $AIRFLOW_URL"; exit 1; }
echo "==> [3/3] outputs"
$PY -m shopstream.report --date "$DATE" --summary
$PY -m shopstream.lake --date "$DATE"
echo "done in $(( $(date +%s) - started_at )) s"
echo "Airflow UI: $AIRFLOW_URL (user admin; make airflow-status says where its password is)"
if [ "$LIVE" = 1 ] && [ -t 0 ] && [ "${SHOPSTREAM_KEEP_RUNNING:-1}" != 0 ]; then
  echo "dashboard still running at $URL, Airflow at $AIRFLOW_URL: feed it with 'target/release/order-sim --rate 200 --start now';"
  echo "Ctrl-C stops everything this run started"
  while true; do sleep 3600; done
fi
