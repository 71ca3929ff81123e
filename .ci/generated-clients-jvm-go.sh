#!/usr/bin/env bash
# Generates a Java client (openapi-generator `java`, library `native`) and a Go client
# (openapi-generator `go`) from openapi/openapi.json, compiles each, and runs a smoke test with
# each against a running server: the steps and checks of .ci/python_client_smoke.py (register,
# login, me, admin list users, password and refresh_token grants on /oauth2/token). The smoke
# programs are examples/generated-clients/{java,go}-smoke. Generated code is never edited.
# Prints a line per failure and ends with `generated clients (Java, Go): N passed, M failed`;
# exits non-zero if a client failed or anything could not run.
#   CLIENTS="java go"                which clients (default: both)
#   BIN=target/debug                 where the latchkey binary is (it is never built here)
#   OPENAPI_GENERATOR_VERSION=7.25.0 the org.openapitools:openapi-generator-cli version
# Caches live under ~/.cache (maven/repository for the generator jar and the Java build,
# go-mod and go-build for Go), so a second run downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. .ci/lib.sh
LATCHKEY="$ROOT/${BIN:-target/debug}/latchkey"
CLIENTS=${CLIENTS:-java go}
CACHE=${GENERATED_CLIENTS_CACHE:-$HOME/.cache}
M2="$CACHE/maven/repository"
GEN_VERSION=${OPENAPI_GENERATOR_VERSION:-7.25.0}
GEN_JAR="$M2/org/openapitools/openapi-generator-cli/$GEN_VERSION/openapi-generator-cli-$GEN_VERSION.jar"
SPEC="$ROOT/openapi/openapi.json"
WORK=$(mktemp -d)
PASSED=0
FAILED=0
STAGE="checking for the latchkey binary"
SERVER_PID=

finish() {
  local rc=$?
  trap - EXIT
  set +e
  count_early_end "$rc"
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$WORK"
  echo "generated clients (Java, Go): $PASSED passed, $FAILED failed"
  if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then exit 1; fi
}
trap finish EXIT

if [ ! -x "$LATCHKEY" ]; then
  echo "FAIL: $LATCHKEY is missing: build it first (cargo build -p latchkey-server); this script does not build it" >&2
  exit 1
fi

mvn_() { mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2" "$@"; }
go_() { GOMODCACHE="$CACHE/go-mod" GOCACHE="$CACHE/go-build" GOFLAGS=-modcacherw GOTOOLCHAIN=local go "$@"; }
generate() { # GENERATOR OUT_DIR ARGS...: openapi-generator, quiet unless it fails
  local gen=$1 out=$2
  shift 2
  java -jar "$GEN_JAR" generate -i "$SPEC" -g "$gen" -o "$out" "$@"
}
# step NAME LOG COMMAND...: runs one step of a client's pipeline; on failure prints its log.
step() {
  local name=$1 log=$2 begin
  shift 2
  begin=$(date +%s)
  if "$@" >"$log" 2>&1; then
    echo "  $name: ok ($(($(date +%s) - begin)) s)"
  else
    echo "  $name: FAILED; its output:"
    tail -n 40 "$log" | sed 's/^/    /'
    return 1
  fi
}

# ---- the generator jar, from Maven Central into the local repository ----
STAGE="fetching openapi-generator-cli $GEN_VERSION"
if [ ! -s "$GEN_JAR" ]; then
  mvn_ dependency:get -Dartifact="org.openapitools:openapi-generator-cli:$GEN_VERSION" -Dtransitive=false
fi
[ -s "$GEN_JAR" ] || { echo "FAIL: $GEN_JAR was not fetched" >&2; exit 1; }

# ---- Latchkey ----
STAGE="starting latchkey"
start_latchkey_for_clients "$LATCHKEY" "$WORK"

# ---- Java: generate, install the client into the local repository, build and run the smoke ----
java_client() {
  step "generate (java, library native)" "$WORK/java-generate.log" generate java "$WORK/java-client" \
    --library native \
    --additional-properties=groupId=dev.latchkey,artifactId=latchkey-client,artifactVersion=0.1.0 \
    --additional-properties=invokerPackage=dev.latchkey.client,apiPackage=dev.latchkey.client.api,modelPackage=dev.latchkey.client.model &&
    step "compile and install the client (mvn install)" "$WORK/java-install.log" \
      mvn_ -f "$WORK/java-client/pom.xml" -Dmaven.test.skip=true -Dmaven.javadoc.skip=true install &&
    cp -r examples/generated-clients/java-smoke "$WORK/java-smoke" &&
    step "compile the smoke (mvn package)" "$WORK/java-smoke-build.log" \
      mvn_ -f "$WORK/java-smoke/pom.xml" package dependency:build-classpath -Dmdep.outputFile="$WORK/java-smoke.cp" &&
    step "run the smoke" "$WORK/java-smoke.log" \
      java -XX:TieredStopAtLevel=1 -cp "$WORK/java-smoke/target/classes:$(cat "$WORK/java-smoke.cp")" Main &&
    tail -n 1 "$WORK/java-smoke.log"
}

# ---- Go: generate, point the smoke's replace at the generated module, build and run it ----
go_client() {
  step "generate (go)" "$WORK/go-generate.log" generate go "$WORK/go-client" \
    --git-user-id latchkey --git-repo-id latchkey-go-client --additional-properties=packageName=latchkey &&
    cp -r examples/generated-clients/go-smoke "$WORK/go-smoke" &&
    (cd "$WORK/go-smoke" && go_ mod edit -replace=github.com/latchkey/latchkey-go-client="$WORK/go-client") &&
    step "compile the client (go build)" "$WORK/go-build-client.log" \
      bash -c "cd '$WORK/go-client' && $(declare -f go_); go_ build ./..." &&
    step "compile the smoke (go build)" "$WORK/go-build.log" \
      bash -c "cd '$WORK/go-smoke' && $(declare -f go_); go_ build -o '$WORK/go-smoke-bin' ." &&
    step "run the smoke" "$WORK/go-smoke.log" "$WORK/go-smoke-bin" &&
    tail -n 1 "$WORK/go-smoke.log"
}

for c in $CLIENTS; do
  case $c in
    java) label=Java ;;
    go) label=Go ;;
    *) echo "FAIL $c: no such client"; FAILED=$((FAILED + 1)); continue ;;
  esac
  STAGE="the $label client"
  echo "--- $label client (openapi-generator $GEN_VERSION)"
  begin=$(date +%s)
  if "${c}_client"; then
    PASSED=$((PASSED + 1))
    echo "  $label: passed in $(($(date +%s) - begin)) s"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $label client (after $(($(date +%s) - begin)) s)"
  fi
done
STAGE="finishing"
