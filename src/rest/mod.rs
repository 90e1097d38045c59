//! The REST API's request handling, independent of any runtime: a [`Request`] in, a [`Reply`] out.
//!
//! Components convert Spin's request into [`Request`], call one handler here with a [`Transport`] to XAPI and
//! the current time, and convert the [`Reply`] back. Every handler authenticates first ([`auth`]), answers
//! errors as JSON ([`ApiError`]), offers a refreshed token past half-life, and logs out the temporary XAPI
//! session of Basic requests. Bodies that must stream (exports, imports) will not go through [`Reply`].
//!
//! - [`auth`]: who is calling (token, Bearer or Basic) and whether they may.
//! - [`root`]: `GET /rest/v0`, the list of collections.
//! - [`router`]: the `api` component's one route table.
//! - [`actions`]: listing, describing and running actions (as XAPI tasks).
//! - [`collections`]: the collections, their objects, a VM's VDIs, waiting for a task.
//! - [`edit`]: `PATCH` (names, descriptions, tags) and tag `PUT`/`DELETE`.
//! - [`create`]: `POST` of new VDIs, VBDs and VIFs.
//! - [`delete`]: `DELETE` of VMs (with their snapshots and own disks), VDIs, VBDs, VIFs, SRs and networks.
//! - [`infra`]: the actions of hosts, pools, SRs and PBDs; [`plans`]: actions of several XAPI calls under one task.
//! - [`tasks`]: watching tasks, an object's tasks, aborting and deleting tasks.
//! - [`tokens`]: token creation and revocation.
//! - [`stats`], [`metrics`]: RRD statistics in XO's shape and as Prometheus text; [`events`]: the Server-Sent
//!   Events stream and its subscriptions; [`dashboard`]: the dashboards; [`patches`]: missing patches and SMT.

pub mod actions;
pub mod auth;
pub mod collections;
pub mod create;
pub mod create_vm;
pub mod dashboard;
pub mod delete;
pub mod duration;
pub mod edit;
pub mod events;
pub mod infra;
pub mod metrics;
pub mod patches;
pub mod plans;
pub mod root;
pub mod router;
pub mod stats;
pub mod tasks;
pub mod tokens;

use crate::config::Config;
use crate::error::ApiError;
use crate::xapi::{Transport, Xapi};

/// What the core needs of an HTTP request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// A small, already-read body (JSON requests only).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The path without trailing slashes (XO's router is not strict about them).
    pub fn normalized_path(&self) -> &str {
        let p = self.path.trim_end_matches('/');
        if p.is_empty() {
            "/"
        } else {
            p
        }
    }
}

/// A response: a small complete body, or a body that the component streams chunk by chunk.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When set, the body is produced by this instead of `body`.
    pub stream: Option<Stream>,
}

