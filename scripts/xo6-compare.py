#!/usr/bin/env python3
"""Compares xo-edge's OpenAPI document with XO 6's published one, operation by operation.

Usage: xo6-compare.py OURS.json XO.json [--markdown]

OURS.json: what `GET /rest/v0/openapi.json` answers. XO.json: `open-api/spec/swagger.json` of the npm package
`@xen-orchestra/rest-api@0.39.0` (`npm pack @xen-orchestra/rest-api@0.39.0`). Both have paths relative to `/rest/v0`.

XO's operations on its own state (users, groups, ACLs, backups, remotes, proxies, servers: what a stateless edge in
front of one pool has none of) are left out; every other operation is a pool operation. For each: whether xo-edge
has it (XO's `{format}` paths match each of our suffixes: `.vhd`, `.raw`, `.xva`), and whether the names of the
path and query parameters, the request body's properties, and the success answer's properties match. A name only
XO has is a difference; one only xo-edge has is an addition, listed but not counted against it.
"""

import json
import sys

# XO's own state, out of scope for the edge (the split of the project's reference list of XO 6 operations).
XO_ONLY = (
    "/acl-privileges", "/acl-roles", "/backup", "/backup-archives", "/backup-jobs", "/backup-logs",
    "/backup-repositories", "/groups", "/gui-routes", "/mcp", "/proxies", "/restore", "/restore-logs",
    "/schedules", "/servers",
)
# Below /users, only the token endpoints concern a pool's credentials.
USERS_IN_SCOPE = ("/users/authentication_tokens", "/users/me/authentication_tokens/current")

METHODS = ("get", "put", "post", "delete", "patch", "head")


def in_scope(path):
    head = "/" + path.strip("/").split("/")[0]
    if head == "/users":
        return path in USERS_IN_SCOPE
    return head not in XO_ONLY


def resolve(doc, schema, depth=0):
    """Follows `$ref`s (and one level of allOf/anyOf/oneOf) to the properties a schema names."""
    if not isinstance(schema, dict) or depth > 8:
        return set()
    if "$ref" in schema:
        target = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {})
        return resolve(doc, target, depth + 1)
    names = set(schema.get("properties", {}))
    # xo-edge names XO's `$` aliases (`$PIFs` beside `PIFs`) as exact patterns: `^\$PIFs$`.
    for pattern in schema.get("patternProperties", {}):
        if pattern.startswith("^") and pattern.endswith("$"):
            names.add(pattern[1:-1].replace("\\", ""))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            names |= resolve(doc, sub, depth + 1)
    if schema.get("type") == "array":
        names |= resolve(doc, schema.get("items", {}), depth + 1)
    return names


def parameters(op):
    return {(p.get("in"), p.get("name")) for p in op.get("parameters", []) if p.get("in") in ("path", "query")}


def body_properties(doc, op):
    content = op.get("requestBody", {}).get("content", {})
    return set().union(*(resolve(doc, c.get("schema", {})) for c in content.values())) if content else set()


def answer_properties(doc, op):
    names = set()
    for code, answer in op.get("responses", {}).items():
        if str(code).startswith("2"):
            for c in answer.get("content", {}).values():
                names |= resolve(doc, c.get("schema", {}))
    return names


def our_matches(ours, path):
    """Our paths for XO's `path`: itself, or each suffix for `{format}`."""
    if "{format}" not in path:
        return [path] if path in ours["paths"] else []
    stem = path.replace(".{format}", ".")
    return sorted(p for p in ours["paths"] if p.startswith(stem) and "/" not in p[len(stem):])


def compare(ours, xo):
    rows = []
    for path in sorted(xo["paths"]):
        if not in_scope(path):
            continue
        for method in METHODS:
            theirs = xo["paths"][path].get(method)
            if theirs is None:
                continue
            matches = [p for p in our_matches(ours, path) if method in ours["paths"][p]]
            row = {"method": method.upper(), "path": path, "operationId": theirs.get("operationId", ""),
                   "present": bool(matches), "ours": matches, "missing": {}, "added": {}}
            if matches:
                mine = ours["paths"][matches[0]][method]
                their_params = {n for (_, n) in parameters(theirs)} - {"format"}
                for what, a, b in (
                    ("parameters", their_params, {n for (_, n) in parameters(mine)}),
                    ("body", body_properties(xo, theirs), body_properties(ours, mine)),
                    ("answer", answer_properties(xo, theirs), answer_properties(ours, mine)),
                ):
                    if a - b:
                        row["missing"][what] = sorted(a - b)
                    if b - a:
                        row["added"][what] = sorted(b - a)
            rows.append(row)
    return rows


def markdown(rows):
    out = ["| method | path | XO operationId | xo-edge | differences (only XO has) | additions (only xo-edge has) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        state = ", ".join(f"`{p}`" for p in r["ours"]) if r["present"] else "absent"
        missing = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["missing"].items()) or ""
        added = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["added"].items()) or ""
        out.append(f"| {r['method']} | `{r['path']}` | {r['operationId']} | {state} | {missing} | {added} |")
    return "\n".join(out)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    ours, xo = (json.load(open(a)) for a in args)
    rows = compare(ours, xo)
    present = sum(r["present"] for r in rows)
    exact = sum(r["present"] and not r["missing"] for r in rows)
    if "--markdown" in sys.argv:
        print(markdown(rows))
        print()
    print(f"{len(rows)} pool operations in XO 6's document; {present} in xo-edge's; "
          f"{exact} with no parameter, body or answer property XO has and xo-edge lacks")
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
