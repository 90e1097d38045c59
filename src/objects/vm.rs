//! The XO shape of a VM, snapshot, template or control domain (XO's `xapi-object-to-xo` `vm()`).

use super::schema::{Field, Ty};
use super::{common, current_operations, int_or_float, num, timestamp, vm_checks, Ctx};
use serde_json::{json, Map, Value};

fn s<'a>(r: &'a Value, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn b(r: &Value, k: &str) -> bool {
    r.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn xo_type(r: &Value) -> &'static str {
    if b(r, "is_control_domain") {
        "VM-controller"
    } else if b(r, "is_a_snapshot") {
        "VM-snapshot"
    } else if b(r, "is_a_template") {
        "VM-template"
    } else {
        "VM"
    }
}

/// `"0/ip": "1.2.3.4"` → `"0/ipv4/0"`-style keys, as XO normalises guest addresses.
fn addresses(networks: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(m) = networks.and_then(Value::as_object) {
        for (k, v) in m {
            let key = match k.split('/').collect::<Vec<_>>().as_slice() {
                [dev, "ip"] => format!("{dev}/ipv4/0"),
                [dev, "ipv6", n] => format!("{dev}/ipv6/{n}"),
                _ => k.clone(),
            };
            out.insert(key, v.clone());
        }
    }
    out
}

/// The host a halted VM is bound to through a disk on a local (non-shared) SR, if any.
fn container(r: &Value, ctx: &Ctx) -> Value {
    let resident = ctx.link(r.get("resident_on").unwrap_or(&Value::Null));
    if !resident.is_null() {
        return resident;
    }
    for vbd in r.get("VBDs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let Some(vdi) = ctx.get(vbd).and_then(|v| ctx.get(v.get("VDI")?)) else {
            continue;
        };
        let Some(sr) = ctx.get(vdi.get("SR").unwrap_or(&Value::Null)) else {
            continue;
        };
        if !b(sr, "shared") {
            if let Some(pbd) = sr.get("PBDs").and_then(Value::as_array).and_then(|a| a.first()) {
                let host = ctx.get(pbd).map(|p| ctx.link(p.get("host").unwrap_or(&Value::Null)));
                if let Some(h) = host.filter(|h| !h.is_null()) {
                    return h;
                }
            }
        }
    }
    json!(ctx.pool_uuid)
}

