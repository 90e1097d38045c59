//! The OpenAPI 3.1 document of the REST API, generated from the route tables the app serves, so that it cannot
//! drift from them: the `api` component's table ([`crate::rest::router::described`], every collection and action
//! spelled out), the routes `spin.toml` gives the other components ([`OUTSIDE`], checked against the manifest
//! itself), and the few routes the `api` component answers before its table ([`FRONT`]). Request bodies of actions
//! come from the schemas the actions check their bodies with ([`crate::rest::actions::schema`]).
//!
//! Paths are relative to the server URL `/rest/v0`, as in XO 6's document, so the two compare path for path.
//! Served by `GET /rest/v0/docs/swagger.json` (XO's path) and `GET /rest/v0/openapi.json`, without authentication.

use crate::objects::schema;
use crate::rest::router::{self, Described, Op};
use serde_json::{json, Map, Value};

/// What a route outside the `api` component's table does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /users/authentication_tokens` (Basic credentials).
    TokenCreate,
    /// `DELETE /users/me/authentication_tokens/current`.
    TokenRevoke,
    /// A disk's contents, `.vhd` or `.raw`.
    DiskExport,
    /// Into an existing disk.
    DiskImport,
    /// A new disk on an SR.
    DiskImportNew,
    /// A VM, snapshot or template as an XVA.
    VmExport,
    /// An XVA into a pool.
    VmImport,
    /// A host's `audit.txt` or `logs.tgz`.
    HostFile,
}

/// The routes `spin.toml` gives the `tokens` and `transfers` components, with their methods (a route is
/// `spin.toml`'s, so a unit test holds the two together).
pub const OUTSIDE: &[(&str, &[&str], Kind)] = &[
    ("/rest/v0/users/authentication_tokens", &["POST"], Kind::TokenCreate),
    ("/rest/v0/users/me/authentication_tokens/current", &["DELETE"], Kind::TokenRevoke),
    ("/rest/v0/pools/:id/vms", &["POST"], Kind::VmImport),
    ("/rest/v0/hosts/:id/audit.txt", &["GET"], Kind::HostFile),
    ("/rest/v0/hosts/:id/logs.tgz", &["GET"], Kind::HostFile),
    ("/rest/v0/vms/:id.xva", &["GET", "HEAD"], Kind::VmExport),
    ("/rest/v0/vm-snapshots/:id.xva", &["GET", "HEAD"], Kind::VmExport),
    ("/rest/v0/vm-templates/:id.xva", &["GET", "HEAD"], Kind::VmExport),
    ("/rest/v0/srs/:id/vdis", &["POST"], Kind::DiskImportNew),
    ("/rest/v0/vdis/:id.vhd", &["GET", "HEAD"], Kind::DiskExport),
    ("/rest/v0/vdis/:id.vhd", &["PUT"], Kind::DiskImport),
    ("/rest/v0/vdis/:id.raw", &["GET", "HEAD"], Kind::DiskExport),
    ("/rest/v0/vdis/:id.raw", &["PUT"], Kind::DiskImport),
    ("/rest/v0/vdi-snapshots/:id.vhd", &["GET", "HEAD"], Kind::DiskExport),
    ("/rest/v0/vdi-snapshots/:id.raw", &["GET", "HEAD"], Kind::DiskExport),
];

/// What the `api` component answers before its table: `(methods, path below /rest/v0, what)`.
pub const FRONT: &[(&[&str], &str, &str)] = &[
    (&["GET", "HEAD"], "/", "The collections, as paths (XO's first page); with `routes`, every route"),
    (&["GET", "HEAD"], "/ping", "Liveness, without credentials or XAPI"),
    (&["GET", "HEAD"], "/docs/swagger.json", "This document (XO's path)"),
    (&["GET", "HEAD"], "/openapi.json", "This document"),
    (&["GET", "HEAD"], "/docs", "This document as a page to read, with a curl line for each operation"),
];

