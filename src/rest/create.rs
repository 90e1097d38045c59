//! `POST /rest/v0/vdis`, `/vbds`, `/vifs` and `/srs`: new objects, made by XAPI's constructors and awaited.
//!
//! The body is checked whole before any XAPI call: unknown keys, wrong types and missing required keys answer 400
//! naming the accepted ones; ids in the body are resolved (404 naming the field when they name nothing). The answer
//! is 201 with `Location` and `{"id": <uuid>}` (XO 6's shape). A new VBD or VIF of a running VM is plugged, as XO
//! does (a VIF unless `currently_attached` is false); if that fails, the new device is destroyed and XAPI's error answered, so nothing half-made stays.

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::xapi::Transport;
use serde_json::{json, Map, Value};

/// A body key: its name, JSON type, and whether it is required.
type Key = (&'static str, Kind, bool);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    /// A non-negative integer (JSON numbers with no fraction).
    Size,
    /// An array of strings.
    Strings,
    /// An object of strings.
    StrMap,
}

/// `POST /rest/v0/vdis` (XO 6's `CreateVdi`).
const VDI_KEYS: &[Key] = &[
    ("srId", Kind::Str, true),
    ("virtual_size", Kind::Size, true),
    ("name_label", Kind::Str, false),
    ("name_description", Kind::Str, false),
    ("tags", Kind::Strings, false),
    ("type", Kind::Str, false),
    ("read_only", Kind::Bool, false),
    ("sharable", Kind::Bool, false),
    ("xenstore_data", Kind::StrMap, false),
    ("other_config", Kind::StrMap, false),
    ("sm_config", Kind::StrMap, false),
];

/// `POST /rest/v0/vbds` (XO 6's `CreateVbd`).
const VBD_KEYS: &[Key] = &[
    ("VM", Kind::Str, true),
    ("VDI", Kind::Str, true),
    ("userdevice", Kind::Str, false),
    ("bootable", Kind::Bool, false),
    ("mode", Kind::Str, false),
    ("type", Kind::Str, false),
    ("empty", Kind::Bool, false),
    ("unpluggable", Kind::Bool, false),
    ("other_config", Kind::StrMap, false),
    ("qos_algorithm_type", Kind::Str, false),
    ("qos_algorithm_params", Kind::StrMap, false),
];

/// `POST /rest/v0/vifs` (XO 6's `CreateVif`).
const VIF_KEYS: &[Key] = &[
    ("vmId", Kind::Str, true),
    ("networkId", Kind::Str, true),
    ("device", Kind::Str, false),
    ("MAC", Kind::Str, false),
    ("MTU", Kind::Size, false),
    ("locking_mode", Kind::Str, false),
    ("ipv4_allowed", Kind::Strings, false),
    ("ipv6_allowed", Kind::Strings, false),
    ("other_config", Kind::StrMap, false),
    ("qos_algorithm_type", Kind::Str, false),
    ("qos_algorithm_params", Kind::StrMap, false),
    // XO's default: plug the VIF of a running VM; false leaves it unplugged.
    ("currently_attached", Kind::Bool, false),
];

/// `POST /rest/v0/srs` (XO 6's `CreateSrBody`: `SR.create`'s parameters but `host`, `type`, `physical_size` and
/// `shared`, which are `hostId`, `SR_type`, `size` and, here, an optional `shared`).
const SR_KEYS: &[Key] = &[
    ("name_label", Kind::Str, true),
    ("SR_type", Kind::Str, true),
    ("hostId", Kind::Str, true),
    ("device_config", Kind::StrMap, false),
    ("name_description", Kind::Str, false),
    ("content_type", Kind::Str, false),
    ("sm_config", Kind::StrMap, false),
    ("size", Kind::Size, false),
    ("shared", Kind::Bool, false),
];

