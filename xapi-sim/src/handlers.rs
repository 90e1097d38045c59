//! XAPI's HTTP handlers: `GET /export` (XVA), `GET /export_raw_vdi` (raw or VHD), `PUT /import_raw_vdi`, `PUT /import`
//! (XVA, read by [`crate::import`]).
//!
//! Each accepts `session_id` (query or cookie) or HTTP Basic credentials (a temporary session), and `task_id`
//! (query or cookie; without one the handler runs under a task of its own, destroyed at the end). As on XAPI,
//! success headers are sent before the work starts and exports have no Content-Length and a close-delimited
//! body, so failures after the headers only show on the task (and as a cut body). Injected faults (cut the
//! stream after N bytes, an `HTTP/1.1 500` inside a 200 body, latency, throttling, failing the Nth request) are
//! applied here. Formats are produced by `xva` and `xo_edge::formats::vhd`; this module does the HTTP.

use crate::api::{cancel_requested, complete_task, create_task, fail_task, set_cancellable};
use crate::disk::SparseDisk;
use crate::sim::{Role, Sim, XapiError};
use crate::value::Value;
use crate::xva;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode, Version};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use xo_edge::formats::vhd::{DynamicLayout, PushError, VhdEvent, VhdStreamParser, MAX_VHD_SIZE, VHD_EPOCH_OFFSET};

type Params = HashMap<String, String>;

/// Where a handler request arrived: the host it reached, and the request's path and query (kept as sent for a
/// redirect). An extractor: the host comes from the router's [`crate::pool_net::Here`] extension.
pub struct At {
    pub here: crate::pool_net::Here,
    pub uri: axum::http::Uri,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for At {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let here =
            parts.extensions.get::<crate::pool_net::Here>().cloned().unwrap_or(crate::pool_net::Here(String::new()));
        Ok(At { here, uri: parts.uri.clone() })
    }
}

/// The state and query extractors every handler takes.
type SimState = axum::extract::State<Arc<Sim>>;
type QueryOf = Query<Params>;

