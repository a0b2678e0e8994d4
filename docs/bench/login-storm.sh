#!/usr/bin/env bash
# Login storm: N concurrent failed logins for distinct unknown emails against the real
# `firemode` binary on a fresh zero-setup SQLite data dir, sampling the process's resident
# memory (/proc/<pid>/status: VmRSS, VmHWM = peak) every 100 ms and /health latency meanwhile,
# then watching memory settle for SETTLE seconds.
#
#   docs/bench/login-storm.sh [path/to/firemode]      (default: target/release/firemode)
#   N=200 ROUNDS=3 SETTLE=60 docs/bench/login-storm.sh ...
#
# Prints one line per phase and a summary: peak RSS, RSS right after the storm, RSS after
# SETTLE seconds, answers by status, /health worst latency during the storm.
set -euo pipefail

FM=${1:-target/release/firemode}
N=${N:-200}
ROUNDS=${ROUNDS:-1}
SETTLE=${SETTLE:-60}
PORT=${PORT:-18471}
FM=$(readlink -f "$FM")
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

"$FM" serve --listen "127.0.0.1:$PORT" --data-dir "$data" >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

python3 - "$pid" "$PORT" "$N" "$ROUNDS" "$SETTLE" <<'EOF'
import json, sys, threading, time, urllib.request, urllib.error
from collections import Counter

pid, port, n, rounds, settle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
base = f"http://127.0.0.1:{port}"

def mem():
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024  # MiB
    return out

statuses = Counter()
def login(i, r):
    body = json.dumps({"email": f"storm-{r}-{i}@nowhere.test", "password": "not-the-password-at-all"}).encode()
    req = urllib.request.Request(base + "/v1/auth/login", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            statuses[res.status] += 1
    except urllib.error.HTTPError as e:
        statuses[e.code] += 1
    except Exception as e:
        statuses[type(e).__name__] += 1

health_worst = 0.0
health_fail = 0
stop = threading.Event()
def health():
    global health_worst, health_fail
    while not stop.is_set():
        t = time.monotonic()
        try:
            urllib.request.urlopen(base + "/health", timeout=10).read()
            health_worst = max(health_worst, time.monotonic() - t)
        except Exception:
            health_fail += 1
        time.sleep(0.1)

peak_seen = 0
def sampler():
    global peak_seen
    while not stop.is_set():
        peak_seen = max(peak_seen, mem()["VmRSS"])
        time.sleep(0.1)

print(f"idle: {mem()}")
threading.Thread(target=sampler, daemon=True).start()
threading.Thread(target=health, daemon=True).start()
t0 = time.monotonic()
for r in range(rounds):
    ts = [threading.Thread(target=login, args=(i, r)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(f"round {r + 1}: {time.monotonic() - t0:.1f} s, {mem()}")
stop.set()
after = mem()
print(f"answers: {dict(statuses)}; /health worst {health_worst * 1000:.0f} ms, failed {health_fail}")
for s in range(settle):
    time.sleep(1)
    urllib.request.urlopen(base + "/health", timeout=10).read()
settled = mem()
print(f"summary: peak {after['VmHWM']} MiB (sampled {peak_seen}), after storm {after['VmRSS']} MiB, "
      f"after {settle} s {settled['VmRSS']} MiB")
EOF