pub fn map(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let t = xo_type(r);
    let mut o = common(reference, r, t, ctx);
    let metrics = ctx.get(r.get("metrics").unwrap_or(&Value::Null));
    let guest = ctx.get(r.get("guest_metrics").unwrap_or(&Value::Null));
    let power_state = s(r, "power_state");
    let running = power_state == "Running" || power_state == "Paused";
    let platform = r.get("platform").cloned().unwrap_or_else(|| json!({}));
    let plat = |k: &str| platform.get(k).cloned();
    let guest_running = guest.filter(|_| running);

    let vcpus_number = match metrics.filter(|_| running && guest.is_some()) {
        Some(m) => num(m.get("VCPUs_number")),
        None => num(r.get("VCPUs_at_startup")),
    };
    o.insert("CPUs".into(), json!({ "max": num(r.get("VCPUs_max")), "number": vcpus_number }));
    let mut memory = json!({
        "dynamic": [num(r.get("memory_dynamic_min")), num(r.get("memory_dynamic_max"))],
        "static": [num(r.get("memory_static_min")), num(r.get("memory_static_max"))],
        "size": num(r.get("memory_dynamic_max")),
    });
    if running {
        let total = guest_running.and_then(|g| g.get("memory")).and_then(|m| m.get("total")).and_then(Value::as_str);
        match total.and_then(|t| t.parse::<i64>().ok()) {
            Some(kib) => {
                memory["size"] = json!(kib * 1024);
                let free = guest_running
                    .and_then(|g| g.get("memory"))
                    .and_then(|m| m.get("free"))
                    .and_then(Value::as_str)
                    .and_then(|f| f.parse::<i64>().ok());
                if let Some(free) = free {
                    memory["usage"] = json!((kib - free) * 1024);
                }
            }
            None => {
                if let Some(m) = metrics {
                    memory["size"] = num(m.get("memory_actual"));
                }
            }
        }
    }
    o.insert("memory".into(), memory);
    o.insert("power_state".into(), json!(power_state));
    o.insert("$container".into(), container(r, ctx));
    let addrs = addresses(guest_running.and_then(|g| g.get("networks")));
    let main_ip = addrs.get("0/ipv4/0").or_else(|| addrs.values().next()).cloned().unwrap_or(Value::Null);
    o.insert("addresses".into(), Value::Object(addrs));
    o.insert("mainIpAddress".into(), main_ip);
    o.insert(
        "os_version".into(),
        guest
            .and_then(|g| g.get("os_version"))
            .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
            .cloned()
            .unwrap_or(Value::Null),
    );
    let domain_type = s(r, "domain_type");
    let mode = if !domain_type.is_empty() && domain_type != "unspecified" {
        domain_type.to_string()
    } else if s(r, "HVM_boot_policy").is_empty() {
        "pv".into()
    } else {
        "hvm".into()
    };
    o.insert("virtualizationMode".into(), json!(mode));
    o.insert("boot".into(), r.get("HVM_boot_params").cloned().unwrap_or_else(|| json!({})));
    let other = r.get("other_config").cloned().unwrap_or_else(|| json!({}));
    o.insert("auto_poweron".into(), json!(other.get("auto_poweron").and_then(Value::as_str) == Some("true")));
    o.insert("other".into(), other.clone());
    o.insert("xenStoreData".into(), r.get("xenstore_data").cloned().unwrap_or_else(|| json!({})));
    o.insert("bios_strings".into(), r.get("bios_strings").cloned().unwrap_or_else(|| json!({})));
    o.insert("blockedOperations".into(), r.get("blocked_operations").cloned().unwrap_or_else(|| json!({})));
    o.insert("high_availability".into(), json!(s(r, "ha_restart_priority")));
    o.insert("hasVendorDevice".into(), json!(b(r, "has_vendor_device")));
    o.insert("startDelay".into(), num(r.get("start_delay")));
    o.insert("current_operations".into(), current_operations(r, ctx));
    o.insert("installTime".into(), timestamp(metrics.and_then(|m| m.get("install_time"))));
    o.insert(
        "startTime".into(),
        if running { timestamp(metrics.and_then(|m| m.get("start_time"))) } else { Value::Null },
    );
    o.insert(
        "secureBoot".into(),
        json!(plat("secureboot").and_then(|v| v.as_str().map(|s| s == "true")).unwrap_or(false)),
    );
    o.insert("viridian".into(), json!(plat("viridian").and_then(|v| v.as_str().map(|s| s == "true")).unwrap_or(false)));
    o.insert("coresPerSocket".into(), plat("cores-per-socket").map(|v| num(Some(&v))).unwrap_or(Value::Null));
    let plat_true = |k: &str| plat(k).and_then(|v| v.as_str().map(|s| s == "true")).unwrap_or(false);
    o.insert("expNestedHvm".into(), json!(plat_true("exp-nested-hvm")));
    // XCP-ng platform 3.4 renamed the switch (`nested-virt`).
    let nested = if vm_checks::at_least(&ctx.platform_version, 3, 4) { "nested-virt" } else { "exp-nested-hvm" };
    o.insert("isNestedVirtEnabled".into(), json!(plat_true(nested)));
    o.insert("needsVtpm".into(), json!(plat_true("vtpm")));
    let firmware = r.get("HVM_boot_params").and_then(|p| p.get("firmware")).and_then(Value::as_str).unwrap_or("");
    o.insert("isFirmwareSupported".into(), json!(vm_checks::firmware_supported(s(r, "recommendations"), firmware)));
    if t == "VM" {
        o.insert("vulnerabilities".into(), json!({ "xsa468": vm_checks::xsa468(&platform, guest) }));
    }
    // XO's own data about the VM (`xo:<uuid prefix>` in other_config, as `@xen-orchestra/xapi`'s `xoData`):
    // its creation record, empty when XO did not create it.
    let uuid = s(r, "uuid");
    let xo_data = r
        .get("other_config")
        .and_then(|c| c.get(format!("xo:{}", uuid.get(..8).unwrap_or(uuid))))
        .and_then(Value::as_str)
        .and_then(|j| serde_json::from_str::<Value>(j).ok());
    let creation = xo_data.as_ref().and_then(|d| d.get("creation")).filter(|c| c.is_object()).cloned();
    o.insert("creation".into(), creation.unwrap_or_else(|| json!({})));
    if mode == "hvm" {
        o.insert("vga".into(), plat("vga").unwrap_or_else(|| json!("cirrus")));
        o.insert("videoram".into(), plat("videoram").map(|v| num(Some(&v))).unwrap_or(json!(4)));
    } else {
        o.insert("PV_args".into(), json!(s(r, "PV_args")));
    }
    let tools = guest.map(|g| {
        let v = g.get("PV_drivers_version").cloned().unwrap_or_else(|| json!({}));
        let detected = b(g, "PV_drivers_detected") || v.as_object().is_some_and(|m| !m.is_empty());
        (v, detected, b(g, "PV_drivers_up_to_date"))
    });
    // XO 6 dropped the deprecated `xenTools`; these are its replacements (XO's `getVmGuestToolsProps`).
    if let Some((version, detected, up_to_date)) = tools.filter(|_| running) {
        let part = |k: &str| version.get(k).and_then(Value::as_str).unwrap_or("");
        let has_version = version.get("major").is_some() && version.get("minor").is_some();
        o.insert("pvDriversDetected".into(), json!(detected));
        if has_version {
            o.insert(
                "pvDriversVersion".into(),
                json!(format!("{}.{}.{}-{}", part("major"), part("minor"), part("micro"), part("build"))),
            );
        }
        if detected {
            o.insert("pvDriversUpToDate".into(), json!(up_to_date));
        }
        let static_ip = guest.and_then(|g| g.get("other")).and_then(|o| o.get("feature-static-ip-setting"));
        o.insert(
            "managementAgentDetected".into(),
            json!(has_version || static_ip.and_then(Value::as_str) == Some("1")),
        );
    }
    o.insert("VIFs".into(), ctx.links(r.get("VIFs").unwrap_or(&Value::Null)));
    o.insert("$VBDs".into(), ctx.links(r.get("VBDs").unwrap_or(&Value::Null)));
    o.insert("VTPMs".into(), json!([]));
    o.insert("VGPUs".into(), ctx.links(r.get("VGPUs").unwrap_or(&Value::Null)));
    o.insert("$VGPUs".into(), ctx.links(r.get("VGPUs").unwrap_or(&Value::Null)));
    o.insert("snapshots".into(), ctx.links(r.get("snapshots").unwrap_or(&Value::Null)));
    o.insert("parent".into(), ctx.link(r.get("parent").unwrap_or(&Value::Null)));
    o.insert("affinityHost".into(), ctx.link(r.get("affinity").unwrap_or(&Value::Null)));
    o.insert("suspendSr".into(), ctx.link(r.get("suspend_SR").unwrap_or(&Value::Null)));
    o.insert("resourceSet".into(), other.get("xo:resource_set").cloned().unwrap_or(Value::Null));
    o.insert("notes".into(), other.get("xo:notes").cloned().unwrap_or(Value::Null));
    o.insert("nicType".into(), plat("nic_type").unwrap_or(Value::Null));
    // PCI passthrough (`other_config:pci`, `<n>/<pci id>` entries joined by commas): the PCI ids.
    let pcis = other
        .get("pci")
        .and_then(Value::as_str)
        .map(|p| p.split(',').map(|e| json!(e.split_once('/').map_or("", |(_, id)| id))).collect::<Vec<_>>());
    o.insert("attachedPcis".into(), pcis.map(Value::Array).unwrap_or(Value::Null));
    // The credit scheduler's parameters (`VCPUs_params`): cap, weight, and the mask of physical CPUs.
    let params = r.get("VCPUs_params").cloned().unwrap_or_else(|| json!({}));
    let number = |k: &str| params.get(k).and_then(Value::as_str).and_then(|v| v.trim().parse::<f64>().ok());
    for (key, field) in [("cap", "cpuCap"), ("weight", "cpuWeight")] {
        o.insert(field.into(), number(key).map(int_or_float).unwrap_or(Value::Null));
    }
    let mask = params
        .get("mask")
        .and_then(Value::as_str)
        .map(|m| m.split(',').filter_map(|c| c.trim().parse::<f64>().ok()).map(int_or_float).collect::<Vec<_>>());
    o.insert("cpuMask".into(), mask.map(Value::Array).unwrap_or(Value::Null));
    if t == "VM-snapshot" {
        o.insert("snapshot_time".into(), timestamp(r.get("snapshot_time")));
        o.insert("$snapshot_of".into(), ctx.link(r.get("snapshot_of").unwrap_or(&Value::Null)));
        o.insert("suspendVdi".into(), ctx.link(r.get("suspend_VDI").unwrap_or(&Value::Null)));
    }
    if t == "VM-template" {
        o.insert(
            "isDefaultTemplate".into(),
            json!(b(r, "is_default_template") || other.get("default_template").and_then(Value::as_str) == Some("true")),
        );
        o.insert(
            "template_info".into(),
            json!({
                "arch": other.get("install-arch").cloned().unwrap_or(Value::Null),
                "disks": [],
                "install_methods": other.get("install-methods").and_then(Value::as_str).map(|m| m.split(',').map(|x| json!(x)).collect::<Vec<_>>()).unwrap_or_default(),
                "install_repository": other.get("install-repository").cloned().unwrap_or(Value::Null),
            }),
        );
    }
    o
}

