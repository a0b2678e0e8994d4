#!/usr/bin/env bash
# Compliance report timing (GET /v1/buildings/{id}/compliance as JSON, CSV and PDF) for a
# building of ASSETS assets with SESSIONS six-monthly visits over five years, on SQLite and on
# PostgreSQL. `firemode-bench-compliance seed` writes the building straight into the database
# through the server's store; `... time` logs in and times sequential requests.
#
#   docs/bench/compliance.sh
#
# Needs release builds (cargo build --release -p firemode-server -p firemode-tests --bins),
# curl and psql; BIN as in http.sh.
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18082}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode SEED=$BIN/firemode-bench-compliance
ASSETS=${ASSETS:-2000} SESSIONS=${SESSIONS:-10} REQUESTS=${REQUESTS:-50}

run() { # $1: backend name, $2: database URL for the seeder; the server gets DATABASE_URL or the data dir
  local name=$1 url=$2 data building
  data=$(mktemp -d)
  building=$("$SEED" seed --database-url "$url" --assets "$ASSETS" --sessions "$SESSIONS" |
    tee /dev/stderr | sed 's/.*"building_id":"\([^"]*\)".*/\1/')
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "${3:-$data}" >"$data/server.log" 2>&1 &
  local server=$!
  until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.2; done
  for format in json csv pdf; do
    "$SEED" time --url http://127.0.0.1:$PORT --building "$building" --format $format \
      --requests "$REQUESTS" | sed "s/^/$name /" | tee -a "compliance.txt"
  done
  kill $server
  wait $server || true
  rm -rf "$data"
}

sqlite_dir=$(mktemp -d)
run sqlite "sqlite://$sqlite_dir/firemode.db" "$sqlite_dir"
rm -rf "$sqlite_dir"

psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench' -qc 'CREATE DATABASE fm_bench'
export DATABASE_URL=$PG/fm_bench
FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
run postgres "$DATABASE_URL"
unset DATABASE_URL
psql "$PG/postgres" -qc 'DROP DATABASE fm_bench'
