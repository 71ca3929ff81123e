#!/usr/bin/env bash
# Fetches Keycloak for `latchkey-bench --peer keycloak` and builds it once for PostgreSQL:
# the org.keycloak:keycloak-quarkus-dist zip from Maven Central (mvn dependency:copy, the
# local repository under ~/.cache/maven), unpacked into ~/.cache/latchkey-bench/keycloak,
# then `kc.sh build` so that the bench starts it with `start --optimized`. Runs on the
# Temurin 25 JDK (KEYCLOAK_JAVA_HOME, else the newest /usr/lib/jvm/temurin-*).
# A finished preparation is reused. Prints `KEYCLOAK_HOME=…` and `JAVA_HOME=…` on stdout;
# any failure prints its reason and exits non-zero.
set -euo pipefail
VERSION=${KEYCLOAK_VERSION:-26.7.3}
CACHE=${LATCHKEY_BENCH_CACHE:-$HOME/.cache/latchkey-bench}/keycloak
HOME_DIR=$CACHE/keycloak-$VERSION
# The build options the bench starts with; a change here rebuilds.
BUILD_OPTS=(--db=postgres --health-enabled=true --http-relative-path=/)
STAMP="$VERSION ${BUILD_OPTS[*]}"
if [ -z "${KEYCLOAK_JAVA_HOME:-}" ]; then
  KEYCLOAK_JAVA_HOME=$(ls -d /usr/lib/jvm/temurin-*-jdk* 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$KEYCLOAK_JAVA_HOME" ] && [ -x "$KEYCLOAK_JAVA_HOME/bin/java" ] ||
  { echo "keycloak/prepare.sh: no Temurin JDK in /usr/lib/jvm (set KEYCLOAK_JAVA_HOME)" >&2; exit 1; }
report() { printf 'KEYCLOAK_HOME=%s\nJAVA_HOME=%s\n' "$HOME_DIR" "$KEYCLOAK_JAVA_HOME"; }
if [ -x "$HOME_DIR/bin/kc.sh" ] && [ "$(cat "$HOME_DIR/.latchkey-built" 2>/dev/null)" = "$STAMP" ]; then
  report
  exit 0
fi
command -v mvn >/dev/null || { echo "keycloak/prepare.sh: no mvn on PATH" >&2; exit 1; }
mkdir -p "$CACHE"
ZIP=$CACHE/keycloak-quarkus-dist-$VERSION.zip
if [ ! -s "$ZIP" ]; then
  echo "keycloak/prepare.sh: fetching org.keycloak:keycloak-quarkus-dist:$VERSION:zip…" >&2
  mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$HOME/.cache/maven/repository" \
    dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$VERSION:zip" \
    -DoutputDirectory="$CACHE" -Dmdep.overWriteIfNewer=true >&2
fi
rm -rf "$HOME_DIR" "$CACHE/unpack"
mkdir -p "$CACHE/unpack"
unzip -q "$ZIP" -d "$CACHE/unpack"
mv "$CACHE/unpack/keycloak-$VERSION" "$HOME_DIR"
rmdir "$CACHE/unpack"
echo "keycloak/prepare.sh: kc.sh build ${BUILD_OPTS[*]}…" >&2
JAVA_HOME=$KEYCLOAK_JAVA_HOME nice -n 10 "$HOME_DIR/bin/kc.sh" build "${BUILD_OPTS[@]}" >&2
echo "$STAMP" >"$HOME_DIR/.latchkey-built"
report
