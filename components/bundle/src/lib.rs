//! Component `bundle`: every route of `spin.toml` in one component.
//!
//! The route table is `spin.toml` itself, embedded at build time and matched with Spin's rules
//! (`xo_edge::routes`), so the bundle cannot drift from the per-route app: a route whose component the bundle
//! does not link answers a 500 that names it (and the end-to-end tests fail). Configuration comes from
//! `XO_EDGE_*` environment variables (`wasmtime serve --env`), since plain wasi:http hosts have no Spin variables.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::wasip3::http::types;
use std::sync::OnceLock;
use xo_edge::error::ApiError;
use xo_edge::rest::Reply;
use xo_edge::routes::{self, Route};

const MANIFEST: &str = include_str!("../../../spin.toml");

fn table() -> &'static [Route] {
    static TABLE: OnceLock<Vec<Route>> = OnceLock::new();
    TABLE.get_or_init(|| routes::parse_manifest(MANIFEST).unwrap_or_default())
}

#[spin_sdk::http_service]
async fn entry(req: Request) -> Result<types::Response, types::ErrorCode> {
    let path = req.uri().path().to_string();
    match routes::find(table(), &path).map(|r| r.component.as_str()) {
        Some("api") => xo_edge_api::handle(req).await.into_response(),
        Some("tokens") => xo_edge_tokens::handle(req).await.into_response(),
        Some("transfers") => Ok(xo_edge_transfers::handle(req).await),
        Some(other) => Ok(xo_edge_host::transfer::reply_response(Reply::error(&ApiError::internal(format!(
            "route {path} belongs to component {other}, which this bundle does not include"
        ))))),
        None => Ok(xo_edge_host::transfer::reply_response(Reply::error(&ApiError::not_found(format!(
            "no route for {path}"
        ))))),
    }
}
