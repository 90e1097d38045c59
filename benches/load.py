"""Bounded load against the edge: CLIENTS threads, each with its own keep-alive connection, share REQUESTS requests
drawn in a fixed mix (collection queries with filters and fields, object GETs, small disk exports as .raw and .vhd).
Every answer must be 200 with the expected length or JSON shape; prints errors, p50/p90/p99/max latency per kind,
and the overall request rate. Loopback only.

Usage: load.py EDGE_URL TOKEN CLIENTS REQUESTS VM_UUID DISK_UUID DISK_SIZE
"""

import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse

edge, token, clients, total, vm, disk, disk_size = sys.argv[1:8]
clients, total, disk_size = int(clients), int(total), int(disk_size)
host = urllib.parse.urlparse(edge)

MIX = [
    ("list", 40, "/rest/v0/vms?fields=name_label,power_state&filter=power_state:Running"),
    ("list", 0, "/rest/v0/vms?fields=*&limit=50"),
    ("list", 0, "/rest/v0/vdis?fields=name_label,size&filter=size:%3E1000000"),
    ("object", 35, f"/rest/v0/vms/{vm}"),
    ("export_raw", 15, f"/rest/v0/vdis/{disk}.raw"),
    ("export_vhd", 10, f"/rest/v0/vdis/{disk}.vhd"),
]
LISTS = [m[2] for m in MIX if m[0] == "list"]

rng = random.Random(42)
plan = []
for _ in range(total):
    kind, path = rng.choices([(m[0], m[2]) for m in MIX if m[1]], weights=[m[1] for m in MIX if m[1]])[0]
    if kind == "list":
        path = rng.choice(LISTS)
    plan.append((kind, path))

lock = threading.Lock()
next_index = 0
results = []  # (kind, seconds, ok, why)


def check(kind, status, body):
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if kind == "export_raw" and len(body) != disk_size:
        return f"raw export of {len(body)} bytes"
    if kind == "export_vhd" and (len(body) < disk_size // 64 or body[:8] != b"conectix"):
        return f"vhd export of {len(body)} bytes"
    if kind in ("list", "object"):
        value = json.loads(body)
        if kind == "list" and not isinstance(value, list):
            return "list answer is not an array"
        if kind == "object" and value.get("uuid") != vm:
            return "object answer is another object"
    return None


def worker():
    global next_index
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        with lock:
            if next_index >= total:
                break
            kind, path = plan[next_index]
            next_index += 1
        start = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            why = check(kind, r.status, body)
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            why = f"{type(e).__name__}: {e}"
            conn.close()
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
        elapsed = time.perf_counter() - start
        with lock:
            results.append((kind, elapsed, why is None, why))
    conn.close()


began = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - began

errors = [r for r in results if not r[2]]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


print(f"load: {len(results)} requests from {clients} concurrent clients in {wall:.1f} s = {len(results) / wall:.0f} req/s;"
      f" errors: {len(errors)}")
for kind in ["list", "object", "export_raw", "export_vhd", None]:
    times = [r[1] * 1000 for r in results if kind is None or r[0] == kind]
    if times:
        label = kind or "all"
        print(f"  {label:<11} n={len(times):>5}  p50 {pct(times, 50):7.1f} ms  p90 {pct(times, 90):7.1f} ms"
              f"  p99 {pct(times, 99):7.1f} ms  max {max(times):7.1f} ms  mean {statistics.mean(times):7.1f} ms")
for e in errors[:5]:
    print(f"  error: {e[0]}: {e[3]}")
sys.exit(1 if errors or len(results) != total else 0)
