//! Dashboards in XO 6's shapes, each computed in one pass over XAPI's records (one `get_all_records` per class)
//! and, where XO shows usage, one `/rrd_updates` read per live host, on that host (its xcp-rrdd has its RRDs and its
//! VMs'):
//!
//! - `GET /rest/v0/dashboard`: counts and sizes of the pool (`XoaDashboard`): one pool, its hosts' and VMs' power
//!   states, CPUs, memory, the size of the SRs that have one (and what XO's replicas use of it), the hosts with
//!   missing patches (XCP-ng's updater plugin).
//! - `GET /rest/v0/pools/<id>/dashboard` (`PoolDashboard`): host and VM states, the five hosts and VMs using the
//!   most CPU and memory, the five fullest SRs, the pool's alarms, CPU provisioning, missing patches.
//! - `GET /rest/v0/vms/<id>/dashboard` (`VmDashboard`): the VM's quick facts and alarms. Backups are XO's own state:
//!   a pool has no backup job, so `backupsInfo` says so (no run, no archive, `not-in-active-job`).
//!
//! XO's backup and backup-repository parts of the global dashboard are XO-only and left out (optional there).

use super::auth::Caller;
use super::collections::{find, load_links, member, pool_ctx};
use super::patches;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::query::params;
use crate::xapi::Transport;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

type Records = Map<String, Value>;

async fn all<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, class: &str) -> Result<Records, ApiError> {
    let v = ctx
        .xapi
        .call(&format!("{class}.get_all_records"), &[json!(caller.session)])
        .await
        .map_err(|e| e.to_api_error())?;
    Ok(match v {
        Value::Object(m) => m,
        _ => Map::new(),
    })
}

