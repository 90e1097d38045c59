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
REPS=${REPS:-3}
SIZE_GIB=${SIZE_GIB:-2}
LIMIT=${LIMIT-400M}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

call() { # method, params (JSON, without the session) -> result
  curl -s -X POST "$SIM/jsonrpc" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":[\"$SID\"$2],\"id\":1}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["result"])'
}
SR=$(call SR.get_by_name_label ',"Shared NFS storage"' | tr -d "[]'")
SR_UUID=$(call SR.get_uuid ",\"$SR\"")
SIZE=$((SIZE_GIB << 30))

# The input files: the simulator's own exports of a synthetic disk.
SRC=$(curl -s -X POST "$SIM/_sim/vdis" -H 'content-type: application/json' \
  -d "{\"name_label\":\"bench source\",\"size\":$SIZE,\"seed\":9}" | python3 -c 'import sys, json; print(json.load(sys.stdin)["uuid"])')
for fmt in raw vhd; do curl -s -b "session_id=$SID" -o "$work/disk.$fmt" "$SIM/export_raw_vdi?vdi=$SRC&format=$fmt"; done

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
      if [ -n "$EDGE2" ]; then
        c0=$(cpu2)
        echo "$label edge2_$fmt $(curl -s "$@" -o "$work/answer" -w '%{speed_upload} %{size_upload}' \
          -X POST -H "Authorization: Bearer $TOKEN" -T "$work/disk.$fmt" "$EDGE2/rest/v0/srs/$SR_UUID/vdis$q")" >>"$work/times"
        echo "$label cpu2_$fmt $(($(cpu2) - c0))" >>"$work/times"
        destroy_uuid "$(cat "$work/answer")"
      fi
    done
  done
}
: >"$work/times"
run full
HWM_AFTER=$(hwm)
[ -n "$LIMIT" ] && run capped --limit-rate "$LIMIT"
LEFT=$(curl -s "$SIM/_sim/stats" | python3 -c 'import sys, json; d = json.load(sys.stdin); print(d["tasks"], d["vdis"])')

read -r TASKS_LEFT VDIS_LEFT <<<"$LEFT"
echo "VDI import of a $SIZE_GIB GiB disk, $(nproc) cores, medians of $REPS runs; the runtime's peak RSS" \
  "$((HWM_BEFORE / 1024)) MiB before, $((HWM_AFTER / 1024)) MiB after; left on XAPI: $TASKS_LEFT tasks, $VDIS_LEFT VDIs"
python3 benches/throughput.py "$work/times" "$(getconf CLK_TCK)" full unthrottled capped "client limited to ${LIMIT:-none}B/s"
