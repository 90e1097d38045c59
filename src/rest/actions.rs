//! Actions: `GET /rest/v0/<collection>/{_|<id>}/actions[/<name>]` and `POST /rest/v0/<collection>/<id>/actions/<name>`.
//!
//! One table ([`ACTIONS`]) says, per collection, each action's parameters (a JSON Schema, which is also what
//! `GET …/actions/<name>` answers), the XAPI `Async.*` call it makes, the power states it needs (checked before
//! the call: 409 with XAPI's `VM_BAD_POWER_STATE`) and what it makes. An action runs as XAPI's own task: the answer
//! is 202 with `Location: /rest/v0/tasks/<uuid>` (body: the task's href as text, as XO's legacy API, or
//! `{"taskId": …}` with `Accept: application/json`); with `?sync` the edge waits for the task and answers its
//! outcome (201 + `Location` + `{"id"}` for a new object, 204 otherwise; XAPI's error on failure), then destroys it.

use super::auth::Caller;
use super::collections::{find, wait_for_task};
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::query::params;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Map, Value};

/// What an action's XAPI call needs besides the object's ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Args {
    /// `(ref)`.
    Plain,
    /// `(ref, start_paused = false, force = false)`.
    NotPausedNotForced,
    /// `(ref, new_name, ignore_vdis)`: the VDIs named `[NOSNAP]` are left out.
    Snapshot,
}

/// One action.
#[derive(Debug)]
pub struct Action {
    pub class: &'static str,
    /// The collections it applies to.
    pub collections: &'static [&'static str],
    pub name: &'static str,
    /// XAPI's method (called as `Async.<method>`).
    method: &'static str,
    args: Args,
    /// Power states the object must be in (empty: any).
    states: &'static [&'static str],
    /// The collection of the object the action makes, if any.
    makes: Option<&'static str>,
}

const VMS: &[&str] = &["vms"];

/// Every action.
pub static ACTIONS: &[Action] = &[
    vm_power("start", "VM.start", Args::NotPausedNotForced, &["Halted"]),
    vm_power("clean_shutdown", "VM.clean_shutdown", Args::Plain, &["Running"]),
    vm_power("hard_shutdown", "VM.hard_shutdown", Args::Plain, &["Running", "Paused", "Suspended"]),
    vm_power("clean_reboot", "VM.clean_reboot", Args::Plain, &["Running"]),
    vm_power("hard_reboot", "VM.hard_reboot", Args::Plain, &["Running", "Paused"]),
    vm_power("pause", "VM.pause", Args::Plain, &["Running"]),
    vm_power("unpause", "VM.unpause", Args::Plain, &["Paused"]),
    vm_power("suspend", "VM.suspend", Args::Plain, &["Running"]),
    vm_power("resume", "VM.resume", Args::NotPausedNotForced, &["Suspended"]),
    Action {
        class: "VM",
        collections: VMS,
        name: "snapshot",
        method: "VM.snapshot",
        args: Args::Snapshot,
        states: &[],
        makes: Some("vm-snapshots"),
    },
];

const fn vm_power(name: &'static str, method: &'static str, args: Args, states: &'static [&'static str]) -> Action {
    Action { class: "VM", collections: VMS, name, method, args, states, makes: None }
}

/// The action's parameters as a JSON Schema (an object with optional typed properties, nothing else).
pub fn schema(action: &Action) -> Value {
    let properties = match action.args {
        Args::Snapshot => json!({ "name_label": { "type": "string" } }),
        _ => json!({}),
    };
    json!({ "type": "object", "properties": properties, "additionalProperties": false })
}

