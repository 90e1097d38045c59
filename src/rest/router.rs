//! The `api` component's one route table: every route below `/rest/v0/` with its methods and what it does.
//!
//! Patterns are `/`-separated: `{coll}` is a collection of [`crate::objects::COLLECTIONS`], `{id}` an object id
//! (or `_` where an action list or schema needs no object), `{name}` an action's name, `{tag}` one percent-encoded
//! path segment, anything else literal. The first pattern that matches the path wins;
//! a path that matches only under other methods answers 405 with `Allow`, one that matches nothing 404.

use crate::objects::{self, Collection};

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List,
    Task,
    Get,
    VmVdis,
    Patch,
    Delete,
    Actions,
    Action,
    RunAction,
    AddTag,
    RemoveTag,
    Create,
    ObjectTasks,
    /// The messages (not alarms) about an object.
    ObjectMessages,
    /// The alarms about an object.
    ObjectAlarms,
    /// A VM's or host's RRD statistics.
    Stats,
    /// The latest RRD values as a Prometheus text exposition.
    Metrics,
    AbortTask,
    DeleteTask,
    /// `GET /rest/v0/events`: the Server-Sent Events stream.
    Events,
    /// Adding a subscription to an event stream.
    Subscribe,
    /// Removing one.
    Unsubscribe,
    /// `GET /rest/v0/dashboard`: the pool at a glance.
    Dashboard,
    /// A pool's or VM's dashboard.
    ObjectDashboard,
    /// Recording one of a VM's optional RRD data sources.
    AddDataSource,
    /// Forgetting a VM's RRD data source (its archives).
    ForgetDataSource,
    /// A host's or pool's missing patches.
    MissingPatches,
    /// Whether a host's SMT (hyper-threading) is on.
    Smt,
}

/// Which collections a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Any,
    /// Collections of this XAPI class.
    Class(&'static str),
    /// This collection.
    Named(&'static str),
    /// These collections.
    OneOf(&'static [&'static str]),
    /// Collections whose objects `PATCH` may change ([`crate::rest::edit::editable`]).
    Editable,
    /// Collections whose objects carry tags that may be changed.
    Tagged,
}

impl Only {
    /// Whether the routes restricted by `self` exist for `coll`.
    fn fits(self, coll: &Collection) -> bool {
        match self {
            Only::Any => true,
            Only::Class(class) => coll.class == class,
            Only::Named(name) => coll.name == name,
            Only::OneOf(names) => names.contains(&coll.name),
            Only::Editable => !crate::rest::edit::editable(coll.class).is_empty(),
            Only::Tagged => crate::rest::edit::editable(coll.class).contains(&"tags"),
        }
    }
}

/// The collections whose objects have `/messages` and `/alarms` (XO 6).
const WATCHED: &[&str] = &[
    "vms",
    "vm-templates",
    "vm-snapshots",
    "vm-controllers",
    "hosts",
    "pools",
    "srs",
    "vdis",
    "vdi-snapshots",
    "vbds",
    "vifs",
    "pifs",
    "networks",
];

const READ: &[&str] = &["GET", "HEAD"];