/// The document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let mut add = |path: String, method: &str, op: Value| {
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method.to_ascii_lowercase()] = op;
    };
    for (methods, path, what) in FRONT {
        for method in methods.iter() {
            add(path.to_string(), method, front(method, path, what));
        }
    }
    for d in router::described() {
        let path = openapi_path(&d);
        for method in d.methods {
            add(path.clone(), method, table_operation(method, &d));
        }
    }
    for (route, methods, kind) in OUTSIDE {
        let path = route.trim_start_matches("/rest/v0").replace(":id", "{id}");
        for method in methods.iter() {
            add(path.clone(), method, outside(method, &path, *kind));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "xo-edge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Xen Orchestra REST API (XO 6's pool operations), served at the edge by WebAssembly \
                components talking to XAPI directly.",
            "license": { "name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later" },
        },
        "servers": [{ "url": "/rest/v0" }],
        "security": [{ "token": [] }, { "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": { "type": "apiKey", "in": "cookie", "name": "authenticationToken" },
                "bearer": { "type": "http", "scheme": "bearer" },
                "basic": { "type": "http", "scheme": "basic" },
            },
            "schemas": schemas(),
        },
    })
}

/// The components' schemas: the error body, and each collection's objects, whole and as a listing's chosen fields
/// (`<Name>Fields`), from the typed tables beside the mappers ([`crate::objects::schema`]).
fn schemas() -> Map<String, Value> {
    let mut out = Map::new();
    for coll in crate::objects::COLLECTIONS {
        let name = pascal(coll.name, false);
        out.insert(name.clone(), schema::json_schema(coll.fields, false));
        out.insert(format!("{name}Fields"), schema::json_schema(coll.fields, true));
    }
    out.insert(
        "Error".into(),
        json!({
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": { "type": "string", "description": "what went wrong" },
                        "data": { "type": "object", "description": "details: XAPI's error code and parameters, the \
                            property at fault, the reason of a 401" },
                    },
        }),
    );
    out
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The path of a table route: `{name}` named as XO names it for the route.
fn openapi_path(d: &Described) -> String {
    let name = match d.op {
        Op::AddDataSource | Op::ForgetDataSource => "{data_source}",
        Op::Unsubscribe => "{subscriptionId}",
        _ => "{name}",
    };
    format!("/{}", d.path.replace("{name}", name))
}

/// `vm-snapshots` → `VmSnapshot` (singular) or `VmSnapshots`.
fn pascal(name: &str, plural: bool) -> String {
    let words: Vec<&str> = name.split(['-', '_']).collect();
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        let w = if i + 1 == words.len() && !plural { w.strip_suffix('s').unwrap_or(w) } else { w };
        let mut chars = w.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "in": "path", "name": name, "required": true, "schema": { "type": "string" }, "description": description })
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "in": "query", "name": name, "required": false, "schema": schema, "description": description })
}

/// The path parameters of a path, in order.
fn path_params(path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for segment in path.split('/') {
        let Some(start) = segment.find('{') else { continue };
        let Some(end) = segment[start..].find('}') else { continue };
        let name = &segment[start + 1..start + end];
        let description = match name {
            "id" => "the object's uuid (or `OpaqueRef:`)",
            "tag" => "the tag, percent-encoded",
            "data_source" => "the RRD data source's name",
            "subscriptionId" => "the subscription's id",
            _ => "",
        };
        out.push(path_param(name, description));
    }
    out
}

/// A JSON error answer for each of `codes`.
fn errors(codes: &[u16]) -> Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            let description = match c {
                400 => "bad request: unreadable parameters or body",
                401 => "no valid credentials",
                403 => "forbidden: XAPI's RBAC, or a cross-site request",
                404 => "no such object or route",
                405 => "method not allowed here (`Allow` lists those that are)",
                409 => "the object's state does not allow it (XAPI's error code in `data`)",
                413 => "body too large",
                415 => "the body is not in the format the route takes",
                429 => "too many failed logins (`Retry-After`)",
                500 => "internal error",
                502 => "XAPI failed or answered something unexpected",
                503 => "XAPI is unreachable",
                504 => "XAPI took longer than `xapi_timeout`",
                _ => "error",
            };
            let content = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
            let mut answer = json!({ "description": description, "content": content });
            match c {
                405 => answer["headers"] = json!({ "Allow": header("the methods the route takes", false) }),
                429 => answer["headers"] = json!({ "Retry-After": header("seconds to wait", false) }),
                _ => {}
            }
            (c.to_string(), answer)
        })
        .collect()
}

