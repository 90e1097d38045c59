//! Component `transfers`: the routes whose bodies are disks or VMs.
//! - `GET|HEAD /rest/v0/vdis/<id>.vhd|.raw` (and `vdi-snapshots`): disk export.
//! - `PUT /rest/v0/vdis/<id>.vhd|.raw`: import into an existing VDI.
//! - `POST /rest/v0/srs/<id>/vdis[?raw&name_label=…&name_description=…&size=…]`: import onto an SR as a new VDI.
//! - `GET|HEAD /rest/v0/vms/<id>.xva[?compress=…]` (and `vm-snapshots`, `vm-templates`): VM export.
//!
//! Authenticate, let the core plan the transfer, let the host layer stream it. Bodies never go through the core's
//! `Reply`: this component answers WASI responses so that streams can be handed on untouched.

use spin_sdk::http::Request;
use spin_sdk::wasip3::http::types;
use std::time::Instant;
use xo_edge::error::ApiError;
use xo_edge::rest::{auth, Ctx};
use xo_edge::transfer::export::{self, Plan};
use xo_edge::transfer::{import, vm_export};
use xo_edge_host::transfer::{error_response, reply_response, Log};
use xo_edge_host::{now, SpinTransport};

/// Serves one request routed to this component.
pub async fn handle(req: Request) -> types::Response {
    let (parts, mut body) = req.into_parts();
    let core_req = xo_edge_host::request_head(&parts);
    let log = Log { method: core_req.method.clone(), path: core_req.path.clone(), started: Instant::now() };
    let answer = |e: ApiError| {
        log.line(e.status, 0);
        error_response(&e)
    };
    let config = match xo_edge_host::load_config().await {
        Ok(c) => c,
        Err(e) => return answer(e),
    };
    let transport = SpinTransport::new(&config);
    let ctx = Ctx::new(&config, &transport, now());
    let caller = match auth::authenticate(&ctx, &core_req).await {
        Ok(c) => c,
        Err(e) => return answer(e),
    };
    let release = || async {
        if caller.basic {
            let _ = ctx.xapi.logout(&caller.session).await;
        }
    };
    let (method, path) = (core_req.method.as_str(), core_req.path.as_str());

    if let Some(route) = import::import_route(method, path, &core_req.query) {
        let Some(request) = body.take_unstarted() else {
            release().await;
            return answer(ApiError::internal("the request body was already read"));
        };
        let upload = match import::read_upload(&core_req, route) {
            Ok(u) => u,
            Err(e) => {
                xo_edge_host::import::refuse(request).await;
                release().await;
                return answer(e);
            }
        };
        return xo_edge_host::import::import(config.clone(), log, caller, upload, request).await;
    }
    if let Some(route) = vm_export::vm_route(path) {
        let plan = match method {
            "GET" => vm_export::plan_vm_export(&ctx, &caller, &core_req, &route).await.map(Plan::Stream),
            "HEAD" => vm_export::head_vm_export(&ctx, &caller, &core_req, &route).await.map(Plan::Reply),
            _ => Err(ApiError::new(405, format!("{method} is not supported on {path}"))),
        };
        return match plan {
            Err(e) => {
                release().await;
                answer(e)
            }
            Ok(Plan::Reply(reply)) => {
                release().await;
                log.line(reply.status, 0);
                reply_response(reply)
            }
            Ok(Plan::Stream(plan)) => xo_edge_host::transfer::export(config.clone(), log, plan).await,
        };
    }
    let Some(route) = export::disk_route(path) else {
        release().await;
        let e = if path.trim_end_matches('/').ends_with("/vdis") {
            ApiError::new(405, format!("{method} is not supported on {path}: POST a disk to import it"))
        } else {
            ApiError::not_found(format!("no such route {path}"))
        };
        return answer(e);
    };
    if method != "GET" && method != "HEAD" {
        release().await;
        return answer(ApiError::new(405, format!("{method} is not supported on {path}")));
    }
    match export::plan_vdi_export(&ctx, &caller, &core_req, &route).await {
        Err(e) => {
            release().await;
            answer(e)
        }
        Ok(Plan::Reply(mut reply)) => {
            release().await;
            reply.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
            log.line(reply.status, reply.body.len());
            reply_response(reply)
        }
        Ok(Plan::Stream(mut plan)) => {
            plan.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
            xo_edge_host::transfer::export(config.clone(), log, plan).await
        }
    }
}

#[cfg(feature = "component")]
#[spin_sdk::http_service]
async fn entry(req: Request) -> Result<types::Response, types::ErrorCode> {
    Ok(handle(req).await)
}
