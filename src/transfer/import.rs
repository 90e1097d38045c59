//! VDI imports: `POST /rest/v0/srs/<id>/vdis[?raw&name_label=&name_description=&size=]` (a new VDI) and
//! `PUT /rest/v0/vdis/<id>.vhd|.raw` (into an existing one), planned here, streamed by a component.
//!
//! XAPI's `/import_raw_vdi` refuses chunked bodies and a VHD needs its exact length, so the length is settled
//! before the PUT starts: the client's `Content-Length` for an uncompressed body, else for a VHD the end of its last
//! block (from footer, header and BAT, read first), else for raw the `size=` parameter (411 without it). The VDI is
//! sized from the VHD footer's current size or the raw length. Whatever fails — a bad VHD, a short or long body, a
//! client that leaves, XAPI — the task and a VDI created here are destroyed; [`finish`] decides the answer.

use super::export::DiskFormat;
use super::task::{self, Outcome};
use crate::error::ApiError;
use crate::formats::vhd::VhdError;
use crate::objects;
use crate::query::params;
use crate::rest::auth::Caller;
use crate::rest::{collections, Ctx, Reply, Request};
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Value};

/// Where the disk goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new VDI on this SR (uuid or OpaqueRef).
    NewOn(String),
    /// This existing VDI.
    Into(String),
}

/// An import route, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRoute {
    pub target: Target,
    pub format: DiskFormat,
}

/// Parses an import route: `POST /rest/v0/srs/<id>/vdis` or `PUT /rest/v0/vdis/<id>.vhd|.raw`.
pub fn import_route(method: &str, path: &str, query: &str) -> Option<ImportRoute> {
    let rest = path.trim_end_matches('/').strip_prefix("/rest/v0/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["srs", sr, "vdis"]) if !sr.is_empty() => {
            // XO 6's boolean: present (legacy XO's `?raw`) or `true`; `raw=false` is a VHD.
            let raw = params::pairs(query).iter().any(|(k, v)| k == "raw" && v != "false" && v != "0");
            let format = if raw { DiskFormat::Raw } else { DiskFormat::Vhd };
            Some(ImportRoute { target: Target::NewOn(sr.to_string()), format })
        }
        ("PUT", ["vdis", file]) => {
            let route = super::export::disk_route(path)?;
            let _ = file;
            Some(ImportRoute { target: Target::Into(route.id), format: route.format })
        }
        _ => None,
    }
}

/// The body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

/// What the request says about the upload.
#[derive(Debug, Clone)]
pub struct Upload {
    pub route: ImportRoute,
    pub encoding: Encoding,
    /// The client's `Content-Length`, when it sent one.
    pub content_length: Option<u64>,
    /// The disk's length as sent to XAPI, when known before reading the body (raw: Content-Length or `size=`).
    pub length: Option<u64>,
    pub name_label: Option<String>,
    pub name_description: String,
    /// `Accept: application/json`: answer `{"id": …}` instead of the plain uuid.
    pub json: bool,
}

impl Upload {
    /// Whether the body can go to XAPI untouched: raw, not compressed, with a length.
    pub fn pass_through(&self) -> bool {
        self.route.format == DiskFormat::Raw && self.encoding == Encoding::Identity && self.content_length.is_some()
    }
}

/// The request's `Content-Encoding`: none, gzip or zstd (anything else: 415).
pub fn content_encoding(req: &Request) -> Result<Encoding, ApiError> {
    Ok(match req.header("content-encoding").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Encoding::Identity,
        Some("gzip") | Some("x-gzip") => Encoding::Gzip,
        Some("zstd") => Encoding::Zstd,
        Some(other) => {
            return Err(ApiError::new(415, format!("Content-Encoding {other} is not supported: use gzip or zstd")))
        }
    })
}

/// The lengths an upload announces: its `Content-Length` and its `size=` parameter (either may be absent).
pub(crate) fn declared_lengths(req: &Request, size: Option<String>) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let content_length = match req.header("content-length") {
        None => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| ApiError::bad_request("invalid Content-Length"))?),
    };
    let size = match size {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid size {v:?}")))?),
    };
    Ok((content_length, size))
}

