//! Live events: XO 6's Server-Sent Events stream and its subscriptions, fed by XAPI's `event.from`.
//!
//! - `GET /rest/v0/events`: a `text/event-stream`. Its first event is `init` (`{"id": <connection id>}`); then
//!   `add`, `update` and `remove` events (`{"$subscription": <type>, …the object's subscribed fields}`) for the
//!   collections subscribed to, and a `ping` (`{"ping": <ms>}`) after [`PING`] seconds without any.
//! - `POST /rest/v0/events/<id>/subscriptions` (`{"collection": "VM", "fields": ["id", "power_state"] | "*"}`): 201
//!   `{"id": "VM"}`; `DELETE /rest/v0/events/<id>/subscriptions/<collection>`: 204.
//!
//! **Where a subscription lives.** The edge keeps nothing between requests, and the request that subscribes may
//! reach another instance than the one holding the stream. So the stream is an XAPI task that the stream creates
//! (`task.create`, label [`LABEL`], description its user) and destroys when it ends; its uuid is the connection id,
//! and each subscription is an entry of that task's `other_config` (`xo-edge:events:<type>` → the fields). A
//! subscription is one `task.set_other_config`; the stream's `event.from` includes its own task, so it sees the
//! change at once, wherever it runs. Ending the stream destroys the task, which also wakes the stream's own pending
//! `event.from` at once (it watches that task): no call stays behind in XAPI. A stream that dies with its instance
//! leaves a pending task that XAPI times out after 24 hours (`ocaml/xapi/db_gc_util.ml`, `timeout_tasks`).
//! Cancelling or destroying the task (XAPI's `task.cancel`/`task.destroy`, `DELETE /rest/v0/tasks/<id>`) ends its
//! stream.
//!
//! **What an event is.** On subscribing, the stream reads the collection once (the objects as they are, with the
//! records they are built from) and emits nothing for them, as XO; afterwards each change XAPI reports is mapped to
//! the XO object, narrowed to the subscribed fields, and compared with what the client last saw: `add` for an
//! object it had not seen, `update` when the fields it asked for changed (no event when they did not), `remove`
//! with the object last sent when XAPI deletes it or it leaves the collection (a VM turned into a template). The
//! records objects are built from (a VM's metrics, VBDs, …) are watched too, so objects stay whole.
//!
//! Leaving is the client's: the component ends the stream when a write fails or the client's connection closes,
//! dropping any pending `event.from` (see the host's `response::send`). Nothing else here does I/O but XAPI calls.

use super::auth::Caller;
use super::collections::{load_joins, member, pool_ctx};
use super::{Ctx, Reply, Request, Stream};
use crate::error::ApiError;
use crate::objects::{self, Collection};
use crate::xapi::Transport;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Seconds of each `event.from` long poll, and so at most between two events of a quiet stream (XO pings every 30 s).
pub const PING: f64 = 30.0;

/// The `name_label` of a stream's task.
pub const LABEL: &str = "xo-edge: event stream";

/// The prefix of a subscription's key in the task's `other_config`.
const KEY: &str = "xo-edge:events:";

/// The subscription types and the collection each reads (XO's `XoListenerType`s that are pool objects).
pub fn subscribable(name: &str) -> Option<&'static Collection> {
    match name {
        "alarm" => objects::collection("alarms"),
        "message" => objects::collection("messages"),
        _ => objects::COLLECTIONS.iter().find(|c| c.xo_type == name && c.name != "alarms"),
    }
}

fn names() -> String {
    subscribable_names().join(", ")
}

/// What a subscription's `collection` may be: XO's object types, and `alarm`.
fn subscribable_names() -> Vec<&'static str> {
    let mut n: Vec<&str> = objects::COLLECTIONS.iter().filter(|c| c.name != "alarms").map(|c| c.xo_type).collect();
    n.push("alarm");
    n.sort_unstable();
    n.dedup();
    n
}

/// The JSON Schema of a subscription's body (for the OpenAPI document), as [`subscribe`] checks it.
pub fn subscription_schema() -> Value {
    json!({
        "type": "object",
        "required": ["collection"],
        "additionalProperties": false,
        "properties": {
            "collection": { "type": "string", "enum": subscribable_names() },
            "fields": { "anyOf": [
                { "const": "*" },
                { "type": "array", "items": { "type": "string", "minLength": 1 } },
                { "type": "null" },
            ], "description": "the fields of the objects sent, or \"*\" (the default)" },
        },
    })
}

/// The fields a subscription asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Fields {
    All,
    Only(Vec<String>),
}

