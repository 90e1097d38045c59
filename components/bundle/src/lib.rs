//! Component `bundle`: every route of `spin.toml` in one component.
//!
//! The route table is `spin.toml` itself, embedded at build time and matched with Spin's rules
//! (`xo_edge::routes`), so the bundle cannot drift from the per-route app: a route whose component the bundle
//! does not link answers a 500 that names it (and the end-to-end tests fail). Configuration comes from
//! `XO_EDGE_*` environment variables (`wasmtime serve --env`), since plain wasi:http hosts have no Spin variables.

use std::sync::OnceLock;
use xo_edge::error::ApiError;
use xo_edge::rest::Reply;
use xo_edge::routes::{self, Route};
use xo_edge_host::wasi::http::types::{IncomingRequest, ResponseOutparam};

const MANIFEST: &str = include_str!("../../../spin.toml");

fn table() -> &'static [Route] {
    static TABLE: OnceLock<Vec<Route>> = OnceLock::new();
    TABLE.get_or_init(|| routes::parse_manifest(MANIFEST).unwrap_or_default())
}

async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let head = xo_edge_host::request_head(&request);
    match routes::find(table(), &head.path).map(|r| r.component.as_str()) {
        Some("api") => xo_edge_api::handle(request, out).await,
        Some("tokens") => xo_edge_tokens::handle(request, out).await,
        Some("transfers") => xo_edge_transfers::handle(request, out).await,
        Some(other) => {
            let e = ApiError::internal(format!(
                "route {} belongs to component {other}, which this bundle does not include",
                head.path
            ));
            xo_edge_host::Log::new(&head).answer(out, Reply::error(&e)).await
        }
        None => {
            let e = ApiError::not_found(format!("no route for {}", head.path));
            xo_edge_host::Log::new(&head).answer(out, Reply::error(&e)).await
        }
    }
}

xo_edge_host::export_handler!(handle);
