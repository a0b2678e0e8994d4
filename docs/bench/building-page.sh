#!/usr/bin/env bash
# The console's building page for one building of ASSETS assets with SESSIONS six-monthly
# visits (five years of history by default), on SQLite and on PostgreSQL: the page's four
# requests (the building, its compliance report, its first 100 assets, its schedule for the
# next 90 days) sent together, timed each and as a page (the slowest of the four), with the
# server's CPU time per page from /proc. Twice: with what the server cached, and with a change
# to the organisation's schedule inputs before every page load (nothing cached can answer).
#
#   docs/bench/building-page.sh
#
# Needs release builds (cargo build --release -p firemode-server -p firemode-tests --bins),
# curl and psql; BIN as in http.sh.
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18084}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode SEED=$BIN/firemode-bench-compliance
ASSETS=${ASSETS:-2000} SESSIONS=${SESSIONS:-10} REQUESTS=${REQUESTS:-30}

run() { # $1: backend name, $2: database URL for the seeder, $3: the server's data dir
  local name=$1 url=$2 data=$3 seeded building
  seeded=$("$SEED" seed --database-url "$url" --assets "$ASSETS" --sessions "$SESSIONS")
  building=$(printf '%s' "$seeded" | sed -E 's/.*"building_id":"([^"]+)".*/\1/')
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$data" >"$data/server.log" 2>&1 &
  local server=$!
  until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.2; done
  for mode in "" --invalidate; do
    "$SEED" building-page --url http://127.0.0.1:$PORT --server-pid $server \
      --building "$building" --requests "$REQUESTS" $mode | sed "s/^/$name /" | tee -a building-page.txt
  done
  kill $server
  wait $server || true
}

sqlite_dir=$(mktemp -d)
run sqlite "sqlite://$sqlite_dir/firemode.db" "$sqlite_dir"
rm -rf "$sqlite_dir"

psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench_page' -qc 'CREATE DATABASE fm_bench_page'
export DATABASE_URL=$PG/fm_bench_page
FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
pg_dir=$(mktemp -d)
run postgres "$DATABASE_URL" "$pg_dir"
rm -rf "$pg_dir"
unset DATABASE_URL
psql "$PG/postgres" -qc 'DROP DATABASE fm_bench_page'
