//! Every object of every collection, as the edge serves it, validates against XO 6's published schema for its
//! type: `components/schemas/Unbrand_Xo<Type>_` of `open-api/spec/swagger.json` in npm
//! `@xen-orchestra/rest-api@0.39.0` (AGPL-3.0, like this project), fetched at test time with `npm pack` (cached in
//! the target folder; node and npm are required, `.ci/run` installs them). The document is OpenAPI 3.0: its
//! `nullable: true` becomes JSON Schema's `null` alternative, and its branded ids plain strings, before validation
//! with the `jsonschema` crate.
//! Checked on the demo pool (listings with `fields=*` and single objects) and on a 1 000-VM pool (listings).

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::path::PathBuf;
use std::process::Command;

const PACKAGE: &str = "@xen-orchestra/rest-api@0.39.0";

/// Each collection and its XO 6 schema.
const SCHEMAS: &[(&str, &str)] = &[
    ("vms", "XoVm"),
    ("vm-snapshots", "XoVmSnapshot"),
    ("vm-templates", "XoVmTemplate"),
    ("vm-controllers", "XoVmController"),
    ("hosts", "XoHost"),
    ("pools", "XoPool"),
    ("srs", "XoSr"),
    ("vdis", "XoVdi"),
    ("vdi-snapshots", "XoVdiSnapshot"),
    ("networks", "XoNetwork"),
    ("vbds", "XoVbd"),
    ("vifs", "XoVif"),
    ("pifs", "XoPif"),
    ("pbds", "XoPbd"),
    ("messages", "XoMessage"),
    ("alarms", "XoAlarm"),
    ("tasks", "XoTask"),
    ("sms", "XoSm"),
    ("pcis", "XoPci"),
    ("pgpus", "XoPgpu"),
];

