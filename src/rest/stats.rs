//! `GET /rest/v0/vms/<id>/stats` and `/hosts/<id>/stats[?granularity=seconds|minutes|hours|days]`: XAPI's RRD
//! statistics in XO's shape (`{endTimestamp, interval, stats}`, `xo-server/src/xapi-stats.mjs`).
//!
//! One `GET /rrd_updates` (`cf=AVERAGE`, `host=true`, `json`, the step of the granularity, `start` one step short of
//! the archive's whole span, as XO asks; a VM's also `vm_uuid=`): its legends `AVERAGE:<vm|host>:<uuid>:<ds>` are
//! matched against XO's table of data sources (`cpu<n>` → `cpus.<n>` in percent, `memory_free_kib` → `memoryFree`
//! in bytes, `vif_<n>_rx` → `vifs.rx.<n>`, `vbd_xvd<x>_read` → `xvds.r.<x>`, …), the rows put oldest first, each
//! value a number or `null` for XAPI's `NaN`. A VM that runs nowhere has no live statistics (409, as XO).
//!
//! Also `GET /rest/v0/pools/<id>/stats` (each host's, by uuid: [`pool_stats`]) and `PUT`/`DELETE
//! /rest/v0/vms/<id>/stats/data_source/<name>` (record or forget an RRD data source: [`data_source`]).

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::query::params;
use crate::xapi::Transport;
use serde_json::{json, Map, Value};

/// A granularity: its step in seconds and the rows XAPI keeps of it (`RRD_POINTS_PER_STEP`).
fn granularity(query: &str) -> Result<(u64, u64), ApiError> {
    let pairs = params::pairs(query);
    match pairs.iter().find(|(k, _)| k == "granularity").map(|(_, v)| v.as_str()) {
        None | Some("seconds") => Ok((5, 120)),
        Some("minutes") => Ok((60, 120)),
        Some("hours") => Ok((3600, 168)),
        Some("days") => Ok((86400, 366)),
        Some(other) => {
            Err(ApiError::bad_request(format!("unknown granularity {other:?}: use seconds, minutes, hours or days")))
        }
    }
}