/// What a handler needs to see to serve a request here: the storage of a VDI, of a VM's disks, or an SR (the
/// pool's default one when `None`).
enum Needs<'a> {
    Nothing,
    Vdi(&'a str),
    Vm(&'a str),
    Sr(Option<&'a str>),
}

/// Where a request is served.
enum Where {
    Here,
    /// At another host: a `302` to this URL.
    There(String),
    /// Nowhere: no live host sees the storage.
    Nowhere,
}

/// The SRs a request needs ([`Needs`]); empty when its object is unknown (the handler then fails as it would).
fn needed_srs(db: &crate::db::Db, needs: &Needs) -> Vec<String> {
    let find = |class: &str, key: &str| -> Option<String> {
        if db.get_of(class, key).is_some() {
            return Some(key.to_string());
        }
        db.ref_by_uuid(key).filter(|r| db.get_of(class, r).is_some()).cloned()
    };
    match needs {
        Needs::Nothing => Vec::new(),
        Needs::Vdi(key) => find("VDI", key).map(|v| db.field_str(&v, "SR")).into_iter().collect(),
        Needs::Sr(Some(key)) => find("SR", key).into_iter().collect(),
        Needs::Sr(None) => db
            .all("pool")
            .next()
            .and_then(|(_, p)| p.get("default_SR").and_then(Value::as_str))
            .filter(|sr| db.get_of("SR", sr).is_some())
            .map(str::to_string)
            .into_iter()
            .collect(),
        Needs::Vm(key) => {
            let Some(vm) = find("VM", key) else { return Vec::new() };
            let vm_rec = db.get(&vm).cloned().unwrap_or_default();
            // `Xapi_vm_helpers.assert_can_see_SRs`: the VDIs of its non-empty VBDs, and a suspended VM's image.
            let mut vdis: Vec<String> = vm_rec
                .get("VBDs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| b.as_str().and_then(|b| db.get(b)))
                .filter(|b| b.get("empty").and_then(Value::as_bool) != Some(true))
                .filter_map(|b| b.get("VDI").and_then(Value::as_str).map(str::to_string))
                .collect();
            if vm_rec.get("power_state").and_then(Value::as_str) == Some("Suspended") {
                vdis.push(db.field_str(&vm, "suspend_VDI"));
            }
            let mut srs: Vec<String> =
                vdis.iter().filter(|v| db.get_of("VDI", v).is_some()).map(|v| db.field_str(v, "SR")).collect();
            srs.sort();
            srs.dedup();
            srs
        }
    }
}

/// Whether `host` sees every SR of `srs`: a plugged PBD of each (`Xapi_vm_helpers.assert_can_see_specified_SRs`).
fn sees(db: &crate::db::Db, host: &str, srs: &[String]) -> bool {
    srs.iter().all(|sr| {
        db.all("PBD").any(|(_, p)| {
            p.get("host").and_then(Value::as_str) == Some(host)
                && p.get("SR").and_then(Value::as_str) == Some(sr.as_str())
                && p.get("currently_attached").and_then(Value::as_bool) == Some(true)
        })
    })
}

/// Where a request needing `needs` is served, as XAPI decides it (`ocaml/xapi/importexport.ml`,
/// `check_sr_availability` then `find_host_for_sr`; `export.ml`, `check_vm_host_SRs` then `find_host_for_VM`): here
/// if this host sees the storage, else at a live host that does (its URL, the same path and query: `importexport.ml`,
/// `return_302_redirect`).
fn route(sim: &Sim, at: &At, needs: &Needs) -> Where {
    if at.here.0.is_empty() {
        return Where::Here;
    }
    let path_and_query = at.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let forced = sim.faults.lock().redirect.get(at.uri.path().trim_end_matches('/')).cloned();
    if let Some(target) = forced {
        let base = if target == "next" {
            let hosts: Vec<String> = sim.endpoints.lock().keys().cloned().collect();
            let next = hosts.iter().position(|h| *h == at.here.0).map(|i| hosts[(i + 1) % hosts.len()].clone());
            next.and_then(|h| crate::pool_net::url_of(sim, &h)).unwrap_or_default()
        } else {
            target
        };
        return Where::There(format!("{base}{path_and_query}"));
    }
    let (target, srs) = {
        let db = sim.db.lock();
        let srs = needed_srs(&db, needs);
        if srs.is_empty() || sees(&db, &at.here.0, &srs) {
            return Where::Here;
        }
        let mut hosts: Vec<String> = db
            .all("host")
            .map(|(r, _)| r.clone())
            .filter(|h| crate::infra::is_live(&db, h) && sees(&db, h, &srs))
            .collect();
        hosts.sort_by_key(|h| db.field_str(h, "name_label"));
        (hosts.into_iter().next(), srs)
    };
    let _ = srs;
    match target.and_then(|h| crate::pool_net::url_of(sim, &h)) {
        Some(base) => Where::There(format!("{base}{path_and_query}")),
        None => Where::Nowhere,
    }
}

/// Reads (up to 1 MiB of) what a refused upload's client is still sending, after the answer has gone: XAPI answers
/// a refusal (or a redirect) before it reads any of the body, and a client that waits for the answer before it
/// sends must get it; one that sent already must not have its connection reset under the answer.
fn drain_later(body: Body) {
    tokio::spawn(async move {
        let _ = axum::body::to_bytes(body, 1 << 20).await;
    });
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn html(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let mut r =
        Response::new(Body::from(format!("<html><body><h1>HTTP {} {title}</h1>{text}</body></html>", status.as_u16())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

fn unauthorized() -> Response<Body> {
    let mut r = html(StatusCode::UNAUTHORIZED, "unauthorised", "Authorisation failed.");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"xapi\""));
    r
}

fn internal_error(e: &XapiError) -> Response<Body> {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error",
        &format!(
            "An unexpected error occurred; please wait a while and try again.<h1> Additional information </h1>{}",
            e.0.join(" ")
        ),
    )
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    })
}

fn param(q: &Params, headers: &HeaderMap, name: &str) -> Option<String> {
    q.get(name).cloned().or_else(|| cookie(headers, name))
}

/// The session and task a handler works under, and what it must clean up.
struct Ctx {
    sim: Arc<Sim>,
    session: String,
    temp_session: bool,
    task: String,
    own_task: bool,
}

impl Ctx {
    /// Ends the handler's work: records the outcome on the task (or destroys its own task) and logs out a
    /// temporary session.
    fn finish(&self, outcome: Result<Value, XapiError>) {
        self.sim.active_tasks.lock().remove(&self.task);
        self.sim.write(|db| {
            if self.own_task {
                db.destroy(&self.task);
            } else if cancel_requested(db, &self.task) {
                fail_task(db, &self.task, &XapiError::new("TASK_CANCELLED", &[&self.task]));
            } else {
                match outcome {
                    Ok(v) => complete_task(db, &self.task, &v),
                    Err(e) => fail_task(db, &self.task, &e),
                }
            }
        });
        if self.temp_session {
            self.sim.logout(&self.session);
        }
    }

    fn cancelled(&self) -> bool {
        cancel_requested(&self.sim.db.lock(), &self.task)
    }

    /// Records a transfer's progress on its task (`fraction` of the expected bytes, below 1 until it ends).
    fn progress(&self, fraction: f64) {
        let value = Value::Float((fraction.clamp(0.0, 0.99) * 100.0).floor() / 100.0);
        self.sim.write(|db| {
            if db.get(&self.task).and_then(|t| t.get("status")).and_then(Value::as_str) == Some("pending") {
                db.set(&self.task, "progress", value);
            }
        });
    }
}

/// Authenticates and sets up the task, or answers as XAPI does (401 HTML, 403 for RBAC).
async fn begin(
    sim: &Arc<Sim>,
    at: &At,
    needs: Needs<'_>,
    path: &str,
    q: &Params,
    headers: &HeaderMap,
) -> Result<Ctx, Response<Body>> {
    *sim.stats.lock().handler_requests.entry(path.to_string()).or_default() += 1;
    let (session, temp) = if let Some(s) = param(q, headers, "session_id") {
        (s, false)
    } else if let Some((user, pass)) = basic(headers) {
        match sim.login(&user, &pass, "http-basic") {
            Ok(s) => (s, true),
            Err(_) => return Err(unauthorized()),
        }
    } else {
        return Err(unauthorized());
    };
    let s = match sim.session(&Value::str(session.clone())) {
        Ok(s) => s,
        Err(_) => return Err(unauthorized()),
    };
    if s.role == Role::ReadOnly {
        if temp {
            sim.logout(&session);
        }
        return Err(html(StatusCode::FORBIDDEN, "forbidden", "Access denied."));
    }
    // Decided before the task is touched: a redirected request's task is the client's to carry to the other host.
    let place = route(sim, at, &needs);
    if let Where::There(location) = &place {
        if temp {
            sim.logout(&session);
        }
        return Err(redirect(location));
    }
    let (task, own) = match param(q, headers, "task_id") {
        Some(t) => {
            if sim.db.lock().get_of("task", &t).is_none() {
                if temp {
                    sim.logout(&session);
                }
                return Err(internal_error(&XapiError::new("HANDLE_INVALID", &["task", &t])));
            }
            (t, false)
        }
        None => (sim.write(|db| create_task(db, path, "")), true),
    };
    sim.active_tasks.lock().insert(task.clone());
    sim.write(|db| set_cancellable(db, &task));
    let ctx = Ctx { sim: sim.clone(), session, temp_session: temp, task, own_task: own };
    if let Where::Nowhere = place {
        // No live host sees the storage (`Xapi_vm_helpers.choose_host` finds none).
        let e = XapiError::new("NO_HOSTS_AVAILABLE", &[]);
        ctx.finish(Err(e.clone()));
        return Err(internal_error(&e));
    }
    if let Err(e) = sim.before_call(path, false).await {
        ctx.finish(Err(e.clone()));
        return Err(internal_error(&e));
    }
    Ok(ctx)
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A `Write` that feeds the response body channel, applying the cut and throttle faults and noticing
/// cancellation and client disconnects.
struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    sent: u64,
    cut_after: Option<u64>,
    throttle: Option<u64>,
    started: Instant,
    ctx: Arc<Ctx>,
    next_cancel_check: u64,
}

const BODY_CHUNK: usize = 256 * 1024;

impl BodyWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.buf);
        let mut cut = false;
        if let Some(limit) = self.cut_after {
            if self.sent + data.len() as u64 >= limit {
                data.truncate(limit.saturating_sub(self.sent) as usize);
                cut = true;
            }
        }
        self.sent += data.len() as u64;
        if !data.is_empty() && self.tx.blocking_send(Ok(Bytes::from(data))).is_err() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "client disconnected"));
        }
        if cut {
            let _ = self.tx.blocking_send(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "injected cut")));
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "stream cut by fault injection"));
        }
        if let Some(rate) = self.throttle.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        if self.sent >= self.next_cancel_check {
            self.next_cancel_check = self.sent + 16 * 1024 * 1024;
            if self.ctx.cancelled() {
                // Not `ErrorKind::Interrupted`: `write_all` retries those.
                return Err(io::Error::other(TaskCancelled));
            }
        }
        Ok(())
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BODY_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Counts the bytes of a transfer's (uncompressed) stream and reports each whole percent of `total` on the
/// task, as XAPI's export and import code does.
struct Progress<W> {
    inner: W,
    done: u64,
    total: u64,
    reported: u64,
    ctx: Arc<Ctx>,
}

