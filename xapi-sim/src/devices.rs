//! A VM's devices: `VBD.create/plug/unplug/destroy` and `VIF.create/plug/unplug/destroy`, with XAPI's checks.
//!
//! Sources: `ocaml/xapi/xapi_vbd.ml` (`create`, `destroy`), `xapi_vbd_helpers.ml` (`valid_operations`: plug and
//! unplug need a running VM, a detached or attached device, an unpluggable drive), `xapi_vif_helpers.ml` (`create`,
//! `destroy`, `valid_operations`). Hot-plug is modelled as immediate: the guest always has its PV drivers. The
//! simulator has no `VBD_metrics`/`VIF_metrics` classes (deprecated in XAPI's datamodel), so `metrics` stays null.

use crate::api::{arg_str, bad_power_state, bool_of, obj, str_of, R};
use crate::db::Db;
use crate::schema::{self, Fields};
use crate::sim::XapiError;
use crate::value::Value;

/// The field `k` of a constructor's record argument.
fn field<'a>(m: &'a [(String, Value)], k: &str) -> Option<&'a Value> {
    m.iter().find(|(key, _)| key == k).map(|(_, v)| v)
}

/// A record argument's fields, each coerced to the shape of the class's default; the `required` ones must be there
/// (XAPI's unmarshalling of a record without a default: `FIELD_TYPE_ERROR`).
fn record(class: &str, arg: &Value, required: &[&str]) -> R<Fields> {
    let Value::Map(m) = arg else {
        return Err(XapiError::new("FIELD_TYPE_ERROR", &["args"]));
    };
    let defaults = schema::defaults(class);
    let mut f = Fields::new();
    for k in required {
        if field(m, k).is_none() {
            return Err(XapiError::new("FIELD_TYPE_ERROR", &[k]));
        }
    }
    for (k, v) in m {
        let Some(d) = defaults.get(k) else { continue };
        let value = match d {
            Value::Bool(_) => Value::Bool(v.as_bool().ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &[k]))?),
            Value::Int(_) => Value::Int(
                v.as_i64()
                    .or_else(|| arg_str(v).parse().ok())
                    .ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &[k]))?,
            ),
            Value::Str(_) => Value::str(arg_str(v)),
            Value::Array(_) => {
                Value::Array(v.as_array().unwrap_or(&[]).iter().map(|x| Value::str(arg_str(x))).collect())
            }
            Value::Map(_) => {
                Value::Map(v.as_map().unwrap_or(&[]).iter().map(|(k, x)| (k.clone(), Value::str(arg_str(x)))).collect())
            }
            _ => v.clone(),
        };
        f.insert(k.clone(), value);
    }
    Ok(f)
}

/// Whether `dev` is a device number XAPI accepts for a VBD (`Device_number` of a disk: 0–255 here) or a VIF
/// (`Xapi_vif_helpers.valid_device`: a decimal integer).
fn numeric(dev: &str, max: u32) -> bool {
    !dev.is_empty()
        && dev.len() <= 3
        && dev.bytes().all(|b| b.is_ascii_digit())
        && dev.parse::<u32>().is_ok_and(|n| n <= max)
}

/// The devices in use among `vm`'s `field` (`VBDs` or `VIFs`), by `key`.
fn used(db: &Db, vm: &Fields, field: &str, key: &str) -> Vec<String> {
    crate::api::refs_of(vm, field).iter().map(|d| db.field_str(d, key)).collect()
}

