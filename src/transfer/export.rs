//! VDI exports: `GET /rest/v0/vdis/<id>.vhd|.raw` (and `vdi-snapshots`), planned here, streamed by a component.
//!
//! A plan says which XAPI handler URL to open (`/export_raw_vdi`, the session in a cookie, never in a URL), under
//! which task, what status and headers the client gets, and how the bytes travel:
//! - `.raw`, whole: **pass-through**. XAPI's body goes to the client untouched, with `Content-Length` = the
//!   virtual size; the runtime aborts the response if fewer or more bytes come, so a cut is never a clean end.
//! - `.raw` with `Range`: through the guest, [`Check::slice`], 206 with its exact `Content-Length`.
//! - `.vhd`: through the guest, [`Check::vhd`]: XAPI sends no length, so the VHD structure is what proves the end.
//!
//! Errors before the first byte are JSON: 404 unknown VDI, 409 busy (XAPI's code in `data`), 502 XAPI failures.

use super::check::Check;
use super::range::{self, Ranged};
use super::task::{self, Outcome};
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::rest::auth::Caller;
use crate::rest::{collections, Ctx, Reply, Request};
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Value};

/// Longest wait, in seconds, for XAPI to end a task once its stream is over (it ends it right away normally).
pub const SETTLE_WAIT: f64 = 60.0;

/// The two disk formats of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Vhd,
    Raw,
}

impl DiskFormat {
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Vhd => "vhd",
            DiskFormat::Raw => "raw",
        }
    }
}

/// `/rest/v0/<vdis|vdi-snapshots>/<id>.<vhd|raw>`, parsed.
#[derive(Debug, Clone)]
pub struct DiskRoute {
    pub collection: &'static Collection,
    pub id: String,
    pub format: DiskFormat,
}

/// Parses a disk content route; `None` when the path is not one.
pub fn disk_route(path: &str) -> Option<DiskRoute> {
    let rest = path.trim_end_matches('/').strip_prefix("/rest/v0/")?;
    let (coll, file) = rest.split_once('/')?;
    if coll != "vdis" && coll != "vdi-snapshots" {
        return None;
    }
    let (id, ext) = file.rsplit_once('.')?;
    let format = match ext {
        "vhd" => DiskFormat::Vhd,
        "raw" => DiskFormat::Raw,
        _ => return None,
    };
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(DiskRoute { collection: objects::collection(coll)?, id: id.to_string(), format })
}

/// How the body travels from XAPI to the client.
#[derive(Debug)]
pub enum Streaming {
    /// XAPI's body stream is handed to the client as is.
    PassThrough,
    /// Read, checked and forwarded by the guest.
    Through(Check),
}

/// A started export: the task exists, the handler is to be called.
#[derive(Debug)]
pub struct ExportPlan {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// XAPI's handler, path and query (no credentials).
    pub upstream: String,
    /// The `Cookie` header that authenticates the handler call.
    pub cookie: String,
    pub task: String,
    pub streaming: Streaming,
    /// The caller's XAPI session, and whether it is a temporary one (Basic) to log out at the end.
    pub session: String,
    pub temporary_session: bool,
    /// A snapshot taken for this export (running VM), destroyed at the end.
    pub snapshot: Option<String>,
    /// Compression at the edge (VM exports), applied to what the check lets through.
    pub compressor: Option<super::compress::Compressor>,
    /// The address of the pool host whose handler serves this (a host's own logs); `None`: the master, and wherever
    /// it redirects.
    pub host: Option<String>,
}

/// What to do with a request: answer at once (HEAD, 416) or stream.
#[derive(Debug)]
pub enum Plan {
    Reply(Reply),
    Stream(ExportPlan),
}

/// A VDI record's virtual size (XAPI sends int64 as a JSON number, or as a string over XML-RPC).
pub(crate) fn virtual_size(rec: &Value) -> u64 {
    match rec.get("virtual_size") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A URL query string of `pairs`, encoded.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Plans the export of a VDI's content: checks the VDI, works out status and headers, creates the task.
pub async fn plan_vdi_export<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    req: &Request,
    route: &DiskRoute,
) -> Result<Plan, ApiError> {
    let (reference, rec) = collections::find(ctx, caller, route.collection, &route.id).await?;
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or(&route.id).to_string();
    let size = virtual_size(&rec);
    let fmt = route.format.name();
    let mut headers = vec![
        ("content-type".to_string(), "application/octet-stream".to_string()),
        ("content-disposition".to_string(), format!("attachment; filename=\"{uuid}.{fmt}\"")),
    ];
    let (status, streaming) = match route.format {
        DiskFormat::Vhd => (200, Streaming::Through(Check::vhd())),
        DiskFormat::Raw => {
            headers.push(("accept-ranges".into(), "bytes".into()));
            let ranged = if req.method == "GET" { range::parse(req.header("range"), size) } else { Ranged::Full };
            match ranged {
                Ranged::Full => {
                    headers.push(("content-length".into(), size.to_string()));
                    (200, Streaming::PassThrough)
                }
                Ranged::Part { start, end } => {
                    headers.push(("content-length".into(), (end - start + 1).to_string()));
                    headers.extend(ranged.content_range(size).map(|v| ("content-range".to_string(), v)));
                    (206, Streaming::Through(Check::slice(start, end)))
                }
                Ranged::Unsatisfiable => {
                    let e = ApiError::new(416, format!("the range is outside the disk's {size} bytes"))
                        .with_data(json!({ "size": size }));
                    let reply = Reply::error(&e).with_header("content-range", format!("bytes */{size}"));
                    return Ok(Plan::Reply(reply));
                }
            }
        }
    };
    if req.method == "HEAD" {
        let mut reply = Reply { status, headers, body: Vec::new(), stream: None };
        reply.headers.retain(|(k, _)| k != "content-length");
        return Ok(Plan::Reply(reply));
    }
    let name = rec.get("name_label").and_then(Value::as_str).unwrap_or_default();
    task::sweep(&ctx.xapi, &caller.session, ctx.now, ctx.config.orphan_after).await;
    let task = task::create(
        &ctx.xapi,
        &caller.session,
        &format!("Exporting content of VDI {name} as {fmt}"),
        &format!("xo-edge: GET {}", req.path),
        ctx.now,
    )
    .await
    .map_err(|e| e.to_api_error())?;
    Ok(Plan::Stream(ExportPlan {
        status,
        headers,
        upstream: format!("/export_raw_vdi?{}", query(&[("vdi", &reference), ("format", fmt), ("task_id", &task)])),
        cookie: format!("session_id={}", caller.session),
        task,
        streaming,
        session: caller.session.clone(),
        temporary_session: caller.basic,
        snapshot: None,
        compressor: None,
        host: None,
    }))
}

