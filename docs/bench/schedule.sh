#!/usr/bin/env bash
# Organisation-wide schedule timing (GET /v1/schedule over a year, every building) for an
# organisation of BUILDINGS × PER_BUILDING assets with VISITS six-monthly services each, on
# SQLite and on PostgreSQL. `firemode-bench-compliance seed-org` writes it straight into the
# database through the server's store; `... time --path` logs in and times sequential requests
# and reads the server's CPU time from /proc: as served, each after a change in one building
# (`--change-building`), each after an organisation-wide change (`--invalidate`).
#
#   docs/bench/schedule.sh
#
# Needs release builds (cargo build --release -p firemode-server -p firemode-tests --bins),
# curl and psql; BIN as in http.sh.
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18083}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode SEED=$BIN/firemode-bench-compliance
BUILDINGS=${BUILDINGS:-250} PER_BUILDING=${PER_BUILDING:-200} VISITS=${VISITS:-4}
REQUESTS=${REQUESTS:-30} COLD_REQUESTS=${COLD_REQUESTS:-10}
FROM=$(date -u +%F) TO=$(date -u -d '+365 days' +%F)

run() { # $1: backend name, $2: database URL for the seeder, $3: the server's data dir
  local name=$1 url=$2 data=$3
  "$SEED" seed-org --database-url "$url" --buildings "$BUILDINGS" \
    --assets-per-building "$PER_BUILDING" --visits "$VISITS" >&2
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$data" >"$data/server.log" 2>&1 &
  local server=$!
  until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.2; done
  for limit in 1000 10000; do
    "$SEED" time --url http://127.0.0.1:$PORT --server-pid $server --requests "$REQUESTS" \
      --path "/v1/schedule?from=$FROM&to=$TO&limit=$limit" | sed "s/^/$name /" | tee -a schedule.txt
  done
  # Every request after a change in one building (a service recorded, an asset edited): that
  # building is loaded and computed again, the others' lines are merged as cached.
  "$SEED" time --url http://127.0.0.1:$PORT --server-pid $server --requests "$REQUESTS" \
    --warmup 1 --change-building --path "/v1/schedule?from=$FROM&to=$TO&limit=1000" \
    | sed "s/^/$name /" | tee -a schedule.txt
  # Every request after an organisation-wide change (holidays): nothing cached can answer.
  "$SEED" time --url http://127.0.0.1:$PORT --server-pid $server --requests "$COLD_REQUESTS" \
    --warmup 1 --invalidate --path "/v1/schedule?from=$FROM&to=$TO&limit=1000" \
    | sed "s/^/$name /" | tee -a schedule.txt
  kill $server
  wait $server || true
}

sqlite_dir=$(mktemp -d)
run sqlite "sqlite://$sqlite_dir/firemode.db" "$sqlite_dir"
rm -rf "$sqlite_dir"

psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench' -qc 'CREATE DATABASE fm_bench'
export DATABASE_URL=$PG/fm_bench
FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
pg_dir=$(mktemp -d)
run postgres "$DATABASE_URL" "$pg_dir"
rm -rf "$pg_dir"
unset DATABASE_URL
psql "$PG/postgres" -qc 'DROP DATABASE fm_bench'
