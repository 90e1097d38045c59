//! The XenAPI call surface: one `call(method, params)` for JSON-RPC and XML-RPC alike.
//!
//! It checks the session and RBAC, then runs generic accessors (`get_all_records`, `get_record`, `get_by_uuid`,
//! `get_<field>`, `get_all_records_where`, setters and tag/map edits) or the operations the REST API needs
//! (`VDI.create/destroy`, `VM.snapshot/destroy/set_is_a_template`, power operations with XAPI's power-state rules,
//! `task.*`, `event.from/inject`), including `Async.*` variants that run under a task whose result is an
//! XML-RPC string, as real XAPI stores it. Wire encodings are not handled here.

use crate::db::{now_datetime, Db};
use crate::disk::{SparseDisk, Synthetic, GRAIN};
use crate::schema::{self, Fields};
use crate::sim::{Role, Session, Sim, XapiError};
use crate::value::{Value, NULL_REF};
use crate::where_expr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) type R<T> = Result<T, XapiError>;

/// Fields a generic `set_<field>` may change.
/// (`default_SR` is the pool's, read-write in `ocaml/idl/datamodel_pool.ml`.)
const SETTABLE: &[&str] = &[
    "name_label",
    "name_description",
    "tags",
    "other_config",
    "blocked_operations",
    "sm_config",
    "xenstore_data",
    "default_SR",
];

/// Map fields with `add_to_<field>` / `remove_from_<field>`.
const MAP_FIELDS: &[&str] = &[
    "other_config",
    "blocked_operations",
    "sm_config",
    "xenstore_data",
    "platform",
    "VCPUs_params",
    "HVM_boot_params",
];

pub(crate) fn count_mismatch(method: &str, expected: usize, got: usize) -> XapiError {
    XapiError::new("MESSAGE_PARAMETER_COUNT_MISMATCH", &[method, &expected.to_string(), &got.to_string()])
}

pub(crate) fn arg_str(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.db_string())
}

/// Whether `op` on `class` changes state (and so needs more than the read-only role).
fn is_write(class: &str, op: &str) -> bool {
    !(op.starts_with("get_")
        || class == "session"
        || class == "event"
        // Any subject may create and end its own tasks (`ocaml/idl/datamodel.ml`: `_R_READ_ONLY` on these).
        || (class == "task"
            && matches!(op, "create" | "cancel" | "destroy" | "set_status" | "set_progress" | "set_result" | "set_error_info"))
        || crate::infra::READS.contains(&format!("{class}.{op}").as_str()))
}

/// The fields of a session record (`session.get_<field>`).
const SESSION_FIELDS: &[&str] = &[
    "uuid",
    "this_host",
    "this_user",
    "last_active",
    "pool",
    "other_config",
    "is_local_superuser",
    "subject",
    "validation_time",
    "auth_user_sid",
    "auth_user_name",
    "rbac_permissions",
    "tasks",
    "parent",
    "originator",
    "client_certificate",
];

/// Calls implemented beyond the generic accessors of every class.
const OPERATIONS: &[&str] = &[
    "session.login_with_password",
    "session.logout",
    "session.get_all_subject_identifiers",
    "session.get_record",
    "event.from",
    "event.inject",
    "event.get_current_id",
    "task.create",
    "task.cancel",
    "task.destroy",
    "task.set_status",
    "task.set_progress",
    "task.set_result",
    "task.set_error_info",
    "message.create",
    "message.destroy",
    "VM.get_data_sources",
    "VM.record_data_source",
    "VM.forget_data_source_archives",
];

/// The writes to VMs and VDIs, which only a pool admin may make.
const VM_VDI_WRITES: &[&str] = &[
    "VDI.create",
    "VDI.destroy",
    "VM.snapshot",
    "VM.destroy",
    "VM.set_is_a_template",
    "VM.start",
    "VM.clean_shutdown",
    "VM.hard_shutdown",
    "VM.clean_reboot",
    "VM.hard_reboot",
    "VM.pause",
    "VM.unpause",
    "VM.suspend",
    "VM.resume",
    "VM.start_on",
    "VM.resume_on",
    "VM.clone",
    "VM.copy",
    "VM.provision",
    "VM.revert",
    "VM.pool_migrate",
    "VM.migrate_send",
    "host.migrate_receive",
    "VBD.create",
    "VBD.plug",
    "VBD.unplug",
    "VBD.destroy",
    "VIF.create",
    "VIF.plug",
    "VIF.unplug",
    "VIF.destroy",
    "VDI.copy",
    "VDI.pool_migrate",
    "VDI.resize",
    "VDI.resize_online",
];

/// Every method the simulator implements, by its synchronous wire name, as `system.listMethods` lists them
/// (XAPI lists every message of every class: `ocaml/idl/ocaml_backend/gen_server.ml`, the `system.listMethods`
/// arm of the generated dispatcher). Calls outside this list answer `MESSAGE_METHOD_UNKNOWN`.
pub fn methods() -> &'static [String] {
    static METHODS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        let mut out: Vec<String> = OPERATIONS
            .iter()
            .chain(VM_VDI_WRITES)
            .chain(crate::vm_settings::CALLS)
            .chain(crate::devices::VIF_SETTERS)
            .chain(crate::infra::CALLS)
            .map(|m| m.to_string())
            .collect();
        out.extend(SESSION_FIELDS.iter().map(|f| format!("session.get_{f}")));
        for class in schema::CLASSES {
            let fields = schema::defaults(class);
            for op in ["get_all", "get_all_records", "get_all_records_where", "get_record", "get_by_uuid"] {
                out.push(format!("{class}.{op}"));
            }
            if fields.contains_key("name_label") {
                out.push(format!("{class}.get_by_name_label"));
            }
            if fields.contains_key("tags") {
                out.push(format!("{class}.add_tags"));
                out.push(format!("{class}.remove_tags"));
            }
            for field in fields.keys() {
                out.push(format!("{class}.get_{field}"));
                if SETTABLE.contains(&field.as_str()) {
                    out.push(format!("{class}.set_{field}"));
                }
                if MAP_FIELDS.contains(&field.as_str()) {
                    out.push(format!("{class}.add_to_{field}"));
                    out.push(format!("{class}.remove_from_{field}"));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    })
}

/// Whether `name` (synchronous, e.g. `VM.get_record`) is implemented.
pub fn implemented(name: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| methods().iter().map(String::as_str).collect()).contains(name)
}

/// Dispatches one XenAPI call. `method` is the full name, e.g. `VM.get_all_records` or `Async.VM.snapshot`.
pub async fn call(sim: &Arc<Sim>, method: &str, params: Vec<Value>) -> R<Value> {
    let session = params.first().and_then(|s| sim.session(s).ok());
    let result = call_inner(sim, method, params).await;
    // The audit log holds the side-effecting calls of a session (`ocaml/xapi/rbac_audit.ml`: read-only calls to DB
    // fields are not logged).
    if let Some(session) = session {
        let name = method.strip_prefix("Async.").unwrap_or(method);
        if let Some((class, op)) = name.split_once('.') {
            if is_write(class, op) && class != "session" {
                crate::hostlogs::audit(sim, &session, name, &result);
            }
        }
    }
    result
}

