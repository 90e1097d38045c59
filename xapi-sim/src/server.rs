//! The HTTP front: routes XAPI's endpoints and the simulator's own control API.
//!
//! `POST /jsonrpc` is JSON-RPC; `POST` to any other unregistered path (`/`, `/RPC2`) is XML-RPC, as on XAPI;
//! malformed RPC requests get XAPI's HTML 500. `/export`, `/export_raw_vdi` and `/import_raw_vdi` (with or without a
//! trailing slash) are the HTTP handlers. `/_sim/...` is the control API for tests (faults, counters, disk
//! digests); it is not part of XAPI and no xo-edge code may call it.

use crate::pool_net::Here;
use crate::sim::Sim;
use crate::{api, control, handlers, jsonrpc, xmlrpc};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use axum::routing::{get, post, put};
use axum::Extension;
use axum::Router;
use std::sync::Arc;

fn malformed() -> Response<Body> {
    let mut r = Response::new(Body::from(
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.</body></html>",
    ));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Counts an RPC request, and whether its body was chunked (no `Content-Length`).
fn count_rpc(sim: &Sim, headers: &HeaderMap) {
    let mut s = sim.stats.lock();
    s.rpc_requests += 1;
    if !headers.contains_key(header::CONTENT_LENGTH) {
        s.rpc_chunked += 1;
    }
}

/// A call counted in [`crate::sim::Stats::in_flight`] while it runs.
struct InFlight<'a> {
    sim: &'a Sim,
    method: String,
}

impl<'a> InFlight<'a> {
    fn new(sim: &'a Sim, method: &str) -> Self {
        *sim.stats.lock().in_flight.entry(method.to_string()).or_default() += 1;
        InFlight { sim, method: method.to_string() }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.sim.stats.lock();
        if let Some(n) = s.in_flight.get_mut(&self.method) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.in_flight.remove(&self.method);
            }
        }
    }
}

/// Runs a call to its end even if the client hangs up first, as XAPI does: each call runs in a thread of its own
/// that does not watch the client's socket (`ocaml/xapi/api_server.ml`, `callback`, called from the HTTP server's
/// per-connection thread), so a client that gave up on a slow call still gets its effect on the pool.
async fn run_to_end(
    sim: &Arc<Sim>,
    method: String,
    params: Vec<crate::value::Value>,
) -> Result<crate::value::Value, crate::sim::XapiError> {
    let sim = sim.clone();
    match tokio::spawn(async move {
        let _running = InFlight::new(&sim, &method);
        api::call(&sim, &method, params).await
    })
    .await
    {
        Ok(result) => result,
        Err(e) => Err(crate::sim::XapiError::new("INTERNAL_ERROR", &[&e.to_string()])),
    }
}

/// What a host that is not the master answers instead of running a call: logins and calls with an ordinary
/// session get `HOST_IS_SLAVE`, an unknown session `SESSION_INVALID` (`ocaml/xapi/session_check.ml`, `check`: the
/// session is looked up first); `system.*` needs no session and is answered anywhere.
fn refused_here(sim: &Sim, here: &Here, method: &str, params: &[crate::value::Value]) -> Option<crate::sim::XapiError> {
    let refusal = sim.slave_refusal(&here.0)?;
    if method.starts_with("system.") {
        return None;
    }
    if method.starts_with("session.login") {
        return Some(refusal);
    }
    let session = params.first().cloned().unwrap_or(crate::value::Value::str(""));
    match sim.session(&session) {
        Ok(_) => Some(refusal),
        Err(e) => Some(e),
    }
}

async fn jsonrpc_endpoint(
    State(sim): State<Arc<Sim>>,
    Extension(here): Extension<Here>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    count_rpc(&sim, &headers);
    let req = match jsonrpc::parse(&body) {
        Ok(r) => r,
        Err(_) => return malformed(),
    };
    let result = match refused_here(&sim, &here, &req.method, &req.params) {
        Some(e) => Err(e),
        None => run_to_end(&sim, req.method.clone(), req.params.clone()).await,
    };
    let mut r = Response::new(Body::from(jsonrpc::reply(&req, &result).to_string()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn xmlrpc_endpoint(
    State(sim): State<Arc<Sim>>,
    Extension(here): Extension<Here>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    if method != Method::POST {
        let mut r = Response::new(Body::from("<html><body><h1>HTTP 404 not found</h1></body></html>"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    count_rpc(&sim, &headers);
    let Ok(text) = std::str::from_utf8(&body) else {
        return malformed();
    };
    let (name, params) = match xmlrpc::parse_call(text) {
        Ok(c) => c,
        Err(_) => return malformed(),
    };
    let result = match refused_here(&sim, &here, &name, &params) {
        Some(e) => Err(e),
        None => run_to_end(&sim, name.clone(), params).await,
    };
    let xml = match result {
        // XAPI sends this one reply bare, without the `Status`/`Value` struct (`api_server.ml`, `callback`).
        Ok(v) if name == "system.listMethods" => xmlrpc::bare(&v),
        Ok(v) => xmlrpc::success(&v),
        Err(e) => xmlrpc::failure(&e.0),
    };
    let mut r = Response::new(Body::from(xml));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

async fn rrd_updates(
    State(sim): State<Arc<Sim>>,
    Extension(here): Extension<Here>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response<Body> {
    crate::rrd::rrd_updates(sim, &here, q, headers).await
}

/// The router of one host of the simulated pool (`here`): XAPI's endpoints as that host answers them, and the
/// control API.
pub fn router(sim: Arc<Sim>, here: Here) -> Router {
    Router::new()
        .route("/jsonrpc", post(jsonrpc_endpoint))
        .route("/export", get(handlers::export))
        .route("/export/", get(handlers::export))
        .route("/export_raw_vdi", get(handlers::export_raw_vdi))
        .route("/export_raw_vdi/", get(handlers::export_raw_vdi))
        .route("/import_raw_vdi", put(handlers::import_raw_vdi))
        .route("/import_raw_vdi/", put(handlers::import_raw_vdi))
        .route("/import", put(handlers::import))
        .route("/import/", put(handlers::import))
        .route("/rrd_updates", get(rrd_updates))
        .route("/audit_log", get(handlers::audit_log))
        .route("/host_logs_download", get(handlers::host_logs_download))
        .nest("/_sim", control::router())
        .fallback(xmlrpc_endpoint)
        .layer(Extension(here))
        .with_state(sim)
}

/// Binds every host of the pool, the master on `listener` ([`crate::pool_net::bind`]); fails if an address is
/// taken.
pub async fn bind(
    sim: &Arc<Sim>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<Vec<(String, crate::pool_net::HostListener)>> {
    crate::pool_net::bind(sim, listener).await
}

/// Serves every bound host of `sim` until the process ends.
pub async fn serve(sim: Arc<Sim>, hosts: Vec<(String, crate::pool_net::HostListener)>) -> std::io::Result<()> {
    // perfmon: alarms by thresholds, evaluated every RRD step while the server runs.
    let s = sim.clone();
    let perfmon = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(crate::perfmon::STEP as u64));
        loop {
            every.tick().await;
            crate::perfmon::run(&s, crate::perfmon::now());
        }
    });
    let mut served = tokio::task::JoinSet::new();
    for (host, listener) in hosts {
        let app = router(sim.clone(), Here(host));
        served.spawn(async move { axum::serve(listener, app).await });
    }
    let mut result = Ok(());
    while let Some(done) = served.join_next().await {
        if let Ok(Err(e)) = done {
            result = Err(e);
        }
    }
    perfmon.abort();
    result
}
