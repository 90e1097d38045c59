//! Async waits and byte moves over WASI 0.2 streams, for the executor every component runs under
//! ([`spin_executor::run`]: it polls the handler's one future and, while it is pending, blocks in `wasi:io/poll` on
//! the pollables the future registered).
//!
//! - [`ready`] waits for a pollable, optionally bounded by a [`Deadline`] on the monotonic clock: that is how every
//!   XAPI timeout (`xapi_timeout`) is kept.
//! - [`read`] / [`read_blocking`] / [`write_all`] move bytes through the guest; [`copy_batched`] gathers small
//!   frames into large writes (unchecked exports); [`splice_all`] lets the host move bytes from one stream to another
//!   without their entering the guest (unchecked imports).
//!
//! Nothing here knows HTTP or XAPI.

use spin_executor::{push_waker_and_get_token, CancelOnDropToken};
use std::future::poll_fn;
use std::task::Poll;
use wasi::clocks::monotonic_clock;
use wasi::io::poll::Pollable;
use wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Most bytes one splice is asked to move (a splice moves at most what the input has buffered).
const SPLICE_MAX: u64 = 4 << 20;

/// An instant on the monotonic clock to give up at.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(u64);

impl Deadline {
    /// `seconds` from now.
    pub fn after(seconds: u64) -> Deadline {
        Deadline(monotonic_clock::now().saturating_add(seconds.saturating_mul(1_000_000_000)))
    }

    /// `ms` milliseconds from now.
    pub fn after_ms(ms: u64) -> Deadline {
        Deadline(monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)))
    }

    fn passed(self) -> bool {
        monotonic_clock::now() >= self.0
    }

    fn pollable(self) -> Pollable {
        monotonic_clock::subscribe_instant(self.0)
    }
}

/// Waits until the pollable that `subscribe` makes is ready (`true`), or the deadline passed (`false`). Callers
/// check their condition again afterwards: a wake-up may be another pollable's, and `pollable.ready` is not to be
/// trusted for timers (wasmtime 49 answers `false` for a clock pollable whose instant has passed), so the deadline
/// is read from the clock itself.
pub async fn ready(subscribe: impl Fn() -> Pollable, deadline: Option<Deadline>) -> bool {
    let mut waiting: Vec<CancelOnDropToken> = Vec::with_capacity(2);
    poll_fn(move |cx| {
        if deadline.is_some_and(Deadline::passed) {
            return Poll::Ready(false);
        }
        if !waiting.is_empty() {
            return Poll::Ready(true);
        }
        let pollable = subscribe();
        if pollable.ready() {
            return Poll::Ready(true);
        }
        if let Some(deadline) = deadline {
            waiting.push(push_waker_and_get_token(deadline.pollable(), cx.waker().clone()).into());
        }
        waiting.push(push_waker_and_get_token(pollable, cx.waker().clone()).into());
        Poll::Pending
    })
    .await
}

/// Resolves once the reader of `output` has gone (its `check_write` fails), looking every `every_ms` milliseconds:
/// how a long-lived answer notices a client that left while the answer waits on something else.
pub async fn gone(output: &OutputStream, every_ms: u64) {
    while output.check_write().is_ok() {
        let d = Deadline::after_ms(every_ms);
        ready(|| d.pollable(), Some(d)).await;
    }
}

