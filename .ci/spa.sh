#!/usr/bin/env bash
# The reference SPA: install (npm ci, lock file committed), generate its API client from
# openapi/openapi.json, type-check and build both pages, then run the browser tests in
# Debian's Chromium through playwright-core (no browser download), one file after the
# other: the cookie flow (tests/browser.test.mjs), the cookie flow bound to the page's
# DPoP key (tests/dpop.test.mjs) and the code flow with oidc-client-ts (tests/oidc.test.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
BIN=${BIN:-target/debug}
export SERVER_BIN="$PWD/$BIN/latchkey"
cd examples/spa
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
npm run --silent test:browser
echo "screenshots: examples/spa/artifacts/logged-in.png (cookie flow), examples/spa/artifacts/oidc-signed-in.png (code flow)"
