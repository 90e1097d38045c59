//! Answers to the client with `wasi:http/types@0.2`: a status and headers first ([`start`]), then a body written
//! through the guest or spliced from XAPI, ended cleanly ([`Body::finish`]) or aborted ([`Body::abort`]) so that a
//! client never mistakes a broken transfer for a complete one. [`send`] answers a core [`Reply`] (a listing is
//! written chunk by chunk as the core produces it, never built whole).

use crate::io::{self, IoError};
use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::OutputStream;
use xo_edge::rest::Reply;

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

/// Answers a core reply; answers the body bytes written and whether the body went out whole.
pub async fn send(out: ResponseOutparam, reply: Reply, idle: Option<u64>) -> (usize, bool) {
    let Reply { status, headers, body, stream } = reply;
    let Some(mut out) = start(out, status, &headers, idle) else {
        return (0, false);
    };
    let written = match stream {
        Some(mut listing) => {
            let mut ok = true;
            while let Some(chunk) = listing.next_chunk() {
                if out.write(&chunk).await.is_err() {
                    ok = false;
                    break;
                }
            }
            ok
        }
        None => out.write(&body).await.is_ok(),
    };
    let sent = out.sent;
    if written {
        (sent, out.finish().await)
    } else {
        out.abort();
        (sent, false)
    }
}
