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
