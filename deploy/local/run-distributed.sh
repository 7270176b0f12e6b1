#!/usr/bin/env bash
# The reference system split as in production: one process per context on PostgreSQL,
# a relay process per context, NATS JetStream between them. Configuration is environment
# variables only. Ctrl-C stops everything. The contexts come from the reference
# distribution (examples/reference) that `make .venv` installs beside chronik.
#
#   deploy/local/run-distributed.sh [postgresql://postgres@127.0.0.1:5432/test] [nats://127.0.0.1:4222]
set -euo pipefail
cd "$(dirname "$0")/../.."
PG=${1:-postgresql://postgres@127.0.0.1:5432/test}
NATS=${2:-nats://127.0.0.1:4222}
BIN=.venv/bin
LOGS=.chronik/distributed
mkdir -p "$LOGS"
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

port=8001
for context in sales campaigns travel; do
  store="$PG?schema=$context"
  CHRONIK_APP="$context:spec" CHRONIK_EVENT_STORE_URL="$store" CHRONIK_BROKER_URL="$NATS" \
  CHRONIK_HTTP_PORT=$port CHRONIK_RUN=http,projections,consumers,processes \
    "$BIN/chronik" serve > "$LOGS/$context.log" 2>&1 &
  pids+=($!)
  CHRONIK_EVENT_STORE_URL="$store" "$BIN/chronik" relay --broker-url "$NATS" \
    > "$LOGS/$context-relay.log" 2>&1 &
  pids+=($!)
  echo "$context: http://127.0.0.1:$port/docs (relay log: $LOGS/$context-relay.log)"
  port=$((port + 1))
done
echo "logs in $LOGS; Ctrl-C stops all"
wait
