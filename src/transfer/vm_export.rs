//! VM exports: `GET /rest/v0/<vms|vm-snapshots|vm-templates>/<id>.xva[?compress=gzip|zstd|true][&compress_at=edge|xapi]`.
//!
//! XAPI exports only halted or suspended VMs: a running or paused VM is snapshotted first (its `[NOSNAP]` disks left
//! out), the snapshot is made a plain VM-snapshot (not a template) and exported, and destroyed with its disks when
//! the transfer ends, however it ends. An edge instance cut off mid-export cannot clean up, so the snapshot carries
//! a heartbeat (`other_config["xo-edge:export"]`, Unix seconds, refreshed while the export runs) and the next VM
//! export destroys snapshots whose heartbeat is older than `orphan_after`.
//!
//! Compression: `gzip` (and XO's `true`) is done at the edge (miniz_oxide is several times faster than XAPI's gzip,
//! and the edge must read the XVA anyway to prove it complete); `zstd` is XAPI's when the pool allows it (native zstd
//! on the host, the edge only checks the frames), else the edge's. `compress_at` overrides either way.

use super::check::Check;
use super::compress::Compressor;
use super::export::{ExportPlan, Streaming};
use super::task;
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::query::params;
use crate::rest::auth::Caller;
use crate::rest::{collections, Ctx, Request};
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Value};

/// The `other_config` key of an export snapshot's heartbeat.
pub const HEARTBEAT_KEY: &str = "xo-edge:export";

/// `/rest/v0/<vm collection>/<id>.xva`, parsed.
#[derive(Debug, Clone)]
pub struct VmRoute {
    pub collection: &'static Collection,
    pub id: String,
}

/// Parses a VM export route.
pub fn vm_route(path: &str) -> Option<VmRoute> {
    let rest = path.trim_end_matches('/').strip_prefix("/rest/v0/")?;
    let (coll, file) = rest.split_once('/')?;
    if !matches!(coll, "vms" | "vm-snapshots" | "vm-templates") {
        return None;
    }
    let id = file.strip_suffix(".xva")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(VmRoute { collection: objects::collection(coll)?, id: id.to_string() })
}

/// The compression asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Where to compress, when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Edge,
    Xapi,
}

/// Reads `compress` (`gzip`, `zstd`, `true` = gzip, `false`/`none`/absent = none) and `compress_at`.
pub fn compression(query: &str) -> Result<(Compression, Option<At>), ApiError> {
    let pairs = params::pairs(query);
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.to_ascii_lowercase());
    let c = match get("compress").as_deref() {
        None | Some("") | Some("false") | Some("none") => Compression::None,
        Some("gzip") | Some("true") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            return Err(ApiError::bad_request(format!("compress={other} is not one of gzip, zstd, true, false")))
        }
    };
    let at = match get("compress_at").as_deref() {
        None | Some("") => None,
        Some("edge") => Some(At::Edge),
        Some("xapi") => Some(At::Xapi),
        Some(other) => return Err(ApiError::bad_request(format!("compress_at={other} is not edge or xapi"))),
    };
    Ok((c, at))
}

fn xapi_err(e: XapiError) -> ApiError {
    e.to_api_error()
}

async fn zstd_restricted<T: Transport>(ctx: &Ctx<'_, T>, session: &str) -> Result<bool, ApiError> {
    let pools = ctx.xapi.call("pool.get_all_records", &[json!(session)]).await.map_err(xapi_err)?;
    Ok(pools.as_object().into_iter().flat_map(|m| m.values()).any(|p| {
        p.get("restrictions").and_then(|r| r.get("restrict_zstd_export")).and_then(Value::as_str) == Some("true")
    }))
}

