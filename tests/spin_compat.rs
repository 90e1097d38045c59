//! Spin compatibility: each per-route component imports only what Spin provides and exports the WASI 0.3
//! HTTP handler; the bundle exports it too. Read from the built components with `wasmparser`.

mod common;
use wasmparser::{Parser, Payload};

/// Interfaces a Spin with WASI 0.3.0 final provides (package prefix, allowed versions).
const PROVIDED: &[(&str, &[&str])] = &[
    ("wasi:http/", &["0.3.0", "0.2."]),
    ("wasi:cli/", &["0.3.0", "0.2."]),
    ("wasi:clocks/", &["0.3.0", "0.2."]),
    ("wasi:random/", &["0.3.0", "0.2."]),
    ("wasi:filesystem/", &["0.3.0", "0.2."]),
    ("wasi:sockets/", &["0.3.0", "0.2."]),
    ("wasi:io/", &["0.2."]),
    ("spin:variables/", &["3.0.0"]),
    ("fermyon:spin/", &["2.0.0"]),
];

/// Top-level imports and exports of a component.
fn surface(path: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    imports.push(i.unwrap().name.0.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for e in s {
                    exports.push(e.unwrap().name.0.to_string());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

fn provided(name: &str) -> bool {
    PROVIDED.iter().any(|(prefix, versions)| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('@'))
            .is_some_and(|(_, v)| versions.iter().any(|allowed| v.starts_with(allowed)))
    })
}

#[test]
fn per_route_components_fit_spin() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spin.toml")).unwrap();
    let doc: toml::Table = manifest.parse().unwrap();
    let components = doc["component"].as_table().unwrap();
    assert!(components.len() >= 2);
    for (name, c) in components {
        let source = c["source"].as_str().unwrap();
        let file =
            std::path::Path::new(source).file_name().unwrap().to_str().unwrap().trim_end_matches(".wasm").to_string();
        let (imports, exports) = surface(&common::wasm(&file));
        assert!(!imports.is_empty(), "{name}: no imports read");
        for i in &imports {
            assert!(provided(i), "component {name} imports {i}, which Spin does not provide");
        }
        assert!(exports.iter().any(|e| e == "wasi:http/handler@0.3.0"), "component {name} exports {exports:?}");
        assert!(imports.iter().any(|i| i.starts_with("spin:variables/")), "component {name} must read Spin variables");
    }
}

#[test]
fn bundle_exports_the_handler_and_reads_no_spin_variables() {
    let (imports, exports) = surface(&common::wasm("xo_edge_bundle"));
    assert!(exports.iter().any(|e| e == "wasi:http/handler@0.3.0"), "{exports:?}");
    assert!(imports.iter().all(|i| !i.starts_with("spin:")), "plain wasi:http hosts have no Spin imports: {imports:?}");
    assert!(!provided("wasi:keyvalue/store@0.2.0-draft"));
}
