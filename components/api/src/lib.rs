//! Component `api`: `GET /rest/v0` (the collection list), the collections and their objects, and edits of them.
//!
//! Parse the route, authenticate, call the core. Everything else is in `xo_edge::rest`.

use xo_edge::rest::{self, Ctx};
use xo_edge_host::wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Serves one request routed to this component.
pub async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    xo_edge_host::serve(req, out, true, |config, transport, req| async move {
        let ctx = Ctx::new(&config, &transport, xo_edge_host::now());
        rest::api(&ctx, &req).await
    })
    .await
}

#[cfg(feature = "component")]
xo_edge_host::export_handler!(handle);
