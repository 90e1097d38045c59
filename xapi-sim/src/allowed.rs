//! `allowed_operations` kept current, as XAPI recomputes them after every change of an object's state
//! (`ocaml/xapi/xapi_vm_lifecycle.ml`, `update_allowed_operations`; `xapi_vbd_helpers.ml` and
//! `xapi_vif_helpers.ml`, `valid_operations`).
//!
//! The simulator recomputes a VM's list, and its VBDs' and VIFs', after each power operation, snapshot, clone,
//! revert and device change. Only the operations the REST API acts on are modelled.

use crate::api::{bool_of, refs_of, str_of};
use crate::db::Db;
use crate::schema::Fields;
use crate::value::Value;

/// A VM operation and the power states it needs (`allowed_power_states`).
const VM_OPS: &[(&str, &[&str])] = &[
    ("start", &["Halted"]),
    ("start_on", &["Halted"]),
    ("provision", &["Halted"]),
    ("make_into_template", &["Halted"]),
    ("unpause", &["Paused"]),
    ("resume", &["Suspended"]),
    ("resume_on", &["Suspended"]),
    ("clean_reboot", &["Running"]),
    ("clean_shutdown", &["Running"]),
    ("pause", &["Running"]),
    ("pool_migrate", &["Running"]),
    ("suspend", &["Running"]),
    ("clone", &["Halted"]),
    ("copy", &["Halted"]),
    ("destroy", &["Halted", "Suspended"]),
    ("export", &["Halted", "Suspended"]),
    ("hard_reboot", &["Paused", "Running"]),
    ("checkpoint", &["Paused", "Suspended", "Running"]),
    ("hard_shutdown", &["Paused", "Suspended", "Running"]),
    ("migrate_send", &["Halted", "Suspended", "Running"]),
    ("snapshot", &["Halted", "Paused", "Suspended", "Running"]),
    ("revert", &["Halted", "Paused", "Suspended", "Running"]),
    ("metadata_export", &["Halted", "Paused", "Suspended", "Running"]),
];

/// What a template may do (`check_template`; `destroy` and `migrate_send` only if not a default template).
const TEMPLATE_OPS: &[&str] = &["clone", "copy", "export", "metadata_export", "provision", "destroy", "migrate_send"];
/// What a snapshot may do (`check_snapshot`).
const SNAPSHOT_OPS: &[&str] = &["revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"];

/// The operations `vm` allows now.
pub fn vm_ops(rec: &Fields) -> Vec<&'static str> {
    let state = str_of(rec, "power_state");
    let snapshot = bool_of(rec, "is_a_snapshot");
    let template = bool_of(rec, "is_a_template") && !snapshot;
    let default_template = bool_of(rec, "is_default_template")
        || rec.get("other_config").and_then(|m| m.get("default_template")).and_then(Value::as_str) == Some("true");
    let blocked = rec.get("blocked_operations").and_then(Value::as_map).map(<[_]>::to_vec).unwrap_or_default();
    VM_OPS
        .iter()
        .filter(|(op, states)| {
            let in_state = states.contains(&state.as_str())
                || (snapshot && matches!(*op, "clone" | "copy") && state == "Suspended");
            let kind_ok = if snapshot {
                SNAPSHOT_OPS.contains(op)
            } else if template {
                TEMPLATE_OPS.contains(op) && !(default_template && matches!(*op, "destroy" | "migrate_send"))
            } else {
                !matches!(*op, "provision" | "revert")
            };
            in_state && kind_ok && !blocked.iter().any(|(k, _)| k == op)
        })
        .map(|(op, _)| *op)
        .collect()
}

/// The operations a VBD or VIF allows: `plug` when its VM runs and it is detached, `unplug` when attached, and for
/// a VBD `attach`; CD drives add `eject`/`insert` by their emptiness (`valid_operations`).
fn device_ops(db: &Db, rec: &Fields, vbd: bool) -> Vec<&'static str> {
    let running = db.field_str(&str_of(rec, "VM"), "power_state") == "Running";
    let attached = bool_of(rec, "currently_attached");
    let mut ops = Vec::new();
    if running && !attached {
        ops.push("plug");
    }
    if running && attached && (!vbd || bool_of(rec, "unpluggable")) {
        ops.push("unplug");
        if vbd {
            ops.push("unplug_force");
        }
    }
    if vbd {
        ops.push("attach");
        if str_of(rec, "type") == "CD" {
            ops.push(if bool_of(rec, "empty") { "insert" } else { "eject" });
        }
    }
    ops
}

/// Recomputes the allowed operations of `vm`, its VBDs and its VIFs (control domains are left alone).
pub fn update_vm(db: &mut Db, vm: &str) {
    let Some(rec) = db.get_of("VM", vm).cloned() else { return };
    if bool_of(&rec, "is_control_domain") {
        return;
    }
    set_if_changed(db, vm, vm_ops(&rec));
    for (field, vbd) in [("VBDs", true), ("VIFs", false)] {
        for dev in refs_of(&rec, field) {
            if let Some(d) = db.get(&dev).cloned() {
                let ops = device_ops(db, &d, vbd);
                set_if_changed(db, &dev, ops);
            }
        }
    }
}

fn set_if_changed(db: &mut Db, reference: &str, ops: Vec<&str>) {
    let value = Value::strs(ops);
    if db.field(reference, "allowed_operations") != Some(&value) {
        db.set(reference, "allowed_operations", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(state: &str, extra: &[(&str, Value)]) -> Fields {
        let mut f = crate::schema::defaults("VM");
        f.insert("power_state".into(), Value::str(state));
        for (k, v) in extra {
            f.insert((*k).into(), v.clone());
        }
        f
    }

    /// `xapi_vm_lifecycle.ml`: `allowed_power_states`, `check_template`, `check_snapshot`, `operation_blocked`.
    #[test]
    fn vm_operations_follow_power_state_kind_and_blocks() {
        let halted = vm_ops(&vm("Halted", &[]));
        for op in ["start", "clone", "copy", "destroy", "export", "snapshot"] {
            assert!(halted.contains(&op), "{op}");
        }
        assert!(!halted.contains(&"clean_shutdown") && !halted.contains(&"revert") && !halted.contains(&"provision"));
        let running = vm_ops(&vm("Running", &[]));
        for op in ["clean_shutdown", "hard_shutdown", "pause", "suspend", "pool_migrate", "snapshot"] {
            assert!(running.contains(&op), "{op}");
        }
        assert!(!running.contains(&"clone") && !running.contains(&"destroy") && !running.contains(&"start"));
        let snap = vm_ops(&vm("Halted", &[("is_a_snapshot", Value::Bool(true)), ("is_a_template", Value::Bool(true))]));
        assert_eq!(snap, ["clone", "copy", "destroy", "export", "revert", "metadata_export"]);
        let template = vm_ops(&vm("Halted", &[("is_a_template", Value::Bool(true))]));
        assert_eq!(template, ["provision", "clone", "copy", "destroy", "export", "migrate_send", "metadata_export"]);
        let default =
            vm_ops(&vm("Halted", &[("is_a_template", Value::Bool(true)), ("is_default_template", Value::Bool(true))]));
        assert!(!default.contains(&"destroy"));
        let blocked = vm_ops(&vm("Halted", &[("blocked_operations", Value::map([("destroy", "protected")]))]));
        assert!(!blocked.contains(&"destroy") && blocked.contains(&"start"));
    }
}
