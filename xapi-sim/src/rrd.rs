//! `GET /rrd_updates`: the statistics of the running VMs (and, with `host=true`, of the host), as xcp-rrdd exports
//! them (`ocaml/xcp-rrdd/bin/rrdd/rrdd_http_handler.ml`, `get_rrd_updates_handler`; `ocaml/libs/xapi-rrd/lib/
//! rrd_updates.ml`, `create_multi`, `xml_of`, `json_of_t`; the format in `doc/content/xen-api/topics/metrics.md`).
//!
//! - `start` (seconds since the epoch; negative: relative to the last update) is required (400 otherwise, as
//!   `rrdd_proxy.ml` answers); `interval`, `cf` (`AVERAGE`, `MIN`, `MAX`), `host=true`, `vm_uuid` (repeatable: only
//!   those VMs), and `json` or an `Accept` preferring `application/json` choose the format.
//! - The archives are xcp-rrdd's: every 5 s for 10 minutes, every minute for 2 hours, every hour for a week, every
//!   day for a year; the one used is the finest whose step is at least `interval` and that reaches back to `start`.
//! - Rows go from the last complete step backwards to `start`; legends are `<CF>:<vm|host>:<uuid>:<data source>`,
//!   one block per object and consolidation function, in the order the rows hold the values. XML is `xport`
//!   (compact, with a declaration, as Xmlm writes it); JSON holds the same with every value a string (`f_to_s`:
//!   `%0.15g`, `NaN`, `Infinity`).
//! - The values are synthetic but move over time: each data source is a smooth function of the time and the
//!   object's uuid (CPUs between 0 and 1, memory in bytes under the VM's, network and disk rates in bytes/s).
//!
//! The simulator has one address for the whole pool, so the answer holds every running VM of the pool, and the
//! master's data sources with `host=true`.

use crate::schema::Fields;
use crate::sim::Sim;
use crate::value::Value;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use std::sync::Arc;

/// An object's data sources: name, and value as a function of time.
pub(crate) type Source = (String, Box<dyn Fn(i64) -> f64>);
type Sources = Vec<Source>;

/// xcp-rrdd's archives: (step in seconds, rows).
const ARCHIVES: [(i64, i64); 4] = [(5, 120), (60, 120), (3600, 168), (86400, 366)];

fn query_pairs(raw: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(text.to_string()));
    *r.status_mut() = status;
    r
}

/// A number in a stable pseudo-random range from a string (the object's uuid and the data source's name).
fn seed(s: &str) -> f64 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (h % 10_000) as f64 / 10_000.0
}

/// A data source's value at `t`: a slow wave around a level set by the seed.
fn wave(key: &str, t: i64, level: f64, swing: f64) -> f64 {
    let phase = seed(key) * std::f64::consts::TAU;
    level + swing * ((t as f64) / 900.0 + phase).sin() + 0.3 * swing * ((t as f64) / 97.0 + 2.0 * phase).sin()
}