/// Where XO puts a data source of a VM (`vm`) or a host, and the factor its values are multiplied by.
fn place(vm: bool, ds: &str) -> Option<(Vec<String>, f64)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let p = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if let Some(n) = ds.strip_prefix("cpu").filter(|n| digits(n)) {
        return Some((p(&["cpus", n]), 100.0));
    }
    if vm {
        let simple: &[(&str, &str, f64)] = &[
            ("memory_internal_free", "memoryFree", 1024.0),
            ("memory_target", "memoryTarget", 1.0),
            ("cpu_usage", "cpuUsage", 100.0),
            ("runstate_fullrun", "runstateFullrun", 100.0),
            ("runstate_full_contention", "runstateFullContention", 100.0),
            ("runstate_partial_run", "runstatePartialRun", 100.0),
            ("runstate_partial_contention", "runstatePartialContention", 100.0),
            ("runstate_concurrency_hazard", "runstateConcurrencyHazard", 100.0),
            ("runstate_blocked", "runstateBlocked", 100.0),
        ];
        if let Some((_, key, f)) = simple.iter().find(|(name, _, _)| *name == ds) {
            return Some((p(&[key]), *f));
        }
        if ds.ends_with("memory") {
            return Some((p(&["memory"]), 1.0));
        }
        if let Some(rest) = ds.strip_prefix("vif_") {
            for (suffix, key, dir) in [
                ("_rx_errors", "vifErrors", "rx"),
                ("_tx_errors", "vifErrors", "tx"),
                ("_rx", "vifs", "rx"),
                ("_tx", "vifs", "tx"),
            ] {
                if let Some(n) = rest.strip_suffix(suffix).filter(|n| digits(n)) {
                    return Some((p(&[key, dir, n]), 1.0));
                }
            }
        }
        if let Some(rest) = ds.strip_prefix("vbd_xvd") {
            let mut chars = rest.chars();
            let disk = chars.next()?.to_string();
            let what = chars.as_str();
            let (path, f): (Vec<&str>, f64) = match what {
                "_read" => (vec!["xvds", "r"], 1.0),
                "_write" => (vec!["xvds", "w"], 1.0),
                "_iops_read" => (vec!["iops", "r"], 1.0),
                "_iops_write" => (vec!["iops", "w"], 1.0),
                "_iops_total" => (vec!["iops", "total"], 1.0),
                "_read_latency" => (vec!["vbdLatency", "r"], 1e-3),
                "_write_latency" => (vec!["vbdLatency", "w"], 1e-3),
                "_io_throughput_read" => (vec!["ioThroughput", "r"], 1_048_576.0),
                "_io_throughput_write" => (vec!["ioThroughput", "w"], 1_048_576.0),
                "_io_throughput_total" => (vec!["ioThroughput", "total"], 1_048_576.0),
                "_latency" => (vec!["vbdAvgLatency"], 1e-3),
                "_iowait" => (vec!["vbdIowait"], 100.0),
                "_inflight" => (vec!["vbdInflight"], 1.0),
                "_avgqu_sz" => (vec!["vbdAvgquSz"], 1.0),
                _ => return None,
            };
            let mut path = p(&path);
            path.push(disk);
            return Some((path, f));
        }
        return None;
    }
    let simple: &[(&str, &str, f64)] = &[
        ("loadavg", "load", 1.0),
        ("memory_free_kib", "memoryFree", 1024.0),
        ("memory_total_kib", "memory", 1024.0),
        ("hostload", "hostload", 1.0),
        ("memory_reclaimed", "memoryReclaimed", 1024.0),
        ("memory_reclaimed_max", "memoryReclaimedMax", 1024.0),
        ("running_vcpus", "runningVcpus", 1.0),
    ];
    if let Some((_, key, f)) = simple.iter().find(|(name, _, _)| *name == ds) {
        return Some((p(&[key]), *f));
    }
    for (name, key, dir) in [("pif_aggr_rx", "pifsAggr", "rx"), ("pif_aggr_tx", "pifsAggr", "tx")] {
        if ds == name {
            return Some((p(&[key, dir]), 1.0));
        }
    }
    if let Some(rest) = ds.strip_prefix("pif_eth") {
        for (suffix, dir) in [("_rx", "rx"), ("_tx", "tx")] {
            if let Some(n) = rest.strip_suffix(suffix).filter(|n| digits(n)) {
                return Some((p(&["pifs", dir, n]), 1.0));
            }
        }
    }
    let prefixed: &[(&str, &[&str], f64)] = &[
        ("iops_read_", &["iops", "r"], 1.0),
        ("iops_write_", &["iops", "w"], 1.0),
        ("iops_total_", &["iops", "total"], 1.0),
        ("io_throughput_read_", &["ioThroughput", "r"], 1_048_576.0),
        ("io_throughput_write_", &["ioThroughput", "w"], 1_048_576.0),
        ("io_throughput_total_", &["ioThroughput", "total"], 1_048_576.0),
        ("read_latency_", &["latency", "r"], 1e-3),
        ("write_latency_", &["latency", "w"], 1e-3),
        ("latency_", &["latency", "total"], 1e-3),
        ("iowait_", &["iowait"], 1.0),
    ];
    for (prefix, path, f) in prefixed {
        if let Some(sr) = ds.strip_prefix(prefix).filter(|s| !s.is_empty()) {
            let mut path = p(path);
            path.push(sr.to_string());
            return Some((path, *f));
        }
    }
    None
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
}

/// Builds XO's stats of the object `uuid` (a VM when `vm`) from `/rrd_updates`'s JSON.
pub fn build(updates: &Value, vm: bool, uuid: &str, fallback_end: u64, step: u64) -> Value {
    let meta = &updates["meta"];
    let mut rows: Vec<&Value> = updates["data"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    // XAPI sends the newest row first; XO's series go oldest first.
    rows.reverse();
    let kind = if vm { "vm" } else { "host" };
    let mut stats = Map::new();
    for (i, legend) in meta["legend"].as_array().into_iter().flatten().enumerate() {
        let Some(rest) = legend.as_str().and_then(|l| l.strip_prefix("AVERAGE:")) else { continue };
        let Some(rest) = rest.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) else { continue };
        let Some(ds) = rest.strip_prefix(uuid).and_then(|r| r.strip_prefix(':')) else { continue };
        let Some((path, factor)) = place(vm, ds) else { continue };
        let values: Vec<Value> = rows
            .iter()
            .map(|r| match number(&r["values"][i]) {
                Some(x) if x.is_finite() => json!(x * factor),
                _ => Value::Null,
            })
            .collect();
        let mut at = &mut stats;
        for (depth, key) in path.iter().enumerate() {
            if depth + 1 == path.len() {
                at.insert(key.clone(), Value::Array(values));
                break;
            }
            let next = at.entry(key.clone()).or_insert_with(|| json!({}));
            if !next.is_object() {
                *next = json!({});
            }
            let Value::Object(m) = next else { break };
            at = m;
        }
    }
    let end = meta["end"].as_u64().unwrap_or(fallback_end);
    let interval = meta["step"].as_u64().unwrap_or(step);
    json!({ "endTimestamp": end, "interval": interval, "stats": stats })
}

