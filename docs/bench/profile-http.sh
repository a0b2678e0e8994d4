#!/usr/bin/env bash
# Instructions per request of one `firemode-cli bench` HTTP workload, with callgrind (counts
# do not depend on what else the machine runs). The server (SQLite) runs under valgrind with
# instrumentation off; the workload runs at concurrency 1, and instrumentation is on for
# WINDOW seconds once setup is over (audited requests of ACTION are flowing). Prints how many
# such requests the window held; divide the callgrind total by it.
#
#   BIN=<release dir> ACTION=session.results docs/bench/profile-http.sh results --items 5
#   BIN=<release dir> ACTION=session.create docs/bench/profile-http.sh create-session --assets 40
#   callgrind_annotate --inclusive=yes <out>/callgrind.out | head -80
# (env: WINDOW (60), OUT (a temp dir), PORT)
# Needs release builds of firemode and firemode-cli (BIN), valgrind, curl, python3.
set -euo pipefail
workload=$1
shift
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
PORT=${PORT:-18095} WINDOW=${WINDOW:-60} ACTION=${ACTION:?the audit action of one request}
OUT=${OUT:-$(mktemp -d)}
PW='Load-tests-run-on-two-cores!'
URL=http://127.0.0.1:$PORT
unset DATABASE_URL
data=$(mktemp -d)
FIREMODE_ADMIN_PASSWORD=$PW "$BIN/firemode" admin create-org --data-dir "$data" --name Bench \
  --admin-email bench@example.test >/dev/null
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN/firemode" serve --listen 127.0.0.1:$PORT --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "$URL/" && break; sleep 0.5; done
FIREMODE_PASSWORD=$PW "$BIN/firemode-cli" --json bench "$workload" --url "$URL" \
  --email bench@example.test --concurrency 1 --duration $((WINDOW * 10)) --warmup 5 "$@" \
  >"$OUT/bench.json" 2>"$OUT/bench.err" &
bench=$!
count() {
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM audits WHERE action = ?', (sys.argv[2],)).fetchone()[0])" \
    "$data/firemode.db" "$ACTION"
}
until [ "$(count)" -gt 20 ]; do
  kill -0 $bench 2>/dev/null || { cat "$OUT/bench.err"; exit 1; }
  sleep 2
done
a=$(count)
callgrind_control -i on $server >/dev/null
sleep "$WINDOW"
callgrind_control -i off $server >/dev/null
b=$(count)
kill $bench 2>/dev/null || true
kill $server; wait $server || true
echo "$((b - a)) $ACTION requests in the window; callgrind output: $OUT/callgrind.out"
rm -rf "$data"
