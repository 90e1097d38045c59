#!/usr/bin/env bash
# Builds every WebAssembly component without Spin: the per-route components (configured by Spin variables)
# and the bundle (configured by environment variables). Separate cargo runs keep their features apart; the
# bundle goes first because building it also writes the per-route crates' .wasm files, without their handler
# export (the bundle links them as libraries), and the second run puts the real ones back.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --target wasm32-wasip2 --profile wasm -p xo-edge-bundle
cargo build --locked --target wasm32-wasip2 --profile wasm -p xo-edge-api -p xo-edge-tokens -p xo-edge-transfers
ls -l target/wasm32-wasip2/wasm/*.wasm