async fn call_inner(sim: &Arc<Sim>, method: &str, params: Vec<Value>) -> R<Value> {
    sim.before_call(method, true).await?;
    // No session and any arguments: XAPI answers it before its session check (`api_server.ml`, `callback1`
    // and the generated dispatcher's `system.listMethods` arm).
    if method == "system.listMethods" {
        return Ok(Value::strs(methods().iter().cloned()));
    }
    if method == "session.login_with_password" {
        if !(2..=4).contains(&params.len()) {
            return Err(count_mismatch(method, 4, params.len()));
        }
        let originator = params.get(3).map(arg_str).unwrap_or_default();
        let r = sim.login(&arg_str(&params[0]), &arg_str(&params[1]), &originator)?;
        return Ok(Value::str(r));
    }
    let Some(session_ref) = params.first() else {
        return Err(count_mismatch(method, 1, 0));
    };
    let session = sim.session(session_ref)?;
    let (is_async, name) = match method.strip_prefix("Async.") {
        Some(rest) => (true, rest),
        None => (false, method),
    };
    let Some((class, op)) = name.split_once('.') else {
        return Err(XapiError::new("MESSAGE_METHOD_UNKNOWN", &[method]));
    };
    if !implemented(name) {
        return Err(XapiError::new("MESSAGE_METHOD_UNKNOWN", &[method]));
    }
    if session.role == Role::ReadOnly && is_write(class, op) {
        return Err(XapiError::new("RBAC_PERMISSION_DENIED", &[name, "No permission in user session"]));
    }
    let args = &params[1..];
    if is_async {
        if matches!(class, "session" | "event") {
            return Err(XapiError::new("MESSAGE_METHOD_UNKNOWN", &[method]));
        }
        // As on XAPI, the call answers with its task at once and the operation runs in the background; the task
        // goes from pending (progress 0) to its outcome (progress 1).
        let task = sim.write(|db| {
            let t = create_task(db, method, "");
            set_cancellable(db, &t);
            t
        });
        let (sim2, session, name, args, t) =
            (sim.clone(), session.clone(), name.to_string(), args.to_vec(), task.clone());
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let (class, op) = name.split_once('.').unwrap_or_default();
            let target = args.first().map(arg_str).unwrap_or_default();
            let cancelled = match sim2.op_duration(&name) {
                Some(d) => run_slowly(&sim2, &t, &target, op, d).await,
                None => cancel_requested(&sim2.db.lock(), &t),
            };
            let result = if cancelled {
                Err(XapiError::new("TASK_CANCELLED", &[&t]))
            } else {
                dispatch(&sim2, &session, &name, class, op, &args).await
            };
            sim2.write(|db| match result {
                Ok(v) => complete_task(db, &t, &v),
                Err(e) => fail_task(db, &t, &e),
            });
        });
        return Ok(Value::str(task));
    }
    dispatch(sim, &session, name, class, op, args).await
}

/// The time an operation takes before it acts, as XAPI's do: the object lists the task in its
/// `current_operations` (`Xapi_vm_lifecycle`/`Helpers` `with_*_operation`), the task's progress advances
/// (`TaskHelper.set_progress`), and a `task.cancel` is noticed at each step (`TaskHelper.exn_if_cancelling`), ending
/// the operation before it acts. Answers whether it was cancelled.
async fn run_slowly(sim: &Arc<Sim>, task: &str, target: &str, op: &str, duration: Duration) -> bool {
    let mark = |db: &mut Db, on: bool| {
        if db.get(target).is_some_and(|f| f.contains_key("current_operations")) {
            db.update(target, |f| {
                if let Some(Value::Map(ops)) = f.get_mut("current_operations") {
                    ops.retain(|(k, _)| k != task);
                    if on {
                        ops.push((task.to_string(), Value::str(op)));
                    }
                }
            });
        }
    };
    sim.write(|db| mark(db, true));
    let mut cancelled = false;
    for step in 1..=10u32 {
        tokio::time::sleep(duration / 10).await;
        cancelled = cancel_requested(&sim.db.lock(), task);
        if cancelled {
            break;
        }
        if step < 10 {
            sim.write(|db| db.set(task, "progress", Value::Float(f64::from(step) / 10.0)));
        }
    }
    sim.write(|db| mark(db, false));
    cancelled
}

/// Creates a pending task as XAPI's `TaskHelper.make` does (`ocaml/xapi/taskHelper.ml`): status pending,
/// progress 0, empty result and error_info, `type` `<none/>`, an empty backtrace, no allowed operations, not a
/// subtask (clients send no task header), resident on the master.
pub fn create_task(db: &mut Db, label: &str, description: &str) -> String {
    let master = db.all("pool").next().and_then(|(_, p)| p.get("master").cloned());
    db.create(
        "task",
        Fields::from([
            ("name_label".into(), Value::str(label)),
            ("name_description".into(), Value::str(description)),
            ("created".into(), Value::DateTime(now_datetime())),
            ("resident_on".into(), master.unwrap_or_else(Value::null_ref)),
            ("status".into(), Value::str("pending")),
            ("type".into(), Value::str("<none/>")),
            ("backtrace".into(), Value::str("()")),
        ]),
    )
}

/// Marks a task cancellable while an operation runs under it (`TaskHelper.set_cancellable`).
pub fn set_cancellable(db: &mut Db, task: &str) {
    db.set(task, "allowed_operations", Value::strs(["cancel"]));
}

/// Whether `task.cancel` was called on a task (XAPI records it in `current_operations`; the operation notices).
pub fn cancel_requested(db: &Db, task: &str) -> bool {
    requested(db, task, "cancel")
}

fn requested(db: &Db, task: &str, op: &str) -> bool {
    db.get(task)
        .and_then(|t| t.get("current_operations"))
        .and_then(Value::as_map)
        .is_some_and(|ops| ops.iter().any(|(_, v)| v.as_str() == Some(op)))
}

/// Ends a pending task: `progress` 1, `finished`, no allowed operations, the outcome, and the status last, in one
/// change (one `mod` event, so its snapshot already holds the result). A task whose `destroy` was asked while
/// pending is then destroyed, as XAPI's task GC does (`ocaml/xapi/db_gc_util.ml`, `timeout_tasks`).
fn end_task(db: &mut Db, task: &str, outcome: impl FnOnce(&mut Fields)) {
    if db.get(task).and_then(|t| t.get("status")).and_then(Value::as_str) != Some("pending") {
        return;
    }
    db.update(task, |t| {
        t.insert("progress".into(), Value::Float(1.0));
        t.insert("finished".into(), Value::DateTime(now_datetime()));
        t.insert("allowed_operations".into(), Value::empty_set());
        outcome(t);
    });
    if requested(db, task, "destroy") {
        db.destroy(task);
    }
}

/// Marks a task successful with `result` stored as XML-RPC text (void results are stored as "")
/// (`TaskHelper.complete`).
pub fn complete_task(db: &mut Db, task: &str, result: &Value) {
    let text = match result {
        Value::Str(s) if s.is_empty() => String::new(),
        v => v.to_xml_string(),
    };
    end_task(db, task, |t| {
        t.insert("result".into(), Value::str(text));
        t.insert("status".into(), Value::str("success"));
    });
}

/// Marks a task failed with `[code, params…]` in `error_info`, or cancelled when the error is
/// `TASK_CANCELLED` (`TaskHelper.failed`).
pub fn fail_task(db: &mut Db, task: &str, e: &XapiError) {
    let status = if e.code() == "TASK_CANCELLED" { "cancelled" } else { "failure" };
    end_task(db, task, |t| {
        t.insert("error_info".into(), Value::strs(e.0.iter().cloned()));
        t.insert("status".into(), Value::str(status));
    });
}

