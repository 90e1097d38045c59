//! Disk operations that move content between SRs: `VDI.copy` and `VDI.pool_migrate`.
//!
//! Sources: `ocaml/xapi/xapi_vdi.ml` `copy` (a managed VDI only; a new VDI created in the target SR with the
//! source's name, description, size, type, sharing, other_config, xenstore_data and tags, read-write, with an empty
//! sm_config, or the content written into `into_vdi`); `message_forwarding.ml` `VDI.pool_migrate` (a VDI no VBD
//! uses cannot be migrated: `VDI_NEEDS_VM_FOR_MIGRATE`; it runs as the VM's `migrate_send`) and
//! `xapi_vm_migrate.ml` `vdi_pool_migrate` (storage motion of that one disk: the VM's VBD ends on a new VDI in the
//! target SR, which the call answers; the source is gone); and `VDI.resize` / `VDI.resize_online` (`xapi_vdi.ml`
//! `resize`, and `check_operation_error`: `resize` is refused while a VBD has the VDI attached, `VDI_IN_USE`;
//! `resize_online` is allowed then). The SM's refusal to shrink is not modelled: the sizes only grow here.

use crate::api::{bool_of, obj, refs_of, vdi_destroy, R};
use crate::db::Db;
use crate::sim::XapiError;
use crate::value::{Value, NULL_REF};
use crate::vm_ops::vdi_duplicate;

/// `VDI.copy(vdi, sr, base_vdi, into_vdi)`.
pub fn vdi_copy(db: &mut Db, vdi: &str, sr: &str, into: &str) -> R<Value> {
    let src = obj(db, "VDI", vdi)?.clone();
    if !bool_of(&src, "managed") {
        return Err(XapiError::new("VDI_NOT_MANAGED", &[vdi]));
    }
    if into != NULL_REF && !into.is_empty() {
        obj(db, "VDI", into)?;
        if let Some(d) = db.disks.get(vdi).cloned() {
            db.disks.insert(into.to_string(), d);
        }
        return Ok(Value::str(into));
    }
    let new = vdi_duplicate(db, vdi, Some(sr))?;
    db.update(&new, |f| {
        f.insert("read_only".into(), Value::Bool(false));
        f.insert("sm_config".into(), Value::empty_map());
    });
    Ok(Value::str(new))
}

/// `VDI.pool_migrate(vdi, sr, options)`: the VDI's VM (the first VBD's) must allow `migrate_send` (any power state
/// but paused, `xapi_vm_lifecycle.ml`); its VBD moves to a copy in `sr` and the source goes. The source's snapshots
/// stay where they are and now hang off the new VDI.
pub fn vdi_pool_migrate(db: &mut Db, vdi: &str, sr: &str) -> R<Value> {
    let src = obj(db, "VDI", vdi)?.clone();
    obj(db, "SR", sr)?;
    let vbds = refs_of(&src, "VBDs");
    let Some(vbd) = vbds.first().cloned() else {
        return Err(XapiError::new("VDI_NEEDS_VM_FOR_MIGRATE", &[vdi]));
    };
    let vm = db.field_str(&vbd, "VM");
    let state = db.field_str(&vm, "power_state");
    if state == "Paused" {
        return Err(crate::api::bad_power_state(&vm, "running", &state));
    }
    move_vdi(db, vdi, sr).map(Value::str)
}

/// Storage motion of one disk (`xapi_vm_migrate.ml`: the VDI is mirrored into `sr`, its VBDs end on the copy, the
/// source goes): answers the new VDI. The source's snapshots stay where they are and now hang off the new VDI.
pub fn move_vdi(db: &mut Db, vdi: &str, sr: &str) -> R<String> {
    let src = obj(db, "VDI", vdi)?.clone();
    let new = vdi_duplicate(db, vdi, Some(sr))?;
    for vbd in refs_of(&src, "VBDs") {
        db.set(&vbd, "VDI", Value::str(new.clone()));
        db.set_add(&new, "VBDs", &vbd);
        db.set_remove(vdi, "VBDs", &vbd);
    }
    for snap in refs_of(&src, "snapshots") {
        db.set(&snap, "snapshot_of", Value::str(new.clone()));
        db.set_add(&new, "snapshots", &snap);
    }
    db.set(vdi, "snapshots", Value::empty_set());
    vdi_destroy(db, vdi)?;
    Ok(new)
}

/// `VDI.resize(vdi, size)` (`online` false) and `VDI.resize_online(vdi, size)`.
pub fn vdi_resize(db: &mut Db, vdi: &str, size: i64, online: bool) -> R<Value> {
    let rec = obj(db, "VDI", vdi)?.clone();
    if !bool_of(&rec, "managed") {
        return Err(XapiError::new("VDI_NOT_MANAGED", &[vdi]));
    }
    let op = if online { "resize_online" } else { "resize" };
    let attached = refs_of(&rec, "VBDs").iter().any(|b| db.get(b).is_some_and(|b| bool_of(b, "currently_attached")));
    if attached && !online {
        return Err(XapiError::new("VDI_IN_USE", &[vdi, op]));
    }
    if size <= 0 {
        return Err(XapiError::new("VDI_INVALID_SIZE", &[&size.to_string()]));
    }
    let old = crate::api::int_of(&rec, "virtual_size");
    let new = size.max(old);
    let sr = crate::api::str_of(&rec, "SR");
    let thick = db.get(&sr).is_some_and(|s| crate::api::str_of(s, "type") == "lvm");
    crate::api::sr_account(db, &sr, new - old, thick);
    if let Some(d) = db.disks.get_mut(vdi) {
        d.grow(new as u64);
    }
    db.set(vdi, "virtual_size", Value::Int(new));
    Ok(Value::str(""))
}
