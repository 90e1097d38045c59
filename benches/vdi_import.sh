#!/usr/bin/env bash
# Benchmark (not a test): VDI import through the edge vs a PUT straight to the simulator's /import_raw_vdi, in the
# same run, of a sparse-but-nonzero SIZE_GIB disk (default 2; the simulator's synthetic disk-like data) as raw and
# as the VHD the simulator exports of it.
#   raw: the edge hands the request body to XAPI untouched (pass-through)
#   vhd: the edge reads the body through its VHD check
# Prints median throughput of REPS runs, the ratio edge/direct, the runtime's CPU seconds per GiB and its peak RSS
# before and after. With LIMIT (curl --limit-rate, default 400M; empty to skip) it repeats the comparison at a
# rate like a real pool's. Every imported VDI is destroyed again. Loopback only; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
SIZE_GIB=${SIZE_GIB:-2}
LIMIT=${LIMIT-400M}
cargo build --locked --release -p xapi-sim >/dev/null 2>&1
bash scripts/build.sh >/dev/null 2>&1

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM

./target/release/xapi-sim --listen 127.0.0.1:0 --port-file "$work/sim.port" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/sim.port" ] && break; sleep 0.1; done
SIM="http://127.0.0.1:$(cat "$work/sim.port")"
EDGE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
XO_EDGE_TOKEN_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
export XO_EDGE_TOKEN_SECRET
wasmtime serve -Scli -Sp3 -Wcomponent-model-async --addr "127.0.0.1:${EDGE_PORT}" \
  --env "XO_EDGE_XAPI_URL=${SIM}" --env XO_EDGE_TOKEN_SECRET target/wasm32-wasip2/wasm/xo_edge_bundle.wasm \
  >"$work/edge.log" 2>&1 &
EDGE_PID=$!
pids+=($EDGE_PID)
EDGE="http://127.0.0.1:${EDGE_PORT}"
for _ in $(seq 1 300); do curl -s -o /dev/null "$EDGE/rest/v0" && break; sleep 0.1; done

call() { # method, params (JSON, without the session) -> result
  curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":[\"$SID\"$2],\"id\":1}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["result"])'
}
SID=none
SID=$(curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","xapi-sim"],"id":1}' |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["result"])')
TOKEN=$(curl -s -X POST -u root:xapi-sim "$EDGE/rest/v0/users/authentication_tokens" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["token"]["id"])')
SR=$(call SR.get_by_name_label ',"Shared NFS storage"' | tr -d "[]'")
SR_UUID=$(call SR.get_uuid ",\"$SR\"")
SIZE=$((SIZE_GIB << 30))

# The input files: the simulator's own exports of a synthetic disk.
SRC=$(curl -s -X POST "$SIM/_sim/vdis" -H 'content-type: application/json' \
  -d "{\"name_label\":\"bench source\",\"size\":$SIZE,\"seed\":9}" | python3 -c 'import sys, json; print(json.load(sys.stdin)["uuid"])')
for fmt in raw vhd; do curl -s -b "session_id=$SID" -o "$work/disk.$fmt" "$SIM/export_raw_vdi?vdi=$SRC&format=$fmt"; done

cpu() { awk '{print $14 + $15}' "/proc/$EDGE_PID/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$EDGE_PID/status"; }
destroy_uuid() { call VDI.destroy ",\"$(call VDI.get_by_uuid ",\"$1\"")\"" >/dev/null; }
HWM_BEFORE=$(hwm)

run() { # label [curl options]
  local label=$1
  shift
  for fmt in raw vhd; do
    for _ in $(seq 1 "$REPS"); do
      local vdi
      vdi=$(call VDI.create ",{\"name_label\":\"direct\",\"SR\":\"$SR\",\"virtual_size\":$SIZE,\"type\":\"user\",\"sharable\":false,\"read_only\":false,\"other_config\":{}}")
      echo "$label direct_$fmt $(curl -s "$@" -o /dev/null -w '%{speed_upload} %{size_upload}' -b "session_id=$SID" \
        -T "$work/disk.$fmt" "$SIM/import_raw_vdi?vdi=$vdi&format=$fmt")" >>"$work/times"
      call VDI.destroy ",\"$vdi\"" >/dev/null
      local c0 q
      c0=$(cpu)
      [ "$fmt" = raw ] && q='?raw' || q=''
      echo "$label edge_$fmt $(curl -s "$@" -o "$work/answer" -w '%{speed_upload} %{size_upload}' \
        -X POST -H "Authorization: Bearer $TOKEN" -T "$work/disk.$fmt" "$EDGE/rest/v0/srs/$SR_UUID/vdis$q")" >>"$work/times"
      echo "$label cpu_$fmt $(($(cpu) - c0))" >>"$work/times"
      destroy_uuid "$(cat "$work/answer")"
    done
  done
}
: >"$work/times"
run full
HWM_AFTER=$(hwm)
[ -n "$LIMIT" ] && run capped --limit-rate "$LIMIT"
LEFT=$(curl -s "$SIM/_sim/stats" | python3 -c 'import sys, json; d = json.load(sys.stdin); print(d["tasks"], d["vdis"])')

python3 - "$work/times" "$SIZE_GIB" "$REPS" "$HWM_BEFORE" "$HWM_AFTER" "${LIMIT:-none}" "$LEFT" "$(nproc)" \
  "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
path, size, reps, before, after, limit, left, cores, hz = sys.argv[1:]
t, n = {}, {}
for line in open(path):
    label, k, *v = line.split()
    t.setdefault((label, k), []).append(float(v[0]))
    if len(v) > 1:
        n[(label, k)] = int(v[1])
med = {k: statistics.median(v) for k, v in t.items()}
tasks, vdis = left.split()
print(f"VDI import of a {size} GiB disk, {cores} cores, medians of {reps} runs; the runtime's peak RSS "
      f"{int(before) // 1024} MiB before, {int(after) // 1024} MiB after; left on XAPI: {tasks} tasks, {vdis} VDIs")
for label, title in [("full", "unthrottled"), ("capped", f"client limited to {limit}B/s")]:
    if (label, "direct_raw") not in med:
        continue
    print(title)
    for fmt in ["raw", "vhd"]:
        d, e = med[(label, f"direct_{fmt}")], med[(label, f"edge_{fmt}")]
        size_b = n[(label, f"edge_{fmt}")]
        cpu = med[(label, f"cpu_{fmt}")] / float(hz) / (size_b / 2**30)
        print(f"  {fmt}: direct {d / 1e6:7.0f} MB/s   edge {e / 1e6:7.0f} MB/s   ratio {e / d:.2f}   "
              f"runtime CPU {cpu:.2f} s/GiB   ({size_b} bytes)")
PY
