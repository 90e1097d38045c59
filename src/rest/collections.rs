//! Collections and objects: `GET /rest/v0/<collection>`, `GET /rest/v0/<collection>/<id>`,
//! `GET /rest/v0/<vm collection>/<id>/vdis`, `GET /rest/v0/tasks/<id>?wait=result`.
//!
//! A listing fetches the collection's members with `get_all_records_where` (its selector, narrowed by exact
//! push-downs of the filter), and only the joined classes its answer needs: a list of hrefs or `fields` that a
//! record alone provides need no join. The XAPI answer is kept as received and parsed one record at a time.

use super::auth::Caller;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::query::filter::Filter;
use crate::query::params::{self, Fields, ListQuery, ListWriter};
use crate::xapi::{Transport, XapiError};
use futures_util::future::{join, join3, join_all};
use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// VM fields an object gets from its own record alone (no join needed).
const VM_OWN_FIELDS: &[&str] = &[
    "id",
    "type",
    "uuid",
    "_xapiRef",
    "name_label",
    "name_description",
    "tags",
    "power_state",
    "virtualizationMode",
    "boot",
    "auto_poweron",
    "other",
    "xenStoreData",
    "bios_strings",
    "blockedOperations",
    "high_availability",
    "hasVendorDevice",
    "startDelay",
    "secureBoot",
    "viridian",
    "coresPerSocket",
    "vga",
    "videoram",
    "PV_args",
    "resourceSet",
    "isDefaultTemplate",
    "template_info",
    "snapshot_time",
];

const POWER_STATES: &[&str] = &["Halted", "Paused", "Running", "Suspended"];

fn xapi_err(e: XapiError) -> ApiError {
    e.to_api_error()
}

/// What a listing must fetch.
struct Plan {
    joins: bool,
    pool: bool,
}

fn plan(coll: &Collection, q: &ListQuery) -> Plan {
    let own = |name: &str| coll.class == "VM" && VM_OWN_FIELDS.contains(&name.split('.').next().unwrap_or(""));
    let filter_own = match &q.filter {
        None => true,
        Some(f) => f.properties().is_some_and(|names| names.iter().all(|n| own(n))),
    };
    let fields_own = match &q.fields {
        Fields::Urls => true,
        Fields::Only(names) => names.iter().all(|n| own(n)),
        Fields::All => false,
    };
    // A list of hrefs without a filter needs nothing but the members themselves, whatever the class.
    let bare = matches!(q.fields, Fields::Urls) && q.filter.is_none();
    if bare || (fields_own && filter_own) {
        Plan { joins: false, pool: false }
    } else {
        Plan { joins: true, pool: true }
    }
}

/// An exact narrowing of a VM listing: `power_state:<text>` (and friends) over XAPI's four power states.
fn pushdown(coll: &Collection, filter: Option<&Filter>) -> Option<String> {
    if coll.class != "VM" {
        return None;
    }
    let terms: Vec<&Filter> = match filter? {
        Filter::And(children) => children.iter().collect(),
        other => vec![other],
    };
    for t in terms {
        if let Filter::Property(name, child) = t {
            if name == "power_state" {
                let keep: Vec<&str> = POWER_STATES.iter().copied().filter(|s| child.matches(&json!(s))).collect();
                if keep.len() < POWER_STATES.len() {
                    let ors: Vec<String> = keep.iter().map(|s| format!(r#"field "power_state"="{s}""#)).collect();
                    return Some(if ors.is_empty() { "false".into() } else { format!("({})", ors.join(" or ")) });
                }
            }
        }
    }
    None
}

fn parse_records(body: &[u8]) -> Result<IndexMap<&str, &RawValue>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        result: IndexMap<&'a str, &'a RawValue>,
    }
    serde_json::from_slice::<Reply<'_>>(body).map(|r| r.result).map_err(|e| {
        ApiError::bad_gateway("XAPI answered records that cannot be read").with_data(json!({ "reason": e.to_string() }))
    })
}

