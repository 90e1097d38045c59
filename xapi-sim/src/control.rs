//! The control API under `/_sim/`: what tests use to look inside the simulator and to inject faults.
//!
//! - `GET /_sim/stats`: object counts (VMs, snapshots, VDIs, tasks, …), live sessions, calls per method and
//!   handler requests, so a test can prove that nothing leaked and that a rejected request cost no XAPI call;
//!   `in_flight`: the calls running now, by method.
//! - `POST /_sim/stats/reset`: zero the call counters.
//! - `PUT /_sim/faults` (JSON [`FaultSpec`]) / `DELETE /_sim/faults`.
//! - `POST /_sim/sessions/expire` (`{"session": ref}` or `{}` for all).
//! - `GET /_sim/vdis/{uuid}`: size, stored bytes and the [`SparseDigest`](crate::xva::SparseDigest) of its content.
//! - `POST /_sim/vdis` (`{"name_label", "size", "zero_pct"?, "random_pct"?, "seed"?, "attach_to"?}`): a VDI on the
//!   default SR whose whole content is synthetic disk-like data (benchmarks and large-transfer tests), plugged into
//!   the VM `attach_to` (uuid or ref) when given; answers its uuid and ref.
//!
//! - `POST /_sim/perfmon`: one perfmon evaluation now (it also runs every 5 s); answers the alarms raised.
//! - `GET /_sim/hosts`: each host's URL, whether it is up and which is the master; `PUT /_sim/hosts/{uuid}/link`
//!   (`{"up"}`): a host off the network or back; `POST /_sim/failover`: an HA failover to another live host.
//!
//! Nothing here is reachable through XAPI's protocols.

use crate::disk::{SparseDisk, Synthetic};
use crate::schema;
use crate::sim::{FaultSpec, Sim};
use crate::value::Value;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as J};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn stats(State(sim): State<Arc<Sim>>) -> Json<J> {
    let db = sim.db.lock();
    let mut objects = serde_json::Map::new();
    for c in schema::CLASSES {
        objects.insert(c.to_string(), json!(db.count(c)));
    }
    let flag = |class: &str, field: &str| {
        db.all(class).filter(|(_, f)| f.get(field).and_then(Value::as_bool) == Some(true)).count()
    };
    let pending = db.all("task").filter(|(_, f)| f.get("status").and_then(Value::as_str) == Some("pending")).count();
    let stored: u64 = db.disks.values().map(|d| d.stored_bytes()).sum();
    let s = sim.stats.lock();
    let total: u64 = s.calls.values().sum();
    Json(json!({
        "objects": objects,
        "vms": db.all("VM").filter(|(_, f)| {
            !f.get("is_a_snapshot").and_then(Value::as_bool).unwrap_or(false)
                && !f.get("is_a_template").and_then(Value::as_bool).unwrap_or(false)
                && !f.get("is_control_domain").and_then(Value::as_bool).unwrap_or(false)
        }).count(),
        "vm_snapshots": flag("VM", "is_a_snapshot"),
        "enabled_hosts": flag("host", "enabled"),
        "attached_pbds": flag("PBD", "currently_attached"),
        "vdis": db.count("VDI"),
        "vdi_snapshots": flag("VDI", "is_a_snapshot"),
        "tasks": db.count("task"),
        "pending_tasks": pending,
        "sessions": sim.live_sessions(),
        "calls": s.calls,
        "total_calls": total,
        "handler_requests": s.handler_requests,
        "rpc_requests": s.rpc_requests,
        "rpc_chunked": s.rpc_chunked,
        "in_flight": s.in_flight,
        "stored_disk_bytes": stored,
    }))
}

async fn perfmon(State(sim): State<Arc<Sim>>) -> Json<J> {
    let raised = crate::perfmon::run(&sim, crate::perfmon::now());
    Json(json!(raised.into_iter().map(|(uuid, name)| json!({ "object": uuid, "variable": name })).collect::<Vec<_>>()))
}

async fn reset(State(sim): State<Arc<Sim>>) -> StatusCode {
    let mut s = sim.stats.lock();
    s.calls.clear();
    s.handler_requests.clear();
    s.rpc_requests = 0;
    s.rpc_chunked = 0;
    StatusCode::NO_CONTENT
}

