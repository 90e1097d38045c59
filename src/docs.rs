//! The human-readable page of the OpenAPI document (`GET /rest/v0/docs`): rendered by the server from the same
//! document with `maud` (escaping included), without a script or any outside resource, so that it works offline
//! and behind any firewall. Each operation has its parameters, its body's properties, its answers and a curl line
//! to copy.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

/// An operation of the page: method, path, the operation object.
type Entry<'a> = (String, String, &'a Value);

/// The page, for the document `doc` (as [`crate::openapi::document`] builds it).
pub fn page(doc: &Value) -> String {
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    // Operations grouped by their first tag, in the document's order.
    let mut groups: Vec<(String, Vec<Entry>)> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap_or(&empty) {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
            let i = match groups.iter().position(|(t, _)| *t == tag) {
                Some(i) => i,
                None => {
                    groups.push((tag, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[i].1.push((method.to_ascii_uppercase(), path.clone(), op));
        }
    }
    let title = doc["info"]["title"].as_str().unwrap_or("xo-edge");
    let version = doc["info"]["version"].as_str().unwrap_or("");
    let count: usize = groups.iter().map(|(_, ops)| ops.len()).sum();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " " (version) " — REST API" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (title) " " small { (version) } }
                    p { (doc["info"]["description"].as_str().unwrap_or("")) }
                    p {
                        (count) " operations. The document itself: "
                        a href="openapi.json" { "openapi.json" } " (also at " a href="docs/swagger.json" { "docs/swagger.json" } ")."
                    }
                    p { "The curl lines expect two variables:" }
                    pre { code { "XO=https://edge.example   # this server\nT=$(curl -s -X POST -u root:password \"$XO/rest/v0/users/authentication_tokens\" | jq -r .token.id)" } }
                    p { "A token is sent as the " code { "authenticationToken" } " cookie (" code { "-b authenticationToken=$T" } ") or as " code { "Authorization: Bearer $T" } "." }
                    nav {
                        @for (tag, ops) in &groups {
                            a href={ "#" (tag) } { (tag) " (" (ops.len()) ")" } " "
                        }
                    }
                }
                main {
                    @for (tag, ops) in &groups {
                        h2 id=(tag) { (tag) }
                        @for (method, path, op) in ops {
                            (operation(method, path, op))
                        }
                    }
                }
            }
        }
    };
    markup.into_string()
}

