//! The XO shapes of networks, VBDs, VIFs, PIFs, PBDs, SMs, PCIs, PGPUs, messages, alarms and XAPI tasks.

use super::schema::{Field, Ty};
use super::{common, current_operations, int_or_float, num, timestamp, Ctx};
use serde_json::{json, Map, Value};

fn field(r: &Value, k: &str) -> Value {
    r.get(k).cloned().unwrap_or(Value::Null)
}

pub fn map_network(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "network", ctx);
    let other = r.get("other_config").cloned().unwrap_or_else(|| json!({}));
    let purpose = r.get("purpose").and_then(Value::as_array).cloned().unwrap_or_default();
    o.insert("bridge".into(), field(r, "bridge"));
    o.insert("MTU".into(), num(r.get("MTU")));
    o.insert("PIFs".into(), ctx.links(r.get("PIFs").unwrap_or(&Value::Null)));
    o.insert("VIFs".into(), ctx.links(r.get("VIFs").unwrap_or(&Value::Null)));
    o.insert("automatic".into(), json!(other.get("automatic").and_then(Value::as_str) == Some("true")));
    o.insert(
        "defaultIsLocked".into(),
        json!(r.get("default_locking_mode").and_then(Value::as_str) == Some("disabled")),
    );
    o.insert("nbd".into(), json!(purpose.contains(&json!("nbd"))));
    o.insert("insecureNbd".into(), json!(purpose.contains(&json!("insecure_nbd"))));
    let bonded = r.get("PIFs").and_then(Value::as_array).into_iter().flatten().filter_map(|p| ctx.get(p)).any(|pif| {
        pif.get("bond_master_of").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
            || pif.get("bond_slave_of").and_then(Value::as_str).is_some_and(|s| s != "OpaqueRef:NULL")
    });
    o.insert("isBonded".into(), json!(bonded));
    o.insert("other_config".into(), other);
    o.insert("current_operations".into(), current_operations(r, ctx));
    o
}

pub fn map_vbd(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "VBD", ctx);
    o.insert("attached".into(), field(r, "currently_attached"));
    o.insert("bootable".into(), field(r, "bootable"));
    o.insert(
        "device".into(),
        match r.get("device").and_then(Value::as_str) {
            Some("") | None => Value::Null,
            Some(d) => json!(d),
        },
    );
    o.insert("is_cd_drive".into(), json!(r.get("type").and_then(Value::as_str) == Some("CD")));
    o.insert("position".into(), field(r, "userdevice"));
    o.insert("read_only".into(), json!(r.get("mode").and_then(Value::as_str) == Some("RO")));
    o.insert("VDI".into(), ctx.link(r.get("VDI").unwrap_or(&Value::Null)));
    o.insert("VM".into(), ctx.link(r.get("VM").unwrap_or(&Value::Null)));
    o
}

/// XO's PBD: the SR's connection on one host. Device-config entries that hold a password are left out (XAPI keeps
/// them as secrets, `*_secret` keys naming them; an older or hand-made PBD may still hold one in clear).
pub fn map_pbd(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "PBD", ctx);
    o.insert("attached".into(), json!(r.get("currently_attached").and_then(Value::as_bool).unwrap_or(false)));
    o.insert("host".into(), ctx.link(r.get("host").unwrap_or(&Value::Null)));
    o.insert("SR".into(), ctx.link(r.get("SR").unwrap_or(&Value::Null)));
    let config: Map<String, Value> = r
        .get("device_config")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.to_ascii_lowercase().contains("password") || k.ends_with("_secret"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    o.insert("device_config".into(), Value::Object(config));
    o.insert("otherConfig".into(), r.get("other_config").cloned().unwrap_or_else(|| json!({})));
    o
}

pub fn map_vif(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "VIF", ctx);
    let other = r.get("other_config").cloned().unwrap_or_else(|| json!({}));
    o.insert("MAC".into(), field(r, "MAC"));
    o.insert("MTU".into(), num(r.get("MTU")));
    o.insert("device".into(), field(r, "device"));
    o.insert("attached".into(), field(r, "currently_attached"));
    o.insert("lockingMode".into(), field(r, "locking_mode"));
    o.insert("allowedIpv4Addresses".into(), r.get("ipv4_allowed").cloned().unwrap_or_else(|| json!([])));
    o.insert("allowedIpv6Addresses".into(), r.get("ipv6_allowed").cloned().unwrap_or_else(|| json!([])));
    o.insert("txChecksumming".into(), json!(other.get("ethtool-tx").and_then(Value::as_str) != Some("false")));
    o.insert("other_config".into(), other);
    // XO's `rateLimit`: the `ratelimit` QoS algorithm's `kbps` (kB/s), as a number.
    let kbps = r.get("qos_algorithm_params").and_then(|p| p.get("kbps")).and_then(Value::as_str);
    let rate = kbps
        .filter(|_| field(r, "qos_algorithm_type") == json!("ratelimit"))
        .and_then(|k| k.trim().parse::<f64>().ok());
    o.insert("rateLimit".into(), rate.map(int_or_float).unwrap_or(Value::Null));
    o.insert("$network".into(), ctx.link(r.get("network").unwrap_or(&Value::Null)));
    o.insert("$VM".into(), ctx.link(r.get("VM").unwrap_or(&Value::Null)));
    o
}

