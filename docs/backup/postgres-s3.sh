#!/usr/bin/env bash
# Back up or restore FireMode on PostgreSQL with evidence in an S3 bucket (docs/operations.md,
# "Backups"). The zero-setup deployment (SQLite, local evidence) has `firemode admin backup`.
#
#   postgres-s3.sh backup  <empty folder>
#   postgres-s3.sh restore <backup folder>     # into an empty database and bucket
#
# Needs pg_dump/pg_restore/psql of the server's major version, the AWS CLI (`aws`), and:
#   DATABASE_URL                     postgres://user:password@host/db
#   FIREMODE_EVIDENCE_S3_BUCKET      the evidence bucket
#   FIREMODE_EVIDENCE_S3_ENDPOINT    optional, for an S3-compatible service
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (, AWS_REGION) as for the server
# The secrets (FIREMODE_JWT_SECRET, FIREMODE_PII_KEYS) are configuration, not data: keep them
# with the backup wherever you keep configuration. Without the PII keys the names in the
# database are unreadable.
set -euo pipefail

usage() { echo "usage: $0 backup|restore <folder>" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2
: "${DATABASE_URL:?set DATABASE_URL}"
: "${FIREMODE_EVIDENCE_S3_BUCKET:?set FIREMODE_EVIDENCE_S3_BUCKET}"
s3=(aws s3)
[ -n "${FIREMODE_EVIDENCE_S3_ENDPOINT:-}" ] && s3+=(--endpoint-url "$FIREMODE_EVIDENCE_S3_ENDPOINT")
bucket="s3://$FIREMODE_EVIDENCE_S3_BUCKET"

case "$cmd" in
backup)
  mkdir -p "$dir"
  [ -z "$(ls -A "$dir")" ] || { echo "$dir is not empty: back up into a new folder" >&2; exit 1; }
  # 1. The database: pg_dump reads one snapshot while the nodes keep writing.
  started=$(psql "$DATABASE_URL" -Atc "SELECT now()")
  pg_dump --format=custom --no-owner --file="$dir/firemode.dump" "$DATABASE_URL"
  # 2. Then the evidence: objects are stored before their records and never change or go
  #    away, so every record in the dump has its object in a copy taken afterwards.
  "${s3[@]}" sync --only-show-errors "$bucket/" "$dir/evidence/"
  # 3. Check: every object a record made before the dump started refers to was copied.
  missing=0
  while read -r sha; do
    [ -f "$dir/evidence/sha256/${sha:0:2}/$sha" ] || { echo "missing object $sha" >&2; missing=1; }
  done < <(psql "$DATABASE_URL" -Atc \
    "SELECT DISTINCT encode(sha256, 'hex') FROM evidence WHERE created_at < '$started'")
  [ "$missing" -eq 0 ] || { echo "the evidence copy is incomplete" >&2; exit 1; }
  printf '{"format":1,"database":"postgres","created_at":"%s"}\n' "$started" >"$dir/manifest.json"
  echo "backed up into $dir (database as of $started)"
  ;;
restore)
  [ -f "$dir/firemode.dump" ] || { echo "$dir has no firemode.dump" >&2; exit 1; }
  tables=$(psql "$DATABASE_URL" -Atc \
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
  [ "$tables" = 0 ] || { echo "the database is not empty: restore into a new database" >&2; exit 1; }
  # Evidence first, so that no restored record is served before its object is back.
  "${s3[@]}" sync --only-show-errors "$dir/evidence/" "$bucket/"
  pg_restore --no-owner --exit-on-error --dbname="$DATABASE_URL" "$dir/firemode.dump"
  echo "restored $dir; start the nodes with the same FIREMODE_JWT_SECRET and FIREMODE_PII_KEYS"
  ;;
*) usage ;;
esac