/// Fills `ctx` with the records of the collection's joined classes and the pool uuid.
pub(crate) async fn load_joins<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    coll: &Collection,
    objects_ctx: &mut objects::Ctx,
) -> Result<(), ApiError> {
    let s = json!(caller.session);
    for class in coll.joins {
        let body =
            ctx.xapi.call_raw(&format!("{class}.get_all_records"), std::slice::from_ref(&s)).await.map_err(xapi_err)?;
        for (r, raw) in parse_records(&body)? {
            let rec: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            // Records of the listed class itself only serve as link targets: keep their uuid (and, for VDIs,
            // what the usage of a VHD chain adds up).
            let keep = if *class == coll.class {
                let mut k = json!({ "uuid": rec.get("uuid").cloned().unwrap_or(Value::Null) });
                if *class == "VDI" {
                    let parent = rec.get("sm_config").and_then(|m| m.get("vhd-parent")).cloned();
                    k["physical_utilisation"] = rec.get("physical_utilisation").cloned().unwrap_or(Value::Null);
                    k["sm_config"] = json!({ "vhd-parent": parent });
                }
                k
            } else {
                rec
            };
            objects_ctx.records.insert(r.to_string(), keep);
        }
    }
    Ok(())
}

/// Above this many links to one class, an object GET fetches the class once instead of each object.
const BULK_LINKS: usize = 32;

/// The fields of a record of `class` that link to records a single object needs, with their classes.
fn link_fields(class: &str) -> &'static [(&'static str, &'static str)] {
    match class {
        "VM" => &[
            ("metrics", "VM_metrics"),
            ("guest_metrics", "VM_guest_metrics"),
            ("VIFs", "VIF"),
            ("VBDs", "VBD"),
            ("snapshots", "VM"),
            ("parent", "VM"),
            ("snapshot_of", "VM"),
            ("affinity", "host"),
            ("resident_on", "host"),
            ("suspend_SR", "SR"),
            ("suspend_VDI", "VDI"),
        ],
        "host" => &[
            ("metrics", "host_metrics"),
            ("resident_VMs", "VM"),
            ("PIFs", "PIF"),
            ("PBDs", "PBD"),
            ("PCIs", "PCI"),
            ("PGPUs", "PGPU"),
            ("control_domain", "VM"),
            ("certificates", "Certificate"),
        ],
        "pool" => &[("master", "host"), ("default_SR", "SR"), ("suspend_image_SR", "SR"), ("crash_dump_SR", "SR")],
        "SR" => &[("VDIs", "VDI"), ("PBDs", "PBD")],
        "VDI" => &[("SR", "SR"), ("VBDs", "VBD"), ("snapshots", "VDI"), ("snapshot_of", "VDI")],
        "network" => &[("PIFs", "PIF"), ("VIFs", "VIF")],
        "VBD" => &[("VM", "VM"), ("VDI", "VDI")],
        "VIF" => &[("VM", "VM"), ("network", "network")],
        "PIF" => &[
            ("host", "host"),
            ("network", "network"),
            ("metrics", "PIF_metrics"),
            ("bond_master_of", "Bond"),
            ("bond_slave_of", "Bond"),
        ],
        "task" => &[("resident_on", "host")],
        "PBD" => &[("host", "host"), ("SR", "SR")],
        "PCI" => &[("host", "host")],
        "PGPU" => &[("host", "host"), ("PCI", "PCI"), ("GPU_group", "GPU_group")],
        _ => &[],
    }
}

fn refs(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if s != "OpaqueRef:NULL" => vec![s.clone()],
        Some(Value::Array(a)) => {
            a.iter().filter_map(Value::as_str).filter(|s| *s != "OpaqueRef:NULL").map(str::to_string).collect()
        }
        _ => Vec::new(),
    }
}