pub fn map_pif(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "PIF", ctx);
    let vlan = r.get("VLAN").and_then(Value::as_i64).unwrap_or(-1);
    for (xo, xapi) in [
        ("device", "device"),
        ("mac", "MAC"),
        ("ip", "IP"),
        ("netmask", "netmask"),
        ("gateway", "gateway"),
        ("dns", "DNS"),
        ("mode", "ip_configuration_mode"),
        ("ipv6Mode", "ipv6_configuration_mode"),
        ("physical", "physical"),
        ("management", "management"),
        ("attached", "currently_attached"),
    ] {
        o.insert(xo.into(), field(r, xapi));
    }
    let metrics = ctx.get(r.get("metrics").unwrap_or(&Value::Null));
    o.insert("deviceName".into(), metrics.map(|m| field(m, "device_name")).unwrap_or(Value::Null));
    o.insert("carrier".into(), json!(metrics.and_then(|m| m.get("carrier")).and_then(Value::as_bool).unwrap_or(false)));
    o.insert("speed".into(), metrics.map(|m| num(m.get("speed"))).unwrap_or(Value::Null));
    o.insert("disallowUnplug".into(), json!(r.get("disallow_unplug").and_then(Value::as_bool).unwrap_or(false)));
    o.insert("primaryAddressType".into(), field(r, "primary_address_type"));
    o.insert("ipv6".into(), r.get("IPv6").cloned().unwrap_or_else(|| json!([])));
    o.insert("mtu".into(), num(r.get("MTU")));
    o.insert("vlan".into(), json!(vlan));
    o.insert(
        "isBondMaster".into(),
        json!(r.get("bond_master_of").and_then(Value::as_array).is_some_and(|a| !a.is_empty())),
    );
    o.insert(
        "isBondSlave".into(),
        json!(r.get("bond_slave_of").and_then(Value::as_str).is_some_and(|s| s != "OpaqueRef:NULL")),
    );
    // The bond a slave belongs to names its master; a master's bond (the first of `bond_master_of`, as XO and
    // XenCenter take it) names the slaves.
    let bond_of_slave = r.get("bond_slave_of").and_then(|b| ctx.get(b));
    o.insert(
        "bondMaster".into(),
        bond_of_slave.map(|b| ctx.link(b.get("master").unwrap_or(&Value::Null))).unwrap_or(Value::Null),
    );
    let bond_of_master =
        r.get("bond_master_of").and_then(Value::as_array).and_then(|a| a.first()).and_then(|b| ctx.get(b));
    o.insert(
        "bondSlaves".into(),
        bond_of_master.map(|b| ctx.links(b.get("slaves").unwrap_or(&Value::Null))).unwrap_or(Value::Null),
    );
    o.insert("$host".into(), ctx.link(r.get("host").unwrap_or(&Value::Null)));
    o.insert("$network".into(), ctx.link(r.get("network").unwrap_or(&Value::Null)));
    o
}

pub fn map_message(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "message", ctx);
    o.insert("name".into(), field(r, "name"));
    o.insert("body".into(), field(r, "body"));
    o.insert("time".into(), timestamp(r.get("timestamp")));
    o.insert("$object".into(), field(r, "obj_uuid"));
    o
}

/// XO's storage driver (`xapi-object-to-xo.mjs`, `sm`): XAPI's `type` as `SM_type`, `supported_image_formats` (XAPI
/// 26.15 and later) empty on older hosts.
pub fn map_sm(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "SM", ctx);
    o.insert("SM_type".into(), field(r, "type"));
    for k in ["vendor", "configuration", "features", "driver_filename", "required_cluster_stack"] {
        o.insert(k.into(), field(r, k));
    }
    o.insert("supported_image_formats".into(), r.get("supported_image_formats").cloned().unwrap_or_else(|| json!([])));
    o
}

