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
use super::infra::{self, Op};
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::query::params;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Map, Value};

/// What an action's XAPI call needs besides the object's ref, and so its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Args {
    /// `(ref)`.
    Plain,
    /// `(ref, start_paused = false, force = false)`.
    NotPausedNotForced,
    /// `VM.start(ref, false, false)`, or `VM.start_on(ref, host, false, false)` on `hostId` (XO 6's `hostId`).
    Start,
    /// `(ref, new_name, ignore_vdis)`: the VDIs named `[NOSNAP]` are left out.
    Snapshot,
    /// `VM.clone(ref, new_name)` (`fast`, the default), or `VM.copy(ref, new_name, sr)` (`fast: false`: into each
    /// disk's SR; `srId`: into that SR).
    Clone,
    /// `VM.revert(snapshot)` where `snapshotId` names one of the VM's snapshots; `snapshotBefore` snapshots the VM
    /// first.
    Revert,
    /// To `hostId`, live: `VM.pool_migrate(ref, host, options)` (over `migrationNetworkId` if given) when the host
    /// sees every disk's SR and no SR is asked for; otherwise storage motion as XO does it:
    /// `host.migrate_receive` then `VM.migrate_send` with each disk sent to `srIdByVdiId`'s SR, else `srId`, else
    /// its own SR when the host sees it, else the pool's default SR (see [`migration`]).
    Migrate,
    /// A VDI to `srId`: `VDI.pool_migrate(ref, sr, {})` when a VM uses it (storage motion), else `VDI.copy` and the
    /// source destroyed once the copy is done.
    VdiMigrate,
    /// `(ref)`, with these boolean parameters accepted for XO compatibility and not used.
    PlainAccepting(&'static [&'static str]),
    /// An infrastructure action ([`super::infra`]): one call or a plan.
    Infra(infra::Op),
}

/// What must hold before the call (checked on the records the edge reads anyway: 409 with XAPI's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The object's power states (empty: any).
    States(&'static [&'static str]),
    /// A VBD or VIF: its VM running, and the device detached (`true`: plug) or attached (`false`: unplug).
    Device(bool),
    /// A host live (`true`: `HOST_OFFLINE` otherwise) or not (`false`: `HOST_IS_LIVE` otherwise).
    HostLive(bool),
    /// A host that is not the pool's master.
    NotMaster,
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
    check: Check,
    /// The collection of the object the action makes, if any.
    makes: Option<&'static str>,
}

const VMS: &[&str] = &["vms"];