/// Errors every authenticated route may answer.
const COMMON: &[u16] = &[400, 401, 403, 404, 500, 502, 503, 504];

fn json_answer(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// A header of an answer.
fn header(description: &str, required: bool) -> Value {
    json!({ "description": description, "required": required, "schema": { "type": "string" } })
}

/// 202: an XAPI task runs the operation. The body is the task's href as text (XO's legacy API), or
/// `{"taskId"}` when the request accepts `application/json` (XO 6).
fn accepted() -> Value {
    json!({
        "description": "started: the task, whose href is in `Location`",
        "headers": { "Location": header("the task's href", true) },
        "content": {
            "text/plain": { "schema": { "type": "string" } },
            "application/json": { "schema": {
                "type": "object", "required": ["taskId"], "properties": { "taskId": { "type": "string" } } } },
        },
    })
}

/// 201: what was made, `{"id"}`, and (for an object) its href in `Location`.
fn made(located: bool) -> Value {
    let mut answer = json_answer(
        "made",
        json!({ "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } }),
    );
    if located {
        answer["headers"] = json!({ "Location": header("the new object's href", true) });
    }
    answer
}

fn no_body(description: &str) -> Value {
    json!({ "description": description })
}

fn operation(id: String, tag: &str, summary: &str, params: Vec<Value>, responses: Map<String, Value>) -> Value {
    json!({ "operationId": id, "tags": [tag], "summary": summary, "parameters": params, "responses": responses })
}

/// A route answered before the table.
fn front(method: &str, path: &str, what: &str) -> Value {
    let base = match path {
        "/" => "GetRoot",
        "/ping" => "Ping",
        "/docs/swagger.json" => "GetSwagger",
        "/docs" => "GetDocs",
        _ => "GetOpenApi",
    };
    let id = if method == "HEAD" { format!("Head{}", base.trim_start_matches("Get")) } else { base.to_string() };
    let mut responses = Map::new();
    if path == "/docs" {
        let html = json!({ "text/html": { "schema": { "type": "string" } } });
        responses.insert("200".into(), json!({ "description": "the page", "content": html }));
    } else if path == "/ping" {
        let pong = json!({ "type": "object", "required": ["result", "timestamp"], "properties": {
            "result": { "const": "pong" }, "timestamp": { "type": "integer", "description": "milliseconds" } } });
        responses.insert("200".into(), json_answer("alive", pong));
    } else {
        responses.insert("200".into(), json_answer("ok", json!({})));
    }
    let mut params = Vec::new();
    if path == "/" {
        responses.extend(errors(&[401, 502, 503, 504]));
        params.push(query_param("routes", json!({ "type": "string" }), "list every route instead"));
    }
    let mut op = operation(id, "meta", what, params, responses);
    if path != "/" {
        op["security"] = json!([]);
    }
    op
}

/// A route of the `api` component's table.
fn table_operation(method: &str, d: &Described) -> Value {
    let coll = d.coll.map(|c| c.name).unwrap_or("");
    let (one, many) = (pascal(coll, false), pascal(coll, true));
    let action = d.action.map(|a| pascal(a.name, true)).unwrap_or_default();
    let (base, summary) = match d.op {
        Op::List => (format!("Get{many}"), format!("the {coll}, filtered, with chosen fields")),
        Op::Get | Op::Task => (format!("Get{one}"), format!("one of the {coll}")),
        Op::VmVdis => (format!("Get{one}Vdis"), "the object's disks".into()),
        Op::Patch => (format!("Update{one}"), "changes the object's fields".into()),
        Op::Delete => (format!("Delete{one}"), "destroys the object".into()),
        Op::DeleteTask => ("DeleteTask".into(), "forgets a finished task".into()),
        Op::Create => (format!("Create{one}"), format!("a new object of the {coll}")),
        Op::ObjectTasks => (format!("Get{one}Tasks"), "the object's tasks".into()),
        Op::ObjectMessages => (format!("Get{one}Messages"), "the messages about the object".into()),
        Op::ObjectAlarms => (format!("Get{one}Alarms"), "the alarms about the object".into()),
        Op::Stats => (format!("Get{one}Stats"), "RRD statistics".into()),
        Op::Metrics => (format!("Get{one}Metrics"), "the latest RRD values, as Prometheus text".into()),
        Op::AbortTask => ("AbortTask".into(), "cancels a pending task".into()),
        Op::Actions => (format!("Get{one}Actions"), "the actions of the object".into()),
        Op::Action => (format!("Get{one}Action{action}"), "the action's parameters".into()),
        Op::RunAction => (format!("{action}{one}"), "runs the action as an XAPI task".into()),
        Op::AddTag => (format!("Put{one}Tag"), "adds a tag".into()),
        Op::RemoveTag => (format!("Delete{one}Tag"), "removes a tag".into()),
        Op::ObjectDashboard => (format!("Get{one}Dashboard"), "the object at a glance".into()),
        Op::MissingPatches => (format!("Get{one}MissingPatches"), "updates not installed".into()),
        Op::Smt => (format!("Get{one}Smt"), "whether SMT is on".into()),
        Op::AddDataSource => ("AddDataSource".into(), "records an optional data source".into()),
        Op::ForgetDataSource => ("DeleteDataSource".into(), "forgets a data source".into()),
        Op::Events => ("GetEvents".into(), "a Server-Sent Events stream".into()),
        Op::Subscribe => ("AddSubscription".into(), "subscribes the stream to a collection".into()),
        Op::Unsubscribe => ("DeleteSubscription".into(), "removes a subscription".into()),
        Op::Dashboard => ("GetDashboard".into(), "the pool at a glance".into()),
    };
    let id = if method == "HEAD" { format!("Head{}", base.trim_start_matches("Get")) } else { base };
    let path = openapi_path(d);
    let mut params = path_params(&path);
    let mut responses = Map::new();
    match d.op {
        Op::List | Op::ObjectTasks | Op::ObjectMessages | Op::ObjectAlarms | Op::VmVdis => {
            params.push(query_param("fields", json!({ "type": "string" }), "comma-separated fields, or `*`"));
            params.push(query_param("filter", json!({ "type": "string" }), "XO's filter syntax"));
            params.push(query_param("limit", json!({ "type": "integer", "minimum": 0 }), "at most this many"));
            params.push(query_param("ndjson", json!({ "type": "boolean" }), "one JSON value per line"));
            params.push(query_param(
                "markdown",
                json!({ "type": "boolean" }),
                "a Markdown table (columns: the first item's fields); not with `ndjson`",
            ));
            if d.op == Op::List && coll == "tasks" {
                params.push(query_param(
                    "watch",
                    json!({ "type": "boolean" }),
                    "with `ndjson`: the tasks, then a line per change (`[\"update\", task]`, `[\"remove\", {id}]`)",
                ));
            }
            let listed = match d.op {
                Op::VmVdis => "vdis",
                Op::ObjectTasks => "tasks",
                Op::ObjectMessages => "messages",
                Op::ObjectAlarms => "alarms",
                _ => coll,
            };
            let fields = reference(&format!("{}Fields", pascal(listed, false)));
            let list = json!({ "type": "array", "items": { "anyOf": [{ "type": "string" }, fields] } });
            responses.insert(
                "200".into(),
                json!({ "description": "the objects (paths unless `fields`)", "content": {
                    "application/json": { "schema": list },
                    "application/x-ndjson": { "schema": { "type": "string" } },
                    "text/markdown": { "schema": { "type": "string" } },
                } }),
            );
        }
        Op::RunAction | Op::AbortTask => {
            params.push(query_param("sync", json!({ "type": "boolean" }), "wait for the task to end"));
            responses.insert("200".into(), json_answer("done, with a result", json!({})));
            responses.insert("201".into(), made(true));
            responses.insert("202".into(), accepted());
            responses.insert("204".into(), no_body("done"));
            responses.extend(errors(&[409, 422]));
        }
        Op::Patch
        | Op::Delete
        | Op::DeleteTask
        | Op::AddTag
        | Op::RemoveTag
        | Op::AddDataSource
        | Op::ForgetDataSource
        | Op::Unsubscribe => {
            responses.insert("202".into(), accepted());
            responses.insert("204".into(), no_body("done"));
            responses.extend(errors(&[409]));
        }
        Op::Create | Op::Subscribe => {
            responses.insert("201".into(), made(d.op == Op::Create));
            responses.insert("202".into(), accepted());
            responses.extend(errors(&[409, 422]));
        }
        Op::Metrics => {
            responses.insert(
                "200".into(),
                json!({ "description": "Prometheus text exposition", "content": {
                    "text/plain": { "schema": { "type": "string" } } } }),
            );
        }
        Op::Events => {
            // One schema per event (what Schemathesis checks each event against).
            let event = json!({
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": { "enum": ["init", "add", "update", "remove", "ping"] },
                    "data": { "type": "string", "contentMediaType": "application/json" },
                    "id": { "type": "string" },
                    "retry": { "type": "integer" },
                },
            });
            responses.insert(
                "200".into(),
                json!({ "description": "Server-Sent Events: `init` (the stream's id), `add`, `update` and `remove` \
                    (an object of a subscribed collection, `$subscription` naming it), `ping`",
                    "content": { "text/event-stream": { "schema": event } } }),
            );
        }
        Op::Get | Op::Task => {
            if d.op == Op::Task {
                params.push(query_param(
                    "wait",
                    json!({ "type": "boolean" }),
                    "answer once the task is no longer pending (at most 10 minutes)",
                ));
            }
            responses.insert("200".into(), json_answer("the object", reference(&one)));
        }
        Op::Stats => {
            params.push(query_param(
                "granularity",
                json!({ "type": "string", "enum": ["seconds", "minutes", "hours", "days"] }),
                "the RRD archive",
            ));
            responses.insert("200".into(), json_answer("ok", crate::rest::stats::schema(coll == "pools")));
            responses.extend(errors(&[409]));
        }
        Op::MissingPatches => {
            responses.insert("200".into(), json_answer("the packages", crate::rest::patches::schema()));
        }
        Op::Smt => {
            responses.insert("200".into(), json_answer("ok", crate::rest::patches::smt_schema()));
        }
        Op::ObjectDashboard | Op::Dashboard => {
            let of = (d.op == Op::ObjectDashboard).then_some(coll);
            params.push(query_param("ndjson", json!({ "type": "boolean" }), "one line per part, as XO 6 writes them"));
            let mut answer = json_answer("the dashboard", crate::rest::dashboard::schema(of));
            answer["content"]["application/x-ndjson"] = json!({ "schema": { "type": "string" } });
            responses.insert("200".into(), answer);
        }
        _ => {
            responses.insert("200".into(), json_answer("ok", json!({})));
        }
    }
    responses.extend(errors(COMMON));
    let mut op = operation(id, if coll.is_empty() { "events" } else { coll }, &summary, params, responses);
    let body = match (d.op, d.action) {
        (Op::RunAction, Some(action)) => Some(crate::rest::actions::schema(action)),
        (Op::Patch, _) => d.coll.map(|c| crate::rest::edit::schema(c.class)),
        (Op::Create, _) => d.coll.and_then(|c| crate::rest::create::schema(c.name)),
        (Op::Subscribe, _) => Some(crate::rest::events::subscription_schema()),
        _ => None,
    };
    if let (Some(schema), false) = (body, method == "HEAD") {
        op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": schema } } });
    }
    op
}

/// A route of the `tokens` or `transfers` component.
fn outside(method: &str, path: &str, kind: Kind) -> Value {
    let coll = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    let one = pascal(coll, false);
    let ext = path.rsplit('.').next().filter(|e| !e.contains('/')).map(|e| pascal(e, true)).unwrap_or_default();
    let (base, summary) = match kind {
        Kind::TokenCreate => ("CreateAuthenticationToken".to_string(), "a token for Basic credentials"),
        Kind::TokenRevoke => ("RevokeCurrentAuthenticationToken".to_string(), "revokes the token sent"),
        Kind::DiskExport => (format!("Export{one}{ext}"), "the disk's contents"),
        Kind::DiskImport => (format!("Import{one}{ext}"), "replaces the disk's contents"),
        Kind::DiskImportNew => ("ImportVdi".to_string(), "a new disk on the SR, from the body"),
        Kind::VmExport => (format!("Export{one}"), "an XVA of the VM"),
        Kind::VmImport => ("ImportVm".to_string(), "a VM from an XVA"),
        Kind::HostFile => (format!("Get{one}{ext}"), "a file of the host's"),
    };
    let id = if method == "HEAD" { format!("Head{base}") } else { base };
    let mut params = path_params(path);
    let mut responses = Map::new();
    let bytes = |description: &str, types: &[&str]| {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({ "schema": { "type": "string", "contentMediaType": t } })))
            .collect();
        json!({ "description": description, "content": content })
    };
    match kind {
        Kind::TokenCreate => {
            let mut token = json_answer(
                "the token, also set as the `authenticationToken` cookie",
                json!({ "type": "object", "required": ["token"], "properties": { "token": {
                    "type": "object",
                    "required": ["id", "expiration"],
                    "properties": {
                        "id": { "type": "string" },
                        "user_id": { "type": "string" },
                        "description": { "type": "string" },
                        "client": { "type": "object", "properties": { "id": { "type": "string" } } },
                        "created_at": { "type": "integer" },
                        "expiration": { "type": "integer" },
                    },
                } } }),
            );
            token["headers"] = json!({ "Set-Cookie": header("`authenticationToken=…`", true) });
            responses.insert("200".into(), token);
            responses.extend(errors(&[400, 401, 403, 429, 500, 502, 503, 504]));
        }
        Kind::TokenRevoke => {
            responses.insert("204".into(), no_body("revoked"));
            responses.extend(errors(&[400, 401, 403, 500, 502, 503, 504]));
        }
        Kind::DiskExport | Kind::VmExport | Kind::HostFile => {
            if kind == Kind::VmExport {
                params.push(query_param(
                    "compress",
                    json!({ "type": "string", "enum": ["gzip", "zstd", "true", "false"] }),
                    "compression of the XVA",
                ));
                params.push(query_param(
                    "compress_at",
                    json!({ "type": "string", "enum": ["edge", "xapi"] }),
                    "who compresses (default: XAPI for gzip, the edge for zstd when XAPI may not)",
                ));
            }
            if kind == Kind::HostFile && path.ends_with("/audit.txt") {
                params.push(query_param(
                    "since",
                    json!({ "type": "string" }),
                    "only the records since this time (ISO 8601)",
                ));
            }
            responses.insert("200".into(), bytes("the bytes", &["application/octet-stream"]));
            if kind == Kind::DiskExport {
                let mut partial = bytes("the range asked for", &["application/octet-stream"]);
                partial["headers"] = json!({ "Content-Range": header("the range sent, of the whole", true) });
                responses.insert("206".into(), partial);
                responses.extend(errors(&[416]));
            }
            responses.extend(errors(COMMON));
            responses.extend(errors(&[409]));
        }
        Kind::DiskImport | Kind::DiskImportNew | Kind::VmImport => {
            let size = json!({ "type": "integer", "minimum": 1 });
            match kind {
                Kind::DiskImportNew => {
                    params.push(query_param("raw", json!({ "type": "boolean" }), "the body is a raw disk, not a VHD"));
                    params.push(query_param("name_label", json!({ "type": "string" }), "the new disk's name"));
                    params.push(query_param("name_description", json!({ "type": "string" }), "its description"));
                }
                Kind::VmImport => {
                    params.push(query_param(
                        "sr",
                        json!({ "type": "string" }),
                        "the SR of the disks (default: the pool's)",
                    ));
                }
                _ => {}
            }
            params.push(query_param("size", size, "bytes of the body as sent, when it is chunked or compressed"));
            // The disk's or VM's uuid: as text (the seed's answer), or `{"id"}` with `Accept: application/json`.
            let id = json!({
                "text/plain": { "schema": { "type": "string" } },
                "application/json": { "schema": {
                    "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } } },
            });
            responses.insert("200".into(), json!({ "description": "imported into the disk", "content": id }));
            responses.insert(
                "201".into(),
                json!({ "description": "made", "content": id,
                "headers": { "Location": header("the new object's href", true) } }),
            );
            responses.extend(errors(COMMON));
            responses.extend(errors(&[409, 411, 413, 415, 422]));
        }
    }
    let mut op = operation(id, coll, summary, params, responses);
    match kind {
        Kind::TokenCreate => {
            op["security"] = json!([{ "basic": [] }]);
            op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": {
                "type": "object",
                "properties": {
                    "description": { "type": "string", "maxLength": 1024 },
                    "expiresIn": { "type": ["integer", "string"], "description": "milliseconds, or a duration such as \"30 days\"" },
                    "client": {
                        "type": "object",
                        "properties": { "id": { "type": "string" } },
                        "additionalProperties": false,
                        "description": "accepted for XO compatibility: XO extends a stored token of the same client; \
                            xo-edge stores no token, so each call gives a new one",
                    },
                },
            } } } });
        }
        Kind::DiskImport | Kind::DiskImportNew | Kind::VmImport => {
            op["requestBody"] = json!({ "required": true, "content": { "application/octet-stream": { "schema": {
                "type": "string", "contentMediaType": "application/octet-stream" } } } });
        }
        _ => {}
    }
    op
}