/// XO's PCI device (`pci`).
pub fn map_pci(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "PCI", ctx);
    for k in ["class_name", "device_name", "pci_id"] {
        o.insert(k.into(), field(r, k));
    }
    o.insert("$host".into(), ctx.link(r.get("host").unwrap_or(&Value::Null)));
    o
}

/// XO's physical GPU (`pgpu`): links as uuids; vGPU types and resident vGPUs (classes the edge does not serve) as the
/// uuids of those it knows, which is none.
pub fn map_pgpu(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "PGPU", ctx);
    let link = |k: &str| ctx.link(r.get(k).unwrap_or(&Value::Null));
    let links = |k: &str| ctx.links(r.get(k).unwrap_or(&Value::Null));
    o.insert("dom0Access".into(), field(r, "dom0_access"));
    o.insert("enabledVgpuTypes".into(), links("enabled_VGPU_types"));
    o.insert("gpuGroup".into(), link("GPU_group"));
    o.insert(
        "isSystemDisplayDevice".into(),
        json!(r.get("is_system_display_device").and_then(Value::as_bool) == Some(true)),
    );
    o.insert("pci".into(), link("PCI"));
    o.insert("supportedVgpuTypes".into(), links("supported_VGPU_types"));
    o.insert("host".into(), link("host"));
    o.insert("$host".into(), link("host"));
    o.insert("vgpus".into(), links("resident_VGPUs"));
    o.insert("$vgpus".into(), links("resident_VGPUs"));
    o
}

/// An alarm's body as XO 6 parses it: `value: <v>\nconfig:\n<variable>\n<name value="<name>"/>…` gives the value
/// in percent with one decimal (as a string: `NaN` and infinities stay words) and the data source's name; another
/// body (a bond's status, a multipath alert) is the name as it is.
fn alarm_body(body: &str) -> Value {
    let parsed = (|| {
        let rest = body.trim_start().strip_prefix("value:")?.trim_start();
        let end = rest.find(char::is_whitespace)?;
        let (value, rest) = rest.split_at(end);
        let rest = rest.trim_start().strip_prefix("config:")?.trim_start().strip_prefix("<variable>")?.trim_start();
        let name = rest.strip_prefix("<name value=\"")?;
        let name = &name[..name.find('"')?];
        let value = match value.parse::<f64>() {
            Ok(v) if v.is_finite() && !value.starts_with(['-', '+']) => format!("{:.1}", v * 100.0),
            _ if matches!(value, "Infinity" | "-Infinity" | "NaN") => value.to_string(),
            _ => return None,
        };
        Some(json!({ "value": value, "name": name }))
    })();
    parsed.unwrap_or_else(|| json!({ "name": body }))
}

/// The REST collection of an XO type (XO 6: the type, lower case, plus `s`).
fn collection_of(xo_type: &str) -> String {
    format!("{}s", xo_type.to_ascii_lowercase())
}

/// XO 6's alarm: the message, its body parsed, `time` in milliseconds, and the object it is about (`type`, `uuid`,
/// `href`; type `unknown` without `href` when the object is gone).
pub fn map_alarm(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "message", ctx);
    o.insert("name".into(), field(r, "name"));
    o.insert("body".into(), alarm_body(r.get("body").and_then(Value::as_str).unwrap_or_default()));
    o.insert(
        "time".into(),
        timestamp(r.get("timestamp")).as_f64().map(|s| json!((s * 1000.0) as i64)).unwrap_or(json!(0)),
    );
    let uuid = r.get("obj_uuid").and_then(Value::as_str).unwrap_or_default();
    let found = (!uuid.is_empty())
        .then(|| ctx.records.values().find(|rec| rec.get("uuid").and_then(Value::as_str) == Some(uuid)))
        .flatten();
    let flag = |rec: &Value, k: &str| rec.get(k).and_then(Value::as_bool) == Some(true);
    let xo_type = found.and_then(|rec| match r.get("cls").and_then(Value::as_str).unwrap_or_default() {
        "VM" if flag(rec, "is_control_domain") => Some("VM-controller"),
        "VM" if flag(rec, "is_a_snapshot") => Some("VM-snapshot"),
        "VM" if flag(rec, "is_a_template") => Some("VM-template"),
        "VM" => Some("VM"),
        "Host" => Some("host"),
        "SR" => Some("SR"),
        "Pool" => Some("pool"),
        "VDI" if flag(rec, "is_a_snapshot") => Some("VDI-snapshot"),
        "VDI" => Some("VDI"),
        _ => None,
    });
    let object = match xo_type {
        Some(t) => json!({ "type": t, "uuid": uuid, "href": format!("/rest/v0/{}/{uuid}", collection_of(t)) }),
        None => json!({ "type": "unknown", "uuid": uuid }),
    };
    o.insert("object".into(), object);
    o
}