/// Fetches, ref by ref, the records one object links to (and, for VMs and SRs, the disks' SRs and their hosts that
/// `$container` needs), instead of whole classes: an object GET costs a few small calls, whatever the pool size.
/// The calls of one level go out together (one round trip per level, not per link).
pub(crate) async fn load_links<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    class: &str,
    rec: &Value,
    octx: &mut objects::Ctx,
) -> Result<(), ApiError> {
    let s = json!(caller.session);
    let resident = !refs(rec.get("resident_on")).is_empty();
    let mut wave: Vec<(String, &'static str, u8)> = Vec::new();
    for (field, target) in link_fields(class) {
        let found = refs(rec.get(*field));
        if found.len() > BULK_LINKS {
            // Many links of one class (a host's resident VMs, an SR's VDIs): one call for the whole class.
            let body = ctx
                .xapi
                .call_raw(&format!("{target}.get_all_records"), std::slice::from_ref(&s))
                .await
                .map_err(xapi_err)?;
            for (r, raw) in parse_records(&body)? {
                let uuid = serde_json::from_str::<Value>(raw.get()).ok().and_then(|v| v.get("uuid").cloned());
                octx.records.entry(r.to_string()).or_insert_with(|| json!({ "uuid": uuid }));
            }
            continue;
        }
        for r in found {
            wave.push((r, target, 0));
        }
    }
    while !wave.is_empty() {
        let mut seen = std::collections::HashSet::new();
        wave.retain(|(r, _, _)| !octx.records.contains_key(r) && seen.insert(r.clone()));
        let fetched =
            join_all(wave.iter().map(|(r, target, depth)| link(ctx, &s, class, resident, r, target, *depth))).await;
        let mut next_wave = Vec::new();
        for ((r, target, depth), got) in wave.drain(..).zip(fetched) {
            let got = match got {
                Ok(v) => v,
                Err(e) if e.code() == Some("HANDLE_INVALID") => continue,
                Err(e) => return Err(xapi_err(e)),
            };
            // Second level, for `$container`: VBD → VDI → SR → PBD → host.
            let next: &[(&str, &'static str)] = match (class, target) {
                ("VM", "VBD") if !resident => &[("VDI", "VDI")],
                ("VM", "VDI") if depth > 0 => &[("SR", "SR")],
                ("VM", "SR") if depth > 0 => &[("PBDs", "PBD")],
                ("VM" | "SR", "PBD") => &[("host", "host")],
                // A bond's master and slaves, for `bondMaster` and `bondSlaves`.
                ("PIF", "Bond") => &[("master", "PIF"), ("slaves", "PIF")],
                _ => &[],
            };
            for (field, t) in next {
                for nr in refs(got.get(*field)) {
                    next_wave.push((nr, *t, depth + 1));
                }
            }
            octx.records.insert(r, got);
        }
        wave = next_wave;
    }
    if class == "VDI" {
        vhd_chain(ctx, &s, rec, octx).await?;
    }
    if class == "message" {
        about_object(ctx, &s, rec, octx).await?;
    }
    Ok(())
}

/// The record of the object a message is about (an alarm names its type and href), found by its uuid in the class
/// the message's `cls` gives.
async fn about_object<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    rec: &Value,
    octx: &mut objects::Ctx,
) -> Result<(), ApiError> {
    let class = match rec.get("cls").and_then(Value::as_str).unwrap_or_default() {
        "VM" => "VM",
        "Host" => "host",
        "SR" => "SR",
        "Pool" => "pool",
        "VDI" => "VDI",
        _ => return Ok(()),
    };
    let Some(uuid) = rec.get("obj_uuid").and_then(Value::as_str).filter(|u| !u.is_empty()) else { return Ok(()) };
    let r = match ctx.xapi.call(&format!("{class}.get_by_uuid"), &[s.clone(), json!(uuid)]).await {
        Ok(r) => r,
        Err(e) if matches!(e.code(), Some("UUID_INVALID" | "HANDLE_INVALID")) => return Ok(()),
        Err(e) => return Err(xapi_err(e)),
    };
    let r = r.as_str().unwrap_or_default().to_string();
    match ctx.xapi.call(&format!("{class}.get_record"), &[s.clone(), json!(r)]).await {
        Ok(object) => {
            octx.records.insert(r, object);
            Ok(())
        }
        Err(e) if e.code() == Some("HANDLE_INVALID") => Ok(()),
        Err(e) => Err(xapi_err(e)),
    }
}

/// The VHD parents of a VDI (`sm_config.vhd-parent`, a uuid), one level at a time, for its chain's usage.
async fn vhd_chain<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    rec: &Value,
    octx: &mut objects::Ctx,
) -> Result<(), ApiError> {
    let parent_of =
        |v: &Value| v.get("sm_config").and_then(|m| m.get("vhd-parent")).and_then(Value::as_str).map(str::to_string);
    let mut next = parent_of(rec);
    for _ in 0..64 {
        let Some(uuid) = next.take() else { break };
        let r = match ctx.xapi.call("VDI.get_by_uuid", &[s.clone(), json!(uuid)]).await {
            Ok(r) => r,
            Err(e) if matches!(e.code(), Some("UUID_INVALID" | "HANDLE_INVALID")) => break,
            Err(e) => return Err(xapi_err(e)),
        };
        let parent = match ctx.xapi.call("VDI.get_record", &[s.clone(), r.clone()]).await {
            Ok(p) => p,
            Err(e) if e.code() == Some("HANDLE_INVALID") => break,
            Err(e) => return Err(xapi_err(e)),
        };
        next = parent_of(&parent);
        octx.records.insert(r.as_str().unwrap_or_default().to_string(), parent);
    }
    Ok(())
}

