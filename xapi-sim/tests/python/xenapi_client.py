"""Drives the simulator with the official XenAPI Python client (XML-RPC), unchanged.

Usage: python xenapi_client.py http://127.0.0.1:PORT
"""
import sys

import XenAPI

url = sys.argv[1]
session = XenAPI.Session(url)
session.xenapi.login_with_password("root", "xapi-sim", "1.0", "xo-edge-xenapi-check")
x = session.xenapi

# Introspection, as XenAPI.py passes it straight to XML-RPC: XAPI answers a bare array of every method.
methods = session.system.listMethods()
assert isinstance(methods, list) and "VM.get_all_records" in methods and "VDI.create" in methods, methods[:5]
assert methods == getattr(session, "system.listMethods")(session.handle), "the same, whatever the arguments"

vms = x.VM.get_all_records()
names = {v["name_label"] for v in vms.values()}
assert len(vms) > 10, len(vms)
assert "XOA \U0001F3B7" in names, names
running = [v for v in vms.values() if v["power_state"] == "Running" and not v["is_control_domain"]]
assert running and all(isinstance(v["VCPUs_max"], str) for v in vms.values()), "int64 arrive as strings"

srs = x.SR.get_all_records()
sr = next(r for r, v in srs.items() if v["name_label"] == "Shared NFS storage")
vdi = x.VDI.create({
    "name_label": "created by XenAPI.py",
    "name_description": "",
    "SR": sr,
    "virtual_size": str(1 << 30),
    "type": "user",
    "sharable": False,
    "read_only": False,
    "other_config": {},
})
assert x.VDI.get_virtual_size(vdi) == str(1 << 30)
assert x.VDI.get_name_label(vdi) == "created by XenAPI.py"
x.VDI.destroy(vdi)
try:
    x.VDI.get_record(vdi)
    raise AssertionError("destroyed VDI still readable")
except XenAPI.Failure as e:
    assert e.details[0] == "HANDLE_INVALID", e.details

try:
    x.VM.start(next(iter(r for r, v in vms.items() if v["name_label"] == "Debian 12 web")), False, False)
    raise AssertionError("starting a running VM succeeded")
except XenAPI.Failure as e:
    assert e.details[0] == "VM_BAD_POWER_STATE", e.details

ref = session.handle
x.session.logout()
# The old session ref is now invalid: call through the raw XML-RPC proxy to see XAPI's answer.
answer = getattr(session, "VM.get_all")(ref)
assert answer["Status"] == "Failure" and answer["ErrorDescription"][0] == "SESSION_INVALID", answer
print("XenAPI client OK")
