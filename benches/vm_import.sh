#!/usr/bin/env bash
# Benchmark (not a test): VM import through the edge (POST /rest/v0/pools/<id>/vms) vs a PUT straight to the
# simulator's /import, in the same run, of the XVA of a halted VM given a SIZE_GIB disk of the simulator's synthetic
# disk-like data (default 2), uncompressed and zstd (XAPI's export of it). The edge reads every byte through its XVA
# check (tar, ova.xml, each chunk's checksum; zstd decoded to check it) and forwards the body as it came.
# Prints the median throughput (body bytes over the time from request to answer) of REPS runs, the ratio edge/direct, the runtime's CPU seconds per GiB of body and its
# peak RSS before and after (run it with two sizes to see memory flat with size). Every imported VM is destroyed
# with its disks. Loopback only; stops what it started.
set -euo pipefail
REPS=${REPS:-3}
SIZE_GIB=${SIZE_GIB:-2}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

rpc() { # method, params (JSON, without the session) -> result (JSON)
  curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":[\"$SID\"$2],\"id\":1}" | json '["result"]'
}
SR=$(rpc SR.get_by_name_label ',"Shared NFS storage"' | tr -d "[]' ")
SR_UUID=$(rpc SR.get_uuid ",\"$SR\"")
POOL=$(rpc pool.get_all '' | tr -d "[]' ")
POOL_UUID=$(rpc pool.get_uuid ",\"$POOL\"")
VM=$(rpc VM.get_by_name_label ',"Rocky Linux 8"' | tr -d "[]' ")
VM_UUID=$(rpc VM.get_uuid ",\"$VM\"")
curl -s -X POST "$SIM/_sim/vdis" -H 'content-type: application/json' \
  -d "{\"name_label\":\"bench disk\",\"size\":$((SIZE_GIB << 30)),\"seed\":9,\"attach_to\":\"$VM_UUID\"}" >/dev/null
curl -s -b "session_id=$SID" -o "$work/vm.xva" "$SIM/export?uuid=$VM_UUID"
curl -s -b "session_id=$SID" -o "$work/vm.zstd" "$SIM/export?uuid=$VM_UUID&use_compression=zstd"

# Destroys every VM named "Rocky Linux 8" but the source, with its disks.
cleanup_imports() {
  python3 - "$SIM" "$SID" "$VM" <<'PY'
import json, sys, urllib.request
sim, sid, keep = sys.argv[1:]
def rpc(method, *params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": [sid, *params], "id": 1}).encode()
    req = urllib.request.Request(sim + "/jsonrpc", body, {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))["result"]
for vm in rpc("VM.get_by_name_label", "Rocky Linux 8"):
    if vm == keep:
        continue
    vdis = [rpc("VBD.get_VDI", b) for b in rpc("VM.get_VBDs", vm) if rpc("VBD.get_type", b) == "Disk"]
    rpc("VM.destroy", vm)
    for v in vdis:
        if v != "OpaqueRef:NULL":
            rpc("VDI.destroy", v)
PY
}

# Bytes per second from request to answer (the direct import's task ends with its body), and the bytes (from the
# file: curl's size_upload stops at 2 GiB).
rate() { awk -v n="$(stat -c %s "$1")" '{printf "%.0f %.0f", n / $1, n}'; }

HWM_BEFORE=$(hwm)
: >"$work/times"
for fmt in xva zstd; do
  for _ in $(seq 1 "$REPS"); do
    echo "full direct_$fmt $(curl -s -o /dev/null -w '%{time_total}' -H 'Expect:' -b "session_id=$SID" \
      -T "$work/vm.$fmt" "$SIM/import?sr_id=$SR" | rate "$work/vm.$fmt")" >>"$work/times"
    cleanup_imports
    c0=$(cpu)
    echo "full edge_$fmt $(curl -s -o "$work/answer" -w '%{time_total}' -X POST -H 'Expect:' \
      -H "Authorization: Bearer $TOKEN" -T "$work/vm.$fmt" "$EDGE/rest/v0/pools/$POOL_UUID/vms?sr=$SR_UUID" | rate "$work/vm.$fmt")" \
      >>"$work/times"
    echo "full cpu_$fmt $(($(cpu) - c0))" >>"$work/times"
    grep -Eq '^[0-9a-f-]{36}$' "$work/answer" || { echo "the edge's import failed: $(cat "$work/answer")" >&2; exit 1; }
    cleanup_imports
  done
done
HWM_AFTER=$(hwm)
LEFT=$(curl -s "$SIM/_sim/stats" | python3 -c 'import sys, json; d = json.load(sys.stdin); print(d["tasks"])')
echo "VM import of a VM with a $SIZE_GIB GiB disk (XVA $(stat -c %s "$work/vm.xva") bytes, zstd $(stat -c %s "$work/vm.zstd")" \
  "bytes), $(nproc) cores, medians of $REPS runs; the runtime's peak RSS $((HWM_BEFORE / 1024)) MiB before," \
  "$((HWM_AFTER / 1024)) MiB after; tasks left on XAPI: $LEFT"
python3 benches/throughput.py "$work/times" "$(getconf CLK_TCK)" full unthrottled
