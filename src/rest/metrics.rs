//! `GET /rest/v0/pools/<id>/metrics`, `/hosts/<id>/metrics` and `/vms/<id>/metrics`: the latest RRD values as a
//! Prometheus text exposition (format 0.0.4), what every monitoring stack scrapes (XO has no such route).
//!
//! One `GET /rrd_updates` (the 5-second archive, its newest row) per host concerned, on that host (a VM's: the host
//! it runs on; a pool's: every host, at once), and one read of the running VMs and the hosts (for names). Every value is a gauge named `xcp_host_…` or `xcp_vm_…` with `pool`, `host`/`host_name` or
//! `vm`/`vm_name`/`host` labels: CPUs as ratios (`cpu` label), memory in bytes, load, network and disk rates in bytes
//! per second (`interface`, `vif`, `device` labels); a data source without a name of its own is
//! `xcp_<host|vm>_data_source{ds="…"}`. XAPI's `NaN` stays `NaN`.

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::xapi::Transport;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A metric family: help text and samples (labels, value).
type Families = BTreeMap<String, (&'static str, Vec<(Vec<(&'static str, String)>, f64)>)>;

/// The name, help, extra label and factor of a host's data source.
fn host_metric(ds: &str) -> (&'static str, &'static str, Option<(&'static str, String)>, f64) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = ds.strip_prefix("cpu").filter(|n| digits(n)) {
        return ("xcp_host_cpu_usage_ratio", "Use of each physical CPU (0 to 1).", Some(("cpu", n.into())), 1.0);
    }
    match ds {
        "cpu_avg" => {
            return ("xcp_host_cpu_average_usage_ratio", "Average use of the host's CPUs (0 to 1).", None, 1.0)
        }
        "memory_total_kib" => return ("xcp_host_memory_total_bytes", "The host's memory.", None, 1024.0),
        "memory_free_kib" => return ("xcp_host_memory_free_bytes", "The host's free memory.", None, 1024.0),
        "loadavg" => return ("xcp_host_load_average", "Domain 0's load average.", None, 1.0),
        _ => {}
    }
    if let Some(rest) = ds.strip_prefix("pif_") {
        if let Some(dev) = rest.strip_suffix("_rx") {
            let help = "Bytes per second received by a physical interface.";
            return ("xcp_host_network_receive_bytes_per_second", help, Some(("interface", dev.into())), 1.0);
        }
        if let Some(dev) = rest.strip_suffix("_tx") {
            let help = "Bytes per second sent by a physical interface.";
            return ("xcp_host_network_transmit_bytes_per_second", help, Some(("interface", dev.into())), 1.0);
        }
    }
    ("xcp_host_data_source", "A host data source of XAPI's RRDs, as recorded.", Some(("ds", ds.into())), 1.0)
}

/// The name, help, extra label and factor of a VM's data source.
fn vm_metric(ds: &str) -> (&'static str, &'static str, Option<(&'static str, String)>, f64) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = ds.strip_prefix("cpu").filter(|n| digits(n)) {
        return ("xcp_vm_cpu_usage_ratio", "Use of each virtual CPU (0 to 1).", Some(("cpu", n.into())), 1.0);
    }
    match ds {
        "memory" => return ("xcp_vm_memory_bytes", "The VM's memory.", None, 1.0),
        "memory_internal_free" => return ("xcp_vm_memory_free_bytes", "Free memory seen by the guest.", None, 1024.0),
        _ => {}
    }
    if let Some(rest) = ds.strip_prefix("vif_") {
        if let Some(n) = rest.strip_suffix("_rx").filter(|n| digits(n)) {
            let help = "Bytes per second received by a VIF.";
            return ("xcp_vm_network_receive_bytes_per_second", help, Some(("vif", n.into())), 1.0);
        }
        if let Some(n) = rest.strip_suffix("_tx").filter(|n| digits(n)) {
            let help = "Bytes per second sent by a VIF.";
            return ("xcp_vm_network_transmit_bytes_per_second", help, Some(("vif", n.into())), 1.0);
        }
    }
    if let Some(rest) = ds.strip_prefix("vbd_") {
        if let Some(dev) = rest.strip_suffix("_read").filter(|d| !d.contains('_')) {
            let help = "Bytes per second read from a virtual disk.";
            return ("xcp_vm_disk_read_bytes_per_second", help, Some(("device", dev.into())), 1.0);
        }
        if let Some(dev) = rest.strip_suffix("_write").filter(|d| !d.contains('_')) {
            let help = "Bytes per second written to a virtual disk.";
            return ("xcp_vm_disk_write_bytes_per_second", help, Some(("device", dev.into())), 1.0);
        }
    }
    ("xcp_vm_data_source", "A VM data source of XAPI's RRDs, as recorded.", Some(("ds", ds.into())), 1.0)
}