impl<W> Progress<W> {
    fn new(inner: W, total: u64, ctx: Arc<Ctx>) -> Self {
        Progress { inner, done: 0, total: total.max(1), reported: 0, ctx }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        let percent = (self.done * 100 / self.total).min(99);
        if percent > self.reported {
            self.reported = percent;
            self.ctx.progress(percent as f64 / 100.0);
        }
    }
}

impl<W: Write> Write for Progress<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The error a transfer stops with when its task is cancelled.
#[derive(Debug)]
struct TaskCancelled;

impl std::fmt::Display for TaskCancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("task cancelled")
    }
}

impl std::error::Error for TaskCancelled {}

fn io_to_xapi(e: &io::Error) -> XapiError {
    if e.get_ref().is_some_and(|i| i.is::<TaskCancelled>()) {
        return XapiError::new("TASK_CANCELLED", &[]);
    }
    match e.kind() {
        io::ErrorKind::BrokenPipe => XapiError::new("CLIENT_ERROR", &["client disconnected"]),
        _ => XapiError::new("VDI_IO_ERROR", &[&e.to_string()]),
    }
}

/// Starts a close-delimited `HTTP/1.0 200` whose body is produced by `produce` on a blocking thread.
fn stream_response(
    ctx: Ctx,
    path: &str,
    headers: Vec<(&'static str, String)>,
    produce: impl FnOnce(&mut BodyWriter) -> io::Result<Value> + Send + 'static,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let (cut_after, throttle, error_in_body) = {
        let f = ctx.sim.faults.lock();
        (
            f.cut_after.get(path).copied(),
            f.throttle_bytes_per_sec.get(path).copied(),
            f.http_error_in_body.contains(path),
        )
    };
    let ctx = Arc::new(ctx);
    let task = ctx.task.clone();
    let worker_ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        if error_in_body {
            let msg = "HTTP/1.1 500 Internal Error\r\ncontent-length: 0\r\n\r\n";
            let _ = tx.blocking_send(Ok(Bytes::from_static(msg.as_bytes())));
            worker_ctx.finish(Err(XapiError::new("INTERNAL_ERROR", &["HTTP 500 inside the response body"])));
            return;
        }
        let mut w = BodyWriter {
            tx,
            buf: Vec::with_capacity(BODY_CHUNK),
            sent: 0,
            cut_after,
            throttle,
            started: Instant::now(),
            ctx: worker_ctx.clone(),
            next_cancel_check: 16 * 1024 * 1024,
        };
        let outcome = produce(&mut w).and_then(|v| w.flush().map(|()| v));
        worker_ctx.finish(outcome.map_err(|e| io_to_xapi(&e)));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Response::new(Body::from_stream(stream));
    *r.version_mut() = Version::HTTP_10;
    let h = r.headers_mut();
    h.insert("task-id", HeaderValue::from_str(&task).unwrap_or(HeaderValue::from_static("")));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r
}