/// Destroys completed tasks whose destroy was asked, those finished more than `completed` ago and pending ones
/// created more than `pending` ago, as XAPI's GC does (65 minutes and 24 hours: `ocaml/xapi/xapi_globs.ml`).
pub fn expire_tasks(db: &mut Db, completed: Duration, pending: Duration) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let age = |t: &Fields, field: &str| {
        let s = t.get(field).and_then(Value::as_str).unwrap_or_default();
        crate::db::parse_datetime(s).map_or(0, |at| now - at)
    };
    let old: Vec<String> = db
        .all("task")
        .filter(|(r, t)| match t.get("status").and_then(Value::as_str) {
            Some("pending") => age(t, "created") > pending.as_secs() as i64,
            // Completed tasks whose destroy was asked while pending go at once.
            _ => requested(db, r, "destroy") || age(t, "finished") > completed.as_secs() as i64,
        })
        .map(|(r, _)| r.clone())
        .collect();
    for r in old {
        db.destroy(&r);
    }
}

pub(crate) fn expect_args(method: &str, args: &[Value], n: usize) -> R<()> {
    if args.len() != n {
        return Err(count_mismatch(method, n + 1, args.len() + 1));
    }
    Ok(())
}

/// The record of `reference` if it is an object of `class`, else `HANDLE_INVALID`.
pub fn obj<'a>(db: &'a Db, class: &str, reference: &str) -> R<&'a Fields> {
    db.get_of(class, reference).ok_or_else(|| XapiError::new("HANDLE_INVALID", &[class, reference]))
}

fn record_value(f: &Fields) -> Value {
    Value::Map(f.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub(crate) fn str_of(f: &Fields, k: &str) -> String {
    f.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

pub(crate) fn bool_of(f: &Fields, k: &str) -> bool {
    f.get(k).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn int_of(f: &Fields, k: &str) -> i64 {
    f.get(k).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn refs_of(f: &Fields, k: &str) -> Vec<String> {
    f.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

async fn dispatch(sim: &Arc<Sim>, session: &Session, name: &str, class: &str, op: &str, args: &[Value]) -> R<Value> {
    match (class, op) {
        ("session", _) => session_call(sim, session, name, op, args),
        ("event", "from") => {
            expect_args(name, args, 3)?;
            event_from(sim, args).await
        }
        ("event", "inject") => {
            expect_args(name, args, 2)?;
            let reference = arg_str(&args[1]);
            let id = sim.write(|db| {
                if db.get(&reference).is_none() {
                    return Err(XapiError::new("HANDLE_INVALID", &[&arg_str(&args[0]), &reference]));
                }
                Ok(db.inject(&reference))
            })?;
            Ok(Value::str(token(id)))
        }
        ("event", "get_current_id") => Ok(Value::str(token(sim.db.lock().last_event_id()))),
        ("event", _) => Err(XapiError::new("MESSAGE_METHOD_UNKNOWN", &[name])),
        ("task", "create") => {
            expect_args(name, args, 2)?;
            Ok(Value::str(sim.write(|db| create_task(db, &arg_str(&args[0]), &arg_str(&args[1])))))
        }
        ("task", "cancel") => {
            // XAPI records the request in `current_operations` and leaves the status alone: the operation running
            // under the task notices and ends it as cancelled (`ocaml/xapi/xapi_task.ml`, `cancel`); a task no
            // operation runs under stays pending.
            expect_args(name, args, 1)?;
            let t = arg_str(&args[0]);
            sim.write(|db| {
                let status = str_of(obj(db, "task", &t)?, "status");
                if status != "pending" {
                    return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["task is not pending"]));
                }
                db.set(&t, "current_operations", Value::map([(crate::db::new_ref(), "cancel")]));
                Ok(Value::str(""))
            })
        }
        ("task", "set_status" | "set_progress" | "set_result" | "set_error_info") => {
            expect_args(name, args, 2)?;
            let t = arg_str(&args[0]);
            let field = &op["set_".len()..];
            let value = match field {
                "status" => {
                    let s = arg_str(&args[1]);
                    if !matches!(s.as_str(), "pending" | "success" | "failure" | "cancelling" | "cancelled") {
                        return Err(XapiError::new("ENUM_INVALID", &["task_status_type", &s]));
                    }
                    Value::str(s)
                }
                "progress" => {
                    Value::Float(args[1].as_f64().ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["value"]))?)
                }
                "result" => Value::str(arg_str(&args[1])),
                _ => Value::Array(args[1].as_array().unwrap_or(&[]).iter().map(|v| Value::str(arg_str(v))).collect()),
            };
            sim.write(|db| {
                obj(db, "task", &t)?;
                db.set(&t, field, value);
                Ok(Value::str(""))
            })
        }
        ("task", "destroy") => {
            // A completed task goes at once; a pending one is marked and goes when it completes
            // (`ocaml/xapi/xapi_task.ml`, `destroy`).
            expect_args(name, args, 1)?;
            let t = arg_str(&args[0]);
            sim.write(|db| {
                let status = str_of(obj(db, "task", &t)?, "status");
                if status == "pending" {
                    db.update(&t, |f| {
                        if let Some(Value::Map(ops)) = f.get_mut("current_operations") {
                            ops.push((crate::db::new_ref(), Value::str("destroy")));
                        }
                    });
                } else {
                    db.destroy(&t);
                }
                Ok(Value::str(""))
            })
        }
        ("VM", "get_data_sources" | "record_data_source" | "forget_data_source_archives") => {
            data_source_call(sim, name, op, args)
        }
        ("VDI", "create") => {
            expect_args(name, args, 1)?;
            sim.write(|db| vdi_create(db, &args[0]))
        }
        ("VDI", "destroy") => {
            expect_args(name, args, 1)?;
            sim.write(|db| vdi_destroy(db, &arg_str(&args[0])))
        }
        ("VM", "snapshot") => {
            if !(2..=3).contains(&args.len()) {
                return Err(count_mismatch(name, 4, args.len() + 1));
            }
            let ignore: Vec<String> =
                args.get(2).and_then(Value::as_array).unwrap_or(&[]).iter().map(arg_str).collect();
            sim.write(|db| vm_snapshot(db, &arg_str(&args[0]), &arg_str(&args[1]), &ignore))
        }
        ("VM", "destroy") => {
            expect_args(name, args, 1)?;
            sim.write(|db| vm_destroy(db, &arg_str(&args[0])))
        }
        ("VM", "set_is_a_template") => {
            expect_args(name, args, 2)?;
            let vm = arg_str(&args[0]);
            let v = args[1].as_bool().ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["value"]))?;
            sim.write(|db| {
                let rec = obj(db, "VM", &vm)?;
                if v && str_of(rec, "power_state") != "Halted" {
                    return Err(bad_power_state(&vm, "halted", &str_of(rec, "power_state")));
                }
                db.set(&vm, "is_a_template", Value::Bool(v));
                Ok(Value::str(""))
            })
        }
        (
            "VM",
            "start" | "clean_shutdown" | "hard_shutdown" | "clean_reboot" | "hard_reboot" | "pause" | "unpause"
            | "suspend" | "resume",
        ) => {
            let n = if matches!(op, "start" | "resume") { 3 } else { 1 };
            expect_args(name, args, n)?;
            let paused = args.get(1).and_then(Value::as_bool).unwrap_or(false);
            sim.write(|db| vm_power(db, &arg_str(&args[0]), op, paused))
        }
        ("VM", "start_on" | "resume_on") => {
            expect_args(name, args, 4)?;
            let paused = args[2].as_bool().unwrap_or(false);
            let (vm, host) = (arg_str(&args[0]), arg_str(&args[1]));
            obj(&sim.db.lock(), "host", &host)?;
            sim.write(|db| vm_power_on(db, &vm, op.trim_end_matches("_on"), paused, Some(&host)))
        }
        ("VM", "clone" | "copy") => {
            let copy = op == "copy";
            expect_args(name, args, if copy { 3 } else { 2 })?;
            let sr = args.get(2).map(arg_str).unwrap_or_default();
            sim.write(|db| crate::vm_ops::vm_clone(db, &arg_str(&args[0]), &arg_str(&args[1]), copy, &sr))
        }
        ("VM", "provision") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::vm_ops::vm_provision(db, &arg_str(&args[0])))
        }
        ("VM", "revert") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::vm_ops::vm_revert(db, &arg_str(&args[0])))
        }
        ("VM", "pool_migrate") => {
            expect_args(name, args, 3)?;
            // `options:network` (`xapi_vm_migrate.ml`, `pool_migrate`): the migration goes over that network, so
            // the destination needs an address on it (`assert_valid_ip_configuration_on_network_for_host`).
            if let Some(network) = args[2].get("network").and_then(Value::as_str) {
                let db = sim.db.lock();
                crate::vm_ops::assert_ip_on_network(&db, &arg_str(&args[1]), network)?;
            }
            sim.write(|db| crate::vm_ops::vm_pool_migrate(db, &arg_str(&args[0]), &arg_str(&args[1])))
        }
        ("VM", "migrate_send") => {
            expect_args(name, args, 7)?;
            sim.write(|db| crate::vm_ops::vm_migrate_send(db, &arg_str(&args[0]), &args[1], &args[3]))
        }
        ("host", "migrate_receive") => {
            expect_args(name, args, 3)?;
            let db = sim.db.lock();
            crate::vm_ops::host_migrate_receive(&db, &arg_str(&args[0]), &arg_str(&args[1]), &session.reference)
        }
        ("VM", _) if crate::vm_settings::CALLS.contains(&name) => {
            expect_args(name, args, 1 + crate::vm_settings::arity(op))?;
            sim.write(|db| crate::vm_settings::call(db, op, &arg_str(&args[0]), &args[1..]))
        }
        ("VIF", _) if crate::devices::VIF_SETTERS.contains(&name) => {
            expect_args(name, args, 2)?;
            sim.write(|db| crate::devices::vif_set(db, op, &arg_str(&args[0]), &args[1]))
        }
        ("VDI", "copy") => {
            expect_args(name, args, 4)?;
            let (vdi, sr, into) = (arg_str(&args[0]), arg_str(&args[1]), arg_str(&args[3]));
            sim.write(|db| crate::vdi_ops::vdi_copy(db, &vdi, &sr, &into))
        }
        ("VDI", "resize" | "resize_online") => {
            expect_args(name, args, 2)?;
            let size = args[1].as_i64().or_else(|| arg_str(&args[1]).parse().ok());
            let size = size.ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["size"]))?;
            sim.write(|db| crate::vdi_ops::vdi_resize(db, &arg_str(&args[0]), size, op == "resize_online"))
        }
        ("VDI", "pool_migrate") => {
            expect_args(name, args, 3)?;
            sim.write(|db| crate::vdi_ops::vdi_pool_migrate(db, &arg_str(&args[0]), &arg_str(&args[1])))
        }
        ("VBD", "create") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::devices::vbd_create(db, &args[0]))
        }
        ("VIF", "create") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::devices::vif_create(db, &args[0]))
        }
        ("VBD" | "VIF", "plug" | "unplug") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::devices::plug(db, class, &arg_str(&args[0]), op == "plug"))
        }
        ("VBD", "destroy") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::devices::vbd_destroy(db, &arg_str(&args[0])))
        }
        ("VIF", "destroy") => {
            expect_args(name, args, 1)?;
            sim.write(|db| crate::devices::vif_destroy(db, &arg_str(&args[0])))
        }
        _ if crate::infra::CALLS.contains(&name) => crate::infra::call(sim, class, op, args).await,
        ("message", "create") => {
            expect_args(name, args, 5)?;
            let f = Fields::from([
                ("name".into(), Value::str(arg_str(&args[0]))),
                ("priority".into(), Value::Int(args[1].as_i64().unwrap_or(5))),
                ("cls".into(), Value::str(arg_str(&args[2]))),
                ("obj_uuid".into(), Value::str(arg_str(&args[3]))),
                ("body".into(), Value::str(arg_str(&args[4]))),
                ("timestamp".into(), Value::DateTime(now_datetime())),
            ]);
            Ok(Value::str(sim.write(|db| db.create("message", f))))
        }
        ("message", "destroy") => {
            expect_args(name, args, 1)?;
            let m = arg_str(&args[0]);
            sim.write(|db| {
                obj(db, "message", &m)?;
                db.destroy(&m);
                Ok(Value::str(""))
            })
        }
        _ => generic(sim, name, class, op, args),
    }
}