/// An XAPI task in XO 6's task shape (`XoTask`: `id`, `properties`, `start`, `status` in `pending`, `success`,
/// `failure`, `interrupted`, `end`, `progress` in percent, `result` an object), keeping XAPI's own fields beside it.
pub fn map_task(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "task", ctx);
    let xapi_status = r.get("status").and_then(Value::as_str).unwrap_or("pending");
    let ms = |k: &str| timestamp(r.get(k)).as_f64().map(|s| json!((s * 1000.0) as i64)).unwrap_or(Value::Null);
    let status = match xapi_status {
        "success" => "success",
        "failure" | "cancelled" => "failure",
        _ => "pending",
    };
    let error_info = r.get("error_info").cloned().unwrap_or_else(|| json!([]));
    let result = match xapi_status {
        "success" => json!({ "value": field(r, "result") }),
        "failure" | "cancelled" => {
            let info: Vec<String> = error_info
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
                .unwrap_or_default();
            let code = info.first().cloned().unwrap_or_else(|| "TASK_CANCELLED".into());
            json!({ "code": code, "params": info.get(1..).unwrap_or(&[]), "message": info.join(" ") })
        }
        _ => Value::Null,
    };
    o.insert(
        "properties".into(),
        json!({ "name": field(r, "name_label"), "description": field(r, "name_description"), "type": "xapi" }),
    );
    o.insert("start".into(), ms("created"));
    if status != "pending" {
        o.insert("end".into(), ms("finished"));
    }
    o.insert("status".into(), json!(status));
    o.insert("xapiStatus".into(), json!(xapi_status));
    let progress = r.get("progress").and_then(Value::as_f64).unwrap_or(0.0);
    o.insert("progress".into(), json!((progress * 100.0).round() as i64));
    o.insert("result".into(), result);
    o.insert("error_info".into(), error_info);
    o.insert("created".into(), timestamp(r.get("created")));
    o.insert("finished".into(), timestamp(r.get("finished")));
    o.insert("$host".into(), ctx.link(r.get("resident_on").unwrap_or(&Value::Null)));
    o.insert("other_config".into(), r.get("other_config").cloned().unwrap_or_else(|| json!({})));
    o.insert("current_operations".into(), current_operations(r, ctx));
    o
}

/// The fields [`map_network`] builds (see [`super::schema`]).
pub const NETWORK_FIELDS: &[Field] = &[
    ("bridge", Ty::Str),
    ("MTU", Ty::Int),
    ("PIFs", Ty::Uuids),
    ("VIFs", Ty::Uuids),
    ("automatic", Ty::Bool),
    ("defaultIsLocked", Ty::Bool),
    ("nbd", Ty::Bool),
    ("insecureNbd", Ty::Bool),
    ("isBonded", Ty::Bool),
    ("other_config", Ty::StrMap),
    ("current_operations", Ty::StrMap),
];

/// The fields [`map_vbd`] builds.
pub const VBD_FIELDS: &[Field] = &[
    ("attached", Ty::Bool),
    ("bootable", Ty::Bool),
    ("device", Ty::Nullable(&Ty::Str)),
    ("is_cd_drive", Ty::Bool),
    ("position", Ty::Str),
    ("read_only", Ty::Bool),
    ("VDI", Ty::Uuid),
    ("VM", Ty::Uuid),
];

/// The fields [`map_pbd`] builds.
pub const PBD_FIELDS: &[Field] = &[
    ("attached", Ty::Bool),
    ("host", Ty::Uuid),
    ("SR", Ty::Uuid),
    ("device_config", Ty::StrMap),
    ("otherConfig", Ty::StrMap),
];

/// The fields [`map_vif`] builds.
pub const VIF_FIELDS: &[Field] = &[
    ("MAC", Ty::Str),
    ("MTU", Ty::Int),
    ("device", Ty::Str),
    ("attached", Ty::Bool),
    ("lockingMode", Ty::OneOf(&["network_default", "locked", "unlocked", "disabled"])),
    ("allowedIpv4Addresses", Ty::Strs),
    ("allowedIpv6Addresses", Ty::Strs),
    ("txChecksumming", Ty::Bool),
    ("other_config", Ty::StrMap),
    ("rateLimit", Ty::Num),
    ("$network", Ty::Uuid),
    ("$VM", Ty::Uuid),
];

