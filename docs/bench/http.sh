#!/usr/bin/env bash
# Closed-loop HTTP load runs of one `firemode-cli bench` workload against a fresh server on
# SQLite, then on PostgreSQL. Prints one JSON report per run (also appended to
# <workload>-<backend>.jsonl in the current directory).
#
#   docs/bench/http.sh <workload> "<concurrencies>" [extra bench args...]
#   docs/bench/http.sh evidence-upload "1 4 8 16"
#   docs/bench/http.sh create-session "1 4 16" --assets 40
#   docs/bench/http.sh results 64 --rate 500 --items 5      # open loop, 500 requests/s
#
# Needs release builds (cargo build --release -p firemode-server -p firemode-client), curl, psql
# and a PostgreSQL the user `postgres` reaches without a password (PG below). BIN overrides
# where the binaries are (default target/release, or $CARGO_TARGET_DIR/release).
set -euo pipefail
workload=$1 concurrencies=$2
shift 2
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18080}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode CLI=$BIN/firemode-cli
PW='Load-tests-run-on-two-cores!'
DURATION=${DURATION:-10} WARMUP=${WARMUP:-2}

# User + system CPU seconds of process $1 so far.
cpu_secs() { awk -v t="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat"; }

run_backend() { # $1: sqlite | postgres (for postgres, DATABASE_URL and secrets are exported)
  local name=$1 data
  shift
  data=$(mktemp -d)
  FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" \
    --name Bench --admin-email bench@example.test >/dev/null
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$data" \
    >"$data/server.log" 2>&1 &
  local server=$!
  until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.2; done
  for c in $concurrencies; do
    local cpu0 cpu1 out
    cpu0=$(cpu_secs $server)
    out=$(FIREMODE_PASSWORD=$PW "$CLI" --json bench "$workload" --url http://127.0.0.1:$PORT \
      --email bench@example.test --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" "$@")
    cpu1=$(cpu_secs $server)
    # server_cpu_secs: the server's CPU over the whole run (setup and warm-up included).
    echo "$out" | sed "s/^{/{\"backend\":\"$name\",\"server_pid\":$server,\"server_cpu_secs\":$(echo "$cpu1 - $cpu0" | bc),/" |
      tee -a "$workload-$name.jsonl"
  done
  kill $server
  wait $server || true
  grep -E '"level":"(WARN|ERROR)"' "$data/server.log" | head -5 || true
  rm -rf "$data"
}

run_backend sqlite "$@"

psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench' -qc 'CREATE DATABASE fm_bench'
export DATABASE_URL=$PG/fm_bench
FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
run_backend postgres "$@"
unset DATABASE_URL
psql "$PG/postgres" -qc 'DROP DATABASE fm_bench'
