#!/usr/bin/env bash
# Third-party resource servers (examples/resource-servers/*) against a real Latchkey. Each
# example verifies Latchkey's access tokens with its ecosystem's usual library, knowing only
# the issuer URL. This script installs and starts each one, then sends it real tokens (a
# reader, a user without the role, a client_credentials service), tokens it signs itself
# with a key imported into Latchkey (expired, wrong aud, wrong iss, typ JWT), forgeries
# (alg none, HS256 keyed with the public key, a foreign key under Latchkey's kid), and,
# after a key rotation and with no restart, a token signed by the new key. The node example
# also meets DPoP (RFC 9449): a client_credentials token bound to a key of ours (proofs made
# by forge_tokens.py, the server's nonce answered) is taken with a proof for its URL, and
# refused as Bearer, without a proof, replayed, or with a proof for another URL, another
# token (ath) or by another key.
# Prints a line per failed check and ends with `resource servers: N passed, M failed`;
# exits non-zero if a check failed or anything could not run.
#   EXAMPLES="node python go java rust"  which examples (default: all five)
#   BIN=target/debug                 where the latchkey binary is (it is never built here)
# Package caches live under ~/.cache (npm, pip, go-mod, go-build, maven, the Rust example's
# target directory), so a second run downloads and rebuilds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. .ci/lib.sh
LATCHKEY="$ROOT/${BIN:-target/debug}/latchkey"
EXAMPLES=${EXAMPLES:-node python go java rust}
CACHE=${RESOURCE_SERVERS_CACHE:-$HOME/.cache}
STATE="$CACHE/latchkey-resource-servers"
WORK=$(mktemp -d)
PASSED=0
FAILED=0
STAGE="checking for the latchkey binary"
PIDS=()
declare -A PORT_OF=() PID_OF=() LOG_OF=() BROKEN=()

finish() {
  local rc=$?
  trap - EXIT
  set +e
  count_early_end "$rc"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  for ex in "${!BROKEN[@]}"; do
    [ -f "${LOG_OF[$ex]:-}" ] || continue
    echo "--- last lines of the $ex example's log:"
    tail -n 15 "${LOG_OF[$ex]}"
  done
  rm -rf "$WORK"
  echo "resource servers: $PASSED passed, $FAILED failed"
  if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then exit 1; fi
}
trap finish EXIT

fail() { # EXAMPLE MESSAGE: one failed check
  FAILED=$((FAILED + 1))
  BROKEN[$1]=1
  echo "FAIL $1: $2"
}


json_field() { # FIELD < JSON
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

if [ ! -x "$LATCHKEY" ]; then
  echo "FAIL: $LATCHKEY is missing: build it first (cargo build -p latchkey-server); this script does not build it" >&2
  exit 1
fi

# ---- the token forger's own venv (PyJWT + cryptography) ----
STAGE="installing the token forger's Python packages"
mkdir -p "$STATE"
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
venv() { # DIR: a working venv at DIR
  "$1/bin/python" -c '' 2>/dev/null || { rm -rf "$1" && python3 -m venv "$1"; }
}
venv "$STATE/tools-venv"
"$STATE/tools-venv/bin/pip" install -q PyJWT==2.15.1 cryptography==50.0.2
forge() { "$STATE/tools-venv/bin/python" "$ROOT/.ci/forge_tokens.py" "$@"; }

# ---- install / build each example; one that cannot is a failure, the rest go on ----
install_node() {
  (cd examples/resource-servers/node &&
    npm ci --cache "$CACHE/npm" --prefer-offline --no-audit --no-fund --loglevel=error)
}
install_python() {
  venv "$STATE/python-venv" &&
    "$STATE/python-venv/bin/pip" install -q -r examples/resource-servers/python/requirements.txt
}
install_go() {
  (cd examples/resource-servers/go &&
    GOMODCACHE="$CACHE/go-mod" GOCACHE="$CACHE/go-build" GOFLAGS="-mod=readonly -modcacherw" \
      GOTOOLCHAIN=local go build -o "$WORK/go-resource-server" .)
}
install_java() {
  (cd examples/resource-servers/java &&
    mvn -B -q -Dmaven.repo.local="$CACHE/maven/repository" -DskipTests package)
}
install_rust() {
  (cd examples/resource-servers/rust &&
    CARGO_TARGET_DIR="$CACHE/latchkey-rust-resource-server" cargo build -q --release --locked)
}
# start_X: runs the example in the foreground of a subshell (exec, so the pid is its own).
start_node() { cd examples/resource-servers/node && exec node server.js; }
start_python() { cd examples/resource-servers/python && exec "$STATE/python-venv/bin/python" app.py; }
start_go() { exec "$WORK/go-resource-server"; }
start_java() { exec java -XX:TieredStopAtLevel=1 -jar examples/resource-servers/java/target/resource-server.jar; }
start_rust() { exec "$CACHE/latchkey-rust-resource-server/release/reports-resource-server"; }

READY=()
for ex in $EXAMPLES; do
  case $ex in node | python | go | java | rust) ;; *) fail "$ex" "no such example"; continue ;; esac
  STAGE="installing the $ex example"
  LOG_OF[$ex]="$WORK/$ex.log"
  begin=$(date +%s)
  if "install_$ex" >"$WORK/$ex-install.log" 2>&1; then
    echo "installed $ex in $(($(date +%s) - begin)) s"
    READY+=("$ex")
  else
    cat "$WORK/$ex-install.log"
    fail "$ex" "could not install or build it"
  fi
