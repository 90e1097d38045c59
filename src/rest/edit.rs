//! Changing objects: `PATCH /rest/v0/<collection>/<id>` (names, descriptions and tags everywhere XAPI has them; for
//! VMs, VDIs and VIFs also what XO 6 edits: VCPUs, memory, HA, affinity, blocked operations, xenstore data, a disk's
//! size, a VIF's locking and rate limit) and `PUT`/`DELETE /rest/v0/<collection>/<id>/tags/<tag>`.
//!
//! Every XAPI call is awaited before the answer (XO answers PATCH before XAPI has, and loses its failures): 204 only
//! when all succeeded; otherwise XAPI's error, saying which fields were applied and which not. The body is checked
//! whole before any call.

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Map, Value};

/// How a PATCH field's value is checked before any call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    /// An array of strings.
    Strings,
    /// A positive integer (a JSON number without fraction, or a string of digits).
    Count,
    /// A non-negative integer.
    Natural,
    /// A non-negative integer or null.
    NaturalOrNull,
    Bool,
    /// A uuid string or null.
    IdOrNull,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// An object of strings or nulls (null: remove the key).
    StrMap,
    /// An object of booleans, strings or nulls (XO's `blockedOperations`).
    Blocks,
    /// An array of IPv4 (`false`: IPv6) addresses.
    Addresses(bool),
    /// A string or null.
    StrOrNull,
    /// A positive integer or null.
    CountOrNull,
    /// An array of non-negative integers.
    Naturals,
    /// One of these numbers.
    OneOfNumbers(&'static [u64]),
}

/// One field `PATCH` may set: its name in the body and its kind. Applied in table order.
type Field = (&'static str, Kind);

const NAMES: &[Field] = &[("name_label", Kind::Str), ("name_description", Kind::Str), ("tags", Kind::Strings)];

/// XO 6's `UpdateVmRequestBody` (the fields the edge carries out) and the legacy names.
const VM_FIELDS: &[Field] = &[
    ("name_label", Kind::Str),
    ("nameLabel", Kind::Str),
    ("name_description", Kind::Str),
    ("nameDescription", Kind::Str),
    ("tags", Kind::Strings),
    ("cpusStaticMax", Kind::Count),
    ("cpus", Kind::Count),
    ("memoryStaticMax", Kind::Count),
    ("memory", Kind::Count),
    ("memoryMin", Kind::Count),
    ("memoryMax", Kind::Count),
    ("autoPoweron", Kind::Bool),
    ("highAvailability", Kind::OneOf(&["restart", "best-effort", ""])),
    ("startDelay", Kind::Natural),
    ("affinityHost", Kind::IdOrNull),
    ("blockedOperations", Kind::Blocks),
    ("xenStoreData", Kind::StrMap),
    ("coresPerSocket", Kind::CountOrNull),
    ("cpuCap", Kind::NaturalOrNull),
    ("cpuWeight", Kind::NaturalOrNull),
    ("cpuMask", Kind::Naturals),
    ("notes", Kind::StrOrNull),
    ("PV_args", Kind::Str),
    ("hasVendorDevice", Kind::Bool),
    ("expNestedHvm", Kind::Bool),
    ("nestedVirt", Kind::Bool),
    ("nicType", Kind::StrOrNull),
    ("vga", Kind::OneOf(&["std", "cirrus"])),
    ("videoram", Kind::OneOfNumbers(&[1, 2, 4, 8, 16])),
    ("viridian", Kind::Bool),
    ("secureBoot", Kind::Bool),
    ("hvmBootFirmware", Kind::StrOrNull),
    ("suspendSr", Kind::IdOrNull),
    ("virtualizationMode", Kind::OneOf(&["pv", "hvm"])),
    ("uefiMode", Kind::OneOf(&["setup", "user"])),
];

/// XO 6's `UpdateVdi`: names, tags and `size` (bytes, grow only).
const VDI_FIELDS: &[Field] =
    &[("name_label", Kind::Str), ("name_description", Kind::Str), ("tags", Kind::Strings), ("size", Kind::Count)];

/// XO 6's `UpdateVif`.
const VIF_FIELDS: &[Field] = &[
    ("lockingMode", Kind::OneOf(&["network_default", "locked", "unlocked", "disabled"])),
    ("allowedIpv4Addresses", Kind::Addresses(true)),
    ("allowedIpv6Addresses", Kind::Addresses(false)),
    ("rateLimit", Kind::NaturalOrNull),
    ("txChecksumming", Kind::Bool),
];

/// What `PATCH` may set on objects of an XAPI class.
fn editable_fields(class: &str) -> &'static [Field] {
    match class {
        "VM" => VM_FIELDS,
        "VDI" => VDI_FIELDS,
        "VIF" => VIF_FIELDS,
        "SR" | "network" | "host" | "pool" => NAMES,
        _ => &[],
    }
}