/// The table.
const ROUTES: &[(&[&str], &str, Only, Op)] = &[
    (READ, "{coll}", Only::Any, Op::List),
    (&["POST"], "{coll}", Only::Named("vdis"), Op::Create),
    (&["POST"], "{coll}", Only::Named("vbds"), Op::Create),
    (&["POST"], "{coll}", Only::Named("vifs"), Op::Create),
    (&["POST"], "{coll}", Only::Named("srs"), Op::Create),
    (READ, "{coll}/{id}", Only::Named("tasks"), Op::Task),
    (READ, "{coll}/{id}", Only::Any, Op::Get),
    (&["PATCH"], "{coll}/{id}", Only::Editable, Op::Patch),
    (&["DELETE"], "{coll}/{id}", Only::OneOf(&["vms", "vm-snapshots", "vm-templates"]), Op::Delete),
    (&["DELETE"], "{coll}/{id}", Only::Class("VDI"), Op::Delete),
    (&["DELETE"], "{coll}/{id}", Only::Named("tasks"), Op::DeleteTask),
    (&["DELETE"], "{coll}/{id}", Only::Named("vbds"), Op::Delete),
    (&["DELETE"], "{coll}/{id}", Only::Named("vifs"), Op::Delete),
    (&["DELETE"], "{coll}/{id}", Only::Named("srs"), Op::Delete),
    (&["DELETE"], "{coll}/{id}", Only::Named("networks"), Op::Delete),
    (READ, "{coll}/{id}/vdis", Only::Class("VM"), Op::VmVdis),
    (READ, "{coll}/{id}/tasks", Only::Any, Op::ObjectTasks),
    (READ, "{coll}/{id}/messages", Only::OneOf(WATCHED), Op::ObjectMessages),
    (READ, "{coll}/{id}/alarms", Only::OneOf(WATCHED), Op::ObjectAlarms),
    (READ, "{coll}/{id}/stats", Only::OneOf(&["vms", "hosts", "pools"]), Op::Stats),
    (&["PUT"], "{coll}/{id}/stats/data_source/{name}", Only::Named("vms"), Op::AddDataSource),
    (&["DELETE"], "{coll}/{id}/stats/data_source/{name}", Only::Named("vms"), Op::ForgetDataSource),
    (READ, "{coll}/{id}/metrics", Only::OneOf(&["pools", "hosts", "vms"]), Op::Metrics),
    (&["POST"], "{coll}/{id}/actions/abort", Only::Named("tasks"), Op::AbortTask),
    (READ, "{coll}/{id}/actions", Only::Any, Op::Actions),
    (READ, "{coll}/{id}/actions/{name}", Only::Any, Op::Action),
    (&["POST"], "{coll}/{id}/actions/{name}", Only::Any, Op::RunAction),
    (&["PUT"], "{coll}/{id}/tags/{tag}", Only::Tagged, Op::AddTag),
    (&["DELETE"], "{coll}/{id}/tags/{tag}", Only::Tagged, Op::RemoveTag),
    (READ, "{coll}/{id}/dashboard", Only::OneOf(&["pools", "vms"]), Op::ObjectDashboard),
    (READ, "{coll}/{id}/missing_patches", Only::OneOf(&["pools", "hosts"]), Op::MissingPatches),
    (READ, "{coll}/{id}/smt", Only::Named("hosts"), Op::Smt),
];

/// The routes outside the collections: no `{coll}` (`{id}` and `{name}` as above).
const FREE: &[(&[&str], &str, Op)] = &[
    (&["GET"], "events", Op::Events),
    (&["POST"], "events/{id}/subscriptions", Op::Subscribe),
    (&["DELETE"], "events/{id}/subscriptions/{name}", Op::Unsubscribe),
    (READ, "dashboard", Op::Dashboard),
];

/// One route of the table for one collection (or none, outside the collections), an action route once per action.
#[derive(Debug, Clone)]
pub struct Described {
    pub methods: &'static [&'static str],
    /// The pattern below `/rest/v0/`, `{coll}` and an action's `{name}` replaced: `vms/{id}/actions/start`.
    pub path: String,
    pub op: Op,
    pub coll: Option<&'static Collection>,
    /// The action of an action route.
    pub action: Option<&'static crate::rest::actions::Action>,
}

/// Every route of the table spelled out per collection and action: what `GET /rest/v0?routes` lists and the
/// OpenAPI document describes (`crate::openapi`).
pub fn described() -> Vec<Described> {
    let mut out: Vec<Described> = FREE
        .iter()
        .map(|(methods, pattern, op)| Described {
            methods,
            path: pattern.to_string(),
            op: *op,
            coll: None,
            action: None,
        })
        .collect();
    let listed =
        |out: &[Described], methods: &[&str], path: &str| out.iter().any(|d| d.path == path && d.methods == methods);
    for (methods, pattern, only, op) in ROUTES {
        for coll in objects::COLLECTIONS {
            if !only.fits(coll) {
                continue;
            }
            let path = pattern.replace("{coll}", coll.name);
            let mut actions = crate::rest::actions::ACTIONS
                .iter()
                .filter(|a| a.class == coll.class && a.collections.contains(&coll.name))
                .peekable();
            match op {
                Op::Action | Op::RunAction => {
                    for action in actions {
                        let spelled = path.replace("{name}", action.name);
                        if !listed(&out, methods, &spelled) {
                            out.push(Described {
                                methods,
                                path: spelled,
                                op: *op,
                                coll: Some(coll),
                                action: Some(action),
                            });
                        }
                    }
                }
                Op::Actions if actions.peek().is_none() => {}
                _ => {
                    // A route that an earlier one of the same methods already serves is not listed twice.
                    let shadowed = matches!(op, Op::Get) && coll.name == "tasks";
                    if !listed(&out, methods, &path) && !shadowed {
                        out.push(Described { methods, path, op: *op, coll: Some(coll), action: None });
                    }
                }
            }
        }
    }
    out
}