/// Every action.
pub static ACTIONS: &[Action] = &[
    vm_power("start", "VM.start", Args::Start, &["Halted"]),
    vm_power("clean_shutdown", "VM.clean_shutdown", Args::Plain, &["Running"]),
    vm_power("hard_shutdown", "VM.hard_shutdown", Args::Plain, &["Running", "Paused", "Suspended"]),
    vm_power("clean_reboot", "VM.clean_reboot", Args::Plain, &["Running"]),
    vm_power("hard_reboot", "VM.hard_reboot", Args::Plain, &["Running", "Paused"]),
    vm_power("pause", "VM.pause", Args::Plain, &["Running"]),
    vm_power("unpause", "VM.unpause", Args::Plain, &["Paused"]),
    vm_power("suspend", "VM.suspend", Args::Plain, &["Running"]),
    vm_power("resume", "VM.resume", Args::NotPausedNotForced, &["Suspended"]),
    Action { makes: Some("vm-snapshots"), ..vm_power("snapshot", "VM.snapshot", Args::Snapshot, &[]) },
    // XAPI clones halted VMs only (`xapi_vm_lifecycle.ml`, `allowed_power_states`).
    Action { makes: Some("vms"), ..vm_power("clone", "VM.clone", Args::Clone, &["Halted"]) },
    // The clone of a snapshot: XAPI makes it a template (`xapi_vm_clone.ml`, `copy_vm_record`), which the edge then
    // turns into a VM, so the action is answered once the clone is done (see [`run`]).
    Action {
        collections: &["vm-snapshots"],
        makes: Some("vms"),
        ..vm_power("clone", "VM.clone", Args::Clone, &["Halted", "Suspended"])
    },
    vm_power("revert_snapshot", "VM.revert", Args::Revert, &[]),
    vm_power("migrate", "VM.pool_migrate", Args::Migrate, &["Running"]),
    Action {
        class: "VDI",
        collections: &["vdis"],
        name: "migrate",
        method: "VDI.pool_migrate",
        args: Args::VdiMigrate,
        check: Check::States(&[]),
        makes: Some("vdis"),
    },
    device("VBD", &["vbds"], "connect", "VBD.plug", true),
    device("VBD", &["vbds"], "disconnect", "VBD.unplug", false),
    device("VIF", &["vifs"], "connect", "VIF.plug", true),
    device("VIF", &["vifs"], "disconnect", "VIF.unplug", false),
    host("disable", "host.disable", Args::Infra(Op::HostDisable), Check::States(&[])),
    host("enable", "host.enable", Args::Plain, Check::HostLive(true)),
    host("start", "host.power_on", Args::Plain, Check::HostLive(false)),
    host("clean_shutdown", "host.shutdown", Args::Infra(Op::HostPowerOff("host.shutdown")), Check::States(&[])),
    host("clean_reboot", "host.reboot", Args::Infra(Op::HostPowerOff("host.reboot")), Check::States(&[])),
    host("smart_reboot", "host.reboot", Args::Infra(Op::SmartReboot), Check::States(&[])),
    host(
        "restart_toolstack",
        "host.restart_agent",
        Args::PlainAccepting(&["bypassBackupCheck"]),
        Check::HostLive(true),
    ),
    host("emergency_shutdown", "host.shutdown", Args::Infra(Op::HostEmergency), Check::States(&[])),
    host("management_reconfigure", "host.management_reconfigure", Args::Infra(Op::HostPif), Check::States(&[])),
    host("scan_pifs", "PIF.scan", Args::Plain, Check::HostLive(true)),
    host("detach", "pool.eject", Args::Plain, Check::NotMaster),
    host("forget", "host.destroy", Args::Plain, Check::HostLive(false)),
    pool("create_network", Op::CreateNetwork, Some("networks")),
    pool("create_bonded_network", Op::CreateBondedNetwork, Some("networks")),
    pool("create_internal_network", Op::CreateInternalNetwork, Some("networks")),
    pool("create_vm", Op::CreateVm, Some("vms")),
    pool("management_reconfigure", Op::PoolNetwork, None),
    pool("emergency_shutdown", Op::PoolEmergency, None),
    pool("add_host", Op::Unavailable("add_host"), None),
    pool("rolling_reboot", Op::Unavailable("rolling_reboot"), None),
    pool("rolling_update", Op::Unavailable("rolling_update"), None),
    sr("scan", "SR.scan", Args::Plain),
    sr("forget", "SR.forget", Args::Infra(Op::SrForget)),
    sr("reclaim_space", "host.call_plugin", Args::Infra(Op::Trim)),
    Action { class: "PBD", collections: &["pbds"], ..sr("plug", "PBD.plug", Args::Plain) },
    Action { class: "PBD", collections: &["pbds"], ..sr("unplug", "PBD.unplug", Args::Plain) },
    // Listed and described here; run by [`super::tasks::abort`] (the route table sends it there).
    Action {
        class: "task",
        collections: &["tasks"],
        name: "abort",
        method: "task.cancel",
        args: Args::Plain,
        check: Check::States(&[]),
        makes: None,
    },
];

const fn vm_power(name: &'static str, method: &'static str, args: Args, states: &'static [&'static str]) -> Action {
    Action { class: "VM", collections: VMS, name, method, args, check: Check::States(states), makes: None }
}

const fn host(name: &'static str, method: &'static str, args: Args, check: Check) -> Action {
    Action { class: "host", collections: &["hosts"], name, method, args, check, makes: None }
}

const fn pool(name: &'static str, op: Op, makes: Option<&'static str>) -> Action {
    Action {
        class: "pool",
        collections: &["pools"],
        name,
        method: "pool",
        args: Args::Infra(op),
        check: Check::States(&[]),
        makes,
    }
}