/// What an object of `class` needs of the `target` record `r` it links to.
async fn link<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    class: &str,
    resident: bool,
    r: &str,
    target: &str,
    depth: u8,
) -> Result<Value, XapiError> {
    // Whole records only where the object reads more than the uuid; the disk chain only for `$container` of a VM
    // that is not resident anywhere.
    let full = match (class, target) {
        ("VM", "VM_metrics" | "VM_guest_metrics") => true,
        ("VM", "VBD" | "VDI" | "PBD") => !resident,
        ("SR", "PBD")
        | ("host", "host_metrics" | "Certificate")
        | ("pool", "host")
        | ("PIF", "PIF_metrics" | "Bond")
        | ("network", "PIF") => true,
        _ => false,
    };
    let args = [s.clone(), json!(r)];
    if full {
        ctx.xapi.call(&format!("{target}.get_record"), &args).await
    } else if class == "VM" && target == "SR" && depth > 0 {
        // A disk's SR: whether it is shared and where it is plugged, without its (possibly huge) VDI list.
        let (shared, pbds, uuid) = join3(
            ctx.xapi.call("SR.get_shared", &args),
            ctx.xapi.call("SR.get_PBDs", &args),
            ctx.xapi.call("SR.get_uuid", &args),
        )
        .await;
        Ok(json!({ "uuid": uuid?, "shared": shared?, "PBDs": pbds? }))
    } else {
        ctx.xapi.call(&format!("{target}.get_uuid"), &args).await.map(|u| json!({ "uuid": u }))
    }
}

/// The pool's uuid, in one call (a pool has one record).
/// The pool's uuid and its master's platform version (one more call, on the master's `software_version`).
async fn pool_info<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller) -> Result<(String, String), ApiError> {
    let s = json!(caller.session);
    let pools = ctx.xapi.call("pool.get_all_records", std::slice::from_ref(&s)).await.map_err(xapi_err)?;
    let pool = pools.as_object().and_then(|p| p.values().next());
    let uuid = pool.and_then(|p| p.get("uuid")).and_then(Value::as_str);
    let uuid = uuid.map(str::to_string).ok_or_else(|| ApiError::bad_gateway("XAPI reports no pool"))?;
    let master = pool.and_then(|p| p.get("master")).cloned().unwrap_or(Value::Null);
    let version = match ctx.xapi.call("host.get_software_version", &[s, master]).await {
        Ok(v) => v.get("platform_version").and_then(Value::as_str).unwrap_or_default().to_string(),
        Err(e) if e.code() == Some("HANDLE_INVALID") => String::new(),
        Err(e) => return Err(xapi_err(e)),
    };
    Ok((uuid, version))
}