/// Every route of the table spelled out per collection (`{coll}` replaced; an action route once per action of the
/// collection): `(methods, path)`, for `GET /rest/v0?routes`.
pub fn spelled_out() -> Vec<(&'static [&'static str], String)> {
    described().into_iter().map(|d| (d.methods, format!("/rest/v0/{}", d.path))).collect()
}

/// A matched route.
#[derive(Debug)]
pub struct Matched<'a> {
    pub op: Op,
    /// The collection (none for the routes outside them).
    pub coll: Option<&'static Collection>,
    pub id: Option<&'a str>,
    /// The decoded tag.
    pub tag: Option<String>,
    /// An action's name.
    pub name: Option<&'a str>,
}

/// Why nothing matched.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The path exists under these methods.
    Method(Vec<&'static str>),
}

/// Finds `method path` (the part after `/rest/v0/`, without trailing slashes).
pub fn find<'a>(method: &str, path: &'a str) -> Result<Matched<'a>, Miss> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed: Vec<&'static str> = Vec::new();
    let free = FREE.iter().map(|(methods, pattern, op)| (methods, pattern, None, op));
    let table = ROUTES.iter().map(|(methods, pattern, only, op)| (methods, pattern, Some(*only), op));
    for (methods, pattern, only, op) in free.chain(table) {
        let Some(m) = matches(pattern, only, *op, &segments) else { continue };
        if methods.contains(&method) {
            return Ok(m);
        }
        for method in methods.iter() {
            if !allowed.contains(method) {
                allowed.push(method);
            }
        }
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Method(allowed))
    }
}