const fn sr(name: &'static str, method: &'static str, args: Args) -> Action {
    Action { class: "SR", collections: &["srs"], name, method, args, check: Check::States(&[]), makes: None }
}

const fn device(
    class: &'static str,
    collections: &'static [&'static str],
    name: &'static str,
    method: &'static str,
    plug: bool,
) -> Action {
    Action { class, collections, name, method, args: Args::Plain, check: Check::Device(plug), makes: None }
}

/// The action's parameters as a JSON Schema (an object with typed properties, some required, nothing else).
pub fn schema(action: &Action) -> Value {
    let (properties, required) = match action.args {
        Args::Snapshot => (json!({ "name_label": { "type": "string" } }), json!([])),
        Args::Clone => (
            json!({
                "name_label": { "type": "string" },
                "fast": { "type": "boolean", "description": "a fast (copy-on-write) clone; false: a full copy" },
                "srId": { "type": "string", "description": "a full copy into this SR" },
                "compress": {
                    "type": "string",
                    "enum": ["gzip", "zstd"],
                    "description": "XO's: it compresses the XVA that a copy to another pool streams; a copy within \
                        the pool streams nothing, so here (as in XO for the same pool) it changes nothing",
                },
            }),
            json!([]),
        ),
        Args::Revert => (
            json!({ "snapshotId": { "type": "string" }, "snapshotBefore": { "type": "boolean" } }),
            json!(["snapshotId"]),
        ),
        Args::Migrate => (
            json!({
                "hostId": { "type": "string" },
                "migrationNetworkId": { "type": "string", "description": "the network the migration goes over" },
                "srId": { "type": "string", "description": "storage motion: every disk to this SR" },
                "srIdByVdiId": {
                    "type": "object",
                    "additionalProperties": { "type": "string" },
                    "description": "storage motion: a disk's uuid to the SR it goes to",
                },
                "networkIdByVifId": {
                    "type": "object",
                    "additionalProperties": { "type": "string" },
                    "description": "XO's map for a migration to another pool; within the pool the VIFs keep their \
                        networks (XO ignores it there too), but a non-empty map asks for storage motion, as in XO",
                },
            }),
            json!(["hostId"]),
        ),
        Args::Start => (json!({ "hostId": { "type": "string", "description": "start on this host" } }), json!([])),
        Args::VdiMigrate => (json!({ "srId": { "type": "string" } }), json!(["srId"])),
        Args::Plain | Args::NotPausedNotForced => (json!({}), json!([])),
        Args::PlainAccepting(names) => {
            let props: Map<String, Value> = names
                .iter()
                .map(|n| (n.to_string(), json!({ "type": "boolean", "description": "accepted for XO compatibility" })))
                .collect();
            (Value::Object(props), json!([]))
        }
        Args::Infra(op) => {
            let (props, required) = infra::schema(op);
            (props, json!(required))
        }
    };
    let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
    if required.as_array().is_some_and(|r| !r.is_empty()) {
        schema["required"] = required;
    }
    schema
}

