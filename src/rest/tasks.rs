//! XAPI's tasks as the REST API's tasks, beyond `GET /rest/v0/tasks[/<id>]` (in [`super::collections`]):
//!
//! - `GET /rest/v0/tasks?ndjson&watch`: a stream of `["update", <task>]` and `["remove", {"id"}]` lines, one per
//!   change XAPI reports through `event.from(["task"])`, from the moment of the request (no initial dump, as XO);
//!   `fields` and `filter` apply to updates (without `fields`, a line holds the whole task). An empty line every [`HEARTBEAT`] seconds without changes keeps
//!   proxies from closing the idle stream and lets the edge notice a client that left. The stream is driven by the
//!   component after the answer's head is sent ([`Watch::next`]).
//! - `GET /rest/v0/<collection>/<id>/tasks`: the object's pending tasks, those XAPI lists in its
//!   `current_operations`.
//! - `POST /rest/v0/tasks/<id>/actions/abort[?sync]`: `task.cancel` of a pending, cancellable task: 202 with the
//!   task's `Location` (it ends as `failure`, XAPI's `cancelled`), or with `?sync` 204 once it has ended.
//! - `DELETE /rest/v0/tasks/<id>`: `task.destroy` (a pending task goes when it ends, as XAPI does), 204.

use super::auth::Caller;
use super::collections::{find, listing, load_joins, pool_ctx, wait_for_task};
use super::{Ctx, Reply, Request, Stream};
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::query::params::{self, ListQuery};
use crate::xapi::Transport;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Seconds of each `event.from` long poll, and so between heartbeats of an idle stream.
pub const HEARTBEAT: f64 = 30.0;

fn tasks() -> Result<&'static Collection, ApiError> {
    objects::collection("tasks").ok_or_else(|| ApiError::internal("tasks collection missing"))
}

/// Whether a listing request asks to watch (`watch`, `watch=true`).
pub fn watch_requested(req: &Request) -> bool {
    params::pairs(&req.query).iter().any(|(k, v)| k == "watch" && v != "false" && v != "0")
}

/// A watch of XAPI's tasks, between two long polls: everything [`Watch::next`] needs, owned.
#[derive(Debug)]
pub struct Watch {
    session: String,
    token: String,
    q: ListQuery,
    octx: objects::Ctx,
    /// The uuid of each task seen, so that a removal (whose event has no record) can name it.
    uuids: HashMap<String, String>,
    /// Whether the session is the request's own (Basic credentials), to log out when the stream ends.
    pub logout: bool,
}

/// `GET /rest/v0/tasks?ndjson&watch`: validates, takes XAPI's current event token, answers the stream's head.
pub async fn watch<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, req: &Request) -> Result<Reply, ApiError> {
    let mut q = params::parse_list_query(&req.query)?;
    // Bare hrefs would say nothing of a change: without `fields`, a line carries the whole task.
    if q.fields == params::Fields::Urls {
        q.fields = params::Fields::All;
    }
    if q.format != params::Format::Ndjson {
        return Err(ApiError::bad_request("watch needs ndjson (GET /rest/v0/tasks?ndjson&watch)"));
    }
    let coll = tasks()?;
    let mut octx = pool_ctx(ctx, &caller).await?;
    load_joins(ctx, &caller, coll, &mut octx).await?;
    let s = json!(caller.session);
    // A zero-timeout `event.from` from the start: every current task (to name later removals) and the token.
    let first = ctx
        .xapi
        .call("event.from", &[s, json!(["task"]), json!(""), json!(0.0)])
        .await
        .map_err(|e| e.to_api_error())?;
    let uuids = first["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| Some((e["ref"].as_str()?.to_string(), e["snapshot"]["uuid"].as_str()?.to_string())))
        .collect();
    let token = first["token"].as_str().unwrap_or_default().to_string();
    let watch = Watch { session: caller.session.clone(), token, q, octx, uuids, logout: false };
    Ok(Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/x-ndjson".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
        stream: Some(Stream::Watch(Box::new(watch))),
    })
}

