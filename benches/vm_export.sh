#!/usr/bin/env bash
# Benchmark (not a test): VM export as XVA, in the same run, of a halted VM with two 1 GiB sparse-but-nonzero
# disks (SIZE_GIB each; the simulator's synthetic disk-like data: 20 % zero grains, 35 % random, the rest text):
#   uncompressed: through the edge (read through its XVA check) vs curl straight from the simulator's /export
#   gzip and zstd at the edge: throughput (uncompressed bytes per second) and output size, vs native `gzip -1` and
#   `zstd -1 -T1` compressing the same XVA from a file, and zstd by XAPI itself (checked frames, passed on)
#   uncompressed again with the simulator's /export capped at THROTTLE_MBPS (a real XAPI's rate; 0 skips it)
# Prints medians of REPS runs, ratios, and the runtime's peak RSS at start, after a first export and at the end.
# Loopback only; stops what it started.
set -euo pipefail
REPS=${REPS:-3}
SIZE_GIB=${SIZE_GIB:-1}
THROTTLE_MBPS=${THROTTLE_MBPS:-400}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

HWM_START=$(hwm)
snapshots() { curl -s "$SIM/_sim/stats" | json '["vm_snapshots"]'; }
SNAPSHOTS_BEFORE=$(snapshots)
VM=$(curl -s -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms?filter=name_label:%22Empty%20VM%22&fields=uuid" | json '[0]["uuid"]')
for seed in 1 2; do
  curl -s -X POST "$SIM/_sim/vdis" -H 'content-type: application/json' \
    -d "{\"name_label\":\"bench disk $seed\",\"size\":$((SIZE_GIB << 30)),\"seed\":$seed,\"attach_to\":\"$VM\"}" >/dev/null
done
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms/$VM.xva"
HWM_BEFORE=$(hwm)
curl -s -b "session_id=$SID" -o "$work/vm.xva" "$SIM/export?uuid=$VM&use_compression=false"
XVA_SIZE=$(stat -c %s "$work/vm.xva")

: >"$work/times"
for _ in $(seq 1 "$REPS"); do
  echo "direct $(curl -s -o /dev/null -w '%{time_total} %{size_download}' -b "session_id=$SID" "$SIM/export?uuid=$VM&use_compression=false")" >>"$work/times"
  for mode in plain "gzip compress=gzip" "zstd compress=zstd&compress_at=edge" "xapi_zstd compress=zstd"; do
    set -- $mode
    c0=$(cpu)
    echo "edge_$1 $(curl -s -o /dev/null -w '%{time_total} %{size_download}' -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms/$VM.xva?${2:-}")" >>"$work/times"
    echo "cpu_$1 $(( $(cpu) - c0 )) 0" >>"$work/times"
  done
  if [ -n "$EDGE2" ]; then
    for mode in plain "zstd compress=zstd&compress_at=edge"; do
      set -- $mode
      echo "edge2_$1 $(curl -s -o /dev/null -w '%{time_total} %{size_download}' -H "Authorization: Bearer $TOKEN" "$EDGE2/rest/v0/vms/$VM.xva?${2:-}")" >>"$work/times"
    done
  fi
  for tool in "gzip -1" "zstd -1 -T1"; do
    set -- $tool
    s=$(date +%s.%N)
    $tool -c "$work/vm.xva" >"$work/out"
    echo "native_$1 $(python3 -c "import time; print(time.time() - $s)") $(stat -c %s "$work/out")" >>"$work/times"
  done
done
# At a real XAPI's rate: the simulator's /export capped at THROTTLE_MBPS, uncompressed, direct vs through the edge.
if [ "$THROTTLE_MBPS" -gt 0 ]; then
  curl -s -X PUT "$SIM/_sim/faults" -H 'content-type: application/json' \
    -d "{\"throttle_bytes_per_sec\":{\"/export\":$((THROTTLE_MBPS * 1000000))}}"
  for _ in $(seq 1 "$REPS"); do
    echo "capped_direct $(curl -s -o /dev/null -w '%{time_total} %{size_download}' -b "session_id=$SID" "$SIM/export?uuid=$VM&use_compression=false")" >>"$work/times"
    echo "capped_edge $(curl -s -o /dev/null -w '%{time_total} %{size_download}' -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms/$VM.xva")" >>"$work/times"
  done
fi
HWM_AFTER=$(hwm)
LEFT="$(curl -s "$SIM/_sim/stats" | json '["tasks"]') $(($(snapshots) - SNAPSHOTS_BEFORE))"

python3 - "$work/times" "$XVA_SIZE" "$REPS" "$HWM_BEFORE" "$HWM_AFTER" "$LEFT" "$(nproc)" "$HWM_START" "$THROTTLE_MBPS" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
path, xva, reps, before, after, left, cores, start = sys.argv[1:9]
xva = int(xva)
t, n = {}, {}
for line in open(path):
    k, secs, size = line.split()
    t.setdefault(k, []).append(float(secs))
    n[k] = int(size)
m = {k: statistics.median(v) for k, v in t.items()}
rate = lambda k: xva / m[k] / 1e6
tasks, snaps = left.split()
print(f"VM export: an XVA of {xva} bytes (two disks), {cores} cores, medians of {reps} runs; the runtime's peak RSS "
      f"{int(start) // 1024} MiB at start, {int(before) // 1024} MiB after a first export, {int(after) // 1024} MiB "
      f"after all; left on XAPI: {tasks} tasks, {snaps} new snapshots")
hz = int(sys.argv[10])
cpu = lambda k: m[f"cpu_{k}"] / hz / (xva / 2**30)
print(f"  uncompressed: direct {rate('direct'):6.0f} MB/s   edge {rate('edge_plain'):6.0f} MB/s   ratio {m['direct'] / m['edge_plain']:.2f}"
      f"   runtime CPU {cpu('plain'):.2f} s/GiB (XVA checked in the guest)")
for tool, edge in [("gzip", "edge_gzip"), ("zstd", "edge_zstd")]:
    nat = f"native_{tool}"
    print(f"  {tool}: edge {rate(edge):6.0f} MB/s, {n[edge]} bytes ({n[edge] / xva:.3f})   native {rate(nat):6.0f} MB/s, "
          f"{n[nat]} bytes ({n[nat] / xva:.3f})   speed ratio {m[nat] / m[edge]:.2f}   size ratio {n[edge] / n[nat]:.2f}")
if "capped_edge" in m:
    print(f"  uncompressed, simulator capped at {int(sys.argv[9])} MB/s: direct {rate('capped_direct'):6.0f} MB/s   "
          f"edge {rate('capped_edge'):6.0f} MB/s   ratio {m['capped_direct'] / m['capped_edge']:.2f}")
for k, what in [("edge2_plain", "uncompressed"), ("edge2_zstd", "zstd at the edge")]:
    if k in m:
        base = "edge_plain" if k == "edge2_plain" else "edge_zstd"
        print(f"  {what}, the COMPARE_WASM build: {rate(k):6.0f} MB/s   edge2/edge {m[base] / m[k]:.2f}")
print(f"  zstd by XAPI, frames checked and passed on: {rate('edge_xapi_zstd'):6.0f} MB/s, {n['edge_xapi_zstd']} bytes")
PY