fn f(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn is_vm(vm: &Value) -> bool {
    !vm["is_a_template"].as_bool().unwrap_or(false)
        && !vm["is_a_snapshot"].as_bool().unwrap_or(false)
        && !vm["is_control_domain"].as_bool().unwrap_or(false)
}

/// XO's VM power-state counts.
fn vms_status(vms: &Records) -> Map<String, Value> {
    let mut n: HashMap<&str, u64> = HashMap::new();
    let mut total = 0;
    for vm in vms.values().filter(|v| is_vm(v)) {
        total += 1;
        *n.entry(s(&vm["power_state"])).or_default() += 1;
    }
    let c = |k: &str| n.get(k).copied().unwrap_or(0);
    let known = c("Running") + c("Paused") + c("Halted") + c("Suspended");
    let mut m = Map::new();
    m.insert("running".into(), json!(c("Running")));
    m.insert("paused".into(), json!(c("Paused")));
    m.insert("halted".into(), json!(c("Halted")));
    m.insert("suspended".into(), json!(c("Suspended")));
    m.insert("active".into(), json!(c("Running") + c("Paused")));
    m.insert("inactive".into(), json!(c("Halted") + c("Suspended")));
    m.insert("unknown".into(), json!(total - known));
    m.insert("total".into(), json!(total));
    m
}

/// Whether XAPI sees a host alive (its metrics' `live`).
fn alive(host: &Value, metrics: &Records) -> bool {
    metrics.get(s(&host["metrics"])).is_some_and(|m| m["live"].as_bool().unwrap_or(false))
}

/// XO's host counts: running (alive, enabled), disabled (alive, not enabled), halted (not alive).
fn hosts_status(hosts: &Records, metrics: &Records) -> (u64, u64, u64) {
    let (mut running, mut disabled, mut halted) = (0, 0, 0);
    for h in hosts.values() {
        match (alive(h, metrics), h["enabled"].as_bool().unwrap_or(false)) {
            (true, true) => running += 1,
            (true, false) => disabled += 1,
            (false, _) => halted += 1,
        }
    }
    (running, disabled, halted)
}

fn cpus(host: &Value) -> f64 {
    f(&host["cpu_info"]["cpu_count"])
}

/// Whether XO's replication made this VM (`start` blocked, `xo:backup:job` set).
fn is_replica(vm: &Value) -> bool {
    vm["blocked_operations"].get("start").is_some() && vm["other_config"].get("xo:backup:job").is_some()
}

/// The SRs XO counts (`size > 0`: writable ones and ISO libraries) and what XO's replicas (VMs its replication made,
/// `start` blocked and `xo:backup:job` set) use of them.
fn sr_sizes(srs: &Records, vdis: &Records, vbds: &Records, vms: &Records) -> Value {
    let replica = is_replica;
    let (mut total, mut used, mut replicated) = (0.0, 0.0, 0.0);
    let mut any = false;
    for sr in srs.values().filter(|sr| f(&sr["physical_size"]) > 0.0) {
        any = true;
        total += f(&sr["physical_size"]);
        used += f(&sr["physical_utilisation"]);
        for vdi in sr["VDIs"].as_array().into_iter().flatten().filter_map(|r| vdis.get(s(r))) {
            let of_replica = vdi["VBDs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| vbds.get(s(b)))
                .any(|b| vms.get(s(&b["VM"])).is_some_and(replica));
            if of_replica {
                replicated += f(&vdi["physical_utilisation"]);
            }
        }
    }
    if !any {
        return json!({ "isEmpty": true });
    }
    json!({ "size": {
        "available": total - used, "other": used - replicated, "replicated": replicated, "total": total, "used": used,
    }})
}

/// `GET /rest/v0/dashboard`.
pub async fn global<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller) -> Result<Reply, ApiError> {
    let hosts = all(ctx, &caller, "host").await?;
    let metrics = all(ctx, &caller, "host_metrics").await?;
    let vms = all(ctx, &caller, "VM").await?;
    let srs = all(ctx, &caller, "SR").await?;
    // Disks and their VBDs only matter when XO's replication made VMs here (their usage is "replicated").
    let (vdis, vbds) = if vms.values().any(is_replica) {
        (all(ctx, &caller, "VDI").await?, all(ctx, &caller, "VBD").await?)
    } else {
        (Map::new(), Map::new())
    };
    let (running, disabled, halted) = hosts_status(&hosts, &metrics);
    let memory: f64 = hosts.values().filter_map(|h| metrics.get(s(&h["metrics"]))).map(|m| f(&m["memory_total"])).sum();
    let sr_total: f64 = srs.values().map(|sr| f(&sr["physical_size"])).filter(|x| *x > 0.0).sum();
    let patches = patches::pool_summary(ctx, &caller, &hosts).await;
    let dashboard = json!({
        "nPools": 1,
        "nHosts": hosts.len(),
        "poolsStatus": { "connected": 1, "disconnected": 0, "unreachable": 0, "unknown": 0, "total": 1 },
        "resourcesOverview": {
            "nCpus": hosts.values().map(cpus).sum::<f64>(),
            "memorySize": memory,
            "srSize": sr_total,
        },
        "storageRepositories": sr_sizes(&srs, &vdis, &vbds, &vms),
        "missingPatches": patches,
        "vmsStatus": vms_status(&vms),
        "hostsStatus": {
            "running": running, "disabled": disabled, "halted": halted, "unknown": 0, "total": hosts.len(),
        },
    });
    Ok(Reply::json(200, &dashboard))
}

/// The newest RRD value of each `<kind>:<uuid>:<ds>` (NaN dropped).
fn latest(updates: &Value) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Some(row) = updates["data"].as_array().and_then(|d| d.first()) else { return out };
    for (i, legend) in updates["meta"]["legend"].as_array().into_iter().flatten().enumerate() {
        let Some(key) = legend.as_str().and_then(|l| l.strip_prefix("AVERAGE:")) else { continue };
        let v = f(&row["values"][i]);
        if v.is_finite() {
            out.insert(key.to_string(), v);
        }
    }
    out
}

/// The mean of an object's `cpu<N>` sources, in percent.
fn cpu_percent(values: &HashMap<String, f64>, kind: &str, uuid: &str) -> Option<f64> {
    let prefix = format!("{kind}:{uuid}:cpu");
    let cpus: Vec<f64> = values
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(&prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|(_, v)| *v)
        .collect();
    (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64 * 100.0)
}

