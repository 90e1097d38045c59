#!/usr/bin/env python3
"""Writes xapi-sim's datamodel table (../src/datamodel.json) from XAPI's published datamodel.

Input: doc/data/xenapi.json of xapi-project/xen-api (the file its API reference is generated from), given as the
first argument; the second is the commit it was read at. Output: for each class the simulator serves, every field
with its XenAPI type and lifecycle state, and the values of every enum those fields use. Names, types and states
only: no descriptions.

    python3 xapi-sim/datamodel/extract.py path/to/xenapi.json <commit> > xapi-sim/src/datamodel.json
"""
import json
import re
import sys

SERVED = ["pool", "host", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VDI", "SR", "PBD",
          "network", "VIF", "PIF", "PIF_metrics", "Bond", "VLAN", "message", "task", "subject", "role", "session",
          "SM", "PCI", "PGPU", "GPU_group", "Certificate"]


# Fields newer than the xenapi.json read (it is regenerated at releases), which real pools return: from the
# datamodel source at the same commit (ocaml/idl/datamodel_pool.ml, datamodel.ml), with the release that
# ocaml/idl/datamodel_lifecycle.ml gives them.
NEWER = [
    ("pool", "recommendations", "(string -> string) map", "24.19.1"),
    ("pool", "license_server", "(string -> string) map", "25.6.0"),
    ("pool", "ha_reboot_vm_on_internal_shutdown", "bool", "25.16.0"),
    ("VM_guest_metrics", "netbios_name", "(string -> string) map", "24.28.0"),
    ("SM", "supported_image_formats", "enum image_format_type set", "26.15.0"),
]

# Enums only the newer fields use (ocaml/idl/datamodel.ml, module SM, `formats`).
NEWER_ENUMS = {"image_format_type": ["raw", "vhd", "qcow2"]}


def main():
    model = {c["name"]: c for c in json.load(open(sys.argv[1]))}
    enum_values = {}
    for c in model.values():
        for e in c.get("enums", []):
            enum_values[e["name"]] = [v["name"] for v in e["values"]]
    classes, enums = {}, {}
    for name in SERVED:
        fields = {}
        for f in model[name]["fields"]:
            fields[f["name"]] = [f["type"], f["lifecycle"]["state"].removesuffix("_s")]
            for e in re.findall(r"enum (\w+)", f["type"]):
                enums[e] = enum_values[e]
        for cls, field, ty, release in NEWER:
            if cls == name and field not in fields:
                fields[field] = [ty, "Prototyped " + release]
                for e in re.findall(r"enum (\w+)", ty):
                    enums[e] = enum_values.get(e) or NEWER_ENUMS[e]
        classes[name] = fields
    out = {
        "source": "xapi-project/xen-api doc/data/xenapi.json at " + sys.argv[2],
        "classes": classes,
        "enums": dict(sorted(enums.items())),
    }
    # One line per field and per enum, so that a datamodel update reads as a small diff.
    w = sys.stdout.write
    w('{\n "source": %s,\n "classes": {\n' % json.dumps(out["source"]))
    for i, (name, fields) in enumerate(classes.items()):
        w('  %s: {\n' % json.dumps(name))
        w(",\n".join('   %s: %s' % (json.dumps(k), json.dumps(v)) for k, v in fields.items()))
        w('\n  }%s\n' % ("," if i + 1 < len(classes) else ""))
    w(' },\n "enums": {\n')
    w(",\n".join('  %s: %s' % (json.dumps(k), json.dumps(v)) for k, v in out["enums"].items()))
    w('\n }\n}\n')


main()
