"""Checks the ova.xml of XVAs with Python's own XML-RPC parser (xmlrpc.client), independent of the simulator.

XAPI writes ova.xml with rpclib's Xmlrpc.to_string (ocaml/xapi/export.ml: `Xmlrpc.to_string (rpc_of_header
header)`), whose encoding of each Rpc value is (ocaml-rpc src/lib/xmlrpc.ml, add_value): Int (int64) as an
untyped <value>N</value> (a string to any XML-RPC parser), Float as <double>, Bool as <boolean>, DateTime as
<dateTime.iso8601>, String as an untyped value, Enum as <array>, Dict as <struct>. The version struct
(ocaml/xapi/importexport.ml, rpc_of_version) holds five strings and three Rpc.Int (xapi_major, xapi_minor,
export_vsn); each object's snapshot is the class's record, typed by the datamodel.

Usage: python3 ova_types.py datamodel.json file.xva... ; prints "ova.xml types OK (N objects)" or exits 1.
"""
import json
import sys
import tarfile
import xmlrpc.client


def parse_value(xml):
    # xmlrpc.client parses a response; ova.xml is one bare <value>.
    doc = "<?xml version='1.0'?><methodResponse><params><param>%s</param></params></methodResponse>" % xml
    (value,), _ = xmlrpc.client.loads(doc, use_builtin_types=False)
    return value


def is_int_text(v):
    return isinstance(v, str) and v.lstrip("-").isdigit()


def type_problem(ty, v, enums):
    if ty.endswith(" set"):
        if not isinstance(v, list):
            return "not an array"
        for x in v:
            p = type_problem(ty[: -len(" set")], x, enums)
            if p:
                return p
        return None
    if ty.endswith(" map"):
        if not isinstance(v, dict):
            return "not a struct"
        value_ty = ty[1:-len(") map")].split(" -> ", 1)[1]
        for x in v.values():
            p = type_problem(value_ty, x, enums)
            if p:
                return p
        return None
    if ty.endswith(" ref"):
        # Refs are rewritten to the archive's ids (Ref:N) or the null ref.
        return None if isinstance(v, str) else "not a string"
    if ty.startswith("enum "):
        return None if isinstance(v, str) and v in enums[ty[5:]] else "%r not in enum %s" % (v, ty[5:])
    expected = {
        "int": is_int_text,
        "float": lambda x: isinstance(x, float),
        "bool": lambda x: isinstance(x, bool),
        "datetime": lambda x: isinstance(x, xmlrpc.client.DateTime),
        "string": lambda x: isinstance(x, str),
    }.get(ty, lambda x: True)
    return None if expected(v) else "%r (%s) is not XAPI's encoding of %s" % (v, type(v).__name__, ty)


def main():
    model = json.load(open(sys.argv[1]))
    problems, objects = [], 0
    for path in sys.argv[2:]:
        with tarfile.open(path) as tar:
            first = tar.next()
            assert first.name == "ova.xml", first.name
            header = parse_value(tar.extractfile(first).read().decode())
        version = header["version"]
        for k in ["hostname", "date", "product_version", "product_brand", "build_number"]:
            if not isinstance(version.get(k), str):
                problems.append("%s: version.%s is %r" % (path, k, version.get(k)))
        for k in ["xapi_major", "xapi_minor", "export_vsn"]:
            if not is_int_text(version.get(k)):
                problems.append("%s: version.%s is %r, not rpclib's untyped Int" % (path, k, version.get(k)))
        for obj in header["objects"]:
            objects += 1
            cls, snapshot = obj["class"], obj["snapshot"]
            fields = model["classes"][cls]
            for name, (ty, _state) in fields.items():
                if name not in snapshot:
                    problems.append("%s: %s.%s missing" % (path, cls, name))
                    continue
                p = type_problem(ty, snapshot[name], model["enums"])
                if p:
                    problems.append("%s: %s.%s: %s" % (path, cls, name, p))
            for name in snapshot:
                if name not in fields:
                    problems.append("%s: %s.%s is not in the datamodel" % (path, cls, name))
    if problems:
        print("\n".join(problems[:50]))
        sys.exit(1)
    print("ova.xml types OK (%d objects)" % objects)


main()