async fn set_faults(State(sim): State<Arc<Sim>>, Json(spec): Json<FaultSpec>) -> StatusCode {
    *sim.faults.lock() = spec;
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    *sim.faults.lock() = FaultSpec::default();
    StatusCode::NO_CONTENT
}

async fn expire(State(sim): State<Arc<Sim>>, Json(body): Json<J>) -> Json<J> {
    let mut sessions = sim.sessions.lock();
    let long_ago = Instant::now().checked_sub(sim.config.session_timeout + Duration::from_secs(1));
    let mut n = 0;
    for (r, s) in sessions.iter_mut() {
        if body.get("session").and_then(J::as_str).is_none_or(|want| want == r) {
            if let Some(t) = long_ago {
                s.last_active = t;
            }
            n += 1;
        }
    }
    Json(json!({ "expired": n }))
}

async fn vdi(State(sim): State<Arc<Sim>>, Path(uuid): Path<String>) -> Result<Json<J>, StatusCode> {
    let disk = {
        let db = sim.db.lock();
        let r = db.ref_by_uuid(&uuid).ok_or(StatusCode::NOT_FOUND)?;
        db.disks.get(r).cloned().ok_or(StatusCode::NOT_FOUND)?
    };
    let digest = tokio::task::spawn_blocking(move || {
        json!({
            "size": disk.size(),
            "stored_bytes": disk.stored_bytes(),
            "digest": crate::xva::disk_digest(&disk),
        })
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(digest))
}

#[derive(serde::Deserialize)]
struct NewVdi {
    name_label: String,
    size: u64,
    #[serde(default = "default_zero_pct")]
    zero_pct: u8,
    #[serde(default = "default_random_pct")]
    random_pct: u8,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    attach_to: Option<String>,
}

fn default_zero_pct() -> u8 {
    20
}

fn default_random_pct() -> u8 {
    35
}

async fn create_vdi(State(sim): State<Arc<Sim>>, Json(spec): Json<NewVdi>) -> Result<Json<J>, (StatusCode, String)> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    if spec.zero_pct as u16 + spec.random_pct as u16 > 100 || spec.size == 0 || spec.size > i64::MAX as u64 {
        return Err(bad("zero_pct + random_pct must be at most 100 and size positive"));
    }
    let mut db = sim.db.lock();
    let sr = db
        .all("pool")
        .next()
        .and_then(|(_, p)| p.get("default_SR").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| bad("the pool has no default SR"))?;
    let fields = [("name_label".to_string(), Value::str(spec.name_label)), ("type".to_string(), Value::str("user"))];
    let r = crate::api::insert_vdi(&mut db, &sr, fields.into_iter().collect(), spec.size as i64, false);
    let region =
        Synthetic { start: 0, end: spec.size, seed: spec.seed, zero_pct: spec.zero_pct, random_pct: spec.random_pct };
    let disk = SparseDisk::with_synthetic(spec.size, vec![region]);
    db.set(&r, "physical_utilisation", Value::Int(disk.allocated_bytes() as i64));
    db.disks.insert(r.clone(), disk);
    if let Some(vm) = spec.attach_to {
        let vm = match db.ref_by_uuid(&vm) {
            Some(v) => v.clone(),
            None if db.get_of("VM", &vm).is_some() => vm,
            None => return Err(bad("no such VM")),
        };
        let device = db.get(&vm).and_then(|v| v.get("VBDs")).and_then(Value::as_array).map_or(0, |a| a.len());
        crate::scenario::vbd(&mut db, &vm, &r, device as u32, false);
    }
    Ok(Json(json!({ "uuid": db.field_str(&r, "uuid"), "ref": r })))
}

