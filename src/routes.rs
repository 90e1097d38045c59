//! The route table, single-sourced from `spin.toml`, and Spin's matching rules.
//!
//! Spin routes each `[[trigger.http]]` to a component; the `bundle` component serves every route in one
//! component, so it reads the same manifest (embedded at build time) and matches requests the way Spin does:
//! an exact route beats a route with `:parameters`, which beats a `/...` wildcard; among wildcards the longest
//! prefix wins. This module only parses and matches.

/// One `[[trigger.http]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub pattern: String,
    pub component: String,
}

/// Reads the HTTP routes of a Spin manifest (version 2).
pub fn parse_manifest(manifest: &str) -> Result<Vec<Route>, String> {
    let doc: toml::Table = manifest.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let triggers = doc
        .get("trigger")
        .and_then(|t| t.get("http"))
        .and_then(|h| h.as_array())
        .ok_or("no [[trigger.http]] entries")?;
    triggers
        .iter()
        .map(|t| {
            let pattern = t.get("route").and_then(|r| r.as_str()).ok_or("trigger without route")?;
            let component = t.get("component").and_then(|c| c.as_str()).ok_or("trigger without component")?;
            Ok(Route { pattern: pattern.to_string(), component: component.to_string() })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Wildcard(usize),
    Params(usize),
    Exact,
}

fn segment_matches(pattern: &str, segment: &str) -> bool {
    match pattern.strip_prefix(':') {
        None => pattern == segment,
        Some(name) => match name.split_once('.') {
            // `:id.xva`: a non-empty name followed by the literal suffix.
            Some((_, ext)) => segment.len() > ext.len() + 1 && segment.ends_with(&format!(".{ext}")),
            None => !segment.is_empty(),
        },
    }
}

fn rank(pattern: &str, path: &str) -> Option<Rank> {
    if let Some(prefix) = pattern.strip_suffix("/...") {
        let ok = path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty();
        return ok.then_some(Rank::Wildcard(prefix.len()));
    }
    let ps: Vec<&str> = pattern.split('/').collect();
    let ss: Vec<&str> = path.split('/').collect();
    if ps.len() != ss.len() || !ps.iter().zip(&ss).all(|(p, s)| segment_matches(p, s)) {
        return None;
    }
    if pattern.contains(':') {
        Some(Rank::Params(ps.iter().filter(|p| !p.starts_with(':')).count()))
    } else {
        Some(Rank::Exact)
    }
}

/// The route that serves `path`, as Spin would choose it.
pub fn find<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    routes.iter().filter_map(|r| rank(&r.pattern, path).map(|k| (k, r))).max_by(|a, b| a.0.cmp(&b.0)).map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/rest/v0/..."
component = "api"
[[trigger.http]]
route = "/rest/v0/users/authentication_tokens"
component = "tokens"
[[trigger.http]]
route = "/rest/v0/vms/:id.xva"
component = "vm-export"
[component.api]
source = "a.wasm"
"#;

    #[test]
    fn parses_and_matches_like_spin() {
        let routes = parse_manifest(MANIFEST).unwrap();
        assert_eq!(routes.len(), 3);
        let c = |p: &str| find(&routes, p).map(|r| r.component.as_str());
        assert_eq!(c("/rest/v0"), Some("api"));
        assert_eq!(c("/rest/v0/"), Some("api"));
        assert_eq!(c("/rest/v0/vms"), Some("api"));
        assert_eq!(c("/rest/v0/users/authentication_tokens"), Some("tokens"));
        assert_eq!(c("/rest/v0/vms/abc.xva"), Some("vm-export"));
        assert_eq!(c("/rest/v0/vms/.xva"), Some("api"));
        assert_eq!(c("/rest/v0/vms/abc"), Some("api"));
        assert_eq!(c("/rest/v01"), None);
        assert_eq!(c("/other"), None);
        assert!(parse_manifest("x = 1").is_err());
    }
}