/// The fields [`map`] builds, for VMs, snapshots, templates and control domains alike (see [`super::schema`]).
pub const FIELDS: &[Field] = &[
    ("CPUs", Ty::Fields(&[("max", Ty::Int), ("number", Ty::Int)])),
    ("memory", Ty::Fields(&[("dynamic", Ty::List), ("static", Ty::List), ("size", Ty::Int), ("usage", Ty::Int)])),
    ("power_state", Ty::OneOf(&["Running", "Halted", "Paused", "Suspended"])),
    ("$container", Ty::Uuid),
    ("addresses", Ty::StrMap),
    ("mainIpAddress", Ty::Str),
    ("os_version", Ty::Nullable(&Ty::StrMap)),
    ("virtualizationMode", Ty::Str),
    ("boot", Ty::StrMap),
    ("auto_poweron", Ty::Bool),
    ("other", Ty::StrMap),
    ("xenStoreData", Ty::StrMap),
    ("bios_strings", Ty::StrMap),
    ("blockedOperations", Ty::StrMap),
    ("high_availability", Ty::Str),
    ("hasVendorDevice", Ty::Bool),
    ("startDelay", Ty::Int),
    ("current_operations", Ty::StrMap),
    ("installTime", Ty::Nullable(&Ty::Num)),
    ("startTime", Ty::Nullable(&Ty::Num)),
    ("secureBoot", Ty::Bool),
    ("viridian", Ty::Bool),
    ("coresPerSocket", Ty::Int),
    ("expNestedHvm", Ty::Bool),
    ("isNestedVirtEnabled", Ty::Bool),
    ("needsVtpm", Ty::Bool),
    ("isFirmwareSupported", Ty::Bool),
    ("vulnerabilities", Ty::Object),
    ("creation", Ty::Object),
    ("vga", Ty::Str),
    ("videoram", Ty::Int),
    ("PV_args", Ty::Str),
    ("pvDriversDetected", Ty::Bool),
    ("pvDriversVersion", Ty::Str),
    ("pvDriversUpToDate", Ty::Bool),
    ("managementAgentDetected", Ty::Bool),
    ("VIFs", Ty::Uuids),
    ("$VBDs", Ty::Uuids),
    ("VTPMs", Ty::Uuids),
    ("VGPUs", Ty::Uuids),
    ("$VGPUs", Ty::Uuids),
    ("snapshots", Ty::Uuids),
    ("parent", Ty::Uuid),
    ("affinityHost", Ty::Uuid),
    ("suspendSr", Ty::Uuid),
    ("resourceSet", Ty::Str),
    ("notes", Ty::Str),
    ("nicType", Ty::Str),
    ("attachedPcis", Ty::Strs),
    ("cpuCap", Ty::Num),
    ("cpuWeight", Ty::Num),
    ("cpuMask", Ty::List),
    ("snapshot_time", Ty::Num),
    ("$snapshot_of", Ty::Uuid),
    ("suspendVdi", Ty::Uuid),
    ("isDefaultTemplate", Ty::Bool),
    (
        "template_info",
        Ty::Fields(&[
            ("arch", Ty::Str),
            ("disks", Ty::List),
            ("install_methods", Ty::Strs),
            ("install_repository", Ty::Str),
        ]),
    ),
];
