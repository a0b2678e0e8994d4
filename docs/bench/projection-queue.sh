#!/usr/bin/env bash
# Projection queue and shutdown: TOUCH sessions touched once each over sync (`bench
# sync-touch`, 8 at a time), then the server is stopped (SIGTERM) right away, and started
# again. Prints, per backend: sessions still queued for projection when the touching ended
# (`firemode_projections_pending`), seconds from SIGTERM to exit, how many sessions the
# shutdown left marked pending, and seconds until the next start had projected them
# (`projection backlog re-checked` in its log).
#
#   BIN=$CARGO_TARGET_DIR/release TOUCH=10000 docs/bench/projection-queue.sh
#   (env: BACKENDS="sqlite postgres", TOUCH, PORT, PG)
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18082}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode
PW='Load-tests-run-on-two-cores!'
TOUCH=${TOUCH:-10000}
BACKENDS=${BACKENDS:-sqlite postgres}
URL=http://127.0.0.1:$PORT
EMAIL=bench@example.test
cli() { FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW "$BIN/firemode-cli" "$@"; }
wait_up() { until curl -s -o /dev/null "$URL/health"; do sleep 0.05; done; }
start() { # $1: data dir, $2: log
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$1" >"$2" 2>&1 &
  server=$!
  wait_up
}
pending() { curl -s "$URL/metrics" | awk '/^firemode_projections_pending /{print $2}'; }

run() { # $1: backend name
  local name=$1 data
  data=$(mktemp -d)
  FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" \
    --name Bench --admin-email "$EMAIL" >/dev/null
  start "$data" "$data/create.log"
  cli bench sync-touch --url "$URL" --documents "$TOUCH" --create-only \
    --sessions-file "$data/sessions.txt" >/dev/null
  kill $server; wait $server || true
  start "$data" "$data/touch.log"
  cli --json bench sync-touch --url "$URL" --documents "$TOUCH" --idle-wait 0 \
    --sessions-file "$data/sessions.txt" --server-pid $server >"$data/touch.json"
  local queued t0 t1 left t2 t3
  queued=$(pending)
  t0=$(date +%s.%N)
  kill -TERM $server; wait $server || true
  t1=$(date +%s.%N)
  left=$(grep 'projections left for the next start' "$data/touch.log" |
    grep -o '"sessions":[0-9]*' | grep -o '[0-9]*' || echo 0)
  t2=$(date +%s.%N)
  start "$data" "$data/restart.log"
  # The start-up backlog logs when it has re-checked every stale session (nothing when there
  # was none).
  for _ in $(seq 1200); do
    grep -q 'projection backlog re-checked' "$data/restart.log" && break
    sleep 0.1
  done
  t3=$(date +%s.%N)
  kill $server; wait $server || true
  jq -c --arg b "$name" --argjson q "${queued:-0}" --argjson left "${left:-0}" \
    --argjson stop "$(echo "$t1 - $t0" | bc)" --argjson backlog "$(echo "$t3 - $t2" | bc)" \
    '{backend: $b, documents, touches_per_sec, touch_p50_ms: .touch_latency.p50_ms,
      touch_p99_ms: .touch_latency.p99_ms, errors, queued_at_end: $q, stop_secs: $stop,
      left_pending: $left, next_start_backlog_secs: $backlog}' "$data/touch.json" |
    tee -a projection-queue.jsonl
  grep -hE '"level":"(WARN|ERROR)"' "$data"/*.log | head -5 || true
  rm -rf "$data"
}

for b in $BACKENDS; do
  case $b in
  sqlite) run sqlite ;;
  postgres)
    psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench' -qc 'CREATE DATABASE fm_bench'
    export DATABASE_URL=$PG/fm_bench
    FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
    FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
    export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
    run postgres
    unset DATABASE_URL
    psql "$PG/postgres" -qc 'DROP DATABASE fm_bench'
    ;;
  esac
done