/// The names of the fields `PATCH` may set on objects of an XAPI class.
pub fn editable(class: &str) -> Vec<&'static str> {
    editable_fields(class).iter().map(|(name, _)| *name).collect()
}

/// The JSON Schema of a `PATCH` body on objects of an XAPI class (for the OpenAPI document): the same table the
/// body is checked against.
pub fn schema(class: &str) -> Value {
    let integer =
        json!({ "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "string", "pattern": "^[0-9]+$" }] });
    let nullable = |s: Value| json!({ "anyOf": [s, { "type": "null" }] });
    let properties: Map<String, Value> = editable_fields(class)
        .iter()
        .map(|(name, kind)| {
            let schema = match kind {
                Kind::Str => json!({ "type": "string" }),
                Kind::Strings => json!({ "type": "array", "items": { "type": "string" } }),
                Kind::Count | Kind::Natural => integer.clone(),
                Kind::NaturalOrNull | Kind::CountOrNull => nullable(integer.clone()),
                Kind::Bool => json!({ "type": "boolean" }),
                Kind::IdOrNull => json!({ "type": ["string", "null"], "description": "a uuid, or null for none" }),
                Kind::OneOf(values) => json!({ "type": "string", "enum": values }),
                Kind::StrMap => json!({ "type": "object", "additionalProperties": { "type": ["string", "null"] },
                    "description": "null removes the key" }),
                Kind::Blocks => {
                    json!({ "type": "object", "additionalProperties": { "type": ["boolean", "string", "null"] } })
                }
                Kind::Addresses(v4) => json!({ "type": "array", "items": { "type": "string",
                    "format": if *v4 { "ipv4" } else { "ipv6" } } }),
                Kind::StrOrNull => json!({ "type": ["string", "null"] }),
                Kind::Naturals => json!({ "type": "array", "items": integer.clone() }),
                Kind::OneOfNumbers(values) => json!({ "type": "integer", "enum": values }),
            };
            (name.to_string(), schema)
        })
        .collect();
    json!({ "type": "object", "properties": properties, "additionalProperties": false })
}

fn nothing_editable(coll: &Collection) -> ApiError {
    ApiError::new(405, format!("{} cannot be edited here", coll.name))
}

fn integer(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e18).map(|f| f as u64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn fits(kind: Kind, v: &Value) -> bool {
    match kind {
        Kind::Str => v.is_string(),
        Kind::Strings => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Kind::Count => integer(v).is_some_and(|n| n > 0),
        Kind::Natural => integer(v).is_some(),
        Kind::NaturalOrNull => v.is_null() || integer(v).is_some(),
        Kind::Bool => v.is_boolean(),
        Kind::IdOrNull => v.is_null() || v.as_str().is_some_and(super::collections::plausible_id),
        Kind::OneOf(values) => v.as_str().is_some_and(|s| values.contains(&s)),
        Kind::StrMap => v.as_object().is_some_and(|o| o.values().all(|x| x.is_string() || x.is_null())),
        Kind::Blocks => {
            v.as_object().is_some_and(|o| o.values().all(|x| x.is_string() || x.is_boolean() || x.is_null()))
        }
        Kind::StrOrNull => v.is_null() || v.is_string(),
        Kind::CountOrNull => v.is_null() || integer(v).is_some_and(|n| n > 0),
        Kind::Naturals => v.as_array().is_some_and(|a| a.iter().all(|x| integer(x).is_some())),
        Kind::OneOfNumbers(values) => integer(v).is_some_and(|n| values.contains(&n)),
        Kind::Addresses(v4) => v.as_array().is_some_and(|a| {
            a.iter().all(|x| {
                x.as_str().is_some_and(|s| {
                    if v4 {
                        s.parse::<std::net::Ipv4Addr>().is_ok()
                    } else {
                        s.parse::<std::net::Ipv6Addr>().is_ok()
                    }
                })
            })
        }),
    }
}

fn want(kind: Kind) -> String {
    match kind {
        Kind::Str => "a string".into(),
        Kind::Strings => "an array of strings".into(),
        Kind::Count => "a positive integer".into(),
        Kind::Natural => "a non-negative integer".into(),
        Kind::NaturalOrNull => "a non-negative integer or null".into(),
        Kind::Bool => "a boolean".into(),
        Kind::IdOrNull => "an id or null".into(),
        Kind::OneOf(values) => format!("one of {values:?}"),
        Kind::StrMap => "an object of strings or nulls".into(),
        Kind::Blocks => "an object of booleans, strings or nulls".into(),
        Kind::StrOrNull => "a string or null".into(),
        Kind::CountOrNull => "a positive integer or null".into(),
        Kind::Naturals => "an array of non-negative integers".into(),
        Kind::OneOfNumbers(values) => format!("one of {values:?}"),
        Kind::Addresses(true) => "an array of IPv4 addresses".into(),
        Kind::Addresses(false) => "an array of IPv6 addresses".into(),
    }
}

/// Checks a PATCH body: a JSON object of editable fields with values of their kinds, in table order.
fn fields(coll: &Collection, body: &[u8]) -> Result<Vec<(&'static str, Value)>, ApiError> {
    let table = editable_fields(coll.class);
    if table.is_empty() {
        return Err(nothing_editable(coll));
    }
    let allowed = editable(coll.class);
    let object: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(ApiError::bad_request("the body must be a JSON object")),
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        Err(e) => return Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    };
    let unknown: Vec<&String> = object.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "cannot edit {} of {}: the editable fields are {}",
            unknown.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "),
            coll.name,
            allowed.join(", ")
        ))
        .with_data(json!({ "unknown": unknown, "editable": allowed })));
    }
    let mut out = Vec::new();
    for (field, kind) in table {
        let Some(value) = object.get(*field) else { continue };
        if !fits(*kind, value) {
            return Err(ApiError::bad_request(format!("{field} must be {}", want(*kind))));
        }
        // xenstore keys stay inside the VM's `vm-data/` (a client's own prefix is stripped, as XO does).
        if *field == "xenStoreData" && value.as_object().into_iter().flatten().any(|(k, _)| xenstore_key(k).is_none()) {
            return Err(ApiError::bad_request("xenStoreData keys must not be empty, hold \"..\" or start with /"));
        }
        out.push((*field, value.clone()));
    }
    Ok(out)
}

