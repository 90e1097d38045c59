//! Issue 21: the OpenAPI document, as the edge serves it through the runtime. It is served without credentials at
//! XO's path and at `/rest/v0/openapi.json`, cacheable (`ETag`, 304); an independent validator
//! (`openapi-spec-validator` from PyPI) accepts it; and it describes every route the `api` component's table
//! spells out (`GET /rest/v0?routes`).

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::process::Command;

/// The validator's version: pinned, so that the check is the same everywhere.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// A venv with `openapi-spec-validator`, made once.
fn validator_python() -> std::path::PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openapi-venv");
    let python = venv.join("bin").join("python");
    let check = "import importlib.metadata as m; assert m.version('openapi-spec-validator') == '0.9.0'";
    if !Command::new(&python).args(["-c", check]).status().is_ok_and(|s| s.success()) {
        assert!(Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap().success());
        let pip = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", VALIDATOR];
        assert!(Command::new(&python).args(pip).status().unwrap().success(), "pip install {VALIDATOR}");
    }
    python
}

/// Validates `doc` with `openapi-spec-validator`: its error, if any.
fn validate(doc: &J) -> Result<(), String> {
    // Tests run in parallel threads of one process: one file each.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("openapi-{}-{n}.json", std::process::id());
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let script = "import json, sys\n\
        from openapi_spec_validator import validate\n\
        from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
        validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n";
    let out = Command::new(validator_python()).args(["-c", script]).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).lines().rev().take(8).collect::<Vec<_>>().join("\n"))
    }
}