/// `VBD.create(record)` (`xapi_vbd.ml`, `create`): a non-empty VBD's VDI must be of a type a VM may use
/// (`VDI_INCOMPATIBLE_TYPE`), CDs must be read-only (`VBD_CDS_MUST_BE_READONLY`), only CDs may be empty
/// (`VBD_NOT_REMOVABLE_MEDIA`), a read-write VBD needs a writable VDI (`VDI_READONLY`); `userdevice` is a number or
/// `autodetect` (the lowest free one; otherwise `INVALID_DEVICE`) and must be free (`DEVICE_ALREADY_EXISTS`). The
/// VBD starts detached unless the VM is suspended, with no allowed operations until they are recomputed.
pub fn vbd_create(db: &mut Db, arg: &Value) -> R<Value> {
    let mut f = record("VBD", arg, &["VM", "VDI", "userdevice", "bootable", "mode", "type", "empty", "other_config"])?;
    let vm = str_of(&f, "VM");
    let vm_rec = obj(db, "VM", &vm)?.clone();
    let vdi = str_of(&f, "VDI");
    let empty = bool_of(&f, "empty");
    let kind = str_of(&f, "type");
    let mode = str_of(&f, "mode");
    if !matches!(kind.as_str(), "Disk" | "CD" | "Floppy") {
        return Err(XapiError::new("ENUM_INVALID", &["vbd_type", &kind]));
    }
    if !matches!(mode.as_str(), "RO" | "RW") {
        return Err(XapiError::new("ENUM_INVALID", &["vbd_mode", &mode]));
    }
    if !empty {
        let vdi_rec = obj(db, "VDI", &vdi)?;
        let vdi_type = str_of(vdi_rec, "type");
        if !matches!(
            vdi_type.as_str(),
            "system" | "user" | "ephemeral" | "suspend" | "crashdump" | "metadata" | "rrd" | "pvs_cache"
        ) {
            return Err(XapiError::new("VDI_INCOMPATIBLE_TYPE", &[&vdi, &vdi_type]));
        }
    }
    if kind == "CD" && mode != "RO" {
        return Err(XapiError::new("VBD_CDS_MUST_BE_READONLY", &[]));
    }
    if kind != "CD" && empty {
        return Err(XapiError::new("VBD_NOT_REMOVABLE_MEDIA", &["in constructor"]));
    }
    if mode == "RW" && db.get_of("VDI", &vdi).is_some_and(|v| bool_of(v, "read_only")) {
        return Err(XapiError::new("VDI_READONLY", &[&vdi]));
    }
    let taken = used(db, &vm_rec, "VBDs", "userdevice");
    let mut userdevice = str_of(&f, "userdevice");
    if userdevice == "autodetect" {
        userdevice = (0..16u32)
            .map(|n| n.to_string())
            .find(|n| !taken.contains(n))
            .ok_or_else(|| XapiError::new("INVALID_DEVICE", &["autodetect"]))?;
    } else if !numeric(&userdevice, 255) {
        return Err(XapiError::new("INVALID_DEVICE", &[&userdevice]));
    }
    if taken.contains(&userdevice) {
        return Err(XapiError::new("DEVICE_ALREADY_EXISTS", &[&userdevice]));
    }
    let suspended = str_of(&vm_rec, "power_state") == "Suspended";
    if !suspended {
        f.insert("device".into(), Value::str(""));
        f.insert("currently_attached".into(), Value::Bool(false));
    }
    if empty {
        f.insert("VDI".into(), Value::null_ref());
    }
    f.insert("userdevice".into(), Value::str(userdevice));
    f.insert("allowed_operations".into(), Value::empty_set());
    f.insert("current_operations".into(), Value::empty_map());
    if !f.contains_key("unpluggable") {
        f.insert("unpluggable".into(), Value::Bool(true));
    }
    let r = db.create("VBD", f);
    db.set_push(&vm, "VBDs", &r);
    if !empty {
        db.set_add(&vdi, "VBDs", &r);
    }
    crate::allowed::update_vm(db, &vm);
    Ok(Value::str(r))
}

/// The checks of `plug`/`unplug` (`valid_operations` of `xapi_vbd_helpers.ml` and `xapi_vif_helpers.ml`): the VM
/// must be running (`VM_BAD_POWER_STATE`), the device detached to plug (`DEVICE_ALREADY_ATTACHED`) or attached to
/// unplug (`DEVICE_ALREADY_DETACHED`), and a VBD unpluggable to unplug (`VBD_NOT_UNPLUGGABLE`); an empty CD drive
/// cannot be plugged or unplugged either (`VBD_IS_EMPTY` is not raised by XAPI for plug: it plugs the empty drive).
fn check_plug(db: &Db, class: &str, dev: &str, plug: bool) -> R<String> {
    let rec = obj(db, class, dev)?;
    let vm = str_of(rec, "VM");
    let state = db.field_str(&vm, "power_state");
    let attached = bool_of(rec, "currently_attached");
    if state != "Running" {
        return Err(bad_power_state(&vm, "running", &state));
    }
    if plug && attached {
        return Err(XapiError::new("DEVICE_ALREADY_ATTACHED", &[dev]));
    }
    if !plug && !attached {
        return Err(XapiError::new("DEVICE_ALREADY_DETACHED", &[dev]));
    }
    if class == "VBD" && !plug && !bool_of(rec, "unpluggable") {
        return Err(XapiError::new("VBD_NOT_UNPLUGGABLE", &[dev]));
    }
    Ok(vm)
}

