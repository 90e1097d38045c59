//! The host layer every component shares: how xo-edge's runtime-free core meets Spin.
//!
//! - [`SpinTransport`] implements the core's XAPI [`Transport`] with Spin's outbound HTTP.
//! - [`load_config`] reads the configuration from Spin application variables, or (without the `spin-variables`
//!   feature, for the single-component `bundle`) from `XO_EDGE_*` environment variables.
//! - [`read_request`] / [`into_response`] convert between Spin's HTTP types and the core's.
//! - [`log_line`] writes the one log line per request (never a token, password or session ref).
//!
//! No REST logic lives here.

use bytes::Bytes;
use futures::SinkExt;
use http_body_util::{BodyExt, Full, Limited};
use spin_sdk::http::{box_body, BoxBody, Request, Response};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use xo_edge::config::Config;
use xo_edge::error::ApiError;
use xo_edge::rest::{self, Reply};
use xo_edge::xapi::{Transport, TransportError};

pub mod import;
pub mod transfer;

/// Largest request body read into memory (JSON requests only; disks are streamed elsewhere).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// XAPI over Spin's outbound HTTP.
pub struct SpinTransport {
    pub base: String,
    /// Seconds a call may take (`xapi_timeout`).
    pub timeout: u64,
}

impl SpinTransport {
    pub fn new(config: &Config) -> Self {
        SpinTransport { base: config.xapi_url.clone(), timeout: config.xapi_timeout }
    }
}

/// Runs `work`, or gives up with [`TransportError::Timeout`] after `seconds`.
pub async fn within<T>(
    seconds: u64,
    work: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let limit = spin_sdk::time::sleep(std::time::Duration::from_secs(seconds));
    match futures::future::select(std::pin::pin!(work), std::pin::pin!(limit)).await {
        futures::future::Either::Left((done, _)) => done,
        futures::future::Either::Right(_) => Err(TransportError::Timeout),
    }
}

impl Transport for SpinTransport {
    async fn post_json(&self, path: &str, body: Vec<u8>, patience: u64) -> Result<(u16, Vec<u8>), TransportError> {
        let req = http::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        within(self.timeout.saturating_add(patience), async {
            let resp = spin_sdk::http::send(req).await.map_err(|e| TransportError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes =
                resp.into_body().collect().await.map_err(|e| TransportError::Unreachable(e.to_string()))?.to_bytes();
            Ok((status, bytes.to_vec()))
        })
        .await
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The configuration, from the source this build uses.
pub async fn load_config() -> Result<Config, ApiError> {
    let mut values = Vec::new();
    for (key, _) in xo_edge::config::KEYS {
        if let Some(v) = lookup(key).await {
            values.push((key.to_string(), v));
        }
    }
    Config::from_lookup(|k| values.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
}

#[cfg(feature = "spin-variables")]
async fn lookup(key: &str) -> Option<String> {
    spin_sdk::variables::get(key).await.ok()
}

#[cfg(not(feature = "spin-variables"))]
async fn lookup(key: &str) -> Option<String> {
    std::env::var(xo_edge::config::env_name(key)).ok()
}

/// Converts a Spin request into the core's, reading a small body when `with_body` (JSON endpoints).
pub async fn read_request(req: Request, with_body: bool) -> Result<rest::Request, ApiError> {
    let (parts, body) = req.into_parts();
    let body = if with_body {
        Limited::new(body, MAX_JSON_BODY)
            .collect()
            .await
            .map_err(|_| ApiError::new(413, format!("request body larger than {MAX_JSON_BODY} bytes")))?
            .to_bytes()
            .to_vec()
    } else {
        Vec::new()
    };
    Ok(rest::Request { body, ..request_head(&parts) })
}

/// The core's view of a request's method, path, query and headers (no body).
pub fn request_head(parts: &http::request::Parts) -> rest::Request {
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
        .collect();
    rest::Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body: Vec::new(),
    }
}

/// Converts the core's reply into a Spin response. A listing is streamed: a task writes it chunk by chunk while
/// the response is already on its way, so a 10 000-object answer is never built whole.
pub fn into_response(reply: Reply) -> Response<BoxBody> {
    let mut builder = http::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = match reply.stream {
        Some(mut listing) => {
            let (mut tx, body) = spin_sdk::http::body::stream::<Vec<u8>>();
            spin_sdk::wit_bindgen::spawn(async move {
                while let Some(chunk) = listing.next_chunk() {
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
            });
            box_body(body)
        }
        None => box_body(Full::new(Bytes::from(reply.body))),
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = http::Response::new(box_body(Full::new(Bytes::from_static(b"{\"error\":\"invalid response\"}"))));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// Logs one line for a finished request: method, path, status, bytes, milliseconds.
pub fn log_line(method: &str, path: &str, status: u16, bytes: usize, started: Instant) {
    eprintln!("{method} {path} {status} {bytes}B {}ms", started.elapsed().as_millis());
}

/// Runs a component's handler with configuration and transport, logging the request.
pub async fn serve<F, Fut>(req: Request, with_body: bool, handler: F) -> Response<BoxBody>
where
    F: FnOnce(Config, SpinTransport, rest::Request) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let reply = match load_config().await {
        Err(e) => Reply::error(&e),
        Ok(config) => match read_request(req, with_body).await {
            Err(e) => Reply::error(&e),
            Ok(core_req) => {
                let transport = SpinTransport::new(&config);
                handler(config, transport, core_req).await
            }
        },
    };
    // Streamed listings log their status here; their size is not known yet.
    log_line(&method, &path, reply.status, reply.body.len(), started);
    into_response(reply)
}