/// Checks `params` against [`schema`]: an object whose keys are declared properties of the declared types.
fn validate(action: &Action, params: &Value) -> Result<(), ApiError> {
    let schema = schema(action);
    let Value::Object(given) = params else {
        return Err(ApiError::bad_request(format!("the parameters of {} must be a JSON object", action.name)));
    };
    let declared = schema["properties"].as_object().cloned().unwrap_or_default();
    for key in schema["required"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(Value::as_str) {
        if !given.contains_key(key) {
            return Err(ApiError::bad_request(format!("{} needs the parameter {key:?}", action.name))
                .with_data(json!({ "schema": schema })));
        }
    }
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
            // (XO's clients send JSON numbers, integral ones possibly with a fraction part of zero.)
            Some("integer") => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
            Some("number") => value.is_number(),
            // A map's values of their declared type (`srIdByVdiId`: strings).
            Some("object") if spec["additionalProperties"]["type"] == "string" => {
                value.as_object().is_some_and(|m| m.values().all(Value::is_string))
            }
            Some("object") => value.is_object(),
            Some("array") if spec["items"]["type"] == "object" => {
                value.as_array().is_some_and(|a| a.iter().all(Value::is_object))
            }
            Some("array") => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            _ => true,
        };
        let allowed = spec["enum"].as_array();
        if fits && allowed.is_some_and(|choices| !choices.contains(value)) {
            return Err(ApiError::bad_request(format!("{key} must be one of {}", spec["enum"]))
                .with_data(json!({ "schema": schema })));
        }
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
///
/// Two actions take a step of the edge's after XAPI's task ([`Finish`]): the clone of a snapshot (XAPI makes a
/// template of it; the edge makes it a VM) and the migration of a VDI no VM uses (XAPI copies it; the edge destroys
/// the source). They are answered once done, whatever `?sync` says; without it the answer is still 202 with the
/// (finished) task, which XAPI's task GC removes later.
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
    let s = json!(caller.session);
    precheck(ctx, &s, action, &reference, &rec).await?;
    let sync = params::pairs(&req.query).iter().any(|(k, v)| k == "sync" && v != "false");
    let (method, args) = match action.args {
        Args::Infra(op) => match infra::prepare(ctx, &caller, op, name, &reference, &rec, &body).await? {
            infra::Prepared::Call(method, rest) => (method, std::iter::once(s.clone()).chain(rest).collect()),
            infra::Prepared::Plan { label, steps } => return infra::start(ctx, &caller, req, label, steps, sync).await,
        },
        _ => arguments(ctx, &caller, action, &reference, &rec, &body).await?,
    };
    let task = ctx.xapi.call(&format!("Async.{method}"), &args).await.map_err(|e| e.to_api_error())?;
    let task = task.as_str().unwrap_or_default().to_string();
    let uuid = ctx.xapi.call("task.get_uuid", &[s.clone(), json!(task)]).await.map_err(|e| e.to_api_error())?;
    let uuid = uuid.as_str().unwrap_or_default().to_string();
    let location = format!("/rest/v0/tasks/{uuid}");
    let finish = match (coll.name, method) {
        ("vm-snapshots", "VM.clone" | "VM.copy") => Some(Finish::MakeVm),
        (_, "VDI.copy") => Some(Finish::DestroySource),
        _ => None,
    };
    let accepted = || accepted(req, &uuid);
    if !sync && finish.is_none() {
        return Ok(accepted());
    }
    let outcome = match ctx.xapi.call("task.get_record", &[s.clone(), json!(task)]).await {
        Ok(rec) => wait_for_task(ctx, &s, &task, rec).await.map_err(|e| e.to_api_error()),
        Err(e) => Err(e.to_api_error()),
    };
    let made = match &outcome {
        Ok(record) if record["status"] == "success" && action.makes.is_some() => {
            opaque_ref(record["result"].as_str().unwrap_or_default())
        }
        _ => None,
    };
    if let (Some(finish), Some(made)) = (finish, &made) {
        let done = match finish {
            Finish::MakeVm => ctx.xapi.call("VM.set_is_a_template", &[s.clone(), json!(made), json!(false)]).await,
            Finish::DestroySource => ctx.xapi.call("VDI.destroy", &[s.clone(), json!(reference)]).await,
        };
        if let Err(e) = done {
            let _ = ctx.xapi.call("task.destroy", &[s.clone(), json!(task)]).await;
            match finish {
                // Nothing half-made stays: the clone (a template still) and its disks go.
                Finish::MakeVm => super::delete::destroy_with_own_disks(ctx, &s, made).await,
                // XAPI refused to destroy the source, so it is whole: the copy goes. But when XAPI did not answer,
                // the source may be gone by now (XAPI finishes a call whoever waits for it), so the copy stays,
                // and the answer names both: nothing is lost.
                Finish::DestroySource if matches!(e, XapiError::Api { .. }) => {
                    let _ = ctx.xapi.call("VDI.destroy", &[s.clone(), json!(made)]).await;
                }
                Finish::DestroySource => {
                    let copy = ctx.xapi.call("VDI.get_uuid", &[s.clone(), json!(made)]).await.unwrap_or_default();
                    let mut error = e.to_api_error();
                    error.message =
                        format!("{}: the VDI was copied, the source may not have been destroyed", error.message);
                    return Err(error.with_data(json!({ "copy": copy, "source": rec["uuid"] })));
                }
            }
            return Err(e.to_api_error());
        }
    }
    if !sync {
        return Ok(accepted());
    }
    let _ = ctx.xapi.call("task.destroy", &[s.clone(), json!(task)]).await;
    let record = outcome?;
    match record["status"].as_str() {
        Some("success") => match (action.makes, made) {
            (Some(coll), Some(made_ref)) => {
                let class = collection(coll)?.class;
                let made_uuid = ctx
                    .xapi
                    .call(&format!("{class}.get_uuid"), &[s, json!(made_ref)])
                    .await
                    .map_err(|e| e.to_api_error())?;
                let made_uuid = made_uuid.as_str().unwrap_or_default();
                Ok(Reply::json(201, &json!({ "id": made_uuid }))
                    .with_header("location", format!("/rest/v0/{coll}/{made_uuid}")))
            }
            (Some(_), None) => Err(ApiError::bad_gateway("XAPI's task succeeded without naming what it made")),
            (None, _) => Ok(Reply::no_content()),
        },
        Some("pending") => Err(ApiError::new(504, format!("{name} is still running: see {location}"))),
        _ => Err(super::plans::task_error(&record).to_api_error()),
    }
}