/// Plans the export of a VM, snapshot or template: checks, snapshot of a running VM, task.
pub async fn plan_vm_export<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    req: &Request,
    route: &VmRoute,
) -> Result<ExportPlan, ApiError> {
    let (compression, at) = compression(&req.query)?;
    let (vm, rec) = collections::find(ctx, caller, route.collection, &route.id).await?;
    if let Some(reason) = rec.get("blocked_operations").and_then(|b| b.get("export")) {
        let reason = reason.as_str().unwrap_or_default();
        return Err(ApiError::new(409, format!("export is blocked on this VM: {reason}"))
            .with_data(json!({ "code": "OPERATION_BLOCKED", "params": [vm, reason] })));
    }
    let restricted = compression == Compression::Zstd && zstd_restricted(ctx, &caller.session).await?;
    let at_edge = match (compression, at) {
        (Compression::None, _) => false,
        (Compression::Zstd, Some(At::Xapi)) if restricted => {
            return Err(ApiError::new(
                409,
                "the pool's licence forbids zstd exports (restrict_zstd_export): leave compress_at out to compress at the edge",
            )
            .with_data(json!({ "code": "FEATURE_RESTRICTED", "params": ["zstd_export"] })))
        }
        (_, Some(At::Edge)) => true,
        (_, Some(At::Xapi)) => false,
        (Compression::Gzip, None) => true,
        (Compression::Zstd, None) => restricted,
    };
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or(&route.id).to_string();
    let name = rec.get("name_label").and_then(Value::as_str).unwrap_or_default().to_string();
    let running = route.collection.name == "vms"
        && matches!(rec.get("power_state").and_then(Value::as_str), Some("Running" | "Paused"));
    sweep_stale_snapshots(ctx, &caller.session, ctx.config.orphan_after).await;
    task::sweep(&ctx.xapi, &caller.session, ctx.now, ctx.config.orphan_after).await;
    let snapshot =
        if running { Some(snapshot_for_export(ctx, &caller.session, &vm, &rec, &name).await?) } else { None };
    let target = snapshot.clone().unwrap_or_else(|| vm.clone());
    let task =
        match task::create(&ctx.xapi, &caller.session, "VM export", &format!("xo-edge: export of {name}"), ctx.now)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                if let Some(snap) = &snapshot {
                    let _ = destroy_snapshot(ctx, &caller.session, snap).await;
                }
                return Err(xapi_err(e));
            }
        };
    let use_compression = match (compression, at_edge) {
        (Compression::Zstd, false) => "zstd",
        (Compression::Gzip, false) => "true",
        _ => "false",
    };
    let query = super::export::query(&[("ref", &target), ("use_compression", use_compression), ("task_id", &task)]);
    let check = match use_compression {
        "zstd" => Check::zstd_frames(),
        // XAPI's gzip is only used when asked for explicitly; its end is proven by XAPI's task alone.
        "true" => Check::Any,
        _ => Check::xva(),
    };
    let compressor = at_edge.then(|| match compression {
        Compression::Zstd => Compressor::zstd(),
        _ => Compressor::gzip(),
    });
    Ok(ExportPlan {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/octet-stream".into()),
            ("content-disposition".into(), format!("attachment; filename=\"{uuid}.xva\"")),
        ],
        upstream: format!("/export?{query}"),
        cookie: format!("session_id={}", caller.session),
        task,
        streaming: Streaming::Through(check),
        session: caller.session.clone(),
        temporary_session: caller.basic,
        snapshot,
        compressor,
        host: None,
    })
}

/// `HEAD` of a VM export: the headers, without exporting (and without snapshotting a running VM).
pub async fn head_vm_export<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    req: &Request,
    route: &VmRoute,
) -> Result<crate::rest::Reply, ApiError> {
    compression(&req.query)?;
    let (_, rec) = collections::find(ctx, caller, route.collection, &route.id).await?;
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or(&route.id);
    Ok(crate::rest::Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/octet-stream".into()),
            ("content-disposition".into(), format!("attachment; filename=\"{uuid}.xva\"")),
        ],
        body: Vec::new(),
        stream: None,
    })
}

/// Snapshots a running VM for export, leaving its `[NOSNAP]` disks out; the snapshot is marked with a heartbeat.
async fn snapshot_for_export<T: Transport>(
    ctx: &Ctx<'_, T>,
    session: &str,
    vm: &str,
    rec: &Value,
    name: &str,
) -> Result<String, ApiError> {
    let s = json!(session);
    let mut ignore = Vec::new();
    for vbd in rec.get("VBDs").and_then(Value::as_array).into_iter().flatten() {
        let Ok(vbd) = ctx.xapi.call("VBD.get_record", &[s.clone(), vbd.clone()]).await else { continue };
        let vdi = vbd.get("VDI").and_then(Value::as_str).unwrap_or("OpaqueRef:NULL");
        if vdi == "OpaqueRef:NULL" {
            continue;
        }
        if let Ok(label) = ctx.xapi.call("VDI.get_name_label", &[s.clone(), json!(vdi)]).await {
            if label.as_str().is_some_and(|l| l.contains("[NOSNAP]")) {
                ignore.push(json!(vdi));
            }
        }
    }
    let snap = ctx
        .xapi
        .call("VM.snapshot", &[s.clone(), json!(vm), json!(format!("[XO Export] {name}")), Value::Array(ignore)])
        .await
        .map_err(xapi_err)?;
    let snap = snap.as_str().unwrap_or_default().to_string();
    let prepared = async {
        ctx.xapi.call("VM.set_is_a_template", &[s.clone(), json!(snap), json!(false)]).await?;
        heartbeat(ctx, session, &snap).await
    };
    if let Err(e) = prepared.await {
        let _ = destroy_snapshot(ctx, session, &snap).await;
        return Err(xapi_err(e));
    }
    Ok(snap)
}