/// A streamed body.
#[derive(Debug)]
pub enum Stream {
    /// A listing, mapped chunk by chunk from XAPI's answer ([`collections::Listing::next_chunk`]).
    Listing(Box<collections::Listing>),
    /// A watch of tasks, one long poll at a time until the client leaves ([`tasks::Watch::next`]).
    Watch(Box<tasks::Watch>),
    /// Server-Sent Events until the client leaves ([`events::Events::next`]).
    Events(Box<events::Events>),
    /// Not a body: a plan to run once the answer (`body`) has gone ([`plans::Plan::run`]).
    Plan(Box<plans::Plan>),
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
            stream: None,
        }
    }

    /// 204, no body.
    pub fn no_content() -> Reply {
        Reply { status: 204, headers: Vec::new(), body: Vec::new(), stream: None }
    }

    pub fn error(e: &ApiError) -> Reply {
        Reply {
            status: e.status,
            headers: e.headers().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            body: serde_json::to_vec(&e.body()).unwrap_or_default(),
            stream: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// The `api` component's requests: `GET /rest/v0`, `GET /rest/v0/ping`, then the routes of [`router`]; a route that exists under other
/// methods is 405 (with `Allow`), anything else 404, unknown routes being revealed to authenticated callers only.
pub async fn api<T: Transport>(ctx: &Ctx<'_, T>, req: &Request) -> Reply {
    match (req.method.as_str(), req.normalized_path()) {
        ("GET" | "HEAD", "/rest/v0") => authenticated(ctx, req, |ctx, caller| root::list(ctx, caller, req)).await,
        // XO 6's liveness probe, unauthenticated: the edge answers, without asking XAPI.
        ("GET" | "HEAD", "/rest/v0/ping") => {
            Reply::json(200, &serde_json::json!({ "result": "pong", "timestamp": ctx.now.saturating_mul(1000) }))
        }
        (_, "/rest/v0") => Reply::error(&ApiError::new(405, "method not allowed")).with_header("allow", "GET, HEAD"),
        // The OpenAPI document, without credentials (as XO serves it), at XO's path and the usual one.
        ("GET" | "HEAD", "/rest/v0/docs/swagger.json" | "/rest/v0/openapi.json") => openapi_document(req),
        ("GET" | "HEAD", "/rest/v0/docs") => docs_page(req),
        _ => authenticated(ctx, req, |ctx, caller| route(ctx, caller, req)).await,
    }
}

/// Routes an authenticated request below `/rest/v0/` through [`router::find`].
pub async fn route<T: Transport>(ctx: &Ctx<'_, T>, caller: auth::Caller, req: &Request) -> Result<Reply, ApiError> {
    use router::{Miss, Op};
    let path = req.normalized_path();
    let below = path.strip_prefix("/rest/v0/").unwrap_or("");
    let m = match router::find(&req.method, below) {
        Ok(m) => m,
        Err(Miss::NotFound) => return Err(ApiError::not_found(format!("no such route {path}"))),
        Err(Miss::Method(allowed)) => {
            let allow = allowed.join(", ");
            return Ok(
                Reply::error(&ApiError::new(405, format!("method not allowed: {allow}"))).with_header("allow", allow)
            );
        }
    };
    let id = m.id.unwrap_or("");
    match m.op {
        Op::Events => return events::open(ctx, caller, req).await,
        Op::Subscribe => return events::subscribe(ctx, caller, req, id).await,
        Op::Unsubscribe => return events::unsubscribe(ctx, caller, id, m.name.unwrap_or("")).await,
        Op::Dashboard => return dashboard::global(ctx, caller).await.map(|r| dashboard::in_format(r, req, None)),
        _ => {}
    }
    let Some(coll) = m.coll else {
        return Err(ApiError::internal(format!("route {path} has no collection")));
    };
    match m.op {
        Op::List if coll.name == "tasks" && tasks::watch_requested(req) => tasks::watch(ctx, caller, req).await,
        Op::List => collections::list(ctx, caller, req, coll).await,
        Op::Task => collections::task(ctx, caller, req, id).await,
        Op::Get => collections::get(ctx, caller, coll, id).await,
        Op::VmVdis => collections::vm_vdis(ctx, caller, req, coll, id).await,
        Op::Patch => edit::patch(ctx, caller, req, coll, id).await,
        Op::Delete => delete::delete(ctx, caller, coll, id).await,
        Op::Create => create::create(ctx, caller, req, coll).await,
        Op::ObjectTasks => tasks::of_object(ctx, caller, req, coll, id).await,
        Op::ObjectMessages => collections::about(ctx, caller, req, coll, id, "messages").await,
        Op::ObjectAlarms => collections::about(ctx, caller, req, coll, id, "alarms").await,
        Op::Stats => stats::stats(ctx, caller, req, coll, id).await,
        Op::Metrics => metrics::metrics(ctx, caller, coll, id).await,
        Op::ObjectDashboard => {
            dashboard::of_object(ctx, caller, coll, id).await.map(|r| dashboard::in_format(r, req, Some(coll.name)))
        }
        Op::AddDataSource => stats::data_source(ctx, caller, coll, id, m.name.unwrap_or(""), true).await,
        Op::ForgetDataSource => stats::data_source(ctx, caller, coll, id, m.name.unwrap_or(""), false).await,
        Op::MissingPatches => patches::missing(ctx, caller, coll, id).await,
        Op::Smt => patches::smt(ctx, caller, coll, id).await,
        Op::Events | Op::Subscribe | Op::Unsubscribe | Op::Dashboard => unreachable_route(path),
        Op::AbortTask => tasks::abort(ctx, caller, req, id).await,
        Op::DeleteTask => tasks::delete(ctx, caller, id).await,
        Op::Actions => actions::list(ctx, caller, coll, id).await,
        Op::Action => actions::describe(ctx, caller, coll, id, m.name.unwrap_or("")).await,
        Op::RunAction => actions::run(ctx, caller, req, coll, id, m.name.unwrap_or("")).await,
        Op::AddTag | Op::RemoveTag => {
            let tag = m.tag.as_deref().unwrap_or("");
            edit::tag(ctx, caller, coll, id, tag, m.op == Op::AddTag).await
        }
    }
}

/// The OpenAPI document ([`crate::openapi`]), with a strong `ETag`: 304 when `If-None-Match` names it.
fn openapi_document(req: &Request) -> Reply {
    let body = serde_json::to_vec(&crate::openapi::document()).unwrap_or_default();
    cacheable(req, body, "application/json")
}

/// The document as a page to read ([`crate::docs`]), cacheable as the document is.
fn docs_page(req: &Request) -> Reply {
    let body = crate::docs::page(&crate::openapi::document()).into_bytes();
    cacheable(req, body, "text/html; charset=utf-8")
}

/// A public answer with a strong `ETag`: 304 when `If-None-Match` names it.
fn cacheable(req: &Request, body: Vec<u8>, content_type: &str) -> Reply {
    let etag = crate::openapi::etag(&body);
    let cache = [("etag".to_string(), etag.clone()), ("cache-control".to_string(), "no-cache".to_string())];
    let fresh = req.headers_named("if-none-match").iter().flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == etag || t == "*" || t.strip_prefix("W/") == Some(etag.as_str())
    });
    if fresh {
        return Reply { status: 304, headers: cache.to_vec(), body: Vec::new(), stream: None };
    }
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    headers.extend(cache);
    Reply { status: 200, headers, body, stream: None }
}