/// A strong validator for the document: its SHA-256, quoted.
pub fn etag(document: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(document);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Spin manifest the app is built with: the routes of the components other than `api`.
    const MANIFEST: &str = include_str!("../spin.toml");

    #[test]
    fn the_routes_outside_the_table_are_spin_tomls() {
        let routes = crate::routes::parse_manifest(MANIFEST).unwrap();
        let mut outside: Vec<&str> =
            routes.iter().filter(|r| r.component != "api").map(|r| r.pattern.as_str()).collect();
        let mut described: Vec<&str> = OUTSIDE.iter().map(|(r, _, _)| *r).collect();
        outside.sort_unstable();
        described.sort_unstable();
        described.dedup();
        assert_eq!(outside, described);
    }

    #[test]
    fn every_operation_has_a_unique_id_and_its_path_parameters() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        let mut count = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                count += 1;
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_string()), "{method} {path}: {id} twice");
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                let templated: Vec<&str> = path.split(['{', '}']).skip(1).step_by(2).collect();
                assert_eq!(declared, templated, "{method} {path}");
            }
        }
        assert!(count > 250, "{count} operations");
        assert_eq!(doc["paths"]["/vms/{id}/actions/start"]["post"]["operationId"], "StartVm");
        assert_eq!(doc["paths"]["/vms"]["get"]["operationId"], "GetVms");
        assert_eq!(doc["paths"]["/vm-snapshots/{id}"]["get"]["operationId"], "GetVmSnapshot");
        assert_eq!(doc["paths"]["/vms/{id}/stats/data_source/{data_source}"]["put"]["operationId"], "AddDataSource");
        assert_eq!(doc["paths"]["/vdis/{id}.raw"]["put"]["operationId"], "ImportVdiRaw");
        // Edits and creations describe the bodies their handlers check against the same tables.
        let body = |path: &str, method: &str| {
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
        };
        let patch = body("/vms/{id}", "patch");
        assert_eq!(patch["properties"]["name_label"]["type"], "string");
        assert_eq!(patch["additionalProperties"], false);
        assert_eq!(body("/vifs/{id}", "patch")["properties"]["lockingMode"]["enum"][0], "network_default");
        let create = body("/vdis", "post");
        assert_eq!(create["required"], json!(["srId", "virtual_size"]));
        assert_eq!(create["properties"]["virtual_size"]["type"], "integer");
        let subscription = body("/events/{id}/subscriptions", "post");
        assert!(subscription["properties"]["collection"]["enum"].as_array().unwrap().contains(&json!("VM")));
    }

    #[test]
    fn names_in_pascal_case() {
        assert_eq!(pascal("vm-snapshots", false), "VmSnapshot");
        assert_eq!(pascal("vm-snapshots", true), "VmSnapshots");
        assert_eq!(pascal("clean_shutdown", true), "CleanShutdown");
        assert_eq!(pascal("srs", false), "Sr");
    }
}