/// What the edge does once XAPI's task has succeeded, before answering (so these actions are answered once XAPI
/// is done, whatever `?sync` says; without it the answer is still 202 with the finished task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// The clone of a snapshot, a template for XAPI, becomes a VM (`VM.set_is_a_template false`).
    MakeVm,
    /// A VDI copied to another SR: the source goes.
    DestroySource,
}

/// 202 for the XAPI task `uuid`: `Location: /rest/v0/tasks/<uuid>`, and as body the href as text (XO's legacy API)
/// or `{"taskId": …}` with `Accept: application/json`.
pub(crate) fn accepted(req: &Request, uuid: &str) -> Reply {
    let location = format!("/rest/v0/tasks/{uuid}");
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
    reply.with_header("location", location)
}

/// A 409 with XAPI's error code and parameters, for a state the edge can see forbids the action.
fn refused(message: String, code: &str, params: Vec<String>) -> ApiError {
    ApiError::new(409, message).with_data(json!({ "code": code, "params": params }))
}

/// What the records already say forbids: a blocked operation, the power state, a device's VM not running or the
/// device already (dis)connected.
async fn precheck<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    action: &Action,
    reference: &str,
    rec: &Value,
) -> Result<(), ApiError> {
    let name = action.name;
    let xapi_op = action.method.split_once('.').map_or("", |(_, op)| op);
    if let Some(reason) = rec["blocked_operations"].get(xapi_op) {
        let reason = reason.as_str().unwrap_or_default().to_string();
        return Err(refused(
            format!("{name} is blocked on this object ({reason})"),
            "OPERATION_BLOCKED",
            vec![reference.to_string(), reason],
        ));
    }
    match action.check {
        Check::States(states) => {
            let state = rec["power_state"].as_str().unwrap_or_default();
            if !states.is_empty() && !states.contains(&state) {
                let expected = states.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>().join(" or ");
                let actual = state.to_ascii_lowercase();
                return Err(refused(
                    format!("{name} needs the VM to be {expected}, and it is {actual}"),
                    "VM_BAD_POWER_STATE",
                    vec![reference.to_string(), expected, actual],
                ));
            }
        }
        Check::Device(plug) => {
            let vm = rec["VM"].as_str().unwrap_or_default();
            let state =
                ctx.xapi.call("VM.get_power_state", &[s.clone(), json!(vm)]).await.map_err(|e| e.to_api_error())?;
            let state = state.as_str().unwrap_or_default().to_ascii_lowercase();
            let attached = rec["currently_attached"] == json!(true);
            let r = vec![reference.to_string()];
            if state != "running" {
                return Err(refused(
                    format!("{name} needs the device's VM to be running, and it is {state}"),
                    "VM_BAD_POWER_STATE",
                    vec![vm.to_string(), "running".into(), state],
                ));
            }
            if plug && attached {
                return Err(refused("the device is already connected".into(), "DEVICE_ALREADY_ATTACHED", r));
            }
            if !plug && !attached {
                return Err(refused("the device is already disconnected".into(), "DEVICE_ALREADY_DETACHED", r));
            }
            if !plug && action.class == "VBD" && rec["unpluggable"] == json!(false) {
                return Err(refused("this drive cannot be unplugged".into(), "VBD_NOT_UNPLUGGABLE", r));
            }
        }
        Check::HostLive(want) => {
            let metrics = rec["metrics"].clone();
            let live = ctx.xapi.call("host_metrics.get_live", &[s.clone(), metrics]).await.ok() == Some(json!(true));
            let r = vec![reference.to_string()];
            match (want, live) {
                (true, false) => {
                    return Err(refused(format!("{name} needs the host to be up, and it is down"), "HOST_OFFLINE", r))
                }
                (false, true) => {
                    return Err(refused(format!("{name} needs the host to be down, and it is up"), "HOST_IS_LIVE", r))
                }
                _ => {}
            }
        }
        Check::NotMaster => {
            let pools =
                ctx.xapi.call("pool.get_all_records", std::slice::from_ref(s)).await.map_err(|e| e.to_api_error())?;
            if pools.as_object().into_iter().flatten().any(|(_, p)| p["master"] == json!(reference)) {
                return Err(refused(
                    format!("{name} is not possible on the pool master (designate another master first)"),
                    "HOST_IS_MASTER",
                    vec![reference.to_string()],
                ));
            }
        }
    }
    Ok(())
}