/// `PATCH /rest/v0/<collection>/<id>`: every field's XAPI calls awaited in order; 204 once all are done.
pub async fn patch<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let fields = fields(coll, &req.body)?;
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    let session = json!(caller.session);
    // Checks that need the record, still before any write.
    for (field, value) in &fields {
        if *field == "size" && integer(value) < rec["virtual_size"].as_u64() {
            return Err(ApiError::bad_request(format!(
                "size can only grow: the VDI has {} bytes",
                rec["virtual_size"].as_u64().unwrap_or(0)
            )));
        }
    }
    let mut host = None;
    if let Some((_, Value::String(h))) = fields.iter().find(|(f, _)| *f == "affinityHost") {
        let hosts = crate::objects::collection("hosts").ok_or_else(|| ApiError::internal("hosts missing"))?;
        host = Some(find(ctx, &caller, hosts, h).await?.0);
    }
    let mut suspend_sr = None;
    if let Some((_, Value::String(sr))) = fields.iter().find(|(f, _)| *f == "suspendSr") {
        let srs = crate::objects::collection("srs").ok_or_else(|| ApiError::internal("srs missing"))?;
        suspend_sr = Some(find(ctx, &caller, srs, sr).await?.0);
    }
    let target = Target {
        class: coll.class,
        reference: &reference,
        session: &session,
        host: host.as_deref(),
        suspend_sr: suspend_sr.as_deref(),
    };
    let mut applied: Vec<&str> = Vec::new();
    for (i, (field, value)) in fields.iter().enumerate() {
        if let Err(e) = apply(ctx, &target, field, value).await {
            let not_applied: Vec<&str> = fields[i..].iter().map(|(f, _)| *f).collect();
            let mut error = e.to_api_error();
            let mut data = match error.data.take() {
                Some(Value::Object(d)) => d,
                _ => Map::new(),
            };
            data.insert("applied".into(), json!(applied));
            data.insert("notApplied".into(), json!(not_applied));
            error.message = format!("{field} was not changed: {}", error.message);
            return Err(error.with_data(Value::Object(data)));
        }
        applied.push(field);
    }
    Ok(Reply::no_content())
}