/// Reads and checks what the request says about its body, before reading it.
pub fn read_upload(req: &Request, route: ImportRoute) -> Result<Upload, ApiError> {
    let pairs = params::pairs(&req.query);
    let param = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let encoding = content_encoding(req)?;
    let (content_length, size) = declared_lengths(req, param("size"))?;
    let plain_length = content_length.filter(|_| encoding == Encoding::Identity);
    let length = match route.format {
        DiskFormat::Vhd => plain_length,
        DiskFormat::Raw => {
            if let (Some(s), Some(l)) = (size, plain_length) {
                if s != l {
                    return Err(ApiError::bad_request(format!("size={s} but the body has {l} bytes")));
                }
            }
            let l = plain_length.or(size).ok_or_else(|| {
                ApiError::new(411, "a raw upload needs its length: send Content-Length, or size=<bytes> with a chunked or compressed body")
            })?;
            if l == 0 {
                return Err(ApiError::bad_request("an empty raw disk cannot be imported"));
            }
            Some(l)
        }
    };
    let json = req.header("accept").is_some_and(|a| a.contains("application/json"));
    Ok(Upload {
        route,
        encoding,
        content_length,
        length,
        name_label: param("name_label").filter(|n| !n.is_empty()),
        name_description: param("name_description").unwrap_or_default(),
        json,
    })
}

/// The error for a VHD that cannot be imported: 415 when the body is not a dynamic or differencing VHD at all (a
/// fixed VHD has its only footer at its end, so it is refused at its first bytes too), 422 when it is a damaged one.
pub fn bad_vhd(e: &VhdError) -> ApiError {
    match e {
        VhdError::FixedNotSupported | VhdError::BadFooterCookie => ApiError::new(
            415,
            "not a dynamic or differencing VHD: a fixed VHD must be converted first (`qemu-img convert -O vpc -o \
             subformat=dynamic in.vhd out.vhd`), and a raw image is imported with `?raw`",
        )
        .with_data(json!({ "reason": e.to_string() })),
        e => ApiError::new(422, format!("invalid VHD: {e}")),
    }
}

/// A started import: the VDI and task exist, XAPI's handler is to be called.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    /// XAPI's handler, path and query (no credentials).
    pub upstream: String,
    /// The `Cookie` header that authenticates the handler call.
    pub cookie: String,
    /// The exact number of bytes XAPI will be sent.
    pub length: u64,
    pub task: String,
    pub vdi: String,
    pub vdi_uuid: String,
    /// Whether the VDI was created by this import (and is destroyed if it fails).
    pub created: bool,
    pub json: bool,
    pub session: String,
    pub temporary_session: bool,
}

