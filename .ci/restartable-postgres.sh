#!/usr/bin/env bash
# Starts (or stops) a private PostgreSQL cluster that the database-restart test may
# stop and start at will, without touching the machine's shared server.
#   .ci/restartable-postgres.sh start   → prints the environment for the test
#   .ci/restartable-postgres.sh stop
set -euo pipefail
DATA=/tmp/latchkey-restart-pg
PORT=55432
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ] || { echo "no PostgreSQL binaries" >&2; exit 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-start}" in
  start)
    as_postgres "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DATA" && mkdir -p "$DATA" && chown postgres "$DATA" 2>/dev/null || true
    as_postgres "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
    as_postgres "$BIN/pg_ctl" -D "$DATA" -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1" -l "$DATA/log" -w start >/dev/null
    echo "export RESTART_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    echo "export RESTART_PG_CTL='$(cd "$(dirname "$0")" && pwd)/$(basename "$0")'"
    ;;
  pause) as_postgres "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null ;;
  resume) as_postgres "$BIN/pg_ctl" -D "$DATA" -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1" -l "$DATA/log" -w start >/dev/null ;;
  stop) as_postgres "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$DATA" ;;
esac
