//! Moving transfer bodies between XAPI's HTTP handlers and the client with WASI 0.3 streams.
//!
//! [`export`] runs an [`ExportPlan`] from the core: it opens XAPI's handler, answers a JSON error if XAPI fails
//! before the first byte, and then either hands XAPI's body stream to the client untouched (pass-through: the
//! bytes never enter the guest) or reads it through the plan's [`Check`] and forwards what the check lets through.
//! A body that turns out wrong after the status was sent ends with an error instead of a clean end, so the client
//! sees an aborted transfer. In every case a task of its own ends the XAPI task (and a temporary session) once the
//! transfer is over, also when the client went away.

use crate::{log_line, now, SpinTransport};
use spin_sdk::http::IntoResponse;
use spin_sdk::wasip3::http::types::{self, ErrorCode, Fields, Trailers};
use spin_sdk::wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult, StreamWriter};
use spin_sdk::wasip3::{wit_future, wit_stream};
use std::time::{Duration, Instant};
use xo_edge::config::Config;
use xo_edge::error::ApiError;
use xo_edge::rest::{Ctx, Reply};
use xo_edge::transfer::check::Check;
use xo_edge::transfer::compress::Compressor;
use xo_edge::transfer::export::{self, ExportPlan, StartFailure, Streaming, SETTLE_WAIT};
use xo_edge::transfer::task::Outcome;
use xo_edge::transfer::vm_export;
use xo_edge::xapi::rpc::TransportError;

/// Bytes asked of XAPI's body per read (a read returns at most one HTTP frame of it).
const READ_SIZE: usize = 256 * 1024;

/// Largest write to the client when the body goes through the guest.
const BATCH: usize = 256 * 1024;

type TrailersResult = Result<Option<Trailers>, ErrorCode>;

/// A JSON error as a WASI response.
pub fn error_response(e: &ApiError) -> types::Response {
    reply_response(Reply::error(e))
}

/// A complete reply from the core as a WASI response.
pub fn reply_response(reply: Reply) -> types::Response {
    match crate::into_response(reply).into_response() {
        Ok(r) => r,
        Err(_) => types::Response::new(Fields::new(), None, wit_future::new::<TrailersResult>(|| Ok(None)).1).0,
    }
}

fn new_response(status: u16, headers: &[(String, String)], body: StreamReader<u8>) -> (types::Response, TrailerSender) {
    let fields = Fields::new();
    for (k, v) in headers {
        let _ = fields.append(k, v.as_bytes());
    }
    let (tx, rx) = wit_future::new::<TrailersResult>(|| Ok(None));
    let (resp, sent) = types::Response::new(fields, Some(body), rx);
    let _ = resp.set_status_code(status);
    (resp, TrailerSender { tx, sent })
}

/// The end of a response: its trailers (an error aborts the response) and the future telling that it was sent.
struct TrailerSender {
    tx: spin_sdk::wasip3::wit_bindgen::FutureWriter<TrailersResult>,
    sent: FutureReader<Result<(), ErrorCode>>,
}

/// Opens XAPI's handler: a GET with the session in a cookie.
async fn open(config: &Config, plan: &ExportPlan) -> Result<types::Response, StartFailure> {
    let req = http::Request::get(format!("{}{}", config.xapi_url, plan.upstream))
        .header("cookie", plan.cookie.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| StartFailure::Transport(e.to_string()))?;
    let req = spin_sdk::http::IntoRequest::into_request(req).map_err(|e| StartFailure::Transport(format!("{e:?}")))?;
    let sent = async {
        spin_sdk::wasip3::http::client::send(req).await.map_err(|e| TransportError::Unreachable(format!("{e:?}")))
    };
    let resp = match crate::within(config.xapi_timeout, sent).await {
        Ok(resp) => resp,
        Err(TransportError::Timeout) => return Err(StartFailure::Timeout(config.xapi_timeout)),
        Err(TransportError::Unreachable(e)) => return Err(StartFailure::Transport(e)),
    };
    match resp.get_status_code() {
        200 => Ok(resp),
        s => Err(StartFailure::Status(s)),
    }
}

