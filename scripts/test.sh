#!/usr/bin/env bash
# The whole test suite: lints, unit tests of the core and the simulator, end-to-end tests over HTTP.
# Needs: cargo (with clippy and rustfmt), python3 (venv + pip reach PyPI once), qemu-img.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