/// `POST /_sim/vms/<uuid>/guest_agent`: the VM's guest agent reports for the first time (the guest booted and its
/// tools run), as XAPI records it (`ocaml/xapi/xapi_guest_agent.ml`, `all`: a `VM_guest_metrics` object made and
/// linked to the VM, with the PV drivers detected). The VM must be running.
async fn guest_agent(
    State(sim): State<Arc<Sim>>,
    axum::extract::Path(uuid): axum::extract::Path<String>,
) -> Result<Json<J>, (StatusCode, String)> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    sim.write(|db| {
        let vm =
            db.ref_by_uuid(&uuid).cloned().filter(|r| db.get_of("VM", r).is_some()).ok_or_else(|| bad("no such VM"))?;
        if db.field_str(&vm, "power_state") != "Running" {
            return Err(bad("the VM is not running"));
        }
        let fields = [
            ("PV_drivers_detected", Value::Bool(true)),
            ("PV_drivers_up_to_date", Value::Bool(true)),
            ("PV_drivers_version", Value::map([("major", "9"), ("minor", "4"), ("micro", "0")])),
            ("os_version", Value::map([("name", "Linux"), ("distro", "linux")])),
        ];
        let gm = db.create("VM_guest_metrics", fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        let old = db.field_str(&vm, "guest_metrics");
        if old != crate::value::NULL_REF && !old.is_empty() {
            db.destroy(&old);
        }
        db.set(&vm, "guest_metrics", Value::str(gm.clone()));
        Ok(Json(json!({ "ref": gm })))
    })
}

/// `POST /_sim/failover`: an HA failover ([`crate::infra::fail_over`]): the master goes off the network and another
/// live host takes over. Answers the new master's uuid and URL first (the answer may be going out through the master),
/// then fails over, 50 ms later.
async fn failover(State(sim): State<Arc<Sim>>) -> Result<Json<J>, (StatusCode, String)> {
    let new = crate::infra::failover_target(&sim).ok_or((StatusCode::CONFLICT, "no other live host".to_string()))?;
    let uuid = sim.db.lock().field_str(&new, "uuid");
    let url = crate::pool_net::url_of(&sim, &new);
    let s = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        crate::infra::fail_over(&s, &new);
    });
    Ok(Json(json!({ "master": uuid, "url": url })))
}

/// `PUT /_sim/hosts/{uuid}/link` (`{"up": bool, "live"?: bool}`): takes a host off the network or puts it back;
/// nothing else about it changes (a network outage), unless `live` says whether it now runs (a failed host back up,
/// as a member of the pool).
async fn link(
    State(sim): State<Arc<Sim>>,
    axum::extract::Path(uuid): axum::extract::Path<String>,
    Json(body): Json<J>,
) -> Result<Json<J>, (StatusCode, String)> {
    let up = body.get("up").and_then(J::as_bool).ok_or((StatusCode::BAD_REQUEST, "{\"up\": bool}".to_string()))?;
    let host = sim.db.lock().ref_by_uuid(&uuid).cloned().ok_or((StatusCode::NOT_FOUND, "no such host".to_string()))?;
    if !crate::pool_net::set_link(&sim, &host, up) {
        return Err((StatusCode::NOT_FOUND, "that host has no endpoint".to_string()));
    }
    if let Some(live) = body.get("live").and_then(J::as_bool) {
        sim.write(|db| crate::infra::set_live(db, &host, live));
    }
    Ok(Json(json!({ "up": up })))
}

/// `GET /_sim/hosts`: each host's uuid, name, URL, whether it is up and whether it is the master.
async fn hosts(State(sim): State<Arc<Sim>>) -> Json<J> {
    let master = sim.master();
    let mut refs: Vec<String> = sim.endpoints.lock().keys().cloned().collect();
    let db = sim.db.lock();
    refs.sort_by_key(|h| (*h != master, db.field_str(h, "name_label")));
    Json(J::Array(
        refs.iter()
            .map(|h| {
                json!({
                    "uuid": db.field_str(h, "uuid"),
                    "name_label": db.field_str(h, "name_label"),
                    "url": crate::pool_net::url_of(&sim, h),
                    "up": crate::pool_net::is_up(&sim, h),
                    "master": *h == master,
                })
            })
            .collect(),
    ))
}

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset))
        .route("/faults", axum::routing::put(set_faults).delete(clear_faults))
        .route("/sessions/expire", post(expire))
        .route("/vdis", post(create_vdi))
        .route("/vdis/{uuid}", get(vdi))
        .route("/vms/{uuid}/guest_agent", post(guest_agent))
        .route("/perfmon", post(perfmon))
        .route("/failover", post(failover))
        .route("/hosts", get(hosts))
        .route("/hosts/{uuid}/link", axum::routing::put(link))
}