pub(crate) fn iso_now(now: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, secs) = ((now / 86_400) as i64, now % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Plans an import of `length` bytes holding a disk of `virtual_size` bytes: finds or creates the VDI (checking the
/// size of an existing one), creates the task.
pub async fn plan_import<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    upload: &Upload,
    virtual_size: u64,
    length: u64,
) -> Result<ImportPlan, ApiError> {
    let s = json!(caller.session);
    let fmt = upload.route.format.name();
    let (vdi, vdi_uuid, created, name) = match &upload.route.target {
        Target::NewOn(sr) => {
            let coll = objects::collection("srs").ok_or_else(|| ApiError::internal("srs collection missing"))?;
            let (sr_ref, _) = collections::find(ctx, caller, coll, sr).await?;
            let name =
                upload.name_label.clone().unwrap_or_else(|| format!("[XO] Imported disk - {}", iso_now(ctx.now)));
            let record = json!({
                "name_label": name,
                "name_description": upload.name_description,
                "SR": sr_ref,
                "virtual_size": virtual_size,
                "type": "user",
                "sharable": false,
                "read_only": false,
                // Marked from birth: if this edge instance dies before the import ends, a later sweep finds it
                // through the task (task::sweep).
                "other_config": { (task::IMPORT_MARK): ctx.now.to_string() },
            });
            let vdi = ctx.xapi.call("VDI.create", &[s.clone(), record]).await.map_err(|e| e.to_api_error())?;
            let vdi = vdi.as_str().unwrap_or_default().to_string();
            match ctx.xapi.call("VDI.get_uuid", &[s.clone(), json!(vdi)]).await {
                Ok(u) => (vdi, u.as_str().unwrap_or_default().to_string(), true, name),
                Err(e) => {
                    let _ = ctx.xapi.call("VDI.destroy", &[s.clone(), json!(vdi)]).await;
                    return Err(e.to_api_error());
                }
            }
        }
        Target::Into(id) => {
            let coll = objects::collection("vdis").ok_or_else(|| ApiError::internal("vdis collection missing"))?;
            let (vdi, rec) = collections::find(ctx, caller, coll, id).await?;
            let size = super::export::virtual_size(&rec);
            if size != virtual_size {
                return Err(ApiError::new(
                    422,
                    format!("the VDI has {size} bytes and the {fmt} upload {virtual_size}: sizes must match"),
                )
                .with_data(json!({ "vdiSize": size, "uploadSize": virtual_size })));
            }
            let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or(id).to_string();
            let name = rec.get("name_label").and_then(Value::as_str).unwrap_or_default().to_string();
            (vdi, uuid, false, name)
        }
    };
    task::sweep(&ctx.xapi, &caller.session, ctx.now, ctx.config.orphan_after).await;
    let label = format!("Importing content into VDI {name}");
    let task = match task::create(&ctx.xapi, &caller.session, &label, "xo-edge", ctx.now).await {
        Ok(t) => t,
        Err(e) => {
            if created {
                let _ = ctx.xapi.call("VDI.destroy", &[s, json!(vdi)]).await;
            }
            return Err(e.to_api_error());
        }
    };
    if created {
        // The task names the VDI, so that sweeping the task (if this instance is cut off) destroys the VDI too.
        let anchor = [s.clone(), json!(task), json!(task::VDI_KEY), json!(vdi)];
        if let Err(e) = ctx.xapi.call("task.add_to_other_config", &anchor).await {
            let _ = task::settle(&ctx.xapi, &caller.session, &task, 0.0).await;
            let _ = ctx.xapi.call("VDI.destroy", &[s, json!(vdi)]).await;
            return Err(e.to_api_error());
        }
    }
    let query = super::export::query(&[("vdi", &vdi), ("format", fmt), ("task_id", &task)]);
    Ok(ImportPlan {
        upstream: format!("/import_raw_vdi?{query}"),
        cookie: format!("session_id={}", caller.session),
        length,
        task,
        vdi,
        vdi_uuid,
        created,
        json: upload.json,
        session: caller.session.clone(),
        temporary_session: caller.basic,
    })
}

/// What went wrong on the client's side of an import.
#[derive(Debug, Clone)]
pub enum BodyFailure {
    /// The body is not what it claims (a broken VHD, bad compression, more bytes than announced): 422 or 415.
    Invalid(ApiError),
    /// The body ended early or the connection broke: 400.
    Short(String),
}

/// How an upload to one of XAPI's import handlers ended, from how the body went, what the handler answered and how
/// XAPI's task ended: `Ok` only when all three succeeded; else the client's fault first, then XAPI's.
pub(crate) fn upload_outcome(
    body: &Result<(), BodyFailure>,
    xapi: &Result<u16, String>,
    outcome: &Result<Outcome, XapiError>,
) -> Result<(), ApiError> {
    match (body, xapi, outcome) {
        (Ok(()), Ok(200), Ok(Outcome::Success)) => Ok(()),
        (Err(BodyFailure::Invalid(e)), _, _) => Err(e.clone()),
        (Err(BodyFailure::Short(why)), _, _) => Err(ApiError::bad_request(format!("the upload broke off: {why}"))),
        (Ok(()), Ok(403), _) => Err(ApiError::new(403, "XAPI refused the upload: the user may not import")),
        (Ok(()), _, Ok(Outcome::Failure(e @ XapiError::Api { .. }))) => {
            let api = e.to_api_error();
            Err(if api.status == 502 {
                ApiError::bad_gateway("XAPI failed the import").with_data(api.body()["data"].clone())
            } else {
                api
            })
        }
        (Ok(()), Err(why), _) => {
            Err(ApiError::bad_gateway(format!("XAPI's import handler could not be reached: {why}")))
        }
        (Ok(()), Ok(status), o) => {
            Err(ApiError::bad_gateway(format!("XAPI's import handler answered HTTP {status}, task: {o:?}")))
        }
    }
}

/// Ends an import: waits for XAPI's task and destroys it, destroys a created VDI unless everything succeeded, logs
/// out a temporary session, and answers the client. `xapi` is the HTTP status XAPI's handler answered (or why it
/// could not be called), `body` how reading the client's body went.
pub async fn finish<T: Transport>(
    ctx: &Ctx<'_, T>,
    plan: &ImportPlan,
    xapi: Result<u16, String>,
    body: Result<(), BodyFailure>,
) -> Result<Reply, ApiError> {
    let wait = if xapi.is_ok() && body.is_ok() { super::export::SETTLE_WAIT } else { 10.0 };
    let outcome = task::settle(&ctx.xapi, &plan.session, &plan.task, wait).await;
    let result = upload_outcome(&body, &xapi, &outcome);
    if result.is_err() && plan.created {
        let _ = ctx.xapi.call("VDI.destroy", &[json!(plan.session), json!(plan.vdi)]).await;
    }
    if result.is_ok() && plan.created {
        let unmark = [json!(plan.session), json!(plan.vdi), json!(task::IMPORT_MARK)];
        let _ = ctx.xapi.call("VDI.remove_from_other_config", &unmark).await;
    }
    if plan.temporary_session {
        let _ = ctx.xapi.logout(&plan.session).await;
    }
    result?;
    let location = format!("/rest/v0/vdis/{}", plan.vdi_uuid);
    let status = if plan.created { 201 } else { 200 };
    let reply = if plan.json {
        Reply::json(status, &json!({ "id": plan.vdi_uuid }))
    } else {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: plan.vdi_uuid.clone().into_bytes(),
            stream: None,
        }
    };
    Ok(if plan.created { reply.with_header("location", location) } else { reply })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }

    fn upload(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Result<Upload, ApiError> {
        let route = import_route(method, path, query).expect("an import route");
        read_upload(&req(method, path, query, headers), route)
    }

    #[test]
    fn routes() {
        let r = import_route("POST", "/rest/v0/srs/abc/vdis", "raw&name_label=x").unwrap();
        assert_eq!(r, ImportRoute { target: Target::NewOn("abc".into()), format: DiskFormat::Raw });
        assert_eq!(import_route("POST", "/rest/v0/srs/abc/vdis", "raw=true").unwrap().format, DiskFormat::Raw);
        assert_eq!(import_route("POST", "/rest/v0/srs/abc/vdis", "raw=false").unwrap().format, DiskFormat::Vhd);
        assert_eq!(import_route("POST", "/rest/v0/srs/abc/vdis/", "").unwrap().format, DiskFormat::Vhd);
        let r = import_route("PUT", "/rest/v0/vdis/u-1.raw", "").unwrap();
        assert_eq!(r, ImportRoute { target: Target::Into("u-1".into()), format: DiskFormat::Raw });
        for (m, p) in
            [("GET", "/rest/v0/srs/abc/vdis"), ("PUT", "/rest/v0/vdi-snapshots/u.vhd"), ("POST", "/rest/v0/srs//vdis")]
        {
            assert!(import_route(m, p, "").is_none(), "{m} {p}");
        }
    }

    #[test]
    fn lengths_and_encodings() {
        let p = "/rest/v0/srs/s/vdis";
        let u = upload("POST", p, "raw", &[("content-length", "1024")]).unwrap();
        assert!(u.pass_through() && u.length == Some(1024));
        assert_eq!(upload("POST", p, "raw", &[]).unwrap_err().status, 411);
        let u = upload("POST", p, "raw&size=4096", &[("content-encoding", "gzip"), ("content-length", "100")]).unwrap();
        assert!(!u.pass_through() && u.length == Some(4096) && u.encoding == Encoding::Gzip);
        assert_eq!(upload("POST", p, "raw&size=10", &[("content-length", "11")]).unwrap_err().status, 400);
        assert_eq!(
            upload("POST", p, "raw", &[("content-encoding", "br"), ("content-length", "1")]).unwrap_err().status,
            415
        );
        assert_eq!(upload("POST", p, "raw", &[("content-length", "x")]).unwrap_err().status, 400);
        let u = upload("POST", p, "name_label=disk&name_description=d", &[]).unwrap();
        assert_eq!((u.length, u.name_label.as_deref(), u.name_description.as_str()), (None, Some("disk"), "d"));
        let u = upload("PUT", "/rest/v0/vdis/u.vhd", "", &[("content-length", "5"), ("accept", "application/json")]);
        let u = u.unwrap();
        assert!(!u.pass_through() && u.length == Some(5) && u.json);
    }

    #[test]
    fn dates() {
        assert_eq!(iso_now(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_now(1_795_790_292), "2026-11-27T14:38:12Z");
        assert_eq!(iso_now(951_782_400), "2000-02-29T00:00:00Z");
    }
}