fn int(r: &Fields, k: &str) -> i64 {
    r.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// The data sources of a VM (`cpu<n>`, `memory`, `memory_internal_free`, `vif_<n>_rx`/`tx`, `vbd_xvd<x>_read`/
/// `write`), as functions of time.
fn vm_sources(uuid: &str, vcpus: i64, memory: i64, vifs: &[String], vbds: &[String]) -> Sources {
    let mut out: Sources = Vec::new();
    for n in 0..vcpus.max(1) {
        let key = format!("{uuid}cpu{n}");
        out.push((format!("cpu{n}"), Box::new(move |t| wave(&key, t, 0.3, 0.2).clamp(0.0, 1.0))));
    }
    let mem = memory.max(1) as f64;
    out.push(("memory".into(), Box::new(move |_| mem)));
    let key = format!("{uuid}free");
    out.push(("memory_internal_free".into(), Box::new(move |t| (wave(&key, t, 0.4, 0.1) * mem / 1024.0).max(0.0))));
    for dev in vifs {
        for dir in ["rx", "tx"] {
            let key = format!("{uuid}vif{dev}{dir}");
            out.push((format!("vif_{dev}_{dir}"), Box::new(move |t| wave(&key, t, 40_000.0, 30_000.0).max(0.0))));
        }
    }
    for dev in vbds {
        for dir in ["read", "write"] {
            let key = format!("{uuid}vbd{dev}{dir}");
            out.push((format!("vbd_{dev}_{dir}"), Box::new(move |t| wave(&key, t, 200_000.0, 150_000.0).max(0.0))));
        }
    }
    out
}

/// The data sources xcp-rrdd offers for a VM but does not record until asked (`VM.record_data_source`): name,
/// description, units, and value as a function of time and memory.
pub const OPTIONAL_VM_SOURCES: &[(&str, &str, &str)] = &[
    ("memory_target", "Target of VM balloon driver", "B"),
    ("runstate_fullrun", "Fraction of time that all VCPUs are running", "(fraction)"),
];

fn optional_source(uuid: &str, name: &str, memory: i64) -> Option<Source> {
    let key = format!("{uuid}{name}");
    let mem = memory.max(1) as f64;
    match name {
        "memory_target" => Some((name.to_string(), Box::new(move |_| mem))),
        "runstate_fullrun" => Some((name.to_string(), Box::new(move |t| wave(&key, t, 0.3, 0.2).clamp(0.0, 1.0)))),
        _ => None,
    }
}

/// `VM.get_data_sources` (`ocaml/xapi/xapi_vm.ml`, `get_data_sources`; xcp-rrdd's `query_possible_vm_dss`): the
/// sources of a running VM, the standard ones enabled, the optional ones enabled once recorded; none for a VM that
/// does not run (xcp-rrdd has no RRD for it).
pub fn vm_data_sources(db: &crate::db::Db, recorded: &std::collections::BTreeSet<String>, vm: &Fields) -> Vec<Value> {
    let running = matches!(vm.get("power_state").and_then(Value::as_str), Some("Running" | "Paused"));
    if !running {
        return Vec::new();
    }
    let uuid = vm.get("uuid").and_then(Value::as_str).unwrap_or_default();
    let (vifs, vbds) = devices(db, vm);
    let record = |name: &str, description: &str, units: &str, enabled: bool, standard: bool| {
        Value::Map(vec![
            ("name_label".into(), Value::str(name)),
            ("name_description".into(), Value::str(description)),
            ("enabled".into(), Value::Bool(enabled)),
            ("standard".into(), Value::Bool(standard)),
            ("units".into(), Value::str(units)),
            ("min".into(), Value::Float(0.0)),
            ("max".into(), Value::Float(f64::INFINITY)),
            ("value".into(), Value::Float(0.0)),
        ])
    };
    let mut out: Vec<Value> =
        vm_sources(uuid, int(vm, "VCPUs_at_startup"), int(vm, "memory_dynamic_max"), &vifs, &vbds)
            .iter()
            .map(|(name, _)| record(name, "", "", true, true))
            .collect();
    for (name, description, units) in OPTIONAL_VM_SOURCES {
        out.push(record(name, description, units, recorded.contains(*name), false));
    }
    out
}

/// A VM's VIF devices and disk device names (`xvd<letter>`).
fn devices(db: &crate::db::Db, vm: &Fields) -> (Vec<String>, Vec<String>) {
    let refs_of = |r: &Fields, k: &str| -> Vec<String> {
        r.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let vifs: Vec<String> = refs_of(vm, "VIFs")
        .iter()
        .filter_map(|v| db.get(v))
        .filter_map(|v| v.get("device").and_then(Value::as_str).map(str::to_string))
        .collect();
    let vbds: Vec<String> = refs_of(vm, "VBDs")
        .iter()
        .filter_map(|b| db.get(b))
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("Disk"))
        .filter_map(|b| b.get("userdevice").and_then(Value::as_str).and_then(|d| d.parse::<u8>().ok()))
        .map(|d| format!("xvd{}", char::from(b'a' + d.min(25))))
        .collect();
    (vifs, vbds)
}

/// The data sources of a running VM or of a host, by ref, as `/rrd_updates` has them (for [`crate::perfmon`]).
pub(crate) fn sources_of(
    db: &crate::db::Db,
    recorded: &std::collections::BTreeSet<String>,
    r: &str,
) -> Option<Sources> {
    let rec = db.get(r)?;
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string();
    if db.get_of("host", r).is_some() {
        let cpus = rec
            .get("cpu_info")
            .and_then(|c| c.get("cpu_count"))
            .and_then(Value::as_str)
            .and_then(|c| c.parse().ok())
            .unwrap_or(4);
        let total =
            rec.get("metrics").and_then(Value::as_str).and_then(|m| db.get(m)).map_or(0, |m| int(m, "memory_total"));
        let pifs: Vec<String> = rec
            .get("PIFs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().and_then(|p| db.get(p)))
            .filter_map(|p| p.get("device").and_then(Value::as_str).map(str::to_string))
            .collect();
        return Some(host_sources(&uuid, cpus, total, &pifs));
    }
    if !matches!(rec.get("power_state").and_then(Value::as_str), Some("Running" | "Paused")) {
        return None;
    }
    let (vifs, vbds) = devices(db, rec);
    let mut sources = vm_sources(&uuid, int(rec, "VCPUs_at_startup"), int(rec, "memory_dynamic_max"), &vifs, &vbds);
    for name in recorded {
        sources.extend(optional_source(&uuid, name, int(rec, "memory_dynamic_max")));
    }
    Some(sources)
}

/// The data sources of a host (`cpu<n>`, `cpu_avg`, `memory_total_kib`, `memory_free_kib`, `loadavg`,
/// `pif_<device>_rx`/`tx`).
fn host_sources(uuid: &str, cpus: i64, total: i64, pifs: &[String]) -> Sources {
    let mut out: Sources = Vec::new();
    for n in 0..cpus.max(1) {
        let key = format!("{uuid}cpu{n}");
        out.push((format!("cpu{n}"), Box::new(move |t| wave(&key, t, 0.2, 0.15).clamp(0.0, 1.0))));
    }
    let key = format!("{uuid}cpu_avg");
    out.push(("cpu_avg".into(), Box::new(move |t| wave(&key, t, 0.2, 0.1).clamp(0.0, 1.0))));
    let kib = (total / 1024).max(1) as f64;
    out.push(("memory_total_kib".into(), Box::new(move |_| kib)));
    let key = format!("{uuid}free");
    out.push(("memory_free_kib".into(), Box::new(move |t| (wave(&key, t, 0.5, 0.1) * kib).max(0.0))));
    let key = format!("{uuid}load");
    out.push(("loadavg".into(), Box::new(move |t| wave(&key, t, 1.0, 0.5).max(0.0))));
    for dev in pifs {
        for dir in ["rx", "tx"] {
            let key = format!("{uuid}pif{dev}{dir}");
            out.push((format!("pif_{dev}_{dir}"), Box::new(move |t| wave(&key, t, 100_000.0, 80_000.0).max(0.0))));
        }
    }
    out
}

/// xcp-rrdd's `f_to_s`.
fn f_to_s(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f == 0.0 {
        "0.0".into()
    } else {
        // `%0.15g`: 15 significant digits, no trailing zeros.
        let s = format!("{:.*e}", 14, f);
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if (-4..15).contains(&exp) {
            let decimals = (14 - exp).max(0) as usize;
            let fixed = format!("{f:.decimals$}");
            if fixed.contains('.') {
                fixed.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                fixed
            }
        } else {
            let m = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
        }
    }
}

/// `GET /rrd_updates`.
pub async fn rrd_updates(
    sim: Arc<Sim>,
    here: &crate::pool_net::Here,
    raw_query: Option<String>,
    headers: HeaderMap,
) -> Response<Body> {
    let q = query_pairs(raw_query.as_deref().unwrap_or(""));
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let session = get("session_id").or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.split(';').find_map(|kv| kv.trim().strip_prefix("session_id=").map(str::to_string)))
    });
    if session.is_none_or(|s| sim.session(&Value::str(s)).is_err()) {
        let mut r = plain(StatusCode::UNAUTHORIZED, "Authorisation failed.");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"xapi\""));
        return r;
    }
    *sim.stats.lock().handler_requests.entry("/rrd_updates".to_string()).or_default() += 1;
    if let Err(e) = sim.before_call("/rrd_updates", false).await {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:?}"));
    }
    let Some(start) = get("start").and_then(|s| s.parse::<i64>().ok()) else {
        return plain(StatusCode::BAD_REQUEST, "get_rrd_updates: missing the 'start' parameter");
    };
    let interval = get("interval").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let cfs: Vec<&str> = match get("cf").as_deref() {
        Some("MIN") => vec!["MIN"],
        Some("MAX") => vec!["MAX"],
        _ => vec!["AVERAGE"],
    };
    let with_host = get("host").as_deref() == Some("true");
    let only: Vec<String> = q.iter().filter(|(k, _)| k == "vm_uuid").map(|(_, v)| v.clone()).collect();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let json = match (accept.contains("application/json"), accept.contains("text/xml")) {
        (true, _) => true,
        (false, true) => false,
        _ => q.iter().any(|(k, _)| k == "json"),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let start = if start < 0 { now + start } else { start };
    // The finest archive whose step is at least `interval` and that reaches back to `start`.
    let (step, rows) = ARCHIVES
        .iter()
        .copied()
        .find(|(step, rows)| *step >= interval && now - start <= step * rows)
        .unwrap_or(ARCHIVES[3]);
    let last = now - now.rem_euclid(step);
    let first = start - start.rem_euclid(step) + step;
    let times: Vec<i64> = (0..rows).map(|i| last - i * step).take_while(|t| *t >= start).collect();

    // The objects: (prefix, data sources).
    let mut objects: Vec<(String, Sources)> = Vec::new();
    {
        let recorded = sim.data_sources.lock().clone();
        let db = sim.db.lock();
        let none = std::collections::BTreeSet::new();
        // The host that was asked (the master where the simulator serves no per-host endpoint): xcp-rrdd answers
        // for its own host and the VMs resident on it, and nothing else (`ocaml/xapi/rrdd_proxy.ml`,
        // `get_rrd_updates_forwarder`, hands the request to the local xcp-rrdd).
        let this_host = if here.0.is_empty() {
            db.all("pool").next().and_then(|(_, p)| p.get("master").and_then(Value::as_str).map(str::to_string))
        } else {
            Some(here.0.clone())
        };
        if with_host {
            if let Some((m, sources)) = this_host.clone().and_then(|m| sources_of(&db, &none, &m).map(|s| (m, s))) {
                objects.push((format!("host:{}:", db.field_str(&m, "uuid")), sources));
            }
        }
        for (r, vm) in db.all("VM") {
            let uuid = vm.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string();
            let control = vm.get("is_control_domain").and_then(Value::as_bool) == Some(true);
            if control || (!only.is_empty() && !only.contains(&uuid)) {
                continue;
            }
            if !here.0.is_empty() && this_host.as_deref() != vm.get("resident_on").and_then(Value::as_str) {
                continue;
            }
            // Running VMs only: a halted VM has no sources.
            if let Some(sources) = sources_of(&db, recorded.get(&uuid).unwrap_or(&none), r) {
                objects.push((format!("vm:{uuid}:"), sources));
            }
        }
    }
    let mut legend = Vec::new();
    for (prefix, sources) in &objects {
        for cf in &cfs {
            for (name, _) in sources {
                legend.push(format!("{cf}:{prefix}{name}"));
            }
        }
    }
    // MIN and MAX of a step: the wave a little lower or higher than the average.
    let factor = |cf: &str| match cf {
        "MIN" => 0.9,
        "MAX" => 1.1,
        _ => 1.0,
    };
    let rows_values: Vec<(i64, Vec<f64>)> = times
        .iter()
        .map(|&t| {
            let mut values = Vec::with_capacity(legend.len());
            for (_, sources) in &objects {
                for cf in &cfs {
                    for (_, f) in sources {
                        values.push(f(t) * factor(cf));
                    }
                }
            }
            (t, values)
        })
        .collect();
    let body = if json {
        let data: Vec<serde_json::Value> = rows_values
            .iter()
            .map(|(t, v)| serde_json::json!({ "t": t, "values": v.iter().map(|x| f_to_s(*x)).collect::<Vec<_>>() }))
            .collect();
        serde_json::json!({
            "meta": { "start": first, "step": step, "end": last, "rows": data.len(), "columns": legend.len(), "legend": legend },
            "data": data,
        })
        .to_string()
    } else {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><xport><meta>");
        x.push_str(&format!(
            "<start>{first}</start><step>{step}</step><end>{last}</end><rows>{}</rows><columns>{}</columns><legend>",
            rows_values.len(),
            legend.len()
        ));
        for l in &legend {
            x.push_str(&format!("<entry>{l}</entry>"));
        }
        x.push_str("</legend></meta><data>");
        for (t, values) in &rows_values {
            x.push_str(&format!("<row><t>{t}</t>"));
            for v in values {
                x.push_str(&format!("<v>{}</v>", f_to_s(*v)));
            }
            x.push_str("</row>");
        }
        x.push_str("</data></xport>");
        x
    };
    let mut r = Response::new(Body::from(body));
    let ty = if json { "application/json" } else { "text/xml" };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_xcp_rrdd_writes_them() {
        assert_eq!(f_to_s(0.0), "0.0");
        assert_eq!(f_to_s(f64::NAN), "NaN");
        assert_eq!(f_to_s(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f_to_s(0.25), "0.25");
        assert_eq!(f_to_s(2097152.0), "2097152");
        assert_eq!(f_to_s(0.1 + 0.2), "0.3");
        assert_eq!(f_to_s(1.5e20), "1.5e+20");
        assert_eq!(f_to_s(0.000012345), "1.2345e-05");
    }
}