impl Fields {
    fn parse(v: Option<&Value>) -> Result<Fields, String> {
        match v {
            None | Some(Value::Null) => Ok(Fields::All),
            Some(Value::String(s)) if s == "*" => Ok(Fields::All),
            Some(Value::Array(a)) => a
                .iter()
                .map(|f| f.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Fields::Only)
                .ok_or_else(|| "fields must be \"*\" or a list of field names".to_string()),
            Some(_) => Err("fields must be \"*\" or a list of field names".into()),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Fields::All => json!("*"),
            Fields::Only(f) => json!(f),
        }
    }

    fn pick(&self, object: Map<String, Value>) -> Map<String, Value> {
        match self {
            Fields::All => object,
            Fields::Only(names) => {
                let mut o = object;
                o.retain(|k, _| names.iter().any(|n| n == k));
                o
            }
        }
    }
}

/// The subscriptions recorded in a stream task's `other_config`.
fn subscriptions_of(task: &Value) -> BTreeMap<String, Fields> {
    let mut out = BTreeMap::new();
    for (k, v) in task.get("other_config").and_then(Value::as_object).into_iter().flatten() {
        let Some(name) = k.strip_prefix(KEY) else { continue };
        let fields = v.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok());
        if let (Some(_), Ok(f)) = (subscribable(name), Fields::parse(fields.as_ref())) {
            out.insert(name.to_string(), f);
        }
    }
    out
}

/// What the client saw of one subscription's objects: ref → (object, whether it came from an event).
type Seen = HashMap<String, (Map<String, Value>, bool)>;

/// A live stream between two long polls: everything [`Events::next`] needs, owned.
#[derive(Debug)]
pub struct Events {
    caller: Caller,
    task_ref: String,
    /// The connection id.
    pub id: String,
    token: String,
    subs: BTreeMap<String, Fields>,
    /// What the client last saw of each object, per subscription: ref → object (subscribed fields), and whether it
    /// came from an event (`false` for the objects read when the subscription began: see [`Events::resubscribe`]).
    seen: HashMap<String, Seen>,
    octx: objects::Ctx,
    /// Whether the session is the request's own (Basic credentials), to log out when the stream ends.
    pub logout: bool,
    /// The `init` event, sent first.
    started: bool,
    /// Whether someone ended the stream through its task (cancelled or destroyed it).
    stopped: bool,
}

/// Whether a stream's task was asked to end: XAPI records `task.cancel` and `task.destroy` of a pending task in its
/// `current_operations` and leaves the ending to the operation running under it (`ocaml/xapi/xapi_task.ml`).
fn ended(task: &Value) -> bool {
    task["status"] != "pending"
        || task["current_operations"]
            .as_object()
            .is_some_and(|ops| ops.values().any(|o| o == "cancel" || o == "destroy"))
}

/// One Server-Sent Event.
fn sse(event: &str, data: &Value) -> Vec<u8> {
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}

/// `GET /rest/v0/events`: creates the stream's task, takes XAPI's event token, answers the stream's head.
pub async fn open<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, _req: &Request) -> Result<Reply, ApiError> {
    let s = json!(caller.session);
    let xapi = |e: crate::xapi::XapiError| e.to_api_error();
    let octx = pool_ctx(ctx, &caller).await?;
    let task_ref = ctx.xapi.call("task.create", &[s.clone(), json!(LABEL), json!(caller.user)]).await.map_err(xapi)?;
    let task_ref = task_ref.as_str().unwrap_or_default().to_string();
    // Only the stream's own task: its record (for the uuid) and the token to go on from.
    let first = match ctx
        .xapi
        .call("event.from", &[s.clone(), json!([format!("task/{task_ref}")]), json!(""), json!(0.0)])
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let _ = ctx.xapi.call("task.destroy", &[s, json!(task_ref)]).await;
            return Err(xapi(e));
        }
    };
    let id = first["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["ref"] == task_ref.as_str()))
        .and_then(|e| e["snapshot"]["uuid"].as_str())
        .unwrap_or_default()
        .to_string();
    let token = first["token"].as_str().unwrap_or_default().to_string();
    let events = Events {
        caller,
        task_ref,
        id,
        token,
        subs: BTreeMap::new(),
        seen: HashMap::new(),
        octx,
        logout: false,
        started: false,
        stopped: false,
    };
    Ok(Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("cache-control".into(), "no-cache, no-transform".into()),
            // nginx and friends buffer responses unless told not to.
            ("x-accel-buffering".into(), "no".into()),
        ],
        body: Vec::new(),
        stream: Some(Stream::Events(Box::new(events))),
    })
}