/// XAPI's `GET /rrd_updates?<pairs>` of the pool host at `address` (`None`: the master), as JSON: each host's xcp-rrdd keeps the RRDs of that
/// host and of the VMs running on it, and XAPI serves `/rrd_updates` from the local one
/// (`ocaml/xapi/rrdd_proxy.ml`, `get_rrd_updates_forwarder`), so another host's numbers are read on that host.
pub(crate) async fn rrd_updates_at<T: Transport>(
    ctx: &Ctx<'_, T>,
    session: &str,
    address: Option<&str>,
    pairs: &[(&str, String)],
) -> Result<Value, ApiError> {
    let query: String =
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter().map(|(k, v)| (*k, v))).finish();
    let (status, body) = ctx.xapi.get_at(address, &format!("/rrd_updates?{query}"), session).await?;
    if status != 200 {
        return Err(ApiError::bad_gateway(format!("XAPI's /rrd_updates answered HTTP {status}")));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_gateway(format!("XAPI's /rrd_updates answered something else than JSON: {e}")))
}

/// `GET /rest/v0/<vms|hosts>/<id>/stats`.
pub async fn stats<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (step, points) = granularity(&req.query)?;
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    if coll.class == "pool" {
        return pool_stats(ctx, &caller, &rec, step, points).await;
    }
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string();
    let vm = coll.class == "VM";
    // The host whose xcp-rrdd has the RRD: the VM's, or the host itself.
    let host = if vm {
        let host = rec.get("resident_on").and_then(Value::as_str).unwrap_or("OpaqueRef:NULL");
        if host.is_empty() || host == "OpaqueRef:NULL" {
            return Err(ApiError::new(409, "the VM runs on no host: it has no live statistics")
                .with_data(json!({ "property": "resident_on", "actual": null })));
        }
        host.to_string()
    } else {
        reference
    };
    let address = address_unless_master(ctx, &caller.session, &host).await?;
    // As XO: one step short of the archive's whole span, so as not to cross into the next archive.
    let start = ctx.now.saturating_sub(step * points) + step;
    let mut pairs: Vec<(&str, String)> = vec![
        ("cf", "AVERAGE".into()),
        ("host", (!vm).to_string()),
        ("interval", step.to_string()),
        ("json", "true".into()),
        ("start", start.to_string()),
    ];
    // A VM's own RRD; for a host, `vm_uuid=<the host's uuid>` (no VM has it) leaves every VM's out: xcp-rrdd
    // includes only the VMs named once any is (`rrdd_http_handler.ml`, `uuids_filter_of`, `get_host_stats`).
    pairs.push(("vm_uuid", uuid.clone()));
    let updates = rrd_updates_at(ctx, &caller.session, address.as_deref(), &pairs).await?;
    if updates["meta"]["step"].as_u64().is_some_and(|s| s != step) {
        return Err(ApiError::bad_gateway(format!(
            "XAPI answered a step of {} s for a granularity of {step} s",
            updates["meta"]["step"]
        )));
    }
    Ok(Reply::json(200, &build(&updates, vm, &uuid, ctx.now, step)))
}

