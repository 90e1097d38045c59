#!/usr/bin/env bash
# Benchmark (not a test): the monitoring reads of a pool of VMS generated VMs (default 1 000, half of them running)
# through the edge, against the XAPI calls a client would make for the same answer itself, straight to the
# simulator, in the same run (medians of N sequential requests, a fresh connection each, loopback):
#   - a VM's stats (one /rrd_updates with vm_uuid)            vs that /rrd_updates
#   - a host's stats and the pool's stats                     vs /rrd_updates with host=true (and the host's uuid as
#                                                                vm_uuid, which leaves the VMs out, as the edge asks)
#   - the global dashboard and the pool's dashboard           vs the get_all_records of host, host_metrics, VM and
#                                                                SR and the updater plugin on each host (and the
#                                                                alarms and /rrd_updates for the pool's)
#   - a VM's dashboard                                        vs the VM's record, its metrics, guest metrics and
#                                                                host, and the alarms about it
#   - the pool's Prometheus metrics                           vs /rrd_updates with host=true
# Each /rrd_updates is read on the host it belongs to (a VM's on the host it runs on; a pool's on every host, one
# after the other on the direct side), as XAPI serves them.
# The direct side only fetches (JSON parsed, nothing computed): the ratio is what the edge's mapping and its own
# trip cost. Loopback only; stops what it started.
set -euo pipefail
N=${N:-20}
VMS=${VMS:-1000}
SIM_ARGS="--vms $VMS"
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

python3 - "$EDGE" "$SIM" "$TOKEN" "$SID" "$N" <<'PY'
import http.client, json, statistics, sys, time, urllib.parse
edge, sim, token, sid, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def request(base, method, path, body=None, headers=None):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, (path, r.status, data[:200])
    return data

def edge_get(path):
    return json.loads(request(edge, "GET", path, headers={"Authorization": f"Bearer {token}"}) or b"null") \
        if not path.endswith("/metrics") else request(edge, "GET", path, headers={"Authorization": f"Bearer {token}"})

def rpc(method, *params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": [sid, *params], "id": 1})
    out = json.loads(request(sim, "POST", "/jsonrpc", body, {"content-type": "application/json"}))
    assert "result" in out, out
    return out["result"]

def rrd(query, at=None):
    """/rrd_updates of the host at `at` (a base URL; the master by default): XAPI serves each host's RRDs there."""
    return json.loads(request(at or sim, "GET", f"/rrd_updates?{query}&json=true&cf=AVERAGE", headers={"cookie": f"session_id={sid}"}))

port = urllib.parse.urlparse(sim).port
host_records = rpc("host.get_all_records")
url_of = {r: f"http://{h['address']}:{port}" for r, h in host_records.items()}
uuid_of = {r: h["uuid"] for r, h in host_records.items()}

now = int(time.time())
vms = edge_get("/rest/v0/vms?fields=uuid,power_state&filter=power_state:Running")
vm = vms[0]["uuid"]
vm_host_url = url_of[rpc("VM.get_resident_on", rpc("VM.get_by_uuid", vm))]
host_ref = sorted(host_records)[0]
host, host_url = uuid_of[host_ref], url_of[host_ref]
pool = edge_get("/rest/v0/pools?fields=uuid")[0]["uuid"]
nvms = len(edge_get("/rest/v0/vms"))

def direct_dashboard(pool_rrd=False):
    hosts = rpc("host.get_all_records")
    for cls in ["host_metrics", "VM", "SR"]:
        rpc(f"{cls}.get_all_records")
    if pool_rrd:
        rpc("message.get_all_records_where", 'field "name"="ALARM"')
    for r in hosts:
        rpc("host.call_plugin", r, "updater.py", "check_update", {})
    if pool_rrd:
        for url in url_of.values():
            rrd(f"start={now - 30}&interval=5&host=true", url)

def direct_vm_dashboard():
    r = rpc("VM.get_by_uuid", vm)
    rec = rpc("VM.get_record", r)
    for cls, field in [("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics"), ("host", "resident_on")]:
        if rec[field] != "OpaqueRef:NULL":
            rpc(f"{cls}.get_record", rec[field])
    rpc("message.get_all_records_where", f'field "obj_uuid"="{vm}" and field "name"="ALARM"')

cases = [
    ("VM stats (seconds)", lambda: edge_get(f"/rest/v0/vms/{vm}/stats"),
     lambda: rrd(f"start={now - 595}&interval=5&host=false&vm_uuid={vm}", vm_host_url)),
    ("host stats (minutes)", lambda: edge_get(f"/rest/v0/hosts/{host}/stats?granularity=minutes"),
     lambda: rrd(f"start={now - 7140}&interval=60&host=true&vm_uuid={host}", host_url)),
    ("pool stats (seconds)", lambda: edge_get(f"/rest/v0/pools/{pool}/stats"),
     lambda: [rrd(f"start={now - 595}&interval=5&host=true&vm_uuid={uuid_of[r]}", url_of[r]) for r in url_of]),
    ("global dashboard", lambda: edge_get("/rest/v0/dashboard"), lambda: direct_dashboard()),
    ("pool dashboard", lambda: edge_get(f"/rest/v0/pools/{pool}/dashboard"), lambda: direct_dashboard(True)),
    ("VM dashboard", lambda: edge_get(f"/rest/v0/vms/{vm}/dashboard"), direct_vm_dashboard),
    ("pool Prometheus metrics", lambda: edge_get(f"/rest/v0/pools/{pool}/metrics"),
     lambda: [rrd(f"start={now - 30}&interval=5&host=true", url) for url in url_of.values()]),
]
print(f"pool: {nvms} VMs ({len(vms)} running); medians of {n} sequential requests, a fresh connection each")
print(f"| read | direct to the simulator | through xo-edge | ratio (edge / direct) |")
print(f"|---|---|---|---|")
for label, via_edge, direct in cases:
    via_edge(); direct()  # warm
    def med(f):
        times = []
        for _ in range(n):
            t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000
    e, d = med(via_edge), med(direct)
    print(f"| {label} | {d:.1f} ms | {e:.1f} ms | {e / d:.2f} |")
PY