fn token(id: u64) -> String {
    format!("{id:020},{:020}", 0)
}

fn session_call(sim: &Sim, session: &Session, name: &str, op: &str, args: &[Value]) -> R<Value> {
    if op == "logout" {
        expect_args(name, args, 0)?;
        sim.logout(&session.reference);
        return Ok(Value::str(""));
    }
    if op == "get_all_subject_identifiers" {
        return Ok(Value::empty_set());
    }
    // Every other session call is a getter on a session ref (`self`), usually the caller's own.
    expect_args(name, args, 1)?;
    let target_ref = arg_str(&args[0]);
    let target = sim
        .sessions
        .lock()
        .get(&target_ref)
        .cloned()
        .ok_or_else(|| XapiError::new("HANDLE_INVALID", &["session", &target_ref]))?;
    let _ = session;
    let db = sim.db.lock();
    let master = db.all("pool").next().map(|(_, p)| str_of(p, "master")).unwrap_or_default();
    let pool = db.all("pool").next().map(|(r, _)| r.clone()).unwrap_or_default();
    let perms = Value::strs(permissions(target.role));
    let record = Value::Map(vec![
        ("uuid".into(), Value::str(target.uuid.clone())),
        ("this_host".into(), Value::str(master.clone())),
        ("this_user".into(), Value::null_ref()),
        ("last_active".into(), Value::DateTime(now_datetime())),
        ("pool".into(), Value::Bool(false)),
        ("other_config".into(), Value::empty_map()),
        ("is_local_superuser".into(), Value::Bool(target.local_superuser)),
        ("subject".into(), Value::str(target.subject.clone())),
        ("validation_time".into(), Value::DateTime(now_datetime())),
        ("auth_user_sid".into(), Value::str("")),
        ("auth_user_name".into(), Value::str(target.user.clone())),
        ("rbac_permissions".into(), perms.clone()),
        ("tasks".into(), Value::empty_set()),
        ("parent".into(), Value::null_ref()),
        ("originator".into(), Value::str(target.originator.clone())),
        ("client_certificate".into(), Value::Bool(false)),
    ]);
    let _ = pool;
    match op {
        "get_record" => Ok(record),
        "get_this_host" => Ok(Value::str(master)),
        _ => op
            .strip_prefix("get_")
            .and_then(|f| record.get(f).cloned())
            .ok_or_else(|| XapiError::new("MESSAGE_METHOD_UNKNOWN", &[name])),
    }
}

