//! Moving an upload from the client to XAPI's `/import_raw_vdi` over WASI 0.2 streams.
//!
//! [`import`] runs the core's import plan. An uncompressed raw body with a length is spliced into XAPI's upload by
//! the host (no byte enters the guest; a client that breaks off breaks XAPI's upload). Anything else is read through
//! the guest in large reads: decompressed if needed, checked (the VHD structure, or the exact raw length), and
//! forwarded; a VHD's footer, header and BAT are read before anything is created, so that a bad VHD costs no XAPI
//! call and the length XAPI needs is known. Any failure aborts XAPI's upload and the core's `finish` destroys the
//! task and a VDI it created.

use crate::io::{self, Deadline, IoError};
use crate::outbound::{self, Sending};
use crate::{now, Log, WasiTransport};
use wasi::http::types::{IncomingBody, IncomingRequest, Method, ResponseOutparam};
use wasi::io::streams::InputStream;
use xo_edge::config::Config;
use xo_edge::error::ApiError;
use xo_edge::rest::auth::Caller;
use xo_edge::rest::{Ctx, Reply};
use xo_edge::transfer::check::{Check, CheckError};
use xo_edge::transfer::decode::Decoder;
use xo_edge::transfer::export::DiskFormat;
use xo_edge::transfer::import::{self, BodyFailure, Encoding, ImportPlan, Upload};

/// Bytes asked of the client's body per read.
pub(crate) const READ_SIZE: u64 = 256 * 1024;
/// Largest write to XAPI.
pub(crate) const BATCH: usize = 256 * 1024;

/// Most of a refused upload that is still read (and dropped) before answering: a client that is still sending
/// when its connection closes may lose the answer (TCP resets it), so short uploads get their error read.
const DRAIN_LIMIT: u64 = 64 << 20;

/// The client's request body.
pub struct Incoming {
    pub stream: InputStream,
    // Dropped after `stream`: the body outlives its stream.
    _body: IncomingBody,
}

impl Incoming {
    /// Takes the body of `request`.
    pub fn of(request: &IncomingRequest) -> Result<Incoming, ApiError> {
        let taken = || ApiError::internal("the request body was already read");
        let body = request.consume().map_err(|()| taken())?;
        let stream = body.stream().map_err(|()| taken())?;
        Ok(Incoming { stream, _body: body })
    }

    /// Reads and drops the rest of the body, up to [`DRAIN_LIMIT`] bytes, while the client sends something at
    /// least every `idle` seconds.
    pub async fn drain(&self, idle: u64) {
        let mut seen = 0u64;
        while seen < DRAIN_LIMIT {
            match io::read(&self.stream, READ_SIZE, Some(Deadline::after(idle))).await {
                Ok(Some(bytes)) => seen += bytes.len() as u64,
                _ => break,
            }
        }
    }
}

/// The client's body, decompressed.
struct Source {
    body: Incoming,
    decoder: Option<Decoder>,
    done: bool,
    /// Seconds the client may send nothing before the upload is given up (`client_timeout`).
    idle: u64,
}

impl Source {
    /// Reads and drops what is left of the body.
    async fn drain(&mut self) {
        if !self.done {
            self.done = true;
            self.body.drain(self.idle).await;
        }
    }

    /// The next decompressed bytes, appended to `out`; `false` once the body is over and nothing more came.
    /// Decompressed bytes come a budget at a time (`decode::OUT_BUDGET`): what the decoder still holds is taken
    /// before more of the body is read, so a small body that expands hugely never sits in memory whole.
    async fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, BodyFailure> {
        let before = out.len();
        if let Some(d) = self.decoder.as_mut().filter(|d| d.has_pending()) {
            d.push(&[], out).map_err(|e| BodyFailure::Invalid(ApiError::new(422, e)))?;
            return Ok(true);
        }
        while !self.done {
            match io::read(&self.body.stream, READ_SIZE, Some(io::Deadline::after(self.idle))).await {
                Ok(Some(buf)) => {
                    match self.decoder.as_mut() {
                        None if out.is_empty() => *out = buf,
                        None => out.extend_from_slice(&buf),
                        Some(d) => d.push(&buf, out).map_err(|e| BodyFailure::Invalid(ApiError::new(422, e)))?,
                    }
                    return Ok(true);
                }
                Ok(None) => {
                    self.done = true;
                    if let Some(d) = self.decoder.as_mut() {
                        d.finish(out).map_err(|e| BodyFailure::Invalid(ApiError::new(422, e)))?;
                    }
                }
                Err(IoError::Timeout) => {
                    self.done = true;
                    return Err(BodyFailure::Short(format!("the client sent nothing for {} s", self.idle)));
                }
                Err(e) => {
                    self.done = true;
                    return Err(BodyFailure::Short(format!("{e:?}")));
                }
            }
        }
        // The decoder's last bytes come with the end of the body.
        Ok(out.len() > before)
    }
}