/// A label value escaped for the text format (backslash, double quote, line feed).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Writes the families in the text format.
fn exposition(families: &Families) -> String {
    let mut out = String::new();
    for (name, (help, samples)) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in samples {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            out.push_str(&format!("{name}{{{}}} {}\n", labels.join(","), value(*v)));
        }
    }
    out
}

/// Turns `/rrd_updates`'s newest row into metric families. `names`: uuid → (name, host uuid for a VM); `keep`: which
/// objects (`host:<uuid>` or `vm:<uuid>`) belong in the answer.
fn families(
    updates: &Value,
    pool: &str,
    names: &BTreeMap<String, (String, String)>,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Families {
    let mut out = Families::new();
    let Some(row) = updates["data"].as_array().and_then(|d| d.first()) else { return out };
    for (i, legend) in updates["meta"]["legend"].as_array().into_iter().flatten().enumerate() {
        let Some(rest) = legend.as_str().and_then(|l| l.strip_prefix("AVERAGE:")) else { continue };
        let Some((kind, rest)) = rest.split_once(':') else { continue };
        let Some((uuid, ds)) = rest.split_once(':') else { continue };
        if !keep(kind, uuid) {
            continue;
        }
        let v = match &row["values"][i] {
            Value::String(s) => s.parse::<f64>().unwrap_or(f64::NAN),
            other => other.as_f64().unwrap_or(f64::NAN),
        };
        let (name, host_uuid) = names.get(uuid).cloned().unwrap_or_default();
        let (metric, help, extra, factor, mut labels) = match kind {
            "host" => {
                let (m, h, e, f) = host_metric(ds);
                (m, h, e, f, vec![("pool", pool.to_string()), ("host", uuid.to_string()), ("host_name", name)])
            }
            "vm" => {
                let (m, h, e, f) = vm_metric(ds);
                let labels =
                    vec![("pool", pool.to_string()), ("vm", uuid.to_string()), ("vm_name", name), ("host", host_uuid)];
                (m, h, e, f, labels)
            }
            _ => continue,
        };
        labels.extend(extra);
        out.entry(metric.to_string()).or_insert_with(|| (help, Vec::new())).1.push((labels, v * factor));
    }
    out
}

/// `GET /rest/v0/<pools|hosts|vms>/<id>/metrics`.
pub async fn metrics<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    let s = json!(caller.session);
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string();
    let xapi = |e: crate::xapi::XapiError| e.to_api_error();
    let pools = ctx.xapi.call("pool.get_all_records", std::slice::from_ref(&s)).await.map_err(xapi)?;
    let pool = pools.as_object().and_then(|p| p.values().next()).and_then(|p| p["uuid"].as_str()).unwrap_or_default();
    let hosts = ctx.xapi.call("host.get_all_records", std::slice::from_ref(&s)).await.map_err(xapi)?;
    let host_uuid = |r: &Value| -> String {
        r.as_str().and_then(|r| hosts.get(r)).and_then(|h| h["uuid"].as_str()).unwrap_or_default().to_string()
    };
    let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
    for h in hosts.as_object().into_iter().flat_map(|m| m.values()) {
        let name = h["name_label"].as_str().unwrap_or_default().to_string();
        names.insert(h["uuid"].as_str().unwrap_or_default().to_string(), (name, String::new()));
    }
    let vm_scope = coll.class == "VM";
    let vms = if vm_scope {
        json!({ reference.clone(): rec.clone() })
    } else {
        let running =
            r#"(field "power_state"="Running" or field "power_state"="Paused") and field "is_control_domain"="false""#;
        ctx.xapi.call("VM.get_all_records_where", &[s.clone(), json!(running)]).await.map_err(xapi)?
    };
    for vm in vms.as_object().into_iter().flat_map(|m| m.values()) {
        let name = vm["name_label"].as_str().unwrap_or_default().to_string();
        names.insert(vm["uuid"].as_str().unwrap_or_default().to_string(), (name, host_uuid(&vm["resident_on"])));
    }
    let mut pairs: Vec<(&str, String)> = vec![
        ("cf", "AVERAGE".into()),
        ("host", (!vm_scope).to_string()),
        ("interval", "5".into()),
        ("json", "true".into()),
        ("start", ctx.now.saturating_sub(30).to_string()),
    ];
    if vm_scope {
        pairs.push(("vm_uuid", uuid.clone()));
    }
    // Each host's xcp-rrdd has that host's RRDs and its VMs': each is read on its host (`/rrd_updates` is served
    // from the local one: `ocaml/xapi/rrdd_proxy.ml`), the master's through the master. A pool reads every host, at
    // once; a host that cannot be read is left out of the answer.
    let master =
        pools.as_object().and_then(|p| p.values().next()).and_then(|p| p["master"].as_str()).unwrap_or_default();
    let wanted: Vec<String> = match coll.class {
        // A VM that runs nowhere has no samples: an empty exposition, what a scraper expects of an idle target.
        "VM" => {
            rec["resident_on"].as_str().filter(|h| hosts.get(*h).is_some()).map(str::to_string).into_iter().collect()
        }
        "host" => vec![reference.clone()],
        _ => hosts.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default(),
    };
    let session = caller.session.as_str();
    let reads = wanted.iter().map(|h| {
        let address = (h != master).then(|| hosts[h.as_str()]["address"].as_str().unwrap_or_default().to_string());
        let pairs = pairs.clone();
        async move { super::stats::rrd_updates_at(ctx, session, address.as_deref(), &pairs).await }
    });
    let answers = futures_util::future::join_all(reads).await;
    if answers.len() == 1 {
        // One host asked: its failure is the answer's.
        if let Some(Err(e)) = answers.first() {
            return Err(e.clone());
        }
    }
    let keep = |kind: &str, object: &str| match coll.class {
        "VM" => kind == "vm" && object == uuid,
        // A host's own sources and those of the VMs it runs.
        "host" => {
            (kind == "host" && object == uuid) || (kind == "vm" && names.get(object).is_some_and(|n| n.1 == uuid))
        }
        _ => true,
    };
    let mut all = Families::new();
    for updates in answers.iter().flatten() {
        for (metric, (help, samples)) in families(updates, pool, &names, &keep) {
            all.entry(metric).or_insert_with(|| (help, Vec::new())).1.extend(samples);
        }
    }
    let text = exposition(&all);
    Ok(Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/plain; version=0.0.4; charset=utf-8".into())],
        body: text.into_bytes(),
        stream: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format() {
        let updates = json!({
            "meta": {"legend": ["AVERAGE:host:h:cpu0", "AVERAGE:host:h:memory_free_kib", "AVERAGE:vm:v:vif_0_rx",
                                "AVERAGE:vm:v:odd_ds", "AVERAGE:vm:w:cpu0"]},
            "data": [{"t": 10, "values": ["0.5", "2", "NaN", "3", "0.1"]}, {"t": 5, "values": ["0", "0", "0", "0", "0"]}],
        });
        let mut names = BTreeMap::new();
        names.insert("h".to_string(), ("host \"one\"".to_string(), String::new()));
        names.insert("v".to_string(), ("web\\1".to_string(), "h".to_string()));
        let text = exposition(&families(&updates, "p", &names, &|_, o| o != "w"));
        assert!(text.contains("# TYPE xcp_host_cpu_usage_ratio gauge\n"), "{text}");
        assert!(
            text.contains(r#"xcp_host_cpu_usage_ratio{pool="p",host="h",host_name="host \"one\"",cpu="0"} 0.5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"xcp_host_memory_free_bytes{pool="p",host="h",host_name="host \"one\""} 2048"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"xcp_vm_network_receive_bytes_per_second{pool="p",vm="v",vm_name="web\\1",host="h",vif="0"} NaN"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"xcp_vm_data_source{pool="p",vm="v",vm_name="web\\1",host="h",ds="odd_ds"} 3"#),
            "{text}"
        );
        assert!(!text.contains("vm=\"w\""));
    }
}
