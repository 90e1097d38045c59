//! The XO shapes of networks, VBDs, VIFs, PIFs, messages and XAPI tasks.

use super::{common, current_operations, num, timestamp, Ctx};
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
