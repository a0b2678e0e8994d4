#!/usr/bin/env bash
# Instructions per edit in the sync hub, by function, with callgrind (instruction counts do not
# depend on what else the machine runs). The server (SQLite) runs under valgrind with
# instrumentation off; `firemode-cli bench sync` connects its clients and, once they edit and
# the warm-up is over, instrumentation is switched on for the measured window only.
#
#   CARGO_TARGET_DIR=... docs/bench/profile-hub.sh            # 1 edit/s per client
#   RATE=0 docs/bench/profile-hub.sh                          # closed loop
#   (env: CLIENTS (10), DOCS (5), RATE (1), DURATION (20), WARMUP (5), OUT (a temp dir))
# Prints the edits in the window and the callgrind output file; summarise it with
#   callgrind_annotate --inclusive=yes <file> | head -80
# Needs a release build of firemode and firemode-cli (BIN), valgrind, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
unset DATABASE_URL
PORT=${PORT:-18091}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
CLIENTS=${CLIENTS:-10} DOCS=${DOCS:-5} RATE=${RATE:-1} DURATION=${DURATION:-20} WARMUP=${WARMUP:-5}
OUT=${OUT:-$(mktemp -d)}
PW='Load-tests-run-on-two-cores!'
EMAIL=bench@example.test
URL=http://127.0.0.1:$PORT
data=$(mktemp -d)
FIREMODE_ADMIN_PASSWORD=$PW "$BIN/firemode" admin create-org --data-dir "$data" --name Bench \
  --admin-email "$EMAIL" >/dev/null
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN/firemode" serve --listen 127.0.0.1:$PORT --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "$URL/" && break; sleep 0.5; done
FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW "$BIN/firemode-cli" bench sync --url "$URL" \
  --clients "$CLIENTS" --docs "$DOCS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
  --settle 0 --converge-timeout 120 >"$OUT/bench.txt" 2>"$OUT/bench.err" &
bench=$!
until grep -q "editing" "$OUT/bench.err" 2>/dev/null; do
  kill -0 $bench 2>/dev/null || { cat "$OUT/bench.err"; exit 1; }
  sleep 0.1
done
sleep "$WARMUP"
callgrind_control -i on $server >/dev/null
sleep "$DURATION"
callgrind_control -i off $server >/dev/null
wait $bench || true
kill $server; wait $server || true
cat "$OUT/bench.txt"
echo "callgrind output: $OUT/callgrind.out*"
rm -rf "$data"