/// Checks `params` against [`schema`]: an object whose keys are declared properties of the declared types.
fn validate(action: &Action, params: &Value) -> Result<(), ApiError> {
    let schema = schema(action);
    let Value::Object(given) = params else {
        return Err(ApiError::bad_request(format!("the parameters of {} must be a JSON object", action.name)));
    };
    let declared = schema["properties"].as_object().cloned().unwrap_or_default();
    for (key, value) in given {
        let Some(spec) = declared.get(key) else {
            let known: Vec<&String> = declared.keys().collect();
            return Err(ApiError::bad_request(format!(
                "{} takes no parameter {key:?} (its parameters: {known:?})",
                action.name
            ))
            .with_data(json!({ "schema": schema })));
        };
        let fits = match spec["type"].as_str() {
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("integer") => value.is_i64() || value.is_u64(),
            _ => true,
        };
        if !fits {
            return Err(ApiError::bad_request(format!("{key} must be of type {}", spec["type"]))
                .with_data(json!({ "schema": schema })));
        }
    }
    Ok(())
}

fn actions_of(coll: &Collection) -> impl Iterator<Item = &'static Action> + '_ {
    ACTIONS.iter().filter(move |a| a.class == coll.class && a.collections.contains(&coll.name))
}

fn find_action(coll: &Collection, name: &str) -> Result<&'static Action, ApiError> {
    actions_of(coll).find(|a| a.name == name).ok_or_else(|| {
        let names: Vec<&str> = actions_of(coll).map(|a| a.name).collect();
        ApiError::not_found(format!("{} have no action {name:?}", coll.name)).with_data(json!({ "actions": names }))
    })
}

/// `GET /rest/v0/<collection>/{_|<id>}/actions`: the actions' hrefs.
pub async fn list<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    if id != "_" {
        find(ctx, &caller, coll, id).await?;
    }
    let hrefs: Vec<Value> =
        actions_of(coll).map(|a| json!(format!("/rest/v0/{}/{id}/actions/{}", coll.name, a.name))).collect();
    Ok(Reply::json(200, &Value::Array(hrefs)))
}

/// `GET /rest/v0/<collection>/{_|<id>}/actions/<name>`: `{"params": <JSON Schema>}`.
pub async fn describe<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let action = find_action(coll, name)?;
    if id != "_" {
        find(ctx, &caller, coll, id).await?;
    }
    Ok(Reply::json(200, &json!({ "params": schema(action) })))
}

/// `POST /rest/v0/<collection>/<id>/actions/<name>[?sync]`.
pub async fn run<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let action = find_action(coll, name)?;
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    validate(action, &body)?;
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    let state = rec["power_state"].as_str().unwrap_or_default();
    if !action.states.is_empty() && !action.states.contains(&state) {
        let expected = action.states.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>().join(" or ");
        return Err(ApiError::new(
            409,
            format!("{name} needs the VM to be {expected}, and it is {}", state.to_ascii_lowercase()),
        )
        .with_data(
            json!({ "code": "VM_BAD_POWER_STATE", "params": [reference, expected, state.to_ascii_lowercase()] }),
        ));
    }
    let s = json!(caller.session);
    let mut args = vec![s.clone(), json!(reference)];
    match action.args {
        Args::Plain => {}
        Args::NotPausedNotForced => args.extend([json!(false), json!(false)]),
        Args::Snapshot => {
            let default = format!("{} ({})", rec["name_label"].as_str().unwrap_or_default(), action.name);
            args.push(json!(body["name_label"].as_str().map(str::to_string).unwrap_or(default)));
            args.push(json!(nosnap_disks(ctx, &s, &rec).await?));
        }
    }
    let task = ctx.xapi.call(&format!("Async.{}", action.method), &args).await.map_err(|e| e.to_api_error())?;
    let task = task.as_str().unwrap_or_default().to_string();
    let uuid = ctx.xapi.call("task.get_uuid", &[s.clone(), json!(task)]).await.map_err(|e| e.to_api_error())?;
    let uuid = uuid.as_str().unwrap_or_default().to_string();
    let location = format!("/rest/v0/tasks/{uuid}");
    let sync = params::pairs(&req.query).iter().any(|(k, v)| k == "sync" && v != "false");
    if !sync {
        let json_wanted = req.header("accept").is_some_and(|a| a.contains("application/json"));
        let reply = if json_wanted {
            Reply::json(202, &json!({ "taskId": uuid }))
        } else {
            Reply {
                status: 202,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: location.clone().into_bytes(),
                stream: None,
            }
        };
        return Ok(reply.with_header("location", location));
    }
    let outcome = match ctx.xapi.call("task.get_record", &[s.clone(), json!(task)]).await {
        Ok(rec) => wait_for_task(ctx, &s, &task, rec).await.map_err(|e| e.to_api_error()),
        Err(e) => Err(e.to_api_error()),
    };
    let _ = ctx.xapi.call("task.destroy", &[s.clone(), json!(task)]).await;
    let record = outcome?;
    match record["status"].as_str() {
        Some("success") => match action.makes {
            Some(made) => {
                let made_ref = opaque_ref(record["result"].as_str().unwrap_or_default())
                    .ok_or_else(|| ApiError::bad_gateway("XAPI's task succeeded without naming what it made"))?;
                let made_uuid =
                    ctx.xapi.call("VM.get_uuid", &[s, json!(made_ref)]).await.map_err(|e| e.to_api_error())?;
                let made_uuid = made_uuid.as_str().unwrap_or_default();
                Ok(Reply::json(201, &json!({ "id": made_uuid }))
                    .with_header("location", format!("/rest/v0/{made}/{made_uuid}")))
            }
            None => Ok(Reply::no_content()),
        },
        Some("pending") => Err(ApiError::new(504, format!("{name} is still running: see {location}"))),
        _ => {
            let info: Vec<String> = record["error_info"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
                .unwrap_or_default();
            let (code, params) = info.split_first().map(|(c, p)| (c.clone(), p.to_vec())).unwrap_or_default();
            Err(XapiError::Api { code, params }.to_api_error())
        }
    }
}

