//! VM settings with XAPI's own checks: VCPUs, memory, HA restart priority, start delay, affinity.
//!
//! Sources, all `ocaml/xapi/`: `xapi_vm.ml` (`set_VCPUs_max`, `set_VCPUs_at_startup`: `INVALID_VALUE` unless
//! 0 < VCPUs_at_startup ≤ VCPUs_max; `set_memory_limits`, `set_memory_dynamic_range`:
//! `MEMORY_CONSTRAINT_VIOLATION_ORDER` unless static_min ≤ dynamic_min ≤ dynamic_max ≤ static_max, DMC being on as on
//! XCP-ng; `set_ha_restart_priority`: one of `restart`, `best-effort`, ``; `set_start_delay`: non-negative;
//! `set_has_vendor_device`: halted VMs only; `set_domain_type`: a known type, which sets `HVM_boot_policy` too),
//! `set_uefi_mode`: `vm_uefi_mode`, `setup` or `user` (`ocaml/idl/datamodel_vm.ml`), run as the host's
//! `varstore-sb-state <vm uuid> <mode>`, whose output is the answer: here empty, the VM's EFI variables not being
//! modelled),
//! `xapi_vm_lifecycle.ml` (`allowed_power_states`: `changing_VCPUs` and `changing_memory_limits` need `Halted`,
//! `changing_VCPUs_live` `Running`, `changing_dynamic_range` `Halted` or `Running`: `VM_BAD_POWER_STATE`).

use crate::api::{arg_str, bad_power_state, int_of, obj, str_of, R};
use crate::db::Db;
use crate::sim::XapiError;
use crate::value::{Value, NULL_REF};

/// The settings calls this module answers (synchronous names).
pub const CALLS: &[&str] = &[
    "VM.set_VCPUs_max",
    "VM.set_VCPUs_at_startup",
    "VM.set_VCPUs_number_live",
    "VM.set_memory_limits",
    "VM.set_memory_dynamic_range",
    "VM.set_ha_restart_priority",
    "VM.set_start_delay",
    "VM.set_affinity",
    "VM.set_suspend_SR",
    "VM.set_PV_args",
    "VM.set_has_vendor_device",
    "VM.set_domain_type",
    "VM.set_uefi_mode",
];

fn int_arg(v: &Value, field: &str) -> R<i64> {
    v.as_i64().or_else(|| arg_str(v).parse().ok()).ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &[field]))
}

fn invalid(field: &str, value: impl ToString) -> XapiError {
    XapiError::new("INVALID_VALUE", &[field, &value.to_string()])
}

/// Needs the VM in one of `states` (the lifecycle's check for the operation).
fn in_state(db: &Db, vm: &str, states: &[&str]) -> R<()> {
    let state = str_of(obj(db, "VM", vm)?, "power_state");
    if states.contains(&state.as_str()) {
        Ok(())
    } else {
        Err(bad_power_state(vm, &states[0].to_ascii_lowercase(), &state))
    }
}