impl Watch {
    /// Waits for the next changes (at most [`HEARTBEAT`] seconds) and answers their lines, or a heartbeat's empty
    /// line; `None` once the watch cannot go on (the session ended, XAPI failed).
    pub async fn next<T: Transport>(&mut self, ctx: &Ctx<'_, T>) -> Option<Vec<u8>> {
        let args = [json!(self.session), json!(["task"]), json!(self.token), json!(HEARTBEAT)];
        let ev = ctx.xapi.call("event.from", &args).await.ok()?;
        self.token = ev["token"].as_str().map(str::to_string).unwrap_or_else(|| self.token.clone());
        let coll = tasks().ok()?;
        let mut out = Vec::new();
        for e in ev["events"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(reference) = e["ref"].as_str() else { continue };
            let line = match e["operation"].as_str() {
                Some("del") => {
                    let id = self.uuids.remove(reference).unwrap_or_else(|| reference.to_string());
                    json!(["remove", { "id": id, "href": format!("/rest/v0/tasks/{id}") }])
                }
                _ => {
                    let Some(rec) = e.get("snapshot").filter(|r| r.is_object()) else { continue };
                    let uuid = rec["uuid"].as_str().unwrap_or_default().to_string();
                    self.uuids.insert(reference.to_string(), uuid.clone());
                    let mut object = objects::build(coll, reference, rec, &self.octx);
                    // What a successful task made, as `GET /rest/v0/tasks/<id>` says it (a plan's task may be
                    // gone soon after: XAPI's GC removes the tasks clients make within 30 s of their end).
                    if let Some(made) = super::collections::made_object(ctx, &json!(self.session), rec).await {
                        if let Some(Value::Object(result)) = object.get_mut("result") {
                            result.extend(made);
                        }
                    }
                    if let Some(f) = &self.q.filter {
                        if !f.matches(&Value::Object(object.clone())) {
                            continue;
                        }
                    }
                    json!(["update", params::item(&self.q.fields, object, format!("/rest/v0/tasks/{uuid}"))])
                }
            };
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
        if out.is_empty() {
            out.push(b'\n');
        }
        Some(out)
    }

    /// The session to log out when the stream ends, if it was the request's own.
    pub fn session_to_end(&self) -> Option<&str> {
        self.logout.then_some(self.session.as_str())
    }
}

/// `GET /rest/v0/<collection>/<id>/tasks`: the tasks XAPI lists in the object's `current_operations`.
pub async fn of_object<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let q = params::parse_list_query(&req.query)?;
    let (_, rec) = find(ctx, &caller, coll, id).await?;
    let task_coll = tasks()?;
    let mut octx = pool_ctx(ctx, &caller).await?;
    load_joins(ctx, &caller, task_coll, &mut octx).await?;
    let s = json!(caller.session);
    let mut items = Vec::new();
    for task in rec["current_operations"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
    {
        // A task that ended between the two reads is no longer the object's.
        let Ok(t) = ctx.xapi.call("task.get_record", &[s.clone(), json!(task)]).await else { continue };
        let uuid = t["uuid"].as_str().unwrap_or_default().to_string();
        items.push((objects::build(task_coll, &task, &t, &octx), format!("/rest/v0/tasks/{uuid}")));
    }
    Ok(listing(&q, items.into_iter()))
}

/// `POST /rest/v0/tasks/<id>/actions/abort[?sync]`.
pub async fn abort<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, req: &Request, id: &str) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, &caller, tasks()?, id).await?;
    let s = json!(caller.session);
    let refuse = |why: &str| {
        ApiError::new(409, format!("the task cannot be aborted: {why}"))
            .with_data(json!({ "code": "OPERATION_NOT_ALLOWED", "params": [why] }))
    };
    if rec["status"] != "pending" {
        return Err(refuse("it has ended"));
    }
    let cancellable = rec["allowed_operations"].as_array().is_some_and(|ops| ops.iter().any(|o| o == "cancel"));
    if !cancellable {
        return Err(refuse("XAPI does not allow cancelling it"));
    }
    ctx.xapi.call("task.cancel", &[s.clone(), json!(reference)]).await.map_err(|e| e.to_api_error())?;
    let uuid = rec["uuid"].as_str().unwrap_or_default();
    let location = format!("/rest/v0/tasks/{uuid}");
    let sync = params::pairs(&req.query).iter().any(|(k, v)| k == "sync" && v != "false");
    if sync {
        let ended = wait_for_task(ctx, &s, &reference, rec.clone()).await.map_err(|e| e.to_api_error())?;
        if ended["status"] == "pending" {
            return Err(ApiError::new(504, format!("the task has not ended yet: see {location}")));
        }
        return Ok(Reply::no_content());
    }
    Ok(super::actions::accepted(req, uuid))
}

/// `DELETE /rest/v0/tasks/<id>`.
pub async fn delete<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, id: &str) -> Result<Reply, ApiError> {
    let (reference, _) = find(ctx, &caller, tasks()?, id).await?;
    ctx.xapi.call("task.destroy", &[json!(caller.session), json!(reference)]).await.map_err(|e| e.to_api_error())?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_is_asked_for_and_lines_parse() {
        let req = |q: &str| Request { query: q.into(), ..Default::default() };
        assert!(watch_requested(&req("ndjson&watch")));
        assert!(watch_requested(&req("watch=true&ndjson=true")));
        assert!(!watch_requested(&req("watch=false")));
        assert!(!watch_requested(&req("ndjson")));
    }
}
