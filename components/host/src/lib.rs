//! The host layer every component shares: how xo-edge's runtime-free core meets a WASI 0.2 HTTP host (every
//! released Spin, SpinKube, Fermyon-compatible hosts, `wasmtime serve`).
//!
//! - [`export_handler!`] exports a component's handler as `wasi:http/incoming-handler@0.2.0`, run by
//!   [`spin_executor::run`] (the executor spin-sdk 5 uses: one future, blocking in `wasi:io/poll`).
//! - [`WasiTransport`] implements the core's XAPI [`Transport`] with `wasi:http/outgoing-handler`, bounded by
//!   `xapi_timeout`.
//! - [`load_config`] reads the configuration from Spin application variables (`fermyon:spin/variables@2.0.0`), or,
//!   without the `spin-variables` feature (the single-component `bundle`), from `XO_EDGE_*` environment variables.
//! - [`store`] opens the store instances share (login throttling): Spin's key-value store, or a directory.
//! - [`request_head`] / [`read_body`] read the client's request; [`response`] answers it; [`log_line`] writes the
//!   one log line per request (never a token, password or session ref) in one write.
//!
//! No REST logic lives here.

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use xo_edge::config::Config;
use xo_edge::error::ApiError;
use xo_edge::rest::{self, Reply};
use xo_edge::xapi::rpc::HttpAnswer;
use xo_edge::xapi::{Transport, TransportError};

pub mod import;
pub mod io;
pub mod outbound;
pub mod response;
pub mod store;
pub mod transfer;
pub mod vm_import;

pub use spin_executor::run;
pub use wasi;

/// Largest request body read into memory (JSON requests only; disks are streamed elsewhere).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Exports `$handler` (an `async fn(IncomingRequest, ResponseOutparam)`) as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        struct Component;
        impl $crate::wasi::exports::http::incoming_handler::Guest for Component {
            fn handle(
                request: $crate::wasi::http::types::IncomingRequest,
                out: $crate::wasi::http::types::ResponseOutparam,
            ) {
                $crate::run($handler(request, out))
            }
        }
        $crate::wasi::http::proxy::export!(Component with_types_in $crate::wasi);
    };
}