/// The SR types XO 6 lists (`CreateSrBody.SR_type`); XAPI answers `SR_UNKNOWN_DRIVER` for one its hosts lack.
const SR_TYPES: &[&str] = &[
    "cephfs",
    "dummy",
    "ext",
    "file",
    "glusterfs",
    "hba",
    "iso",
    "largeblock",
    "linstor",
    "lvm",
    "lvmofcoe",
    "lvmohba",
    "lvmoiscsi",
    "moosefs",
    "nfs",
    "shm",
    "smb",
    "udev",
    "xfs",
    "zfs",
];

/// Types whose storage is reached over the network, so shared by default (an ISO library when its location is
/// not a local path).
const SHARED_TYPES: &[&str] =
    &["cephfs", "glusterfs", "hba", "linstor", "lvmofcoe", "lvmohba", "lvmoiscsi", "moosefs", "nfs", "smb"];

/// VDI types a client may create (`vdi_type` of XAPI's datamodel, minus those XAPI makes itself).
const VDI_TYPES: &[&str] =
    &["user", "system", "ephemeral", "crashdump", "suspend", "metadata", "redo_log", "rrd", "pvs_cache"];

/// The keys a creation's body takes.
fn keys_of(coll: &str) -> Option<&'static [Key]> {
    match coll {
        "vdis" => Some(VDI_KEYS),
        "vbds" => Some(VBD_KEYS),
        "vifs" => Some(VIF_KEYS),
        "srs" => Some(SR_KEYS),
        _ => None,
    }
}

/// The JSON Schema of a creation's body in a collection (for the OpenAPI document): the table it is checked against.
pub fn schema(coll: &str) -> Option<Value> {
    let keys = keys_of(coll)?;
    let properties: Map<String, Value> = keys
        .iter()
        .map(|(name, kind, _)| {
            let schema = match kind {
                Kind::Str => json!({ "type": "string" }),
                Kind::Bool => json!({ "type": "boolean" }),
                Kind::Size => json!({ "type": "integer", "minimum": 0 }),
                Kind::Strings => json!({ "type": "array", "items": { "type": "string" } }),
                Kind::StrMap => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
            };
            (name.to_string(), schema)
        })
        .collect();
    let required: Vec<&str> = keys.iter().filter(|(_, _, r)| *r).map(|(name, _, _)| *name).collect();
    Some(json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false }))
}

/// `POST /rest/v0/<collection>`.
pub async fn create<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
) -> Result<Reply, ApiError> {
    let Some(keys) = keys_of(coll.name) else {
        return Err(ApiError::new(405, format!("{} cannot be created here", coll.name)));
    };
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("the body must be a JSON object: {e}")))?;
    let body = checked(&body, keys)?;
    let made = match coll.name {
        "vdis" => vdi(ctx, &caller, &body).await?,
        "vbds" => vbd(ctx, &caller, &body).await?,
        "srs" => sr(ctx, &caller, &body).await?,
        _ => vif(ctx, &caller, &body).await?,
    };
    Ok(Reply::json(201, &json!({ "id": made })).with_header("location", format!("/rest/v0/{}/{made}", coll.name)))
}

/// The body as an object whose keys are among `keys`, of their kinds, with the required ones present.
fn checked(body: &Value, keys: &[Key]) -> Result<Map<String, Value>, ApiError> {
    let accepted = || json!({ "accepted": keys.iter().map(|(k, _, _)| *k).collect::<Vec<_>>() });
    let Value::Object(m) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object").with_data(accepted()));
    };
    for (k, v) in m {
        let Some((_, kind, _)) = keys.iter().find(|(name, _, _)| name == k) else {
            return Err(ApiError::bad_request(format!("unknown key {k:?}")).with_data(accepted()));
        };
        let fits = match kind {
            Kind::Str => v.is_string(),
            Kind::Bool => v.is_boolean(),
            Kind::Size => v.is_u64() || v.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0 && f < 9.0e18),
            Kind::Strings => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Kind::StrMap => v.as_object().is_some_and(|o| o.values().all(Value::is_string)),
        };
        if !fits {
            let want = match kind {
                Kind::Str => "a string",
                Kind::Bool => "a boolean",
                Kind::Size => "a non-negative integer",
                Kind::Strings => "an array of strings",
                Kind::StrMap => "an object of strings",
            };
            return Err(ApiError::bad_request(format!("{k} must be {want}")).with_data(accepted()));
        }
    }
    if let Some((k, _, _)) = keys.iter().find(|(k, _, required)| *required && !m.contains_key(*k)) {
        return Err(ApiError::bad_request(format!("{k} is required")).with_data(accepted()));
    }
    Ok(m.clone())
}