/// `GET /audit_log[?since=…]` (`ocaml/xapi/audit_log.ml`, `handler`): the audit lines, `text/plain`.
///
/// The audit log is the master's: other hosts send their lines there (`ocaml/xapi/xapi_http.ml`,
/// `append_to_master_audit_log`), so another host's is empty.
pub async fn audit_log(State(sim): SimState, at: At, Query(q): QueryOf, headers: HeaderMap) -> Response<Body> {
    let ctx = match begin(&sim, &at, Needs::Nothing, "/audit_log", &q, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let on_master = sim.slave_refusal(&at.here.0).is_none();
    let text = if on_master {
        crate::hostlogs::audit_since(&sim, q.get("since").map(String::as_str).unwrap_or(""))
    } else {
        String::new()
    };
    stream_response(ctx, "/audit_log", vec![("content-type", "text/plain".to_string())], move |w| {
        w.write_all(text.as_bytes())?;
        Ok(Value::str(""))
    })
}

/// `GET /host_logs_download` (`ocaml/xapi/xapi_logs_download.ml`, `logs_download_handler`): the logs archive.
pub async fn host_logs_download(State(sim): SimState, at: At, Query(q): QueryOf, headers: HeaderMap) -> Response<Body> {
    let ctx = match begin(&sim, &at, Needs::Nothing, "/host_logs_download", &q, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // The host's own logs: the audit lines are on the master only.
    let on_master = sim.slave_refusal(&at.here.0).is_none();
    let audit = if on_master { crate::hostlogs::audit_since(&sim, "") } else { String::new() };
    stream_response(ctx, "/host_logs_download", Vec::new(), move |w| {
        w.write_all(&crate::hostlogs::archive(&audit)?)?;
        Ok(Value::str(""))
    })
}

/// Finds an object of `class` by ref or uuid.
fn lookup(sim: &Sim, class: &str, key: &str) -> Result<String, XapiError> {
    let db = sim.db.lock();
    if db.get_of(class, key).is_some() {
        return Ok(key.to_string());
    }
    match db.ref_by_uuid(key) {
        Some(r) if db.get_of(class, r).is_some() => Ok(r.clone()),
        _ if key.starts_with("OpaqueRef:") => Err(XapiError::new("HANDLE_INVALID", &[class, key])),
        _ => Err(XapiError::new("UUID_INVALID", &[class, key])),
    }
}

/// Fails the request before any header: records the error on the task, answers `status`.
fn early_fail(ctx: Ctx, e: XapiError, status: StatusCode) -> Response<Body> {
    ctx.finish(Err(e.clone()));
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        internal_error(&e)
    } else {
        html(status, status.canonical_reason().unwrap_or(""), &e.0.join(" "))
    }
}

/// `GET /export?ref=|uuid=&use_compression=`: the VM as an XVA.
pub async fn export(State(sim): SimState, at: At, Query(q): QueryOf, headers: HeaderMap) -> Response<Body> {
    let key = q.get("ref").or_else(|| q.get("uuid")).cloned().unwrap_or_default();
    let ctx = match begin(&sim, &at, Needs::Vm(&key), "/export", &q, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let vm = match lookup(&sim, "VM", &key) {
        Ok(v) => v,
        Err(e) => return early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR),
    };
    let compression = match q.get("use_compression").map(String::as_str) {
        Some("true" | "gzip") => Some("gzip"),
        Some("zstd") => Some("zstd"),
        _ => None,
    };
    let preserve = q.get("preserve_power_state").is_some_and(|v| v == "true");
    let checked = {
        let db = sim.db.lock();
        let rec = db.get(&vm).cloned().unwrap_or_default();
        let state = rec.get("power_state").and_then(Value::as_str).unwrap_or_default().to_string();
        let zstd_restricted = db
            .all("pool")
            .next()
            .and_then(|(_, p)| p.get("restrictions").and_then(|r| r.get("restrict_zstd_export")).cloned())
            .is_some_and(|v| v.as_str() == Some("true"));
        if rec.get("is_control_domain").and_then(Value::as_bool) == Some(true) {
            Err(XapiError::new("OPERATION_NOT_ALLOWED", &["Operations on the control domain are not allowed"]))
        } else if let Some(reason) = rec.get("blocked_operations").and_then(|b| b.get("export")) {
            Err(XapiError::new("OPERATION_BLOCKED", &[&vm, reason.as_str().unwrap_or("")]))
        } else if state != "Halted" && state != "Suspended" {
            Err(XapiError::new("VM_BAD_POWER_STATE", &[&vm, "halted", &state.to_ascii_lowercase()]))
        } else if compression == Some("zstd") && zstd_restricted {
            Err(XapiError::new("FEATURE_RESTRICTED", &["zstd_export"]))
        } else {
            Ok(xva::plan(&db, &vm, preserve))
        }
    };
    let plan = match checked {
        Ok(p) => p,
        Err(e) => return early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR),
    };
    let headers = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("content-disposition", "attachment; filename=\"export.xva\"".to_string()),
    ];
    // The XVA's size, near enough for progress: its non-zero chunks.
    let total: u64 = plan.disks.iter().map(|(_, d)| d.allocated_bytes()).sum::<u64>() + plan.ova_xml.len() as u64;
    stream_response(ctx, "/export", headers, move |w| {
        let ctx = w.ctx.clone();
        match compression {
            Some("gzip") => {
                let mut enc = flate2::write::GzEncoder::new(&mut *w, flate2::Compression::fast());
                xva::write(&plan, Progress::new(&mut enc, total, ctx))?;
                enc.finish()?;
            }
            Some(_) => {
                let mut enc = zstd::Encoder::new(&mut *w, 1)?;
                xva::write(&plan, Progress::new(&mut enc, total, ctx))?;
                enc.finish()?;
            }
            None => xva::write(&plan, Progress::new(&mut *w, total, ctx))?,
        }
        Ok(Value::str(""))
    })
}