/// What a field is applied to.
struct Target<'a> {
    class: &'static str,
    reference: &'a str,
    session: &'a Value,
    /// `affinityHost`'s ref, resolved beforehand.
    host: Option<&'a str>,
    /// `suspendSr`'s ref, resolved beforehand.
    suspend_sr: Option<&'a str>,
}

/// Applies one `PATCH /vms` field to the VM `vm` (create_vm's settings); `host`: `affinityHost`'s ref.
pub(crate) async fn apply_vm<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    vm: &str,
    field: &str,
    value: &Value,
    host: Option<&str>,
) -> Result<(), XapiError> {
    let target = Target { class: "VM", reference: vm, session: s, host, suspend_sr: None };
    apply(ctx, &target, field, value).await
}

/// The XAPI calls of one field, in order (reading the record where the calls depend on its state).
async fn apply<T: Transport>(ctx: &Ctx<'_, T>, t: &Target<'_>, field: &str, value: &Value) -> Result<(), XapiError> {
    let (class, r, s) = (t.class, t.reference, t.session);
    let call = |method: String, args: Vec<Value>| async move {
        let mut all = vec![s.clone(), json!(r)];
        all.extend(args);
        ctx.xapi.call(&method, &all).await.map(|_| ())
    };
    let set = |name: &str, v: Value| call(format!("{class}.set_{name}"), vec![v]);
    let n = integer(value).unwrap_or(0);
    match field {
        "name_label" | "nameLabel" => set("name_label", value.clone()).await,
        "name_description" | "nameDescription" => set("name_description", value.clone()).await,
        "tags" => set("tags", value.clone()).await,
        "size" => {
            let vm_running = attached_to_running_vm(ctx, s, r).await?;
            let method = if vm_running { "VDI.resize_online" } else { "VDI.resize" };
            call(method.into(), vec![json!(n)]).await
        }
        "cpusStaticMax" => set("VCPUs_max", json!(n)).await,
        "cpus" => {
            let vm = ctx.xapi.call("VM.get_record", &[s.clone(), json!(r)]).await?;
            if vm["power_state"] == "Running" {
                return call("VM.set_VCPUs_number_live".into(), vec![json!(n)]).await;
            }
            if vm["VCPUs_max"].as_u64().is_some_and(|max| n > max) {
                set("VCPUs_max", json!(n)).await?;
            }
            set("VCPUs_at_startup", json!(n)).await
        }
        "memoryStaticMax" | "memory" | "memoryMin" | "memoryMax" => {
            let vm = ctx.xapi.call("VM.get_record", &[s.clone(), json!(r)]).await?;
            let m = |k: &str| vm[k].as_u64().or_else(|| vm[k].as_str().and_then(|x| x.parse().ok())).unwrap_or(0);
            let (smin, smax, dmin, dmax) =
                (m("memory_static_min"), m("memory_static_max"), m("memory_dynamic_min"), m("memory_dynamic_max"));
            let running = vm["power_state"] == "Running";
            match field {
                "memoryStaticMax" => {
                    call(
                        "VM.set_memory_limits".into(),
                        vec![json!(smin.min(n)), json!(n), json!(dmin.min(n)), json!(dmax.min(n))],
                    )
                    .await
                }
                "memory" if !running => {
                    call(
                        "VM.set_memory_limits".into(),
                        vec![json!(smin.min(n)), json!(n.max(smax)), json!(n), json!(n)],
                    )
                    .await
                }
                "memory" => call("VM.set_memory_dynamic_range".into(), vec![json!(n), json!(n)]).await,
                "memoryMin" => call("VM.set_memory_dynamic_range".into(), vec![json!(n), json!(dmax.max(n))]).await,
                _ => call("VM.set_memory_dynamic_range".into(), vec![json!(dmin.min(n)), json!(n)]).await,
            }
        }
        "autoPoweron" => {
            let _ = call("VM.remove_from_other_config".into(), vec![json!("auto_poweron")]).await;
            if value == &json!(true) {
                call("VM.add_to_other_config".into(), vec![json!("auto_poweron"), json!("true")]).await
            } else {
                Ok(())
            }
        }
        "highAvailability" => set("ha_restart_priority", value.clone()).await,
        "startDelay" => set("start_delay", json!(n)).await,
        "affinityHost" => set("affinity", json!(t.host.unwrap_or("OpaqueRef:NULL"))).await,
        "blockedOperations" | "xenStoreData" => {
            let map = if field == "blockedOperations" { "blocked_operations" } else { "xenstore_data" };
            for (k, v) in value.as_object().into_iter().flatten() {
                let key = if map == "xenstore_data" { xenstore_key(k).unwrap_or_default() } else { k.clone() };
                call(format!("VM.remove_from_{map}"), vec![json!(key)]).await?;
                let new = match v {
                    Value::Bool(true) => Some("true".to_string()),
                    Value::String(reason) => Some(reason.clone()),
                    _ => None,
                };
                if let Some(new) = new {
                    call(format!("VM.add_to_{map}"), vec![json!(key), json!(new)]).await?;
                }
            }
            Ok(())
        }
        "coresPerSocket" => {
            update_map(&call, "platform", "cores-per-socket", integer(value).map(|n| n.to_string())).await
        }
        "cpuCap" => update_map(&call, "VCPUs_params", "cap", integer(value).map(|n| n.to_string())).await,
        "cpuWeight" => update_map(&call, "VCPUs_params", "weight", integer(value).map(|n| n.to_string())).await,
        "cpuMask" => {
            let mask: Vec<String> =
                value.as_array().into_iter().flatten().filter_map(integer).map(|n| n.to_string()).collect();
            update_map(&call, "VCPUs_params", "mask", Some(mask.join(","))).await
        }
        "notes" => update_map(&call, "other_config", "xo:notes", value.as_str().map(str::to_string)).await,
        "PV_args" => set("PV_args", value.clone()).await,
        "hasVendorDevice" => set("has_vendor_device", value.clone()).await,
        "expNestedHvm" | "nestedVirt" | "viridian" => {
            let key = match field {
                "expNestedHvm" => "exp-nested-hvm",
                "nestedVirt" => "nested-virt",
                _ => "viridian",
            };
            update_map(&call, "platform", key, (value == &json!(true)).then(|| "true".to_string())).await
        }
        "nicType" => update_map(&call, "platform", "nic_type", value.as_str().map(str::to_string)).await,
        "vga" => update_map(&call, "platform", "vga", value.as_str().map(str::to_string)).await,
        "videoram" => update_map(&call, "platform", "videoram", Some(n.to_string())).await,
        "secureBoot" => update_map(&call, "platform", "secureboot", Some((value == &json!(true)).to_string())).await,
        "hvmBootFirmware" => {
            let firmware = value.as_str().map(str::to_string);
            update_map(&call, "HVM_boot_params", "firmware", firmware.clone()).await?;
            let model = if firmware.as_deref() == Some("uefi") { "qemu-upstream-uefi" } else { "qemu-upstream-compat" };
            update_map(&call, "platform", "device-model", Some(model.to_string())).await
        }
        "suspendSr" => set("suspend_SR", json!(t.suspend_sr.unwrap_or("OpaqueRef:NULL"))).await,
        "virtualizationMode" => set("domain_type", value.clone()).await,
        // Secure Boot's setup mode (its EFI variables cleared) or user mode (reset to the defaults).
        "uefiMode" => call("VM.set_uefi_mode".into(), vec![value.clone()]).await,
        "lockingMode" => set("locking_mode", value.clone()).await,
        "allowedIpv4Addresses" | "allowedIpv6Addresses" => {
            let which = if field == "allowedIpv4Addresses" { "ipv4_allowed" } else { "ipv6_allowed" };
            set(which, value.clone()).await?;
            // XO 6: a non-empty list locks the VIF to its addresses.
            if value.as_array().is_some_and(|a| !a.is_empty()) {
                set("locking_mode", json!("locked")).await?;
            }
            Ok(())
        }
        "rateLimit" => match integer(value) {
            Some(kbps) => {
                set("qos_algorithm_type", json!("ratelimit")).await?;
                set("qos_algorithm_params", json!({ "kbps": kbps.to_string() })).await
            }
            None => {
                set("qos_algorithm_type", json!("")).await?;
                set("qos_algorithm_params", json!({})).await
            }
        },
        "txChecksumming" => {
            call("VIF.remove_from_other_config".into(), vec![json!("ethtool-tx")]).await?;
            let on = if value == &json!(true) { "true" } else { "false" };
            call("VIF.add_to_other_config".into(), vec![json!("ethtool-tx"), json!(on)]).await
        }
        _ => Ok(()),
    }
}