/// `VBD.plug`, `VBD.unplug`, `VIF.plug`, `VIF.unplug`: hot-plug, with [`check_plug`]'s checks.
pub fn plug(db: &mut Db, class: &str, dev: &str, plug: bool) -> R<Value> {
    let vm = check_plug(db, class, dev, plug)?;
    db.update(dev, |f| {
        f.insert("currently_attached".into(), Value::Bool(plug));
        if class == "VBD" && plug {
            let n = f.get("userdevice").and_then(Value::as_str).and_then(|u| u.parse::<u8>().ok()).unwrap_or(0);
            f.insert("device".into(), Value::str(format!("xvd{}", (b'a' + n.min(25)) as char)));
        }
    });
    crate::allowed::update_vm(db, &vm);
    Ok(Value::str(""))
}

/// `VBD.destroy` (`xapi_vbd_helpers.ml`, `destroy`): an attached VBD is refused (`OPERATION_NOT_ALLOWED`, "VBD
/// '<uuid>' still attached to '<vm uuid>'"); the VDI stays.
pub fn vbd_destroy(db: &mut Db, vbd: &str) -> R<Value> {
    let rec = obj(db, "VBD", vbd)?.clone();
    let vm = str_of(&rec, "VM");
    if bool_of(&rec, "currently_attached") {
        let msg = format!("VBD '{}' still attached to '{}'", str_of(&rec, "uuid"), db.field_str(&vm, "uuid"));
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &[&msg]));
    }
    db.set_remove(&str_of(&rec, "VDI"), "VBDs", vbd);
    db.set_remove(&vm, "VBDs", vbd);
    db.destroy(vbd);
    Ok(Value::str(""))
}

/// `VIF.create(record)` (`xapi_vif_helpers.ml`, `create`): `device` must be a decimal number (`INVALID_DEVICE`)
/// not in use on the VM (`DEVICE_ALREADY_EXISTS`); an empty `MAC` is generated when the VM has a `mac_seed`,
/// and the MAC must then be valid (`MAC_INVALID`). `currently_attached` is stored as given.
pub fn vif_create(db: &mut Db, arg: &Value) -> R<Value> {
    let mut f = record(
        "VIF",
        arg,
        &["device", "network", "VM", "MAC", "MTU", "other_config", "qos_algorithm_type", "qos_algorithm_params"],
    )?;
    let vm = str_of(&f, "VM");
    let vm_rec = obj(db, "VM", &vm)?.clone();
    let network = str_of(&f, "network");
    obj(db, "network", &network)?;
    let device = str_of(&f, "device");
    if !numeric(&device, 999) {
        return Err(XapiError::new("INVALID_DEVICE", &[&device]));
    }
    let mut mac = str_of(&f, "MAC");
    let seeded = vm_rec.get("other_config").and_then(|m| m.get("mac_seed")).is_some();
    let autogenerated = seeded && mac.is_empty();
    if autogenerated {
        mac = crate::vm_ops::random_mac();
    }
    if !valid_mac(&mac) {
        return Err(XapiError::new("MAC_INVALID", &[&mac]));
    }
    let taken: Vec<u32> = used(db, &vm_rec, "VIFs", "device").iter().filter_map(|d| d.parse().ok()).collect();
    if device.parse::<u32>().is_ok_and(|d| taken.contains(&d)) {
        return Err(XapiError::new("DEVICE_ALREADY_EXISTS", &[&device]));
    }
    f.insert("MAC".into(), Value::str(mac));
    f.insert("MAC_autogenerated".into(), Value::Bool(autogenerated));
    f.insert("allowed_operations".into(), Value::empty_set());
    f.insert("current_operations".into(), Value::empty_map());
    let r = db.create("VIF", f);
    db.set_push(&vm, "VIFs", &r);
    db.set_add(&network, "VIFs", &r);
    crate::allowed::update_vm(db, &vm);
    Ok(Value::str(r))
}

