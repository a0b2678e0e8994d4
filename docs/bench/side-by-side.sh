#!/usr/bin/env bash
# Server CPU per edit, FireMode beside the reference sync servers, same clients and workloads,
# in one run. The server is pinned to CPU 0 and the load generator to CPU 1 (`taskset`), so
# that the generator cannot take the server's core; CPU per edit is read from /proc/<pid>/stat
# and does not depend on who else runs.
#
#   docs/bench/side-by-side.sh            # appends to docs/bench/side-by-side.jsonl
#   python3 docs/bench/chart.py           # draws docs/bench/cpu-per-edit.svg from it
#
# Servers (SERVERS, any of): firemode-sqlite firemode-postgres ref25 ref028 samod
#   ref25:  docs/bench/reference/server.mjs — the sync server's logic on automerge-repo 2.5.6
#           and automerge 3.5 (installed under /tmp by this script, never committed)
#   ref028: the npm package @automerge/automerge-repo-sync-server 0.2.8 (automerge-repo 1.x)
#   samod:  docs/bench/reference/samod-server — the same role played by a `samod` repo (the
#           Rust automerge-repo), built here with cargo (release, its own Cargo.lock) into
#           SAMOD_TARGET (default /tmp/fm-samod-target), not part of the workspace
# Workloads (WORKLOADS, any of):
#   js-burst:   unmodified automerge-repo 2.5 JS clients, 20 clients, 100 edits each, burst
#   js-paced:   the same clients, 100 clients, 30 edits each at 5 edits/s
#   rust-closed: `firemode-cli bench sync`, 200 clients / 100 documents, closed loop, 20 s
#   rust-1hz:    the same, 1 edit/s per client, 30 s
#   memory:      memory per loaded document: MEMDOCS documents (default 2,000) are made first
#                (sessions over REST; seeded into the references' storage), the server is
#                restarted, then `bench sync-touch --no-edit --hold` fetches each of them (50 per
#                connection, so sockets are 1/50 of the figure) and holds them all loaded:
#                (RSS with all loaded − baseline) ÷ documents
#   storm:       (FireMode only) docs/bench/js-storm.mjs: TABLETS tablets (default 1,000) with
#                on-device storage edit SESSIONS sessions (500) offline and reconnect within one
#                second, while ONLINE tablets (20) edit once a second in a Node process of their
#                own (docs/bench/js-online.mjs, pinned to ONLINE_CPU, default GEN_CPU: on two
#                cores there is no third one; a separate event loop is what matters)
# Needs release builds of firemode and firemode-cli (BIN, default $CARGO_TARGET_DIR/release),
# node with clients/js installed (npm ci), curl, psql, taskset; cargo for SERVERS=samod.
set -euo pipefail
cd "$(dirname "$0")/../.."
unset DATABASE_URL
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18081}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
FM=$BIN/firemode
PW='Load-tests-run-on-two-cores!'
EMAIL=bench@example.test
URL=http://127.0.0.1:$PORT
OUT=${OUT:-docs/bench/side-by-side.jsonl}
SERVERS=${SERVERS:-firemode-sqlite firemode-postgres ref25 ref028 samod}
WORKLOADS=${WORKLOADS:-js-burst js-paced rust-closed rust-1hz}
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
ONLINE_CPU=${ONLINE_CPU:-$GEN_CPU}
REF25=${REF25:-/tmp/fm-ref25}
REF028=${REF028:-/tmp/fm-ref028}
SAMOD_TARGET=${SAMOD_TARGET:-/tmp/fm-samod-target}
SAMOD_BIN=$SAMOD_TARGET/release/samod-reference-server
RUN_ID=$(date -u +%Y-%m-%dT%H:%MZ)
COMMIT=$(git rev-parse --short HEAD)

[ -d "$REF25/node_modules/@automerge/automerge-repo" ] || {
  mkdir -p "$REF25" && echo '{"private":true}' >"$REF25/package.json"
  npm install --prefix "$REF25" --no-audit --no-fund $(cat docs/bench/reference/packages.txt) >/dev/null
}
[ -d "$REF028/node_modules/@automerge/automerge-repo-sync-server" ] || {
  mkdir -p "$REF028" && echo '{"private":true}' >"$REF028/package.json"
  npm install --prefix "$REF028" --no-audit --no-fund @automerge/automerge-repo-sync-server@0.2.8 >/dev/null
}
if [[ " $SERVERS " == *" samod "* ]]; then
  cargo build --release --locked --quiet --manifest-path docs/bench/reference/samod-server/Cargo.toml \
    --target-dir "$SAMOD_TARGET"
fi

wait_up() { for _ in $(seq 1 200); do curl -s -o /dev/null "$URL/" && return; sleep 0.1; done; echo "server did not start" >&2; exit 1; }
gen() { taskset -c "$GEN_CPU" "$@"; }
tag() { # $1 server $2 workload; JSON lines to $OUT, anything else (client logs) to stderr
  local line
  while IFS= read -r line; do
    if [[ $line == "{"* ]]; then
      printf '%s\n' "{\"run\":\"$RUN_ID\",\"commit\":\"$COMMIT\",\"sbs_server\":\"$1\",\"workload\":\"$2\",${line#\{}" | tee -a "$OUT"
    else
      printf '%s\n' "$line" >&2
    fi
  done
}

