#!/usr/bin/env bash
# Benchmark (not a test): request latency of the edge under `wasmtime serve` (the bundle) and, when a Spin CLI is on
# PATH (or SPIN names one), under `spin up` (the per-route components of spin.toml), against the demo simulator, in
# the same run: GET /rest/v0, a listing, an object GET (medians of N sequential requests), and object GETs per
# second from 10 parallel clients for a few seconds. Also the XAPI calls one object GET makes, and the simulator's
# count of chunked RPC requests (0: every call went out whole). Loopback only; stops what it started.
set -euo pipefail
N=${N:-50}
SECONDS_PARALLEL=${SECONDS_PARALLEL:-5}
SIM_ARGS="--demo"
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

SPIN_BIN=${SPIN:-$(command -v spin || true)}
SPIN_EDGE=
if [ -n "$SPIN_BIN" ]; then
  SPIN_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SPIN_VARIABLE_TOKEN_SECRET=$XO_EDGE_TOKEN_SECRET "$SPIN_BIN" up --listen "127.0.0.1:${SPIN_PORT}" \
    --state-dir "$work/spin-state" --variable "xapi_url=${SIM}" >"$work/spin.log" 2>&1 &
  pids+=($!)
  SPIN_EDGE="http://127.0.0.1:${SPIN_PORT}"
  for _ in $(seq 1 600); do curl -s -o /dev/null "$SPIN_EDGE/rest/v0" && break; sleep 0.1; done
  SPIN_VERSION=$("$SPIN_BIN" --version)
fi

VM=$(curl -s -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms?fields=uuid&filter=name_label:Debian" | json '[0]["uuid"]')
curl -s -X POST "$SIM/_sim/stats/reset"
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms/$VM"
CALLS=$(curl -s "$SIM/_sim/stats" | json '["total_calls"]')

# A build to compare (COMPARE_WASM, benches/common.sh) takes the Spin column's place; it gets a token of its own, as
# token formats differ between builds.
OTHER_NAME=${SPIN_VERSION:-}
OTHER_EDGE=$SPIN_EDGE
OTHER_TOKEN=$TOKEN
if [ -z "$OTHER_EDGE" ] && [ -n "${EDGE2:-}" ]; then
  OTHER_NAME="previous build (COMPARE_WASM)"
  OTHER_EDGE=$EDGE2
  OTHER_TOKEN=$(curl -s -X POST -u root:xapi-sim "$EDGE2/rest/v0/users/authentication_tokens" | json '["token"]["id"]')
fi

python3 - "$TOKEN" "$VM" "$N" "$SECONDS_PARALLEL" "$CALLS" "wasmtime serve ($("$WASMTIME" --version | cut -d' ' -f1-2))" "$EDGE" \
  "$OTHER_NAME" "$OTHER_EDGE" "$OTHER_TOKEN" <<'PY'
import http.client, statistics, sys, threading, time, urllib.parse
token, vm, n, secs, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
tokens = {sys.argv[7]: token, sys.argv[9]: sys.argv[10]}
edges = [(sys.argv[i], sys.argv[i + 1]) for i in (6, 8) if sys.argv[i + 1]]
paths = [("GET /rest/v0", "/rest/v0"), ("listing (fields=name_label,power_state)", "/rest/v0/vms?fields=name_label,power_state"),
         ("GET /rest/v0/vms/<id>", f"/rest/v0/vms/{vm}")]
def get(url, path):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    t = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {tokens[url]}"})
    r = c.getresponse(); r.read(); c.close()
    assert r.status == 200, (path, r.status)
    return time.perf_counter() - t
rows = {}
for name, url in edges:
    for label, path in paths:
        get(url, path)
        rows[(name, label)] = statistics.median(get(url, path) for _ in range(n)) * 1000
    done, stop = [0], time.perf_counter() + secs
    def client():
        while time.perf_counter() < stop:
            get(url, paths[2][1]); done[0] += 1
    ts = [threading.Thread(target=client) for _ in range(10)]
    [t.start() for t in ts]; [t.join() for t in ts]
    rows[(name, "rate")] = done[0] / secs
print(f"Latency, medians of {n} sequential requests (ms); an object GET makes {calls} XAPI calls")
print("| request | " + " | ".join(name for name, _ in edges) + (" | ratio |" if len(edges) > 1 else " |"))
print("|---" * (len(edges) + 1 + (len(edges) > 1)) + "|")
for label, _ in paths:
    vals = [rows[(name, label)] for name, _ in edges]
    ratio = f" | {vals[1] / vals[0]:.1f}" if len(vals) > 1 else ""
    print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in vals) + ratio + " |")
vals = [rows[(name, "rate")] for name, _ in edges]
print(f"| object GETs/s, 10 clients | " + " | ".join(f"{v:.0f}" for v in vals) + (" | |" if len(vals) > 1 else " |"))
PY
echo "chunked RPC requests seen by the simulator: $(curl -s "$SIM/_sim/stats" | json '["rpc_chunked"]') of $(curl -s "$SIM/_sim/stats" | json '["rpc_requests"]')"