impl Events {
    /// The next bytes of the stream: `init` first, then the events of one long poll (a `ping` if it saw none,
    /// stamped by `clock`, milliseconds since the epoch, when the poll ends); `None` once the stream cannot go on
    /// (its task was destroyed, the session ended, XAPI failed).
    pub async fn next<T: Transport>(&mut self, ctx: &Ctx<'_, T>, clock: &dyn Fn() -> u64) -> Option<Vec<u8>> {
        if !self.started {
            self.started = true;
            return Some(sse("init", &json!({ "id": self.id })));
        }
        let mut classes = vec![format!("task/{}", self.task_ref)];
        for name in self.subs.keys() {
            let Some(coll) = subscribable(name) else { continue };
            for class in std::iter::once(&coll.class).chain(coll.joins.iter()) {
                if !classes.iter().any(|c| c.eq_ignore_ascii_case(class)) {
                    classes.push(class.to_string());
                }
            }
        }
        let s = json!(self.caller.session);
        let ev = ctx.xapi.call("event.from", &[s, json!(classes), json!(self.token), json!(PING)]).await.ok()?;
        self.token = ev["token"].as_str().map(str::to_string).unwrap_or_else(|| self.token.clone());
        let mut out = Vec::new();
        for e in ev["events"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(reference) = e["ref"].as_str() else { continue };
            let class = e["class"].as_str().unwrap_or_default();
            let snapshot = e.get("snapshot").filter(|r| r.is_object());
            if reference == self.task_ref {
                match snapshot {
                    Some(task) if !ended(task) => self.resubscribe(ctx, subscriptions_of(task)).await,
                    // Cancelled, destroyed, or gone: the stream is over.
                    _ => {
                        self.stopped = true;
                        return None;
                    }
                }
                continue;
            }
            // Keep the records objects are built from current.
            match snapshot {
                Some(rec) => {
                    self.octx.records.insert(reference.to_string(), rec.clone());
                }
                None => {
                    self.octx.records.remove(reference);
                }
            }
            for (name, fields) in &self.subs {
                let Some(coll) = subscribable(name) else { continue };
                if !coll.class.eq_ignore_ascii_case(class) {
                    continue;
                }
                let seen = self.seen.entry(name.clone()).or_default();
                let object = snapshot
                    .filter(|rec| member(coll, rec))
                    .map(|rec| fields.pick(objects::build(coll, reference, rec, &self.octx)));
                let (event, object) = match (object, seen.get(reference)) {
                    (Some(o), None) => ("add", o),
                    (Some(o), Some((before, true))) if &o == before => continue,
                    (Some(o), Some(_)) => ("update", o),
                    (None, Some((before, _))) => ("remove", before.clone()),
                    (None, None) => continue,
                };
                if event == "remove" {
                    seen.remove(reference);
                } else {
                    seen.insert(reference.to_string(), (object.clone(), true));
                }
                let mut data = Map::new();
                data.insert("$subscription".into(), json!(name));
                data.extend(object);
                out.extend(sse(event, &Value::Object(data)));
            }
        }
        if out.is_empty() {
            out = sse("ping", &json!({ "ping": clock() }));
        }
        Some(out)
    }

    /// Takes the subscriptions recorded on the task: reads what a new one covers (silently), forgets a removed one.
    /// That read comes after the event token the stream goes on from, so a change made between the two shows in
    /// the read already: the first event about each object read is sent even when the fields look unchanged.
    async fn resubscribe<T: Transport>(&mut self, ctx: &Ctx<'_, T>, subs: BTreeMap<String, Fields>) {
        self.seen.retain(|name, _| subs.contains_key(name));
        for (name, fields) in &subs {
            if self.subs.get(name) == Some(fields) {
                continue;
            }
            let Some(coll) = subscribable(name) else { continue };
            let _ = load_joins(ctx, &self.caller, coll, &mut self.octx).await;
            let s = json!(self.caller.session);
            let mut seen = HashMap::new();
            let records = ctx
                .xapi
                .call(&format!("{}.get_all_records_where", coll.class), &[s, json!(coll.selector)])
                .await
                .unwrap_or(Value::Null);
            for (r, rec) in records.as_object().into_iter().flatten() {
                if r == &self.task_ref {
                    continue;
                }
                self.octx.records.entry(r.clone()).or_insert_with(|| rec.clone());
                seen.insert(r.clone(), (fields.pick(objects::build(coll, r, rec, &self.octx)), false));
            }
            self.seen.insert(name.clone(), seen);
        }
        self.subs = subs;
    }

    /// Ends the stream on XAPI: ends its task (`cancelled` when someone asked for it, else `success`) and destroys
    /// it, and logs out a Basic session.
    pub async fn close<T: Transport>(&self, ctx: &Ctx<'_, T>) {
        let s = json!(self.caller.session);
        let status = if self.stopped { "cancelled" } else { "success" };
        let _ = ctx.xapi.call("task.set_status", &[s.clone(), json!(self.task_ref), json!(status)]).await;
        let _ = ctx.xapi.call("task.destroy", &[s, json!(self.task_ref)]).await;
        if self.logout {
            let _ = ctx.xapi.logout(&self.caller.session).await;
        }
    }
}