/// The RBAC permission names a role holds (a representative list, not XAPI's full catalogue).
pub fn permissions(role: Role) -> Vec<String> {
    let mut out = Vec::new();
    for class in schema::CLASSES {
        for op in ["get_all", "get_all_records", "get_record", "get_by_uuid", "get_all_records_where"] {
            out.push(format!("{class}.{op}"));
        }
    }
    out.push("event.from".into());
    if role == Role::PoolAdmin {
        for m in VM_VDI_WRITES
            .iter()
            .chain(crate::vm_settings::CALLS)
            .chain(crate::devices::VIF_SETTERS)
            .chain(crate::infra::CALLS)
            .chain(&["http/get_export", "http/put_import", "http/get_export_raw_vdi", "http/put_import_raw_vdi"])
        {
            out.push((*m).to_string());
        }
    }
    out
}

/// `event.from` as XAPI computes it (`ocaml/xapi/xapi_event.ml`, `from_inner` and `collect_events`): one event
/// per object changed since the token, `add` if it was created since (with its current record), `mod` if only
/// modified (current record), `del` if it existed before and is gone (no snapshot); an object created and
/// destroyed in between yields nothing. Events carry `id` (the generation, a string), `timestamp` `"0.0"`,
/// `class`, `operation`, `ref` and `snapshot`. It blocks until an event matches or the timeout passes, and
/// `valid_ref_counts` counts every table (Int32s, `<i4>` on XML-RPC).
async fn event_from(sim: &Arc<Sim>, args: &[Value]) -> R<Value> {
    let classes: Vec<String> = args[0]
        .as_array()
        .ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["classes"]))?
        .iter()
        .map(|c| arg_str(c).to_ascii_lowercase())
        .collect();
    let tok = arg_str(&args[1]);
    let since = if tok.is_empty() {
        0
    } else {
        let first = tok.split(',').next().unwrap_or_default();
        first.parse::<u64>().map_err(|_| XapiError::new("EVENT_FROM_TOKEN_PARSE_FAILURE", &[&tok]))?
    };
    let timeout = args[2].as_f64().unwrap_or(0.0).clamp(0.0, 3600.0);
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let matches = |class: &str, reference: &str| {
        classes.iter().any(|c| c == "*" || c == class || *c == format!("{class}/{}", reference.to_ascii_lowercase()))
    };
    let event = |id: u64, class: &str, op: &str, reference: &str, snapshot: Option<&Fields>| {
        let mut m = vec![
            ("id".to_string(), Value::str(id.to_string())),
            ("timestamp".to_string(), Value::str("0.0")),
            ("class".to_string(), Value::str(class)),
            ("operation".to_string(), Value::str(op)),
            ("ref".to_string(), Value::str(reference)),
        ];
        if let Some(f) = snapshot {
            m.push(("snapshot".into(), record_value(f)));
        }
        Value::Map(m)
    };
    loop {
        let notified = sim.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let db = sim.db.lock();
            let mut events = Vec::new();
            if since == 0 {
                for class in schema::CLASSES {
                    let lc = class.to_ascii_lowercase();
                    for (r, f) in db.all(class) {
                        if matches(&lc, r) {
                            events.push(event(db.last_event_id(), &lc, "add", r, Some(f)));
                        }
                    }
                }
            } else {
                let log = db.events_since(since).ok_or_else(|| XapiError::new("EVENTS_LOST", &[]))?;
                // Per object: was it created in the window, was it deleted, and its last change.
                let mut seen: indexmap::IndexMap<&str, (bool, bool, u64, &str)> = indexmap::IndexMap::new();
                for e in log.iter().filter(|e| matches(&e.class, &e.reference)) {
                    let entry = seen.entry(e.reference.as_str()).or_insert((false, false, 0, e.class.as_str()));
                    entry.0 |= e.operation == "add";
                    entry.1 |= e.operation == "del";
                    entry.2 = e.id;
                }
                seen.sort_by(|_, a, _, b| a.2.cmp(&b.2));
                for (r, (created, deleted, id, class)) in seen {
                    match (created, db.get(r)) {
                        (true, Some(f)) => events.push(event(id, class, "add", r, Some(f))),
                        (false, Some(f)) => events.push(event(id, class, "mod", r, Some(f))),
                        (false, None) if deleted => events.push(event(id, class, "del", r, None)),
                        _ => {}
                    }
                }
            }
            if !events.is_empty() || since == 0 || Instant::now() >= deadline {
                let counts = schema::CLASSES
                    .iter()
                    .map(|c| (c.to_ascii_lowercase(), Value::Int32(db.count(c) as i32)))
                    .collect();
                return Ok(Value::Map(vec![
                    ("events".into(), Value::Array(events)),
                    ("valid_ref_counts".into(), Value::Map(counts)),
                    ("token".into(), Value::str(token(db.last_event_id()))),
                ]));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, notified).await;
    }
}

fn generic(sim: &Sim, name: &str, class: &str, op: &str, args: &[Value]) -> R<Value> {
    let unknown = || XapiError::new("MESSAGE_METHOD_UNKNOWN", &[name]);
    match op {
        "get_all" => {
            expect_args(name, args, 0)?;
            let db = sim.db.lock();
            Ok(Value::Array(db.all(class).map(|(r, _)| Value::str(r.clone())).collect()))
        }
        "get_all_records" => {
            expect_args(name, args, 0)?;
            let db = sim.db.lock();
            Ok(Value::Map(db.all(class).map(|(r, f)| (r.clone(), record_value(f))).collect()))
        }
        "get_all_records_where" => {
            expect_args(name, args, 1)?;
            let expr = where_expr::parse(&arg_str(&args[0]))
                .map_err(|e| XapiError::new("INTERNAL_ERROR", &[&format!("Db_filter.Expression_error: {e}")]))?;
            let db = sim.db.lock();
            Ok(Value::Map(
                db.all(class)
                    .filter(|(_, f)| where_expr::eval(&expr, f))
                    .map(|(r, f)| (r.clone(), record_value(f)))
                    .collect(),
            ))
        }
        "get_record" => {
            expect_args(name, args, 1)?;
            let db = sim.db.lock();
            Ok(record_value(obj(&db, class, &arg_str(&args[0]))?))
        }
        "get_by_uuid" => {
            expect_args(name, args, 1)?;
            let uuid = arg_str(&args[0]);
            let db = sim.db.lock();
            match db.ref_by_uuid(&uuid) {
                Some(r) if db.class_of(r) == Some(schema::canonical_class(class).unwrap_or("")) => {
                    Ok(Value::str(r.clone()))
                }
                _ => Err(XapiError::new("UUID_INVALID", &[class, &uuid])),
            }
        }
        "get_by_name_label" => {
            expect_args(name, args, 1)?;
            let label = arg_str(&args[0]);
            let db = sim.db.lock();
            Ok(Value::Array(
                db.all(class)
                    .filter(|(_, f)| str_of(f, "name_label") == label)
                    .map(|(r, _)| Value::str(r.clone()))
                    .collect(),
            ))
        }
        "add_tags" | "remove_tags" => {
            expect_args(name, args, 2)?;
            let (r, tag) = (arg_str(&args[0]), arg_str(&args[1]));
            sim.write(|db| {
                obj(db, class, &r)?;
                if op == "add_tags" {
                    db.set_add(&r, "tags", &tag);
                } else {
                    db.set_remove(&r, "tags", &tag);
                }
                Ok(Value::str(""))
            })
        }
        _ => {
            if let Some(field) = op.strip_prefix("get_") {
                expect_args(name, args, 1)?;
                let db = sim.db.lock();
                if !schema::defaults(class).contains_key(field) {
                    return Err(unknown());
                }
                let rec = obj(&db, class, &arg_str(&args[0]))?;
                return rec.get(field).cloned().ok_or_else(unknown);
            }
            if let Some(field) = op.strip_prefix("set_") {
                if !SETTABLE.contains(&field) || !schema::defaults(class).contains_key(field) {
                    return Err(unknown());
                }
                expect_args(name, args, 2)?;
                let r = arg_str(&args[0]);
                let value = coerce_like(&schema::defaults(class)[field], &args[1])?;
                return sim.write(|db| {
                    obj(db, class, &r)?;
                    db.set(&r, field, value);
                    Ok(Value::str(""))
                });
            }
            if let Some(field) = op.strip_prefix("add_to_") {
                if !MAP_FIELDS.contains(&field) || !schema::defaults(class).contains_key(field) {
                    return Err(unknown());
                }
                expect_args(name, args, 3)?;
                let (r, k, v) = (arg_str(&args[0]), arg_str(&args[1]), arg_str(&args[2]));
                return sim.write(|db| {
                    let rec = obj(db, class, &r)?;
                    if rec.get(field).and_then(|m| m.get(&k)).is_some() {
                        return Err(XapiError::new("MAP_DUPLICATE_KEY", &[class, field, &r, &k]));
                    }
                    db.update(&r, |f| {
                        if let Some(Value::Map(m)) = f.get_mut(field) {
                            m.push((k.clone(), Value::str(v.clone())));
                        }
                    });
                    Ok(Value::str(""))
                });
            }
            if let Some(field) = op.strip_prefix("remove_from_") {
                if !MAP_FIELDS.contains(&field) || !schema::defaults(class).contains_key(field) {
                    return Err(unknown());
                }
                expect_args(name, args, 2)?;
                let (r, k) = (arg_str(&args[0]), arg_str(&args[1]));
                return sim.write(|db| {
                    obj(db, class, &r)?;
                    db.update(&r, |f| {
                        if let Some(Value::Map(m)) = f.get_mut(field) {
                            m.retain(|(key, _)| key != &k);
                        }
                    });
                    Ok(Value::str(""))
                });
            }
            Err(unknown())
        }
    }
}

