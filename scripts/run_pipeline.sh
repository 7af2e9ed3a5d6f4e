#!/usr/bin/env bash
# The README's main command: start the local broker, produce events, show what arrived, and stop
# the broker again (also on failure or Ctrl-C). Later stages extend this to the whole DAG.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-500}
PY=.venv/bin/python

started_broker=0
cleanup() { if [ "$started_broker" = 1 ]; then $PY -m shopstream.kafka_broker down; fi; }
trap cleanup EXIT

if ! $PY -m shopstream.kafka_broker status >/dev/null; then
  $PY -m shopstream.kafka_broker up
  started_broker=1
fi
echo "==> producing $COUNT order events"
target/release/order-sim --count "$COUNT"
$PY -m shopstream.kafka_admin count --topic ecommerce_orders