/// Answers `op` (e.g. `set_VCPUs_max`) on `vm` with the call's other arguments.
pub fn call(db: &mut Db, op: &str, vm: &str, args: &[Value]) -> R<Value> {
    let rec = obj(db, "VM", vm)?.clone();
    if rec.get("is_control_domain").and_then(Value::as_bool) == Some(true) {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &[&format!("{op} is not allowed on a control domain")]));
    }
    let mem = |k: &str| int_of(&rec, k);
    match op {
        "set_VCPUs_max" => {
            in_state(db, vm, &["Halted"])?;
            let n = int_arg(&args[0], "value")?;
            if n < 1 || n < mem("VCPUs_at_startup") {
                return Err(invalid("VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max", n));
            }
            db.set(vm, "VCPUs_max", Value::Int(n));
        }
        "set_VCPUs_at_startup" => {
            in_state(db, vm, &["Halted"])?;
            let n = int_arg(&args[0], "value")?;
            if n < 1 || n > mem("VCPUs_max") {
                return Err(invalid("VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max", n));
            }
            db.set(vm, "VCPUs_at_startup", Value::Int(n));
        }
        "set_VCPUs_number_live" => {
            in_state(db, vm, &["Running"])?;
            let n = int_arg(&args[0], "nvcpu")?;
            if n < 1 || n > mem("VCPUs_max") {
                return Err(invalid("nvcpu", n));
            }
            let metrics = str_of(&rec, "metrics");
            db.set(&metrics, "VCPUs_number", Value::Int(n));
        }
        "set_memory_limits" => {
            in_state(db, vm, &["Halted"])?;
            let [smin, smax, dmin, dmax] = [0, 1, 2, 3].map(|i| args.get(i).map(|v| int_arg(v, "value")));
            let (Some(smin), Some(smax), Some(dmin), Some(dmax)) = (smin, smax, dmin, dmax) else {
                return Err(XapiError::new("FIELD_TYPE_ERROR", &["memory"]));
            };
            let (smin, smax, dmin, dmax) = (smin?, smax?, dmin?, dmax?);
            if !(smin <= dmin && dmin <= dmax && dmax <= smax) {
                return Err(XapiError::new("MEMORY_CONSTRAINT_VIOLATION_ORDER", &[]));
            }
            db.update(vm, |f| {
                for (k, v) in [
                    ("memory_static_min", smin),
                    ("memory_static_max", smax),
                    ("memory_dynamic_min", dmin),
                    ("memory_dynamic_max", dmax),
                    ("memory_target", dmin),
                ] {
                    f.insert(k.into(), Value::Int(v));
                }
            });
        }
        "set_memory_dynamic_range" => {
            in_state(db, vm, &["Halted", "Running"])?;
            let (min, max) = (int_arg(&args[0], "min")?, int_arg(&args[1], "max")?);
            if !(mem("memory_static_min") <= min && min <= max && max <= mem("memory_static_max")) {
                return Err(XapiError::new("MEMORY_CONSTRAINT_VIOLATION_ORDER", &[]));
            }
            db.update(vm, |f| {
                for (k, v) in [("memory_dynamic_min", min), ("memory_dynamic_max", max), ("memory_target", min)] {
                    f.insert(k.into(), Value::Int(v));
                }
            });
        }
        "set_ha_restart_priority" => {
            let value = arg_str(&args[0]);
            if !matches!(value.as_str(), "restart" | "best-effort" | "") {
                return Err(invalid("ha_restart_priority", &value));
            }
            let running = str_of(&rec, "power_state") == "Running";
            db.update(vm, |f| {
                f.insert("ha_restart_priority".into(), Value::str(value.clone()));
                if running {
                    f.insert("ha_always_run".into(), Value::Bool(value == "restart"));
                }
            });
        }
        "set_start_delay" => {
            let n = int_arg(&args[0], "value")?;
            if n < 0 {
                return Err(invalid("start_delay must be non-negative", n));
            }
            db.set(vm, "start_delay", Value::Int(n));
        }
        "set_affinity" | "set_suspend_SR" => {
            let (class, field) = if op == "set_affinity" { ("host", "affinity") } else { ("SR", "suspend_SR") };
            let target = arg_str(&args[0]);
            if target != NULL_REF {
                obj(db, class, &target)?;
            }
            db.set(vm, field, Value::str(target));
        }
        "set_PV_args" => {
            db.set(vm, "PV_args", Value::str(arg_str(&args[0])));
        }
        "set_has_vendor_device" => {
            in_state(db, vm, &["Halted"])?;
            let v = args[0].as_bool().ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["value"]))?;
            db.set(vm, "has_vendor_device", Value::Bool(v));
        }
        "set_domain_type" => {
            let value = arg_str(&args[0]);
            if !matches!(value.as_str(), "hvm" | "pv" | "pv_in_pvh" | "pvh") {
                return Err(invalid("domain_type", &value));
            }
            let policy = if value == "hvm" { "BIOS order" } else { "" };
            db.update(vm, |f| {
                f.insert("domain_type".into(), Value::str(value.clone()));
                f.insert("HVM_boot_policy".into(), Value::str(policy));
            });
        }
        "set_uefi_mode" => {
            let mode = arg_str(&args[0]);
            if !matches!(mode.as_str(), "setup" | "user") {
                return Err(invalid("mode", &mode));
            }
        }
        _ => return Err(XapiError::new("MESSAGE_METHOD_UNKNOWN", &[&format!("VM.{op}")])),
    }
    Ok(Value::str(""))
}

/// How many arguments (after the VM) each call takes.
pub fn arity(op: &str) -> usize {
    match op {
        "set_memory_limits" => 4,
        "set_memory_dynamic_range" => 2,
        _ => 1,
    }
}