/// The XAPI method to call (without `Async.`) and its arguments, resolving the ids the body names.
async fn arguments<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    action: &Action,
    reference: &str,
    rec: &Value,
    body: &Value,
) -> Result<(&'static str, Vec<Value>), ApiError> {
    let s = json!(caller.session);
    let label = |suffix: &str| {
        body["name_label"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} ({suffix})", rec["name_label"].as_str().unwrap_or_default()))
    };
    let mut args = vec![s.clone(), json!(reference)];
    let method = match action.args {
        Args::Plain | Args::PlainAccepting(_) | Args::Infra(_) => action.method,
        Args::NotPausedNotForced => {
            args.extend([json!(false), json!(false)]);
            action.method
        }
        Args::Start => match body["hostId"].as_str() {
            Some(id) => {
                let (host, _) = find(ctx, caller, collection("hosts")?, id).await?;
                args.extend([json!(host), json!(false), json!(false)]);
                "VM.start_on"
            }
            None => {
                args.extend([json!(false), json!(false)]);
                action.method
            }
        },
        Args::Snapshot => {
            args.push(json!(label(action.name)));
            args.push(json!(nosnap_disks(ctx, &s, rec).await?));
            action.method
        }
        Args::Clone => {
            args.push(json!(label("clone")));
            match body["srId"].as_str() {
                Some(sr) => {
                    let (sr, _) = find(ctx, caller, collection("srs")?, sr).await?;
                    args.push(json!(sr));
                    "VM.copy"
                }
                None if body["fast"] == json!(false) => {
                    args.push(json!("OpaqueRef:NULL"));
                    "VM.copy"
                }
                None => "VM.clone",
            }
        }
        Args::Revert => {
            let snapshot_id = body["snapshotId"].as_str().unwrap_or_default();
            let (snapshot, snap) = find(ctx, caller, collection("vm-snapshots")?, snapshot_id).await?;
            if snap["snapshot_of"].as_str() != Some(reference) {
                return Err(ApiError::bad_request(format!("{snapshot_id} is not a snapshot of this VM")));
            }
            if body["snapshotBefore"] == json!(true) {
                let before = vec![
                    s.clone(),
                    json!(reference),
                    json!(label("before revert")),
                    json!(nosnap_disks(ctx, &s, rec).await?),
                ];
                ctx.xapi.call("VM.snapshot", &before).await.map_err(|e| e.to_api_error())?;
            }
            args = vec![s.clone(), json!(snapshot)];
            action.method
        }
        Args::Migrate => {
            let (method, rest) = migration(ctx, caller, rec, body).await?;
            args.extend(rest);
            method
        }
        Args::VdiMigrate => {
            let (sr, _) = find(ctx, caller, collection("srs")?, body["srId"].as_str().unwrap_or_default()).await?;
            if rec["SR"].as_str() == Some(sr.as_str()) {
                return Err(ApiError::bad_request("the VDI is already on that SR"));
            }
            if rec["VBDs"].as_array().is_some_and(|v| !v.is_empty()) {
                args.extend([json!(sr), json!({})]);
                action.method
            } else {
                args.extend([json!(sr), json!("OpaqueRef:NULL"), json!("OpaqueRef:NULL")]);
                "VDI.copy"
            }
        }
    };
    Ok((method, args))
}

