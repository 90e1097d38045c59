#!/usr/bin/env python3
"""Schemathesis against a running xo-edge: every operation of the OpenAPI document the edge serves, with positive and
negative inputs, and the five checks of issue 21 (not_a_server_error, status_code_conformance,
content_type_conformance, response_schema_conformance, response_headers_conformance), authenticated by a token.

The document is taken from the edge itself. A copy of it gets, as the `example` of each `{id}`, the uuid of an
object that exists (the first of its collection), so that the examples phase reaches real objects and their
schemas rather than 404s; the fuzzing phase still generates ids of its own. Transfers are kept small: the run first
imports a 1 MiB disk, attaches it to a VM without disks and snapshots that VM, and those (the disk, its snapshot,
the VM, the VM's snapshot) are the examples of the disk and VM collections, so that exports stream megabytes, not
the demo pool's gigabytes.

`GET /events` is a Server-Sent Events stream that does not end: each of its cases lasts the request timeout
(`--request-timeout`, 10 s), after which Schemathesis checks the events it read. Operations on hosts and pools keep
generated ids only: an example would shut the pool's hosts down or restart their toolstack, and every later answer
would be a 503 that says nothing about the contract.

One parameter is left out of the copy, with its reason: `watch` of `GET /tasks` turns the listing into an NDJSON
stream that lasts until the client leaves; Schemathesis reads an NDJSON body to its end, so every case with it
would be a read timeout that says nothing about the contract. `tests/watch.rs` tests it through HTTP.

One operation is left out, with its reason: `DELETE /users/me/authentication_tokens/current` revokes the token the
run authenticates with (every later request would be a 401). `tests/auth.rs` tests it.

    scripts/contract.py --url http://127.0.0.1:3000 [--user root --password xapi-sim] [--examples 3]
        [--phases examples,coverage,fuzzing] [--max-time S] [--seed N] [--report FILE] [-- extra schemathesis args]

Exits with Schemathesis' status: 0 when no check failed. Prints one `contract:` line with the operations and
test cases it ran (from the JSON report).
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance," \
    "response_headers_conformance"
# Not given real ids (see above).
NO_EXAMPLE = ("/hosts/", "/pools/")
SKIPPED = ["RevokeCurrentAuthenticationToken"]


def request(url, method="GET", auth=None):
    req = urllib.request.Request(url, method=method)
    if auth:
        req.add_header("Authorization", auth)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def send(url, method, auth, body=None, content_type="application/json"):
    req = urllib.request.Request(url, method=method, data=body)
    req.add_header("Authorization", auth)
    req.add_header("Accept", "application/json")
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def small_objects(base, auth, sr):
    """A 1 MiB disk imported on `sr` and attached to the first halted VM without disks, which is then snapshotted:
    their uuids, by collection."""
    vdi = send(f"{base}/srs/{sr}/vdis?raw&name_label=contract", "POST", auth, b"\0" * (1 << 20),
               "application/octet-stream")["id"]
    vms = request(f"{base}/vms?fields=uuid,$VBDs,power_state", auth=auth)
    vm = next((v["uuid"] for v in vms if not v.get("$VBDs") and v["power_state"] == "Halted"), None)
    if vm is None:
        raise SystemExit("no halted VM without disks: run against a fresh simulator (`xapi-sim --demo`)")
    send(f"{base}/vbds", "POST", auth, json.dumps({"VM": vm, "VDI": vdi}).encode())
    snap = send(f"{base}/vms/{vm}/actions/snapshot?sync", "POST", auth,
                json.dumps({"name_label": "contract"}).encode())["id"]
    disks = request(f"{base}/vm-snapshots/{snap}/vdis?fields=uuid", auth=auth)
    return {"vdis": vdi, "vms": vm, "vm-snapshots": snap, "vdi-snapshots": disks[0]["uuid"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="xapi-sim")
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--phases", default="examples,coverage,fuzzing")
    ap.add_argument("--max-time", type=int)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--workers", default="2")
    ap.add_argument("--report")
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args()
    base = a.url.rstrip("/") + "/rest/v0"
    basic = "Basic " + base64.b64encode(f"{a.user}:{a.password}".encode()).decode()
    token = request(base + "/users/authentication_tokens", "POST", basic)["token"]["id"]
    bearer = "Bearer " + token
    doc = request(base + "/openapi.json")

    # One existing object per collection.
    first = {}
    for path in request(base, auth=bearer):
        coll = path.rsplit("/", 1)[1]
        objects = request(f"{base}/{coll}?fields=uuid&limit=1", auth=bearer)
        if objects:
            first[coll] = objects[0]["uuid"]
    srs = request(f"{base}/srs?fields=uuid,content_type", auth=bearer)
    first.update(small_objects(base, bearer, next(sr["uuid"] for sr in srs if sr["content_type"] == "user")))
    given = 0
    for op in doc["paths"]["/tasks"].values():
        op["parameters"] = [p for p in op.get("parameters", []) if p["name"] != "watch"]
    for path, item in doc["paths"].items():
        coll = path.split("/")[1]
        if coll not in first or path.startswith(NO_EXAMPLE):
            continue
        for op in item.values():
            for p in op.get("parameters", []):
                if p["in"] == "path" and p["name"] == "id":
                    p["example"] = first[coll]
                    given += 1

    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "openapi.json")
        with open(spec, "w") as f:
            json.dump(doc, f)
        report = os.path.abspath(a.report) if a.report else os.path.join(tmp, "report.json")
        cmd = [
            sys.executable, "-m", "schemathesis.cli", "run", spec, "--url", base,
            "--header", f"Authorization: {bearer}",
            "--checks", CHECKS, "--max-examples", str(a.examples), "--phases", a.phases,
            "--workers", a.workers, "--seed", str(a.seed), "--generation-database", "none",
            "--request-timeout", "10", "--no-color", "--report", "json", "--report-json-path", report,
            "--suppress-health-check", "all",
        ]
        for op in SKIPPED:
            cmd += ["--exclude-operation-id", op]
        if a.max_time:
            cmd += ["--max-time", str(a.max_time)]
        cmd += a.rest
        # In the temporary folder: Schemathesis keeps a cache of its own in its working directory.
        status = subprocess.run(cmd, cwd=tmp, env={**os.environ, "SCHEMATHESIS_HOOKS": ""}).returncode
        try:
            with open(report) as f:
                r = json.load(f)
            summary = json.dumps({k: r[k] for k in r if k in ("operations", "test_cases", "summary")})[:400]
        except (OSError, ValueError, KeyError):
            summary = "(no report)"
    print(f"contract: {len(doc['paths'])} paths, {given} ids given real examples, status {status}, {summary}")
    return status


if __name__ == "__main__":
    sys.exit(main())