fn invalid(e: CheckError) -> BodyFailure {
    match e {
        CheckError::Vhd(v) => BodyFailure::Invalid(import::bad_vhd(&v)),
        CheckError::Long { len } => {
            BodyFailure::Invalid(ApiError::new(413, format!("the upload is longer than the {len} bytes announced")))
        }
        CheckError::Short { pos, want } => BodyFailure::Short(format!("{pos} of {want} bytes")),
        CheckError::HttpInBody | CheckError::Tar(_) | CheckError::Zstd(_) => {
            BodyFailure::Invalid(ApiError::new(422, e.to_string()))
        }
    }
}

pub(crate) fn failure_error(f: BodyFailure) -> ApiError {
    match f {
        BodyFailure::Invalid(e) => e,
        BodyFailure::Short(why) => ApiError::bad_request(format!("the upload broke off: {why}")),
    }
}

/// Why a `PUT` to XAPI's handler did not open for its body.
pub(crate) enum PutStart {
    /// XAPI could not be reached, or did not answer in time.
    Failed(String),
    /// XAPI answered this status before the body (a refusal: its task says why).
    Answered(u16),
    /// XAPI redirected where the edge does not follow (outside the pool or the fence, a loop): the client's error.
    Refused(ApiError),
}

/// Starts the `PUT` of `length` bytes to XAPI's handler `upstream`, on the master, and waits for XAPI's answer
/// before any of the body goes: XAPI accepts (200) or redirects to the host that sees the storage (302) before
/// it reads a byte (`ocaml/xapi/import_raw_vdi.ml`, `import`; `import.ml`, `handler`), so a redirect costs the
/// body nothing and the same request goes to the host named, within the pool ([`xo_edge::xapi::Xapi::follow`]).
/// XO's client probes with an empty PUT first instead, which on the right host starts an empty import.
pub(crate) async fn start_put(
    config: &Config,
    session: &str,
    upstream: &str,
    cookie: &str,
    length: u64,
) -> Result<Sending, PutStart> {
    let length = length.to_string();
    let headers: [(&str, &[u8]); 2] = [("cookie", cookie.as_bytes()), ("content-length", length.as_bytes())];
    let mut base = crate::master_base(config);
    let mut visited = vec![base.clone()];
    loop {
        let request = outbound::request(Method::Put, &base, upstream, &headers).map_err(PutStart::Failed)?;
        let mut put = request.start().map_err(|e| PutStart::Failed(format!("{e:?}")))?;
        let deadline = Deadline::after(config.xapi_timeout);
        let (status, location) = match put.head(deadline).await {
            Ok(head) => (head.status, head.location.clone()),
            Err(e) => return Err(PutStart::Failed(format!("{e:?}"))),
        };
        match (status, location) {
            (200, _) => return Ok(put),
            (302, Some(location)) => {
                let _ = put.end(false, deadline).await;
                let transport = WasiTransport::new(config);
                let xapi = xo_edge::xapi::Xapi::new(&transport);
                base = xapi.follow(&location, session, &mut visited).await.map_err(PutStart::Refused)?;
            }
            (status, _) => {
                let _ = put.end(false, deadline).await;
                return Err(PutStart::Answered(status));
            }
        }
    }
}

/// Ends the PUT and reads XAPI's answer to its end; answers its status.
pub(crate) async fn end_put(put: Sending, complete: bool, config: &Config) -> Result<u16, String> {
    let deadline = Deadline::after(config.xapi_timeout);
    let answer = put.end(complete, deadline).await.map_err(|e| format!("{e:?}"))?;
    let _ = answer.read_all(1 << 20, deadline).await;
    Ok(answer.status)
}

