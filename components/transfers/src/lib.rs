//! Component `transfers`: the routes whose bodies are disks or VMs, `GET|HEAD /rest/v0/vdis/<id>.vhd|.raw` (and
//! `vdi-snapshots`).
//!
//! Authenticate, let the core plan the transfer, let the host layer stream it. Bodies never go through the core's
//! `Reply`: this component answers WASI responses so that XAPI's body stream can be handed on untouched.

use spin_sdk::http::Request;
use spin_sdk::wasip3::http::types;
use std::time::Instant;
use xo_edge::error::ApiError;
use xo_edge::rest::{auth, Ctx};
use xo_edge::transfer::export::{self, Plan};
use xo_edge_host::transfer::{error_response, reply_response};
use xo_edge_host::{log_line, now, SpinTransport};

/// Serves one request routed to this component.
pub async fn handle(req: Request) -> types::Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let answer = |e: ApiError| {
        log_line(&method, &path, e.status, 0, started);
        error_response(&e)
    };
    let config = match xo_edge_host::load_config().await {
        Ok(c) => c,
        Err(e) => return answer(e),
    };
    let core_req = match xo_edge_host::read_request(req, false).await {
        Ok(r) => r,
        Err(e) => return answer(e),
    };
    let transport = SpinTransport { base: config.xapi_url.clone() };
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
    let Some(route) = export::disk_route(&path) else {
        release().await;
        return answer(ApiError::not_found(format!("no such route {path}")));
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
            log_line(&method, &path, reply.status, reply.body.len(), started);
            reply_response(reply)
        }
        Ok(Plan::Stream(mut plan)) => {
            plan.headers.extend(caller.refresh_cookie.clone().map(|c| ("set-cookie".to_string(), c)));
            xo_edge_host::transfer::export(config.clone(), method.clone(), path.clone(), plan).await
        }
    }
}

#[cfg(feature = "component")]
#[spin_sdk::http_service]
async fn entry(req: Request) -> Result<types::Response, types::ErrorCode> {
    Ok(handle(req).await)
}