fn unreachable_route(path: &str) -> Result<Reply, ApiError> {
    Err(ApiError::internal(format!("route {path} reached the wrong handler")))
}

/// Everything a handler gets.
pub struct Ctx<'a, T> {
    pub config: &'a Config,
    pub xapi: Xapi<'a, T>,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

impl<'a, T: Transport> Ctx<'a, T> {
    pub fn new(config: &'a Config, transport: &'a T, now: u64) -> Self {
        Ctx { config, xapi: Xapi::new(transport), now }
    }
}

/// Runs an authenticated handler: authenticate, run, add the refresh cookie, release a Basic session, and turn
/// errors into JSON replies. A token whose XAPI session is gone gets a new one when it may ([`auth::recover`]: the
/// master's toolstack restarted), and the handler runs again with it, provided that is safe: a read, or a request
/// XAPI had answered nothing yet (the session was refused at its first call, so nothing was done).
pub async fn authenticated<'a, T, F, Fut>(ctx: &'a Ctx<'a, T>, req: &'a Request, handler: F) -> Reply
where
    T: Transport,
    F: Fn(&'a Ctx<'a, T>, auth::Caller) -> Fut,
    Fut: std::future::Future<Output = Result<Reply, ApiError>>,
{
    let mut caller = match auth::authenticate(ctx, req).await {
        Ok(c) => c,
        Err(e) => return Reply::error(&e),
    };
    let before = ctx.xapi.succeeded();
    let mut result = handler(ctx, caller.clone()).await;
    let read = matches!(req.method.as_str(), "GET" | "HEAD");
    if matches!(&result, Err(e) if crate::xapi::rpc::session_gone(e))
        && auth::recoverable(&caller)
        && (read || ctx.xapi.succeeded() == before)
    {
        match auth::recover(ctx, req, &caller).await {
            Ok(recovered) => {
                caller = recovered;
                result = handler(ctx, caller.clone()).await;
            }
            Err(e) => result = Err(e),
        }
    }
    let refresh = caller.refresh_cookie.clone();
    let basic_session = caller.basic.then(|| caller.session.clone());
    if let Some(s) = basic_session {
        // A watch goes on after this returns: it logs the session out when its stream ends.
        match &mut result {
            Ok(Reply { stream: Some(Stream::Watch(w)), .. }) => w.logout = true,
            Ok(Reply { stream: Some(Stream::Plan(p)), .. }) => p.logout = true,
            Ok(Reply { stream: Some(Stream::Events(e)), .. }) => e.logout = true,
            _ => {
                let _ = ctx.xapi.logout(&s).await;
            }
        }
    }
    match result {
        Ok(reply) => match refresh {
            Some(cookie) if reply.status < 400 && !reply.headers.iter().any(|(k, _)| k == "set-cookie") => {
                reply.with_header("set-cookie", cookie)
            }
            _ => reply,
        },
        Err(e) => Reply::error(&e),
    }
}
