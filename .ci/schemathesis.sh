#!/usr/bin/env bash
# The contract run: schemathesis with every check against a running server, as a new user
# would run it — the coverage, fuzzing and stateful phases, each against a fresh server and
# database, each with a fixed seed and a random one. Any finding fails the run.
# Configuration and its few exceptions, each with its reason: .ci/schemathesis/.
#   BIN=target/debug             where the latchkey binary is (it is never built here)
#   SCHEMATHESIS_MAX_EXAMPLES=25 examples per operation and phase
#   SCHEMATHESIS_SEED=<n>        the random seed (default: a new one, printed)
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
ROOT=$PWD
LATCHKEY="$ROOT/${BIN:-target/debug}/latchkey"
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
RANDOM_SEED=${SCHEMATHESIS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
[ -x "$LATCHKEY" ] || { echo "FAIL: $LATCHKEY is missing (cargo build -p latchkey-server)" >&2; exit 1; }
# Python 3.12 where the machine has it: under CPython 3.11.7 hypothesis' lambda
# descriptions hit "AST constructor recursion depth mismatch" (a CPython bug) mid-run.
PYTHON=$(ls "$HOME"/.pyenv/versions/3.12*/bin/python3 2>/dev/null | head -n 1 || true)
PYTHON=${PYTHON:-$(command -v python3.12 || command -v python3)}
VENV="$HOME/.cache/latchkey-schemathesis/venv-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ -x "$VENV/bin/schemathesis" ] || {
  "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==4.32.5" requests
}
echo "schemathesis $("$VENV/bin/schemathesis" --version | head -n 1) on $("$PYTHON" --version)"
export LATCHKEY

SERVER_PID=
WORK=
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap stop_server EXIT

FAILED=0
for seed in 1 "$RANDOM_SEED"; do
  for phase in coverage fuzzing stateful; do
    WORK=$(mktemp -d)
    # A fixture the run cannot starve: every rate limit relaxed and the lockout off, so
    # fuzzed logins never lock the admin out or spend the buckets the checks rely on.
    for bucket in LOGIN REGISTER TOKEN REFRESH TOTP PASSWORD_CHANGE MAIL USERNAME; do
      export "LATCHKEY_RATE_LIMITS__$bucket={per_minute=1000000,burst=1000000}"
    done
    export LATCHKEY_LOCKOUT__THRESHOLD=0
    start_latchkey_for_clients "$LATCHKEY" "$WORK"
    echo "--- schemathesis: phase $phase, seed $seed, $MAX_EXAMPLES examples per operation"
    if ! (cd .ci/schemathesis && SCHEMATHESIS_HOOKS=hooks "$VENV/bin/schemathesis" --config-file schemathesis.toml \
      run "$API_URL/openapi.json" --checks all --phases "$phase" --seed "$seed" \
      --max-examples "$MAX_EXAMPLES" --workers 2 --no-color 2>&1 |
      grep -v "^\s*$" | tee -a "$ROOT/schemathesis.log" | tail -n 60); then
      FAILED=$((FAILED + 1))
    fi
    stop_server
  done
done
echo "schemathesis: $FAILED failing runs"
[ "$FAILED" -eq 0 ]
