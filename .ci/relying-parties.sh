#!/usr/bin/env bash
# Third-party relying parties against a real Latchkey, each with an unmodified public
# client library (examples/relying-party/):
#   - openid-client (panva, v6) in Debian's Chromium through playwright-core: the code
#     flow with PKCE through the hosted sign-in, second-factor and consent pages, SSO to a
#     second relying party, prompt=login/none, max_age, keyboard-only sign-in, axe-core,
#     RP-initiated logout (buildEndSessionUrl) and back-channel logout tokens verified with jose,
#     the account page (sessions, password change, TOTP enrolment, axe-core);
#     password reset by mail through a real SMTP server on loopback (smtp-server, mailparser);
#     DPoP (RFC 9449) with openid-client's getDPoPHandle — client_credentials, the code flow
#     and refresh, the nonce dance — and oauth4webapi's validateJwtAccessToken(requireDPoP)
#     as a resource server (tests/dpop.test.mjs);
#   - Authlib (Python, no browser): discovery metadata, the id_token and at_hash.
# Installs what it needs (chromium from Debian, npm ci, Authlib into a venv cached under
# ~/.cache/latchkey-authlib/) and never builds the server.
#   BIN=target/debug        where the latchkey binary is (or SERVER_BIN=path/to/latchkey)
# Ends with `relying parties: N passed, M failed`; exits non-zero if a suite failed or
# anything could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. .ci/lib.sh
export SERVER_BIN=${SERVER_BIN:-$ROOT/${BIN:-target/debug}/latchkey}
PASSED=0
FAILED=0
FAILURES=()
STAGE="checking for the latchkey binary"

finish() {
  local rc=$?
  trap - EXIT
  set +e
  count_early_end "$rc"
  for f in "${FAILURES[@]}"; do echo "FAIL $f"; done
  echo "relying parties: $PASSED passed, $FAILED failed"
  if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then exit 1; fi
}
trap finish EXIT

suite() { # NAME COMMAND...: runs one suite; its failure is counted, the others go on
  local name=$1 began rc=0
  shift
  began=$(date +%s)
  echo "--- $name"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1))
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name (exit $rc)")
  fi
  echo "--- $name: $(($(date +%s) - began)) s"
}

if [ ! -x "$SERVER_BIN" ]; then
  echo "FAIL: $SERVER_BIN is missing: build it first (cargo build -p latchkey-server); this script does not build it" >&2
  exit 1
fi

STAGE="installing Debian's chromium"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

STAGE="npm ci in examples/relying-party"
(cd examples/relying-party && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)

# Python 3.12 from pyenv where the machine has it (as .ci/schemathesis.sh), else the
# system's; Debian's python3 without ensurepip gets python3-venv from apt.
STAGE="preparing the Authlib venv"
PYTHON=$(ls "$HOME"/.pyenv/versions/3.12*/bin/python3 2>/dev/null | head -n 1 || true)
PYTHON=${PYTHON:-$(command -v python3.12 || command -v python3)}
VENV="$HOME/.cache/latchkey-authlib/venv-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
REQUIREMENTS=examples/relying-party/python/requirements.txt
if ! cmp -s "$REQUIREMENTS" "$VENV/requirements.txt" || ! "$VENV/bin/python" -c 'import authlib, requests' 2>/dev/null; then
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/requirements.txt"
fi

STAGE="running the suites"
suite "openid-client in Chromium (node --test)" \
  bash -c 'cd examples/relying-party && node --test --test-concurrency=1 --test-reporter=spec tests/'
echo "screenshots: examples/relying-party/artifacts/"
suite "Authlib (discovery metadata, id_token, at_hash)" \
  "$VENV/bin/python" examples/relying-party/python/authlib_check.py
