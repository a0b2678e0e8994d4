#!/usr/bin/env bash
# Asset CSV import timing (POST /v1/buildings/{id}/assets/import) for ROWS assets with two
# last services each, on SQLite and on PostgreSQL: a dry run, the first import (creates and
# history), a re-import that changes every asset's location and adds a service to each
# (updates and history), and the same file again (nothing to write). Prints one line per
# request: backend, step, HTTP status, seconds (curl's total), server CPU seconds (user +
# system of the server process during the request, from /proc).
#
#   docs/bench/import.sh
#
# Needs a release build (cargo build --release -p firemode-server), curl, jq, awk and psql;
# BIN as in http.sh.
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18083}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode
ROWS=${ROWS:-10000}
PW='Imports-run-on-two-busy-cores!'
API=http://127.0.0.1:$PORT
work=$(mktemp -d)
TICK=$(getconf CLK_TCK)

# $1: file, $2: the location's suffix, $3..: last_services of each row (%s is the identifier)
csv() {
  awk -v n="$ROWS" -v loc="$2" -v last="$3" 'BEGIN {
    print "identifier,asset_type,location,install_date,manufacture_date,rule_codes,last_services"
    for (i = 1; i <= n; i++)
      printf "EXT-%05d,portable_extinguisher,Level %d %s,2019-03-01,2018-11-20,AS1851-10-6M-EXT;AS1851-10-12M-EXT,%s\n",
        i, i % 40, loc, last
  }' >"$1"
}
csv "$work/first.csv" lobby "AS1851-10-6M-EXT=2026-05-10;AS1851-10-12M-EXT=2025-11-02"
csv "$work/second.csv" "stair lobby" "AS1851-10-6M-EXT=2026-11-09;AS1851-10-12M-EXT=2025-11-02"

cpu() { awk -v t="$TICK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

post() { # $1 backend, $2 step, $3 query, $4 file, $5 server pid
  local before after out
  before=$(cpu "$5")
  out=$(curl -s -o "$work/answer.json" -w '%{http_code} %{time_total}' -X POST \
    "$API/v1/buildings/$BUILDING/assets/import$3" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: text/csv' --data-binary @"$4")
  after=$(cpu "$5")
  echo "$1 $2 $out $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }') \
$(jq -c '{imported, updated, unchanged, history_added, errors: (.errors | length)}' "$work/answer.json")" |
    tee -a import.txt
}

run() { # $1: backend name
  local name=$1 data server
  data=$(mktemp -d)
  FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" \
    --name Bench --admin-email bench@example.test >/dev/null
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$data" >"$data/server.log" 2>&1 &
  server=$!
  until curl -sf $API/health >/dev/null; do sleep 0.2; done
  TOKEN=$(curl -s -X POST $API/v1/auth/login -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.test\",\"password\":\"$PW\"}" | jq -r .access_token)
  BUILDING=$(curl -s -X POST $API/v1/buildings -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d '{"name":"Bench Tower","address":"1 Bench St","building_type":"office"}' | jq -r .id)
  post "$name" dry-run "?dry_run=true" "$work/first.csv" $server
  post "$name" import "" "$work/first.csv" $server
  post "$name" re-import "" "$work/second.csv" $server
  post "$name" same-again "" "$work/second.csv" $server
  kill $server
  wait $server || true
  rm -rf "$data"
}

run sqlite

psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench' -qc 'CREATE DATABASE fm_bench'
export DATABASE_URL=$PG/fm_bench
FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
run postgres
unset DATABASE_URL
psql "$PG/postgres" -qc 'DROP DATABASE fm_bench'
rm -rf "$work"