/// One operation: its summary, parameters, body, answers and curl line.
fn operation(method: &str, path: &str, op: &Value) -> Markup {
    let id = op["operationId"].as_str().unwrap_or("");
    let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let body = body_properties(op);
    let responses = op["responses"].as_object();
    html! {
        section id=(id) {
            h3 { span class={ "m " (method.to_ascii_lowercase()) } { (method) } " " code { "/rest/v0" (path) } }
            p { (op["summary"].as_str().unwrap_or("")) " " a class="id" href={ "#" (id) } { (id) } }
            @if !params.is_empty() {
                table {
                    tr { th { "parameter" } th { "in" } th { "type" } th { "" } }
                    @for p in params {
                        tr {
                            td { code { (p["name"].as_str().unwrap_or("")) } }
                            td { (p["in"].as_str().unwrap_or("")) }
                            td { (type_name(&p["schema"])) }
                            td { (p["description"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            @if !body.is_empty() {
                table {
                    tr { th { "body" } th { "type" } th { "" } }
                    @for (name, schema, required) in &body {
                        tr {
                            td { code { (name) } @if *required { " *" } }
                            td { (type_name(schema)) }
                            td { (schema["description"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(responses) = responses {
                p class="answers" {
                    @for (code, answer) in responses {
                        span title=(answer["description"].as_str().unwrap_or("")) { (code) } " "
                    }
                }
            }
            pre { code class="curl" { (curl(method, path, op)) } }
        }
    }
}

/// The properties of an operation's JSON body: name, schema, required.
fn body_properties(op: &Value) -> Vec<(String, &Value, bool)> {
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let required: Vec<&str> =
        schema["required"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v, required.contains(&k.as_str()))).collect())
        .unwrap_or_default()
}

/// A schema's type, briefly.
fn type_name(schema: &Value) -> String {
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    match &schema["type"] {
        Value::String(t) if t == "array" => format!("{}[]", type_name(&schema["items"])),
        Value::String(t) => t.clone(),
        Value::Array(types) => types.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ => "any".into(),
    }
}

/// The curl line of an operation: path parameters as `<name>`, credentials as the guide's variables, a body built
/// from the required properties (or a file for transfers).
pub fn curl(method: &str, path: &str, op: &Value) -> String {
    let mut url = format!("$XO/rest/v0{path}");
    for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
        let name = p["name"].as_str().unwrap_or("");
        url = url.replace(&format!("{{{name}}}"), &format!("<{name}>"));
    }
    let mut parts = vec!["curl".to_string()];
    match method {
        "GET" => {}
        "HEAD" => parts.push("-I".into()),
        other => parts.push(format!("-X {other}")),
    }
    let basic = op["security"].as_array().is_some_and(|s| s.iter().any(|s| s.get("basic").is_some()));
    let public = op["security"].as_array().is_some_and(Vec::is_empty);
    if basic {
        parts.push("-u root:password".into());
    } else if !public {
        parts.push("-b authenticationToken=$T".into());
    }
    let content = &op["requestBody"]["content"];
    if content.get("application/octet-stream").is_some() {
        let file = if path.ends_with(".raw") || path.contains("?raw") {
            "disk.raw"
        } else if path.ends_with("/vms") {
            "vm.xva"
        } else {
            "disk.vhd"
        };
        parts.push(format!("-T {file}"));
    } else if content.get("application/json").is_some() {
        let body = body_properties(op);
        let required: Vec<String> = body
            .iter()
            .filter(|(_, _, required)| *required)
            .map(|(name, schema, _)| format!("\"{name}\": {}", placeholder(schema)))
            .collect();
        if !required.is_empty() {
            parts.push("-H 'Content-Type: application/json'".into());
            parts.push(format!("-d '{{{}}}'", required.join(", ")));
        }
    }
    let binary = op["responses"]["200"]["content"].get("application/octet-stream").is_some();
    if binary && method == "GET" {
        let name = path.rsplit('/').next().unwrap_or("out").replace("{id}", "out");
        parts.push(format!("-o {name}"));
    }
    parts.push(format!("\"{url}\""));
    parts.join(" ")
}

/// A value to fill a required body property in a curl line.
fn placeholder(schema: &Value) -> String {
    if let Some(first) = schema["enum"].as_array().and_then(|v| v.first()) {
        return first.to_string();
    }
    match schema["type"].as_str() {
        Some("integer" | "number") => "0".into(),
        Some("boolean") => "true".into(),
        Some("array") => "[]".into(),
        Some("object") => "{}".into(),
        _ => "\"…\"".into(),
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70em;padding:0 1em;color:#222}\
h1 small{font-weight:normal;color:#666}h2{border-bottom:1px solid #ccc;margin-top:2em}\
section{border-left:3px solid #ddd;padding:.2em 0 .2em 1em;margin:1.2em 0}h3{margin:.2em 0;font-size:1em}\
.m{display:inline-block;min-width:4.5em;font-family:monospace;font-weight:bold}.get,.head{color:#1565c0}\
.post{color:#2e7d32}.put,.patch{color:#ef6c00}.delete{color:#c62828}.id{color:#888;font-size:.85em}\
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #e3e3e3;padding:.15em .5em;text-align:left;\
vertical-align:top}th{background:#f6f6f6}.answers span{font-family:monospace;background:#f1f1f1;padding:0 .3em}\
pre{background:#f6f8fa;padding:.5em;overflow-x:auto}nav a{margin-right:.6em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_lines() {
        let doc = crate::openapi::document();
        let line = |method: &str, path: &str| curl(method, path, &doc["paths"][path][method.to_ascii_lowercase()]);
        assert_eq!(line("GET", "/vms"), "curl -b authenticationToken=$T \"$XO/rest/v0/vms\"");
        assert_eq!(
            line("POST", "/vms/{id}/actions/start"),
            "curl -X POST -b authenticationToken=$T \"$XO/rest/v0/vms/<id>/actions/start\""
        );
        assert_eq!(
            line("POST", "/users/authentication_tokens"),
            "curl -X POST -u root:password \"$XO/rest/v0/users/authentication_tokens\""
        );
        assert_eq!(
            line("PUT", "/vdis/{id}.vhd"),
            "curl -X PUT -b authenticationToken=$T -T disk.vhd \"$XO/rest/v0/vdis/<id>.vhd\""
        );
        assert_eq!(
            line("GET", "/vms/{id}.xva"),
            "curl -b authenticationToken=$T -o out.xva \"$XO/rest/v0/vms/<id>.xva\""
        );
        assert_eq!(line("GET", "/ping"), "curl \"$XO/rest/v0/ping\"");
        assert_eq!(line("HEAD", "/vms/{id}"), "curl -I -b authenticationToken=$T \"$XO/rest/v0/vms/<id>\"");
    }

    #[test]
    fn the_page_has_every_operation_and_nothing_from_outside() {
        let doc = crate::openapi::document();
        let page = page(&doc);
        let operations: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(page.matches("<section id=").count(), operations);
        assert_eq!(page.matches("class=\"curl\"").count(), operations);
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("http://"));
        assert!(page.contains("<section id=\"StartVm\">"));
    }
}
