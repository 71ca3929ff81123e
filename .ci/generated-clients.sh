#!/usr/bin/env bash
# Validates openapi/openapi.json, generates a Python client (openapi-python-client) and
# a TypeScript one (openapi-typescript + openapi-fetch) from it, and runs a smoke test
# with each against a running server. Generated code is never edited.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check openapi-python-client openapi-spec-validator
python3 -m openapi_spec_validator openapi/openapi.json

BIN=${BIN:-target/debug}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export API_URL="http://127.0.0.1:$PORT"
export LATCHKEY_LISTEN="127.0.0.1:$PORT" LATCHKEY_PUBLIC_URL="$API_URL"
export LATCHKEY_DATABASE_URL="sqlite://$WORK/db.sqlite?mode=rwc" LATCHKEY_MASTER_KEY_FILE="$WORK/master.key"
export LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB=4096 LATCHKEY_PASSWORDS__ARGON2_ITERATIONS=1 RUST_LOG=warn
export ADMIN_USERNAME=admin ADMIN_PASSWORD="generated clients admin"
echo "$ADMIN_PASSWORD" | "$BIN/latchkey" user create --username admin --role admin >/dev/null
"$BIN/latchkey" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
. .ci/lib.sh
wait_ready "$API_URL" "$WORK/server.log"

echo "--- Python client (openapi-python-client)"
python3 -m openapi_python_client generate --path openapi/openapi.json --output-path "$WORK/python-client" --overwrite >/dev/null
CLIENT_DIR="$WORK/python-client" python3 .ci/python_client_smoke.py

echo "--- TypeScript client (openapi-typescript + openapi-fetch, strict tsc)"
cd examples/spa
npm run --silent generate >/dev/null
npm run --silent test:client
