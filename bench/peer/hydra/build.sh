#!/usr/bin/env bash
# Builds Ory Hydra (the version go.mod pins, v2.3.0) from this wrapper module for
# `latchkey-bench --peer hydra`, into ~/.cache/latchkey-bench/hydra/bin/hydra.
# A binary built from the same go.mod, go.sum and script is kept and reused; the module and build
# caches are ~/.cache/go-mod and ~/.cache/go-build, shared with CI's other Go steps.
# Prints the binary's path on stdout; any failure prints its reason and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"
CACHE=${LATCHKEY_BENCH_CACHE:-$HOME/.cache/latchkey-bench}/hydra
BIN=$CACHE/bin/hydra
STAMP=$(cat go.mod go.sum build.sh | sha256sum | cut -c1-16)
if [ -x "$BIN" ] && [ "$(cat "$CACHE/bin/stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "hydra/build.sh: no Go toolchain on PATH" >&2; exit 1; }
mkdir -p "$CACHE/bin"
export GOMODCACHE=$HOME/.cache/go-mod GOCACHE=$HOME/.cache/go-build
export GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN=local
echo "hydra/build.sh: building Ory Hydra (a cold build takes minutes)…" >&2
VERSION=$(go list -m -f '{{.Version}}' github.com/ory/hydra/v2)
# -trimpath and no VCS stamping keep the build cache valid across checkouts; the version
# string is the one Hydra's release builds set (`hydra version`).
nice -n 10 go build -trimpath -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$VERSION" \
  -o "$BIN.tmp" github.com/ory/hydra/v2 >&2
mv "$BIN.tmp" "$BIN"
echo "$STAMP" >"$CACHE/bin/stamp"
echo "$BIN"
