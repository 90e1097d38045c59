# Sourced by the benchmarks: builds, starts the simulator (extra arguments: SIM_ARGS) and the bundle under
# wasmtime serve on free loopback ports, and stops both on exit. Sets:
#   work (a temporary folder), SIM, EDGE (base URLs), EDGE_PID, SID (a root XAPI session), TOKEN (an edge token)
# and the helpers json (read a field of JSON on stdin), cpu (the runtime's CPU ticks), hwm (its peak RSS, KiB).
# To measure another build in the same run (e.g. an older commit's bundle, or a WASI 0.3 build), set COMPARE_WASM
# to its .wasm, COMPARE_FLAGS to its extra `wasmtime serve` flags and COMPARE_WASMTIME to the wasmtime it needs:
# EDGE2, EDGE2_PID and cpu2 are then set too, and the benchmarks print an `edge2` row beside `edge`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -p xapi-sim >/dev/null 2>&1
bash scripts/build.sh >/dev/null 2>&1

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM

# shellcheck disable=SC2086
./target/release/xapi-sim --listen 127.0.0.1:0 ${SIM_ARGS:-} --port-file "$work/sim.port" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do [ -s "$work/sim.port" ] && break; sleep 0.1; done
SIM="http://127.0.0.1:$(cat "$work/sim.port")"
# The simulator's other hosts answer on the next loopback addresses, same port: the edge may reach them.
XO_EDGE_POOL_HOSTS="http://127.0.0.0/24:$(cat "$work/sim.port")"
export XO_EDGE_POOL_HOSTS
EDGE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
XO_EDGE_TOKEN_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
export XO_EDGE_TOKEN_SECRET
WASMTIME=$(bash scripts/wasmtime.sh)
"$WASMTIME" serve -Scli --addr "127.0.0.1:${EDGE_PORT}" \
  --env "XO_EDGE_XAPI_URL=${SIM}" --env XO_EDGE_TOKEN_SECRET --env XO_EDGE_POOL_HOSTS \
  target/wasm32-wasip2/wasm/xo_edge_bundle.wasm \
  >"$work/edge.log" 2>&1 &
EDGE_PID=$!
pids+=($EDGE_PID)
EDGE="http://127.0.0.1:${EDGE_PORT}"
for _ in $(seq 1 300); do curl -s -o /dev/null "$EDGE/rest/v0" && break; sleep 0.1; done
EDGE2=
if [ -n "${COMPARE_WASM:-}" ]; then
  EDGE2_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # shellcheck disable=SC2086
  "${COMPARE_WASMTIME:-$WASMTIME}" serve -Scli ${COMPARE_FLAGS:-} --addr "127.0.0.1:${EDGE2_PORT}" \
    --env "XO_EDGE_XAPI_URL=${SIM}" --env XO_EDGE_TOKEN_SECRET --env XO_EDGE_POOL_HOSTS "$COMPARE_WASM" >"$work/edge2.log" 2>&1 &
  EDGE2_PID=$!
  pids+=($EDGE2_PID)
  EDGE2="http://127.0.0.1:${EDGE2_PORT}"
  for _ in $(seq 1 300); do curl -s -o /dev/null "$EDGE2/rest/v0" && break; sleep 0.1; done
fi
cpu2() { awk '{print $14 + $15}' "/proc/$EDGE2_PID/stat"; }

json() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
cpu() { awk '{print $14 + $15}' "/proc/$EDGE_PID/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$EDGE_PID/status"; }
SID=$(curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","xapi-sim"],"id":1}' | json '["result"]')
TOKEN=$(curl -s -X POST -u root:xapi-sim "$EDGE/rest/v0/users/authentication_tokens" | json '["token"]["id"]')