/// The VDIs of `rec`'s disks whose name holds `[NOSNAP]` (XO leaves them out of snapshots).
async fn nosnap_disks<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, rec: &Value) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for vbd in rec["VBDs"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(Value::as_str) {
        let Ok(vdi) = ctx.xapi.call("VBD.get_VDI", &[s.clone(), json!(vbd)]).await else { continue };
        let vdi = vdi.as_str().unwrap_or_default().to_string();
        if vdi.is_empty() || vdi == "OpaqueRef:NULL" {
            continue;
        }
        let label = ctx.xapi.call("VDI.get_name_label", &[s.clone(), json!(vdi)]).await.unwrap_or_default();
        if label.as_str().is_some_and(|l| l.contains("[NOSNAP]")) {
            out.push(vdi);
        }
    }
    Ok(out)
}

/// The first `OpaqueRef:…` in a task result (XML-RPC text even over JSON-RPC: `<value>OpaqueRef:…</value>`).
fn opaque_ref(result: &str) -> Option<String> {
    let start = result.find("OpaqueRef:")?;
    let rest = &result[start..];
    let end = rest[10..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).map_or(rest.len(), |i| i + 10);
    Some(rest[..end].to_string()).filter(|r| r.len() > 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_validate_and_refs_are_found() {
        let snapshot = ACTIONS.iter().find(|a| a.name == "snapshot").unwrap();
        assert!(validate(snapshot, &json!({})).is_ok());
        assert!(validate(snapshot, &json!({"name_label": "x"})).is_ok());
        assert_eq!(validate(snapshot, &json!({"name_label": 1})).unwrap_err().status, 400);
        assert!(validate(snapshot, &json!({"nope": 1})).unwrap_err().message.contains("no parameter \"nope\""));
        assert_eq!(validate(snapshot, &json!([])).unwrap_err().status, 400);
        let start = ACTIONS.iter().find(|a| a.name == "start").unwrap();
        assert_eq!(schema(start), json!({"type": "object", "properties": {}, "additionalProperties": false}));
        assert_eq!(opaque_ref("<value>OpaqueRef:ab-12</value>").as_deref(), Some("OpaqueRef:ab-12"));
        assert_eq!(opaque_ref("OpaqueRef:x"), Some("OpaqueRef:x".into()));
        assert_eq!(opaque_ref("<value></value>"), None);
        assert_eq!(opaque_ref("OpaqueRef:"), None);
    }
}
