#!/usr/bin/env bash
# Makes sure PostgreSQL and MariaDB servers are installed and running on this machine, then
# prints the `export` lines that point the tests at them (URLs without passwords, and a
# password variable where the account needs one):
#
#     eval "$(bash scripts/services.sh)"
#
# With --install-only it only installs missing server packages (what `ebis demo` needs).
#
# Installs the Debian packages when the server binaries (or promtool, which the tests run
# on the alert rules, or LibreOffice, which prints the work lists) are missing, starts a stopped
# server, and waits until each answers. Variables already set are kept. Progress goes to
# stderr; only the export lines go to stdout.
set -euo pipefail

install_only=false
[ "${1:-}" = "--install-only" ] && install_only=true

say() { printf 'services: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server mariadb-client)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# `ebis demo` starts private servers from these binaries: nothing more to do.
$install_only && exit 0

# promtool (Debian's prometheus package) checks the shipped alert rules and a live
# /metrics page in the tests.
if ! command -v promtool >/dev/null 2>&1; then
  say "installing promtool (package prometheus)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
fi

# LibreOffice (headless, no GUI) converts the exported work lists to PDF in the tests, as a
# clerk would print them; a small CJK font makes that PDF readable (not needed to pass).
if ! command -v soffice >/dev/null 2>&1; then
  say "installing LibreOffice Calc (package libreoffice-calc-nogui) and a CJK font"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libreoffice-calc-nogui fonts-wqy-microhei >&2
fi

# --- PostgreSQL -------------------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  cluster=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    say "creating PostgreSQL $version cluster"
    as_root pg_createcluster "$version" main >&2
    cluster=$version
  fi
  say "starting PostgreSQL $cluster"
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start >&2 || true
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }

# Logical-decoding capture's tests read a replication slot: the server must log logical
# WAL. A server without it is set so (ALTER SYSTEM) and restarted.
pg_admin() { psql -X -q -At -h 127.0.0.1 -U postgres -d postgres "$@" 2>/dev/null || as_root runuser -u postgres -- psql -X -q -At "$@"; }
if [ "$(pg_admin -c 'show wal_level')" != logical ]; then
  cluster=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  say "restarting PostgreSQL $cluster with wal_level = logical"
  pg_admin -c 'alter system set wal_level = logical' >&2
  pg_admin -c 'alter system set max_replication_slots = 40' >&2
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main restart >&2
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  [ "$(pg_admin -c 'show wal_level')" = logical ] || { say "PostgreSQL runs without wal_level = logical; logical capture tests would fail"; exit 1; }
fi

# TLS tests connect to both servers encrypted, checking their certificate against a test
# CA made here once (openssl): a certificate for the name `localhost` only, so a test can
# also see a name mismatch (connecting to 127.0.0.1).
tls_dir=/var/lib/ebis-test-tls
if [ ! -s "$tls_dir/server.pem" ]; then
  say "making a test CA and a server certificate for localhost in $tls_dir"
  as_root mkdir -p "$tls_dir"
  as_root openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ebis test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tls_dir/ca.key" -out "$tls_dir/ca.pem" >/dev/null 2>&1
  as_root openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    | as_root tee "$tls_dir/server.ext" >/dev/null
  as_root openssl x509 -req -in "$tls_dir/server.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
    -CAcreateserial -days 3650 -extfile "$tls_dir/server.ext" -out "$tls_dir/server.pem" >/dev/null 2>&1
  for who in postgres mysql; do
    as_root cp "$tls_dir/server.key" "$tls_dir/$who.key"
    as_root chown "$who" "$tls_dir/$who.key" 2>/dev/null || true
    as_root chmod 0600 "$tls_dir/$who.key"
  done
  as_root chmod 0644 "$tls_dir/ca.pem" "$tls_dir/server.pem"
  as_root chmod 0755 "$tls_dir"
fi
# (Debian turns TLS on with its own snakeoil certificate: the test one replaces it.)
if [ "$(pg_admin -c 'show ssl')" != on ] || [ "$(pg_admin -c 'show ssl_cert_file')" != "$tls_dir/server.pem" ]; then
  say "turning TLS on in PostgreSQL (test certificate)"
  pg_admin -c "alter system set ssl_cert_file = '$tls_dir/server.pem'" >&2
  pg_admin -c "alter system set ssl_key_file = '$tls_dir/postgres.key'" >&2
  pg_admin -c "alter system set ssl = on" >&2
  pg_admin -c 'select pg_reload_conf()' >/dev/null
  for _ in $(seq 1 20); do [ "$(pg_admin -c 'show ssl_cert_file')" = "$tls_dir/server.pem" ] && break; sleep 0.25; done
  [ "$(pg_admin -c 'show ssl')" = on ] || { say "PostgreSQL did not turn TLS on; TLS tests would fail"; exit 1; }
