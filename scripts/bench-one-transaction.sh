#!/usr/bin/env bash
# Times one large source transaction through capture: seconds from its commit until the
# warehouse holds all of it, ebis's peak RSS, and, in the same run, `psql \copy` of the
# same rows into a plain 4-column table (a raw limit to read the figure against).
#
#     cargo build --release
#     scripts/bench-one-transaction.sh DIALECT MODE WORK [ROWS] [BATCH]
#
#   DIALECT  postgres | mysql       the bureau's server: the test PostgreSQL (a database
#                                   beside the warehouse) or the test MariaDB
#   MODE     logical | changelog (postgres); binlog | changelog (mysql)
#   WORK     insert: one transaction inserting ROWS rows into an empty table
#            rename: ROWS rows loaded and snapshotted first, then one transaction
#                    renaming every one of them
#   ROWS     default 1000000; BATCH (batch_size) default 10000
#
# Needs: PostgreSQL reached by `psql -h 127.0.0.1 -U postgres` without a password (with
# wal_level = logical for logical mode) and MariaDB by `mariadb -h 127.0.0.1 -u root`
# (with a row binlog for binlog mode): what `scripts/services.sh` provides.
set -euo pipefail
export PGOPTIONS="-c client_min_messages=warning"
dialect=${1:?dialect}; mode=${2:?mode}; work=${3:?work}
rows=${4:-1000000}; batch=${5:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
ebis=${EBIS:-$root/target/release/ebis}
dir=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
pq() { local db=$1; shift; psql -X -q -At -h 127.0.0.1 -U postgres -d "$db" "$@"; }
my() { mariadb -h 127.0.0.1 -u root -N -B "$@"; }
src() { # runs SQL on the bureau database
  case $dialect in
    postgres) pq ebis_bt_src -c "$1" ;;
    mysql) my ebis_bt_src -e "$1" ;;
  esac
}
rows_sql() { # the rows $1..$2, in the dialect
  case $dialect in
    postgres) echo "SELECT s, lpad((150302000000000 + s)::text, 15, '0'), '乌海市第' || s || '号商贸有限公司', DATE '2006-03-01' FROM generate_series($1, $2) AS s" ;;
    mysql) echo "SELECT seq, LPAD(150302000000000 + seq, 15, '0'), CONCAT('乌海市第', seq, '号商贸有限公司'), '2006-03-01' FROM seq_$1_to_$2" ;;
  esac
}
case $dialect in
  postgres) url=postgres://postgres@127.0.0.1:5432/ebis_bt_src; rename="UPDATE ENT SET ENTNAME = ENTNAME || '（更名）'" ;;
  mysql) url=mysql://root@127.0.0.1:3306/ebis_bt_src; rename="UPDATE ENT SET ENTNAME = CONCAT(ENTNAME, '（更名）')" ;;
  *) echo "dialect: postgres or mysql" >&2; exit 2 ;;
esac

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
  url: postgres://postgres@127.0.0.1:5432/ebis_bt_wh
poll_interval: 200ms
batch_size: $batch
sources:
  - name: bt
    bureau: aic
    division: '150302'
    dialect: $dialect
    connection:
      url: $url
    capture:
      mode: $mode
    mappings: mappings
YAML

drop_all() {
  pq postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'ebis_bt'" >/dev/null
  pq postgres -c "DROP DATABASE IF EXISTS ebis_bt_wh WITH (FORCE)" -c "DROP DATABASE IF EXISTS ebis_bt_src WITH (FORCE)"
  my -e "DROP DATABASE IF EXISTS ebis_bt_src"
}
drop_all
pq postgres -c "CREATE DATABASE ebis_bt_wh TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'zh-Hans-CN'"
case $dialect in
  postgres) pq postgres -c "CREATE DATABASE ebis_bt_src" ;;
  mysql) my -e "CREATE DATABASE ebis_bt_src CHARACTER SET utf8mb4" ;;
esac
src "CREATE TABLE ENT (ID integer PRIMARY KEY, REGNO varchar(30), ENTNAME varchar(200), ESTDATE date)"
loaded=10
[ "$work" = rename ] && loaded=$rows
src "INSERT INTO ENT $(rows_sql 1 "$loaded")"
"$ebis" --config "$dir/pipeline.yaml" migrate >/dev/null 2>&1
"$ebis" --config "$dir/pipeline.yaml" setup-source bt --apply >/dev/null
EBIS_LOG=warn "$ebis" --config "$dir/pipeline.yaml" run 2>"$dir/run.log" &
pid=$!
live() { pq ebis_bt_wh -c "SELECT count(*) FROM exchange.aic_establishment WHERE deleted_at IS NULL $1" 2>/dev/null || echo 0; }
until [ "$(live '')" = "$loaded" ]; do sleep 0.5; done
sleep 10 # the enterprise base takes the snapshot in
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
case $work in
  insert) src "INSERT INTO ENT $(rows_sql 11 $((rows + 10)))"; want=$((rows + 10)); cond='' ;;
  rename) src "$rename"; want=$rows; cond="AND name LIKE '%（更名）'" ;;
  *) echo "work: insert or rename" >&2; exit 2 ;;
esac
t1=$(date +%s.%N)
peak=0
while :; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status"); [ "$rss" -gt "$peak" ] && peak=$rss
  [ "$(live "$cond")" = "$want" ] && break
  sleep 0.25
done
t2=$(date +%s.%N)
# The enterprise base: every enterprise of the transaction taken in (renamed, or there).
base() { pq ebis_bt_wh -c "SELECT count(*) FROM core.enterprise WHERE true $1" 2>/dev/null || echo 0; }
until [ "$(base "$cond")" -ge "$want" ]; do sleep 0.25; done
t3=$(date +%s.%N)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
kill "$pid"; wait "$pid" 2>/dev/null || true
pq ebis_bt_wh -c "\\copy (SELECT source_key::int, reg_no, name, established_on FROM exchange.aic_establishment) TO '$dir/ent.csv' CSV"
pq ebis_bt_wh -c "CREATE TABLE copy_probe (id integer PRIMARY KEY, regno varchar(30), entname varchar(200), estdate date)"
c0=$(date +%s.%N)
pq ebis_bt_wh -c "\\copy copy_probe FROM '$dir/ent.csv' CSV"
c1=$(date +%s.%N)
awk -v what="$dialect $mode, one transaction: $work of $rows rows" -v n="$rows" \
    -v commit="$(echo "$t1 - $t0" | bc)" -v lag="$(echo "$t2 - $t1" | bc)" -v based="$(echo "$t3 - $t1" | bc)" \
    -v copy="$(echo "$c1 - $c0" | bc)" -v m="$want" -v peak="$peak" -v lb="$load_before" \
    -v la="$load_after" -v b="$batch" 'BEGIN {
  printf "%s (its commit took %.1f s), batch %d\n", what, commit, b
  printf "ebis: all of it in the warehouse %.1f s after the commit = %.0f rows/s; peak RSS %d MB\n", lag, n / lag, peak / 1024
  printf "enterprise base: all of it taken in %.1f s after the commit = %.0f rows/s\n", based, n / based
  printf "raw limit, same run: psql \\copy of %d such rows into a 4-column table %.1f s = %.0f rows/s\n", m, copy, m / copy
  printf "load average before: %s  after: %s\n", lb, la
}'
echo "warnings logged by ebis: $(grep -c WARN "$dir/run.log" || true)"
drop_all