fn top_five(mut items: Vec<Value>, key: &str) -> Value {
    items.sort_by(|a, b| f(&b[key]).total_cmp(&f(&a[key])));
    items.truncate(5);
    Value::Array(items)
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

/// The hrefs of the pool's alarms, or those about one object.
async fn alarms<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, about: Option<&str>) -> Result<Value, ApiError> {
    let coll = objects::collection("alarms").ok_or_else(|| ApiError::internal("alarms collection missing"))?;
    // The alarms XAPI selects (about one object: its messages only).
    let selector = match about {
        Some(uuid) => format!(r#"field "obj_uuid"="{uuid}" and ({})"#, coll.selector),
        None => coll.selector.to_string(),
    };
    let messages = ctx
        .xapi
        .call("message.get_all_records_where", &[json!(caller.session), json!(selector)])
        .await
        .map_err(|e| e.to_api_error())?;
    let hrefs = messages
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|m| member(coll, m))
        .map(|m| json!(format!("/rest/v0/alarms/{}", s(&m["uuid"]))))
        .collect();
    Ok(Value::Array(hrefs))
}

/// `GET /rest/v0/pools/<id>/dashboard` and `GET /rest/v0/vms/<id>/dashboard`.
pub async fn of_object<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &'static Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    if coll.class == "VM" {
        return vm(ctx, caller, coll, &reference, &rec).await;
    }
    let hosts = all(ctx, &caller, "host").await?;
    let metrics = all(ctx, &caller, "host_metrics").await?;
    let vms = all(ctx, &caller, "VM").await?;
    let srs = all(ctx, &caller, "SR").await?;
    let (running, disabled, halted) = hosts_status(&hosts, &metrics);
    let pairs: Vec<(&str, String)> = vec![
        ("cf", "AVERAGE".into()),
        ("host", "true".into()),
        ("interval", "5".into()),
        ("json", "true".into()),
        ("start", ctx.now.saturating_sub(30).to_string()),
    ];
    // Usage needs the RRDs, each host's read on that host (its own and its VMs'); without them the rest of the
    // dashboard still stands (XO marks it expired).
    let master = rec["master"].as_str().unwrap_or_default();
    let live: Vec<(&String, &Value)> = hosts.iter().filter(|(_, h)| alive(h, &metrics)).collect();
    let reads = live.iter().map(|(r, h)| {
        let address = (r.as_str() != master).then(|| s(&h["address"]).to_string());
        let pairs = pairs.clone();
        let session = caller.session.as_str();
        async move { super::stats::rrd_updates_at(ctx, session, address.as_deref(), &pairs).await }
    });
    let answers = futures_util::future::join_all(reads).await;
    let usage_known = answers.iter().all(Result::is_ok);
    let mut values = std::collections::HashMap::new();
    for u in answers.iter().flatten() {
        values.extend(latest(u));
    }
    let mut host_ram = Vec::new();
    let mut host_cpu = Vec::new();
    for h in hosts.values().filter(|h| alive(h, &metrics)) {
        let (uuid, name) = (s(&h["uuid"]), s(&h["name_label"]));
        if let Some(m) = metrics.get(s(&h["metrics"])) {
            let (size, free) = (f(&m["memory_total"]), f(&m["memory_free"]));
            host_ram.push(json!({
                "id": uuid, "name_label": name, "size": size, "usage": size - free, "percent": percent(size - free, size),
            }));
        }
        if let Some(p) = cpu_percent(&values, "host", uuid) {
            host_cpu.push(json!({ "id": uuid, "name_label": name, "percent": p }));
        }
    }
    let mut vm_ram = Vec::new();
    let mut vm_cpu = Vec::new();
    let mut assigned = 0.0;
    for vm in vms.values().filter(|v| is_vm(v)) {
        let state = s(&vm["power_state"]);
        if state != "Running" && state != "Paused" {
            continue;
        }
        assigned += f(&vm["VCPUs_at_startup"]);
        let (uuid, name) = (s(&vm["uuid"]), s(&vm["name_label"]));
        if let Some(memory) = values.get(&format!("vm:{uuid}:memory")) {
            if let Some(free_kib) = values.get(&format!("vm:{uuid}:memory_internal_free")) {
                let free = free_kib * 1024.0;
                vm_ram.push(json!({
                    "id": uuid, "name_label": name, "memory": memory, "memoryFree": free,
                    "percent": percent(memory - free, *memory),
                }));
            }
        }
        if let Some(p) = cpu_percent(&values, "vm", uuid) {
            vm_cpu.push(json!({ "id": uuid, "name_label": name, "percent": p }));
        }
    }
    let total_cpus: f64 = hosts.values().map(cpus).sum();
    let sr_usage = srs
        .values()
        .filter(|sr| f(&sr["physical_size"]) > 0.0)
        .map(|sr| {
            let (size, used) = (f(&sr["physical_size"]), f(&sr["physical_utilisation"]));
            json!({ "id": s(&sr["uuid"]), "name_label": s(&sr["name_label"]), "size": size, "physical_usage": used,
                    "percent": percent(used, size) })
        })
        .collect();
    let mut vm_status = vms_status(&vms);
    for k in ["active", "inactive", "unknown"] {
        vm_status.remove(k);
    }
    let mut vms_part = json!({ "status": vm_status });
    let mut top = json!({ "ram": top_five(vm_ram, "percent"), "cpu": top_five(vm_cpu, "percent") });
    if !usage_known {
        top["isExpired"] = json!(true);
    }
    vms_part["topFiveUsage"] = top;
    let dashboard = json!({
        "hosts": {
            "status": { "running": running, "disabled": disabled, "halted": halted, "total": hosts.len() },
            "topFiveUsage": { "ram": top_five(host_ram, "percent"), "cpu": top_five(host_cpu, "percent") },
            "missingPatches": patches::pool_list(ctx, &caller, &hosts).await,
        },
        "vms": vms_part,
        "srs": { "topFiveUsage": top_five(sr_usage, "percent") },
        "alarms": alarms(ctx, &caller, None).await?,
        "cpuProvisioning": { "total": total_cpus, "assigned": assigned, "percent": percent(assigned, total_cpus) },
    });
    Ok(Reply::json(200, &dashboard))
}