/// A mapping context holding the pool's identity.
pub(crate) async fn pool_ctx<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller) -> Result<objects::Ctx, ApiError> {
    let (pool_uuid, platform_version) = pool_info(ctx, caller).await?;
    Ok(objects::Ctx { pool_uuid, platform_version, ..Default::default() })
}

/// Whether a record belongs to the collection (the selector, evaluated locally for single objects).
pub(crate) fn member(coll: &Collection, r: &Value) -> bool {
    let b = |k: &str| r.get(k).and_then(Value::as_bool).unwrap_or(false);
    match coll.name {
        "vms" => !b("is_a_template") && !b("is_a_snapshot") && !b("is_control_domain"),
        "vm-snapshots" => b("is_a_snapshot") && !b("is_control_domain"),
        "vm-templates" => b("is_a_template") && !b("is_a_snapshot") && !b("is_control_domain"),
        "vm-controllers" => b("is_control_domain"),
        "vdis" => !b("is_a_snapshot") && b("managed"),
        "vdi-snapshots" => b("is_a_snapshot") && b("managed"),
        "alarms" => matches!(
            r.get("name").and_then(Value::as_str),
            Some("ALARM" | "BOND_STATUS_CHANGED" | "MULTIPATH_PERIODIC_ALERT")
        ),
        "messages" => !matches!(
            r.get("name").and_then(Value::as_str),
            Some("ALARM" | "BOND_STATUS_CHANGED" | "MULTIPATH_PERIODIC_ALERT")
        ),
        _ => true,
    }
}

fn href(coll: &str, uuid: &Value) -> String {
    format!("/rest/v0/{coll}/{}", uuid.as_str().unwrap_or_default())
}

pub(crate) fn listing(q: &ListQuery, items: impl Iterator<Item = (Map<String, Value>, String)>) -> Reply {
    let mut w = ListWriter::new(q.format);
    let mut n = 0usize;
    for (object, href) in items {
        if q.limit.is_some_and(|l| n >= l) {
            break;
        }
        if let Some(f) = &q.filter {
            let v = Value::Object(object);
            if !f.matches(&v) {
                continue;
            }
            let Value::Object(object) = v else { continue };
            w.push(&params::item(&q.fields, object, href));
        } else {
            w.push(&params::item(&q.fields, object, href));
        }
        n += 1;
    }
    let content_type = w.content_type();
    Reply { status: 200, headers: vec![("content-type".into(), content_type.into())], body: w.finish(), stream: None }
}

/// A listing being written: XAPI's answer as received, and where each record is in it. Each call to
/// [`next_chunk`](Self::next_chunk) maps, filters and writes records until about 64 KiB are ready, so neither the
/// objects nor the whole answer are ever held at once.
#[derive(Debug)]
pub struct Listing {
    body: Vec<u8>,
    /// Byte ranges of each record's ref and raw JSON in `body`.
    entries: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    next: usize,
    octx: objects::Ctx,
    coll: &'static Collection,
    q: ListQuery,
    writer: Option<ListWriter>,
}

/// Size of the chunks a listing is streamed in.
const CHUNK: usize = 64 * 1024;