/// A VM's RRD data sources (`ocaml/xapi/xapi_vm.ml`, `get_data_sources`, `record_data_source`,
/// `forget_data_source_archives`, over xcp-rrdd's `query_possible_vm_dss`, `add_vm_ds`, `forget_vm_ds`): recording
/// needs the VM's RRD (a running VM) and a source it offers, else xcp-rrdd's `Datasource_missing` (an
/// `INTERNAL_ERROR` here); forgetting drops an optional source's recording and never fails.
fn data_source_call(sim: &Sim, name: &str, op: &str, args: &[Value]) -> R<Value> {
    expect_args(name, args, if op == "get_data_sources" { 1 } else { 2 })?;
    let vm = arg_str(&args[0]);
    let db = sim.db.lock();
    let rec = obj(&db, "VM", &vm)?.clone();
    let uuid = str_of(&rec, "uuid");
    let mut recorded = sim.data_sources.lock();
    let mine = recorded.entry(uuid.clone()).or_default();
    let sources = crate::rrd::vm_data_sources(&db, mine, &rec);
    match op {
        "get_data_sources" => Ok(Value::Array(sources)),
        "record_data_source" => {
            let ds = arg_str(&args[1]);
            let offered = sources.iter().any(|s| s.get("name_label").and_then(Value::as_str) == Some(ds.as_str()));
            if sources.is_empty() {
                return Err(XapiError::new(
                    "INTERNAL_ERROR",
                    &[&format!("Rrdd_error(Datasource_missing(\"VM: {uuid}\"))")],
                ));
            }
            if !offered {
                return Err(XapiError::new("INTERNAL_ERROR", &[&format!("Rrdd_error(Datasource_missing(\"{ds}\"))")]));
            }
            if crate::rrd::OPTIONAL_VM_SOURCES.iter().any(|(n, _, _)| *n == ds) {
                mine.insert(ds);
            }
            Ok(Value::str(""))
        }
        _ => {
            mine.remove(&arg_str(&args[1]));
            Ok(Value::str(""))
        }
    }
}

/// Converts an argument to the shape of a field's default (string, set of strings, map of strings).
fn coerce_like(template: &Value, v: &Value) -> R<Value> {
    let bad = || XapiError::new("FIELD_TYPE_ERROR", &["value"]);
    Ok(match template {
        Value::Str(_) => Value::str(v.as_str().ok_or_else(bad)?),
        Value::Array(_) => Value::Array(v.as_array().ok_or_else(bad)?.iter().map(|x| Value::str(arg_str(x))).collect()),
        Value::Map(_) => {
            Value::Map(v.as_map().ok_or_else(bad)?.iter().map(|(k, x)| (k.clone(), Value::str(arg_str(x)))).collect())
        }
        _ => v.clone(),
    })
}

pub(crate) fn bad_power_state(vm: &str, expected: &str, actual: &str) -> XapiError {
    XapiError::new("VM_BAD_POWER_STATE", &[vm, expected, &actual.to_ascii_lowercase()])
}

pub(crate) fn check_blocked(vm: &str, rec: &Fields, op: &str) -> R<()> {
    if let Some(reason) = rec.get("blocked_operations").and_then(|b| b.get(op)) {
        return Err(XapiError::new("OPERATION_BLOCKED", &[vm, &arg_str(reason)]));
    }
    Ok(())
}

/// `VDI.create`: validates the record as XAPI does and allocates an empty sparse disk.
pub fn vdi_create(db: &mut Db, record: &Value) -> R<Value> {
    let Value::Map(m) = record else {
        return Err(XapiError::new("FIELD_TYPE_ERROR", &["args"]));
    };
    let get = |k: &str| m.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    for required in ["SR", "virtual_size", "type", "sharable", "read_only", "other_config"] {
        if get(required).is_none() {
            return Err(XapiError::new("FIELD_TYPE_ERROR", &[required]));
        }
    }
    let sr = get("SR").map(arg_str).unwrap_or_default();
    let size = get("virtual_size")
        .and_then(Value::as_i64)
        .ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["virtual_size"]))?;
    let sr_rec = obj(db, "SR", &sr)?;
    if str_of(sr_rec, "content_type") == "iso" || bool_of(&sr_rec.clone(), "is_tools_sr") {
        return Err(XapiError::new("SR_OPERATION_NOT_SUPPORTED", &[&sr]));
    }
    if size <= 0 {
        return Err(XapiError::new("VDI_INVALID_SIZE", &[&size.to_string()]));
    }
    let thick = str_of(sr_rec, "type") == "lvm";
    let free = int_of(sr_rec, "physical_size") - int_of(sr_rec, "physical_utilisation");
    if (thick && size > free) || size > int_of(sr_rec, "physical_size") {
        return Err(XapiError::new("SR_BACKEND_FAILURE_44", &["", "There is insufficient space", ""]));
    }
    let mut f = Fields::new();
    for (k, v) in m {
        if matches!(
            k.as_str(),
            "name_label"
                | "name_description"
                | "type"
                | "sharable"
                | "read_only"
                | "other_config"
                | "xenstore_data"
                | "sm_config"
                | "tags"
        ) {
            f.insert(k.clone(), coerce_like(&schema::defaults("VDI")[k.as_str()], v).unwrap_or_else(|_| v.clone()));
        }
    }
    for (k, v) in m {
        if matches!(k.as_str(), "sharable" | "read_only") {
            f.insert(k.clone(), Value::Bool(v.as_bool().unwrap_or(false)));
        }
    }
    Ok(Value::str(insert_vdi(db, &sr, f, size, thick)))
}