start() { # $1 server name; sets $server
  local data=$1
  case $name in
  firemode-*)
    taskset -c "$SERVER_CPU" "$FM" serve --listen 127.0.0.1:$PORT --data-dir "$data" >>"$data/server.log" 2>&1 &
    ;;
  ref25)
    (cd "$data" && REF_PREFIX=$REF25 DATA_DIR="$data/amrg" PORT=$PORT exec taskset -c "$SERVER_CPU" node "$OLDPWD/docs/bench/reference/server.mjs" >"$data/ref.log" 2>&1) &
    ;;
  ref028)
    (cd "$data" && DATA_DIR="$data/amrg" PORT=$PORT exec taskset -c "$SERVER_CPU" node "$REF028/node_modules/@automerge/automerge-repo-sync-server/src/index.js" >"$data/ref.log" 2>&1) &
    ;;
  samod)
    (cd "$data" && DATA_DIR="$data/amrg" PORT=$PORT exec taskset -c "$SERVER_CPU" "$SAMOD_BIN" >"$data/ref.log" 2>&1) &
    ;;
  esac
  server=$!
  wait_up
}

workload() { # $1 workload; server running as $server, its data in $data
  local kind=firemode
  [[ $name == ref* || $name == samod ]] && kind=reference
  case $1 in
  js-burst | js-paced)
    local c=20 d=10 e=100 r=0
    [ "$1" = js-paced ] && c=100 d=50 e=30 r=5
    gen node docs/bench/js-load.mjs --target $kind --url "$URL" --email "$EMAIL" --password "$PW" \
      --clients $c --docs $d --edits $e --rate $r --server-pid $server
    ;;
  storm)
    [ $kind = firemode ] || return 0
    # The online tablets first, in their own process; the storm tells them when it starts.
    taskset -c "$ONLINE_CPU" node docs/bench/js-online.mjs --url "$URL" --email "$EMAIL" --password "$PW" \
      --online "${ONLINE:-20}" --rate 1 --ready-file "$data/online.ready" --report "$data/online.json" \
      >"$data/online.log" 2>&1 &
    local online=$!
    for _ in $(seq 1 600); do [ -e "$data/online.ready" ] || ! kill -0 $online 2>/dev/null && break; sleep 0.1; done
    [ -e "$data/online.ready" ] || { cat "$data/online.log" >&2; kill $online 2>/dev/null; return 1; }
    local rc=0
    gen node docs/bench/js-storm.mjs --url "$URL" --email "$EMAIL" --password "$PW" \
      --tablets "${TABLETS:-1000}" --sessions "${SESSIONS:-500}" --edits "${EDITS:-5}" \
      --server-pid $server --server-log "$data/server.log" \
      --online-pid $online --online-report "$data/online.json" || rc=$?
    kill $online 2>/dev/null || true
    wait $online 2>/dev/null || true
    return $rc
    ;;
  memory)
    local flag=()
    [ $kind = reference ] && flag=(--server reference)
    FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW gen "$BIN/firemode-cli" --json bench sync-touch "${flag[@]}" \
      --url "$URL" --documents "${MEMDOCS:-2000}" --no-edit --hold --per-connection 50 --concurrency 8 \
      --idle-wait 0 --server-pid $server --sessions-file "$data/documents.txt"
    ;;
  rust-closed | rust-1hz)
    local r=0 dur=20
    [ "$1" = rust-1hz ] && r=1 dur=30
    local flag=()
    [ $kind = reference ] && flag=(--server reference)
    FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW gen "$BIN/firemode-cli" --json bench sync "${flag[@]}" \
      --url "$URL" --clients 200 --docs 100 --rate $r --duration $dur --warmup 3 --server-pid $server \
      --sessions-file "$data/documents.txt"
    ;;
  esac
}

# Rust workloads: make the 100 documents first (FireMode: sessions over REST; references: seeded
# by a client into their storage), then restart the server, so that the run starts from a
# process that holds no document and nothing the setup allocated: (RSS with every document
# loaded − that baseline) ÷ 100 is then what a loaded document (with its two clients) costs.
prepare() { # $1 workload; restarts $server
  local flag=()
  [[ $name == ref* || $name == samod ]] && flag=(--server reference)
  case $1 in
  rust-closed | rust-1hz)
    FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW gen "$BIN/firemode-cli" bench sync "${flag[@]}" \
      --url "$URL" --clients 200 --docs 100 --create-only --sessions-file "$data/documents.txt" >&2
    ;;
  memory)
    FIREMODE_EMAIL=$EMAIL FIREMODE_PASSWORD=$PW gen "$BIN/firemode-cli" bench sync-touch "${flag[@]}" \
      --url "$URL" --documents "${MEMDOCS:-2000}" --create-only --sessions-file "$data/documents.txt" >&2
    ;;
  *) return 0 ;;
  esac
  sleep 2 # the JS references write to storage after a debounce
  kill $server 2>/dev/null; wait $server 2>/dev/null || true
  start "$data"
}

for name in $SERVERS; do
  for w in $WORKLOADS; do
    data=$(mktemp -d)
    case $name in
    firemode-postgres)
      psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_sbs' -qc 'CREATE DATABASE fm_sbs'
      export DATABASE_URL=$PG/fm_sbs
      FIREMODE_JWT_SECRET=$("$FM" admin gen-key) FIREMODE_PII_KEYS=1:$("$FM" admin gen-key)
      export FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
      ;;
    esac
    if [[ $name == firemode-* ]]; then
      FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" --name Bench \
        --admin-email "$EMAIL" >/dev/null
    fi
    start "$data"
    prepare "$w"
    workload "$w" | tag "$name" "$w" || echo "{\"sbs_server\":\"$name\",\"workload\":\"$w\",\"failed\":true}" >>"$OUT"
    kill $server 2>/dev/null; wait $server 2>/dev/null || true
    if [ "$name" = firemode-postgres ]; then
      unset DATABASE_URL FIREMODE_JWT_SECRET FIREMODE_PII_KEYS
      psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS fm_sbs'
    fi
    rm -rf "$data"
  done
done
