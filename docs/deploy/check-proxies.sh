#!/usr/bin/env bash
# Checks the nginx and HAProxy configurations of docs/deploy.md for real: two nodes on one
# PostgreSQL database with evidence on an S3 server (moto), behind each balancer as written in
# the document (only addresses, ports and certificate paths are replaced). Needs nginx, haproxy,
# moto_server, psql, jq, openssl and curl, and a PostgreSQL at PG_ADMIN_URL.
#
#   cargo build --release -p firemode-server && docs/deploy/check-proxies.sh target/release/firemode
set -euo pipefail
BIN=$(realpath "${1:?usage: check-proxies.sh <path to the firemode binary>}")
DOC=$(realpath "$(dirname "$0")/../deploy.md")
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
D=$(mktemp -d)
export D DOC
cd "$D"
openssl req -x509 -newkey rsa:2048 -nodes -keyout firemode.key -out firemode.crt -days 1 \
  -subj /CN=firemode.example.com 2>/dev/null
cat firemode.crt firemode.key > firemode.pem
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f $D/nginx.pid ] && kill "$(cat $D/nginx.pid)" 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS fm_proxycheck WITH (FORCE)" || true
  rm -rf "$D"
}
trap cleanup EXIT

moto_server -H 127.0.0.1 -p 18900 > moto.log 2>&1 & PIDS+=($!)
sleep 2
curl -sf -X PUT http://127.0.0.1:18900/proxycheck >/dev/null

psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS fm_proxycheck WITH (FORCE)"
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE fm_proxycheck"
export DATABASE_URL="${PG_ADMIN_URL%/*}/fm_proxycheck"
export FIREMODE_JWT_SECRET=$($BIN admin gen-key)
export FIREMODE_PII_KEYS=1:$($BIN admin gen-key)
export FIREMODE_EVIDENCE_STORE=s3 FIREMODE_EVIDENCE_S3_BUCKET=proxycheck
export FIREMODE_EVIDENCE_S3_ENDPOINT=http://127.0.0.1:18900 FIREMODE_EVIDENCE_S3_ALLOW_HTTP=true
export FIREMODE_EVIDENCE_S3_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y
export FIREMODE_LOG_FORMAT=json FIREMODE_LOG=info,firemode_server::hub=debug

for n in 1 2; do
  FIREMODE_LISTEN=127.0.0.1:1808$n $BIN serve --data-dir $D/node$n > node$n.log 2>&1 & PIDS+=($!)
done
for n in 1 2; do
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:1808$n/ready >/dev/null && break; sleep 0.2; done
  curl -sf http://127.0.0.1:1808$n/ready; echo
done

# The configurations of docs/deploy.md with local addresses.
python3 - <<'EOF'
import os, re
d=os.environ['D']
s=open(os.environ['DOC']).read()
ng=re.search(r"```nginx\n(.*?)```", s, re.S).group(1)
hp=re.search(r"```haproxy\n(.*?)```", s, re.S).group(1)
for a,b in [('/etc/ssl/firemode.crt',d+'/firemode.crt'),('/etc/ssl/firemode.key',d+'/firemode.key'),
            ('/var/log/nginx/firemode.log',d+'/nginx-access.log'),('listen 443 ssl;','listen 127.0.0.1:18443 ssl;'),
            ('    server 10.0.0.13:8080 max_fails=3 fail_timeout=10s;\n',''),
            ('10.0.0.11:8080','127.0.0.1:18081'),('10.0.0.12:8080','127.0.0.1:18082')]:
    assert a in ng, a
    ng=ng.replace(a,b)
open(d+'/nginx.conf','w').write("pid "+d+"/nginx.pid;\nerror_log "+d+"/nginx-error.log;\nevents {}\nhttp {\n"+ng+"}\n")
for a,b in [('/etc/haproxy/firemode.pem',d+'/firemode.pem'),('bind :443','bind 127.0.0.1:18444'),
            ('    server node3 10.0.0.13:8080 check inter 2s fall 3 rise 2\n',''),
            ('10.0.0.11:8080','127.0.0.1:18081'),('10.0.0.12:8080','127.0.0.1:18082'),('log stdout format raw local0','log stdout format raw local0\n    pidfile '+d+'/haproxy.pid')]:
    assert a in hp, a
    hp=hp.replace(a,b)
open(d+'/haproxy.cfg','w').write(hp)
EOF
nginx -c $D/nginx.conf
haproxy -f $D/haproxy.cfg > haproxy.log 2>&1 & PIDS+=($!)
sleep 1

export FIREMODE_ADMIN_PASSWORD='Harbour-lights-glow-at-9pm'
ORG=$($BIN admin --json create-org --name "Acme Fire" --admin-email admin@acme.test | jq -r .org_id)
echo "org $ORG"
head -c 300000 /dev/urandom > rand.bin
printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00' | cat - rand.bin > gauge.jpg

for API in https://127.0.0.1:18443 https://127.0.0.1:18444; do
  echo "== through $API"
  C="curl -sk"
  TOKEN=$($C -X POST $API/v1/auth/login -H 'content-type: application/json' \
    -d '{"email":"admin@acme.test","password":"Harbour-lights-glow-at-9pm"}' | jq -r .access_token)
  AUTH="authorization: Bearer $TOKEN"
  B=$($C -X POST $API/v1/buildings -H "$AUTH" -H 'content-type: application/json' \
    -d '{"name":"Collins Tower","address":"1 Collins St","building_type":"office"}' | jq -r .id)
  printf 'asset_type,location,identifier,install_date,rule_codes\nportable_extinguisher,Lobby,EXT-1,2021-03-15,AS1851-10-6M-EXT;AS1851-10-12M-EXT\n' > a.csv
  $C -X POST $API/v1/buildings/$B/assets/import -H "$AUTH" -H 'content-type: text/csv' --data-binary @a.csv; echo
  SID=$($C -X POST $API/v1/tests/sessions -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"building_id\":\"$B\",\"name\":\"Six-monthly\",\"frequency\":\"six_monthly\"}" | jq -r .id)
  SHA=$(sha256sum gauge.jpg | cut -d' ' -f1)
  EV=$($C -X POST $API/v1/evidence -H "$AUTH" -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" \
    -F session_id=$SID -F evidence_type=photo -F sha256=$SHA -F file=@gauge.jpg | jq -r .evidence_id)
  echo "evidence $EV"
  for i in 1 2 3 4; do
    got=$($C $API/v1/evidence/$EV/content -H "$AUTH" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$SHA" ] && echo "download $i ok" || { echo "download $i differs"; exit 1; }
  done
  # WebSocket upgrade with the token in the query string, as a browser does.
  code=$(curl -sk --max-time 2 -o /dev/null -w '%{http_code}' --http1.1 \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$API/v1/sync?token=$TOKEN" || true)
  echo "sync upgrade: $code"
  [ "$code" = "101" ] || exit 1
done
echo "== nginx access log (no tokens expected):"
grep -c "token=" nginx-access.log || true
tail -3 nginx-access.log
echo "== node logs: requests per node"
grep -c '"request"' node1.log node2.log
echo "== haproxy: stop node 2, requests keep working"
kill "${PIDS[2]}"; sleep 8
for i in 1 2 3 4; do curl -sk -o /dev/null -w '%{http_code} ' https://127.0.0.1:18444/ready; done; echo
grep -i "node2" haproxy.log | tail -2 || true
echo ALL OK
