//! VM imports: `POST /rest/v0/pools/<id>/vms[?sr=<SR uuid>][&size=<bytes>]` with an XVA body (uncompressed, gzip or
//! zstd), planned here and streamed by the `transfers` component into XAPI's `PUT /import` under a task of ours.
//!
//! The body goes to XAPI as the client sent it (XAPI tells the compressions apart by their magic, as we do), and is
//! checked on its way by [`XvaCheck`]: decompressed, its tar structure, `ova.xml` first and valid with the disks it
//! declares, every chunk against its checksum member, the end-of-archive marker, and the exact length announced.
//! Nothing is asked of XAPI before `ova.xml` was read and found valid: a body that is not an XVA is a 415 saying
//! what it looks like, before any XAPI call.
//!
//! Lengths: XAPI refuses chunked uploads (`import.ml`, `IMPORT_ERROR_CANNOT_HANDLE_CHUNKED`) and an XVA's length
//! cannot be known before its end, so the upload's byte count comes from the client: its `Content-Length`, or
//! `size=` with a chunked body (411 without either). The body is never held whole.
//!
//! Cleanup: XAPI removes a half-imported VM itself when its import fails (a body cut short, a bad chunk, a
//! cancelled task); the one case it cannot see is an archive XAPI finished reading whose end is wrong (XAPI stops
//! at the last disk's last chunk): [`finish`] destroys that VM and its disks.

use super::decode::Decoder;
use super::import::{content_encoding, BodyFailure, Encoding};
use super::task::{self, Outcome};
use crate::error::ApiError;
use crate::formats::tar::{TarCheck, TarError};
use crate::objects;
use crate::query::params;
use crate::rest::auth::Caller;
use crate::rest::{collections, Ctx, Reply, Request};
use crate::xapi::Transport;
use serde_json::{json, Value};

/// The pool id of `/rest/v0/pools/<id>/vms`.
pub fn vm_import_route(path: &str) -> Option<String> {
    let rest = path.trim_end_matches('/').strip_prefix("/rest/v0/pools/")?;
    let (pool, tail) = rest.split_once('/')?;
    (tail == "vms" && !pool.is_empty()).then(|| pool.to_string())
}

/// What the request says about an XVA upload.
#[derive(Debug, Clone)]
pub struct VmUpload {
    pub pool: String,
    /// The SR asked with `sr=` (uuid or OpaqueRef); else the pool's default SR.
    pub sr: Option<String>,
    /// The `Content-Encoding` the client declared (the body's magic decides; a contradiction is a 415).
    pub encoding: Encoding,
    /// Bytes of the body, as sent (compressed or not): what XAPI is sent.
    pub length: u64,
    /// `Accept: application/json`: answer `{"id": …}` instead of the plain uuid.
    pub json: bool,
}