thread_local! {
    /// Where the pool's master answers, once a call of this request found it elsewhere than `xapi_url`
    /// (`HOST_IS_SLAVE`, or `xapi_url` not answering). An instance serves one request, so this lives as long as the
    /// request: every transport of the request (an export's cleanup, a snapshot's heartbeat) goes straight there.
    static MASTER: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// The pool's host addresses this request's token knew, tried when the master does not answer.
    static CANDIDATES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The base URL of the pool's master for this request: `xapi_url`, or where a call found the master since.
pub fn master_base(config: &Config) -> String {
    MASTER.with(|m| m.borrow().clone()).unwrap_or_else(|| config.xapi_url.clone())
}

/// XAPI over `wasi:http/outgoing-handler`.
pub struct WasiTransport {
    /// `xapi_url` and the `pool_hosts` pattern: where requests may go.
    fence: xo_edge::xapi::pool::Fence,
    xapi_url: String,
    /// Seconds a call may take (`xapi_timeout`).
    pub timeout: u64,
    /// When the request began (the transport is made per request).
    pub started: Instant,
    /// The shared store, opened when first needed (a password login).
    store: std::cell::OnceCell<Option<Box<dyn xo_edge::auth::throttle::Store>>>,
}

impl WasiTransport {
    pub fn new(config: &Config) -> Self {
        WasiTransport {
            fence: config.fence.clone(),
            xapi_url: config.xapi_url.clone(),
            timeout: config.xapi_timeout,
            started: Instant::now(),
            store: std::cell::OnceCell::new(),
        }
    }
}

impl Transport for WasiTransport {
    async fn post_json(&self, path: &str, body: Vec<u8>, patience: u64) -> Result<(u16, Vec<u8>), TransportError> {
        let deadline = io::Deadline::after(self.timeout.saturating_add(patience));
        let length = body.len().to_string();
        let headers: [(&str, &[u8]); 2] =
            [("content-type", b"application/json"), ("content-length", length.as_bytes())];
        let request =
            outbound::request(Method::Post, &self.base(), path, &headers).map_err(TransportError::Unreachable)?;
        let answer = request.send_whole(&body, deadline).await.map_err(transport_error)?;
        let bytes = answer.read_all(usize::MAX, deadline).await.map_err(transport_error)?;
        Ok((answer.status, bytes))
    }

    async fn get(&self, base: &str, path: &str, cookie: &str) -> Result<HttpAnswer, TransportError> {
        let deadline = io::Deadline::after(self.timeout);
        let headers: [(&str, &[u8]); 1] = [("cookie", cookie.as_bytes())];
        let request = outbound::request(Method::Get, base, path, &headers).map_err(TransportError::Unreachable)?;
        let answer = request.send_whole(&[], deadline).await.map_err(transport_error)?;
        let body = answer.read_all(64 << 20, deadline).await.map_err(transport_error)?;
        Ok(HttpAnswer { status: answer.status, location: answer.location.clone(), body })
    }

    async fn put(&self, base: &str, path: &str, cookie: &str, body: Vec<u8>) -> Result<HttpAnswer, TransportError> {
        let deadline = io::Deadline::after(self.timeout);
        let length = body.len().to_string();
        let headers: [(&str, &[u8]); 2] = [("cookie", cookie.as_bytes()), ("content-length", length.as_bytes())];
        let request = outbound::request(Method::Put, base, path, &headers).map_err(TransportError::Unreachable)?;
        // XAPI answers (a 200, or a 302 to another host) before it reads the body: nothing is sent before that.
        let mut sending = request.start().map_err(transport_error)?;
        let head = sending.head(deadline).await.map_err(transport_error)?;
        if head.status != 200 {
            let location = head.location.clone();
            let status = head.status;
            let _ = sending.end(false, deadline).await;
            return Ok(HttpAnswer { status, location, body: Vec::new() });
        }
        io::write_all(&sending.stream, &body).await.map_err(|e| TransportError::Unreachable(format!("{e:?}")))?;
        let answer = sending.end(true, deadline).await.map_err(transport_error)?;
        let _ = answer.read_all(1 << 20, deadline).await;
        Ok(HttpAnswer { status: answer.status, location: None, body: Vec::new() })
    }

    fn host_base(&self, address: &str) -> Result<String, String> {
        self.fence.host_base(address)
    }

    fn retarget(&self, address: &str) -> Result<(), String> {
        let base = self.fence.host_base(address)?;
        MASTER.with(|m| *m.borrow_mut() = Some(base));
        Ok(())
    }

    fn base(&self) -> String {
        MASTER.with(|m| m.borrow().clone()).unwrap_or_else(|| self.xapi_url.clone())
    }

    fn candidates(&self) -> Vec<String> {
        let known = CANDIDATES.with(|c| c.borrow().clone());
        if known.is_empty() {
            self.fence.addresses()
        } else {
            known
        }
    }

    fn set_candidates(&self, addresses: Vec<String>) {
        CANDIDATES.with(|c| *c.borrow_mut() = addresses);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn sleep_ms(&self, ms: u64) {
        if ms > 0 {
            wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
        }
    }

    fn shared_store(&self) -> Option<&dyn xo_edge::auth::throttle::Store> {
        self.store.get_or_init(store::open).as_deref()
    }
}

fn transport_error(e: outbound::SendError) -> TransportError {
    match e {
        outbound::SendError::Timeout => TransportError::Timeout,
        outbound::SendError::Failed(why) => TransportError::Unreachable(why),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// The configuration, from the source this build uses.
pub fn load_config() -> Result<Config, ApiError> {
    Config::from_lookup(lookup)
}

#[cfg(feature = "spin-variables")]
fn lookup(key: &str) -> Option<String> {
    spin_sdk::variables::get(key).ok()
}

#[cfg(not(feature = "spin-variables"))]
fn lookup(key: &str) -> Option<String> {
    std::env::var(xo_edge::config::env_name(key)).ok()
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.to_ascii_uppercase(),
    }
}

/// Whether the host adds `spin-client-addr` to every request (Spin does, after whatever the client sent). Where it
/// does not (the bundle under plain wasi:http hosts), the header can only be the client's own and is dropped, so
/// that nobody can pose as another client to the login throttle.
const HOST_SETS_CLIENT_ADDR: bool = cfg!(feature = "spin-variables");

/// The core's view of a request's method, path, query and headers (no body).
pub fn request_head(req: &IncomingRequest) -> rest::Request {
    // Values that are not UTF-8 are kept (lossily), never dropped: a non-ASCII Authorization must be refused, not
    // ignored.
    let mut headers: Vec<(String, String)> = req
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .filter(|(k, _)| HOST_SETS_CLIENT_ADDR || k != "spin-client-addr")
        .collect();
    if !headers.iter().any(|(k, _)| k == "host") {
        if let Some(authority) = req.authority() {
            headers.push(("host".into(), authority));
        }
    }
    let target = req.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    rest::Request {
        method: method_name(&req.method()),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    }
}

/// Reads a small request body (JSON endpoints), at most [`MAX_JSON_BODY`] bytes.
pub async fn read_body(req: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::new(413, format!("request body larger than {MAX_JSON_BODY} bytes"));
    let body = req.consume().map_err(|()| ApiError::internal("the request body was already read"))?;
    let stream = body.stream().map_err(|()| ApiError::internal("the request body was already read"))?;
    let mut all = Vec::new();
    while let Some(bytes) =
        io::read(&stream, 64 * 1024, None).await.map_err(|e| ApiError::bad_request(format!("request body: {e:?}")))?
    {
        all.extend_from_slice(&bytes);
        if all.len() > MAX_JSON_BODY {
            return Err(too_large());
        }
    }
    Ok(all)
}

/// Logs one line for a finished request: method, path, status, bytes, milliseconds. Formatted whole, written once.
pub fn log_line(method: &str, path: &str, status: u16, bytes: usize, started: Instant) {
    let line = format!("{method} {path} {status} {bytes}B {}ms\n", started.elapsed().as_millis());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A request's log line, written when its answer is over.
pub struct Log {
    pub method: String,
    pub path: String,
    pub started: Instant,
    /// Seconds the client may take nothing before an answer's write gives up (`client_timeout`, once the
    /// configuration is known).
    pub idle: Option<u64>,
}

impl Log {
    pub fn new(req: &rest::Request) -> Log {
        Log { method: req.method.clone(), path: req.path.clone(), started: Instant::now(), idle: None }
    }

    /// The same log, its answers bounded by the configuration's `client_timeout`.
    pub fn with(mut self, config: &Config) -> Log {
        self.idle = Some(config.client_timeout);
        self
    }

    pub fn line(&self, status: u16, bytes: usize) {
        log_line(&self.method, &self.path, status, bytes, self.started);
    }

    /// Answers a core reply and logs it (a body the client did not take whole logs as 499).
    pub async fn answer(&self, out: ResponseOutparam, reply: Reply) {
        self.answer_with(out, reply, None).await
    }

    /// Like [`answer`](Self::answer), with the configuration a streamed answer may need to reach XAPI.
    /// A plan the reply carries runs once the answer is sent and logged ([`rest::plans`]).
    pub async fn answer_with(&self, out: ResponseOutparam, mut reply: Reply, config: Option<&Config>) {
        let status = reply.status;
        let plan = match reply.stream.take() {
            Some(rest::Stream::Plan(plan)) => Some(plan),
            other => {
                reply.stream = other;
                None
            }
        };
        let (bytes, whole) = response::send(out, reply, self.idle, config).await;
        self.line(if whole { status } else { 499 }, bytes);
        if let (Some(plan), Some(config)) = (plan, config) {
            let transport = WasiTransport::new(config);
            let _ = plan.run(&rest::Ctx::new(config, &transport, now())).await;
        }
    }
}

/// Runs a JSON component's handler with configuration and transport, logging the request.
pub async fn serve<F, Fut>(req: IncomingRequest, out: ResponseOutparam, with_body: bool, handler: F)
where
    F: FnOnce(Config, WasiTransport, rest::Request) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut head = request_head(&req);
    let mut log = Log::new(&head);
    let mut kept = None;
    let reply = match load_config() {
        Err(e) => Reply::error(&e),
        Ok(config) => {
            log = log.with(&config);
            kept = Some(config.clone());
            let body = if with_body && !matches!(head.method.as_str(), "GET" | "HEAD") {
                read_body(&req).await
            } else {
                Ok(Vec::new())
            };
            match body {
                Err(e) => Reply::error(&e),
                Ok(body) => {
                    head.body = body;
                    let transport = WasiTransport::new(&config);
                    handler(config, transport, head).await
                }
            }
        }
    };
    drop(req);
    log.answer_with(out, reply, kept.as_ref()).await;
}