impl Listing {
    /// The next part of the response body, `None` once it is complete.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let mut w = self.writer.take()?;
        while self.next < self.entries.len() && w.out.len() < CHUNK {
            if self.q.limit.is_some_and(|l| w.count() >= l) {
                self.next = self.entries.len();
                break;
            }
            let (r, raw) = self.entries[self.next].clone();
            self.next += 1;
            let (Ok(reference), Ok(raw)) = (std::str::from_utf8(&self.body[r]), std::str::from_utf8(&self.body[raw]))
            else {
                continue;
            };
            let Ok(rec) = serde_json::from_str::<Value>(raw) else { continue };
            let object = objects::build(self.coll, reference, &rec, &self.octx);
            let h = href(self.coll.name, rec.get("uuid").unwrap_or(&Value::Null));
            let object = match &self.q.filter {
                Some(f) => {
                    let v = Value::Object(object);
                    if !f.matches(&v) {
                        continue;
                    }
                    let Value::Object(o) = v else { continue };
                    o
                }
                None => object,
            };
            w.push(&params::item(&self.q.fields, object, h));
        }
        if self.next >= self.entries.len() {
            return Some(w.finish());
        }
        let chunk = w.take();
        self.writer = Some(w);
        Some(chunk)
    }

    /// The whole body at once (tests, small answers).
    pub fn collect(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.next_chunk() {
            out.extend_from_slice(&c);
        }
        out
    }
}

/// `GET /rest/v0/<collection>`: fetches what the answer needs, then returns a streamed [`Listing`].
pub async fn list<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &'static Collection,
) -> Result<Reply, ApiError> {
    list_where(ctx, caller, req, coll, None).await
}