/// Refreshes an export snapshot's heartbeat.
pub async fn heartbeat<T: Transport>(ctx: &Ctx<'_, T>, session: &str, snap: &str) -> Result<(), XapiError> {
    let (s, key) = (json!(session), json!(HEARTBEAT_KEY));
    let _ = ctx.xapi.call("VM.remove_from_other_config", &[s.clone(), json!(snap), key.clone()]).await;
    ctx.xapi.call("VM.add_to_other_config", &[s, json!(snap), key, json!(ctx.now.to_string())]).await.map(|_| ())
}

/// Destroys an export snapshot and its disks.
pub async fn destroy_snapshot<T: Transport>(ctx: &Ctx<'_, T>, session: &str, snap: &str) -> Result<(), XapiError> {
    let s = json!(session);
    let rec = ctx.xapi.call("VM.get_record", &[s.clone(), json!(snap)]).await?;
    let mut vdis = Vec::new();
    for vbd in rec.get("VBDs").and_then(Value::as_array).into_iter().flatten() {
        if let Ok(vbd) = ctx.xapi.call("VBD.get_record", &[s.clone(), vbd.clone()]).await {
            let vdi = vbd.get("VDI").and_then(Value::as_str).unwrap_or("OpaqueRef:NULL");
            if vbd.get("type").and_then(Value::as_str) != Some("CD") && vdi != "OpaqueRef:NULL" {
                vdis.push(vdi.to_string());
            }
        }
    }
    ctx.xapi.call("VM.destroy", &[s.clone(), json!(snap)]).await?;
    for vdi in vdis {
        let _ = ctx.xapi.call("VDI.destroy", &[s.clone(), json!(vdi)]).await;
    }
    Ok(())
}

/// Destroys export snapshots whose heartbeat is older than `stale_after` seconds: their edge was cut off.
pub async fn sweep_stale_snapshots<T: Transport>(ctx: &Ctx<'_, T>, session: &str, stale_after: u64) {
    let expr = json!(r#"field "is_a_snapshot" = "true""#);
    let Ok(snaps) = ctx.xapi.call("VM.get_all_records_where", &[json!(session), expr]).await else { return };
    for (r, rec) in snaps.as_object().into_iter().flatten() {
        let beat = rec.get("other_config").and_then(|o| o.get(HEARTBEAT_KEY)).and_then(Value::as_str);
        if let Some(beat) = beat.and_then(|b| b.parse::<u64>().ok()) {
            if beat + stale_after < ctx.now {
                let _ = destroy_snapshot(ctx, session, r).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_compression() {
        let r = vm_route("/rest/v0/vms/770aa52a-fd42-8faf-f167-8c5c4a237a12.xva").unwrap();
        assert_eq!((r.collection.name, r.id.as_str()), ("vms", "770aa52a-fd42-8faf-f167-8c5c4a237a12"));
        assert_eq!(vm_route("/rest/v0/vm-templates/OpaqueRef:x.xva").unwrap().collection.name, "vm-templates");
        for not in ["/rest/v0/vms/x.ova", "/rest/v0/vdis/x.xva", "/rest/v0/vms/.xva", "/rest/v0/vms/a/b.xva"] {
            assert!(vm_route(not).is_none(), "{not}");
        }
        assert_eq!(compression("").unwrap(), (Compression::None, None));
        assert_eq!(compression("compress=true").unwrap().0, Compression::Gzip, "XO legacy's bug fixed");
        assert_eq!(compression("compress=zstd&compress_at=edge").unwrap(), (Compression::Zstd, Some(At::Edge)));
        assert_eq!(compression("compress=false").unwrap().0, Compression::None);
        assert_eq!(compression("compress=lz4").unwrap_err().status, 400);
        assert_eq!(compression("compress=gzip&compress_at=cloud").unwrap_err().status, 400);
    }
}
