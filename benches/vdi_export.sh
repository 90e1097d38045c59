#!/usr/bin/env bash
# Benchmark (not a test): VDI export through the edge vs curl straight from the simulator's /export_raw_vdi, in the
# same run, on a sparse-but-nonzero synthetic disk (SIZE_GIB, default 4; 20 % zero grains, 35 % random, the rest
# text-like).
#   raw: the edge hands XAPI's body to the client untouched (pass-through, Content-Length checked by the runtime)
#   vhd: the edge reads the body through its VHD check (the structure is what proves the end)
# Prints median throughput of REPS runs, the ratio edge/direct, the runtime's CPU seconds per GiB and its peak
# RSS before and after the transfers (flat memory = the same). With THROTTLE_MBPS > 0 it repeats the comparison
# with the simulator capped at that rate (a real XAPI streams a disk at a few hundred MB/s at most) on a
# THROTTLE_GIB disk. Loopback only; stops what it started.
set -euo pipefail
REPS=${REPS:-3}
SIZE_GIB=${SIZE_GIB:-4}
THROTTLE_MBPS=${THROTTLE_MBPS:-400}
THROTTLE_GIB=${THROTTLE_GIB:-1}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

rpc() { curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' -d "$1"; }
disk() { curl -s -X POST "$SIM/_sim/vdis" -H 'content-type: application/json' \
  -d "{\"name_label\":\"bench $1 GiB\",\"size\":$(($1 << 30)),\"seed\":$1}" | json '["uuid"]'; }
speed() { curl -s -o /dev/null -w '%{speed_download} %{size_download}\n' "$@"; }

# One small export first, so that the peak RSS before counts a warmed-up instance.
SMALL=$(disk 1)
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -r 0-1048575 "$EDGE/rest/v0/vdis/$SMALL.raw"
HWM_BEFORE=$(hwm)

run() { # label uuid
  local label=$1 uuid=$2
  for fmt in raw vhd; do
    for _ in $(seq 1 "$REPS"); do
      echo "$label direct_$fmt $(speed -b "session_id=$SID" "$SIM/export_raw_vdi?vdi=$uuid&format=$fmt")" >>"$work/times"
      local c0; c0=$(cpu)
      echo "$label edge_$fmt $(speed -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vdis/$uuid.$fmt")" >>"$work/times"
      echo "$label cpu_$fmt $(( $(cpu) - c0 ))" >>"$work/times"
      if [ -n "$EDGE2" ]; then
        c0=$(cpu2)
        echo "$label edge2_$fmt $(speed -H "Authorization: Bearer $TOKEN" "$EDGE2/rest/v0/vdis/$uuid.$fmt")" >>"$work/times"
        echo "$label cpu2_$fmt $(( $(cpu2) - c0 ))" >>"$work/times"
      fi
    done
  done
}
: >"$work/times"
run full "$(disk "$SIZE_GIB")"
HWM_AFTER=$(hwm)
if [ "$THROTTLE_MBPS" -gt 0 ]; then
  curl -s -X PUT "$SIM/_sim/faults" -H 'content-type: application/json' \
    -d "{\"throttle_bytes_per_sec\":{\"/export_raw_vdi\":$((THROTTLE_MBPS * 1000000))}}"
  [ "$THROTTLE_GIB" = 1 ] && T_UUID=$SMALL || T_UUID=$(disk "$THROTTLE_GIB")
  run capped "$T_UUID"
fi
LEFT=$(curl -s "$SIM/_sim/stats" | json '["tasks"]')

echo "VDI export, $(nproc) cores, medians of $REPS runs; the runtime's peak RSS $((HWM_BEFORE / 1024)) MiB before," \
  "$((HWM_AFTER / 1024)) MiB after; tasks left on XAPI: $LEFT"
python3 benches/throughput.py "$work/times" "$(getconf CLK_TCK)" full "$SIZE_GIB GiB disk, simulator unthrottled" \
  capped "$THROTTLE_GIB GiB disk, simulator capped at $THROTTLE_MBPS MB/s"