/// `GET /rest/v0/<collection>/<id>/messages|alarms`: the members of `about` (messages or alarms) whose object is
/// this one (XAPI's `obj_uuid`), as a listing of that collection.
pub async fn about<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
    about: &str,
) -> Result<Reply, ApiError> {
    let (_, rec) = find(ctx, &caller, coll, id).await?;
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or_default();
    let target = objects::collection(about).ok_or_else(|| ApiError::internal(format!("{about} collection missing")))?;
    // (uuids are hex and dashes: nothing to escape in XAPI's expression.)
    let uuid: String = uuid.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect();
    list_where(ctx, caller, req, target, Some(format!(r#"field "obj_uuid"="{uuid}""#))).await
}

/// A listing of `coll`'s members, narrowed by `narrow` (an XAPI expression) when given.
async fn list_where<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &'static Collection,
    narrow: Option<String>,
) -> Result<Reply, ApiError> {
    let q = params::parse_list_query(&req.query)?;
    let p = plan(coll, &q);
    let mut octx = if p.pool { pool_ctx(ctx, &caller).await? } else { objects::Ctx::default() };
    if p.joins {
        load_joins(ctx, &caller, coll, &mut octx).await?;
    }
    let mut selector = match pushdown(coll, q.filter.as_ref()) {
        Some(extra) => format!("({}) and {extra}", coll.selector),
        None => coll.selector.to_string(),
    };
    if let Some(narrow) = narrow {
        selector = format!("({selector}) and {narrow}");
    }
    let body = ctx
        .xapi
        .call_raw(&format!("{}.get_all_records_where", coll.class), &[json!(caller.session), json!(selector)])
        .await
        .map_err(xapi_err)?;
    let base = body.as_ptr() as usize;
    let range = |s: &str| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let entries = parse_records(&body)?.into_iter().map(|(r, raw)| (range(r), range(raw.get()))).collect();
    let writer = ListWriter::new(q.format);
    let content_type = writer.content_type();
    let listing = Listing { body, entries, next: 0, octx, coll, q, writer: Some(writer) };
    Ok(Reply {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: Vec::new(),
        stream: Some(super::Stream::Listing(Box::new(listing))),
    })
}

fn no_such(coll: &Collection, id: &str) -> ApiError {
    ApiError::not_found(format!("no such {} {id}", coll.xo_type)).with_data(json!({ "id": id, "type": coll.xo_type }))
}

/// Whether `id` can name an XAPI object at all: a uuid (8-4-4-4-12 hex digits) or an `OpaqueRef:`. Anything else
/// is refused before it reaches XAPI.
pub fn plausible_id(id: &str) -> bool {
    if let Some(r) = id.strip_prefix("OpaqueRef:") {
        return !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Finds the record of `id` (uuid or OpaqueRef) in `coll`.
pub(crate) async fn find<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    coll: &Collection,
    id: &str,
) -> Result<(String, Value), ApiError> {
    if !plausible_id(id) {
        return Err(no_such(coll, id));
    }
    let s = json!(caller.session);
    let reference = if id.starts_with("OpaqueRef:") {
        id.to_string()
    } else {
        match ctx.xapi.call(&format!("{}.get_by_uuid", coll.class), &[s.clone(), json!(id)]).await {
            Ok(r) => r.as_str().unwrap_or_default().to_string(),
            Err(e) if matches!(e.code(), Some("UUID_INVALID" | "HANDLE_INVALID")) => return Err(no_such(coll, id)),
            Err(e) => return Err(xapi_err(e)),
        }
    };
    let rec = match ctx.xapi.call(&format!("{}.get_record", coll.class), &[s, json!(reference)]).await {
        Ok(r) => r,
        Err(e) if matches!(e.code(), Some("UUID_INVALID" | "HANDLE_INVALID")) => return Err(no_such(coll, id)),
        Err(e) => return Err(xapi_err(e)),
    };
    if !member(coll, &rec) {
        return Err(no_such(coll, id));
    }
    Ok((reference, rec))
}

/// `GET /rest/v0/<collection>/<id>`.
pub async fn get<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    let mut octx = objects::Ctx::default();
    let (pool, links) = join(pool_info(ctx, &caller), load_links(ctx, &caller, coll.class, &rec, &mut octx)).await;
    links?;
    (octx.pool_uuid, octx.platform_version) = pool?;
    let object = objects::build(coll, &reference, &rec, &octx);
    Ok(Reply::json(200, &Value::Object(object)))
}

/// `GET /rest/v0/<vm collection>/<id>/vdis`: the VDIs and VDI snapshots behind the VM's VBDs.
pub async fn vm_vdis<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let q = params::parse_list_query(&req.query)?;
    let (_, vm) = find(ctx, &caller, coll, id).await?;
    let vdis_coll = objects::collection("vdis").ok_or_else(|| ApiError::internal("vdis collection missing"))?;
    let mut octx = pool_ctx(ctx, &caller).await?;
    load_joins(ctx, &caller, vdis_coll, &mut octx).await?;
    let s = json!(caller.session);
    let mut items = Vec::new();
    for vbd in vm.get("VBDs").and_then(Value::as_array).cloned().unwrap_or_default() {
        let Some(vdi_ref) = octx.get(&vbd).and_then(|b| b.get("VDI")).and_then(Value::as_str).map(str::to_string)
        else {
            continue;
        };
        if vdi_ref == "OpaqueRef:NULL" {
            continue;
        }
        let rec = match ctx.xapi.call("VDI.get_record", &[s.clone(), json!(vdi_ref)]).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("HANDLE_INVALID") => continue,
            Err(e) => return Err(xapi_err(e)),
        };
        let snapshot = rec.get("is_a_snapshot").and_then(Value::as_bool) == Some(true);
        let object = objects::COLLECTIONS
            .iter()
            .find(|c| c.name == "vdis")
            .map(|c| objects::build(c, &vdi_ref, &rec, &octx))
            .unwrap_or_default();
        let h = href(if snapshot { "vdi-snapshots" } else { "vdis" }, rec.get("uuid").unwrap_or(&Value::Null));
        items.push((object, h));
    }
    Ok(listing(&q, items.into_iter()))
}

/// Longest wait for a task in seconds (`wait=result`, `?sync` actions), and each `event.from`'s.
const MAX_WAIT: f64 = 600.0;
const POLL: f64 = 30.0;