/// The address of `host` to read its RRDs at, or `None` when it is the host every call already goes to (the
/// master). One call in the common case (`host.get_address`); the pool's record is read only when the address is
/// outside the fence, which is fine for the master alone (`xapi_url` may name it by another name than its address).
async fn address_unless_master<T: Transport>(
    ctx: &Ctx<'_, T>,
    session: &str,
    host: &str,
) -> Result<Option<String>, ApiError> {
    let s = json!(session);
    let xapi = |e: crate::xapi::XapiError| e.to_api_error();
    let address = ctx.xapi.call("host.get_address", &[s.clone(), json!(host)]).await.map_err(xapi)?;
    let address = address.as_str().unwrap_or_default().to_string();
    let transport = ctx.xapi.transport();
    if same_host(&transport.base(), &address) {
        return Ok(None);
    }
    if transport.host_base(&address).is_ok() {
        return Ok(Some(address));
    }
    let pools = ctx.xapi.call("pool.get_all_records", std::slice::from_ref(&s)).await.map_err(xapi)?;
    let master =
        pools.as_object().and_then(|m| m.values().next()).and_then(|p| p.get("master")).and_then(Value::as_str);
    Ok(if master == Some(host) { None } else { Some(address) })
}

/// Whether `base` (a URL) names the host at `address` (an IP address or a name).
fn same_host(base: &str, address: &str) -> bool {
    let Ok(url) = url::Url::parse(base) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    !address.is_empty() && host.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(address)
}

/// `GET /rest/v0/pools/<id>/stats`: each host's statistics by host uuid (XO's `XapiPoolStats`), each read on the
/// host itself ([`rrd_updates_at`]). A host that cannot be read (down, or outside `pool_hosts`) gets an error entry
/// naming it (XO's shape for a host it cannot read).
async fn pool_stats<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    pool: &Value,
    step: u64,
    points: u64,
) -> Result<Reply, ApiError> {
    let s = json!(caller.session);
    let hosts = ctx.xapi.call("host.get_all_records", std::slice::from_ref(&s)).await.map_err(|e| e.to_api_error())?;
    let master = pool.get("master").and_then(Value::as_str).unwrap_or_default();
    let start = ctx.now.saturating_sub(step * points) + step;
    let pairs: Vec<(&str, String)> = vec![
        ("cf", "AVERAGE".into()),
        ("host", "true".into()),
        ("interval", step.to_string()),
        ("json", "true".into()),
        ("start", start.to_string()),
    ];
    let mut out = Map::new();
    for (r, h) in hosts.as_object().into_iter().flatten() {
        let uuid = h.get("uuid").and_then(Value::as_str).unwrap_or_default();
        let address = (r != master).then(|| h.get("address").and_then(Value::as_str).unwrap_or_default());
        let mut pairs = pairs.clone();
        pairs.push(("vm_uuid", uuid.to_string()));
        let entry = match rrd_updates_at(ctx, &caller.session, address, &pairs).await {
            Ok(updates) => build(&updates, false, uuid, ctx.now, step),
            Err(e) => json!({ "error": { "code": "HOST_NOT_REACHED", "params": [r], "message": e.message } }),
        };
        out.insert(uuid.to_string(), entry);
    }
    Ok(Reply::json(200, &Value::Object(out)))
}

/// `PUT` (`record`) and `DELETE` of `/rest/v0/vms/<id>/stats/data_source/<name>`: `VM.record_data_source` and
/// `VM.forget_data_source_archives`, for a data source the VM's RRD offers (`VM.get_data_sources`): 204; 404 naming
/// the ones it has otherwise; 409 for a VM that does not run (xcp-rrdd keeps RRDs of running VMs only).
pub async fn data_source<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
    name: &str,
    record: bool,
) -> Result<Reply, ApiError> {
    let (vm, rec) = find(ctx, &caller, coll, id).await?;
    let s = json!(caller.session);
    let xapi = |e: crate::xapi::XapiError| e.to_api_error();
    let sources = ctx.xapi.call("VM.get_data_sources", &[s.clone(), json!(vm)]).await.map_err(xapi)?;
    let sources = sources.as_array().cloned().unwrap_or_default();
    if sources.is_empty() {
        let state = rec.get("power_state").cloned().unwrap_or(Value::Null);
        return Err(ApiError::new(409, "the VM does not run: it has no statistics to record or forget")
            .with_data(json!({ "property": "power_state", "actual": state })));
    }
    let Some(ds) = sources.iter().find(|d| d["name_label"] == name) else {
        let names: Vec<&str> = sources.iter().filter_map(|d| d["name_label"].as_str()).collect();
        return Err(ApiError::not_found(format!("the VM has no data source {name:?}"))
            .with_data(json!({ "data_sources": names })));
    };
    if record && ds["enabled"] == true {
        return Ok(Reply::no_content());
    }
    let method = if record { "VM.record_data_source" } else { "VM.forget_data_source_archives" };
    ctx.xapi.call(method, &[s, json!(vm), json!(name)]).await.map_err(xapi)?;
    Ok(Reply::no_content())
}