/// Runs `a` until it ends (`Some` of its output) or `b` ends first (`None`; `a` is dropped, and with it whatever it
/// was waiting on, e.g. a request to XAPI).
pub async fn unless<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> Option<A::Output> {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    poll_fn(move |cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if b.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Why moving bytes stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// Nothing came before the deadline.
    Timeout,
    /// Reading failed (the peer broke the connection or the body was malformed).
    Input(String),
    /// Writing failed (the reader went away).
    Output(String),
}

fn describe(e: StreamError) -> String {
    match e {
        StreamError::Closed => "closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// The next bytes of `input`, at most `max`; `None` at its end. Gives up at `deadline`.
pub async fn read(input: &InputStream, max: u64, deadline: Option<Deadline>) -> Result<Option<Vec<u8>>, IoError> {
    loop {
        match input.read(max) {
            Ok(bytes) if !bytes.is_empty() => return Ok(Some(bytes)),
            Ok(_) => {
                if !ready(|| input.subscribe(), deadline).await {
                    return Err(IoError::Timeout);
                }
            }
            Err(StreamError::Closed) => return Ok(None),
            Err(e) => return Err(IoError::Input(describe(e))),
        }
    }
}

/// The next bytes of `input`, at most `max`, waiting in the host for them; `None` at its end. For bodies whose
/// silence the host bounds (XAPI's answers, with a between-bytes timeout) or that may wait (a client's upload): one
/// host call per frame, where [`read`] also goes through the executor whenever the frame is not there yet.
pub fn read_blocking(input: &InputStream, max: u64) -> Result<Option<Vec<u8>>, IoError> {
    loop {
        match input.blocking_read(max) {
            Ok(bytes) if !bytes.is_empty() => return Ok(Some(bytes)),
            Ok(_) => continue,
            Err(StreamError::Closed) => return Ok(None),
            // The host's between-bytes timeout (wasi:http's `connection-read-timeout`).
            Err(e) => {
                let why = describe(e);
                let timeout = why.to_ascii_lowercase().contains("timeout");
                return Err(if timeout { IoError::Timeout } else { IoError::Input(why) });
            }
        }
    }
}

/// How many bytes `output` takes now, waiting until it takes some: at most `idle` seconds, when given.
async fn permit(output: &OutputStream, idle: Option<u64>) -> Result<u64, IoError> {
    loop {
        match output.check_write() {
            Ok(0) => {
                if !ready(|| output.subscribe(), idle.map(Deadline::after)).await {
                    return Err(IoError::Timeout);
                }
            }
            Ok(n) => return Ok(n),
            Err(e) => return Err(IoError::Output(describe(e))),
        }
    }
}

/// Writes what `output` takes without waiting; answers how many bytes of `data` it took.
pub fn write_now(output: &OutputStream, data: &[u8]) -> Result<usize, IoError> {
    let mut done = 0;
    while done < data.len() {
        let n = output.check_write().map_err(|e| IoError::Output(describe(e)))?;
        if n == 0 {
            break;
        }
        let k = usize::try_from(n).unwrap_or(usize::MAX).min(data.len() - done);
        output.write(&data[done..done + k]).map_err(|e| IoError::Output(describe(e)))?;
        done += k;
    }
    Ok(done)
}

/// Writes all of `data`, waiting for the reader as needed.
pub async fn write_all(output: &OutputStream, data: &[u8]) -> Result<(), IoError> {
    write_all_idle(output, data, None).await
}

/// Writes all of `data`, waiting for the reader as needed but giving up ([`IoError::Timeout`]) when it takes
/// nothing for `idle` seconds: a client that stops reading does not hold an export (and what it holds on XAPI) open.
pub async fn write_all_idle(output: &OutputStream, mut data: &[u8], idle: Option<u64>) -> Result<(), IoError> {
    while !data.is_empty() {
        let n = permit(output, idle).await?;
        let k = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
        output.write(&data[..k]).map_err(|e| IoError::Output(describe(e)))?;
        data = &data[k..];
    }
    Ok(())
}

/// Flushes `output` and waits until the flush is done.
pub async fn flush(output: &OutputStream) -> Result<(), IoError> {
    output.flush().map_err(|e| IoError::Output(describe(e)))?;
    permit(output, None).await.map(|_| ())
}

/// Moves everything from `input` to `output` inside the host, the bytes never entering the guest, until `input`
/// ends or `limit` bytes moved (a body with a Content-Length is closed by the host once complete). Answers how many
/// bytes moved. Each `blocking-splice` waits in the host for the next frame: one host call per frame (hosts hand
/// bodies over in frames of a few KiB), twice the speed of waiting through the executor between splices. Silence on
/// `input` is bounded by the host (an outgoing request's between-bytes timeout), not here.
pub async fn splice_all(input: &InputStream, output: &OutputStream, limit: Option<u64>) -> Result<u64, IoError> {
    let mut moved = 0u64;
    loop {
        if limit == Some(moved) {
            return Ok(moved);
        }
        // blocking-splice waits for the output's permit too: no check-write call of our own per frame.
        let n = limit.map_or(SPLICE_MAX, |l| (l - moved).min(SPLICE_MAX));
        match output.blocking_splice(input, n) {
            Ok(k) => moved += k,
            // Either side may have ended: the output's own state says which.
            Err(e) => {
                let output_failed = output.check_write().is_err();
                return match e {
                    StreamError::Closed if !output_failed => Ok(moved),
                    e if output_failed => Err(IoError::Output(describe(e))),
                    e => Err(IoError::Input(describe(e))),
                };
            }
        }
    }
}

/// Copies everything from `input` to `output` through the guest, gathering the host's small frames into writes of
/// about `batch` bytes, until `input` ends or `limit` bytes were copied; answers how many. Costs a copy into guest
/// memory, but a client-bound body written in large pieces costs the host far less than one written frame by frame.
pub async fn copy_batched(
    input: &InputStream,
    output: &OutputStream,
    limit: Option<u64>,
    batch: usize,
    idle: Option<u64>,
) -> Result<u64, IoError> {
    let mut copied = 0u64;
    let mut pending: Vec<u8> = Vec::with_capacity(batch);
    loop {
        if limit == Some(copied) {
            break;
        }
        let want = limit.map_or(batch as u64, |l| (l - copied).min(batch as u64));
        match read_blocking(input, want)? {
            Some(bytes) => {
                copied += bytes.len() as u64;
                if pending.is_empty() && bytes.len() >= batch / 2 {
                    write_all_idle(output, &bytes, idle).await?;
                } else {
                    pending.extend_from_slice(&bytes);
                    if pending.len() >= batch / 2 {
                        write_all_idle(output, &pending, idle).await?;
                        pending.clear();
                    }
                }
            }
            None => break,
        }
    }
    write_all_idle(output, &pending, idle).await?;
    Ok(copied)
}