/// An integer key as u64 (checked by [`checked`]).
fn size(body: &Map<String, Value>, k: &str) -> Option<u64> {
    body.get(k).and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
}

/// The ref of the object of collection `coll` that body key `key` names; 404 naming the key if none.
async fn referenced<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    coll: &str,
    body: &Map<String, Value>,
    key: &str,
) -> Result<(String, Value), ApiError> {
    let c = objects::collection(coll).ok_or_else(|| ApiError::internal(format!("collection {coll} missing")))?;
    let id = body.get(key).and_then(Value::as_str).unwrap_or_default();
    find(ctx, caller, c, id).await.map_err(|e| {
        if e.status == 404 {
            ApiError::not_found(format!("{key}: no such {} {id}", c.xo_type)).with_data(json!({ "key": key, "id": id }))
        } else {
            e
        }
    })
}

fn text(body: &Map<String, Value>, k: &str, default: &str) -> Value {
    json!(body.get(k).and_then(Value::as_str).unwrap_or(default))
}

fn flag(body: &Map<String, Value>, k: &str, default: bool) -> Value {
    json!(body.get(k).and_then(Value::as_bool).unwrap_or(default))
}

fn strings(body: &Map<String, Value>, k: &str) -> Value {
    body.get(k).cloned().unwrap_or_else(|| json!({}))
}

fn uuid_of(v: Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

async fn vdi<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, body: &Map<String, Value>) -> Result<String, ApiError> {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("user");
    if !VDI_TYPES.contains(&kind) {
        return Err(ApiError::bad_request(format!("type must be one of {VDI_TYPES:?}")));
    }
    let virtual_size = size(body, "virtual_size").unwrap_or(0);
    if virtual_size == 0 {
        return Err(ApiError::bad_request("virtual_size must be at least 1 byte"));
    }
    let (sr, _) = referenced(ctx, caller, "srs", body, "srId").await?;
    let s = json!(caller.session);
    let record = json!({
        "name_label": text(body, "name_label", ""),
        "name_description": text(body, "name_description", ""),
        "SR": sr,
        "virtual_size": virtual_size,
        "type": kind,
        "sharable": flag(body, "sharable", false),
        "read_only": flag(body, "read_only", false),
        "other_config": strings(body, "other_config"),
        "xenstore_data": strings(body, "xenstore_data"),
        "sm_config": strings(body, "sm_config"),
        "tags": body.get("tags").cloned().unwrap_or_else(|| json!([])),
    });
    let vdi = ctx.xapi.call("VDI.create", &[s.clone(), record]).await.map_err(|e| e.to_api_error())?;
    ctx.xapi.call("VDI.get_uuid", &[s, vdi]).await.map(uuid_of).map_err(|e| e.to_api_error())
}