/// How forwarding the body through the guest ended.
enum Pumped {
    Done,
    /// XAPI stopped reading (its answer tells why).
    XapiStopped,
    Failed(BodyFailure),
}

async fn forward(source: &mut Source, mut check: Check, head: Vec<u8>, put: &Sending) -> Pumped {
    let mut pending = head;
    loop {
        if pending.len() >= BATCH / 2 {
            if io::write_all(&put.stream, &pending).await.is_err() {
                return Pumped::XapiStopped;
            }
            pending.clear();
        }
        let before = pending.len();
        match source.next(&mut pending).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(f) => return Pumped::Failed(f),
        }
        if let Err(e) = check.feed(&pending[before..]) {
            return Pumped::Failed(invalid(e));
        }
    }
    if let Err(e) = check.finish() {
        return Pumped::Failed(invalid(e));
    }
    if io::write_all(&put.stream, &pending).await.is_err() {
        return Pumped::XapiStopped;
    }
    Pumped::Done
}

/// Adds the renewed-token cookie a caller past half its token's lifetime gets on success.
pub(crate) fn with_refresh(reply: Reply, caller: &Caller) -> Reply {
    match &caller.refresh_cookie {
        Some(cookie) => reply.with_header("set-cookie", cookie.clone()),
        None => reply,
    }
}