/// The stream task behind a connection id, if it is one of the caller's.
async fn stream_task<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, id: &str) -> Result<(String, Value), ApiError> {
    let s = json!(caller.session);
    let missing = || ApiError::not_found(format!("no event stream {id}"));
    let reference = ctx.xapi.call("task.get_by_uuid", &[s.clone(), json!(id)]).await.map_err(|_| missing())?;
    let reference = reference.as_str().unwrap_or_default().to_string();
    let rec = ctx.xapi.call("task.get_record", &[s, json!(reference)]).await.map_err(|_| missing())?;
    let ours = rec["name_label"] == LABEL && rec["name_description"] == caller.user.as_str() && !ended(&rec);
    if !ours {
        return Err(missing());
    }
    Ok((reference, rec))
}

/// Writes a stream task's subscriptions back in one `task.set_other_config` (one event for the stream).
async fn set_subscriptions<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    reference: &str,
    other_config: Map<String, Value>,
) -> Result<(), ApiError> {
    let args = [json!(caller.session), json!(reference), Value::Object(other_config)];
    ctx.xapi.call("task.set_other_config", &args).await.map(|_| ()).map_err(|e| e.to_api_error())
}

/// `POST /rest/v0/events/<id>/subscriptions`.
pub async fn subscribe<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    id: &str,
) -> Result<Reply, ApiError> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("the body must be a JSON object: {e}")))?;
    let name = body
        .get("collection")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("collection is required, one of: {}", names())))?;
    if subscribable(name).is_none() {
        return Err(ApiError::bad_request(format!("no such collection {name:?}: one of {}", names())));
    }
    let fields = Fields::parse(body.get("fields")).map_err(ApiError::bad_request)?;
    if let Some(k) = body.as_object().and_then(|o| o.keys().find(|k| *k != "collection" && *k != "fields")) {
        return Err(ApiError::bad_request(format!("unknown property {k:?}: only collection and fields")));
    }
    let (reference, rec) = stream_task(ctx, &caller, id).await?;
    let mut other = rec["other_config"].as_object().cloned().unwrap_or_default();
    other.insert(format!("{KEY}{name}"), json!(fields.to_value().to_string()));
    set_subscriptions(ctx, &caller, &reference, other).await?;
    Ok(Reply::json(201, &json!({ "id": name })))
}

/// `DELETE /rest/v0/events/<id>/subscriptions/<collection>`.
pub async fn unsubscribe<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    id: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = stream_task(ctx, &caller, id).await?;
    let mut other = rec["other_config"].as_object().cloned().unwrap_or_default();
    if other.remove(&format!("{KEY}{name}")).is_none() {
        return Err(ApiError::not_found(format!("the stream {id} has no subscription {name}")));
    }
    set_subscriptions(ctx, &caller, &reference, other).await?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_from_the_task() {
        assert_eq!(subscribable("VM").map(|c| c.name), Some("vms"));
        assert_eq!(subscribable("VM-template").map(|c| c.name), Some("vm-templates"));
        assert_eq!(subscribable("alarm").map(|c| c.name), Some("alarms"));
        assert_eq!(subscribable("message").map(|c| c.name), Some("messages"));
        assert!(subscribable("vms").is_none());
        assert!(names().contains("VDI-snapshot") && names().contains("alarm"));
        let task = json!({ "other_config": {
            "xo-edge:events:VM": "[\"id\",\"power_state\"]",
            "xo-edge:events:host": "\"*\"",
            "xo-edge:events:nope": "\"*\"",
            "xo-edge:events:SR": "{}",
            "applies_to": "x",
        }});
        let subs = subscriptions_of(&task);
        assert_eq!(subs.len(), 2);
        assert_eq!(subs["VM"], Fields::Only(vec!["id".into(), "power_state".into()]));
        assert_eq!(subs["host"], Fields::All);
        assert_eq!(Fields::parse(Some(&json!(["a", 1]))).unwrap_err(), "fields must be \"*\" or a list of field names");
        assert!(Fields::parse(Some(&json!("a"))).is_err());
        let o: Map<String, Value> = serde_json::from_value(json!({"id": 1, "a": 2, "b": 3})).unwrap();
        assert_eq!(Value::Object(Fields::Only(vec!["a".into(), "z".into()]).pick(o)), json!({"a": 2}));
        assert_eq!(sse("ping", &json!({"ping": 1})), b"event: ping\ndata: {\"ping\":1}\n\n".to_vec());
    }
}