/// Adds a VDI record of `size` bytes with an empty disk to `sr`, without any check (scenarios use it for ISO SRs).
pub fn insert_vdi(db: &mut Db, sr: &str, mut f: Fields, size: i64, thick: bool) -> String {
    let uuid = uuid::Uuid::new_v4().to_string();
    f.insert("uuid".into(), Value::str(uuid.clone()));
    f.insert("location".into(), Value::str(uuid));
    f.insert("SR".into(), Value::str(sr));
    f.insert("virtual_size".into(), Value::Int(size));
    f.insert("physical_utilisation".into(), Value::Int(if thick { size } else { 0 }));
    f.insert("managed".into(), Value::Bool(true));
    f.insert(
        "allowed_operations".into(),
        Value::strs([
            "clone",
            "snapshot",
            "resize",
            "destroy",
            "copy",
            "mirror",
            "update",
            "forget",
            "generate_config",
        ]),
    );
    let r = db.create("VDI", f);
    db.disks.insert(r.clone(), SparseDisk::new(size as u64));
    sr_account(db, sr, size, thick);
    db.set_push(sr, "VDIs", &r);
    r
}

pub(crate) fn sr_account(db: &mut Db, sr: &str, delta: i64, thick: bool) {
    db.update(sr, |s| {
        let va = s.get("virtual_allocation").and_then(Value::as_i64).unwrap_or(0) + delta;
        s.insert("virtual_allocation".into(), Value::Int(va.max(0)));
        if thick {
            let pu = s.get("physical_utilisation").and_then(Value::as_i64).unwrap_or(0) + delta;
            s.insert("physical_utilisation".into(), Value::Int(pu.max(0)));
        }
    });
}

/// `VDI.destroy`: refuses an attached VDI, removes its unplugged VBDs and its content.
pub fn vdi_destroy(db: &mut Db, vdi: &str) -> R<Value> {
    let rec = obj(db, "VDI", vdi)?.clone();
    let vbds = refs_of(&rec, "VBDs");
    if vbds.iter().any(|v| db.get(v).is_some_and(|b| bool_of(b, "currently_attached"))) {
        return Err(XapiError::new("VDI_IN_USE", &[vdi, "destroy"]));
    }
    let sr = str_of(&rec, "SR");
    if db.get(&sr).is_some_and(|s| str_of(s, "content_type") == "iso") {
        return Err(XapiError::new("SR_OPERATION_NOT_SUPPORTED", &[&sr]));
    }
    for vbd in vbds {
        let vm = db.field_str(&vbd, "VM");
        db.set_remove(&vm, "VBDs", &vbd);
        db.destroy(&vbd);
    }
    let thick = db.get(&sr).is_some_and(|s| str_of(s, "type") == "lvm");
    sr_account(db, &sr, -int_of(&rec, "virtual_size"), thick);
    db.set_remove(&sr, "VDIs", vdi);
    db.set_remove(&str_of(&rec, "snapshot_of"), "snapshots", vdi);
    db.destroy(vdi);
    Ok(Value::str(""))
}

pub(crate) fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Power operations with XAPI's allowed source states.
pub fn vm_power(db: &mut Db, vm: &str, op: &str, start_paused: bool) -> R<Value> {
    vm_power_on(db, vm, op, start_paused, None)
}

/// [`vm_power`], with `on`: the host a start or resume must use (`VM.start_on`, `VM.resume_on`; XAPI checks it as
/// `Xapi_vm_helpers.assert_can_boot_here`: enabled, live, seeing the VM's storage).
pub fn vm_power_on(db: &mut Db, vm: &str, op: &str, start_paused: bool, on: Option<&str>) -> R<Value> {
    let rec = obj(db, "VM", vm)?.clone();
    if bool_of(&rec, "is_control_domain") {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["Operations on the control domain are not allowed"]));
    }
    if bool_of(&rec, "is_a_template") || bool_of(&rec, "is_a_snapshot") {
        return Err(XapiError::new("VM_IS_TEMPLATE", &[vm, op]));
    }
    check_blocked(vm, &rec, op)?;
    let state = str_of(&rec, "power_state");
    let allowed: &[&str] = match op {
        "start" => &["Halted"],
        "clean_shutdown" | "clean_reboot" | "pause" | "suspend" => &["Running"],
        "hard_shutdown" => &["Running", "Paused", "Suspended"],
        "hard_reboot" => &["Running", "Paused"],
        "unpause" => &["Paused"],
        "resume" => &["Suspended"],
        _ => &[],
    };
    if !allowed.contains(&state.as_str()) {
        return Err(bad_power_state(vm, &lower(allowed.first().copied().unwrap_or("halted")), &state));
    }
    let metrics = str_of(&rec, "metrics");
    match op {
        "start" | "resume" => {
            // The affinity host when it can run the VM, else another that can (the master first), as XAPI's
            // `Xapi_vm_helpers.choose_host_for_vm` does.
            let host = {
                let aff = str_of(&rec, "affinity");
                let master = db.all("pool").next().map(|(_, p)| str_of(p, "master")).unwrap_or_default();
                let preferred = if db.get_of("host", &aff).is_some() { aff } else { master };
                match on {
                    Some(h) => {
                        crate::infra::assert_can_boot_here(db, vm, h)?;
                        h.to_string()
                    }
                    None => crate::infra::choose_host(db, vm, Some(&preferred), None)?,
                }
            };
            if op == "resume" {
                let sv = str_of(&rec, "suspend_VDI");
                if db.get(&sv).is_some() {
                    vdi_destroy(db, &sv)?;
                }
                db.set(vm, "suspend_VDI", Value::null_ref());
            }
            let domid = db.next_domid();
            db.update(vm, |f| {
                f.insert("power_state".into(), Value::str(if start_paused { "Paused" } else { "Running" }));
                f.insert("resident_on".into(), Value::str(host.clone()));
                f.insert("domid".into(), Value::Int(domid));
            });
            db.set_push(&host, "resident_VMs", vm);
            attach_devices(db, &rec, true);
            db.set(&metrics, "start_time", Value::DateTime(now_datetime()));
        }
        "clean_shutdown" | "hard_shutdown" | "suspend" => {
            let host = str_of(&rec, "resident_on");
            db.set_remove(&host, "resident_VMs", vm);
            attach_devices(db, &rec, false);
            if state == "Suspended" {
                let sv = str_of(&rec, "suspend_VDI");
                if db.get(&sv).is_some() {
                    vdi_destroy(db, &sv)?;
                }
            }
            let mut suspend_vdi = Value::null_ref();
            if op == "suspend" {
                let sr = db.all("pool").next().map(|(_, p)| str_of(p, "default_SR")).unwrap_or_default();
                let size = int_of(&rec, "memory_static_max").max(GRAIN as i64);
                let r = vdi_create(
                    db,
                    &Value::Map(vec![
                        ("name_label".into(), Value::str("Suspend image")),
                        ("SR".into(), Value::str(sr)),
                        ("virtual_size".into(), Value::Int(size)),
                        ("type".into(), Value::str("suspend")),
                        ("sharable".into(), Value::Bool(false)),
                        ("read_only".into(), Value::Bool(false)),
                        ("other_config".into(), Value::empty_map()),
                    ]),
                )?;
                let r = arg_str(&r);
                let seed = db.last_event_id();
                if let Some(d) = db.disks.get_mut(&r) {
                    let regions = vec![Synthetic { start: 0, end: 4 << 20, seed, zero_pct: 20, random_pct: 40 }];
                    *d = SparseDisk::with_synthetic(d.size(), regions);
                }
                suspend_vdi = Value::str(r);
            }
            db.update(vm, |f| {
                f.insert("power_state".into(), Value::str(if op == "suspend" { "Suspended" } else { "Halted" }));
                f.insert("resident_on".into(), Value::null_ref());
                f.insert("domid".into(), Value::Int(-1));
                f.insert("suspend_VDI".into(), suspend_vdi.clone());
            });
        }
        "clean_reboot" | "hard_reboot" => {
            db.set(vm, "power_state", Value::str("Running"));
            db.set(&metrics, "start_time", Value::DateTime(now_datetime()));
        }
        "pause" => {
            db.set(vm, "power_state", Value::str("Paused"));
        }
        "unpause" => {
            db.set(vm, "power_state", Value::str("Running"));
        }
        _ => {}
    }
    crate::allowed::update_vm(db, vm);
    Ok(Value::str(""))
}

