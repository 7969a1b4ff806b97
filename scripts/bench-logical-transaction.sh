#!/usr/bin/env bash
# Times one source transaction of N rows captured by logical decoding (a PostgreSQL
# bureau): seconds from its commit until the warehouse holds every row, ebis's peak RSS,
# and, in the same run, `psql \copy` of the same rows into a plain 4-column table (a raw
# limit to read the figure against). The bureau and the warehouse are databases on one
# server; the script drops and makes them.
#
#     cargo build --release && scripts/bench-logical-transaction.sh [ROWS] [BATCH]
#
# Needs: a PostgreSQL with wal_level = logical that `psql -h HOST -U USER` reaches
# without a password (PGHOST/PGUSER/PGPORT, default 127.0.0.1/postgres/5432).
set -euo pipefail
rows=${1:-1000000}
batch=${2:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
ebis=${EBIS:-$root/target/release/ebis}
host=${PGHOST:-127.0.0.1}; user=${PGUSER:-postgres}; port=${PGPORT:-5432}
dir=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
q() { local db=$1; shift; psql -X -q -At -h "$host" -p "$port" -U "$user" -d "$db" "$@"; }

mkdir -p "$dir/mappings"
cat > "$dir/mappings/aic_establishment.yaml" <<'YAML'
record_kind: aic_establishment
source:
  table: ENT
  key: [ID]
fields:
  reg_no: {column: REGNO}
  name: {column: ENTNAME}
  established_on: {column: ESTDATE}
YAML
cat > "$dir/pipeline.yaml" <<YAML
warehouse:
  url: postgres://$user@$host:$port/ebis_lt_wh
poll_interval: 200ms
batch_size: $batch
sources:
  - name: lt_pg
    bureau: aic
    division: '150302'
    dialect: postgres
    connection:
      url: postgres://$user@$host:$port/ebis_lt_src
    capture:
      mode: logical
    mappings: mappings
YAML
rows_sql() { echo "SELECT s, lpad((150302000000000 + s)::text, 15, '0'), '乌海市第' || s || '号商贸有限公司', DATE '2006-03-01' FROM generate_series($1, $2) AS s"; }

q postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'ebis_lt_pg'" >/dev/null
q postgres -c "DROP DATABASE IF EXISTS ebis_lt_src WITH (FORCE)" -c "DROP DATABASE IF EXISTS ebis_lt_wh WITH (FORCE)"
q postgres -c "CREATE DATABASE ebis_lt_src" -c "CREATE DATABASE ebis_lt_wh"
q ebis_lt_src -c "CREATE TABLE ENT (ID integer PRIMARY KEY, REGNO varchar(30), ENTNAME varchar(200), ESTDATE date)" \
  -c "INSERT INTO ENT $(rows_sql 1 10)"
"$ebis" --config "$dir/pipeline.yaml" migrate >/dev/null 2>&1
"$ebis" --config "$dir/pipeline.yaml" setup-source lt_pg --apply >/dev/null
EBIS_LOG=warn "$ebis" --config "$dir/pipeline.yaml" run 2>"$dir/run.log" &
pid=$!
until [ "$(q ebis_lt_wh -c 'SELECT count(*) FROM exchange.aic_establishment' 2>/dev/null)" = 10 ]; do sleep 0.2; done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
q ebis_lt_src -c "INSERT INTO ENT $(rows_sql 11 $((rows + 10)))"
t1=$(date +%s.%N)
peak=0
while :; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status"); [ "$rss" -gt "$peak" ] && peak=$rss
  [ "$(q ebis_lt_wh -c 'SELECT count(*) FROM exchange.aic_establishment')" = $((rows + 10)) ] && break
  sleep 0.25
done
t2=$(date +%s.%N)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
kill "$pid"; wait "$pid" 2>/dev/null || true
q ebis_lt_src -c "\\copy (SELECT * FROM ENT) TO '$dir/ent.csv' CSV"
q ebis_lt_wh -c "CREATE TABLE copy_probe (id integer PRIMARY KEY, regno varchar(30), entname varchar(200), estdate date)"
c0=$(date +%s.%N)
q ebis_lt_wh -c "\\copy copy_probe FROM '$dir/ent.csv' CSV"
c1=$(date +%s.%N)
awk -v n="$rows" -v commit="$(echo "$t1 - $t0" | bc)" -v lag="$(echo "$t2 - $t1" | bc)" \
    -v copy="$(echo "$c1 - $c0" | bc)" -v peak="$peak" -v lb="$load_before" -v la="$load_after" -v b="$batch" 'BEGIN {
  printf "one transaction of %d rows (insert and commit %.1f s), batch %d\n", n, commit, b
  printf "ebis: every row in the warehouse %.1f s after the commit = %.0f rows/s; peak RSS %d MB\n", lag, n / lag, peak / 1024
  printf "raw limit, same run: psql \\copy of those rows into a 4-column table %.1f s = %.0f rows/s\n", copy, (n + 10) / copy
  printf "load average before: %s  after: %s\n", lb, la
}'
grep -c WARN "$dir/run.log" | xargs -I{} echo "warnings logged by ebis: {}"
q postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'ebis_lt_pg'" >/dev/null
q postgres -c "DROP DATABASE ebis_lt_src WITH (FORCE)" -c "DROP DATABASE ebis_lt_wh WITH (FORCE)"