done

# ---- Latchkey, with a test key of ours imported and signing ----
STAGE="starting latchkey"
LK_PORT=$(free_port)
ISSUER="http://127.0.0.1:$LK_PORT"
export LATCHKEY_LISTEN="127.0.0.1:$LK_PORT" LATCHKEY_PUBLIC_URL="$ISSUER"
export LATCHKEY_DATABASE_URL="sqlite://$WORK/db.sqlite?mode=rwc" LATCHKEY_MASTER_KEY_FILE="$WORK/master.key"
export LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB=4096 LATCHKEY_PASSWORDS__ARGON2_ITERATIONS=1 RUST_LOG=warn
export LATCHKEY_KEYS__JWKS_MAX_AGE_SECS=1 LATCHKEY_KEYS__POLL_INTERVAL_SECS=1
echo "admin password 123" | "$LATCHKEY" user create --username admin --role admin >/dev/null
"$LATCHKEY" serve >"$WORK/latchkey.log" 2>&1 &
PIDS+=($!)
LOG_OF[latchkey]="$WORK/latchkey.log"
wait_ready "$ISSUER" "$WORK/latchkey.log"

password_token() { # USERNAME PASSWORD
  curl -sS --fail-with-body "$ISSUER/oauth2/token" -d grant_type=password -d client_id=latchkey-admin \
    --data-urlencode "username=$1" --data-urlencode "password=$2" | json_field access_token
}
api() { # METHOD PATH [JSON]: as the admin, fails on a non-2xx answer
  local args=(-sS --fail-with-body -X "$1" "$ISSUER$2" -H "Authorization: Bearer $ADMIN")
  [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data "$3")
  curl "${args[@]}"
}
wait_active() { # KID: until Latchkey signs with it (20 s at most)
  for _ in $(seq 1 100); do
    api GET /admin/keys | python3 -c '
import json, sys
sys.exit(0 if any(k["kid"] == sys.argv[1] and k["state"] == "active" for k in json.load(sys.stdin)) else 1)' "$1" && return 0
    sleep 0.2
  done
  echo "key $1 was not active within 20 s" >&2
  return 1
}
expect_kid() { # TOKEN KID
  local got
  got=$(forge kid "$1")
  [ "$got" = "$2" ] || { echo "a fresh token has kid $got, not $2" >&2; return 1; }
}

STAGE="setting up roles, users and a service client"
ADMIN=$(password_token admin "admin password 123")
api POST /admin/roles '{"name":"reports-reader","permissions":["reports:read"]}' >/dev/null
READER_ID=$(api POST /admin/users '{"username":"reader","password":"reader password 1","roles":["reports-reader"]}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["user"]["id"])')
api POST /admin/users '{"username":"plain","password":"plain password 1"}' >/dev/null
SVC_SECRET=$(api POST /admin/clients \
  '{"client_id":"reports-svc","name":"reports","confidential":true,"grant_types":["client_credentials"],"roles":["reports-reader"],"first_party":true}' |
  json_field client_secret)

STAGE="importing a test key"
TEST_KID=$(forge genkey "$WORK/test-key.pem")
# Captured first: `grep -q` would stop reading early and break the pipe under the CLI.
IMPORTED=$("$LATCHKEY" keys import "$WORK/test-key.pem")
grep -qF -- "$TEST_KID" <<<"$IMPORTED" ||
  { echo "latchkey keys import did not name the key $TEST_KID (its RFC 7638 thumbprint)" >&2; exit 1; }
