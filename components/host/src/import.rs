//! Moving an upload from the client to XAPI's `/import_raw_vdi` with WASI 0.3 streams.
//!
//! [`import`] runs the core's import plan. An uncompressed raw body with a length goes to XAPI untouched (the
//! request body stream becomes the outbound body: no byte enters the guest, and a client that breaks off breaks
//! XAPI's upload). Anything else is read through the guest: decompressed if needed, checked (the VHD structure, or
//! the exact raw length), and forwarded; a VHD's footer, header and BAT are read before anything is created, so
//! that a bad VHD costs no XAPI call and the length XAPI needs is known. Any failure aborts XAPI's upload and the
//! core's `finish` destroys the task and a VDI it created.

use crate::transfer::{error_response, reply_response, Log};
use crate::{now, SpinTransport};
use futures::channel::oneshot;
use spin_sdk::wasip3::http::types::{self, ErrorCode, Fields, Method, Scheme, Trailers};
use spin_sdk::wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult, StreamWriter};
use spin_sdk::wasip3::{wit_future, wit_stream};
use xo_edge::config::Config;
use xo_edge::error::ApiError;
use xo_edge::rest::auth::Caller;
use xo_edge::rest::Ctx;
use xo_edge::transfer::check::{Check, CheckError};
use xo_edge::transfer::decode::Decoder;
use xo_edge::transfer::export::DiskFormat;
use xo_edge::transfer::import::{self, BodyFailure, Encoding, ImportPlan, Upload};

type TrailersResult = Result<Option<Trailers>, ErrorCode>;

/// Bytes asked of the client's body per read.
const READ_SIZE: usize = 256 * 1024;
/// Largest write to XAPI.
const BATCH: usize = 256 * 1024;

/// The client's body, decompressed.
struct Source {
    body: StreamReader<u8>,
    end: Option<FutureReader<TrailersResult>>,
    decoder: Option<Decoder>,
    done: bool,
}

impl Source {
    /// Reads and drops what is left of the body (see [`drain`]).
    async fn drain(&mut self) {
        if !self.done {
            self.done = true;
            drain(&mut self.body).await;
        }
    }

    /// The next decompressed bytes, appended to `out`; `false` once the body is over and nothing more came.
    async fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, BodyFailure> {
        let before = out.len();
        while !self.done {
            let (res, buf) = self.body.read(Vec::with_capacity(READ_SIZE)).await;
            match res {
                StreamResult::Complete(_) if buf.is_empty() => continue,
                StreamResult::Complete(_) => {
                    match self.decoder.as_mut() {
                        None => out.extend_from_slice(&buf),
                        Some(d) => d.push(&buf, out).map_err(|e| BodyFailure::Invalid(ApiError::new(422, e)))?,
                    }
                    return Ok(true);
                }
                StreamResult::Dropped | StreamResult::Cancelled => {
                    self.done = true;
                    if let Some(end) = self.end.take() {
                        end.await.map_err(|e| BodyFailure::Short(format!("{e:?}")))?;
                    }
                    if let Some(d) = self.decoder.as_mut() {
                        d.finish(out).map_err(|e| BodyFailure::Invalid(ApiError::new(422, e)))?;
                    }
                }
            }
        }
        // The decoder's last bytes come with the end of the body.
        Ok(out.len() > before)
    }
}

/// Most of a refused upload that is still read (and dropped) before answering: a client that is still sending
/// when its connection closes may lose the answer (TCP resets it), so short uploads get their error read.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Reads and drops the rest of a body, up to [`DRAIN_LIMIT`] bytes.
pub async fn drain(body: &mut StreamReader<u8>) {
    let mut seen = 0u64;
    let mut buf = Vec::with_capacity(READ_SIZE);
    while seen < DRAIN_LIMIT {
        buf.clear();
        let (res, b) = body.read(buf).await;
        buf = b;
        match res {
            StreamResult::Complete(_) => seen += buf.len() as u64,
            _ => break,
        }
    }
}

