//! A host's logs as downloads: `GET /rest/v0/hosts/<id>/audit.txt[?since=<ISO 8601>]` (XAPI's `/audit_log`) and
//! `GET /rest/v0/hosts/<id>/logs.tgz` (XAPI's `/host_logs_download`), streamed under a task of the edge's as the
//! exports are.
//!
//! - `audit.txt` is `text/plain`; gzip-compressed at the edge (`Content-Encoding: gzip`) when the client accepts it,
//!   as XO answers it. `logs.tgz` is XAPI's archive as it comes (already gzip'd).
//! - XAPI sends neither with a length: the body ends when XAPI closes it, and only XAPI's task says whether it was
//!   whole (a failed task aborts the client's body, never ends it cleanly).
//! - XAPI serves both for the host it runs on, so they are read on the host named (its address, within
//!   `pool_hosts`): the master's audit log has the pool's API calls, another host's its own (its members forward
//!   their handler lines to the master: `ocaml/xapi/xapi_http.ml`, `append_to_master_audit_log`).

use super::compress::Compressor;
use super::export::{query, ExportPlan, Streaming};
use super::{check::Check, task};
use crate::error::ApiError;
use crate::objects;
use crate::rest::auth::Caller;
use crate::rest::collections;
use crate::rest::{Ctx, Request};
use crate::xapi::Transport;
use serde_json::{json, Value};

/// Which file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFile {
    Audit,
    Logs,
}

/// `/rest/v0/hosts/<id>/audit.txt` or `…/logs.tgz`: the host id and the file.
pub fn host_file_route(path: &str) -> Option<(String, HostFile)> {
    let rest = path.trim_end_matches('/').strip_prefix("/rest/v0/hosts/")?;
    let (id, file) = rest.split_once('/')?;
    let file = match file {
        "audit.txt" => HostFile::Audit,
        "logs.tgz" => HostFile::Logs,
        _ => return None,
    };
    (!id.is_empty()).then(|| (id.to_string(), file))
}

/// Whether the client accepts gzip (`Accept-Encoding`, `q=0` refusing it).
pub fn accepts_gzip(req: &Request) -> bool {
    req.headers_named("accept-encoding").iter().flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f64>().is_ok_and(|q| q == 0.0)));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// Plans the download: the host (its address, unless it is the master), a task, the handler's URL, the answer's
/// headers.
pub async fn plan_host_file<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    req: &Request,
    id: &str,
    file: HostFile,
) -> Result<ExportPlan, ApiError> {
    let hosts = objects::collection("hosts").ok_or_else(|| ApiError::internal("hosts collection missing"))?;
    let (host, rec) = collections::find(ctx, caller, hosts, id).await?;
    let s = json!(caller.session);
    let pools = ctx.xapi.call("pool.get_all_records", std::slice::from_ref(&s)).await.map_err(|e| e.to_api_error())?;
    let master =
        pools.as_object().and_then(|p| p.values().next()).and_then(|p| p["master"].as_str()).unwrap_or_default();
    let address = (master != host).then(|| rec.get("address").and_then(Value::as_str).unwrap_or_default().to_string());
    if let Some(address) = &address {
        // Refused before a task is made: the fence decides, as it will for the download.
        ctx.xapi.transport().host_base(address).map_err(ApiError::bad_gateway)?;
    }
    let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or(id).to_string();
    let (label, handler) = match file {
        HostFile::Audit => ("host audit log", "/audit_log"),
        HostFile::Logs => ("host logs download", "/host_logs_download"),
    };
    task::sweep(&ctx.xapi, &caller.session, ctx.now, ctx.config.orphan_after).await;
    let task = task::create(&ctx.xapi, &caller.session, label, &format!("xo-edge: {label} of {uuid}"), ctx.now)
        .await
        .map_err(|e| e.to_api_error())?;
    let since = crate::query::params::pairs(&req.query).into_iter().find(|(k, _)| k == "since").map(|(_, v)| v);
    let mut pairs = vec![("task_id", task.as_str())];
    if let Some(since) = &since {
        pairs.push(("since", since.as_str()));
    }
    let gzip = file == HostFile::Audit && accepts_gzip(req);
    let mut headers = match file {
        HostFile::Audit => vec![
            ("content-type".to_string(), "text/plain; charset=utf-8".to_string()),
            ("content-disposition".to_string(), format!("attachment; filename=\"{uuid}-audit.txt\"")),
        ],
        HostFile::Logs => vec![
            ("content-type".to_string(), "application/gzip".to_string()),
            ("content-disposition".to_string(), format!("attachment; filename=\"{uuid}-logs.tgz\"")),
        ],
    };
    if gzip {
        headers.push(("content-encoding".into(), "gzip".into()));
    }
    headers.push(("vary".into(), "accept-encoding".into()));
    Ok(ExportPlan {
        status: 200,
        headers,
        upstream: format!("{handler}?{}", query(&pairs)),
        cookie: format!("session_id={}", caller.session),
        task,
        streaming: if gzip { Streaming::Through(Check::Any) } else { Streaming::PassThrough },
        session: caller.session.clone(),
        temporary_session: caller.basic,
        snapshot: None,
        compressor: gzip.then(Compressor::gzip),
        host: address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_encodings() {
        assert_eq!(host_file_route("/rest/v0/hosts/abc/audit.txt"), Some(("abc".into(), HostFile::Audit)));
        assert_eq!(host_file_route("/rest/v0/hosts/abc/logs.tgz/"), Some(("abc".into(), HostFile::Logs)));
        assert_eq!(host_file_route("/rest/v0/hosts//logs.tgz"), None);
        assert_eq!(host_file_route("/rest/v0/vms/abc/logs.tgz"), None);
        let req = |v: &str| Request { headers: vec![("accept-encoding".into(), v.into())], ..Default::default() };
        assert!(accepts_gzip(&req("gzip, deflate, br")));
        assert!(accepts_gzip(&req("br;q=1.0, gzip;q=0.5")));
        assert!(!accepts_gzip(&req("gzip;q=0")));
        assert!(!accepts_gzip(&req("identity")));
        assert!(accepts_gzip(&req("*")));
        assert!(!accepts_gzip(&Request::default()));
    }
}
