#!/usr/bin/env bash
# Benchmark (not a test): the latency of writes through the edge (the bundle under wasmtime serve) against the same
# XAPI calls made directly over JSON-RPC, in the same run, on the demo simulator:
#   - a VM power action with ?sync (edge: POST …/actions/<start|hard_shutdown>?sync; direct: Async.VM.<…>, then
#     event.from on the task until it ends, task.get_record, task.destroy: what a careful script does),
#   - the same action answered 202 (edge: the task's Location; direct: Async.VM.<…> and task.get_uuid),
#   - a PATCH of name_label (edge: PATCH; direct: VM.get_by_uuid and VM.set_name_label),
#   - a host action with ?sync, one XAPI call (edge: POST …/hosts/<id>/actions/<disable|enable>?sync; direct:
#     Async.host.<…>, event.from until done, task.get_record, task.destroy),
#   - a plan with ?sync (edge: POST …/pools/<id>/actions/create_internal_network?sync, its own task made, progressed
#     and ended; direct: network.create alone, what a script without a task does), each network destroyed after.
# Medians of N alternating runs (the VM is started and shut down in turn), and the ratio edge / direct.
# Loopback only; stops what it started.
set -euo pipefail
N=${N:-40}
SIM_ARGS="--demo"
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

VM=$(curl -s -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/vms?fields=uuid&filter=name_label:Rocky" | json '[0]["uuid"]')
HOST=$(curl -s -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/hosts?fields=uuid&filter=name_label:xcp-host2" | json '[0]["uuid"]')
POOL=$(curl -s -H "Authorization: Bearer $TOKEN" "$EDGE/rest/v0/pools?fields=uuid" | json '[0]["uuid"]')

python3 - "$TOKEN" "$VM" "$N" "$EDGE" "$SIM" "$HOST" "$POOL" <<'PY'
import http.client, json, statistics, sys, time, urllib.parse
token, vm, n, edge, sim, host, pool = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]

def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)

e, x = conn(edge), conn(sim)

def edge_req(method, path, body=b""):
    e.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    r = e.getresponse(); data = r.read()
    assert r.status < 300, (method, path, r.status, data)
    return data

def rpc(method, *params):
    x.request("POST", "/jsonrpc", body=json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}),
              headers={"content-type": "application/json"})
    reply = json.loads(x.getresponse().read())
    assert "error" not in reply or reply["error"] is None, (method, reply)
    return reply["result"]

sid = rpc("session.login_with_password", "root", "xapi-sim", "1.0", "bench")
ref = rpc("VM.get_by_uuid", sid, vm)

def direct_sync(op, cls="VM", obj=None):
    obj = ref if obj is None else obj
    task = rpc(f"Async.{cls}.{op}", sid, obj, *([False, False] if op == "start" else []))
    token_ = ""
    while True:
        rec = rpc("task.get_record", sid, task)
        if rec["status"] != "pending":
            break
        token_ = rpc("event.from", sid, [f"task/{task}"], token_, 30.0)["token"]
    rpc("task.destroy", sid, task)
    assert rec["status"] == "success", rec

def direct_async(op):
    task = rpc(f"Async.VM.{op}", sid, ref, *([False, False] if op == "start" else []))
    rpc("task.get_uuid", sid, task)
    return task

def wait_direct(task):
    while rpc("task.get_status", sid, task) == "pending":
        time.sleep(0.005)
    rpc("task.destroy", sid, task)

def timed(f):
    t = time.perf_counter(); f(); return (time.perf_counter() - t) * 1000

rows = []
# ?sync actions: each round is edge start, direct hard_shutdown, direct start, edge hard_shutdown (the VM starts
# halted and ends halted), so both sides time the same operations.
es, ds = [], []
for i in range(n):
    es.append(timed(lambda: edge_req("POST", f"/rest/v0/vms/{vm}/actions/start?sync")))
    ds.append(timed(lambda: direct_sync("hard_shutdown")))
    ds.append(timed(lambda: direct_sync("start")))
    es.append(timed(lambda: edge_req("POST", f"/rest/v0/vms/{vm}/actions/hard_shutdown?sync")))
rows.append(("VM action, ?sync (start / hard_shutdown)", es, ds))
# Answered at once (202 / the task ref); the wait for the task is outside the timing.
def halted(want):
    while (rpc("VM.get_power_state", sid, ref) == "Halted") != want:
        time.sleep(0.005)
es, ds = [], []
for i in range(n):
    es.append(timed(lambda: edge_req("POST", f"/rest/v0/vms/{vm}/actions/start")))
    halted(False)
    task = [None]
    ds.append(timed(lambda: task.__setitem__(0, direct_async("hard_shutdown"))))
    wait_direct(task[0])
    ds.append(timed(lambda: task.__setitem__(0, direct_async("start"))))
    wait_direct(task[0])
    es.append(timed(lambda: edge_req("POST", f"/rest/v0/vms/{vm}/actions/hard_shutdown")))
    halted(True)
rows.append(("VM action, answered at once (202)", es, ds))
# PATCH name_label.
es, ds = [], []
for i in range(n):
    es.append(timed(lambda: edge_req("PATCH", f"/rest/v0/vms/{vm}", json.dumps({"name_label": f"edge {i}"}).encode())))
    ds.append(timed(lambda: rpc("VM.set_name_label", sid, rpc("VM.get_by_uuid", sid, vm), f"direct {i}")))
rows.append(("PATCH name_label", es, ds))
# A host action, one XAPI call: disable and enable in turn on both sides.
href = rpc("host.get_by_uuid", sid, host)
es, ds = [], []
for i in range(n):
    es.append(timed(lambda: edge_req("POST", f"/rest/v0/hosts/{host}/actions/disable?sync")))
    ds.append(timed(lambda: direct_sync("enable", "host", href)))
    ds.append(timed(lambda: direct_sync("disable", "host", href)))
    es.append(timed(lambda: edge_req("POST", f"/rest/v0/hosts/{host}/actions/enable?sync")))
rows.append(("host action, ?sync (disable / enable)", es, ds))
# A plan (its own task, steps, end) against the one call a script without a task makes.
es, ds = [], []
made = []
for i in range(n):
    body = json.dumps({"name": f"edge {i}"}).encode()
    es.append(timed(lambda: made.append(json.loads(edge_req("POST", f"/rest/v0/pools/{pool}/actions/create_internal_network?sync", body))["id"])))
    ds.append(timed(lambda: made.append(rpc("network.get_uuid", sid, rpc("network.create", sid, {"name_label": f"direct {i}", "name_description": "", "MTU": 1500, "other_config": {}})))))
    for uuid in made:
        rpc("network.destroy", sid, rpc("network.get_by_uuid", sid, uuid))
    made.clear()
rows.append(("plan, ?sync (create_internal_network) vs network.create", es, ds))
print(f"| write (median of {n}, ms) | edge | XAPI directly | edge / direct |")
print("|---|---|---|---|")
for label, es, ds in rows:
    me, md = statistics.median(es), statistics.median(ds)
    print(f"| {label} | {me:.2f} | {md:.2f} | {me / md:.2f} |")
PY
