//! Answers to the client with `wasi:http/types@0.2`: a status and headers first ([`start`]), then a body written
//! through the guest or spliced from XAPI, ended cleanly ([`Body::finish`]) or aborted ([`Body::abort`]) so that a
//! client never mistakes a broken transfer for a complete one. [`send`] answers a core [`Reply`] (a listing is
//! written chunk by chunk as the core produces it, never built whole).

use crate::io::{self, IoError};
use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::OutputStream;
use xo_edge::config::Config;
use xo_edge::rest::{Ctx, Reply, Stream};

/// How often a long-lived answer looks whether its client is still there, in milliseconds.
const GONE_CHECK_MS: u64 = 500;

/// A response body being written.
pub struct Body {
    pub stream: OutputStream,
    body: OutgoingBody,
    /// Bytes written so far.
    pub sent: usize,
    /// Seconds the client may take nothing before a write gives up (`client_timeout`).
    pub idle: Option<u64>,
}

/// Sends the status and headers; answers the body to write (each write giving up after `idle` seconds in which the
/// client took nothing), or `None` when the host refused the response.
pub fn start(out: ResponseOutparam, status: u16, headers: &[(String, String)], idle: Option<u64>) -> Option<Body> {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, &value.as_bytes().to_vec());
    }
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let body = response.body().ok()?;
    let stream = body.write().ok()?;
    ResponseOutparam::set(out, Ok(response));
    Some(Body { stream, body, sent: 0, idle })
}

impl Body {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), IoError> {
        io::write_all_idle(&self.stream, data, self.idle).await?;
        self.sent += data.len();
        Ok(())
    }

    /// Ends the body cleanly; `false` when the host says it is not complete (e.g. short of its Content-Length).
    pub async fn finish(self) -> bool {
        let Body { stream, body, .. } = self;
        // A body that reached its Content-Length is closed by the host: its flush fails, its finish succeeds.
        let _ = io::flush(&stream).await;
        drop(stream);
        OutgoingBody::finish(body, None).is_ok()
    }

    /// Ends the body as broken: the client sees an aborted transfer, not a short one.
    pub fn abort(self) {
        let Body { stream, body, .. } = self;
        drop(stream);
        drop(body);
    }
}

/// Answers a core reply; answers the body bytes written and whether the body went out whole. A watch stream needs
/// `config` to reach XAPI between its writes (without it, it ends at once).
pub async fn send(out: ResponseOutparam, reply: Reply, idle: Option<u64>, config: Option<&Config>) -> (usize, bool) {
    let Reply { status, headers, body, stream } = reply;
    let Some(mut out) = start(out, status, &headers, idle) else {
        return (0, false);
    };
    let written = match stream {
        Some(Stream::Listing(mut listing)) => {
            let mut ok = true;
            while let Some(chunk) = listing.next_chunk() {
                if out.write(&chunk).await.is_err() {
                    ok = false;
                    break;
                }
            }
            ok
        }
        Some(Stream::Watch(mut watch)) => {
            // Until the client leaves (a write fails) or XAPI ends the watch; either way the stream was whole.
            if let Some(config) = config {
                let transport = crate::WasiTransport::new(config);
                loop {
                    let ctx = Ctx::new(config, &transport, crate::now());
                    let Some(lines) = watch.next(&ctx).await else { break };
                    if out.write(&lines).await.is_err() {
                        break;
                    }
                }
                if let Some(session) = watch.session_to_end() {
                    let _ = Ctx::new(config, &transport, crate::now()).xapi.logout(session).await;
                }
            }
            true
        }
        Some(Stream::Events(mut events)) => {
            // Until the client leaves (a write fails, or its connection closes while the stream waits on XAPI: the
            // pending `event.from` is then dropped) or the stream's task is gone; either way the stream was whole.
            if let Some(config) = config {
                let transport = crate::WasiTransport::new(config);
                loop {
                    let ctx = Ctx::new(config, &transport, crate::now());
                    let next = io::unless(events.next(&ctx, &crate::now_ms), io::gone(&out.stream, GONE_CHECK_MS));
                    let Some(Some(bytes)) = next.await else { break };
                    if out.write(&bytes).await.is_err() || io::flush(&out.stream).await.is_err() {
                        break;
                    }
                }
                events.close(&Ctx::new(config, &transport, crate::now())).await;
            }
            true
        }
        // A plan is taken out of the reply before (`Log::answer_with`); its answer is the body.
        None | Some(Stream::Plan(_)) => out.write(&body).await.is_ok(),
    };
    let sent = out.sent;
    if written {
        (sent, out.finish().await)
    } else {
        out.abort();
        (sent, false)
    }
}