/// `GET /export_raw_vdi?vdi=&format=raw|vhd`.
pub async fn export_raw_vdi(State(sim): SimState, at: At, Query(q): QueryOf, headers: HeaderMap) -> Response<Body> {
    let needs = Needs::Vdi(q.get("vdi").map(String::as_str).unwrap_or(""));
    let ctx = match begin(&sim, &at, needs, "/export_raw_vdi", &q, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let format = q.get("format").map(String::as_str).unwrap_or("raw").to_string();
    if format != "raw" && format != "vhd" {
        return early_fail(ctx, XapiError::new("INTERNAL_ERROR", &["Unknown format"]), StatusCode::NOT_FOUND);
    }
    let vdi = match lookup(&sim, "VDI", q.get("vdi").map(String::as_str).unwrap_or("")) {
        Ok(v) => v,
        Err(e) => return early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR),
    };
    let (disk, uuid) = {
        let db = sim.db.lock();
        (db.disks.get(&vdi).cloned().unwrap_or_default(), db.field_str(&vdi, "uuid"))
    };
    if format == "vhd" && disk.size() > MAX_VHD_SIZE {
        return early_fail(
            ctx,
            XapiError::new("VDI_TOO_LARGE", &[&vdi, &MAX_VHD_SIZE.to_string()]),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    }
    let content_type = if format == "vhd" { "application/vhd" } else { "application/octet-stream" };
    let headers = vec![
        ("content-type", content_type.to_string()),
        ("content-disposition", format!("attachment; filename=\"{uuid}.{format}\"")),
    ];
    let uuid_bytes = *uuid::Uuid::parse_str(&uuid).unwrap_or_default().as_bytes();
    stream_response(ctx, "/export_raw_vdi", headers, move |w| {
        let ctx = w.ctx.clone();
        if format == "vhd" {
            let total = disk.allocated_bytes();
            write_vhd(&disk, uuid_bytes, &mut Progress::new(w, total, ctx))?;
        } else {
            let total = disk.size();
            write_raw(&disk, &mut Progress::new(w, total, ctx))?;
        }
        Ok(Value::str(""))
    })
}

fn write_raw(disk: &SparseDisk, w: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < disk.size() {
        let len = (1u64 << 20).min(disk.size() - off) as usize;
        if disk.range_nonzero(off, len as u64) {
            disk.read(off, &mut buf[..len]);
            w.write_all(&buf[..len])?;
        } else {
            buf[..len].fill(0);
            w.write_all(&buf[..len])?;
        }
        off += len as u64;
    }
    Ok(())
}

fn write_vhd(disk: &SparseDisk, uuid: [u8; 16], w: &mut impl Write) -> io::Result<()> {
    let block = u64::from(xo_edge::formats::vhd::DEFAULT_BLOCK_SIZE);
    let blocks: Vec<u32> =
        (0..disk.size().div_ceil(block)).filter(|b| disk.range_nonzero(b * block, block)).map(|b| b as u32).collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let ts = now.saturating_sub(VHD_EPOCH_OFFSET) as u32;
    let layout = DynamicLayout::new(disk.size(), blocks, uuid, ts);
    w.write_all(&layout.prefix())?;
    let bitmap = layout.full_bitmap();
    let mut buf = vec![0u8; block as usize];
    for &b in &layout.blocks {
        w.write_all(&bitmap)?;
        disk.read(u64::from(b) * block, &mut buf);
        w.write_all(&buf)?;
    }
    w.write_all(&layout.footer.to_bytes())
}

/// `PUT /import_raw_vdi?vdi=|sr_id=&format=raw|vhd`: writes the body onto the VDI.
pub async fn import_raw_vdi(
    State(sim): SimState,
    at: At,
    Query(q): QueryOf,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    match prepare_import(&sim, &at, &q, &headers).await {
        Ok(prepared) => transfer_import(sim, prepared, body).await,
        Err(refusal) => {
            drain_later(body);
            refusal
        }
    }
}

/// An import accepted by [`prepare_import`].
struct PreparedImport {
    ctx: Ctx,
    vdi: String,
    format: String,
    length: Option<u64>,
    created: bool,
}

/// Checks an import's request and finds (or creates, raw onto an SR) its VDI; the refusal answer otherwise.
async fn prepare_import(
    sim: &Arc<Sim>,
    at: &At,
    q: &Params,
    headers: &HeaderMap,
) -> Result<PreparedImport, Response<Body>> {
    // `import_raw_vdi.ml`, `import`: the VDI's SR, or the SR named; decided before the body is read.
    let needs = match (q.get("vdi"), q.get("sr_id").or_else(|| q.get("sr_uuid"))) {
        (Some(v), _) => Needs::Vdi(v),
        (None, Some(sr)) => Needs::Sr(Some(sr)),
        (None, None) => Needs::Nothing,
    };
    let ctx = begin(sim, at, needs, "/import_raw_vdi", q, headers).await?;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(early_fail(
            ctx,
            XapiError::new("INTERNAL_ERROR", &["Cannot handle encoding"]),
            StatusCode::NOT_FOUND,
        ));
    }
    let format = q.get("format").map(String::as_str).unwrap_or("raw").to_string();
    if format != "raw" && format != "vhd" {
        return Err(early_fail(ctx, XapiError::new("INTERNAL_ERROR", &["Unknown format"]), StatusCode::NOT_FOUND));
    }
    let length: Option<u64> =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut created = false;
    let vdi = if let Some(v) = q.get("vdi") {
        match lookup(sim, "VDI", v) {
            Ok(v) => v,
            Err(e) => return Err(early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR)),
        }
    } else if let Some(sr) = q.get("sr_id").or_else(|| q.get("sr_uuid")) {
        if format != "raw" {
            return Err(early_fail(
                ctx,
                XapiError::new("INTERNAL_ERROR", &["Not yet supported"]),
                StatusCode::BAD_REQUEST,
            ));
        }
        let sr = match lookup(sim, "SR", sr) {
            Ok(s) => s,
            Err(e) => return Err(early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR)),
        };
        let record = Value::Map(vec![
            ("name_label".into(), Value::str("Imported VDI")),
            ("SR".into(), Value::str(sr)),
            ("virtual_size".into(), Value::Int(length.unwrap_or(0) as i64)),
            ("type".into(), Value::str("user")),
            ("sharable".into(), Value::Bool(false)),
            ("read_only".into(), Value::Bool(false)),
            ("other_config".into(), Value::empty_map()),
        ]);
        match sim.write(|db| crate::api::vdi_create(db, &record)) {
            Ok(v) => {
                created = true;
                v.as_str().unwrap_or_default().to_string()
            }
            Err(e) => return Err(early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR)),
        }
    } else {
        return Err(early_fail(ctx, XapiError::new("VDI_MISSING", &[]), StatusCode::BAD_REQUEST));
    };
    Ok(PreparedImport { ctx, vdi, format, length, created })
}

