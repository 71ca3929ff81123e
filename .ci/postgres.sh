#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests, from Debian's packages: installs them when the
# machine has none, then starts a throw-away cluster on a free loopback port (trust auth,
# owned by the `postgres` user), so no test depends on a server the machine happens to run.
#   .ci/postgres.sh start NAME    → prints `export PG_URL=…` for the cluster NAME
#                                   (PG_DURABLE=1: fsync and synchronous commits stay on)
#   .ci/postgres.sh pause NAME    → stops it, keeping its data (the restart test)
#   .ci/postgres.sh resume NAME   → starts it again on the same port
#   .ci/postgres.sh stop NAME     → stops it and deletes its data
# Every failure prints its reason and exits non-zero.
set -euo pipefail
ACTION=${1:?usage: postgres.sh start|pause|resume|stop NAME}
NAME=${2:?usage: postgres.sh start|pause|resume|stop NAME}
DATA=/tmp/latchkey-pg-$NAME

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN=$(find_bin)
if [ -z "$BIN" ] || [ ! -x "$BIN/pg_ctl" ]; then
  [ "$ACTION" = start ] || { echo "postgres.sh: no PostgreSQL binaries" >&2; exit 1; }
  echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
  [ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ] || { echo "postgres.sh: pg_ctl missing after the install" >&2; exit 1; }
fi
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
launch() {
  local port
  port=$(cat "$DATA/port")
  if ! as_postgres "$BIN/pg_ctl" -D "$DATA/db" -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300" \
    -l "$DATA/log" -w -t 60 start >/dev/null; then
    echo "postgres.sh: the cluster $NAME did not start; its log:" >&2
    cat "$DATA/log" >&2 || true
    exit 1
  fi
}

case "$ACTION" in
  start)
    [ -d "$DATA/db" ] && as_postgres "$BIN/pg_ctl" -D "$DATA/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DATA"
    mkdir -p "$DATA/db"
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$DATA/port"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$DATA"; fi
    as_postgres "$BIN/initdb" -D "$DATA/db" -A trust -U postgres --no-sync >"$DATA/initdb.log" 2>&1 ||
      { echo "postgres.sh: initdb failed:" >&2; cat "$DATA/initdb.log" >&2; exit 1; }
    # Tests create and drop hundreds of databases: durability of this cluster is not tested.
    # PG_DURABLE=1 keeps PostgreSQL's defaults (the benchmark measures durable commits).
    if [ "${PG_DURABLE:-}" != 1 ]; then
      printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$DATA/db/postgresql.conf"
    fi
    launch
    echo "export PG_URL=postgres://postgres@127.0.0.1:$(cat "$DATA/port")/postgres"
    ;;
  pause) as_postgres "$BIN/pg_ctl" -D "$DATA/db" -m fast -w stop >/dev/null ;;
  resume) launch ;;
  stop)
    [ -d "$DATA/db" ] && as_postgres "$BIN/pg_ctl" -D "$DATA/db" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DATA"
    ;;
  *) echo "postgres.sh: unknown action $ACTION" >&2; exit 2 ;;
esac