/// `SR.create` as a task, awaited: XAPI makes the SR, a PBD on the host (on every host when shared) and plugs them;
/// a driver's refusal leaves nothing (XAPI removes the records it made).
async fn sr<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, body: &Map<String, Value>) -> Result<String, ApiError> {
    let kind = body.get("SR_type").and_then(Value::as_str).unwrap_or_default();
    if !SR_TYPES.contains(&kind) {
        return Err(ApiError::bad_request(format!("SR_type must be one of {SR_TYPES:?}")));
    }
    let (host, _) = referenced(ctx, caller, "hosts", body, "hostId").await?;
    let config = strings(body, "device_config");
    let remote_iso = kind == "iso" && !config["location"].as_str().unwrap_or("/").starts_with('/');
    let shared = body.get("shared").and_then(Value::as_bool).unwrap_or(SHARED_TYPES.contains(&kind) || remote_iso);
    let content = text(body, "content_type", if kind == "iso" { "iso" } else { "user" });
    let s = json!(caller.session);
    let args = [
        json!(host),
        config,
        json!(size(body, "size").unwrap_or(0)),
        text(body, "name_label", ""),
        text(body, "name_description", ""),
        json!(kind),
        content,
        json!(shared),
        strings(body, "sm_config"),
    ];
    let result = super::plans::task(ctx, &s, "SR.create", &args).await.map_err(|e| e.to_api_error())?;
    let made = result.trim_start_matches("<value>").trim_end_matches("</value>").to_string();
    ctx.xapi.call("SR.get_uuid", &[s, json!(made)]).await.map(uuid_of).map_err(|e| e.to_api_error())
}

async fn vbd<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, body: &Map<String, Value>) -> Result<String, ApiError> {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("Disk");
    if !matches!(kind, "Disk" | "CD" | "Floppy") {
        return Err(ApiError::bad_request("type must be one of \"Disk\", \"CD\", \"Floppy\""));
    }
    let mode = body.get("mode").and_then(Value::as_str).unwrap_or(if kind == "CD" { "RO" } else { "RW" });
    if !matches!(mode, "RO" | "RW") {
        return Err(ApiError::bad_request("mode must be \"RO\" or \"RW\""));
    }
    let (vm, vm_rec) = referenced(ctx, caller, "vms", body, "VM").await?;
    let (vdi, _) = referenced(ctx, caller, "vdis", body, "VDI").await?;
    let s = json!(caller.session);
    let record = json!({
        "VM": vm,
        "VDI": vdi,
        "userdevice": text(body, "userdevice", "autodetect"),
        "bootable": flag(body, "bootable", false),
        "mode": mode,
        "type": kind,
        "empty": flag(body, "empty", false),
        "unpluggable": flag(body, "unpluggable", true),
        "other_config": strings(body, "other_config"),
        "qos_algorithm_type": text(body, "qos_algorithm_type", ""),
        "qos_algorithm_params": strings(body, "qos_algorithm_params"),
    });
    let vbd = ctx.xapi.call("VBD.create", &[s.clone(), record]).await.map_err(|e| e.to_api_error())?;
    plugged(ctx, &s, "VBD", &vbd, &vm_rec).await?;
    ctx.xapi.call("VBD.get_uuid", &[s, vbd]).await.map(uuid_of).map_err(|e| e.to_api_error())
}

async fn vif<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, body: &Map<String, Value>) -> Result<String, ApiError> {
    let device = body.get("device").and_then(Value::as_str);
    if device.is_some_and(|d| d.is_empty() || d.len() > 3 || !d.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::bad_request("device must be a decimal number (\"0\", \"1\", …)"));
    }
    let mac = body.get("MAC").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
    if !mac.is_empty() && !valid_mac(&mac) {
        return Err(ApiError::bad_request("MAC must be six pairs of hex digits separated by colons"));
    }
    let locking = body.get("locking_mode").and_then(Value::as_str).unwrap_or("network_default");
    if !matches!(locking, "network_default" | "locked" | "unlocked" | "disabled") {
        return Err(ApiError::bad_request("locking_mode must be network_default, locked, unlocked or disabled"));
    }
    let (vm, vm_rec) = referenced(ctx, caller, "vms", body, "vmId").await?;
    let (network, net_rec) = referenced(ctx, caller, "networks", body, "networkId").await?;
    let s = json!(caller.session);
    // The lowest device number free on the VM (as XO picks it from `VM.get_allowed_VIF_devices`).
    let device = match device {
        Some(d) => d.to_string(),
        None => {
            let mut used = Vec::new();
            for vif in vm_rec["VIFs"].as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Ok(d) = ctx.xapi.call("VIF.get_device", &[s.clone(), vif.clone()]).await {
                    used.push(d.as_str().unwrap_or_default().to_string());
                }
            }
            (0u32..).map(|n| n.to_string()).find(|n| !used.contains(n)).unwrap_or_default()
        }
    };
    // XAPI makes the MAC from the VM's `mac_seed` when given none; a VM without one gets a random locally
    // administered address here.
    let mac =
        if mac.is_empty() && vm_rec["other_config"].get("mac_seed").is_none() { random_mac(ctx.now) } else { mac };
    let mtu = size(body, "MTU").or_else(|| net_rec["MTU"].as_u64()).unwrap_or(1500);
    let mut record = json!({
        "device": device,
        "network": network,
        "VM": vm,
        "MAC": mac,
        "MTU": mtu,
        "other_config": strings(body, "other_config"),
        "qos_algorithm_type": text(body, "qos_algorithm_type", ""),
        "qos_algorithm_params": strings(body, "qos_algorithm_params"),
        "locking_mode": locking,
    });
    for k in ["ipv4_allowed", "ipv6_allowed"] {
        if let Some(v) = body.get(k) {
            record[k] = v.clone();
        }
    }
    let vif = ctx.xapi.call("VIF.create", &[s.clone(), record]).await.map_err(|e| e.to_api_error())?;
    if flag(body, "currently_attached", true) == json!(true) {
        plugged(ctx, &s, "VIF", &vif, &vm_rec).await?;
    }
    ctx.xapi.call("VIF.get_uuid", &[s, vif]).await.map(uuid_of).map_err(|e| e.to_api_error())
}

