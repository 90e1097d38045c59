//! Moving an XVA from the client to XAPI's `PUT /import` over WASI 0.2 streams.
//!
//! [`import_vm`] reads the body until the core's [`XvaCheck`] has read a valid `ova.xml` (holding those first bytes,
//! at most what `ova.xml` takes: no XAPI call is made for a body that is not an XVA), then plans the import (SR,
//! task), starts the PUT with the upload's exact length, and forwards the body as it came (compressed or not),
//! checking every byte on the way. A check that fails, a client that leaves or stalls, aborts XAPI's upload once
//! XAPI has what came, so XAPI's importer fails and removes what it made, or, when only the archive's end was wrong
//! (XAPI stops reading at the last disk's last chunk), completes: that is waited for, and the core's `finish`
//! removes that VM. The task is destroyed either way.

use crate::import::{end_put, failure_error, start_put, with_refresh, Incoming, PutStart, BATCH, READ_SIZE};
use crate::io::{self, Deadline, IoError};
use crate::{now, Log, WasiTransport};
use wasi::http::types::{IncomingRequest, ResponseOutparam};
use xo_edge::config::Config;
use xo_edge::rest::auth::Caller;
use xo_edge::rest::{Ctx, Reply};
use xo_edge::transfer::import::BodyFailure;
use xo_edge::transfer::vm_import::{self, VmUpload, XvaCheck};

/// The next bytes of the body, or why there are none.
async fn next(body: &Incoming, idle: u64) -> Result<Option<Vec<u8>>, BodyFailure> {
    match io::read(&body.stream, READ_SIZE, Some(Deadline::after(idle))).await {
        Ok(bytes) => Ok(bytes),
        Err(IoError::Timeout) => Err(BodyFailure::Short(format!("the client sent nothing for {idle} s"))),
        Err(e) => Err(BodyFailure::Short(format!("{e:?}"))),
    }
}

/// How forwarding the body ended.
enum Pumped {
    Done,
    /// XAPI stopped reading (its task tells why).
    XapiStopped,
    Failed(BodyFailure),
}

async fn forward(
    body: &Incoming,
    check: &mut XvaCheck,
    head: Vec<u8>,
    put: &crate::outbound::Sending,
    idle: u64,
) -> Pumped {
    let mut pending = head;
    loop {
        if pending.len() >= BATCH / 2 {
            if io::write_all(&put.stream, &pending).await.is_err() {
                return Pumped::XapiStopped;
            }
            pending.clear();
        }
        match next(body, idle).await {
            Ok(Some(bytes)) => {
                pending.extend_from_slice(&bytes);
                if let Err(f) = check.feed(&bytes) {
                    return failed(put, &pending, f).await;
                }
            }
            Ok(None) => break,
            Err(f) => return failed(put, &pending, f).await,
        }
    }
    if let Err(f) = check.finish() {
        return failed(put, &pending, f).await;
    }
    if io::write_all(&put.stream, &pending).await.is_err() {
        return Pumped::XapiStopped;
    }
    Pumped::Done
}

/// A body that failed its check: XAPI still gets what came of it (so that its outcome does not depend on how the
/// bytes were batched: an archive XAPI can complete, it completes, and `finish` removes the VM; one it cannot, it
/// fails and cleans up), then its upload is aborted.
async fn failed(put: &crate::outbound::Sending, pending: &[u8], f: BodyFailure) -> Pumped {
    if io::write_all(&put.stream, pending).await.is_ok() {
        let _ = io::flush(&put.stream).await;
    }
    Pumped::Failed(f)
}

/// Runs a VM import and answers the client.
pub async fn import_vm(
    config: Config,
    log: Log,
    caller: Caller,
    upload: VmUpload,
    request: IncomingRequest,
    out: ResponseOutparam,
) {
    let transport = WasiTransport::new(&config);
    let ctx = Ctx::new(&config, &transport, now());
    let idle = config.client_timeout;
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
    // Read until ova.xml is known good: nothing is asked of XAPI before.
    let mut check = XvaCheck::new(upload.encoding, upload.length);
    let mut head = Vec::new();
    while !check.ready() {
        let failure = match next(&body, idle).await {
            Ok(Some(bytes)) => match check.feed(&bytes) {
                Ok(()) => {
                    head.extend_from_slice(&bytes);
                    continue;
                }
                Err(f) => f,
            },
            Ok(None) => {
                check.finish().err().unwrap_or_else(|| BodyFailure::Short("the body ended before ova.xml did".into()))
            }
            Err(f) => f,
        };
        body.drain(idle).await;
        release().await;
        return log.answer(out, Reply::error(&failure_error(failure))).await;
    }
    let plan = match vm_import::plan_vm_import(&ctx, &caller, &upload).await {
        Ok(p) => p,
        Err(e) => {
            body.drain(idle).await;
            release().await;
            return log.answer(out, Reply::error(&e)).await;
        }
    };
    let (sent, body_result) = match start_put(&config, &plan.session, &plan.upstream, &plan.cookie, plan.length).await {
        Ok(put) => {
            let outcome = forward(&body, &mut check, head, &put, idle).await;
            if !matches!(outcome, Pumped::Done) {
                // The client may still be sending: read the rest, so that it gets its answer.
                body.drain(idle).await;
            }
            // A failed body must not look complete to XAPI: its upload is aborted. If XAPI already has all it
            // reads, it completes the import whatever comes after: that is waited for first, so that the answer
            // and the cleanup (`finish` removes the VM) do not depend on how fast XAPI read.
            let complete = !matches!(outcome, Pumped::Failed(_));
            if !complete && check.importer_has_all() {
                let wait = config.xapi_timeout as f64;
                let _ = xo_edge::transfer::task::wait_end(&ctx.xapi, &plan.session, &plan.task, wait).await;
            }
            let sent = end_put(put, complete, &config).await;
            let body_result = match outcome {
                Pumped::Done | Pumped::XapiStopped => Ok(()),
                Pumped::Failed(f) => Err(f),
            };
            (sent, body_result)
        }
        Err(PutStart::Refused(e)) => {
            body.drain(idle).await;
            let t = &plan.task;
            let e =
                xo_edge::transfer::task::abandon(&ctx.xapi, &plan.session, t, None, plan.temporary_session, e).await;
            return log.answer(out, Reply::error(&e)).await;
        }
        Err(PutStart::Answered(status)) => {
            body.drain(idle).await;
            (Ok(status), Ok(()))
        }
        Err(PutStart::Failed(e)) => {
            body.drain(idle).await;
            (Err(e), Ok(()))
        }
    };
    match vm_import::finish(&ctx, &plan, sent, body_result).await {
        Ok(reply) => {
            let status = reply.status;
            let (_, whole) = crate::response::send(out, with_refresh(reply, &caller), log.idle, None).await;
            log.line(if whole { status } else { 499 }, plan.length as usize);
        }
        Err(e) => log.answer(out, Reply::error(&e)).await,
    }
}
