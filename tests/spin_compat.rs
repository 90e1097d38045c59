//! Spin compatibility, read from the WIT. Every built per-route component (spin.toml) must fit each Spin world in
//! [`SPIN_WORLDS`]: each interface it imports is one the world imports, with every function and type it uses, and
//! it exports the world's HTTP handler. The worlds are Spin's own published WIT (`wit/deps`, from the spin-sdk
//! 5.2.0 crate), not a table of ours. The bundle must fit the plain `wasi:http/proxy` world (`wit/world.wit`).
//!
//! Version matching is wasmtime's, as Spin links components: an import matches an interface of the same version,
//! or of a semver-compatible one (same `0.2` line) when the host's wasmtime matches imports by semver. The test
//! says which of the two each import needed; the README's "oldest Spin" follows from that.

mod common;
use std::collections::BTreeSet;
use wit_component::DecodedWasm;
use wit_parser::{InterfaceId, Resolve, TypeDefKind, WorldId, WorldItem};

/// The Spin worlds every per-route component must fit: the world, whether every import must match its version
/// exactly, and which Spin releases that stands for.
const SPIN_WORLDS: &[(&str, bool, &str)] = &[
    // Spin 2.0's world (WASI 0.2.0), kept verbatim by every later Spin (4.0.2's wit/deps/spin@2.0.0 is the same
    // file). Our 0.2.6 imports link to its 0.2.0 interfaces by semver only: in Spin 2.6 and later, whose wasmtime
    // (21+) has the semver-aware linker (wasmtime 19, PR #7994). Spin 2.0-2.5 (wasmtime 14-18) cannot run the app.
    ("fermyon:spin/http-trigger@2.0.0", false, "Spin 2.6 and later, by semver"),
    ("spin:up/http-trigger@3.2.0", false, "Spin 3.2 and later, by semver"),
    // Spin 3.6's platform: exactly the wasi 0.2.6 interfaces we import, which Spin 4.0.x's platform world
    // (spin:up@4.0.0, not published in a crate) includes from the same files. Its own http-trigger world exports
    // only the WASI 0.3 candidate, so the 0.2 handler is checked against Spin 2.0's export.
    ("spin:up/platform@3.6.0", true, "Spin 3.6 and 4.0.x, exactly"),
];

/// One interface a component or world imports or exports.
#[derive(Debug)]
struct Iface {
    /// `namespace:package/interface`
    name: String,
    version: Option<(u64, u64, u64, String)>,
    functions: BTreeSet<String>,
    /// Resource types.
    types: BTreeSet<String>,
}

impl Iface {
    fn of(resolve: &Resolve, id: InterfaceId) -> Option<Iface> {
        let iface = &resolve.interfaces[id];
        let package = &resolve.packages[iface.package?].name;
        Some(Iface {
            name: format!("{}:{}/{}", package.namespace, package.name, iface.name.as_ref()?),
            version: package.version.as_ref().map(|v| (v.major, v.minor, v.patch, v.pre.to_string())),
            functions: iface.functions.keys().cloned().collect(),
            // Resources are nominal and must be there; other types are structural (a renamed alias such as 0.2.6's
            // `field-name` for 0.2.0's `field-key` links), so they are checked through the functions that use them.
            types: iface
                .types
                .iter()
                .filter(|(_, t)| matches!(resolve.types[**t].kind, TypeDefKind::Resource))
                .map(|(name, _)| name.clone())
                .collect(),
        })
    }

    fn full_name(&self) -> String {
        match &self.version {
            Some((a, b, c, pre)) if pre.is_empty() => format!("{}@{a}.{b}.{c}", self.name),
            Some((a, b, c, pre)) => format!("{}@{a}.{b}.{c}-{pre}", self.name),
            None => self.name.clone(),
        }
    }

    /// How `self` (an import) is satisfied by `other`: `Some(true)` same version, `Some(false)` semver-compatible
    /// version, `None` not at all. Everything `self` uses must be in `other`.
    fn satisfied_by(&self, other: &Iface) -> Option<bool> {
        if self.name != other.name || !self.functions.is_subset(&other.functions) || !self.types.is_subset(&other.types)
        {
            return None;
        }
        match (&self.version, &other.version) {
            (a, b) if a == b => Some(true),
            (Some((a0, a1, _, ap)), Some((b0, b1, _, bp))) if a0 == b0 && ap.is_empty() && bp.is_empty() => {
                (*a0 != 0 || a1 == b1).then_some(false)
            }
            _ => None,
        }
    }
}

/// Imports and exports of a world.
fn surface(resolve: &Resolve, world: WorldId) -> (Vec<Iface>, Vec<Iface>) {
    let list = |items: &indexmap::IndexMap<wit_parser::WorldKey, WorldItem>| {
        items
            .values()
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => Iface::of(resolve, *id),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let w = &resolve.worlds[world];
    (list(&w.imports), list(&w.exports))
}

/// A built component's imports and exports, decoded from its binary.
fn component(file: &str) -> (Vec<Iface>, Vec<Iface>) {
    let bytes = std::fs::read(common::wasm(file)).unwrap();
    match wit_component::decode(&bytes).unwrap() {
        DecodedWasm::Component(resolve, world) => surface(&resolve, world),
        DecodedWasm::WitPackage(..) => panic!("{file} is not a component"),
    }
}

/// Spin's published WIT and ours (`wit/`).
fn wit() -> Resolve {
    // Spin's WIT gates its WASI 0.3 candidates behind `@unstable` features; read them all.
    let mut resolve = Resolve { all_features: true, ..Resolve::default() };
    resolve.push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/wit")).unwrap();
    resolve
}

fn world(resolve: &Resolve, name: &str) -> WorldId {
    let (package, world) = name.split_once('/').unwrap();
    let (world, version) = world.split_once('@').map_or((world, None), |(w, v)| (w, Some(v)));
    let pkg = resolve
        .packages
        .iter()
        .find(|(_, p)| {
            format!("{}:{}", p.name.namespace, p.name.name) == package
                && p.name.version.as_ref().map(|v| v.to_string()).as_deref() == version
        })
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("package of {name} not in wit/"));
    resolve.packages[pkg].worlds[world]
}