/// Plugs a new device of a running VM; if that fails, destroys it and answers XAPI's error.
async fn plugged<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    class: &str,
    dev: &Value,
    vm: &Value,
) -> Result<(), ApiError> {
    if vm["power_state"] != json!("Running") {
        return Ok(());
    }
    if let Err(e) = ctx.xapi.call(&format!("{class}.plug"), &[s.clone(), dev.clone()]).await {
        let _ = ctx.xapi.call(&format!("{class}.destroy"), &[s.clone(), dev.clone()]).await;
        return Err(e.to_api_error());
    }
    Ok(())
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A locally administered unicast MAC address from the random source the host gives guests.
fn random_mac(now: u64) -> String {
    let mut b = [0u8; 6];
    if getrandom::getrandom(&mut b).is_err() {
        b = now.to_le_bytes()[..6].try_into().unwrap_or([0; 6]);
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_whole() {
        assert!(checked(&json!({"srId": "x", "virtual_size": 1024}), VDI_KEYS).is_ok());
        assert!(checked(&json!({"srId": "x", "virtual_size": 1024.0}), VDI_KEYS).is_ok());
        let e = checked(&json!({"srId": "x"}), VDI_KEYS).unwrap_err();
        assert!(e.message.contains("virtual_size is required"));
        let e = checked(&json!({"srId": "x", "virtual_size": 1, "size": 2}), VDI_KEYS).unwrap_err();
        assert!(e.message.contains("unknown key \"size\""));
        assert!(e.data.unwrap()["accepted"].as_array().unwrap().contains(&json!("name_label")));
        assert!(checked(&json!({"srId": "x", "virtual_size": -1}), VDI_KEYS).is_err());
        assert!(checked(&json!({"srId": "x", "virtual_size": 1.5}), VDI_KEYS).is_err());
        assert!(checked(&json!({"VM": "a", "VDI": "b", "bootable": "yes"}), VBD_KEYS).is_err());
        assert!(checked(&json!({"vmId": "a", "networkId": "b", "other_config": {"k": 1}}), VIF_KEYS).is_err());
        assert!(checked(&json!([]), VIF_KEYS).is_err());
        assert!(valid_mac("02:00:00:aa:bb:cc") && !valid_mac("02:00:00:aa:bb") && !valid_mac("02-00-00-aa-bb-cc"));
        let m = random_mac(0);
        assert!(valid_mac(&m));
        assert_eq!(u8::from_str_radix(&m[..2], 16).unwrap() & 0x03, 0x02, "locally administered, unicast");
    }
}