/// Runs an export plan; answers the response to give the client.
pub async fn export(config: Config, log: Log, plan: ExportPlan) -> types::Response {
    let upstream = match open(&config, &plan).await {
        Ok(r) => r,
        Err(why) => return fail(why, plan, config, log).await,
    };
    let (_, body_done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
    let (mut body, upstream_end) = types::Response::consume_body(upstream, body_done);
    let mut plan = plan;
    match std::mem::replace(&mut plan.streaming, Streaming::PassThrough) {
        Streaming::PassThrough => {
            drop(upstream_end);
            let (resp, end) = new_response(plan.status, &plan.headers, body);
            let length = header(&plan, "content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            spin_sdk::wit_bindgen::spawn(async move {
                drop(end.tx);
                let sent = end.sent.await;
                let outcome = finish(&config, &plan).await;
                let status = if sent.is_ok() && outcome == Some(Outcome::Success) { plan.status } else { 499 };
                log.line(status, if status == 499 { 0 } else { length });
            });
            resp
        }
        Streaming::Through(mut check) => {
            // Read until the check has seen a good start, so that a bad one still gets a JSON error.
            let mut first = Vec::new();
            while !check.started() {
                match read(&mut body).await {
                    Some(chunk) => match check.feed(&chunk) {
                        Ok(out) => first.extend_from_slice(out),
                        Err(why) => return fail(StartFailure::Body(why.to_string()), plan, config, log).await,
                    },
                    None => {
                        let why = check.finish().err().map_or("XAPI's stream ended at once".into(), |e| e.to_string());
                        return fail(StartFailure::Body(why), plan, config, log).await;
                    }
                }
            }
            let (mut tx, rx) = wit_stream::new::<u8>();
            let (resp, end) = new_response(plan.status, &plan.headers, rx);
            let slice = matches!(check, Check::Slice { .. });
            spin_sdk::wit_bindgen::spawn(async move {
                let mut compressor = plan.compressor.take();
                let beat = plan.snapshot.clone().map(|snap| Beat {
                    config: config.clone(),
                    session: plan.session.clone(),
                    snapshot: snap,
                    every: Duration::from_secs((config.orphan_after / 3).clamp(1, 60)),
                    last: Instant::now(),
                });
                let pumped =
                    Pump { tx: &mut tx, compressor: compressor.as_mut(), beat, sent: 0, idle: config.xapi_timeout };
                let (verdict, mut pumped) = pumped.run(body, upstream_end, check, first).await;
                let outcome = finish(&config, &plan).await;
                // A range is good once all its bytes came (reading may stop there, and XAPI's task then fails on the
                // closed connection); anything else is good only if XAPI's task succeeded too.
                let mut verdict = match verdict {
                    Ok(()) if slice || outcome == Some(Outcome::Success) => Ok(()),
                    Ok(()) => Err(format!("XAPI's export task did not succeed: {outcome:?}")),
                    Err(e) => Err(e),
                };
                // The compressed stream is only completed (last frame, gzip trailer) once all is known to be good.
                if let (Ok(()), Some(c)) = (&verdict, pumped.compressor.as_mut()) {
                    let mut out = Vec::new();
                    c.finish(&mut out);
                    if let Err(e) = pumped.write(out).await {
                        verdict = Err(e);
                    }
                }
                let bytes = pumped.sent;
                let status = if verdict.is_ok() { plan.status } else { 499 };
                let trailers = verdict.map(|()| None).map_err(|e| ErrorCode::InternalError(Some(e)));
                let _ = end.tx.write(trailers).await;
                log.line(status, bytes);
            });
            resp
        }
    }
}

fn header<'a>(plan: &'a ExportPlan, name: &str) -> Option<&'a str> {
    plan.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Ends the task and a temporary session; `None` when XAPI could not be asked.
async fn finish(config: &Config, plan: &ExportPlan) -> Option<Outcome> {
    let transport = SpinTransport::new(config);
    let ctx = Ctx::new(config, &transport, now());
    export::end(&ctx, plan, SETTLE_WAIT).await.ok()
}

/// Reads the next chunk of a body; `None` at its end.
async fn read(body: &mut StreamReader<u8>) -> Option<Vec<u8>> {
    loop {
        let (res, buf) = body.read(Vec::with_capacity(READ_SIZE)).await;
        match res {
            StreamResult::Complete(_) if buf.is_empty() => continue,
            StreamResult::Complete(_) => return Some(buf),
            StreamResult::Dropped | StreamResult::Cancelled => return None,
        }
    }
}

/// The request, for its log line.
pub struct Log {
    pub method: String,
    pub path: String,
    pub started: Instant,
}

impl Log {
    pub fn line(&self, status: u16, bytes: usize) {
        log_line(&self.method, &self.path, status, bytes, self.started);
    }
}

