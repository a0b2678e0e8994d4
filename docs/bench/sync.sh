#!/usr/bin/env bash
# Sync benchmarks, FireMode (SQLite, PostgreSQL) side by side with the reference JS server
# (@automerge/automerge-repo-sync-server), same client code and workload for all:
#   load:  `firemode-cli bench sync`       CLIENTS clients over DOCS documents, closed loop
#   touch: `firemode-cli bench sync-touch` TOUCH documents fetched and edited once each
# Prints one JSON report per run (also appended to sync-<what>.jsonl here).
#
#   REF=/tmp/refserver/node_modules/@automerge/automerge-repo-sync-server docs/bench/sync.sh
#   (env: BACKENDS="sqlite reference postgres", WHAT="load touch", CLIENTS, DOCS, RATE, TOUCH)
#
# The reference server is installed outside the repository, never committed:
#   mkdir /tmp/refserver && cd /tmp/refserver && npm install @automerge/automerge-repo-sync-server
# Needs release builds of firemode and firemode-cli (BIN, default target/release), curl, psql.
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18081}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode
REF=${REF:?set REF to the installed @automerge/automerge-repo-sync-server package directory}
PW='Load-tests-run-on-two-cores!'
CLIENTS=${CLIENTS:-200} DOCS=${DOCS:-100} DURATION=${DURATION:-20} WARMUP=${WARMUP:-3}
TOUCH=${TOUCH:-10000}
# Edits per second per client; 0: closed loop (each client waits for the server's
# acknowledgement of its edit before the next: the most the pair can do).
RATE=${RATE:-0}
WHAT=${WHAT:-load touch}
URL=http://127.0.0.1:$PORT
EMAIL=bench@example.test
# The login goes to the bench tool only (the server would warn about FIREMODE_* it does not know).
cli() { FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW "$BIN/firemode-cli" "$@"; }

wait_up() { until curl -s -o /dev/null "$URL/"; do sleep 0.2; done; }
tag() { sed "s/^{/{\"backend\":\"$1\",/" | tee -a "sync-$2.jsonl"; }

start_firemode() { # $1: data dir
  "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$1" >>"$1/server.log" 2>&1 &
  server=$!
  wait_up
}

firemode() { # $1: sqlite | postgres
  local name=$1 data
  data=$(mktemp -d)
  FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" \
    --name Bench --admin-email "$EMAIL" >/dev/null
  if [[ " $WHAT " == *" load "* ]]; then
    start_firemode "$data"
    cli --json bench sync --url "$URL" --clients "$CLIENTS" --docs "$DOCS" --rate "$RATE" \
      --duration "$DURATION" --warmup "$WARMUP" --server-pid $server | tag "$name" load
    kill $server; wait $server || true
  fi
  if [[ " $WHAT " == *" touch "* ]]; then
    # Create the sessions first, then touch them on a freshly started server, so that creating
    # them is not part of what the server holds.
    start_firemode "$data"
    cli bench sync-touch --url "$URL" --documents "$TOUCH" --create-only \
      --sessions-file "$data/sessions.txt" >/dev/null
    kill $server; wait $server || true
    start_firemode "$data"
    cli --json bench sync-touch --url "$URL" --documents "$TOUCH" \
      --sessions-file "$data/sessions.txt" --server-pid $server | tag "$name" touch
    kill $server; wait $server || true
  fi
  grep -E '"level":"(WARN|ERROR)"' "$data/server.log" | head -5 || true
  rm -rf "$data"
}

reference() {
  local data
  data=$(mktemp -d)
  for what in $WHAT; do
    rm -rf "$data/amrg"
    (cd "$data" && DATA_DIR="$data/amrg" PORT=$PORT exec node "$REF/src/index.js" >"$data/ref.log" 2>&1) &
    server=$!
    wait_up
    if [ "$what" = load ]; then
      cli --json bench sync --server reference --url "$URL" --clients "$CLIENTS" \
        --docs "$DOCS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" --server-pid $server |
        tag reference load
    else
      cli --json bench sync-touch --server reference --url "$URL" --documents "$TOUCH" \
        --server-pid $server | tag reference touch
    fi
    kill $server; wait $server || true
  done
  rm -rf "$data"
}

# Which servers to run, in this order (any of: sqlite reference postgres).
for backend in ${BACKENDS:-sqlite reference postgres}; do
  case $backend in
  sqlite) firemode sqlite ;;
  reference) reference ;;
  postgres)
    psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench' -qc 'CREATE DATABASE fm_bench'
    (
      export DATABASE_URL=$PG/fm_bench
      FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
      FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
      export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
      firemode postgres
    )
    psql "$PG/postgres" -qc 'DROP DATABASE fm_bench'
    ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
done