/// The XAPI call of a VM's migration within the pool and its arguments after the VM, as XO's `migrateVm` decides:
/// storage motion when an SR is asked for (`srId`, `srIdByVdiId`, or a non-empty `networkIdByVifId`) or when the
/// host does not see a disk's SR (where `VM.pool_migrate` would fail with `VM_REQUIRES_SR` and XO retries with
/// storage motion); `VM.pool_migrate` otherwise. Every id is resolved first (404 naming nothing made).
async fn migration<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    rec: &Value,
    body: &Value,
) -> Result<(&'static str, Vec<Value>), ApiError> {
    let s = json!(caller.session);
    let call = |method: &'static str, args: Vec<Value>| async move {
        let mut all = vec![json!(caller.session)];
        all.extend(args);
        ctx.xapi.call(method, &all).await.map_err(|e| e.to_api_error())
    };
    let (host, host_rec) = find(ctx, caller, collection("hosts")?, body["hostId"].as_str().unwrap_or_default()).await?;
    let network = match body["migrationNetworkId"].as_str() {
        Some(id) => Some(find(ctx, caller, collection("networks")?, id).await?.0),
        None => None,
    };
    let sr = match body["srId"].as_str() {
        Some(id) => Some(find(ctx, caller, collection("srs")?, id).await?.0),
        None => None,
    };
    let mut by_vdi = Vec::new();
    for (vdi, target) in body["srIdByVdiId"].as_object().into_iter().flatten() {
        let (vdi, _) = find(ctx, caller, collection("vdis")?, vdi).await?;
        let (target, _) = find(ctx, caller, collection("srs")?, target.as_str().unwrap_or_default()).await?;
        by_vdi.push((vdi, target));
    }
    let vif_map = body["networkIdByVifId"].as_object().is_some_and(|m| !m.is_empty());
    // The VM's disks (not its CDs) and their SRs.
    let mut disks = Vec::new();
    for vbd in rec["VBDs"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let vbd = call("VBD.get_record", vec![vbd.clone()]).await?;
        let vdi = vbd["VDI"].as_str().unwrap_or("OpaqueRef:NULL").to_string();
        if vbd["type"] != json!("Disk") || vdi == "OpaqueRef:NULL" {
            continue;
        }
        let disk_sr = call("VDI.get_SR", vec![json!(vdi)]).await?.as_str().unwrap_or_default().to_string();
        disks.push((vdi, disk_sr));
    }
    let host_pbds: Vec<&Value> = host_rec["PBDs"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let mut seen = Vec::new();
    for (_, disk_sr) in &disks {
        let pbds = call("SR.get_PBDs", vec![json!(disk_sr)]).await?;
        let visible = pbds.as_array().is_some_and(|p| p.iter().any(|pbd| host_pbds.contains(&pbd)));
        seen.push(visible);
    }
    let motion = sr.is_some() || !by_vdi.is_empty() || vif_map || seen.iter().any(|v| !v);
    if !motion {
        let mut options = json!({ "live": "true" });
        if let Some(n) = network {
            options["network"] = json!(n);
        }
        return Ok(("VM.pool_migrate", vec![json!(host), options]));
    }
    let mut vdi_map = Map::new();
    let mut default_sr = None;
    for ((vdi, disk_sr), visible) in disks.into_iter().zip(seen) {
        let target = match (by_vdi.iter().find(|(v, _)| *v == vdi), &sr) {
            (Some((_, t)), _) => t.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) if visible => disk_sr,
            (None, None) => {
                if default_sr.is_none() {
                    let pools = call("pool.get_all_records", vec![]).await?;
                    let found =
                        pools.as_object().and_then(|m| m.values().next()).and_then(|p| p["default_SR"].as_str());
                    default_sr = found.filter(|r| *r != "OpaqueRef:NULL").map(str::to_string);
                }
                default_sr.clone().ok_or_else(|| {
                    ApiError::new(409, "the disk's SR is not reachable from that host and the pool has no default SR")
                        .with_data(json!({ "code": "VM_REQUIRES_SR" }))
                })?
            }
        };
        vdi_map.insert(vdi, json!(target));
    }
    // The network the disks and memory go over: the one asked for, else the host's management network.
    let network = match network {
        Some(n) => n,
        None => {
            let mut management = None;
            for pif in host_rec["PIFs"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let p = call("PIF.get_record", vec![pif.clone()]).await?;
                if p["management"] == json!(true) {
                    management = p["network"].as_str().map(str::to_string);
                    break;
                }
            }
            management.ok_or_else(|| ApiError::new(409, "the host has no management interface to migrate over"))?
        }
    };
    let token = ctx
        .xapi
        .call("host.migrate_receive", &[s.clone(), json!(host), json!(network), json!({})])
        .await
        .map_err(|e| e.to_api_error())?;
    let options = json!({ "force": "false" });
    Ok(("VM.migrate_send", vec![token, json!(true), Value::Object(vdi_map), json!({}), options, json!({})]))
}