/// Receives an accepted import's body onto its VDI. As XAPI does (`ocaml/xapi/import_raw_vdi.ml`,
/// `localhost_handler`), the `200` header (with `task-id`, no length, the connection closed at the end) goes out
/// before the body is read, so a client that probes the handler with an empty body (XO's `putResource`) gets its
/// answer; a failure after it only shows on the task and as a dropped connection.
async fn transfer_import(sim: Arc<Sim>, prepared: PreparedImport, body: Body) -> Response<Body> {
    let task = prepared.ctx.task.clone();
    let (done, outcome) = tokio::sync::oneshot::channel::<bool>();
    tokio::spawn(async move {
        let PreparedImport { ctx, vdi, format, length, created } = prepared;
        let cut_after = sim.faults.lock().cut_after.get("/import_raw_vdi").copied();
        let ok = match receive(&sim, &ctx, &vdi, &format, length, cut_after, body).await {
            Ok(()) => {
                ctx.finish(Ok(Value::str(vdi)));
                true
            }
            Err(Cut(e)) => {
                if created {
                    let _ = sim.write(|db| crate::api::vdi_destroy(db, &vdi));
                }
                ctx.finish(Err(e));
                false
            }
        };
        let _ = done.send(ok);
    });
    accepted_import(&task, outcome)
}

