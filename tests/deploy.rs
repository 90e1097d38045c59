//! The SpinKube manifests and runtime-config examples in `deploy/`: valid against the SpinApp (and Secret) schema,
//! strictly (a misspelt field fails, where the API server would silently drop it), and consistent with spin.toml:
//! every required application variable is bound, every bound variable exists, every Secret reference resolves,
//! and the runtime config parses and names only our components. With `SPINAPP_CRD` set to the published SpinApp
//! CRD's YAML, the SpinApp is also checked against that CRD's own schema, made strict the same way.

use serde_json::{json, Value as J};
use std::path::Path;

fn root(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn documents(text: &str) -> Vec<J> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &J| !v.is_null())
        .collect()
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root("deploy/spinapp.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn errors(validator: &jsonschema::Validator, doc: &J) -> Vec<String> {
    validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

fn manifest() -> Vec<J> {
    documents(&std::fs::read_to_string(root("deploy/spinapp.yaml")).unwrap())
}

fn spin_toml() -> toml::Table {
    std::fs::read_to_string(root("spin.toml")).unwrap().parse().unwrap()
}

fn secret<'a>(docs: &'a [J], name: &str) -> &'a J {
    docs.iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Secret {name} in deploy/spinapp.yaml"))
}

/// The runtime config's client_tls entries name our components only, and say which hosts and CA.
fn check_runtime_config(text: &str, components: &[String]) -> Vec<toml::Value> {
    let rc: toml::Table = text.parse().expect("runtime config is TOML");
    let tls = rc["client_tls"].as_array().expect("client_tls entries").clone();
    for entry in &tls {
        let ids = entry["component_ids"].as_array().unwrap();
        assert!(!ids.is_empty());
        for id in ids {
            assert!(components.iter().any(|c| c == id.as_str().unwrap()), "unknown component {id}");
        }
        assert!(!entry["hosts"].as_array().unwrap().is_empty());
        assert!(entry["ca_roots_file"].as_str().is_some_and(|f| !f.is_empty()));
    }
    tls
}

#[test]
fn manifests_are_valid_and_match_spin_toml() {
    let docs = manifest();
    let validator = schema();
    for d in &docs {
        let e = errors(&validator, d);
        assert!(e.is_empty(), "{} {}: {e:#?}", d["kind"], d["metadata"]["name"]);
    }
    let app = docs.iter().find(|d| d["kind"] == "SpinApp").expect("a SpinApp");
    let spin = spin_toml();
    let declared = spin["variables"].as_table().unwrap();
    let components: Vec<String> = spin["component"].as_table().unwrap().keys().cloned().collect();
    let bound = app["spec"]["variables"].as_array().unwrap();
    for v in bound {
        let name = v["name"].as_str().unwrap();
        assert!(declared.contains_key(name), "the SpinApp binds {name}, which spin.toml does not declare");
        if let Some(r) = v["valueFrom"]["secretKeyRef"].as_object() {
            let s = secret(&docs, r["name"].as_str().unwrap());
            let key = r["key"].as_str().unwrap();
            assert!(s["stringData"].get(key).is_some() || s["data"].get(key).is_some(), "Secret has no key {key}");
        }
    }
    for (name, v) in declared {
        if v.get("required").and_then(toml::Value::as_bool) == Some(true) {
            assert!(bound.iter().any(|b| b["name"] == name.as_str()), "required variable {name} is not bound");
        }
        if v.get("secret").and_then(toml::Value::as_bool) == Some(true) {
            let b = bound.iter().find(|b| b["name"] == name.as_str()).unwrap();
            assert!(b.get("value").is_none(), "secret variable {name} must come from a Secret, not a literal");
        }
    }
    // The runtime config comes from a Secret with the key SpinKube reads, and its CA file is mounted.
    let rc_secret = secret(&docs, app["spec"]["runtimeConfig"]["loadFromSecret"].as_str().unwrap());
    let text = rc_secret["stringData"]["runtime-config.toml"].as_str().expect("key runtime-config.toml");
    for entry in check_runtime_config(text, &components) {
        let ca = Path::new(entry["ca_roots_file"].as_str().unwrap());
        let mount = app["spec"]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| ca.starts_with(m["mountPath"].as_str().unwrap()))
            .expect("the CA file lies under a volume mount");
        let volume = app["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
        let ca_secret = secret(&docs, volume["secret"]["secretName"].as_str().unwrap());
        let file = ca.file_name().unwrap().to_str().unwrap();
        assert!(ca_secret["stringData"].get(file).is_some(), "the CA Secret has no {file}");
    }
    let example = std::fs::read_to_string(root("deploy/runtime-config.toml")).unwrap();
    check_runtime_config(&example, &components);
}

#[test]
fn misspelt_or_mistyped_fields_fail_the_schema() {
    let validator = schema();
    let app = manifest().into_iter().find(|d| d["kind"] == "SpinApp").unwrap();
    type Change = fn(&mut J);
    let broken: [(&str, Change); 6] = [
        ("loadFromSecrets", |a| a["spec"]["runtimeConfig"] = json!({"loadFromSecrets": "x"})),
        ("secretRef", |a| a["spec"]["variables"][1]["valueFrom"] = json!({"secretRef": {"name": "x", "key": "k"}})),
        ("replicas as a string", |a| a["spec"]["replicas"] = json!("2")),
        ("no image", |a| drop(a["spec"].as_object_mut().unwrap().remove("image"))),
        ("variable without value", |a| a["spec"]["variables"][0] = json!({"name": "xapi_url"})),
        ("mountpath", |a| a["spec"]["volumeMounts"][0] = json!({"name": "pool-ca", "mountpath": "/etc"})),
    ];
    for (what, change) in broken {
        let mut doc = app.clone();
        change(&mut doc);
        assert!(!errors(&validator, &doc).is_empty(), "{what} passed the schema");
    }
}

/// Adds `additionalProperties: false` to every object schema that lists its properties and says nothing of others.
fn strict(schema: &mut J) {
    if let Some(o) = schema.as_object_mut() {
        if o.contains_key("properties") && !o.contains_key("additionalProperties") {
            o.insert("additionalProperties".into(), json!(false));
        }
        for v in o.values_mut() {
            strict(v);
        }
    } else if let Some(a) = schema.as_array_mut() {
        a.iter_mut().for_each(strict);
    }
}

#[test]
fn the_spinapp_fits_the_published_crd_when_given() {
    let Ok(path) = std::env::var("SPINAPP_CRD") else {
        println!("SPINAPP_CRD not set: checked against deploy/spinapp.schema.json only");
        return;
    };
    let crd = documents(&std::fs::read_to_string(path).unwrap()).remove(0);
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1alpha1").unwrap();
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut app = manifest().into_iter().find(|d| d["kind"] == "SpinApp").unwrap();
    // The CRD's schema leaves metadata to the API server.
    app["metadata"] = json!({});
    let e = errors(&validator, &app);
    assert!(e.is_empty(), "{e:#?}");
    let mut bad = app.clone();
    bad["spec"]["runtimeConfig"] = json!({"loadFromSecrets": "x"});
    assert!(!errors(&validator, &bad).is_empty());
}