/// Waits through `event.from` (at most [`MAX_WAIT`] seconds) while the task `reference`, whose record is `rec`, is
/// pending; answers its latest record.
pub(crate) async fn wait_for_task<T: Transport>(
    ctx: &Ctx<'_, T>,
    session: &Value,
    reference: &str,
    mut rec: Value,
) -> Result<Value, XapiError> {
    let mut token = Value::String(String::new());
    let mut spent = 0.0;
    while rec.get("status").and_then(Value::as_str) == Some("pending") && spent < MAX_WAIT {
        let ev = ctx
            .xapi
            .call("event.from", &[session.clone(), json!([format!("task/{reference}")]), token.clone(), json!(POLL)])
            .await?;
        token = ev.get("token").cloned().unwrap_or(token);
        spent += POLL;
        rec = ctx.xapi.call("task.get_record", &[session.clone(), json!(reference)]).await?;
    }
    Ok(rec)
}

/// `GET /rest/v0/tasks/<id>[?wait=result|true]`: with `wait`, answers once the task is no longer pending.
pub async fn task<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, req: &Request, id: &str) -> Result<Reply, ApiError> {
    let coll = objects::collection("tasks").ok_or_else(|| ApiError::internal("tasks collection missing"))?;
    // XO 6's boolean, and XO 5's `wait=result`.
    let wait = params::pairs(&req.query).iter().any(|(k, v)| k == "wait" && v != "false" && v != "0");
    let (reference, mut rec) = find(ctx, &caller, coll, id).await?;
    if wait {
        rec = match wait_for_task(ctx, &json!(caller.session), &reference, rec).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("HANDLE_INVALID") => return Err(no_such(coll, id)),
            Err(e) => return Err(xapi_err(e)),
        };
    }
    let mut octx = pool_ctx(ctx, &caller).await?;
    load_joins(ctx, &caller, coll, &mut octx).await?;
    let mut task = objects::build(coll, &reference, &rec, &octx);
    if let Some(made) = made_object(ctx, &json!(caller.session), &rec).await {
        if let Some(Value::Object(result)) = task.get_mut("result") {
            result.extend(made);
        }
    }
    Ok(Reply::json(200, &Value::Object(task)))
}

/// For a successful task whose result is an object ref (`<value>OpaqueRef:…</value>`): the object's `id` and REST
/// `href`. The class is the one of the task's call (`Async.<class>.<op>`, XAPI's name for the task), the collection
/// the one the object belongs to now.
pub(crate) async fn made_object<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, rec: &Value) -> Option<Map<String, Value>> {
    if rec["status"] != "success" {
        return None;
    }
    let result = rec["result"].as_str()?;
    let start = result.find("OpaqueRef:")?;
    let end = result[start..].find('<').map_or(result.len(), |i| start + i);
    let made = &result[start..end];
    // A plan's task names the collection of what it makes in `other_config` ([`super::plans`]).
    let class = match rec["other_config"]["xo-edge:makes"].as_str() {
        Some(coll) => objects::collection(coll)?.class,
        None => rec["name_label"].as_str()?.strip_prefix("Async.")?.split('.').next()?,
    };
    let coll = objects::COLLECTIONS.iter().find(|c| c.class == class)?;
    let made_rec = ctx.xapi.call(&format!("{}.get_record", coll.class), &[s.clone(), json!(made)]).await.ok()?;
    let coll = objects::COLLECTIONS.iter().find(|c| c.class == class && member(c, &made_rec))?;
    let uuid = made_rec["uuid"].as_str()?;
    let mut out = Map::new();
    out.insert("id".into(), json!(uuid));
    out.insert("href".into(), json!(format!("/rest/v0/{}/{uuid}", coll.name)));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::plausible_id;

    #[test]
    fn ids_are_checked_before_xapi() {
        assert!(plausible_id("770aa52a-fd42-8faf-f167-8c5c4a237cac"));
        assert!(plausible_id("OpaqueRef:5c0e1c2f-8a2f-4b6c-9e0d-0123456789ab"));
        for bad in [
            "",
            "x",
            "770aa52a-fd42-8faf-f167-8c5c4a237ca",
            "OpaqueRef:",
            "OpaqueRef:a b",
            "../etc",
            "770aa52a-fd42-8faf-f167-8c5c4a237caz",
        ] {
            assert!(!plausible_id(bad), "{bad}");
        }
    }
}