/// Runs an import and answers the client.
pub async fn import(
    config: Config,
    log: Log,
    caller: Caller,
    upload: Upload,
    request: IncomingRequest,
    out: ResponseOutparam,
) {
    let transport = WasiTransport::new(&config);
    let ctx = Ctx::new(&config, &transport, now());
    let release = || async {
        if caller.basic {
            let _ = ctx.xapi.logout(&caller.session).await;
        }
    };
    let body = match Incoming::of(&request) {
        Ok(b) => b,
        Err(e) => {
            release().await;
            return log.answer(out, Reply::error(&e)).await;
        }
    };

    if upload.pass_through() {
        let length = upload.length.unwrap_or(0);
        let plan = match import::plan_import(&ctx, &caller, &upload, length, length).await {
            Ok(p) => p,
            Err(e) => {
                body.drain(config.client_timeout).await;
                release().await;
                return log.answer(out, Reply::error(&e)).await;
            }
        };
        let (sent, moved) = match start_put(&config, &plan.session, &plan.upstream, &plan.cookie, plan.length).await {
            Ok(put) => {
                let moved = io::splice_all(&body.stream, &put.stream, Some(plan.length)).await;
                let complete = moved.as_ref().is_ok_and(|&n| n == plan.length);
                if matches!(moved, Err(IoError::Output(_))) {
                    // XAPI stopped reading: its answer says why; the client still gets one.
                    body.drain(config.client_timeout).await;
                }
                (end_put(put, complete, &config).await, moved)
            }
            Err(PutStart::Refused(e)) => {
                body.drain(config.client_timeout).await;
                let vdi = plan.created.then_some(plan.vdi.as_str());
                let e = xo_edge::transfer::task::abandon(
                    &ctx.xapi,
                    &plan.session,
                    &plan.task,
                    vdi,
                    plan.temporary_session,
                    e,
                )
                .await;
                return log.answer(out, Reply::error(&e)).await;
            }
            Err(PutStart::Answered(status)) => {
                body.drain(config.client_timeout).await;
                (Ok(status), Err(IoError::Output(String::new())))
            }
            Err(PutStart::Failed(e)) => {
                body.drain(config.client_timeout).await;
                (Err(e), Err(IoError::Output(String::new())))
            }
        };
        let body_result = match moved {
            Ok(n) if n == plan.length => Ok(()),
            Ok(n) => Err(BodyFailure::Short(format!("{n} of {} bytes", plan.length))),
            Err(IoError::Output(_)) => Ok(()),
            Err(e) => Err(BodyFailure::Short(format!("{e:?}"))),
        };
        return finish(&ctx, &plan, sent, body_result, &caller, &log, out).await;
    }

    let decoder = match upload.encoding {
        Encoding::Identity => None,
        Encoding::Gzip => Some(Decoder::gzip()),
        Encoding::Zstd => Some(Decoder::zstd()),
    };
    let mut source = Source { body, decoder, done: false, idle: config.client_timeout };
    let mut check = match upload.route.format {
        DiskFormat::Vhd => Check::vhd_of_length(upload.length),
        DiskFormat::Raw => Check::exact(upload.length.unwrap_or(0)),
    };
    // Read until the size of the disk and the length of the upload are known.
    let mut head = Vec::new();
    let (virtual_size, length) = loop {
        if let (Some(parser), DiskFormat::Vhd) = (check.vhd_parser(), upload.route.format) {
            if let (Some(footer), Some(length)) = (parser.footer(), upload.length.or(parser.expected_len())) {
                break (footer.current_size, length);
            }
        } else if let Some(l) = upload.length {
            break (l, l);
        }
        let before = head.len();
        let more = match source.next(&mut head).await {
            Ok(more) => more,
            Err(f) => {
                source.drain().await;
                release().await;
                return log.answer(out, Reply::error(&failure_error(f))).await;
            }
        };
        let fed = check.feed(&head[before..]).map(|_| ());
        let fed = if more { fed } else { fed.and_then(|()| check.finish()) };
        if let Err(e) = fed {
            source.drain().await;
            release().await;
            return log.answer(out, Reply::error(&failure_error(invalid(e)))).await;
        }
        if !more {
            release().await;
            let e = ApiError::bad_request("the upload ended before the disk's size could be read");
            return log.answer(out, Reply::error(&e)).await;
        }
    };
    let plan = match import::plan_import(&ctx, &caller, &upload, virtual_size, length).await {
        Ok(p) => p,
        Err(e) => {
            source.drain().await;
            release().await;
            return log.answer(out, Reply::error(&e)).await;
        }
    };
    let (sent, body_result) = match start_put(&config, &plan.session, &plan.upstream, &plan.cookie, plan.length).await {
        Ok(put) => {
            let outcome = forward(&mut source, check, head, &put).await;
            if !matches!(outcome, Pumped::Done) {
                // The client may still be sending: read the rest, so that it gets its answer.
                source.drain().await;
            }
            // A failed body must not look complete to XAPI either: its upload is aborted.
            let complete = !matches!(outcome, Pumped::Failed(_));
            let sent = end_put(put, complete, &config).await;
            let body_result = match outcome {
                Pumped::Done | Pumped::XapiStopped => Ok(()),
                Pumped::Failed(f) => Err(f),
            };
            (sent, body_result)
        }
        Err(PutStart::Refused(e)) => {
            source.drain().await;
            let vdi = plan.created.then_some(plan.vdi.as_str());
            let e =
                xo_edge::transfer::task::abandon(&ctx.xapi, &plan.session, &plan.task, vdi, plan.temporary_session, e)
                    .await;
            return log.answer(out, Reply::error(&e)).await;
        }
        Err(PutStart::Answered(status)) => {
            source.drain().await;
            (Ok(status), Ok(()))
        }
        Err(PutStart::Failed(e)) => {
            source.drain().await;
            (Err(e), Ok(()))
        }
    };
    finish(&ctx, &plan, sent, body_result, &caller, &log, out).await;
}

/// Settles the import on XAPI and answers the client.
async fn finish(
    ctx: &Ctx<'_, WasiTransport>,
    plan: &ImportPlan,
    sent: Result<u16, String>,
    body: Result<(), BodyFailure>,
    caller: &Caller,
    log: &Log,
    out: ResponseOutparam,
) {
    match import::finish(ctx, plan, sent, body).await {
        Ok(reply) => {
            let status = reply.status;
            let (_, whole) = crate::response::send(out, with_refresh(reply, caller), log.idle, None).await;
            log.line(if whole { status } else { 499 }, plan.length as usize);
        }
        Err(e) => log.answer(out, Reply::error(&e)).await,
    }
}

/// Reads and drops (some of) the body of a request refused before its upload started, while the client sends
/// something at least every `idle` seconds.
pub async fn refuse(request: &IncomingRequest, idle: u64) {
    if let Ok(body) = Incoming::of(request) {
        body.drain(idle).await;
    }
}