/// Reads what the request says about its body, before reading it.
pub fn read_vm_upload(req: &Request, pool: String) -> Result<VmUpload, ApiError> {
    let pairs = params::pairs(&req.query);
    let param = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let encoding = content_encoding(req)?;
    let (content_length, size) = super::import::declared_lengths(req, param("size"))?;
    if let (Some(s), Some(l)) = (size, content_length) {
        if s != l {
            return Err(ApiError::bad_request(format!("size={s} but the body has {l} bytes")));
        }
    }
    let length = content_length.or(size).ok_or_else(|| {
        ApiError::new(
            411,
            "XAPI's /import refuses chunked uploads and an XVA's length is only known at its end: send \
             Content-Length, or size=<bytes of the body as sent> with a chunked body",
        )
    })?;
    if length == 0 {
        return Err(ApiError::bad_request("an empty body is not an XVA"));
    }
    Ok(VmUpload {
        pool,
        sr: param("sr").filter(|s| !s.is_empty()),
        encoding,
        length,
        json: req.header("accept").is_some_and(|a| a.contains("application/json")),
    })
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// What the start of a body that is not an XVA looks like, and what to send instead.
pub fn describe(head: &[u8]) -> String {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let tar_name = || -> Option<String> {
        let h = head.get(..512)?;
        let name = h[..100].split(|&b| b == 0).next().unwrap_or_default();
        (&h[257..262] == b"ustar").then(|| String::from_utf8_lossy(name).into_owned())
    };
    if at(0, b"conectix") {
        "a VHD disk image: import it as a disk with POST /rest/v0/srs/<id>/vdis, then attach it to a VM".into()
    } else if at(0, b"QFI\xfb") {
        "a qcow2 disk image: convert it to VHD (qemu-img convert -O vpc -o subformat=dynamic) and import it with \
         POST /rest/v0/srs/<id>/vdis"
            .into()
    } else if at(0, b"KDMV") || at(0, b"# Disk DescriptorFile") {
        "a VMDK disk image: convert it to VHD (qemu-img convert -O vpc -o subformat=dynamic) and import it with \
         POST /rest/v0/srs/<id>/vdis"
            .into()
    } else if let Some(name) = tar_name() {
        if name.to_ascii_lowercase().ends_with(".ovf") {
            format!(
                "an OVA (its first member is {name:?}): XAPI imports XVAs only; convert the OVA's disks to VHD and \
                 import them with POST /rest/v0/srs/<id>/vdis, or export the VM as an XVA"
            )
        } else {
            format!("a tar archive whose first member is {name:?}: an XVA starts with ova.xml")
        }
    } else if head.len() >= 512 && head[..512].iter().all(|&b| b == 0) {
        "data starting with a zero block (an empty archive, a raw disk or an ISO image): import a raw disk with \
         POST /rest/v0/srs/<id>/vdis?raw"
            .into()
    } else if at(0, b"<?xml") || at(0, b"<value>") {
        "XML: an XVA is a tar archive with ova.xml as its first member, then the disks' chunks".into()
    } else {
        let hex: String = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("unrecognised data (first bytes {hex}): send an XVA, as GET /rest/v0/vms/<id>.xva or XAPI export it")
    }
}

/// How the body is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Checks an XVA upload as it streams: the compressed bytes in, decompressed and checked inside.
pub struct XvaCheck {
    declared: Encoding,
    length: u64,
    received: u64,
    /// The body's first bytes, until its compression is known.
    raw_head: Vec<u8>,
    compression: Option<Compression>,
    decoder: Option<Decoder>,
    /// The first 512 decompressed bytes, to say what the body is when it is not an XVA.
    head: Vec<u8>,
    tar: TarCheck,
    scratch: Vec<u8>,
}

impl XvaCheck {
    /// A check of a body of exactly `length` bytes, declared with `declared` encoding.
    pub fn new(declared: Encoding, length: u64) -> XvaCheck {
        XvaCheck {
            declared,
            length,
            received: 0,
            raw_head: Vec::new(),
            compression: None,
            decoder: None,
            head: Vec::new(),
            tar: TarCheck::xva_upload(),
            scratch: Vec::new(),
        }
    }

    /// Whether `ova.xml` was read and found valid: XAPI may be called.
    pub fn ready(&self) -> bool {
        self.tar.ova_read()
    }

    /// Whether XAPI's importer has all it reads of the body (every disk it streams, to its last chunk's checksum):
    /// it completes the import then, whatever the rest of the body.
    pub fn importer_has_all(&self) -> bool {
        self.tar.importer_has_all()
    }

    /// The body's compression, once known.
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// The next bytes of the body, as sent.
    pub fn feed(&mut self, raw: &[u8]) -> Result<(), BodyFailure> {
        self.received += raw.len() as u64;
        if self.received > self.length {
            return Err(BodyFailure::Invalid(ApiError::new(
                413,
                format!("the upload is longer than the {} bytes announced", self.length),
            )));
        }
        if self.compression.is_none() {
            self.raw_head.extend_from_slice(raw);
            if self.raw_head.len() < ZSTD_MAGIC.len() {
                return Ok(());
            }
            let head = std::mem::take(&mut self.raw_head);
            self.sniff(&head)?;
            return self.decoded(&head);
        }
        self.decoded(raw)
    }

    /// At the end of the body: an error unless it was a whole XVA of the announced length.
    pub fn finish(&mut self) -> Result<(), BodyFailure> {
        if self.compression.is_none() {
            let head = std::mem::take(&mut self.raw_head);
            self.sniff(&head)?;
            self.decoded(&head)?;
        }
        if self.received < self.length {
            return Err(BodyFailure::Short(format!("{} of {} bytes", self.received, self.length)));
        }
        if let Some(d) = self.decoder.as_mut() {
            let mut out = std::mem::take(&mut self.scratch);
            out.clear();
            let r = d.finish(&mut out).map_err(|e| BodyFailure::Invalid(ApiError::new(422, e)));
            let pushed = r.and_then(|()| self.plain(&out));
            self.scratch = out;
            pushed?;
        }
        if self.head.len() < 512 || self.tar.entries() == 0 {
            return Err(self.not_xva());
        }
        self.tar.finish().map_err(|e| self.tar_error(e))
    }

    fn sniff(&mut self, head: &[u8]) -> Result<(), BodyFailure> {
        let found = if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let declared = match self.declared {
            Encoding::Identity => None,
            Encoding::Gzip => Some(Compression::Gzip),
            Encoding::Zstd => Some(Compression::Zstd),
        };
        if declared.is_some_and(|d| d != found) {
            let name = |c: Compression| match c {
                Compression::None => "uncompressed",
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
            };
            return Err(BodyFailure::Invalid(ApiError::new(
                415,
                format!(
                    "Content-Encoding says {} but the body is {}: leave Content-Encoding out, the compression is \
                     recognised by its magic bytes",
                    name(declared.unwrap_or(Compression::None)),
                    name(found)
                ),
            )));
        }
        self.decoder = match found {
            Compression::None => None,
            Compression::Gzip => Some(Decoder::gzip()),
            Compression::Zstd => Some(Decoder::zstd()),
        };
        self.compression = Some(found);
        Ok(())
    }

    fn decoded(&mut self, raw: &[u8]) -> Result<(), BodyFailure> {
        if self.decoder.is_none() {
            return self.plain(raw);
        }
        let mut out = std::mem::take(&mut self.scratch);
        let mut input = raw;
        let result = loop {
            out.clear();
            let Some(d) = self.decoder.as_mut() else { break Ok(()) };
            if let Err(e) = d.push(input, &mut out) {
                // Garbage from the start is not an XVA at all; later, a damaged stream.
                let start = self.head.is_empty();
                let e = if start { format!("the body is not an XVA: {e}") } else { e };
                break Err(BodyFailure::Invalid(ApiError::new(if start { 415 } else { 422 }, e)));
            }
            let more = d.has_pending();
            input = &[];
            if let Err(e) = self.plain(&out) {
                break Err(e);
            }
            if !more {
                break Ok(());
            }
        };
        self.scratch = out;
        result
    }

    fn plain(&mut self, bytes: &[u8]) -> Result<(), BodyFailure> {
        if self.head.len() < 512 {
            let take = (512 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.tar.push(bytes).map_err(|e| self.tar_error(e))?;
        // An archive starting with its end (or a disk image's zeros) is refused now, not after gigabytes.
        if self.head.len() == 512 && self.tar.entries() == 0 && self.head.iter().all(|&b| b == 0) {
            return Err(self.not_xva());
        }
        Ok(())
    }

    fn not_xva(&self) -> BodyFailure {
        BodyFailure::Invalid(
            ApiError::new(415, format!("the body is not an XVA: it looks like {}", describe(&self.head)))
                .with_data(json!({ "expected": "XVA (uncompressed, gzip or zstd)" })),
        )
    }

    fn tar_error(&self, e: TarError) -> BodyFailure {
        match e {
            TarError::BadChecksum { position: 0 } | TarError::FirstEntry { .. } => self.not_xva(),
            TarError::Truncated { position } => {
                BodyFailure::Short(format!("the XVA ends at byte {position}, before its end-of-archive marker"))
            }
            e => BodyFailure::Invalid(ApiError::new(422, format!("invalid XVA: {e}"))),
        }
    }
}

/// A started VM import: the task exists, XAPI's handler is to be called.
#[derive(Debug, Clone)]
pub struct VmImportPlan {
    /// XAPI's handler, path and query (no credentials).
    pub upstream: String,
    /// The `Cookie` header that authenticates the handler call.
    pub cookie: String,
    /// The exact number of bytes XAPI will be sent.
    pub length: u64,
    pub task: String,
    pub json: bool,
    pub session: String,
    pub temporary_session: bool,
}

/// Plans an import: the pool, the SR (asked, else the pool's default), the task.
pub async fn plan_vm_import<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    upload: &VmUpload,
) -> Result<VmImportPlan, ApiError> {
    let s = json!(caller.session);
    let pools = objects::collection("pools").ok_or_else(|| ApiError::internal("pools collection missing"))?;
    let (_, pool) = collections::find(ctx, caller, pools, &upload.pool).await?;
    let (sr, rec) = match &upload.sr {
        Some(id) => {
            let srs = objects::collection("srs").ok_or_else(|| ApiError::internal("srs collection missing"))?;
            collections::find(ctx, caller, srs, id).await?
        }
        None => {
            let default = pool.get("default_SR").and_then(Value::as_str).unwrap_or_default().to_string();
            let no_default = || {
                ApiError::new(
                    409,
                    "the pool has no default SR: choose one with ?sr=<SR uuid>, or set the pool's default SR first",
                )
                .with_data(json!({ "code": "DEFAULT_SR_NOT_FOUND" }))
            };
            if default.is_empty() || default == "OpaqueRef:NULL" {
                return Err(no_default());
            }
            match ctx.xapi.call("SR.get_record", &[s.clone(), json!(default)]).await {
                Ok(rec) => (default, rec),
                Err(e) if e.code() == Some("HANDLE_INVALID") => return Err(no_default()),
                Err(e) => return Err(e.to_api_error()),
            }
        }
    };
    if rec.get("content_type").and_then(Value::as_str) == Some("iso") {
        let name = rec.get("name_label").and_then(Value::as_str).unwrap_or_default();
        return Err(ApiError::new(409, format!("SR {name:?} holds ISO images: a VM cannot be imported onto it"))
            .with_data(json!({ "code": "SR_OPERATION_NOT_SUPPORTED", "params": [sr] })));
    }
    task::sweep(&ctx.xapi, &caller.session, ctx.now, ctx.config.orphan_after).await;
    let task = task::create(&ctx.xapi, &caller.session, "VM import", "xo-edge", ctx.now)
        .await
        .map_err(|e| e.to_api_error())?;
    let query = super::export::query(&[("sr_id", &sr), ("task_id", &task)]);
    Ok(VmImportPlan {
        upstream: format!("/import?{query}"),
        cookie: format!("session_id={}", caller.session),
        length: upload.length,
        task,
        json: upload.json,
        session: caller.session.clone(),
        temporary_session: caller.basic,
    })
}

/// Every `OpaqueRef:…` in a task result (XAPI writes a set of refs as XML-RPC text).
fn refs_in(result: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = result;
    while let Some(start) = rest.find("OpaqueRef:") {
        let tail = &rest[start..];
        let end = tail[10..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).map_or(tail.len(), |i| i + 10);
        if end > 10 {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Ends an import: waits for XAPI's task and destroys it, destroys a VM XAPI made from a body that then proved
/// bad, logs out a temporary session, and answers the client. `xapi` is the HTTP status XAPI's handler answered
/// (or why it could not be called), `body` how reading the client's body went.
pub async fn finish<T: Transport>(
    ctx: &Ctx<'_, T>,
    plan: &VmImportPlan,
    xapi: Result<u16, String>,
    body: Result<(), BodyFailure>,
) -> Result<Reply, ApiError> {
    let s = json!(plan.session);
    let wait = if xapi.is_ok() && body.is_ok() { super::export::SETTLE_WAIT } else { 10.0 };
    let settled = task::settle_with_result(&ctx.xapi, &plan.session, &plan.task, wait).await;
    let made = match &settled {
        Ok((Outcome::Success, result)) => refs_in(result),
        _ => Vec::new(),
    };
    let outcome = settled.map(|(o, _)| o);
    let result = super::import::upload_outcome(&body, &xapi, &outcome).and_then(|()| match made.is_empty() {
        true => Err(ApiError::bad_gateway("XAPI's import task succeeded without naming the VM it made")),
        false => Ok(()),
    });
    if result.is_err() {
        // XAPI completed an import whose body then proved bad (or answered no VM): it is ours to remove.
        for vm in &made {
            crate::rest::delete::destroy_with_own_disks(ctx, &s, vm).await;
        }
    }
    let uuid = match (&result, made.first()) {
        (Ok(()), Some(vm)) => match ctx.xapi.call("VM.get_uuid", &[s.clone(), json!(vm)]).await {
            Ok(u) => Ok(u.as_str().unwrap_or_default().to_string()),
            Err(e) => Err(e.to_api_error()),
        },
        _ => Ok(String::new()),
    };
    if plan.temporary_session {
        let _ = ctx.xapi.logout(&plan.session).await;
    }
    result?;
    let uuid = uuid?;
    let reply = if plan.json {
        Reply::json(201, &json!({ "id": uuid }))
    } else {
        Reply {
            status: 201,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: uuid.clone().into_bytes(),
            stream: None,
        }
    };
    Ok(reply.with_header("location", format!("/rest/v0/vms/{uuid}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/rest/v0/pools/p/vms".into(),
            query: query.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn routes_and_lengths() {
        assert_eq!(vm_import_route("/rest/v0/pools/abc/vms").as_deref(), Some("abc"));
        assert_eq!(vm_import_route("/rest/v0/pools/abc/vms/").as_deref(), Some("abc"));
        assert_eq!(vm_import_route("/rest/v0/pools//vms"), None);
        assert_eq!(vm_import_route("/rest/v0/srs/abc/vms"), None);
        assert_eq!(vm_import_route("/rest/v0/pools/abc/vdis"), None);
        let u = read_vm_upload(&req("sr=s1", &[("content-length", "2048")]), "p".into()).unwrap();
        assert_eq!((u.length, u.sr.as_deref(), u.json), (2048, Some("s1"), false));
        assert_eq!(read_vm_upload(&req("", &[]), "p".into()).unwrap_err().status, 411);
        let u = read_vm_upload(&req("size=99", &[("accept", "application/json")]), "p".into()).unwrap();
        assert!(u.length == 99 && u.json && u.sr.is_none());
        assert_eq!(read_vm_upload(&req("size=9", &[("content-length", "8")]), "p".into()).unwrap_err().status, 400);
        assert_eq!(read_vm_upload(&req("", &[("content-length", "0")]), "p".into()).unwrap_err().status, 400);
        let e = read_vm_upload(&req("", &[("content-length", "5"), ("content-encoding", "br")]), "p".into());
        assert_eq!(e.unwrap_err().status, 415);
    }

    #[test]
    fn refs_in_results() {
        assert_eq!(
            refs_in("<value><array><data><value>OpaqueRef:a-1</value></data></array></value>"),
            ["OpaqueRef:a-1"]
        );
        assert_eq!(refs_in("OpaqueRef:x OpaqueRef:y-2"), ["OpaqueRef:x", "OpaqueRef:y-2"]);
        assert!(refs_in("").is_empty() && refs_in("OpaqueRef:").is_empty());
    }

    fn status(e: BodyFailure) -> u16 {
        match e {
            BodyFailure::Invalid(e) => e.status,
            BodyFailure::Short(_) => 400,
        }
    }

    fn run(body: &[u8], declared: Encoding) -> Result<(), BodyFailure> {
        let mut c = XvaCheck::new(declared, body.len() as u64);
        for chunk in body.chunks(3000) {
            c.feed(chunk)?;
        }
        c.finish()
    }

    #[test]
    fn what_is_not_an_xva_is_named() {
        let mut vhd = b"conectix".to_vec();
        vhd.resize(4096, 1);
        let e = run(&vhd, Encoding::Identity).unwrap_err();
        match &e {
            BodyFailure::Invalid(api) => assert!(api.message.contains("VHD"), "{}", api.message),
            _ => panic!(),
        }
        assert_eq!(status(e), 415);
        assert_eq!(status(run(&[0u8; 2048], Encoding::Identity).unwrap_err()), 415);
        let mut zeros = XvaCheck::new(Encoding::Identity, 1 << 30);
        assert_eq!(status(zeros.feed(&[0u8; 4096]).unwrap_err()), 415, "refused at its first block");
        assert_eq!(status(run(b"hello", Encoding::Identity).unwrap_err()), 415);
        assert_eq!(status(run(&vhd, Encoding::Gzip).unwrap_err()), 415, "Content-Encoding contradicted");
        let mut gz = vec![0x1f, 0x8b];
        gz.resize(100, 0xff);
        assert_eq!(status(run(&gz, Encoding::Identity).unwrap_err()), 415, "bad gzip from the start");
        let mut ova = vec![0u8; 1536];
        ova[..8].copy_from_slice(b"vm.ovf\0\0");
        ova[257..263].copy_from_slice(b"ustar\0");
        ova[124..136].copy_from_slice(b"00000000000\0");
        ova[148..156].copy_from_slice(b"        ");
        let sum: u64 = ova[..512].iter().map(|&b| u64::from(b)).sum();
        ova[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        match run(&ova, Encoding::Identity).unwrap_err() {
            BodyFailure::Invalid(api) => assert!(api.status == 415 && api.message.contains("OVA"), "{}", api.message),
            _ => panic!(),
        }
        let mut c = XvaCheck::new(Encoding::Identity, 10);
        assert_eq!(status(c.feed(&[0; 11]).unwrap_err()), 413);
    }
}