wait_active "$TEST_KID"
JWKS_URI=$(curl -sS --fail-with-body "$ISSUER/.well-known/openid-configuration" | json_field jwks_uri)
PUBLISHED=$(curl -sS --fail-with-body "$JWKS_URI")
grep -qF "\"$TEST_KID\"" <<<"$PUBLISHED" ||
  { echo "the JWKS at $JWKS_URI does not publish $TEST_KID" >&2; exit 1; }

STAGE="getting tokens"
READER=$(password_token reader "reader password 1")
expect_kid "$READER" "$TEST_KID"
PLAIN=$(password_token plain "plain password 1")
SERVICE=$(curl -sS --fail-with-body "$ISSUER/oauth2/token" -u "reports-svc:$SVC_SECRET" \
  -d grant_type=client_credentials | json_field access_token)
# The examples that check DPoP proofs; each gets reports-svc's token bound to our key.
DPOP_EXAMPLES=(node)
DPOP=""
if [[ " $EXAMPLES " == *" node "* ]]; then
  forge dpopkey "$WORK/dpop-key.pem" >/dev/null
  forge dpopkey "$WORK/other-dpop-key.pem" >/dev/null
  # A failure here is the DPoP checks' alone: the others still run.
  DPOP=$(forge dpoptoken "$WORK/dpop-key.pem" "$ISSUER/oauth2/token" reports-svc "$SVC_SECRET" 2>"$WORK/dpop.err") || {
    DPOP=""
    for ex in "${DPOP_EXAMPLES[@]}"; do fail "$ex" "no DPoP-bound token from Latchkey: $(head -c 300 "$WORK/dpop.err")"; done
  }
fi
declare -A FORGED=()
while read -r name token; do FORGED[$name]=$token; done < <(forge tokens "$WORK/test-key.pem" "$ISSUER" latchkey "$READER_ID")
[ "${#FORGED[@]}" -eq 8 ]

# ---- start the examples, pointed at Latchkey by the issuer URL alone ----
STAGE="starting the examples"
RUNNING=()
for ex in "${READY[@]}"; do
  port=$(free_port)
  PORT_OF[$ex]=$port
  (
    unset AUDIENCE "${!LATCHKEY_@}"
    export ISSUER PORT=$port
    "start_$ex"
  ) >"${LOG_OF[$ex]}" 2>&1 &
  PIDS+=($!)
  PID_OF[$ex]=$!
done
for ex in "${READY[@]}"; do
  up=""
  for _ in $(seq 1 600); do # 60 s: a JVM on two busy cores is slow to start
    if curl -fs --max-time 2 "http://127.0.0.1:${PORT_OF[$ex]}/healthz" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "${PID_OF[$ex]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -n "$up" ]; then RUNNING+=("$ex"); else fail "$ex" "did not answer GET /healthz within 60 s"; fi
done