/// Sets (`Some`) or removes (`None`) `key` of the map field `map` (`remove_from_<map>`, then `add_to_<map>`: XAPI has
/// no "put"); a removal of a missing key is no error.
async fn update_map<F, Fut>(call: &F, map: &str, key: &str, value: Option<String>) -> Result<(), XapiError>
where
    F: Fn(String, Vec<Value>) -> Fut,
    Fut: std::future::Future<Output = Result<(), XapiError>>,
{
    call(format!("VM.remove_from_{map}"), vec![json!(key)]).await?;
    match value {
        Some(v) => call(format!("VM.add_to_{map}"), vec![json!(key), json!(v)]).await,
        None => Ok(()),
    }
}

/// The xenstore path of a `xenStoreData` key: below `vm-data/` (the client's own `vm-data/` prefixes stripped), or
/// `None` for a key that would leave it.
fn xenstore_key(key: &str) -> Option<String> {
    let mut k = key;
    while let Some(rest) = k.strip_prefix("vm-data/") {
        k = rest;
    }
    (!k.is_empty() && !k.contains("..") && !k.starts_with('/')).then(|| format!("vm-data/{k}"))
}

/// Whether a VBD has the VDI `vdi` attached to a running VM (then only `VDI.resize_online` may grow it).
async fn attached_to_running_vm<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vdi: &str) -> Result<bool, XapiError> {
    let vbds = ctx.xapi.call("VDI.get_VBDs", &[s.clone(), json!(vdi)]).await?;
    for vbd in vbds.as_array().map(Vec::as_slice).unwrap_or_default() {
        let b = ctx.xapi.call("VBD.get_record", &[s.clone(), vbd.clone()]).await?;
        if b["currently_attached"] == json!(true) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `PUT` (`add`) or `DELETE` (remove) `/rest/v0/<collection>/<id>/tags/<tag>`: idempotent, 204.
pub async fn tag<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
    tag: &str,
    add: bool,
) -> Result<Reply, ApiError> {
    if !editable(coll.class).contains(&"tags") {
        return Err(nothing_editable(coll));
    }
    let (reference, _) = find(ctx, &caller, coll, id).await?;
    let method = format!("{}.{}", coll.class, if add { "add_tags" } else { "remove_tags" });
    ctx.xapi
        .call(&method, &[json!(caller.session), json!(reference), json!(tag)])
        .await
        .map_err(|e| e.to_api_error())?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::collection;

    #[test]
    fn bodies_are_checked_whole() {
        let vms = collection("vms").unwrap();
        let f = fields(vms, br#"{"tags":["a"],"name_label":"x"}"#).unwrap();
        assert_eq!(f.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["name_label", "tags"], "applied in table order");
        assert!(fields(vms, b"{}").unwrap().is_empty());
        let e = fields(vms, br#"{"name_label":"x","power_state":"Halted"}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("\"power_state\"") && e.message.contains("name_label, nameLabel"), "{}", e.message);
        let f =
            fields(vms, br#"{"cpus":4,"cpusStaticMax":"8","memory":1073741824,"blockedOperations":{"destroy":true}}"#);
        let order: Vec<&str> = f.unwrap().iter().map(|(k, _)| *k).collect();
        assert_eq!(order, ["cpusStaticMax", "cpus", "memory", "blockedOperations"], "the maximum before the count");
        assert!(fields(vms, br#"{"cpus":0}"#).unwrap_err().message.contains("positive integer"));
        assert!(fields(vms, br#"{"highAvailability":"always"}"#).is_err());
        assert!(fields(vms, br#"{"affinityHost":null}"#).is_ok());
        assert!(fields(vms, br#"{"affinityHost":"x"}"#).is_err());
        let vifs = collection("vifs").unwrap();
        assert!(fields(vifs, br#"{"allowedIpv4Addresses":["192.0.2.1"]}"#).is_ok());
        assert!(fields(vifs, br#"{"allowedIpv4Addresses":["2001:db8::1"]}"#).is_err());
        assert!(fields(vifs, br#"{"rateLimit":null,"txChecksumming":false}"#).is_ok());
        assert!(fields(collection("vdis").unwrap(), br#"{"size":1.5}"#).is_err());
        assert_eq!(xenstore_key("role").as_deref(), Some("vm-data/role"));
        assert_eq!(xenstore_key("vm-data/vm-data/a/b").as_deref(), Some("vm-data/a/b"));
        for bad in ["", "vm-data/", "../x", "a/../b", "/etc"] {
            assert_eq!(xenstore_key(bad), None, "{bad}");
        }
        assert_eq!(fields(vms, br#"{"tags":"a"}"#).unwrap_err().message, "tags must be an array of strings");
        assert_eq!(fields(vms, br#"{"tags":[1]}"#).unwrap_err().status, 400);
        assert_eq!(fields(vms, br#"{"name_label":null}"#).unwrap_err().message, "name_label must be a string");
        assert_eq!(fields(vms, b"[]").unwrap_err().message, "the body must be a JSON object");
        assert_eq!(fields(vms, b"").unwrap_err().message, "the body must be a JSON object");
        assert!(fields(vms, b"{").unwrap_err().message.starts_with("the body is not JSON"));
        assert_eq!(fields(collection("vbds").unwrap(), b"{}").unwrap_err().status, 405);
    }
}