/// Ends the task of a transfer that failed before its first byte; answers the client's JSON error.
async fn fail(why: StartFailure, plan: ExportPlan, config: Config, log: Log) -> types::Response {
    let transport = SpinTransport::new(&config);
    let ctx = Ctx::new(&config, &transport, now());
    let e = export::failed_start(&ctx, &plan, why).await;
    log.line(e.status, 0);
    error_response(&e)
}

/// A snapshot's heartbeat, refreshed while its export runs.
struct Beat {
    config: Config,
    session: String,
    snapshot: String,
    every: Duration,
    last: Instant,
}

impl Beat {
    async fn tick(&mut self) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            let transport = SpinTransport::new(&self.config);
            let ctx = Ctx::new(&self.config, &transport, now());
            let _ = vm_export::heartbeat(&ctx, &self.session, &self.snapshot).await;
        }
    }
}

/// Forwards XAPI's body to the client through a check, compressing it when asked.
struct Pump<'a> {
    tx: &'a mut StreamWriter<u8>,
    compressor: Option<&'a mut Compressor>,
    beat: Option<Beat>,
    /// Bytes written to the client.
    sent: usize,
    /// Seconds XAPI may send nothing before the export is given up (`xapi_timeout`).
    idle: u64,
}

impl Pump<'_> {
    async fn write(&mut self, data: Vec<u8>) -> Result<(), String> {
        let n = data.len();
        if n > 0 && !self.tx.write_all(data).await.is_empty() {
            return Err("the client went away".into());
        }
        self.sent += n;
        Ok(())
    }

    /// Answers how the body ended, or why it failed. XAPI's close-delimited body arrives in small HTTP frames;
    /// they are gathered into writes of up to [`BATCH`] bytes, which halves the guest's work per byte.
    async fn run(
        mut self,
        mut body: StreamReader<u8>,
        upstream_end: FutureReader<TrailersResult>,
        mut check: Check,
        first: Vec<u8>,
    ) -> (Result<(), String>, Self) {
        let result = self.forward(&mut body, &mut check, first).await;
        let result = match result {
            Ok(true) => upstream_end.await.map_err(|e| format!("XAPI's stream broke: {e:?}")).map(|_| ()),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        let result = result.and_then(|()| check.finish().map_err(|e| format!("XAPI's export: {e}")));
        (result, self)
    }

    /// Forwards until the body ends (`true`) or the check has all it wants (`false`).
    async fn forward(
        &mut self,
        body: &mut StreamReader<u8>,
        check: &mut Check,
        first: Vec<u8>,
    ) -> Result<bool, String> {
        let mut out = Vec::with_capacity(BATCH);
        match self.compressor.as_mut() {
            Some(c) => c.push(&first, &mut out),
            None => out = first,
        }
        out.reserve(BATCH.saturating_sub(out.len()));
        loop {
            if check.complete() && matches!(check, Check::Slice { .. }) {
                self.write(out).await?;
                return Ok(false);
            }
            if out.len() >= BATCH / 2 || out.capacity() - out.len() < BATCH / 8 {
                self.write(std::mem::take(&mut out)).await?;
                out.reserve(BATCH);
                if let Some(beat) = self.beat.as_mut() {
                    beat.tick().await;
                }
            }
            // XAPI's bytes are read straight into the compressor's input, or without one the outgoing buffer.
            let target = match self.compressor.as_mut() {
                Some(c) => {
                    let input = c.input();
                    input.reserve(READ_SIZE);
                    input
                }
                None => &mut out,
            };
            let before = target.len();
            // A XAPI that stops sending mid-stream must not hold the transfer (and its snapshot) forever.
            let read = async { Ok(body.read(std::mem::take(target)).await) };
            let Ok((res, buf)) = crate::within(self.idle, read).await else {
                return Err(format!("XAPI sent nothing for {} s", self.idle));
            };
            *target = buf;
            if !matches!(res, StreamResult::Complete(_)) {
                self.write(out).await?;
                return Ok(true);
            }
            let new = &target[before..];
            let kept = match check.feed(new) {
                Ok(kept) if kept.len() == new.len() => None,
                Ok(kept) => Some(kept.to_vec()),
                Err(e) => return Err(format!("XAPI's export: {e}")),
            };
            if let Some(kept) = kept {
                target.truncate(before);
                target.extend_from_slice(&kept);
            }
            if let Some(c) = self.compressor.as_mut() {
                c.absorb(&mut out);
            }
        }
    }
}