/// `GET /rest/v0/vms/<id>/dashboard`: XO's quick facts of the VM's object, its alarms, and no backups.
async fn vm<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &'static Collection,
    reference: &str,
    rec: &Value,
) -> Result<Reply, ApiError> {
    // The VM's own links only (as `GET /rest/v0/vms/<id>`), not whole classes.
    let mut octx = pool_ctx(ctx, &caller).await?;
    load_links(ctx, &caller, coll.class, rec, &mut octx).await?;
    let o = objects::build(coll, reference, rec, &octx);
    let mut quick = Map::new();
    for k in [
        "id",
        "uuid",
        "$pool",
        "name_description",
        "power_state",
        "CPUs",
        "memory",
        "mainIpAddress",
        "os_version",
        "virtualizationMode",
        "tags",
        "pvDriversDetected",
        "pvDriversVersion",
        "pvDriversUpToDate",
        "startTime",
    ] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            quick.insert(k.into(), v.clone());
        }
    }
    // XO's quick facts keep only the VCPU count, the memory size and the OS name.
    quick.insert(
        "CPUs".into(),
        json!({ "number": o.get("CPUs").and_then(|c| c.get("number")).cloned().unwrap_or(json!(0)) }),
    );
    quick.insert(
        "memory".into(),
        json!({ "size": o.get("memory").and_then(|m| m.get("size")).cloned().unwrap_or(json!(0)) }),
    );
    let os = o.get("os_version").and_then(|v| v.get("name")).cloned();
    quick.insert("os_version".into(), os.map(|n| json!({ "name": n })).unwrap_or_else(|| json!({})));
    if let Some(host) = o.get("$container").filter(|h| **h != o["$pool"]) {
        quick.insert("host".into(), host.clone());
    }
    let other = &rec["other_config"];
    let mut creation = Map::new();
    if let Some(d) = other.get("xo:create_time").or_else(|| other.get("install-time")).and_then(Value::as_str) {
        creation.insert("date".into(), json!(d));
    }
    if let Some(u) = other.get("xo:creator").and_then(Value::as_str) {
        creation.insert("user".into(), json!(u));
    }
    quick.insert("creation".into(), Value::Object(creation));
    let uuid = s(&rec["uuid"]).to_string();
    let dashboard = json!({
        "quickInfo": quick,
        "alarms": alarms(ctx, &caller, Some(&uuid)).await?,
        "backupsInfo": { "lastRuns": [], "backupArchives": [], "replication": {}, "vmProtection": "not-in-active-job" },
    });
    Ok(Reply::json(200, &dashboard))
}