/// Why a transfer failed before the client got its first byte.
#[derive(Debug, Clone)]
pub enum StartFailure {
    /// XAPI's handler answered this HTTP status instead of 200.
    Status(u16),
    /// XAPI could not be reached, or the connection broke.
    Transport(String),
    /// The first bytes were wrong (e.g. an `HTTP/` error inside the body).
    Body(String),
    /// XAPI's handler did not answer within `xapi_timeout` seconds.
    Timeout(u64),
    /// XAPI redirected to a host the edge does not follow there (outside the pool or the fence, a loop), or whose
    /// hosts could not be read: the error the client gets. The handler never started, so neither did the task.
    Redirect(ApiError),
}

/// Ends the plan's task and temporary session after a failed start; answers the client's error. XAPI's own error
/// (from the task) decides the status when there is one: 404 for an unknown object, 409 when busy, else 502.
pub async fn failed_start<T: Transport>(ctx: &Ctx<'_, T>, plan: &ExportPlan, why: StartFailure) -> ApiError {
    if let StartFailure::Redirect(e) = why {
        // Nothing runs the task: it is ended now, not waited for.
        let _ = end(ctx, plan, 0.0).await;
        return e;
    }
    let outcome = end(ctx, plan, 5.0).await;
    let detail = match &why {
        StartFailure::Status(s) => format!("XAPI's export handler answered HTTP {s}"),
        StartFailure::Transport(e) => format!("XAPI's export handler could not be reached: {e}"),
        StartFailure::Body(e) => e.clone(),
        StartFailure::Timeout(s) => format!("XAPI's export handler did not answer within {s} s"),
        StartFailure::Redirect(e) => e.message.clone(),
    };
    match outcome {
        Ok(Outcome::Failure(e @ XapiError::Api { .. })) => {
            let api = e.to_api_error();
            if api.status == 502 {
                ApiError::bad_gateway(format!("export failed: {detail}")).with_data(api.body()["data"].clone())
            } else {
                api
            }
        }
        _ => match why {
            StartFailure::Status(401) => ApiError::unauthorized("XAPI refused the session"),
            StartFailure::Status(403) => ApiError::forbidden("not enough permissions on the pool"),
            StartFailure::Timeout(_) => ApiError::new(504, format!("export failed: {detail}")),
            _ => ApiError::bad_gateway(format!("export failed: {detail}")),
        },
    }
}

/// Ends a transfer: waits up to `max_wait` seconds for XAPI to end the task, destroys it and the export's
/// snapshot, and logs out a temporary session. Answers how the task ended.
pub async fn end<T: Transport>(ctx: &Ctx<'_, T>, plan: &ExportPlan, max_wait: f64) -> Result<Outcome, XapiError> {
    let outcome = task::settle(&ctx.xapi, &plan.session, &plan.task, max_wait).await;
    if let Some(snapshot) = &plan.snapshot {
        let _ = super::vm_export::destroy_snapshot(ctx, &plan.session, snapshot).await;
    }
    if plan.temporary_session {
        let _ = ctx.xapi.logout(&plan.session).await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_routes() {
        let r = disk_route("/rest/v0/vdis/770aa52a-fd42-8faf-f167-8c5c4a237cac.vhd").expect("vhd route");
        assert_eq!(
            (r.collection.name, r.id.as_str(), r.format),
            ("vdis", "770aa52a-fd42-8faf-f167-8c5c4a237cac", DiskFormat::Vhd)
        );
        let r = disk_route("/rest/v0/vdi-snapshots/OpaqueRef:abc.raw").expect("raw route");
        assert_eq!((r.collection.name, r.id.as_str(), r.format), ("vdi-snapshots", "OpaqueRef:abc", DiskFormat::Raw));
        for not in [
            "/rest/v0/vdis/x.qcow2",
            "/rest/v0/vms/x.vhd",
            "/rest/v0/vdis/.vhd",
            "/rest/v0/vdis/a/b.vhd",
            "/rest/v0/vdis",
        ] {
            assert!(disk_route(not).is_none(), "{not}");
        }
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(query(&[("vdi", "OpaqueRef:a b"), ("format", "raw")]), "vdi=OpaqueRef%3Aa+b&format=raw");
    }
}
