//! `DELETE /rest/v0/<collection>/<id>` with XO's semantics, every XAPI call awaited.
//!
//! - VMs, VM snapshots and VM templates: refused with 409 before any write when `blocked_operations.destroy` is set
//!   or the VM is a default template; otherwise hard-shut-down if not halted, destroyed, and so are its snapshots
//!   and the disks that only it and its snapshots use (CD drives' ISOs are never touched).
//! - VDIs and VDI snapshots: refused with 409 while attached to a running VM; otherwise destroyed.
//! - VBDs and VIFs: unplugged first if connected to a running VM (as XO does), then destroyed; a VBD's VDI stays.
//! - SRs: their PBDs unplugged, then `SR.destroy` (the SR's disks with it, as XO does); a refusal plugs the PBDs
//!   back (`VDI_IN_USE` while a running VM uses a disk there: 409).
//! - Networks: refused with 409 while a VIF on them is attached or a physical PIF carries them; else their VLANs
//!   and bonds go, then the network ([`super::infra::delete_network`]).
//!
//! 204 when everything is gone. If XAPI refuses a step once something was destroyed, the answer is XAPI's error
//! with `data.destroyed` and `data.notDestroyed` (uuids), so nothing is half-deleted without the answer saying so.

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Value};

/// `DELETE /rest/v0/<collection>/<id>`.
pub async fn delete<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    match (coll.class, coll.name) {
        ("VM", "vms" | "vm-snapshots" | "vm-templates") => vm(ctx, &caller, coll, id).await,
        ("VDI", _) => vdi(ctx, &caller, coll, id).await,
        ("VBD" | "VIF", _) => device(ctx, &caller, coll, id).await,
        ("SR", _) => {
            let (reference, _) = find(ctx, &caller, coll, id).await?;
            let s = json!(caller.session);
            super::infra::remove_sr(ctx, &s, &reference, true).await.map_err(|e| e.to_api_error())?;
            Ok(Reply::no_content())
        }
        ("network", _) => {
            let (reference, rec) = find(ctx, &caller, coll, id).await?;
            super::infra::delete_network(ctx, &json!(caller.session), &reference, &rec).await?;
            Ok(Reply::no_content())
        }
        _ => Err(ApiError::new(405, format!("{} cannot be deleted here", coll.name))),
    }
}

fn refs(rec: &Value, field: &str) -> Vec<String> {
    rec[field].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

fn conflict(message: String, e: Option<&XapiError>) -> ApiError {
    let error = ApiError::new(409, message);
    match e {
        Some(XapiError::Api { code, params }) => error.with_data(json!({ "code": code, "params": params })),
        _ => error,
    }
}

async fn vdi<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, coll: &Collection, id: &str) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, caller, coll, id).await?;
    let s = json!(caller.session);
    for vbd in refs(&rec, "VBDs") {
        let attached = ctx.xapi.call("VBD.get_currently_attached", &[s.clone(), json!(vbd)]).await;
        if attached.ok().and_then(|v| v.as_bool()) == Some(true) {
            return Err(conflict(
                format!("the disk {id} is attached to a running VM: shut the VM down or detach the disk first"),
                Some(&XapiError::Api { code: "VDI_IN_USE".into(), params: vec![reference.clone(), "destroy".into()] }),
            ));
        }
    }
    ctx.xapi.call("VDI.destroy", &[s, json!(reference)]).await.map_err(|e| e.to_api_error())?;
    Ok(Reply::no_content())
}

async fn device<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, caller, coll, id).await?;
    let s = json!(caller.session);
    let class = coll.class;
    if rec["currently_attached"] == json!(true) {
        let vm = rec["VM"].as_str().unwrap_or_default();
        let state = ctx.xapi.call("VM.get_power_state", &[s.clone(), json!(vm)]).await.map_err(|e| e.to_api_error())?;
        if state == json!("Running") {
            ctx.xapi
                .call(&format!("{class}.unplug"), &[s.clone(), json!(reference)])
                .await
                .map_err(|e| e.to_api_error())?;
        }
    }
    ctx.xapi.call(&format!("{class}.destroy"), &[s, json!(reference)]).await.map_err(|e| e.to_api_error())?;
    Ok(Reply::no_content())
}

/// Destroys the halted VM `vm` and the disks only it uses, best effort (the clean-up of a half-made object).
pub(crate) async fn destroy_with_own_disks<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str) {
    let Ok(rec) = ctx.xapi.call("VM.get_record", &[s.clone(), json!(vm)]).await else { return };
    let Ok(doomed) = plan(ctx, s, vm, &rec).await else { return };
    if ctx.xapi.call("VM.destroy", &[s.clone(), json!(vm)]).await.is_err() {
        return;
    }
    for disk in doomed.disks {
        if only_used_by(ctx, s, &disk, &[]).await.unwrap_or(false) {
            let _ = ctx.xapi.call("VDI.destroy", &[s.clone(), json!(disk)]).await;
        }
    }
}

/// A VM (or snapshot) to destroy, and its disks.
struct Doomed {
    vm: String,
    uuid: String,
    halted: bool,
    disks: Vec<String>,
}