#[test]
fn the_document_is_served_cacheable_and_valid_and_covers_every_route() {
    let edge = Edge::start();
    // Without credentials, as XO serves it.
    let r = edge.get("/rest/v0/docs/swagger.json").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let doc: J = r.json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let again: J = edge.get("/rest/v0/openapi.json").send().unwrap().json().unwrap();
    assert_eq!(again, doc);
    let r = edge.get("/rest/v0/docs/swagger.json").header("if-none-match", &etag).send().unwrap();
    assert_eq!(r.status().as_u16(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    let r = edge.get("/rest/v0/docs/swagger.json").header("if-none-match", "\"other\"").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);

    validate(&doc).unwrap();

    // Every route of the table, spelled out, is in the document under each of its methods.
    let token = edge.token("root", "xapi-sim");
    let routes: J = edge.get("/rest/v0?routes").bearer_auth(&token).send().unwrap().json().unwrap();
    let routes = routes.as_array().unwrap();
    assert!(routes.len() > 200, "{} routes", routes.len());
    for route in routes {
        let path = route["path"].as_str().unwrap().trim_start_matches("/rest/v0");
        let path = path.replace("stats/data_source/{name}", "stats/data_source/{data_source}");
        let path = path.replace("subscriptions/{name}", "subscriptions/{subscriptionId}");
        for method in route["methods"].as_array().unwrap() {
            let method = method.as_str().unwrap().to_ascii_lowercase();
            assert!(doc["paths"][&path][&method].is_object(), "{method} {path} is not in the document");
        }
    }
    // The transfer and token routes too.
    for (path, method) in [
        ("/vdis/{id}.vhd", "put"),
        ("/vms/{id}.xva", "get"),
        ("/pools/{id}/vms", "post"),
        ("/users/authentication_tokens", "post"),
        ("/hosts/{id}/logs.tgz", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}

/// The validator is not a rubber stamp: a document without its title, with a reference to nothing, or with a path
/// parameter no operation declares, fails.
#[test]
fn the_validator_refuses_a_broken_document() {
    let edge = Edge::start();
    let doc: J = edge.get("/rest/v0/openapi.json").send().unwrap().json().unwrap();
    let mut broken = doc.clone();
    broken["info"].as_object_mut().unwrap().remove("title");
    assert!(validate(&broken).is_err(), "no title");
    let mut broken = doc.clone();
    broken["paths"]["/vms"]["get"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"] =
        J::String("#/components/schemas/Nothing".into());
    assert!(validate(&broken).is_err(), "a reference to nothing");
    let mut broken = doc;
    broken["paths"]["/vms/{id}"]["get"]["parameters"] = J::Array(Vec::new());
    assert!(validate(&broken).is_err(), "an undeclared path parameter");
}

/// Validates each `(schema name, object)` against the document's component of that name with `jsonschema` (the
/// validator's own dependency, an implementation independent of ours): the failures, as text.
fn conformance(doc: &J, objects: &[(String, J)]) -> Vec<String> {
    let file =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("shapes-{}.json", std::process::id()));
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({ "schemas": doc["components"]["schemas"], "objects": objects })).unwrap(),
    )
    .unwrap();
    let script = "import json, sys\n\
        from jsonschema import Draft202012Validator\n\
        d = json.load(open(sys.argv[1]))\n\
        for name, o in d['objects']:\n\
        \x20   for e in Draft202012Validator(d['schemas'][name]).iter_errors(o):\n\
        \x20       print(name, o.get('id'), list(e.absolute_path), e.message[:200])\n";
    let out = Command::new(validator_python()).args(["-c", script]).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Every object of every collection, as listed with all fields and as one GET answers it, in a schema name.
fn objects_of(edge: &Edge, token: &str, doc: &J) -> Vec<(String, J)> {
    let mut out = Vec::new();
    let collections: J = edge.get("/rest/v0").bearer_auth(token).send().unwrap().json().unwrap();
    for path in collections.as_array().unwrap() {
        let path = path.as_str().unwrap();
        let listing: J = edge.get(&format!("{path}?fields=*")).bearer_auth(token).send().unwrap().json().unwrap();
        let listing = listing.as_array().unwrap();
        // The schemas the document gives the listing's items and an object's GET.
        let op = &doc["paths"][path.trim_start_matches("/rest/v0")]["get"];
        let items = &op["responses"]["200"]["content"]["application/json"]["schema"]["items"]["anyOf"][1]["$ref"];
        let items = items.as_str().unwrap().rsplit('/').next().unwrap().to_string();
        let one = doc["paths"][format!("{}/{{id}}", path.trim_start_matches("/rest/v0"))]["get"]["responses"]["200"]
            ["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        for o in listing {
            out.push((items.clone(), o.clone()));
        }
        for o in listing.iter().take(50) {
            let got: J = edge.get(o["href"].as_str().unwrap()).bearer_auth(token).send().unwrap().json().unwrap();
            out.push((one.clone(), got));
        }
    }
    out
}

/// Issue 21's drift guard: every object the edge builds, from the demo pool (VMs running with guest tools, halted,
/// suspended; snapshots, templates, control domains, every device, finished tasks) and from a pool of 1000
/// generated VMs, matches the JSON Schema the document publishes for it, checked by `jsonschema`. A mapper that
/// gains, renames or retypes a field without its table (`src/objects/*.rs`, `FIELDS`) fails here.
#[test]
fn every_object_matches_the_schema_the_document_publishes() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let doc: J = edge.get("/rest/v0/openapi.json").send().unwrap().json().unwrap();
    // A finished task and a snapshot, so that those shapes are there too.
    let vm = edge.uuid_of(&token, "vms", "Debian 12 web");
    let r = edge
        .http
        .post(format!("{}/rest/v0/vms/{vm}/actions/snapshot", edge.url))
        .bearer_auth(&token)
        .json(&json!({ "name_label": "shape check" }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let task = r.headers()["location"].to_str().unwrap().to_string();
    edge.settled(&json!("success"), |e| {
        e.get(&task).bearer_auth(&token).send().unwrap().json::<J>().unwrap()["status"].clone()
    });
    // XO's optional fields too (scheduler parameters, PCIs, notes, NIC type, image format, rate limit, bonds).
    edge.with_optional_fields(&token);
    let objects = objects_of(&edge, &token, &doc);
    assert!(objects.len() > 100, "{} objects", objects.len());
    // Every collection has objects to check in the demo pool.
    let names: std::collections::HashSet<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2 * 20, "{names:?}");
    let failures = conformance(&doc, &objects);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The check itself is not a rubber stamp: an object with a renamed and a retyped field fails.
    let (name, mut o) = objects.iter().find(|(n, _)| n == "Vm").cloned().unwrap();
    o["powerState"] = o["power_state"].clone();
    o["memory"]["size"] = json!("1 GiB");
    let failures = conformance(&doc, &[(name, o)]);
    assert_eq!(failures.len(), 2, "{failures:?}");

    let big = Edge::start_with(&[], xapi_sim::Options { demo: false, vms: 1000, ..Default::default() });
    let token = big.token("root", "xapi-sim");
    let objects = objects_of(&big, &token, &doc);
    assert!(objects.len() > 1000, "{} objects", objects.len());
    let failures = conformance(&doc, &objects);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `GET /rest/v0/docs`: the document as a page, served without credentials and cacheable, with nothing from
/// outside (no script, no stylesheet or image from elsewhere), a section per operation, and curl lines that work
/// as printed once `XO` and `T` are set.
#[test]
fn the_docs_page_works_offline_and_its_curl_lines_work() {
    let edge = Edge::start();
    let r = edge.get("/rest/v0/docs").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let page = r.text().unwrap();
    let r = edge.get("/rest/v0/docs").header("if-none-match", &etag).send().unwrap();
    assert_eq!(r.status().as_u16(), 304);
    let doc: J = edge.get("/rest/v0/openapi.json").send().unwrap().json().unwrap();
    let operations: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(page.matches("<section id=").count(), operations);
    assert!(!page.contains("<script") && !page.contains(" src=") && !page.contains("<link"), "nothing from outside");
    // The curl lines of a few operations, run as printed.
    let curl_of = |id: &str| -> String {
        let start = page.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no {id}"));
        let code = &page[start..];
        let open = "<code class=\"curl\">";
        let code = &code[code.find(open).unwrap() + open.len()..];
        assert!(code.starts_with("curl "), "{id}: {}", &code[..40]);
        let code = &code[..code.find("</code>").unwrap()];
        code.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    };
    let token = edge.token("root", "xapi-sim");
    let vm = edge.uuid_of(&token, "vms", "Debian 12 web");
    let run = |line: &str| -> (String, String) {
        let line = line.replace("-u root:password", "-u root:xapi-sim").replace("<id>", &vm);
        let script = format!("XO={} T={token}; {line} -s -w '\\n%{{http_code}}'", edge.url);
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        (code.to_string(), body.to_string())
    };
    let (code, body) = run(&curl_of("CreateAuthenticationToken"));
    assert_eq!(code, "200", "{body}");
    assert!(serde_json::from_str::<J>(&body).unwrap()["token"]["id"].is_string());
    let (code, body) = run(&curl_of("GetVms"));
    assert_eq!(code, "200");
    assert!(body.contains(&format!("/rest/v0/vms/{vm}")));
    let (code, body) = run(&curl_of("GetVm"));
    assert_eq!(code, "200");
    assert_eq!(serde_json::from_str::<J>(&body).unwrap()["name_label"], "Debian 12 web");
    let (code, _) = run(&curl_of("Ping"));
    assert_eq!(code, "200");
}
