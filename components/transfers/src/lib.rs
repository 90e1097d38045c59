//! Component `transfers`: the routes whose bodies are disks or VMs.
//! - `GET|HEAD /rest/v0/vdis/<id>.vhd|.raw` (and `vdi-snapshots`): disk export.
//! - `PUT /rest/v0/vdis/<id>.vhd|.raw`: import into an existing VDI.
//! - `POST /rest/v0/srs/<id>/vdis[?raw&name_label=…&name_description=…&size=…]`: import onto an SR as a new VDI.
//! - `GET|HEAD /rest/v0/vms/<id>.xva[?compress=…]` (and `vm-snapshots`, `vm-templates`): VM export.
//! - `POST /rest/v0/pools/<id>/vms[?sr=…&size=…]`: VM import from an XVA.
//! - `GET /rest/v0/hosts/<id>/audit.txt|logs.tgz`: a host's audit log and logs archive.
//!
//! Authenticate, let the core plan the transfer, let the host layer stream it. Bodies never go through the core's
//! `Reply`: the host layer splices or checks them between WASI streams.

use xo_edge::error::ApiError;
use xo_edge::rest::collections::plausible_id;
use xo_edge::rest::{auth, Ctx, Reply};
use xo_edge::transfer::export::{self, Plan};
use xo_edge::transfer::{host_logs, import, vm_export, vm_import};
use xo_edge_host::wasi::http::types::{IncomingRequest, ResponseOutparam};
use xo_edge_host::{Log, WasiTransport};

/// Serves one request routed to this component.
pub async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let core_req = xo_edge_host::request_head(&request);
    let log = Log::new(&core_req);
    let config = match xo_edge_host::load_config() {
        Ok(c) => c,
        Err(e) => return log.answer(out, Reply::error(&e)).await,
    };
    let log = log.with(&config);
    let transport = WasiTransport::new(&config);
    let ctx = Ctx::new(&config, &transport, xo_edge_host::now());
    let mut caller = match auth::authenticate(&ctx, &core_req).await {
        Ok(c) => c,
        Err(e) => return log.answer(out, Reply::error(&e)).await,
    };
    let (method, path) = (core_req.method.as_str(), core_req.path.as_str());
    // A transfer cannot simply run again once under way: a token whose XAPI session is gone gets a new one before
    // (when it may: `auth::recover`), for ids that can name an object at all (others are refused without XAPI).
    let ids = transfer_ids(method, path, &core_req.query);
    if !ids.is_empty() && ids.iter().all(|id| plausible_id(id)) {
        caller = match auth::live(&ctx, &core_req, caller).await {
            Ok(c) => c,
            Err(e) => return log.answer(out, Reply::error(&e)).await,
        };
    }
    let release = || async {
        if caller.basic {
            let _ = ctx.xapi.logout(&caller.session).await;
        }
    };

    if let Some(route) = import::import_route(method, path, &core_req.query) {
        let upload = match import::read_upload(&core_req, route) {
            Ok(u) => u,
            Err(e) => {
                xo_edge_host::import::refuse(&request, config.client_timeout).await;
                release().await;
                return log.answer(out, Reply::error(&e)).await;
            }
        };
        return xo_edge_host::import::import(config.clone(), log, caller, upload, request, out).await;
    }
    if let Some(pool) = vm_import::vm_import_route(path) {
        if method != "POST" {
            release().await;
            let e = ApiError::new(405, format!("{method} is not supported on {path}: POST an XVA to import a VM"));
            return log.answer(out, Reply::error(&e).with_header("allow", "POST")).await;
        }
        return match vm_import::read_vm_upload(&core_req, pool) {
            Ok(upload) => xo_edge_host::vm_import::import_vm(config.clone(), log, caller, upload, request, out).await,
            Err(e) => {
                xo_edge_host::import::refuse(&request, config.client_timeout).await;
                release().await;
                log.answer(out, Reply::error(&e)).await
            }
        };
    }
    if let Some((id, file)) = host_logs::host_file_route(path) {
        if method != "GET" {
            release().await;
            let e = ApiError::new(405, format!("{method} is not supported on {path}"));
            return log.answer(out, Reply::error(&e).with_header("allow", "GET")).await;
        }
        return match host_logs::plan_host_file(&ctx, &caller, &core_req, &id, file).await {
            Err(e) => {
                release().await;
                log.answer(out, Reply::error(&e)).await
            }
            Ok(mut plan) => {
                plan.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
                xo_edge_host::transfer::export(config.clone(), log, plan, out).await
            }
        };
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
                log.answer(out, Reply::error(&e)).await
            }
            Ok(Plan::Reply(mut reply)) => {
                release().await;
                reply.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
                log.answer(out, reply).await
            }
            Ok(Plan::Stream(mut plan)) => {
                plan.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
                xo_edge_host::transfer::export(config.clone(), log, plan, out).await
            }
        };
    }
    let Some(route) = export::disk_route(path) else {
        release().await;
        let e = if path.trim_end_matches('/').ends_with("/vdis") {
            ApiError::new(405, format!("{method} is not supported on {path}: POST a disk to import it"))
        } else {
            ApiError::not_found(format!("no such route {path}"))
        };
        return log.answer(out, Reply::error(&e)).await;
    };
    if method != "GET" && method != "HEAD" {
        release().await;
        return log
            .answer(out, Reply::error(&ApiError::new(405, format!("{method} is not supported on {path}"))))
            .await;
    }
    match export::plan_vdi_export(&ctx, &caller, &core_req, &route).await {
        Err(e) => {
            release().await;
            log.answer(out, Reply::error(&e)).await
        }
        Ok(Plan::Reply(mut reply)) => {
            release().await;
            reply.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
            log.answer(out, reply).await
        }
        Ok(Plan::Stream(mut plan)) => {
            plan.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
            xo_edge_host::transfer::export(config.clone(), log, plan, out).await
        }
    }
}

/// The object ids a transfer route names (the disk, VM, SR, pool or host; an XVA import's `sr=` too).
fn transfer_ids(method: &str, path: &str, query: &str) -> Vec<String> {
    if let Some(route) = import::import_route(method, path, query) {
        return vec![match route.target {
            import::Target::NewOn(id) | import::Target::Into(id) => id,
        }];
    }
    if let Some(pool) = vm_import::vm_import_route(path) {
        let sr = xo_edge::query::params::pairs(query).into_iter().find(|(k, _)| k == "sr").map(|(_, v)| v);
        return std::iter::once(pool).chain(sr).collect();
    }
    if let Some((id, _)) = host_logs::host_file_route(path) {
        return vec![id];
    }
    if let Some(route) = vm_export::vm_route(path) {
        return vec![route.id];
    }
    export::disk_route(path).map(|r| vec![r.id]).unwrap_or_default()
}

#[cfg(feature = "component")]
xo_edge_host::export_handler!(handle);