/// The JSON Schema of a statistics answer (the OpenAPI document's): a VM's or host's `{endTimestamp, interval,
/// stats}`; a pool's, one of those (or an `error` for a host that did not answer) per host uuid.
pub fn schema(pool: bool) -> Value {
    let one = json!({
        "type": "object",
        "required": ["endTimestamp", "interval", "stats"],
        "properties": {
            "endTimestamp": { "type": "integer", "description": "seconds since the epoch of the last row" },
            "interval": { "type": "integer", "description": "seconds between rows" },
            "stats": { "type": "object", "description": "series by name (`cpus.<n>`, `memoryFree`, `vifs.rx.<n>`…), \
                oldest first, `null` where XAPI has no value" },
        },
    });
    if pool {
        json!({ "type": "object", "additionalProperties": { "anyOf": [one, {
            "type": "object", "required": ["error"], "properties": { "error": { "type": "object" } } }] } })
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_is_the_host_every_call_goes_to() {
        assert!(same_host("https://10.0.0.1", "10.0.0.1"));
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1"));
        assert!(same_host("https://[fd00::1]:443", "fd00::1"));
        assert!(same_host("https://Master.Example", "master.example"));
        assert!(!same_host("https://10.0.0.1", "10.0.0.2"));
        assert!(!same_host("https://10.0.0.1", ""));
        assert!(!same_host("", "10.0.0.1"));
    }

    #[test]
    fn data_sources_go_where_xo_puts_them() {
        assert_eq!(place(true, "cpu3"), Some((vec!["cpus".into(), "3".into()], 100.0)));
        assert_eq!(place(true, "vif_0_rx"), Some((vec!["vifs".into(), "rx".into(), "0".into()], 1.0)));
        assert_eq!(place(true, "vif_2_tx_errors").unwrap().0, ["vifErrors", "tx", "2"]);
        assert_eq!(place(true, "vbd_xvda_read").unwrap().0, ["xvds", "r", "a"]);
        assert_eq!(
            place(true, "vbd_xvdb_read_latency"),
            Some((vec!["vbdLatency".into(), "r".into(), "b".into()], 1e-3))
        );
        assert_eq!(place(true, "memory_internal_free").unwrap().1, 1024.0);
        assert_eq!(place(true, "memory").unwrap().0, ["memory"]);
        assert_eq!(place(false, "memory_total_kib").unwrap().0, ["memory"]);
        assert_eq!(place(false, "pif_eth1_tx").unwrap().0, ["pifs", "tx", "1"]);
        assert_eq!(place(false, "iops_read_1a2b3c4d").unwrap().0, ["iops", "r", "1a2b3c4d"]);
        assert_eq!(place(false, "cpu_avg"), None);
        assert_eq!(place(true, "nope"), None);
    }

    #[test]
    fn updates_become_xo_series_oldest_first() {
        let updates = json!({
            "meta": {"start": 0, "step": 5, "end": 10, "rows": 2, "columns": 3,
                     "legend": ["AVERAGE:vm:u:cpu0", "AVERAGE:vm:u:vif_0_rx", "AVERAGE:vm:other:cpu0"]},
            "data": [{"t": 10, "values": ["0.5", "NaN", "0.9"]}, {"t": 5, "values": ["0.25", "100", "0.9"]}],
        });
        let s = build(&updates, true, "u", 99, 5);
        assert_eq!(
            s,
            json!({"endTimestamp": 10, "interval": 5, "stats": {"cpus": {"0": [25.0, 50.0]}, "vifs": {"rx": {"0": [100.0, null]}}}})
        );
        assert_eq!(granularity("granularity=hours").unwrap(), (3600, 168));
        assert_eq!(granularity("granularity=weeks").unwrap_err().status, 400);
    }
}
