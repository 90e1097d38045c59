//! The XO shapes of hosts and pools (XO's `xapi-object-to-xo` `host()` and `pool()`).

use super::schema::{Field, Ty};
use super::{common, current_operations, timestamp, Ctx};
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
    // The host's certificates (XAPI ≥ 1.294 on XCP-ng/CH 8.2): fingerprint and expiry, as XO shows them.
    let certificates: Vec<Value> = r
        .get("certificates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| ctx.get(c))
        .map(|c| json!({ "fingerprint": c.get("fingerprint").cloned().unwrap_or(json!("")), "notAfter": timestamp(c.get("not_after")) }))
        .collect();
    if r.get("certificates").is_some() {
        o.insert("certificates".into(), Value::Array(certificates));
    }
    o.insert("PIFs".into(), ctx.links(r.get("PIFs").unwrap_or(&Value::Null)));
    o.insert("$PIFs".into(), ctx.links(r.get("PIFs").unwrap_or(&Value::Null)));
    o.insert("$PBDs".into(), ctx.links(r.get("PBDs").unwrap_or(&Value::Null)));
    for (xo, xapi) in
        [("PCIs", "PCIs"), ("$PCIs", "PCIs"), ("PGPUs", "PGPUs"), ("$PGPUs", "PGPUs"), ("patches", "patches")]
    {
        o.insert(xo.into(), ctx.links(r.get(xapi).unwrap_or(&Value::Null)));
    }
    o.insert("powerOnMode".into(), r.get("power_on_mode").cloned().unwrap_or_else(|| json!("")));
    let other = r.get("other_config");
    let boot = timestamp(other.and_then(|c| c.get("boot_time")));
    o.insert("startTime".into(), boot.clone());
    o.insert("agentStartTime".into(), timestamp(other.and_then(|c| c.get("agent_start_time"))));
    o.insert("license_server".into(), r.get("license_server").cloned().unwrap_or_else(|| json!({})));
    o.insert("license_expiry".into(), timestamp(license.and_then(|l| l.get("expiry"))));
    let iommu = r.get("chipset_info").and_then(|c| c.get("iommu")).and_then(Value::as_str);
    o.insert("chipset_info".into(), json!({ "iommu": iommu.map(|v| v == "true") }));
    let caps = r.get("capabilities").and_then(Value::as_array).cloned().unwrap_or_default();
    o.insert("hvmCapable".into(), json!(caps.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("hvm")))));
    // XCP-ng: patches installed after the last boot; XenServer: updates that say so.
    let reboot = if get_str(sv, "product_brand") == Some("XCP-ng") {
        let installed = get_str(other, "rpm_patch_installation_time").and_then(|t| t.parse::<f64>().ok());
        matches!((boot.as_f64(), installed), (Some(b), Some(i)) if b < i)
    } else {
        r.get("updates_requiring_reboot").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
    };
    o.insert("rebootRequired".into(), json!(reboot));
    // Supplemental packs as `software_version` lists them: `author:name` → `description, version X`.
    let packs: Vec<Value> = sv
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let (author, name) = k.split_once(':').filter(|(_, n)| !n.contains(':'))?;
            let (description, version) = v.as_str()?.split_once(", ").unwrap_or((v.as_str()?, ""));
            let version = version.split(' ').nth(1).unwrap_or("");
            Some(json!({"name": name, "description": description, "author": author, "version": version}))
        })
        .collect();
    o.insert("supplementalPacks".into(), Value::Array(packs));
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
    o.insert(
        "haRebootVmOnInternalShutdown".into(),
        r.get("ha_reboot_vm_on_internal_shutdown").cloned().unwrap_or(json!(true)),
    );
    o.insert("platform_version".into(), json!(ctx.platform_version));
    o.insert("otherConfig".into(), other);
    o.insert("current_operations".into(), current_operations(r, ctx));
    o
}

/// The fields [`map_host`] builds (see [`super::schema`]).
pub const HOST_FIELDS: &[Field] = &[
    ("address", Ty::Str),
    ("hostname", Ty::Str),
    ("enabled", Ty::Bool),
    ("bios_strings", Ty::StrMap),
    ("license_params", Ty::StrMap),
    ("iscsiIqn", Ty::Str),
    ("multipathing", Ty::Bool),
    ("logging", Ty::StrMap),
    ("power_state", Ty::OneOf(&["Running", "Halted", "Unknown"])),
    ("memory", Ty::Fields(&[("usage", Ty::Int), ("size", Ty::Int)])),
    ("cpus", Ty::Fields(&[("cores", Ty::Int), ("sockets", Ty::Int)])),
    ("CPUs", Ty::StrMap),
    ("version", Ty::Str),
    ("build", Ty::Str),
    ("productBrand", Ty::Str),
    ("zstdSupported", Ty::Bool),
    ("controlDomain", Ty::Uuid),
    ("residentVms", Ty::Uuids),
    ("certificates", Ty::List),
    ("PIFs", Ty::Uuids),
    ("$PIFs", Ty::Uuids),
    ("$PBDs", Ty::Uuids),
    ("PCIs", Ty::Uuids),
    ("$PCIs", Ty::Uuids),
    ("PGPUs", Ty::Uuids),
    ("$PGPUs", Ty::Uuids),
    ("patches", Ty::Uuids),
    ("powerOnMode", Ty::Str),
    ("startTime", Ty::Nullable(&Ty::Num)),
    ("agentStartTime", Ty::Nullable(&Ty::Num)),
    ("license_server", Ty::StrMap),
    ("license_expiry", Ty::Nullable(&Ty::Num)),
    ("chipset_info", Ty::Fields(&[("iommu", Ty::Bool)])),
    ("hvmCapable", Ty::Bool),
    ("rebootRequired", Ty::Bool),
    ("supplementalPacks", Ty::List),
    ("otherConfig", Ty::StrMap),
    ("current_operations", Ty::StrMap),
];

/// The fields [`map_pool`] builds (see [`super::schema`]).
pub const POOL_FIELDS: &[Field] = &[
    ("master", Ty::Uuid),
    ("default_SR", Ty::Uuid),
    ("suspendSr", Ty::Uuid),
    ("crashDumpSr", Ty::Uuid),
    ("HA_enabled", Ty::Bool),
    ("haSrs", Ty::Uuids),
    ("auto_poweron", Ty::Bool),
    ("migrationCompression", Ty::Bool),
    ("cpus", Ty::Fields(&[("cores", Ty::Int), ("sockets", Ty::Int)])),
    ("zstdSupported", Ty::Bool),
    ("vtpmSupported", Ty::Bool),
    ("haRebootVmOnInternalShutdown", Ty::Bool),
    ("platform_version", Ty::Str),
    ("otherConfig", Ty::StrMap),
    ("current_operations", Ty::StrMap),
];