fn collection(name: &str) -> Result<&'static Collection, ApiError> {
    crate::objects::collection(name).ok_or_else(|| ApiError::internal(format!("collection {name} missing")))
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
        assert_eq!(schema(start)["properties"]["hostId"]["type"], "string");
        assert!(schema(start).get("required").is_none(), "hostId is optional");
        assert_eq!(validate(start, &json!({"hostId": 1})).unwrap_err().status, 400);
        let migrate = ACTIONS.iter().find(|a| a.name == "migrate" && a.class == "VM").unwrap();
        assert!(validate(migrate, &json!({"hostId": "h", "srIdByVdiId": {"v": "s"}})).is_ok());
        assert_eq!(validate(migrate, &json!({"hostId": "h", "srIdByVdiId": {"v": 1}})).unwrap_err().status, 400);
        assert_eq!(validate(migrate, &json!({"srId": "s"})).unwrap_err().status, 400, "hostId is required");
        let revert = ACTIONS.iter().find(|a| a.name == "revert_snapshot").unwrap();
        assert_eq!(schema(revert)["required"], json!(["snapshotId"]));
        assert!(validate(revert, &json!({})).unwrap_err().message.contains("needs the parameter \"snapshotId\""));
        assert!(validate(revert, &json!({"snapshotId": "x", "snapshotBefore": true})).is_ok());
        assert_eq!(validate(revert, &json!({"snapshotId": "x", "snapshotBefore": "yes"})).unwrap_err().status, 400);
        let vbd = crate::objects::collection("vbds").unwrap();
        assert_eq!(actions_of(vbd).map(|a| a.name).collect::<Vec<_>>(), ["connect", "disconnect"]);
        let snaps = crate::objects::collection("vm-snapshots").unwrap();
        assert_eq!(actions_of(snaps).map(|a| a.name).collect::<Vec<_>>(), ["clone"]);
        assert_eq!(opaque_ref("<value>OpaqueRef:ab-12</value>").as_deref(), Some("OpaqueRef:ab-12"));
        assert_eq!(opaque_ref("OpaqueRef:x"), Some("OpaqueRef:x".into()));
        assert_eq!(opaque_ref("<value></value>"), None);
        assert_eq!(opaque_ref("OpaqueRef:"), None);
    }
}
