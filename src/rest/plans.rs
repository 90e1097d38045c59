//! Plans: actions the edge carries out as several XAPI calls (disable a host, evacuate it, reboot it; make a network
//! and its VLANs), under one task of its own.
//!
//! XAPI has no single call for these, and a stateless edge keeps no state between requests, so a plan is made of
//! XAPI's own objects and calls only: the edge makes the task with `task.create` (which XAPI lists, watches and
//! garbage-collects like any other), answers 202 at once with it, and runs the steps after the answer has gone, in
//! the same instance, each step an ordinary XAPI call (`Async.*` for the long ones, each awaited). The task's
//! `progress` moves after each step; it ends as XAPI's tasks do: `success` with the made object's ref as `result`,
//! or `failure` with the failing step's `[code, params…]` in `error_info`. With `?sync` the same steps run before the
//! answer, which is then their outcome.
//!
//! XAPI's GC removes a task a client made within 30 s of its end (`Db_gc_util.timeout_tasks` reads its `finished`
//! time, which no call sets, so it stays at the epoch; the GC runs every 30 s): a client follows a plan's task as it
//! runs (`?wait=result`, or the task stream, whose updates carry what it made) or uses `?sync`.
//!
//! Each plan undoes what it did when a step fails (a host it disabled is enabled again, a network it made is
//! destroyed, PBDs it unplugged are plugged back), so nothing is left half-done. What a plan cannot survive is the
//! end of the instance running it (a runtime restarted mid-plan): its task then stays pending until XAPI's task GC
//! removes it (24 hours), which the README says. XAPI does not let a client cancel a task it made itself
//! (`allowed_operations` is empty), so a plan's task cannot be aborted.

use super::collections::wait_for_task;
use super::Ctx;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Value};

/// Longest a plan waits for one step's XAPI task (an evacuation of many VMs takes long), in seconds.
const STEP_MAX: u64 = 4 * 3600;

/// A plan ready to run: its task, the session it runs under, its steps.
#[derive(Debug)]
pub struct Plan {
    pub session: String,
    /// The task (ref) the edge made for it.
    pub task: String,
    pub steps: super::infra::Steps,
    /// Log the session out at the end (a Basic request's own session).
    pub logout: bool,
}

/// What a plan did: the ref of what it made, if anything.
pub type Outcome = Result<Option<String>, XapiError>;

impl Plan {
    /// Runs the steps, ends the task with their outcome, and answers it.
    pub async fn run<T: Transport>(self, ctx: &Ctx<'_, T>) -> Outcome {
        let s = json!(self.session);
        let outcome = self.steps.run(ctx, &s, &self.task).await;
        end(ctx, &s, &self.task, &outcome).await;
        if self.logout {
            let _ = ctx.xapi.logout(&self.session).await;
        }
        outcome
    }
}

/// Ends the plan's task: the result first, the status last (a watcher that sees `success` sees the result).
async fn end<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, task: &str, outcome: &Outcome) {
    let t = json!(task);
    let _ = ctx.xapi.call("task.set_progress", &[s.clone(), t.clone(), json!(1.0)]).await;
    match outcome {
        Ok(made) => {
            let result = made.as_ref().map(|r| format!("<value>{r}</value>")).unwrap_or_default();
            let _ = ctx.xapi.call("task.set_result", &[s.clone(), t.clone(), json!(result)]).await;
            let _ = ctx.xapi.call("task.set_status", &[s.clone(), t, json!("success")]).await;
        }
        Err(e) => {
            let info = match e {
                XapiError::Api { code, params } => {
                    std::iter::once(code.clone()).chain(params.iter().cloned()).collect()
                }
                other => vec!["INTERNAL_ERROR".to_string(), format!("xo-edge: {other:?}")],
            };
            let _ = ctx.xapi.call("task.set_error_info", &[s.clone(), t.clone(), json!(info)]).await;
            let _ = ctx.xapi.call("task.set_status", &[s.clone(), t, json!("failure")]).await;
        }
    }
}

/// A synchronous XAPI call with the session first.
pub async fn call<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, method: &str, args: &[Value]) -> Result<Value, XapiError> {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(s.clone());
    all.extend_from_slice(args);
    ctx.xapi.call(method, &all).await
}

/// `Async.<method>`, awaited: its result (XML-RPC text) or its error; the task is destroyed either way.
pub async fn task<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    method: &str,
    args: &[Value],
) -> Result<String, XapiError> {
    let t = call(ctx, s, &format!("Async.{method}"), args).await?;
    let t = t.as_str().unwrap_or_default().to_string();
    let mut rec = call(ctx, s, "task.get_record", &[json!(t)]).await?;
    // Each wait is up to `wait_for_task`'s own bound (10 minutes of `event.from` long polls).
    for _ in 0..STEP_MAX / 600 {
        rec = wait_for_task(ctx, s, &t, rec).await?;
        if rec["status"] != "pending" {
            break;
        }
    }
    let _ = call(ctx, s, "task.destroy", &[json!(t)]).await;
    match rec["status"].as_str() {
        Some("success") => Ok(rec["result"].as_str().unwrap_or_default().to_string()),
        Some("pending") => Err(XapiError::Api { code: "TASK_TIMEOUT".into(), params: vec![method.into()] }),
        _ => Err(task_error(&rec)),
    }
}

/// A failed task's error, from its `error_info` (`[code, params…]`).
pub fn task_error(rec: &Value) -> XapiError {
    let info: Vec<String> = rec["error_info"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    let (code, params) = info.split_first().map(|(c, p)| (c.clone(), p.to_vec())).unwrap_or_default();
    XapiError::Api { code, params }
}

/// Moves the plan's task's progress (best effort: progress is informative).
pub async fn progress<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, task: &str, fraction: f64) {
    let _ = call(ctx, s, "task.set_progress", &[json!(task), json!(fraction.clamp(0.0, 0.99))]).await;
}
