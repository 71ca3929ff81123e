#!/usr/bin/env bash
# The fuzz targets (fuzz/, libFuzzer through cargo-fuzz on the nightly toolchain), each for
# FUZZ_SECONDS (10) from its committed corpus. New inputs go to a scratch directory, not the
# committed corpus; a crash fails the step and its input is printed for a regression test
# (copy it into fuzz/corpus/<target>/ and `cargo test` replays it).
# The build is without a sanitizer: the code under test is safe Rust (aws-lc's C is reached
# only through its safe API), and what the properties look for is a panic or a wrong answer;
# debug assertions (and so overflow checks) are on. The toolchain, cargo-fuzz and the build
# are cached under ~/.cache/latchkey-fuzz. `fuzz.sh build` only builds (.ci/run starts that
# beside the other steps; the fuzz step then finds the build done).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="$HOME/.cache/latchkey-fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-10}
mkdir -p "$CACHE"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$CACHE/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --locked --root "$CACHE"
fi
export PATH="$CACHE/bin:$PATH"
FUZZ=(--sanitizer none --debug-assertions --target-dir "$CACHE/target")
began=$(date +%s)
cargo +nightly fuzz build "${FUZZ[@]}"
echo "built the fuzz targets in $(($(date +%s) - began)) s"
if [ "${1:-}" = build ]; then exit 0; fi
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
failed=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$SCRATCH/$target"
  if cargo +nightly fuzz run "${FUZZ[@]}" "$target" "$SCRATCH/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -artifact_prefix="$SCRATCH/$target/crash-" >"$SCRATCH/$target.log" 2>&1; then
    echo "$target: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$SCRATCH/$target.log" | tail -1 || echo done)"
  else
    failed=1
    echo "$target: FAILED"
    tail -n 40 "$SCRATCH/$target.log"
    for crash in "$SCRATCH/$target"/crash-*; do
      [ -e "$crash" ] && echo "crashing input ($crash), base64: $(base64 -w0 "$crash")"
    done
  fi
done
exit "$failed"