/// The JSON Schema of a dashboard (the OpenAPI document's): its parts as XO 6 names them; `coll` is `pools`,
/// `vms`, or `None` for the global one.
pub fn schema(coll: Option<&str>) -> Value {
    let parts: &[(&str, &str)] = match coll {
        Some("pools") => &[
            ("hosts", "status, topFiveUsage (ram, cpu), missingPatches"),
            ("vms", "status, topFiveUsage (ram, cpu)"),
            ("srs", "topFiveUsage"),
            ("alarms", "the pool's alarms"),
            ("cpuProvisioning", "total, assigned, percent"),
        ],
        Some(_) => &[
            ("quickInfo", "the VM at a glance"),
            ("alarms", "the VM's alarms"),
            ("backupsInfo", "empty: backups are XO's own state"),
        ],
        None => &[
            ("nPools", ""),
            ("nHosts", ""),
            ("poolsStatus", "connected, disconnected, unreachable, unknown, total"),
            ("resourcesOverview", "nCpus, memorySize, srSize"),
            ("storageRepositories", "size: available, other, replicated, total, used"),
            ("missingPatches", "hosts and pools with missing patches"),
            ("vmsStatus", "running, paused, halted, suspended, active, inactive, unknown, total"),
            ("hostsStatus", "running, disabled, halted, unknown, total"),
        ],
    };
    let properties: Map<String, Value> = parts
        .iter()
        .map(|(k, what)| {
            let ty = match *k {
                "nPools" | "nHosts" => json!({ "type": "integer" }),
                "alarms" => json!({ "type": "array", "items": {} }),
                _ => json!({ "type": "object" }),
            };
            let mut ty = ty;
            if !what.is_empty() {
                ty["description"] = json!(what);
            }
            (k.to_string(), ty)
        })
        .collect();
    let required: Vec<&str> = parts.iter().map(|(k, _)| *k).collect();
    json!({ "type": "object", "required": required, "properties": properties })
}

/// The parts of a dashboard as XO 6 writes them with `ndjson` (`promiseWriteInStream`'s paths, in its order):
/// `coll` is `pools`, `vms`, or `None` for the global one.
fn ndjson_parts(coll: Option<&str>) -> &'static [&'static str] {
    match coll {
        Some("pools") => &[
            "hosts.status",
            "vms.status",
            "alarms",
            "hosts.missingPatches",
            "srs.topFiveUsage",
            "hosts.topFiveUsage.ram",
            "hosts.topFiveUsage.cpu",
            "cpuProvisioning",
            "vms.topFiveUsage",
        ],
        Some(_) => &["quickInfo", "alarms", "backupsInfo.replication", "backupsInfo", "backupsInfo.backupArchives"],
        None => &[
            "nPools",
            "nHosts",
            "hostsStatus",
            "resourcesOverview",
            "vmsStatus",
            "storageRepositories",
            "poolsStatus",
            "missingPatches",
        ],
    }
}

