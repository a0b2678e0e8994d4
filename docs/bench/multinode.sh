#!/usr/bin/env bash
# Cross-node sync on PostgreSQL: two FireMode nodes on one database, CLIENTS clients over DOCS
# documents, the clients of each document split across the two nodes (`bench sync --peer-url`),
# so every edit reaches its peer through the database (commit, doorbell, catch-up). The same
# workload on one node is run right after, on the same database, for the comparison.
#
#   docs/bench/multinode.sh        (env: CLIENTS=200 DOCS=100 RATE=1 DURATION=20 WARMUP=3)
#
# Prints one JSON report per run (appended to multinode.jsonl here), and each node's CPU
# seconds over the run from /proc (the report's own server figures are node A's).
# Needs release builds of firemode and firemode-cli (BIN, default target/release), curl, psql.
set -euo pipefail
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode
PW='Load-tests-run-on-two-cores!'
CLIENTS=${CLIENTS:-200} DOCS=${DOCS:-100} RATE=${RATE:-1} DURATION=${DURATION:-20} WARMUP=${WARMUP:-3}
A=http://127.0.0.1:${PORT_A:-18091}
B=http://127.0.0.1:${PORT_B:-18092}
EMAIL=bench@example.test
cli() { FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW "$BIN/firemode-cli" "$@"; }
wait_up() { until curl -s -o /dev/null "$1/health"; do sleep 0.2; done; }
cpu_secs() { # utime + stime of a pid, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_bench_mn' -qc 'CREATE DATABASE fm_bench_mn'
export DATABASE_URL=$PG/fm_bench_mn
FIREMODE_JWT_SECRET=$("$FM" admin gen-key)
FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
data=$(mktemp -d)
FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" --name Bench \
  --admin-email "$EMAIL" >/dev/null

"$FM" serve --listen "${A#http://}" --data-dir "$data/a" >>"$data/a.log" 2>&1 &
node_a=$!
"$FM" serve --listen "${B#http://}" --data-dir "$data/b" >>"$data/b.log" 2>&1 &
node_b=$!
wait_up "$A"
wait_up "$B"

run() { # $1: label, rest: extra bench arguments
  local label=$1
  shift
  local a0 b0
  a0=$(cpu_secs $node_a)
  b0=$(cpu_secs $node_b)
  cli --json bench sync --url "$A" --clients "$CLIENTS" --docs "$DOCS" --rate "$RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid $node_a "$@" |
    sed "s/^{/{\"run\":\"$label\",/" | tee -a multinode.jsonl
  echo "$label: node A $(echo "$(cpu_secs $node_a) - $a0" | bc) s CPU, node B $(echo "$(cpu_secs $node_b) - $b0" | bc) s CPU" >&2
}

run cross-node --peer-url "$B"
run single-node

kill $node_a $node_b
wait $node_a $node_b || true
grep -hE '"level":"(WARN|ERROR)"' "$data/a.log" "$data/b.log" | head -5 || true
rm -rf "$data"
psql "$PG/postgres" -qc 'DROP DATABASE fm_bench_mn'
