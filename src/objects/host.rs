//! The XO shapes of hosts and pools (XO's `xapi-object-to-xo` `host()` and `pool()`).

use super::{common, current_operations, num, Ctx};
use serde_json::{json, Map, Value};

fn get_str<'a>(m: Option<&'a Value>, k: &str) -> Option<&'a str> {
    m.and_then(|m| m.get(k)).and_then(Value::as_str)
}

pub fn map_host(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "host", ctx);
    let metrics = ctx.get(r.get("metrics").unwrap_or(&Value::Null));
    let power_state = match metrics {
        Some(m) if m.get("live").and_then(Value::as_bool) == Some(true) => "Running",
        Some(_) => "Halted",
        None => "Unknown",
    };
    let total = metrics.and_then(|m| m.get("memory_total")).and_then(Value::as_i64).unwrap_or(0);
    let free = metrics.and_then(|m| m.get("memory_free")).and_then(Value::as_i64).unwrap_or(0);
    let gib = 1i64 << 30;
    let size = if total > 0 { (total + gib - 1) / gib * gib } else { 0 };
    let cpu = r.get("cpu_info");
    let sv = r.get("software_version");
    let license = r.get("license_params");
    let count = |k: &str| get_str(cpu, k).and_then(|v| v.parse::<i64>().ok()).map(|v| json!(v)).unwrap_or(Value::Null);
    for k in
        ["address", "hostname", "enabled", "bios_strings", "license_params", "iscsi_iqn", "multipathing", "logging"]
    {
        if let Some(v) = r.get(k) {
            o.insert(if k == "iscsi_iqn" { "iscsiIqn".into() } else { k.into() }, v.clone());
        }
    }
    o.insert("power_state".into(), json!(power_state));
    o.insert("memory".into(), json!({ "usage": total - free, "size": size }));
    o.insert("cpus".into(), json!({ "cores": count("cpu_count"), "sockets": count("socket_count") }));
    o.insert("CPUs".into(), cpu.cloned().unwrap_or_else(|| json!({})));
    o.insert("version".into(), json!(get_str(sv, "product_version").unwrap_or("")));
    o.insert("build".into(), json!(get_str(sv, "build_number").unwrap_or("")));
    o.insert("productBrand".into(), json!(get_str(sv, "product_brand").unwrap_or("")));
    o.insert("zstdSupported".into(), json!(get_str(license, "restrict_zstd_export") == Some("false")));
    o.insert("controlDomain".into(), ctx.link(r.get("control_domain").unwrap_or(&Value::Null)));
    o.insert("residentVms".into(), ctx.links(r.get("resident_VMs").unwrap_or(&Value::Null)));
    o.insert("PIFs".into(), ctx.links(r.get("PIFs").unwrap_or(&Value::Null)));
    o.insert("$PIFs".into(), ctx.links(r.get("PIFs").unwrap_or(&Value::Null)));
    o.insert("$PBDs".into(), ctx.links(r.get("PBDs").unwrap_or(&Value::Null)));
    o.insert("PCIs".into(), json!([]));
    o.insert("PGPUs".into(), json!([]));
    o.insert("powerOnMode".into(), r.get("power_on_mode").cloned().unwrap_or_else(|| json!("")));
    o.insert("startTime".into(), num(r.get("other_config").and_then(|c| c.get("boot_time"))));
    o.insert("otherConfig".into(), r.get("other_config").cloned().unwrap_or_else(|| json!({})));
    o.insert("current_operations".into(), current_operations(r, ctx));
    o
}

pub fn map_pool(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "pool", ctx);
    let master = r.get("master").unwrap_or(&Value::Null);
    if r.get("name_label").and_then(Value::as_str).unwrap_or("").is_empty() {
        if let Some(name) = ctx.get(master).and_then(|h| h.get("name_label")) {
            o.insert("name_label".into(), name.clone());
        }
    }
    let other = r.get("other_config").cloned().unwrap_or_else(|| json!({}));
    let cpu = r.get("cpu_info");
    let count = |k: &str| get_str(cpu, k).and_then(|v| v.parse::<i64>().ok()).map(|v| json!(v)).unwrap_or(Value::Null);
    o.insert("master".into(), ctx.link(master));
    o.insert("default_SR".into(), ctx.link(r.get("default_SR").unwrap_or(&Value::Null)));
    o.insert("suspendSr".into(), ctx.link(r.get("suspend_image_SR").unwrap_or(&Value::Null)));
    o.insert("crashDumpSr".into(), ctx.link(r.get("crash_dump_SR").unwrap_or(&Value::Null)));
    o.insert("HA_enabled".into(), r.get("ha_enabled").cloned().unwrap_or(json!(false)));
    o.insert("haSrs".into(), json!([]));
    o.insert("auto_poweron".into(), json!(other.get("auto_poweron").and_then(Value::as_str) == Some("true")));
    o.insert("migrationCompression".into(), r.get("migration_compression").cloned().unwrap_or(Value::Null));
    o.insert("cpus".into(), json!({ "cores": count("cpu_count"), "sockets": count("socket_count") }));
    o.insert("zstdSupported".into(), json!(get_str(r.get("restrictions"), "restrict_zstd_export") == Some("false")));
    o.insert("vtpmSupported".into(), json!(get_str(r.get("restrictions"), "restrict_vtpm") == Some("false")));
    o.insert("otherConfig".into(), other);
    o.insert("current_operations".into(), current_operations(r, ctx));
    o
}