fn attach_devices(db: &mut Db, vm: &Fields, attached: bool) {
    for vbd in refs_of(vm, "VBDs") {
        let empty = db.get(&vbd).is_some_and(|b| bool_of(b, "empty"));
        db.set(&vbd, "currently_attached", Value::Bool(attached && !empty));
    }
    for vif in refs_of(vm, "VIFs") {
        db.set(&vif, "currently_attached", Value::Bool(attached));
    }
}

/// `VM.snapshot`: a halted template copy of the VM with snapshot VDIs (except `ignore`d ones) and VIFs.
pub fn vm_snapshot(db: &mut Db, vm: &str, new_name: &str, ignore: &[String]) -> R<Value> {
    let rec = obj(db, "VM", vm)?.clone();
    if bool_of(&rec, "is_control_domain") {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["Operations on the control domain are not allowed"]));
    }
    if bool_of(&rec, "is_a_snapshot") {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["Snapshots cannot be snapshotted"]));
    }
    check_blocked(vm, &rec, "snapshot")?;
    let now = now_datetime();
    let metrics = db.create("VM_metrics", Fields::new());
    let mut snap_fields = rec.clone();
    snap_fields.remove("uuid");
    for (k, v) in [
        ("name_label", Value::str(new_name)),
        ("is_a_snapshot", Value::Bool(true)),
        ("is_a_template", Value::Bool(true)),
        ("snapshot_of", Value::str(vm)),
        ("snapshot_time", Value::DateTime(now.clone())),
        ("power_state", Value::str("Halted")),
        ("resident_on", Value::null_ref()),
        ("snapshots", Value::empty_set()),
        ("VBDs", Value::empty_set()),
        ("VIFs", Value::empty_set()),
        ("metrics", Value::str(metrics)),
        ("guest_metrics", Value::null_ref()),
        ("suspend_VDI", Value::null_ref()),
        ("domid", Value::Int(-1)),
        ("current_operations", Value::empty_map()),
        ("blocked_operations", Value::empty_map()),
        ("allowed_operations", Value::strs(["export", "destroy", "clone", "copy", "revert"])),
    ] {
        snap_fields.insert(k.into(), v);
    }
    let snap = db.create("VM", snap_fields);
    for vbd in refs_of(&rec, "VBDs") {
        let Some(b) = db.get(&vbd).cloned() else {
            continue;
        };
        let vdi = str_of(&b, "VDI");
        let is_disk = str_of(&b, "type") == "Disk";
        if is_disk && ignore.contains(&vdi) {
            continue;
        }
        let new_vdi = if is_disk && db.get_of("VDI", &vdi).is_some() {
            Value::str(vdi_snapshot(db, &vdi, &now))
        } else {
            Value::str(vdi.clone())
        };
        let mut nb = b.clone();
        nb.remove("uuid");
        nb.insert("VM".into(), Value::str(snap.clone()));
        nb.insert("VDI".into(), new_vdi.clone());
        nb.insert("currently_attached".into(), Value::Bool(false));
        let nbr = db.create("VBD", nb);
        db.set_add(&snap, "VBDs", &nbr);
        if let Some(v) = new_vdi.as_str() {
            db.set_add(v, "VBDs", &nbr);
        }
    }
    for vif in refs_of(&rec, "VIFs") {
        if let Some(v) = db.get(&vif).cloned() {
            crate::vm_ops::copy_vif(db, &v, &snap, true);
        }
    }
    db.set_add(vm, "snapshots", &snap);
    crate::allowed::update_vm(db, &snap);
    Ok(Value::str(snap))
}

fn vdi_snapshot(db: &mut Db, vdi: &str, now: &str) -> String {
    let rec = db.get(vdi).cloned().unwrap_or_default();
    let mut f = rec.clone();
    f.remove("uuid");
    let uuid = uuid::Uuid::new_v4().to_string();
    for (k, v) in [
        ("uuid", Value::str(uuid.clone())),
        ("location", Value::str(uuid)),
        ("is_a_snapshot", Value::Bool(true)),
        ("snapshot_of", Value::str(vdi)),
        ("snapshot_time", Value::DateTime(now.to_string())),
        ("snapshots", Value::empty_set()),
        ("VBDs", Value::empty_set()),
        ("current_operations", Value::empty_map()),
    ] {
        f.insert(k.into(), v);
    }
    let r = db.create("VDI", f);
    if let Some(d) = db.disks.get(vdi).cloned() {
        db.disks.insert(r.clone(), d);
    }
    let sr = str_of(&rec, "SR");
    let thick = db.get(&sr).is_some_and(|s| str_of(s, "type") == "lvm");
    sr_account(db, &sr, int_of(&rec, "virtual_size"), thick);
    db.set_add(&sr, "VDIs", &r);
    db.set_add(vdi, "snapshots", &r);
    r
}

/// `VM.destroy`: removes a halted VM with its VBDs, VIFs and metrics; its VDIs stay, as on XAPI.
pub fn vm_destroy(db: &mut Db, vm: &str) -> R<Value> {
    let rec = obj(db, "VM", vm)?.clone();
    if bool_of(&rec, "is_control_domain") {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["Operations on the control domain are not allowed"]));
    }
    check_blocked(vm, &rec, "destroy")?;
    let state = str_of(&rec, "power_state");
    if state != "Halted" {
        return Err(bad_power_state(vm, "halted", &state));
    }
    for vbd in refs_of(&rec, "VBDs") {
        let vdi = db.field_str(&vbd, "VDI");
        db.set_remove(&vdi, "VBDs", &vbd);
        db.destroy(&vbd);
    }
    for vif in refs_of(&rec, "VIFs") {
        let net = db.field_str(&vif, "network");
        db.set_remove(&net, "VIFs", &vif);
        db.destroy(&vif);
    }
    for m in ["metrics", "guest_metrics"] {
        let r = str_of(&rec, m);
        if r != NULL_REF {
            db.destroy(&r);
        }
    }
    db.set_remove(&str_of(&rec, "snapshot_of"), "snapshots", vm);
    db.destroy(vm);
    Ok(Value::str(""))
}