fn matches<'a>(pattern: &str, only: Option<Only>, op: Op, segments: &[&'a str]) -> Option<Matched<'a>> {
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let (mut coll, mut id, mut tag, mut name) = (None, None, None, None);
    for (part, segment) in parts.iter().zip(segments) {
        match *part {
            "{coll}" => coll = Some(objects::collection(segment)?),
            "{id}" => id = Some(*segment).filter(|s| !s.is_empty()),
            "{name}" => name = Some(*segment).filter(|s| !s.is_empty()),
            "{tag}" => {
                let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
                tag = Some(decoded.into_owned()).filter(|t| !t.is_empty());
                tag.as_ref()?;
            }
            literal => {
                if literal != *segment {
                    return None;
                }
            }
        }
    }
    let Some(only) = only else {
        return Some(Matched { op, coll: None, id, tag, name });
    };
    let coll = coll?;
    only.fits(coll).then_some(Matched { op, coll: Some(coll), id, tag, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_methods_and_misses() {
        let m = find("GET", "vms").unwrap();
        assert_eq!((m.op, m.coll.map(|c| c.name)), (Op::List, Some("vms")));
        assert_eq!(find("GET", "events").unwrap().op, Op::Events);
        let m = find("DELETE", "events/abc/subscriptions/VM").unwrap();
        assert_eq!((m.op, m.id, m.name, m.coll.is_none()), (Op::Unsubscribe, Some("abc"), Some("VM"), true));
        assert_eq!(find("PUT", "events").unwrap_err(), Miss::Method(vec!["GET"]));
        assert_eq!(find("GET", "pools/abc/dashboard").unwrap().op, Op::ObjectDashboard);
        assert_eq!(find("GET", "hosts/abc/dashboard").unwrap_err(), Miss::NotFound);
        assert_eq!(find("GET", "tasks/abc").unwrap().op, Op::Task);
        assert_eq!(find("GET", "vms/abc").unwrap().op, Op::Get);
        assert_eq!(find("HEAD", "vms/abc/vdis").unwrap().op, Op::VmVdis);
        assert_eq!(find("GET", "srs/abc/vdis").unwrap_err(), Miss::NotFound, "SRs have no /vdis listing (GET)");
        let m = find("PUT", "vdis/abc/tags/a%20b%2Fc").unwrap();
        assert_eq!((m.op, m.id, m.tag.as_deref()), (Op::AddTag, Some("abc"), Some("a b/c")));
        assert_eq!(find("DELETE", "vms/abc/tags/x").unwrap().op, Op::RemoveTag);
        assert_eq!(find("PATCH", "vms/abc").unwrap().op, Op::Patch);
        assert_eq!(find("POST", "vms/abc").unwrap_err(), Miss::Method(vec!["GET", "HEAD", "PATCH", "DELETE"]));
        assert_eq!(find("DELETE", "vdi-snapshots/abc").unwrap().op, Op::Delete);
        assert_eq!(find("DELETE", "srs/abc").unwrap().op, Op::Delete);
        // Only what can be edited, tagged or destroyed has those routes (anything else is 405 with `Allow`).
        assert_eq!(find("DELETE", "pifs/abc").unwrap_err(), Miss::Method(vec!["GET", "HEAD"]));
        assert_eq!(find("PUT", "messages/abc/tags/x").unwrap_err(), Miss::NotFound);
        assert_eq!(find("DELETE", "vm-controllers/abc").unwrap_err(), Miss::Method(vec!["GET", "HEAD", "PATCH"]));
        assert_eq!(find("PATCH", "tasks/abc").unwrap_err(), Miss::Method(vec!["GET", "HEAD", "DELETE"]));
        assert_eq!(find("GET", "nope").unwrap_err(), Miss::NotFound);
        assert_eq!(find("POST", "vbds").unwrap().op, Op::Create);
        assert_eq!(find("GET", "vms/abc/tasks").unwrap().op, Op::ObjectTasks);
        assert_eq!(find("GET", "hosts/abc/alarms").unwrap().op, Op::ObjectAlarms);
        assert_eq!(find("GET", "vms/abc/stats").unwrap().op, Op::Stats);
        assert_eq!(find("GET", "srs/abc/stats").unwrap_err(), Miss::NotFound);
        assert_eq!(find("GET", "pools/abc/stats").unwrap().op, Op::Stats);
        let m = find("PUT", "vms/abc/stats/data_source/memory_target").unwrap();
        assert_eq!((m.op, m.name), (Op::AddDataSource, Some("memory_target")));
        assert_eq!(find("DELETE", "vms/abc/stats/data_source/x").unwrap().op, Op::ForgetDataSource);
        assert_eq!(find("PUT", "hosts/abc/stats/data_source/x").unwrap_err(), Miss::NotFound);
        assert_eq!(find("HEAD", "vdi-snapshots/abc/messages").unwrap().op, Op::ObjectMessages);
        assert_eq!(find("GET", "tasks/abc/messages").unwrap_err(), Miss::NotFound);
        assert_eq!(find("GET", "alarms/abc").unwrap().op, Op::Get);
        assert_eq!(find("POST", "tasks/abc/actions/abort").unwrap().op, Op::AbortTask);
        assert_eq!(find("POST", "vms/abc/actions/abort").unwrap().op, Op::RunAction);
        assert_eq!(find("DELETE", "tasks/abc").unwrap().op, Op::DeleteTask);
        assert_eq!(find("POST", "vms").unwrap_err(), Miss::Method(vec!["GET", "HEAD"]));
        assert_eq!(find("DELETE", "vifs/abc").unwrap().op, Op::Delete);
        assert_eq!(find("DELETE", "networks/abc").unwrap().op, Op::Delete);
        assert_eq!(find("GET", "vms/abc/nope").unwrap_err(), Miss::NotFound);
        assert_eq!(find("PUT", "vms/abc/tags/%FF").unwrap_err(), Miss::NotFound, "a tag must be UTF-8");
        assert_eq!(find("PUT", "vms/abc/tags/").unwrap_err(), Miss::NotFound);
        let all = spelled_out();
        let has = |m: &str, p: &str| all.iter().any(|(ms, path)| ms.contains(&m) && path == p);
        assert!(has("POST", "/rest/v0/vms/{id}/actions/clone"));
        assert!(has("POST", "/rest/v0/vm-snapshots/{id}/actions/clone"));
        assert!(!has("POST", "/rest/v0/vm-snapshots/{id}/actions/start"));
        assert!(
            has("POST", "/rest/v0/vbds") && has("DELETE", "/rest/v0/vifs/{id}") && has("GET", "/rest/v0/tasks/{id}")
        );
        assert!(!has("POST", "/rest/v0/srs/{id}/actions/{name}"));
        assert!(has("POST", "/rest/v0/srs/{id}/actions/scan") && has("POST", "/rest/v0/pbds/{id}/actions/plug"));
        assert!(has("POST", "/rest/v0/srs") && has("DELETE", "/rest/v0/networks/{id}"));
        // Every spelled-out route is found by the table with its methods.
        for (methods, path) in &all {
            let concrete = path.replace("{id}", "x").replace("{tag}", "t");
            let below = concrete.strip_prefix("/rest/v0/").unwrap();
            assert!(find(methods[0], below).is_ok(), "{path}");
        }
    }
}