/// Checks `imports` against a world; answers the imports that needed semver matching.
fn check_imports(who: &str, imports: &[Iface], world_name: &str, provided: &[Iface]) -> Vec<String> {
    let mut by_semver = Vec::new();
    for i in imports {
        match provided.iter().filter_map(|p| i.satisfied_by(p)).max() {
            Some(true) => {}
            Some(false) => by_semver.push(i.full_name()),
            None => {
                let near = provided.iter().find(|p| p.name == i.name);
                let missing = near.map(|p| {
                    let f: Vec<_> = i.functions.difference(&p.functions).collect();
                    let t: Vec<_> = i.types.difference(&p.types).collect();
                    format!("functions {f:?}, types {t:?} missing from {}", p.full_name())
                });
                panic!("{who} imports {}, which {world_name} does not provide: {missing:?}", i.full_name())
            }
        }
    }
    by_semver
}

fn per_route_components() -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spin.toml")).unwrap();
    let doc: toml::Table = manifest.parse().unwrap();
    let components = doc["component"].as_table().unwrap();
    assert!(components.len() >= 2);
    components
        .iter()
        .map(|(name, c)| {
            let source = c["source"].as_str().unwrap();
            let file = std::path::Path::new(source).file_stem().unwrap().to_str().unwrap().to_string();
            (name.clone(), file)
        })
        .collect()
}

#[test]
fn per_route_components_fit_every_claimed_spin_world() {
    let resolve = wit();
    let (_, handler_exports) = surface(&resolve, world(&resolve, "fermyon:spin/http-trigger@2.0.0"));
    let handler = handler_exports.iter().find(|e| e.name == "wasi:http/incoming-handler").unwrap();
    for (name, file) in per_route_components() {
        let (imports, exports) = component(&file);
        assert!(!imports.is_empty(), "{name}: no imports read");
        let versions: Vec<String> = imports.iter().map(Iface::full_name).collect();
        println!("component {name} imports {versions:?}");
        for (world_name, exact, stands_for) in SPIN_WORLDS {
            let (provided, _) = surface(&resolve, world(&resolve, world_name));
            let semver = check_imports(&name, &imports, world_name, &provided);
            println!("  fits {world_name} ({stands_for}); matched by semver: {}", semver.len());
            assert!(!exact || semver.is_empty(), "{name} must match {world_name} exactly: {semver:?}");
        }
        // A Spin source tree's WIT, when given (e.g. Spin 4.0.x's): the component must fit its platform exactly.
        if let Ok(dir) = std::env::var("SPIN_WIT_DIR") {
            let mut other = Resolve { all_features: true, ..Resolve::default() };
            let (pkg, _) = other.push_dir(&dir).unwrap();
            let platform = other.select_world(&[pkg], Some("platform")).unwrap();
            let (provided, _) = surface(&other, platform);
            let label = format!("{dir} ({})", other.packages[pkg].name);
            let semver = check_imports(&name, &imports, &label, &provided);
            assert!(semver.is_empty(), "{name} must match {label} exactly: {semver:?}");
            println!("  fits the platform world of {label} exactly");
        }
        assert!(
            exports.iter().any(|e| e.satisfied_by(handler) == Some(true)),
            "component {name} must export {}: exports {:?}",
            handler.full_name(),
            exports.iter().map(Iface::full_name).collect::<Vec<_>>()
        );
        assert!(
            imports.iter().any(|i| i.full_name() == "fermyon:spin/variables@2.0.0"),
            "component {name} must read Spin variables"
        );
    }
}

/// Every Spin world we claim imports nothing that Spin 2.0's world lacks for what we use: the import lists of the
/// claimed worlds only grow. (A guard on the WIT itself, so a wrong deps/ update shows.)
#[test]
fn the_claimed_worlds_come_from_spins_published_wit() {
    let resolve = wit();
    for (world_name, _, _) in SPIN_WORLDS {
        let (imports, _) = surface(&resolve, world(&resolve, world_name));
        assert!(imports.iter().any(|i| i.name == "wasi:http/outgoing-handler"), "{world_name}");
        assert!(imports.iter().any(|i| i.full_name() == "fermyon:spin/variables@2.0.0"), "{world_name}");
    }
    let licence = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wit/deps/LICENSE")).unwrap();
    assert!(licence.contains("Apache License"));
}

#[test]
fn bundle_fits_the_plain_wasi_http_proxy_world() {
    let resolve = wit();
    let (provided, wanted) = surface(&resolve, world(&resolve, "xo-edge:app/bundle@0.1.0"));
    let (imports, exports) = component("xo_edge_bundle");
    let semver = check_imports("bundle", &imports, "wasi:http/proxy", &provided);
    println!(
        "bundle imports {:?}; matched by semver: {semver:?}",
        imports.iter().map(Iface::full_name).collect::<Vec<_>>()
    );
    assert!(imports.iter().all(|i| !i.name.starts_with("fermyon:") && !i.name.starts_with("spin:")));
    // wasi:http hosts look the handler up by its 0.2 line (wasmtime's exports are semver-aware too).
    for w in &wanted {
        assert!(exports.iter().any(|e| e.satisfied_by(w).is_some()), "bundle must export {}", w.full_name());
    }
}