/// An import handler's answer, sent before the body is read: `200` (HTTP/1.0, `task-id`, no length) whose body ends
/// when the import does, cleanly on success, as a dropped connection on failure.
fn accepted_import(task: &str, outcome: tokio::sync::oneshot::Receiver<bool>) -> Response<Body> {
    let end = futures_util::stream::once(async move {
        match outcome.await {
            Ok(true) => Ok(Bytes::new()),
            _ => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "import failed")),
        }
    });
    let mut r = Response::new(Body::from_stream(end));
    *r.version_mut() = Version::HTTP_10;
    r.headers_mut().insert("task-id", HeaderValue::from_str(task).unwrap_or(HeaderValue::from_static("")));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    r
}

/// An import failure after the (virtual) 200 header.
struct Cut(XapiError);

async fn receive(
    sim: &Arc<Sim>,
    ctx: &Ctx,
    vdi: &str,
    format: &str,
    length: Option<u64>,
    cut_after: Option<u64>,
    body: Body,
) -> Result<(), Cut> {
    let size = sim.db.lock().disks.get(vdi).map_or(0, SparseDisk::size);
    if format == "raw" {
        if let Some(l) = length.filter(|l| *l > size) {
            return Err(Cut(XapiError::new("VDI_IO_ERROR", &[&format!("{l} bytes do not fit a {size}-byte VDI")])));
        }
    }
    let mut parser = (format == "vhd").then(|| VhdStreamParser::new(length));
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    let mut reported = 0;
    let write = |offset: u64, data: &[u8]| -> Result<(), String> {
        let mut db = sim.db.lock();
        let disk = db.disks.get_mut(vdi).ok_or("VDI disappeared")?;
        disk.write(offset, data)
    };
    while let Some(frame) = stream.next().await {
        let data = frame.map_err(|e| Cut(XapiError::new("VDI_IO_ERROR", &[&format!("receive failed: {e}")])))?;
        let data = &data[..];
        if let Some(limit) = cut_after {
            if received + data.len() as u64 >= limit {
                return Err(Cut(XapiError::new("VDI_IO_ERROR", &["connection cut by fault injection"])));
            }
        }
        if ctx.cancelled() {
            return Err(Cut(XapiError::new("TASK_CANCELLED", &[&ctx.task])));
        }
        match parser.as_mut() {
            Some(p) => p
                .push(data, &mut |ev| match ev {
                    VhdEvent::Data { offset, data } => write(offset, data),
                    _ => Ok(()),
                })
                .map_err(|e| match e {
                    PushError::Vhd(v) => Cut(XapiError::new("VDI_IO_ERROR", &[&v.to_string()])),
                    PushError::Sink(s) => Cut(XapiError::new("VDI_IO_ERROR", &[&s])),
                })?,
            None => write(received, data).map_err(|e| Cut(XapiError::new("VDI_IO_ERROR", &[&e])))?,
        }
        received += data.len() as u64;
        if let Some(total) = length.filter(|l| *l > 0) {
            let percent = (received * 100 / total).min(99);
            if percent > reported {
                reported = percent;
                ctx.progress(percent as f64 / 100.0);
            }
        }
    }
    if let Some(l) = length {
        if received != l {
            return Err(Cut(XapiError::new("VDI_IO_ERROR", &[&format!("received {received} of {l} bytes")])));
        }
    }
    if let Some(p) = parser {
        p.finish().map_err(|e| Cut(XapiError::new("VDI_IO_ERROR", &[&e.to_string()])))?;
    }
    Ok(())
}

