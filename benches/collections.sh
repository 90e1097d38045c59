#!/usr/bin/env bash
# Benchmark (not a test): a 10 000-VM pool listed through the edge vs straight from XAPI, in the same run.
#   edge list:   GET /rest/v0/vms?fields=name_label,power_state&filter=power_state:running (bundle, wasmtime serve),
#                the same without the filter (all VMs), and every VM in full (fields=*: XO 6's whole shape)
#   direct list: one VM.get_all_records JSON-RPC call to the simulator
#   edge object: GET /rest/v0/vms/<uuid>;  direct object: VM.get_record
# Prints the medians of REPS runs and the ratios. Loopback only; stops what it started.
set -euo pipefail
REPS=${REPS:-9}
VMS=${VMS:-10000}
SIM_ARGS="--vms $VMS"
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

rpc() { curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' -d "$1"; }
VM_REF=$(rpc "{\"jsonrpc\":\"2.0\",\"method\":\"VM.get_by_name_label\",\"params\":[\"$SID\",\"vm-05000\"],\"id\":1}" | python3 -c 'import sys, json; print(json.load(sys.stdin)["result"][0])')
VM_UUID=$(rpc "{\"jsonrpc\":\"2.0\",\"method\":\"VM.get_uuid\",\"params\":[\"$SID\",\"$VM_REF\"],\"id\":1}" | python3 -c 'import sys, json; print(json.load(sys.stdin)["result"])')

time_post() { curl -s -o /dev/null -w '%{time_total}\n' -X POST "$SIM/jsonrpc" -H 'content-type: application/json' -d "$1"; }
time_get() { curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "$1"; }
LIST="$EDGE/rest/v0/vms?fields=name_label,power_state&filter=power_state:running"
count=$(curl -s -H "Authorization: Bearer $TOKEN" "$LIST" | python3 -c 'import sys, json; print(len(json.load(sys.stdin)))')

: >"$work/times"
for _ in $(seq 1 "$REPS"); do
  echo "direct_list $(time_post "{\"jsonrpc\":\"2.0\",\"method\":\"VM.get_all_records\",\"params\":[\"$SID\"],\"id\":1}")" >>"$work/times"
  echo "edge_list $(time_get "$LIST")" >>"$work/times"
  echo "edge_list_all $(time_get "$EDGE/rest/v0/vms?fields=name_label,power_state")" >>"$work/times"
  echo "direct_object $(time_post "{\"jsonrpc\":\"2.0\",\"method\":\"VM.get_record\",\"params\":[\"$SID\",\"$VM_REF\"],\"id\":1}")" >>"$work/times"
  echo "edge_object $(time_get "$EDGE/rest/v0/vms/$VM_UUID")" >>"$work/times"
  echo "edge_full $(time_get "$EDGE/rest/v0/vms?fields=*")" >>"$work/times"
  if [ -n "$EDGE2" ]; then
    echo "edge2_list $(time_get "${LIST/$EDGE/$EDGE2}")" >>"$work/times"
    echo "edge2_list_all $(time_get "$EDGE2/rest/v0/vms?fields=name_label,power_state")" >>"$work/times"
    echo "edge2_object $(time_get "$EDGE2/rest/v0/vms/$VM_UUID")" >>"$work/times"
    echo "edge2_full $(time_get "$EDGE2/rest/v0/vms?fields=*")" >>"$work/times"
  fi
done

python3 - "$work/times" "$VMS" "$count" "$REPS" <<'PY'
import statistics, sys
path, vms, count, reps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t = {}
for line in open(path):
    k, v = line.split()
    t.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) * 1000 for k, v in t.items()}
print(f"pool: {vms} VMs; the edge listing returned {count} running VMs; medians of {reps} runs")
print(f"list   direct VM.get_all_records {m['direct_list']:8.1f} ms   edge {m['edge_list']:8.1f} ms   ratio {m['edge_list'] / m['direct_list']:.2f}")
print(f"list, no filter (all {vms})      {m['direct_list']:8.1f} ms   edge {m['edge_list_all']:8.1f} ms   ratio {m['edge_list_all'] / m['direct_list']:.2f}")
print(f"object direct VM.get_record      {m['direct_object']:8.1f} ms   edge {m['edge_object']:8.1f} ms   ratio {m['edge_object'] / m['direct_object']:.2f}")
print(f"list, every VM in full (fields=*) {m['direct_list']:7.1f} ms   edge {m['edge_full']:8.1f} ms   ratio {m['edge_full'] / m['direct_list']:.2f}")
if "edge2_list" in m:
    for k, label in [("list", "list"), ("list_all", "list, no filter"), ("object", "object"), ("full", "list, fields=*")]:
        print(f"edge2 (COMPARE_WASM) {label:16} {m['edge2_' + k]:8.1f} ms   edge / edge2 {m['edge_' + k] / m['edge2_' + k]:.2f}")
PY
