//! Component `api`: `GET /rest/v0` (the collection list), the collections and their objects.
//!
//! Parse the route, authenticate, call the core. Everything else is in `xo_edge::rest`.

use xo_edge::error::ApiError;
use xo_edge::rest::{self, Ctx, Reply};
use xo_edge_host::wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Serves one request routed to this component.
pub async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    xo_edge_host::serve(req, out, false, |config, transport, req| async move {
        let ctx = Ctx::new(&config, &transport, xo_edge_host::now());
        match (req.method.as_str(), req.normalized_path()) {
            ("GET" | "HEAD", "/rest/v0") => rest::authenticated(&ctx, &req, rest::root::list).await,
            (_, "/rest/v0") => Reply::error(&ApiError::new(405, "method not allowed")),
            ("GET" | "HEAD", _) => {
                let req2 = req.clone();
                rest::authenticated(&ctx, &req, |ctx, caller| async move { rest::get_route(ctx, caller, &req2).await })
                    .await
            }
            // Unknown routes are only revealed to authenticated callers.
            (_, path) => {
                let path = path.to_string();
                rest::authenticated(&ctx, &req, |_, _| async move {
                    Err(ApiError::not_found(format!("no such route {path}")))
                })
                .await
            }
        }
    })
    .await
}

#[cfg(feature = "component")]
xo_edge_host::export_handler!(handle);