# probe EXAMPLE WHAT EXPECTED_STATUS SUB [CURL_ARG...]: GET /reports with the CURL_ARGs
# (its headers); a 200 must also carry {"reports": [...], "sub": SUB}.
probe() {
  local ex=$1 what=$2 want=$3 sub=$4 status
  shift 4
  local args=(-s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' --max-time 15 "$@")
  : >"$WORK/body"
  : >"$WORK/headers"
  status=$(curl "${args[@]}" "http://127.0.0.1:${PORT_OF[$ex]}/reports") || status="no answer"
  if [ "$status" = "$want" ] && { [ "$want" != 200 ] || python3 -c '
import json, sys
body = json.load(open(sys.argv[1]))
sys.exit(0 if isinstance(body.get("reports"), list) and body.get("sub") == sys.argv[2] else 1)' "$WORK/body" "$sub" 2>/dev/null; }; then
    PASSED=$((PASSED + 1))
  else
    fail "$ex" "$what: wanted $want, got $status $(head -c 200 "$WORK/body")$(grep -i '^www-authenticate:' "$WORK/headers" | head -c 200 | tr -d '\r')"
  fi
}

# check EXAMPLE WHAT EXPECTED_STATUS TOKEN [SUB]: with TOKEN as the bearer ("" for none).
check() {
  local ex=$1 what=$2 want=$3 token=$4 sub=${5:-} auth=()
  [ -z "$token" ] || auth=(-H "Authorization: Bearer $token")
  probe "$ex" "$what" "$want" "$sub" "${auth[@]}"
}

# check_dpop EXAMPLE WHAT EXPECTED_STATUS TOKEN PROOF [SUB]: with `Authorization: DPoP TOKEN`
# and, unless PROOF is "", `DPoP: PROOF`.
check_dpop() {
  local ex=$1 what=$2 want=$3 token=$4 proof=$5 sub=${6:-}
  local args=(-H "Authorization: DPoP $token")
  [ -z "$proof" ] || args+=(-H "DPoP: $proof")
  probe "$ex" "$what" "$want" "$sub" "${args[@]}"
}

# dpop_checks EXAMPLE: reports-svc's DPoP-bound token ($DPOP, bound to dpop-key.pem) with
# proofs made here for GET /reports (iat now, a fresh jti each).
dpop_checks() {
  local ex=$1 url="http://127.0.0.1:${PORT_OF[$1]}/reports" key="$WORK/dpop-key.pem" proof
  proof=$(forge proof "$key" GET "$url" "$DPOP")
  check_dpop "$ex" "DPoP-bound token with its proof" 200 "$DPOP" "$proof" reports-svc
  check_dpop "$ex" "the same DPoP proof again (a replay)" 401 "$DPOP" "$proof"
  check "$ex" "DPoP-bound token sent as a bearer token" 401 "$DPOP"
  check_dpop "$ex" "DPoP-bound token without a proof" 401 "$DPOP" ""
  check_dpop "$ex" "DPoP proof for another URL" 401 "$DPOP" \
    "$(forge proof "$key" GET "http://127.0.0.1:${PORT_OF[$ex]}/elsewhere" "$DPOP")"
  check_dpop "$ex" "DPoP proof for another method" 401 "$DPOP" "$(forge proof "$key" POST "$url" "$DPOP")"
  check_dpop "$ex" "DPoP proof whose ath is another token's" 401 "$DPOP" "$(forge proof "$key" GET "$url" "$SERVICE")"
  check_dpop "$ex" "DPoP proof by another key" 401 "$DPOP" "$(forge proof "$WORK/other-dpop-key.pem" GET "$url" "$DPOP")"
  check_dpop "$ex" "unbound token sent with the DPoP scheme" 401 "$SERVICE" "$(forge proof "$key" GET "$url" "$SERVICE")"
  # The control: a fresh proof still passes after all those refusals.
  check_dpop "$ex" "DPoP-bound token with a fresh proof" 200 "$DPOP" "$(forge proof "$key" GET "$url" "$DPOP")" reports-svc
}

STAGE="checking the examples"
for ex in "${RUNNING[@]}"; do
  check "$ex" "reader's token" 200 "$READER" "$READER_ID"
  check "$ex" "reports-svc's client_credentials token" 200 "$SERVICE" reports-svc
  check "$ex" "token we signed with the imported key (control)" 200 "${FORGED[valid]}" "$READER_ID"
  check "$ex" "token of a user without the role" 403 "$PLAIN"
  check "$ex" "no token" 401 ""
  check "$ex" "not a JWT" 401 "not-a-jwt"
  check "$ex" "expired token" 401 "${FORGED[expired]}"
  check "$ex" "token for another audience" 401 "${FORGED[wrong_aud]}"
  check "$ex" "token from another issuer" 401 "${FORGED[wrong_iss]}"
  check "$ex" "token with typ JWT, not at+jwt" 401 "${FORGED[typ_jwt]}"
  check "$ex" "alg none token" 401 "${FORGED[alg_none]}"
  check "$ex" "HS256 token keyed with the public key" 401 "${FORGED[hs256_pubkey]}"
  check "$ex" "token signed by a foreign key under Latchkey's kid" 401 "${FORGED[foreign_key]}"
  if [[ " ${DPOP_EXAMPLES[*]} " == *" $ex "* ]] && [ -n "$DPOP" ]; then dpop_checks "$ex"; fi
done

# ---- rotate: the examples, still running, must find the new key in the JWKS themselves ----
STAGE="rotating the signing key"
NEW_KID=$(api POST /admin/keys/rotate | json_field kid)
wait_active "$NEW_KID"
ROTATED=$(password_token reader "reader password 1")
expect_kid "$ROTATED" "$NEW_KID"
STAGE="checking the examples after the rotation"
for ex in "${RUNNING[@]}"; do
  check "$ex" "token signed by the new key after a rotation" 200 "$ROTATED" "$READER_ID"
  check "$ex" "token signed by the previous key after a rotation" 200 "$READER" "$READER_ID"
  kill -0 "${PID_OF[$ex]}" 2>/dev/null || fail "$ex" "it is no longer running"
done
STAGE="done"
if [ $((PASSED + FAILED)) -eq 0 ]; then fail all "no example was checked (EXAMPLES=\"$EXAMPLES\")"; fi
