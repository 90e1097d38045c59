#!/usr/bin/env bash
# Builds every WebAssembly component without Spin: the per-route components (configured by Spin variables)
# and the bundle (configured by environment variables). Separate cargo runs keep their features apart.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --target wasm32-wasip2 --profile wasm -p xo-edge-api -p xo-edge-tokens
cargo build --locked --target wasm32-wasip2 --profile wasm -p xo-edge-bundle
ls -l target/wasm32-wasip2/wasm/*.wasm