/// Reads and drops (some of) the body of a request refused before its upload started.
pub async fn refuse(request: types::Request) {
    let (_, done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
    let (mut body, _) = types::Request::consume_body(request, done);
    drain(&mut body).await;
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

fn failure_error(f: BodyFailure) -> ApiError {
    match f {
        BodyFailure::Invalid(e) => e,
        BodyFailure::Short(why) => ApiError::bad_request(format!("the upload broke off: {why}")),
    }
}

/// The outbound `PUT` to XAPI's handler, its body being `contents`.
fn outbound(
    config: &Config,
    plan: &ImportPlan,
    contents: StreamReader<u8>,
    trailers: FutureReader<TrailersResult>,
) -> Result<types::Request, String> {
    let uri: http::Uri = config.xapi_url.parse().map_err(|e| format!("xapi_url: {e}"))?;
    let fields = Fields::new();
    fields.append("cookie", plan.cookie.as_bytes()).map_err(|e| format!("{e:?}"))?;
    fields.append("content-length", plan.length.to_string().as_bytes()).map_err(|e| format!("{e:?}"))?;
    let (req, _) = types::Request::new(fields, Some(contents), trailers, None);
    let scheme = if uri.scheme_str() == Some("https") { Scheme::Https } else { Scheme::Http };
    let ok = req.set_method(&Method::Put).is_ok()
        && req.set_scheme(Some(&scheme)).is_ok()
        && req.set_authority(uri.authority().map(|a| a.as_str())).is_ok()
        && req.set_path_with_query(Some(&plan.upstream)).is_ok();
    ok.then_some(req).ok_or_else(|| "invalid XAPI request".to_string())
}

/// Sends the PUT and reads XAPI's answer to its end; answers its status.
async fn send(req: types::Request) -> Result<u16, String> {
    let resp = spin_sdk::wasip3::http::client::send(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.get_status_code();
    let (_, done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
    let (mut body, _) = types::Response::consume_body(resp, done);
    loop {
        let (res, _) = body.read(Vec::with_capacity(4096)).await;
        if !matches!(res, StreamResult::Complete(_)) {
            break;
        }
    }
    Ok(status)
}

/// How forwarding the body through the guest ended.
enum Pumped {
    Done,
    /// XAPI stopped reading (its answer tells why).
    XapiStopped,
    Failed(BodyFailure),
}

async fn pump(mut source: Source, check: Check, head: Vec<u8>, tx: StreamWriter<u8>) -> Pumped {
    let outcome = forward(&mut source, check, head, tx).await;
    if !matches!(outcome, Pumped::Done) {
        // The client may still be sending: read the rest, so that it gets its answer.
        source.drain().await;
    }
    outcome
}

async fn forward(source: &mut Source, mut check: Check, head: Vec<u8>, mut tx: StreamWriter<u8>) -> Pumped {
    let mut pending = head;
    loop {
        if pending.len() >= BATCH / 2 {
            pending = tx.write_all(pending).await;
            if !pending.is_empty() {
                return Pumped::XapiStopped;
            }
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
    if !pending.is_empty() && !tx.write_all(pending).await.is_empty() {
        return Pumped::XapiStopped;
    }
    Pumped::Done
}

/// Adds the renewed-token cookie a caller past half its token's lifetime gets on success.
fn with_refresh(reply: xo_edge::rest::Reply, caller: &Caller) -> xo_edge::rest::Reply {
    match &caller.refresh_cookie {
        Some(cookie) => reply.with_header("set-cookie", cookie.clone()),
        None => reply,
    }
}

/// Runs an import; answers the response to give the client.
pub async fn import(
    config: Config,
    log: Log,
    caller: Caller,
    upload: Upload,
    request: types::Request,
) -> types::Response {
    let transport = SpinTransport::new(&config);
    let ctx = Ctx::new(&config, &transport, now());
    let release = || async {
        if caller.basic {
            let _ = ctx.xapi.logout(&caller.session).await;
        }
    };
    let answer = |e: ApiError| {
        log.line(e.status, 0);
        error_response(&e)
    };
    let (_, body_done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
    let (body, body_end) = types::Request::consume_body(request, body_done);

    if upload.pass_through() {
        let length = upload.length.unwrap_or(0);
        let plan = match import::plan_import(&ctx, &caller, &upload, length, length).await {
            Ok(p) => p,
            Err(e) => {
                let mut body = body;
                drain(&mut body).await;
                release().await;
                return answer(e);
            }
        };
        let sent = match outbound(&config, &plan, body, body_end) {
            Ok(req) => send(req).await,
            Err(e) => Err(e),
        };
        return match import::finish(&ctx, &plan, sent, Ok(())).await {
            Ok(reply) => {
                log.line(reply.status, plan.length as usize);
                reply_response(with_refresh(reply, &caller))
            }
            Err(e) => answer(e),
        };
    }

    let decoder = match upload.encoding {
        Encoding::Identity => None,
        Encoding::Gzip => Some(Decoder::gzip()),
        Encoding::Zstd => Some(Decoder::zstd()),
    };
    let mut source = Source { body, end: Some(body_end), decoder, done: false };
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
                return answer(failure_error(f));
            }
        };
        let fed = check.feed(&head[before..]).map(|_| ());
        let fed = if more { fed } else { fed.and_then(|()| check.finish()) };
        if let Err(e) = fed {
            source.drain().await;
            release().await;
            return answer(failure_error(invalid(e)));
        }
        if !more {
            release().await;
            return answer(ApiError::bad_request("the upload ended before the disk's size could be read"));
        }
    };
    let plan = match import::plan_import(&ctx, &caller, &upload, virtual_size, length).await {
        Ok(p) => p,
        Err(e) => {
            source.drain().await;
            release().await;
            return answer(e);
        }
    };
    let (tx, rx) = wit_stream::new::<u8>();
    let (trailers_tx, trailers_rx) = wit_future::new::<TrailersResult>(|| Ok(None));
    let (done_tx, done_rx) = oneshot::channel();
    spin_sdk::wit_bindgen::spawn(async move {
        let outcome = pump(source, check, head, tx).await;
        // A failed body must not look complete to XAPI either: end its upload with an error.
        let trailers = match &outcome {
            Pumped::Failed(_) => Err(ErrorCode::InternalError(Some("upload failed".into()))),
            _ => Ok(None),
        };
        let _ = trailers_tx.write(trailers).await;
        let _ = done_tx.send(outcome);
    });
    let sent = match outbound(&config, &plan, rx, trailers_rx) {
        Ok(req) => send(req).await,
        Err(e) => Err(e),
    };
    let body = match done_rx.await {
        Ok(Pumped::Done) | Ok(Pumped::XapiStopped) => Ok(()),
        Ok(Pumped::Failed(f)) => Err(f),
        Err(_) => Err(BodyFailure::Short("the upload stopped".into())),
    };
    match import::finish(&ctx, &plan, sent, body).await {
        Ok(reply) => {
            log.line(reply.status, plan.length as usize);
            reply_response(with_refresh(reply, &caller))
        }
        Err(e) => answer(e),
    }
}
