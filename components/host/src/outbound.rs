//! Requests to XAPI with `wasi:http/outgoing-handler@0.2`.
//!
//! A small request (every JSON-RPC call) goes out whole: `content-length` set, the body written and finished
//! **before** `outgoing-handler.handle`, so the host sends headers and body together. A body that trails its
//! headers waits for the server's delayed ACK on hosts that pool connections without `TCP_NODELAY` (Spin): about
//! 43 ms a call. Streamed uploads ([`start`]) send their headers first and the body as it comes.

use crate::io::{self, Deadline, IoError};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    FutureIncomingResponse, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use wasi::io::streams::{InputStream, OutputStream};

/// Why a request to XAPI got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    Timeout,
    Failed(String),
}

/// A request not yet sent: its body is open for writing.
pub struct Outgoing {
    request: OutgoingRequest,
    body: OutgoingBody,
    pub stream: OutputStream,
    /// Seconds the answer's body may stay silent before the host breaks it.
    idle: Option<u64>,
}

/// A response from XAPI whose body is open for reading.
pub struct Upstream {
    pub status: u16,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    pub stream: InputStream,
    // Dropped after `stream` (fields drop in order): the body outlives its stream.
    _body: IncomingBody,
    _response: IncomingResponse,
}

/// A request on its way: its body still open for writing, the answer to come (or come: [`Sending::head`]).
pub struct Sending {
    pub stream: OutputStream,
    body: OutgoingBody,
    answer: FutureIncomingResponse,
    head: Option<Upstream>,
}

/// Seconds a connection to a pool host may take to open: a host that is down must not hold a request for the whole
/// `xapi_timeout` before the pool's other hosts are tried.
pub const CONNECT_TIMEOUT: u64 = 5;

/// A request to `base` (XAPI's URL: scheme and authority) + `path_with_query`.
pub fn request(
    method: Method,
    base: &str,
    path_with_query: &str,
    headers: &[(&str, &[u8])],
) -> Result<Outgoing, String> {
    let uri: http::Uri = base.parse().map_err(|e| format!("xapi_url: {e}"))?;
    let fields = wasi::http::types::Fields::new();
    for (name, value) in headers {
        fields.append(&name.to_string(), &value.to_vec()).map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let scheme = if uri.scheme_str() == Some("https") { Scheme::Https } else { Scheme::Http };
    let ok = request.set_method(&method).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(uri.authority().map(|a| a.as_str())).is_ok()
        && request.set_path_with_query(Some(path_with_query)).is_ok();
    if !ok {
        return Err("invalid XAPI request".into());
    }
    let body = request.body().map_err(|()| "the request body was taken".to_string())?;
    let stream = body.write().map_err(|()| "the request body stream was taken".to_string())?;
    Ok(Outgoing { request, body, stream, idle: None })
}

fn failed(e: impl std::fmt::Debug) -> SendError {
    SendError::Failed(format!("{e:?}"))
}

impl Outgoing {
    /// Lets the answer's body stay silent at most `seconds` between two frames (the host enforces it).
    pub fn idle(mut self, seconds: u64) -> Outgoing {
        self.idle = Some(seconds);
        self
    }

    fn options(&self) -> Option<RequestOptions> {
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT * 1_000_000_000));
        if let Some(seconds) = self.idle {
            let _ = options.set_between_bytes_timeout(Some(seconds.saturating_mul(1_000_000_000)));
        }
        Some(options)
    }

    /// Sends the request with all of `body` (its `content-length` must have been set): written and finished before
    /// the host is handed the request when it fits the host's buffer, which is always the case for JSON-RPC.
    pub async fn send_whole(self, body: &[u8], deadline: Deadline) -> Result<Upstream, SendError> {
        let options = self.options();
        let Outgoing { request, body: out, stream, .. } = self;
        let done = io::write_now(&stream, body).map_err(|e| SendError::Failed(format!("{e:?}")))?;
        let answer = if done == body.len() {
            drop(stream);
            OutgoingBody::finish(out, None).map_err(failed)?;
            outgoing_handler::handle(request, options).map_err(failed)?
        } else {
            let answer = outgoing_handler::handle(request, options).map_err(failed)?;
            io::write_all(&stream, &body[done..]).await.map_err(|e| SendError::Failed(format!("{e:?}")))?;
            drop(stream);
            OutgoingBody::finish(out, None).map_err(failed)?;
            answer
        };
        wait(&answer, deadline).await
    }

    /// Hands the request to the host now; its body is written afterwards ([`Sending`]).
    pub fn start(self) -> Result<Sending, SendError> {
        let options = self.options();
        let Outgoing { request, body, stream, .. } = self;
        let answer = outgoing_handler::handle(request, options).map_err(failed)?;
        Ok(Sending { stream, body, answer, head: None })
    }
}

impl Sending {
    /// Waits for the answer's head before any of the body is written: XAPI's handlers answer (200, or 302 to the
    /// host that sees the storage) before they read a byte (`ocaml/xapi/import_raw_vdi.ml`, `import.ml`), so a
    /// redirected upload has lost nothing.
    pub async fn head(&mut self, deadline: Deadline) -> Result<&Upstream, SendError> {
        if self.head.is_none() {
            self.head = Some(wait(&self.answer, deadline).await?);
        }
        self.head.as_ref().ok_or_else(|| SendError::Failed("no answer".into()))
    }

    /// Ends the body: complete (`true`) or aborted, so that XAPI sees a broken upload. Then waits for the answer.
    pub async fn end(self, complete: bool, deadline: Deadline) -> Result<Upstream, SendError> {
        let Sending { stream, body, answer, head } = self;
        let _ = io::flush(&stream).await;
        drop(stream);
        if complete {
            OutgoingBody::finish(body, None).map_err(failed)?;
        } else {
            drop(body);
        }
        match head {
            Some(head) => Ok(head),
            None => wait(&answer, deadline).await,
        }
    }
}

/// Waits for the answer to a sent request.
async fn wait(answer: &FutureIncomingResponse, deadline: Deadline) -> Result<Upstream, SendError> {
    loop {
        match answer.get() {
            Some(Ok(Ok(response))) => {
                let status = response.status();
                let location = response
                    .headers()
                    .get(&"location".to_string())
                    .into_iter()
                    .next()
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                let body = response.consume().map_err(|()| SendError::Failed("no response body".into()))?;
                let stream = body.stream().map_err(|()| SendError::Failed("no response body stream".into()))?;
                return Ok(Upstream { status, location, stream, _body: body, _response: response });
            }
            Some(Ok(Err(e))) => return Err(failed(e)),
            Some(Err(())) => return Err(SendError::Failed("the response was already taken".into())),
            None => {
                if !io::ready(|| answer.subscribe(), Some(deadline)).await {
                    return Err(SendError::Timeout);
                }
            }
        }
    }
}

impl Upstream {
    /// Reads the body to its end (small answers only), within `deadline`.
    pub async fn read_all(&self, limit: usize, deadline: Deadline) -> Result<Vec<u8>, SendError> {
        let mut all = Vec::new();
        loop {
            match io::read(&self.stream, 256 * 1024, Some(deadline)).await {
                Ok(Some(bytes)) => {
                    all.extend_from_slice(&bytes);
                    if all.len() > limit {
                        return Err(SendError::Failed(format!("XAPI's answer is larger than {limit} bytes")));
                    }
                }
                Ok(None) => return Ok(all),
                Err(IoError::Timeout) => return Err(SendError::Timeout),
                Err(e) => return Err(SendError::Failed(format!("{e:?}"))),
            }
        }
    }
}