/// XO 6's OpenAPI document, from the npm package.
fn swagger() -> J {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xo-rest-api-0.39.0");
    let spec = dir.join("swagger.json");
    if !spec.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("npm")
            .args(["pack", PACKAGE, "--silent", "--pack-destination"])
            .arg(&dir)
            .output()
            .expect("npm is required (.ci/run installs it)");
        assert!(out.status.success(), "npm pack: {}", String::from_utf8_lossy(&out.stderr));
        let name = String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_string();
        let tgz = std::fs::File::open(dir.join(&name)).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
        let mut found = false;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_string_lossy() == "package/open-api/spec/swagger.json" {
                entry.unpack(&spec).unwrap();
                found = true;
            }
        }
        assert!(found, "no open-api/spec/swagger.json in {name}");
    }
    serde_json::from_slice(&std::fs::read(spec).unwrap()).unwrap()
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: the schema, or null.
fn nullable_to_json_schema(v: &mut J) {
    match v {
        J::Object(m) => {
            m.values_mut().for_each(nullable_to_json_schema);
            if m.remove("nullable") == Some(J::Bool(true)) {
                let inner = J::Object(std::mem::take(m));
                m.insert("anyOf".into(), json!([inner, {"type": "null"}]));
            }
        }
        J::Array(a) => a.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

struct Schemas {
    validators: Vec<(&'static str, jsonschema::Validator)>,
}

/// XO 6's schemas, ready for validators.
fn components() -> J {
    let mut components = swagger()["components"].clone();
    nullable_to_json_schema(&mut components);
    // tsoa writes XO's branded ids (`string & { __brand }`) as `allOf: [string, {required: [null]}]`, which no
    // value satisfies and no validator compiles: they are strings.
    for (name, schema) in components["schemas"].as_object_mut().unwrap() {
        if name.starts_with("Branded_") {
            if let Some(first) = schema["allOf"].get(0).cloned() {
                *schema = first;
            }
        }
    }
    components
}

/// A validator of the schema `name` (as `components/schemas/<name>`).
fn validator(components: &J, name: &str) -> jsonschema::Validator {
    assert!(components["schemas"].get(name).is_some(), "{name} is not in XO 6's document");
    let schema = json!({"$ref": format!("#/components/schemas/{name}"), "components": components});
    jsonschema::validator_for(&schema).unwrap()
}

impl Schemas {
    fn load() -> Schemas {
        let components = components();
        let validators =
            SCHEMAS.iter().map(|(coll, ty)| (*coll, validator(&components, &format!("Unbrand_{ty}_")))).collect();
        Schemas { validators }
    }

    fn errors(&self, coll: &str, object: &J) -> Vec<String> {
        let (_, v) = self.validators.iter().find(|(c, _)| *c == coll).unwrap();
        v.iter_errors(object).map(|e| format!("{}: {e}", e.instance_path())).collect()
    }
}

fn get_json(edge: &Edge, path: &str) -> J {
    let r = edge.get(path).basic_auth("root", Some("xapi-sim")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.json().unwrap()
}

/// Validates every object of every collection; answers how many were checked per collection.
fn check_listings(edge: &Edge, schemas: &Schemas) -> Vec<(&'static str, usize)> {
    let mut counts = Vec::new();
    for (coll, _) in SCHEMAS {
        let objects = get_json(edge, &format!("/rest/v0/{coll}?fields=*"));
        let objects = objects.as_array().unwrap();
        for o in objects {
            let errors = schemas.errors(coll, o);
            assert!(errors.is_empty(), "{coll} {}: {errors:#?}", o["id"]);
        }
        counts.push((*coll, objects.len()));
    }
    counts
}

#[test]
fn demo_pool_objects_match_xo6_schemas() {
    let schemas = Schemas::load();
    let edge = Edge::start();
    // A task, so that the tasks collection has a member.
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    edge.xapi("task.create", json!([sid, "shape check", ""]));
    let counts = check_listings(&edge, &schemas);
    for (coll, n) in &counts {
        assert!(*n > 0, "{coll} has no object to check");
    }
    // Single objects take another path (links fetched one by one): check them too.
    for (coll, _) in SCHEMAS {
        for href in get_json(&edge, &format!("/rest/v0/{coll}")).as_array().unwrap().iter().take(4) {
            let o = get_json(&edge, href.as_str().unwrap());
            let errors = schemas.errors(coll, &o);
            assert!(errors.is_empty(), "{href}: {errors:#?}");
        }
    }
}

/// XO's optional fields, when the records have what they are made of (`xapi-object-to-xo.mjs`: `vm()` reads
/// `VCPUs_params`, `other_config.pci`, `other_config['xo:notes']`, `platform.nic_type`; `vdi()`
/// `sm_config['image-format']`; `vif()` the `ratelimit` QoS's `kbps`; `pif()` its bond's master and slaves): their
/// values, and every object still valid under XO 6's schemas.
#[test]
fn optional_fields_have_xos_values_and_xo6_types() {
    let schemas = Schemas::load();
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let (vm, vdi, vif) = edge.with_optional_fields(&token);
    let o = get_json(&edge, &format!("/rest/v0/vms/{vm}"));
    assert_eq!(
        (&o["cpuCap"], &o["cpuWeight"], &o["cpuMask"], &o["attachedPcis"], &o["notes"], &o["nicType"]),
        (
            &json!(50),
            &json!(512),
            &json!([0, 1]),
            &json!(["0000:00:02.0", "0000:00:03.0"]),
            &json!("backed up | nightly"),
            &json!("e1000")
        ),
        "{o}"
    );
    assert_eq!(get_json(&edge, &format!("/rest/v0/vdis/{vdi}"))["image_format"], "qcow2");
    assert_eq!(get_json(&edge, &format!("/rest/v0/vifs/{vif}"))["rateLimit"], 1250);
    // A VM without them has none of them (XO's `undefined`).
    let other = get_json(&edge, "/rest/v0/vms?fields=*&filter=name_label:%22Rocky%20Linux%208%22")[0].clone();
    for k in ["cpuCap", "cpuWeight", "cpuMask", "attachedPcis", "notes", "nicType"] {
        assert!(other.get(k).is_none(), "{k}: {other}");
    }
    // The bond: each master names its slaves, each slave its master.
    let pifs = get_json(&edge, "/rest/v0/pifs?fields=uuid,isBondMaster,isBondSlave,bondMaster,bondSlaves");
    let masters: Vec<&J> = pifs.as_array().unwrap().iter().filter(|p| p["isBondMaster"] == true).collect();
    assert_eq!(masters.len(), 2, "a bond per host: {pifs}");
    for m in masters {
        let slaves = m["bondSlaves"].as_array().unwrap();
        assert_eq!(slaves.len(), 2, "{m}");
        for s in slaves {
            let slave = get_json(&edge, &format!("/rest/v0/pifs/{}", s.as_str().unwrap()));
            assert_eq!((slave["isBondSlave"].as_bool(), &slave["bondMaster"]), (Some(true), &m["uuid"]), "{slave}");
        }
        assert_eq!(
            get_json(&edge, &format!("/rest/v0/pifs/{}", m["uuid"].as_str().unwrap()))["bondSlaves"],
            m["bondSlaves"]
        );
    }
    // Each host's certificate (`host.certificates`, XAPI's `Certificate` records): fingerprint and expiry.
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let host = edge.uuid_of(&token, "hosts", "xcp-host2");
    let host_ref = edge.xapi("host.get_by_uuid", json!([sid, host]))["result"].clone();
    let cert = edge.xapi("host.get_certificates", json!([sid, host_ref]))["result"][0].clone();
    let fingerprint = edge.xapi("Certificate.get_fingerprint", json!([sid, cert]))["result"].clone();
    let expected = json!([{"fingerprint": fingerprint, "notAfter": 2064132000}]);
    assert_eq!(get_json(&edge, &format!("/rest/v0/hosts/{host}"))["certificates"], expected);
    let listed = get_json(&edge, "/rest/v0/hosts?fields=name_label,certificates&filter=name_label:xcp-host2");
    assert_eq!(listed[0]["certificates"], expected);
    check_listings(&edge, &schemas);
    for (coll, id) in [("vms", &vm), ("vdis", &vdi), ("vifs", &vif), ("hosts", &host)] {
        let o = get_json(&edge, &format!("/rest/v0/{coll}/{id}"));
        let errors = schemas.errors(coll, &o);
        assert!(errors.is_empty(), "{coll} {id}: {errors:#?}");
    }
}

#[test]
fn thousand_vm_pool_objects_match_xo6_schemas() {
    let schemas = Schemas::load();
    let edge = Edge::start_with(&[], xapi_sim::Options { demo: false, vms: 1000, ..Default::default() });
    let counts = check_listings(&edge, &schemas);
    let vms = counts.iter().find(|(c, _)| *c == "vms").map(|(_, n)| *n);
    assert_eq!(vms, Some(1000));
}

/// The check can fail: an object with a `null` where XO omits the value, or without a required property, is
/// refused.
#[test]
fn the_schema_check_catches_what_xo6_would_not_send() {
    let schemas = Schemas::load();
    let edge = Edge::start();
    let pool = get_json(&edge, "/rest/v0/pools?fields=*")[0].clone();
    assert!(schemas.errors("pools", &pool).is_empty());
    let mut with_null = pool.clone();
    with_null["suspendSr"] = J::Null;
    assert!(!schemas.errors("pools", &with_null).is_empty());
    let mut missing = pool.clone();
    missing.as_object_mut().unwrap().remove("platform_version");
    assert!(!schemas.errors("pools", &missing).is_empty());
}

/// Issue 19: a running VM's and a host's statistics validate against XO 6's `XapiVmStats` and `XapiHostStats`.
#[test]
fn stats_match_xo6_schemas() {
    let components = components();
    let edge = Edge::start();
    let vms = get_json(&edge, "/rest/v0/vms?fields=uuid,power_state&filter=power_state:Running");
    let vm = vms[0]["uuid"].as_str().unwrap().to_string();
    let host = get_json(&edge, "/rest/v0/hosts?fields=uuid")[0]["uuid"].as_str().unwrap().to_string();
    let pool = get_json(&edge, "/rest/v0/pools?fields=uuid")[0]["uuid"].as_str().unwrap().to_string();
    for (path, schema) in [
        (format!("/rest/v0/pools/{pool}/stats"), "XapiPoolStats"),
        (format!("/rest/v0/vms/{vm}/stats"), "XapiVmStats"),
        (format!("/rest/v0/vms/{vm}/stats?granularity=hours"), "XapiVmStats"),
        (format!("/rest/v0/hosts/{host}/stats?granularity=minutes"), "XapiHostStats"),
    ] {
        let stats = get_json(&edge, &path);
        let any =
            stats.get("stats").or_else(|| stats.as_object().and_then(|m| m.values().find_map(|h| h.get("stats"))));
        assert!(!any.unwrap().as_object().unwrap().is_empty(), "{path}: {stats}");
        let v = validator(&components, schema);
        let errors: Vec<String> = v.iter_errors(&stats).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{path}: {errors:#?}");
    }
}

/// Issue 19: the dashboards validate against XO 6's `XoaDashboard`, `PoolDashboard` and `UnbrandedVmDashboard`.
#[test]
fn dashboards_match_xo6_schemas() {
    let components = components();
    let edge = Edge::start();
    let pool = get_json(&edge, "/rest/v0/pools?fields=uuid")[0]["uuid"].as_str().unwrap().to_string();
    let vms = get_json(&edge, "/rest/v0/vms?fields=uuid,power_state&filter=power_state:Running");
    let vm = vms[0]["uuid"].as_str().unwrap().to_string();
    for (path, schema) in [
        ("/rest/v0/dashboard".to_string(), "XoaDashboard"),
        (format!("/rest/v0/pools/{pool}/dashboard"), "PoolDashboard"),
        (format!("/rest/v0/vms/{vm}/dashboard"), "UnbrandedVmDashboard"),
    ] {
        let d = get_json(&edge, &path);
        let v = validator(&components, schema);
        let errors: Vec<String> = v.iter_errors(&d).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{path}: {errors:#?}\n{d}");
        // XO 6's `ndjson`: a line per part (`{"hosts":{"status":…}}`), which merged make the same dashboard.
        let r = edge.get(&format!("{path}?ndjson=true")).basic_auth("root", Some("xapi-sim")).send().unwrap();
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let text = r.text().unwrap();
        let mut merged = json!({});
        for line in text.lines() {
            merge(&mut merged, serde_json::from_str(line).unwrap());
        }
        assert!(text.lines().count() >= 5, "{text}");
        let errors: Vec<String> = v.iter_errors(&merged).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{path}?ndjson: {errors:#?}\n{merged}");
        assert_eq!(keys(&merged), keys(&d), "{path}: the same parts");
    }
}

/// Merges `from` into `into`, object members recursively.
fn merge(into: &mut J, from: J) {
    match (into, from) {
        (J::Object(a), J::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(J::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The member names of an object and of its objects, two levels down.
fn keys(v: &J) -> Vec<String> {
    let mut out = Vec::new();
    for (k, inner) in v.as_object().into_iter().flatten() {
        out.push(k.clone());
        for k2 in inner.as_object().into_iter().flatten().map(|(k2, _)| k2) {
            out.push(format!("{k}.{k2}"));
        }
    }
    out.sort();
    out
}

/// The README's XO 6 comparison is what `scripts/xo6-compare.py` prints for the document the edge serves now: a
/// route, parameter or field added or removed without updating the table fails here.
#[test]
fn the_readmes_xo6_comparison_is_current() {
    swagger();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let spec = tmp.join("xo-rest-api-0.39.0").join("swagger.json");
    let edge = Edge::start();
    let ours = tmp.join(format!("xo-edge-openapi-{}.json", std::process::id()));
    std::fs::write(&ours, edge.get("/rest/v0/openapi.json").send().unwrap().bytes().unwrap()).unwrap();
    let out =
        Command::new("python3").arg("scripts/xo6-compare.py").arg(&ours).arg(&spec).arg("--markdown").output().unwrap();
    let _ = std::fs::remove_file(&ours);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let rows = |text: &str| text.lines().filter(|l| l.starts_with('|')).map(str::to_string).collect::<Vec<_>>();
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("### Compared with XO 6").expect("the README's comparison")..];
    let table = &section[..section.find("</details>").unwrap()];
    assert_eq!(rows(table), rows(&printed), "regenerate the table with scripts/xo6-compare.py --markdown");
    // The counts the section opens with.
    let counts: Vec<&str> = printed.lines().last().unwrap().split(' ').filter(|w| w.parse::<u32>().is_ok()).collect();
    let [total, present, exact] = counts[..] else { panic!("{printed}") };
    let head = &section[..section.find("Every difference left").unwrap()];
    for figure in
        [format!("**{total} pool operations**"), format!("**{present} are in xo-edge's**"), format!("**{exact}**")]
    {
        assert!(head.contains(&figure), "the README should say {figure}");
    }
}