/// A dashboard as XO 6's `ndjson=true` writes it: one line per part, `{"hosts":{"status":…}}` for the part at
/// `hosts.status`, in XO's order. A part that has parts of its own on other lines (a VM's `backupsInfo`) leaves
/// them out. Merged, the lines are the JSON dashboard.
pub fn ndjson(dashboard: &Value, coll: Option<&str>) -> Vec<u8> {
    let parts = ndjson_parts(coll);
    let mut out = Vec::new();
    for path in parts {
        let keys: Vec<&str> = path.split('.').collect();
        let Some(mut value) = keys.iter().try_fold(dashboard, |v, k| v.get(*k)).cloned() else { continue };
        let prefix = format!("{path}.");
        for other in parts.iter().filter_map(|p| p.strip_prefix(&prefix)) {
            if let Value::Object(m) = &mut value {
                m.remove(other);
            }
        }
        let line = keys.iter().rev().fold(value, |v, k| json!({ *k: v }));
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The dashboard `reply` in the format the request asks for: XO 6's `ndjson` (present, or `true`), else as it is.
pub fn in_format(reply: Reply, req: &Request, coll: Option<&str>) -> Reply {
    let asked = params::pairs(&req.query).iter().any(|(k, v)| k == "ndjson" && v != "false" && v != "0");
    if !asked || reply.status != 200 {
        return reply;
    }
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(dashboard) => Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/x-ndjson".into())],
            body: ndjson(&dashboard, coll),
            stream: None,
        },
        Err(_) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_are_xos_parts_and_merge_back() {
        let vm = json!({"quickInfo": {"id": "v"}, "alarms": [], "backupsInfo": {"lastRuns": [], "backupArchives": [],
            "replication": {}, "vmProtection": "not-in-active-job"}});
        let text = String::from_utf8(ndjson(&vm, Some("vms"))).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines,
            [
                json!({"quickInfo": {"id": "v"}}),
                json!({"alarms": []}),
                json!({"backupsInfo": {"replication": {}}}),
                json!({"backupsInfo": {"lastRuns": [], "vmProtection": "not-in-active-job"}}),
                json!({"backupsInfo": {"backupArchives": []}}),
            ]
        );
        let pool = json!({"hosts": {"status": 1, "topFiveUsage": {"ram": [], "cpu": [2]}, "missingPatches": {}},
            "vms": {"status": {}, "topFiveUsage": {}}, "srs": {"topFiveUsage": []}, "alarms": [], "cpuProvisioning": {}});
        let text = String::from_utf8(ndjson(&pool, Some("pools"))).unwrap();
        assert_eq!(text.lines().count(), 9);
        assert!(text.starts_with("{\"hosts\":{\"status\":1}}\n"), "{text}");
        assert!(text.contains("{\"hosts\":{\"topFiveUsage\":{\"cpu\":[2]}}}\n"), "{text}");
    }

    #[test]
    fn counts_and_usage() {
        let vms: Records = serde_json::from_value(json!({
            "a": {"power_state": "Running"}, "b": {"power_state": "Halted"}, "c": {"power_state": "Paused"},
            "t": {"power_state": "Halted", "is_a_template": true}, "d": {"power_state": "Running", "is_control_domain": true},
        }))
        .unwrap();
        let st = Value::Object(vms_status(&vms));
        assert_eq!(
            st,
            json!({"running": 1, "paused": 1, "halted": 1, "suspended": 0, "active": 2, "inactive": 1,
                              "unknown": 0, "total": 3})
        );
        let updates = json!({"meta": {"legend": ["AVERAGE:host:h:cpu0", "AVERAGE:host:h:cpu1", "AVERAGE:host:h:cpu_avg",
                                                  "AVERAGE:vm:v:memory"]},
                             "data": [{"t": 1, "values": ["0.5", "0.25", "0.9", "NaN"]}]});
        let v = latest(&updates);
        assert_eq!(cpu_percent(&v, "host", "h"), Some(37.5));
        assert_eq!(cpu_percent(&v, "vm", "v"), None);
        assert!(!v.contains_key("vm:v:memory"));
        let top = top_five((0..7).map(|i| json!({"percent": i})).collect(), "percent");
        assert_eq!(top, json!([{"percent": 6}, {"percent": 5}, {"percent": 4}, {"percent": 3}, {"percent": 2}]));
        let srs: Records = serde_json::from_value(json!({"s": {"physical_size": "100", "physical_utilisation": "40",
            "VDIs": ["d"]}, "iso0": {"physical_size": "0"}}))
        .unwrap();
        let vdis: Records =
            serde_json::from_value(json!({"d": {"VBDs": ["b"], "physical_utilisation": "10"}})).unwrap();
        let vbds: Records = serde_json::from_value(json!({"b": {"VM": "r"}})).unwrap();
        let replicas: Records = serde_json::from_value(json!({"r": {"blocked_operations": {"start": ""},
            "other_config": {"xo:backup:job": "j"}}}))
        .unwrap();
        assert_eq!(
            sr_sizes(&srs, &vdis, &vbds, &replicas),
            json!({"size": {"available": 60.0, "other": 30.0, "replicated": 10.0, "total": 100.0, "used": 40.0}})
        );
        assert_eq!(sr_sizes(&Map::new(), &vdis, &vbds, &replicas), json!({"isEmpty": true}));
    }
}
