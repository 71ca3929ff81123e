# Shell helpers shared by the CI scripts (sourced, not run).

# wait_ready BASE_URL LOG: waits up to 20 s for /readyz to answer 200; on a time-out prints
# the server's log and fails, so a server that never came up cannot pass for a quiet one.
wait_ready() {
  local base=$1 log=$2
  for _ in $(seq 1 200); do
    curl -fs "$base/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the server at $base was not ready within 20 s; its log:" >&2
  cat "$log" >&2 || true
  return 1
}

# free_port: prints a TCP port on loopback that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_latchkey_for_clients LATCHKEY WORK: starts the LATCHKEY binary on a free loopback
# port with a SQLite database in WORK and an admin account, for the generated-client smoke
# tests. Exports API_URL, ADMIN_USERNAME and ADMIN_PASSWORD, sets SERVER_PID and waits until
# the server is ready (its log is WORK/server.log).
start_latchkey_for_clients() {
  local latchkey=$1 work=$2 port
  port=$(free_port)
  export API_URL="http://127.0.0.1:$port"
  export LATCHKEY_LISTEN="127.0.0.1:$port" LATCHKEY_PUBLIC_URL="$API_URL"
  export LATCHKEY_DATABASE_URL="sqlite://$work/db.sqlite?mode=rwc" LATCHKEY_MASTER_KEY_FILE="$work/master.key"
  export LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB=4096 LATCHKEY_PASSWORDS__ARGON2_ITERATIONS=1 RUST_LOG=warn
  export ADMIN_USERNAME=admin ADMIN_PASSWORD="generated clients admin"
  echo "$ADMIN_PASSWORD" | "$latchkey" user create --username admin --role admin >/dev/null
  "$latchkey" serve >"$work/server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$API_URL" "$work/server.log"
}

# count_early_end RC: in a script's EXIT trap, counts an early end (RC is not 0) as one
# failure naming the stage it was in ($STAGE; the count is $FAILED).
count_early_end() {
  if [ "$1" -ne 0 ]; then
    echo "FAIL could not run: $STAGE (exit $1)"
    FAILED=$((FAILED + 1))
  fi
}
