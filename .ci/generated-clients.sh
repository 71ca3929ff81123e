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
. .ci/lib.sh
SERVER_PID=
trap 'if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi' EXIT
start_latchkey_for_clients "$BIN/latchkey" "$WORK"

echo "--- Python client (openapi-python-client)"
python3 -m openapi_python_client generate --path openapi/openapi.json --output-path "$WORK/python-client" --overwrite >/dev/null
CLIENT_DIR="$WORK/python-client" python3 .ci/python_client_smoke.py

echo "--- TypeScript client (openapi-typescript + openapi-fetch, strict tsc)"
cd examples/spa
npm run --silent generate >/dev/null
npm run --silent test:client