/// The fields [`map_pif`] builds.
pub const PIF_FIELDS: &[Field] = &[
    ("device", Ty::Str),
    ("mac", Ty::Str),
    ("ip", Ty::Str),
    ("netmask", Ty::Str),
    ("gateway", Ty::Str),
    ("dns", Ty::Str),
    ("mode", Ty::Str),
    ("ipv6Mode", Ty::Str),
    ("physical", Ty::Bool),
    ("management", Ty::Bool),
    ("attached", Ty::Bool),
    ("deviceName", Ty::Str),
    ("carrier", Ty::Bool),
    ("speed", Ty::Int),
    ("disallowUnplug", Ty::Bool),
    ("primaryAddressType", Ty::Str),
    ("ipv6", Ty::Strs),
    ("mtu", Ty::Int),
    ("vlan", Ty::Int),
    ("isBondMaster", Ty::Bool),
    ("isBondSlave", Ty::Bool),
    ("bondMaster", Ty::Uuid),
    ("bondSlaves", Ty::Uuids),
    ("$host", Ty::Uuid),
    ("$network", Ty::Uuid),
];

/// The fields [`map_message`] builds.
pub const MESSAGE_FIELDS: &[Field] = &[("name", Ty::Str), ("body", Ty::Str), ("time", Ty::Num), ("$object", Ty::Str)];

/// The fields [`map_sm`] builds.
pub const SM_FIELDS: &[Field] = &[
    ("SM_type", Ty::Str),
    ("vendor", Ty::Str),
    ("configuration", Ty::StrMap),
    ("features", Ty::Object),
    ("driver_filename", Ty::Str),
    ("required_cluster_stack", Ty::Strs),
    ("supported_image_formats", Ty::Strs),
];

/// The fields [`map_pci`] builds.
pub const PCI_FIELDS: &[Field] =
    &[("class_name", Ty::Str), ("device_name", Ty::Str), ("pci_id", Ty::Str), ("$host", Ty::Uuid)];

/// The fields [`map_pgpu`] builds.
pub const PGPU_FIELDS: &[Field] = &[
    ("dom0Access", Ty::Str),
    ("enabledVgpuTypes", Ty::Uuids),
    ("gpuGroup", Ty::Uuid),
    ("isSystemDisplayDevice", Ty::Bool),
    ("pci", Ty::Uuid),
    ("supportedVgpuTypes", Ty::Uuids),
    ("host", Ty::Uuid),
    ("$host", Ty::Uuid),
    ("vgpus", Ty::Uuids),
    ("$vgpus", Ty::Uuids),
];

/// The fields [`map_alarm`] builds.
pub const ALARM_FIELDS: &[Field] = &[
    ("name", Ty::Str),
    ("body", Ty::Fields(&[("value", Ty::Str), ("name", Ty::Str)])),
    ("time", Ty::Int),
    ("object", Ty::Fields(&[("type", Ty::Str), ("uuid", Ty::Str), ("href", Ty::Str)])),
];

/// The fields [`map_task`] builds.
pub const TASK_FIELDS: &[Field] = &[
    ("properties", Ty::Fields(&[("name", Ty::Str), ("description", Ty::Str), ("type", Ty::Str)])),
    ("start", Ty::Int),
    ("end", Ty::Int),
    ("status", Ty::OneOf(&["pending", "success", "failure", "interrupted"])),
    ("xapiStatus", Ty::OneOf(&["pending", "success", "failure", "cancelling", "cancelled"])),
    ("progress", Ty::Int),
    ("result", Ty::Object),
    ("error_info", Ty::Strs),
    ("created", Ty::Num),
    ("finished", Ty::Num),
    ("$host", Ty::Uuid),
    ("other_config", Ty::StrMap),
    ("current_operations", Ty::StrMap),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_bodies_as_xo6_parses_them() {
        let b = "value: 0.950000\nconfig:\n<variable>\n\t<name value=\"cpu_usage\"/>\n\t<alarm_trigger_level value=\"0.9\"/>\n</variable>\n";
        assert_eq!(alarm_body(b), json!({"value": "95.0", "name": "cpu_usage"}));
        assert_eq!(
            alarm_body("value: NaN\nconfig:\n<variable>\n<name value=\"mem\"/>"),
            json!({"value": "NaN", "name": "mem"})
        );
        let bond = "The status of the eth0+eth1 bond is: 1/2 up";
        assert_eq!(alarm_body(bond), json!({"name": bond}));
        assert_eq!(collection_of("VM-snapshot"), "vm-snapshots");
    }
}
