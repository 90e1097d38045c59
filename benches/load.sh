#!/usr/bin/env bash
# Benchmark (not a test), loopback only, bounded in count and time:
#   2. load: CLIENTS concurrent clients (default 200) share REQUESTS requests (default 10 000): collection queries
#      with filters and fields over a pool of EXTRA_VMS generated VMs, object GETs, and exports of a 4 MiB disk as
#      .raw and .vhd; every answer is checked; errors, latency percentiles and the request rate are printed
#   1. PARALLEL exports (default 4) of a 1 GiB disk as .vhd at once, twice: every byte counted, and the runtime's
#      peak RSS before, after the first round and after the second (flat memory: the last two equal)
# Exits non-zero on any error; leaves nothing behind (tasks are counted at the end).
set -euo pipefail
CLIENTS=${CLIENTS:-200}
REQUESTS=${REQUESTS:-10000}
PARALLEL=${PARALLEL:-4}
EXTRA_VMS=${EXTRA_VMS:-100}
SIM_ARGS="--vms $EXTRA_VMS"
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

new_disk() {
  curl -s -X POST "$SIM/_sim/vdis" -H 'content-type: application/json' \
    -d "{\"name_label\":\"load disk\",\"size\":$1,\"seed\":$2}" | json '["uuid"]'
}
VM=$(curl -s -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms?fields=uuid&limit=1" | json '[0]["uuid"]')
SMALL=$(new_disk $((4 << 20)) 1)
BIG=$(new_disk $((1 << 30)) 2)
HWM_START=$(hwm)

round() {
  local pids=() i
  for i in $(seq 1 "$PARALLEL"); do
    curl -s -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' -H "Authorization: Bearer $TOKEN" \
      "$EDGE/rest/v0/vdis/$BIG.vhd" >"$work/par.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  cat "$work"/par.*
}
start=$(date +%s.%N)
round >"$work/round1"
mid=$(date +%s.%N)
HWM_ONE=$(hwm)
round >"$work/round2"
end=$(date +%s.%N)
HWM_TWO=$(hwm)

python3 "$(dirname "$0")/load.py" "$EDGE" "$TOKEN" "$CLIENTS" "$REQUESTS" "$VM" "$SMALL" $((4 << 20))
HWM_LOAD=$(hwm)
TASKS=$(curl -s "$SIM/_sim/stats" | json '["tasks"]')
python3 - "$work/round1" "$work/round2" "$start" "$mid" "$end" "$PARALLEL" "$HWM_START" "$HWM_ONE" "$HWM_TWO" "$HWM_LOAD" "$TASKS" <<'PY'
import sys
r1, r2, start, mid, end, par, h0, h1, h2, h3, tasks = sys.argv[1:]
bad = 0
for name, path, secs in [("first", r1, float(mid) - float(start)), ("second", r2, float(end) - float(mid))]:
    rows = [line.split() for line in open(path)]
    total = sum(int(r[1]) for r in rows)
    bad += sum(1 for r in rows if r[0] != "200")
    print(f"parallel: {name} round, {par} x 1 GiB .vhd at once: {total / secs / 1e6:.0f} MB/s in all, statuses "
          f"{sorted(set(r[0] for r in rows))}, {total} bytes")
print(f"  runtime peak RSS: {int(h0) // 1024} MiB at start, {int(h1) // 1024} MiB after round one, {int(h2) // 1024} MiB "
      f"after round two, {int(h3) // 1024} MiB after the load (one instance per request in flight); tasks left on XAPI: "
      f"{tasks}")
sys.exit(1 if bad or tasks != "0" else 0)
PY