/// A blocking reader of a request body that arrives as a stream (the XVA importer reads a tar stream).
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.current = b,
                Ok(Err(e)) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, e)),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// `PUT /import?sr_id=|sr_uuid=`: an XVA into a new VM ([`crate::import`]). Checked before the answer: chunked
/// bodies (403, `IMPORT_ERROR_CANNOT_HANDLE_CHUNKED`: `import.ml`, `Cannot_handle_chunked`), the SR (the pool's
/// default without one: `DEFAULT_SR_NOT_FOUND`; an ISO SR: `SR_OPERATION_NOT_SUPPORTED`). Then the `200` and the
/// body, read as it comes; the task ends with the new VM (a set of refs) or the failure, after what the import made
/// is removed.
pub async fn import(State(sim): SimState, at: At, Query(q): QueryOf, headers: HeaderMap, body: Body) -> Response<Body> {
    // `import.ml`, `handler`: the SR named or the pool's default, checked before the body is read.
    let needs = Needs::Sr(q.get("sr_id").or_else(|| q.get("sr_uuid")).map(String::as_str));
    let ctx = match begin(&sim, &at, needs, "/import", &q, &headers).await {
        Ok(c) => c,
        Err(r) => {
            // Nothing of the body was read (a redirect: the client sends it to the other host).
            drain_later(body);
            return r;
        }
    };
    if headers.contains_key(header::TRANSFER_ENCODING) {
        drain_later(body);
        return early_fail(ctx, XapiError::new("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED", &[]), StatusCode::FORBIDDEN);
    }
    let sr = match q.get("sr_id").or_else(|| q.get("sr_uuid")) {
        Some(key) => lookup(&sim, "SR", key),
        None => {
            let db = sim.db.lock();
            let default = db
                .all("pool")
                .next()
                .map(|(_, p)| p.get("default_SR").and_then(Value::as_str).unwrap_or_default().to_string());
            match default.filter(|d| db.get_of("SR", d).is_some()) {
                Some(d) => Ok(d),
                None => Err(XapiError::new("DEFAULT_SR_NOT_FOUND", &[])),
            }
        }
    };
    let sr = match sr {
        Ok(sr) => sr,
        Err(e) => {
            drain_later(body);
            return early_fail(ctx, e, StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if sim.db.lock().get(&sr).is_some_and(|r| r.get("content_type").and_then(Value::as_str) == Some("iso")) {
        drain_later(body);
        return early_fail(ctx, XapiError::new("SR_OPERATION_NOT_SUPPORTED", &[&sr]), StatusCode::BAD_REQUEST);
    }
    let task = ctx.task.clone();
    let cut_after = sim.faults.lock().cut_after.get("/import").copied();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Bytes, String>>(16);
    // The body, forwarded to the importer's thread (bounded: the client is read as fast as the import goes).
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut received = 0u64;
        while let Some(frame) = stream.next().await {
            let item = match frame {
                Ok(b) => {
                    received += b.len() as u64;
                    if cut_after.is_some_and(|limit| received >= limit) {
                        let _ = tx.send(Err("connection cut by fault injection".into()));
                        return;
                    }
                    Ok(b)
                }
                Err(e) => Err(format!("receive failed: {e}")),
            };
            let failed = item.is_err();
            let tx2 = tx.clone();
            if tokio::task::spawn_blocking(move || tx2.send(item)).await.map_or(true, |r| r.is_err()) || failed {
                return;
            }
        }
    });
    let (done, outcome) = tokio::sync::oneshot::channel::<bool>();
    let sim2 = sim.clone();
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader { rx, current: Bytes::new() };
        let mut made = crate::import::Made::default();
        let cancelled = || ctx.cancelled();
        let result = crate::import::receive(&sim2, reader, &sr, &mut made, &cancelled);
        let ok = match result {
            Ok(vm) => {
                ctx.finish(Ok(Value::strs([vm])));
                true
            }
            Err(e) => {
                sim2.write(|db| made.undo(db));
                let error = if e.kind() == io::ErrorKind::Interrupted {
                    XapiError::new("TASK_CANCELLED", &[&ctx.task])
                } else {
                    XapiError::new("IMPORT_ERROR", &[&e.to_string()])
                };
                ctx.finish(Err(error));
                false
            }
        };
        let _ = done.send(ok);
    });
    accepted_import(&task, outcome)
}