async fn vm<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, coll: &Collection, id: &str) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, caller, coll, id).await?;
    let s = json!(caller.session);
    if let Some(reason) = rec["blocked_operations"].get("destroy") {
        return Err(conflict(
            format!("{id} is protected from deletion (blocked_operations.destroy: {reason})"),
            Some(&XapiError::Api {
                code: "OPERATION_BLOCKED".into(),
                params: vec![reference.clone(), reason.as_str().unwrap_or_default().to_string()],
            }),
        ));
    }
    if rec["is_default_template"] == json!(true) || rec["other_config"]["default_template"] == json!("true") {
        return Err(conflict(format!("{id} is a default template, which cannot be deleted"), None));
    }
    // What goes: the VM, its snapshots, and each one's disks (VBDs of type Disk).
    let mut doomed = vec![plan(ctx, &s, &reference, &rec).await?];
    for snapshot in refs(&rec, "snapshots") {
        match ctx.xapi.call("VM.get_record", &[s.clone(), json!(snapshot)]).await {
            Ok(r) => doomed.push(plan(ctx, &s, &snapshot, &r).await?),
            Err(e) if e.code() == Some("HANDLE_INVALID") => {}
            Err(e) => return Err(e.to_api_error()),
        }
    }
    let vms: Vec<&str> = doomed.iter().map(|d| d.vm.as_str()).collect();
    // A disk goes only if no other VM (but control domains) uses it.
    let mut disks: Vec<String> = Vec::new();
    for disk in doomed.iter().flat_map(|d| d.disks.iter()) {
        if disks.contains(disk) {
            continue;
        }
        if only_used_by(ctx, &s, disk, &vms).await? {
            disks.push(disk.clone());
        }
    }
    let mut destroyed: Vec<String> = Vec::new();
    let all: Vec<String> = doomed.iter().map(|d| d.uuid.clone()).collect();
    for d in &doomed {
        let step = async {
            if !d.halted {
                ctx.xapi.call("VM.hard_shutdown", &[s.clone(), json!(d.vm)]).await?;
            }
            ctx.xapi.call("VM.destroy", &[s.clone(), json!(d.vm)]).await
        };
        if let Err(e) = step.await {
            return Err(partial(e, &destroyed, all.iter().filter(|u| !destroyed.contains(u)).cloned().collect()));
        }
        destroyed.push(d.uuid.clone());
    }
    let mut left: Vec<String> = Vec::new();
    let mut failure = None;
    for disk in &disks {
        let uuid = ctx.xapi.call("VDI.get_uuid", &[s.clone(), json!(disk)]).await.ok();
        let uuid = uuid.and_then(|u| u.as_str().map(str::to_string)).unwrap_or_else(|| disk.clone());
        match ctx.xapi.call("VDI.destroy", &[s.clone(), json!(disk)]).await {
            Ok(_) => destroyed.push(uuid),
            Err(e) if e.code() == Some("HANDLE_INVALID") => {}
            Err(e) => {
                left.push(uuid);
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(partial(e, &destroyed, left)),
        None => Ok(Reply::no_content()),
    }
}

/// XAPI's error once something was destroyed: what went and what is left.
fn partial(e: XapiError, destroyed: &[String], left: Vec<String>) -> ApiError {
    let mut error = e.to_api_error();
    let mut data = match error.data.take() {
        Some(Value::Object(d)) => d,
        _ => serde_json::Map::new(),
    };
    if !destroyed.is_empty() {
        error.message = format!("deleted in part: {}", error.message);
    }
    data.insert("destroyed".into(), json!(destroyed));
    data.insert("notDestroyed".into(), json!(left));
    error.with_data(Value::Object(data))
}

async fn plan<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str, rec: &Value) -> Result<Doomed, ApiError> {
    let mut disks = Vec::new();
    for vbd in refs(rec, "VBDs") {
        let r = match ctx.xapi.call("VBD.get_record", &[s.clone(), json!(vbd)]).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("HANDLE_INVALID") => continue,
            Err(e) => return Err(e.to_api_error()),
        };
        let vdi = r["VDI"].as_str().unwrap_or_default();
        if r["type"] == json!("Disk") && !vdi.is_empty() && vdi != "OpaqueRef:NULL" {
            disks.push(vdi.to_string());
        }
    }
    Ok(Doomed {
        vm: vm.to_string(),
        uuid: rec["uuid"].as_str().unwrap_or_default().to_string(),
        halted: rec["power_state"] == json!("Halted"),
        disks,
    })
}

/// Whether every VBD of `disk` belongs to one of `vms` or to a control domain.
async fn only_used_by<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, disk: &str, vms: &[&str]) -> Result<bool, ApiError> {
    let vbds = ctx.xapi.call("VDI.get_VBDs", &[s.clone(), json!(disk)]).await.map_err(|e| e.to_api_error())?;
    for vbd in vbds.as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(Value::as_str) {
        let Ok(owner) = ctx.xapi.call("VBD.get_VM", &[s.clone(), json!(vbd)]).await else { continue };
        let owner = owner.as_str().unwrap_or_default();
        if vms.contains(&owner) {
            continue;
        }
        let dom0 = ctx.xapi.call("VM.get_is_control_domain", &[s.clone(), json!(owner)]).await;
        if dom0.ok().and_then(|v| v.as_bool()) != Some(true) {
            return Ok(false);
        }
    }
    Ok(true)
}