fi

if [ -z "${EBIS_TEST_PG_URL:-}" ]; then
  if psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
    EBIS_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    # A fresh Debian install: password auth on TCP. Give a test superuser a password.
    say "creating PostgreSQL role ebis_test"
    as_root runuser -u postgres -- psql -X -q -c \
      "do \$\$ begin if not exists (select from pg_roles where rolname = 'ebis_test') then create role ebis_test superuser login password 'ebis_test'; end if; end \$\$" >&2
    EBIS_TEST_PG_URL="postgres://ebis_test@127.0.0.1:5432/postgres"
    EBIS_TEST_PG_PASSWORD=ebis_test
  fi
fi

# --- MariaDB ----------------------------------------------------------------------------
mysql_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1 || mariadb-admin ping >/dev/null 2>&1; }
if ! mysql_up; then
  say "starting MariaDB"
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >&2
  for _ in $(seq 1 60); do mysql_up && break; sleep 0.5; done
fi
mysql_up || { say "MariaDB does not answer"; exit 1; }

# Binlog capture's tests read the server's binary log: row-based, full row images, with
# column names. A server started without it is restarted with it (command-line options,
# so the machine's own configuration files stay as they are).
as_admin() { mariadb -N -B -u root "$@" 2>/dev/null || mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -N -B -u root "$@"; }
binlog_ready() {
  [ "$(as_admin -e "select @@log_bin and @@binlog_format = 'ROW' and @@binlog_row_image = 'FULL' and @@binlog_row_metadata = 'FULL'" 2>/dev/null)" = 1 ]
}
tls_ready() { [ "$(as_admin -e "select @@have_ssl" 2>/dev/null)" = YES ]; }
if ! binlog_ready || ! tls_ready; then
  say "restarting MariaDB with its binary log on (ROW format, FULL metadata) and TLS (test certificate)"
  as_root mariadb-admin -u root shutdown >&2 || as_root mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root shutdown >&2
  for _ in $(seq 1 60); do mysql_up || break; sleep 0.5; done
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
    --log-bin=mariadb-bin --server-id=1 --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --max-binlog-size=64M --binlog-expire-logs-seconds=86400 \
    --ssl-ca="$tls_dir/ca.pem" --ssl-cert="$tls_dir/server.pem" --ssl-key="$tls_dir/mysql.key" >&2
  for _ in $(seq 1 60); do mysql_up && break; sleep 0.5; done
  mysql_up || { say "MariaDB does not answer after its restart"; exit 1; }
  binlog_ready || { say "MariaDB runs without a row-based binary log; binlog tests would fail"; exit 1; }
  tls_ready || { say "MariaDB runs without TLS; TLS tests would fail"; exit 1; }
fi

if [ -z "${EBIS_TEST_MYSQL_URL:-}" ]; then
  if mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; then
    EBIS_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306/"
  else
    say "creating MariaDB user ebis_test"
    as_root mariadb -e "create user if not exists 'ebis_test'@'127.0.0.1' identified by 'ebis_test'; grant all on *.* to 'ebis_test'@'127.0.0.1' with grant option;" >&2
    EBIS_TEST_MYSQL_URL="mysql://ebis_test@127.0.0.1:3306/"
    EBIS_TEST_MYSQL_PASSWORD=ebis_test
  fi
fi

# URLs never carry passwords (they end up in pipeline configs, which refuse them); a
# password travels in its own variable.
printf 'export EBIS_TEST_PG_URL=%q\n' "$EBIS_TEST_PG_URL"
printf 'export EBIS_TEST_MYSQL_URL=%q\n' "$EBIS_TEST_MYSQL_URL"
printf 'export EBIS_TEST_TLS_CA=%q\n' "$tls_dir/ca.pem"
[ -n "${EBIS_TEST_PG_PASSWORD:-}" ] && printf 'export EBIS_TEST_PG_PASSWORD=%q\n' "$EBIS_TEST_PG_PASSWORD"
[ -n "${EBIS_TEST_MYSQL_PASSWORD:-}" ] && printf 'export EBIS_TEST_MYSQL_PASSWORD=%q\n' "$EBIS_TEST_MYSQL_PASSWORD"
exit 0
