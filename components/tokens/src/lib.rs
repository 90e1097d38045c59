//! Component `tokens`: `POST /rest/v0/users/authentication_tokens` (Basic credentials → a signed token and its
//! cookie) and `DELETE /rest/v0/users/me/authentication_tokens/current` (revocation).

use xo_edge::rest::{self, Ctx};
use xo_edge_host::wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Serves one request routed to this component.
pub async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    xo_edge_host::serve(req, out, true, |config, transport, req| async move {
        let ctx = Ctx::new(&config, &transport, xo_edge_host::now());
        rest::tokens::route(&ctx, &req).await
    })
    .await
}

#[cfg(feature = "component")]
xo_edge_host::export_handler!(handle);
