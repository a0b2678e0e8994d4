#!/usr/bin/env bash
# Login storm: N concurrent failed logins for distinct unknown emails against the real
# `firemode` binary on a fresh zero-setup SQLite data dir, sampling the process's resident
# memory (/proc/<pid>/status: VmRSS, VmHWM = peak) every 100 ms and /health latency meanwhile,
# then watching memory settle for SETTLE seconds.
#
#   docs/bench/login-storm.sh [path/to/firemode]      (default: target/release/firemode)
#   N=200 ROUNDS=3 SETTLE=60 docs/bench/login-storm.sh ...
#   MODE=success N=200 docs/bench/login-storm.sh ...
#
# MODE=success: N real users (created first over REST by an admin, unmeasured) each log in
# once with the right password, all at once; a client told 503 (hashing busy) waits its
# Retry-After and tries again, as the apps do, so every user ends up logged in. Adds the
# server's CPU time per successful login (/proc/<pid>/stat, utime + stime over the storm).
#
# Prints one line per phase and a summary: peak RSS, RSS right after the storm, RSS after
# SETTLE seconds, answers by status, /health worst latency during the storm.
set -euo pipefail

FM=${1:-target/release/firemode}
N=${N:-200}
ROUNDS=${ROUNDS:-1}
SETTLE=${SETTLE:-60}
MODE=${MODE:-failed}
PORT=${PORT:-18471}
PW='Quiet-lake-harbour-91!'

FM=$(readlink -f "$FM")
data=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

if [ "$MODE" = success ]; then
  FIREMODE_ADMIN_PASSWORD=$PW "$FM" admin create-org --data-dir "$data" \
    --name "Acme Fire" --admin-email admin@storm.test >/dev/null
fi
"$FM" serve --listen "127.0.0.1:$PORT" --data-dir "$data" >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

python3 - "$pid" "$PORT" "$N" "$ROUNDS" "$SETTLE" "$MODE" "$PW" <<'EOF'
import json, os, sys, threading, time, urllib.request, urllib.error
from collections import Counter

pid, port, n, rounds, settle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mode, admin_pw = sys.argv[6], sys.argv[7]
base = f"http://127.0.0.1:{port}"
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    """The server's user + system CPU seconds so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def post(path, body, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=60) as res:
        return res.status, json.loads(res.read() or b"null")

def retrying(path, body, token=None):
    """POST, waiting out 503/429 answers (Retry-After) as the apps do; (status, body, 503s)."""
    busy = 0
    while True:
        try:
            status, out = post(path, body, token)
            return status, out, busy
        except urllib.error.HTTPError as e:
            if e.code in (429, 503):
                busy += 1
                time.sleep(float(e.headers.get("retry-after") or 1))
                continue
            return e.code, None, busy

users = []
if mode == "success":
    _, admin, _ = retrying("/v1/auth/login", {"email": "admin@storm.test", "password": admin_pw})
    token = admin["access_token"]
    for i in range(n * rounds):
        email, password = f"storm-user-{i}@storm.test", f"Blue-river-{i}-gate!"
        status, _, _ = retrying("/v1/users", {"email": email, "password": password, "role": "inspector"}, token)
        assert status == 201, status
        users.append((email, password))
    print(f"{len(users)} users created")

def mem():
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024  # MiB
    return out

statuses = Counter()
busy_answers = 0
lock = threading.Lock()
def login(i, r):
    global busy_answers
    if mode == "success":
        email, password = users[r * n + i]
        status, out, busy = retrying("/v1/auth/login", {"email": email, "password": password})
        with lock:
            statuses[status] += 1
            busy_answers += busy
        return
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
cpu0 = cpu()
for r in range(rounds):
    ts = [threading.Thread(target=login, args=(i, r)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(f"round {r + 1}: {time.monotonic() - t0:.1f} s, {mem()}")
stop.set()
after = mem()
storm_cpu = cpu() - cpu0
print(f"answers: {dict(statuses)}; /health worst {health_worst * 1000:.0f} ms, failed {health_fail}")
if mode == "success":
    ok = statuses.get(200, 0)
    print(f"success storm: {ok} logins in {time.monotonic() - t0:.1f} s, {busy_answers} busy answers "
          f"(503/429, retried), server CPU {storm_cpu:.2f} s = {storm_cpu / max(ok, 1) * 1000:.1f} ms per login")
for s in range(settle):
    time.sleep(1)
    urllib.request.urlopen(base + "/health", timeout=10).read()
settled = mem()
print(f"summary: peak {after['VmHWM']} MiB (sampled {peak_seen}), after storm {after['VmRSS']} MiB, "
      f"after {settle} s {settled['VmRSS']} MiB")
EOF