/// Six colon-separated pairs of hex digits (`Helpers.is_valid_MAC`).
fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `VIF.destroy` (`xapi_vif_helpers.ml`, `destroy`): refused while attached to a running VM
/// (`OPERATION_NOT_ALLOWED`, "VIF currently attached to a running VM").
pub fn vif_destroy(db: &mut Db, vif: &str) -> R<Value> {
    let rec = obj(db, "VIF", vif)?.clone();
    let vm = str_of(&rec, "VM");
    if db.field_str(&vm, "power_state") == "Running" && bool_of(&rec, "currently_attached") {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["VIF currently attached to a running VM"]));
    }
    db.set_remove(&str_of(&rec, "network"), "VIFs", vif);
    db.set_remove(&vm, "VIFs", vif);
    db.destroy(vif);
    Ok(Value::str(""))
}

/// The VIF settings [`vif_set`] answers (synchronous names).
pub const VIF_SETTERS: &[&str] = &[
    "VIF.set_locking_mode",
    "VIF.set_ipv4_allowed",
    "VIF.set_ipv6_allowed",
    "VIF.set_qos_algorithm_type",
    "VIF.set_qos_algorithm_params",
];

/// `VIF.set_locking_mode`, `set_ipv4_allowed`, `set_ipv6_allowed` (`ocaml/xapi/xapi_vif.ml`: the addresses are made a
/// set, each checked by `Helpers.assert_is_valid_ip_addr`, which refuses a CIDR that is no plain address with
/// `INVALID_IP_ADDRESS_SPECIFIED`), and the QoS fields (plain read-write fields of the datamodel).
pub fn vif_set(db: &mut Db, op: &str, vif: &str, value: &Value) -> R<Value> {
    obj(db, "VIF", vif)?;
    let field = op.strip_prefix("set_").unwrap_or(op);
    let v = match field {
        "locking_mode" => {
            let mode = arg_str(value);
            if !matches!(mode.as_str(), "network_default" | "locked" | "unlocked" | "disabled") {
                return Err(XapiError::new("ENUM_INVALID", &["vif_locking_mode", &mode]));
            }
            Value::str(mode)
        }
        "ipv4_allowed" | "ipv6_allowed" => {
            let mut set: Vec<String> = value.as_array().unwrap_or(&[]).iter().map(arg_str).collect();
            set.sort();
            set.dedup();
            let v6 = field == "ipv6_allowed";
            for a in &set {
                let plain =
                    if v6 { a.parse::<std::net::Ipv6Addr>().is_ok() } else { a.parse::<std::net::Ipv4Addr>().is_ok() };
                let cidr = a.split_once('/').is_some_and(|(ip, bits)| {
                    let ip_ok = if v6 {
                        ip.parse::<std::net::Ipv6Addr>().is_ok()
                    } else {
                        ip.parse::<std::net::Ipv4Addr>().is_ok()
                    };
                    ip_ok && bits.parse::<u8>().is_ok_and(|b| b <= if v6 { 128 } else { 32 })
                });
                if !plain && cidr {
                    return Err(XapiError::new("INVALID_IP_ADDRESS_SPECIFIED", &[field]));
                }
            }
            Value::strs(set)
        }
        "qos_algorithm_type" => Value::str(arg_str(value)),
        _ => {
            Value::Map(value.as_map().unwrap_or(&[]).iter().map(|(k, x)| (k.clone(), Value::str(arg_str(x)))).collect())
        }
    };
    db.set(vif, field, v);
    Ok(Value::str(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_macs() {
        assert!(numeric("0", 255) && numeric("15", 255) && !numeric("", 255) && !numeric("xvda", 255));
        assert!(!numeric("256", 255) && !numeric("-1", 999));
        assert!(
            valid_mac("da:e1:00:01:00:01")
                && !valid_mac("")
                && !valid_mac("da:e1:00:01:00")
                && !valid_mac("zz:e1:00:01:00:01")
        );
    }
}
