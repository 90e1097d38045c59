//! The XAPI task a transfer runs under: created before the handler is called, and always destroyed afterwards,
//! once XAPI has ended it (XAPI's handlers report failures only there once their `200` is out).
//!
//! Waiting uses `event.from` on the one task, so a long transfer costs one idle call every 30 seconds at most.
//! A task still pending after the allowed wait is cancelled, then destroyed.

use crate::xapi::{Transport, Xapi, XapiError};
use serde_json::{json, Value};

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// XAPI's error, from the task's `error_info`.
    Failure(XapiError),
    /// Still pending after the allowed wait: cancelled by us.
    TimedOut,
    /// The task disappeared (destroyed by someone else, or the pool restarted).
    Gone,
}

/// The `other_config` key stamping xo-edge's tasks with their creation time (Unix seconds).
pub const STAMP_KEY: &str = "xo-edge:created";
/// The `other_config` key of a transfer's task naming a VDI the transfer created: [`sweep`] destroys that VDI with
/// the task if it still carries [`IMPORT_MARK`] (the import never completed).
pub const VDI_KEY: &str = "xo-edge:vdi";
/// The `other_config` key a VDI created by an import carries from birth until the import succeeded.
pub const IMPORT_MARK: &str = "xo-edge:import";

/// Creates a task for a transfer, stamped so that [`sweep`] can find it if its edge instance is cut off.
pub async fn create<T: Transport>(
    xapi: &Xapi<'_, T>,
    session: &str,
    label: &str,
    description: &str,
    now: u64,
) -> Result<String, XapiError> {
    let r = xapi.call("task.create", &[json!(session), json!(label), json!(description)]).await?;
    let task = r.as_str().unwrap_or_default().to_string();
    let stamp = [json!(session), json!(task), json!(STAMP_KEY), json!(now.to_string())];
    if let Err(e) = xapi.call("task.add_to_other_config", &stamp).await {
        // Ended first: XAPI defers destroying a pending task until it completes.
        let _ = xapi.call("task.set_status", &[json!(session), json!(task), json!("cancelled")]).await;
        let _ = xapi.call("task.destroy", &[json!(session), json!(task)]).await;
        return Err(e);
    }
    Ok(task)
}

/// Destroys xo-edge's tasks that ended more than `orphan_after` seconds after they were created and are still
/// there: their edge instance was cut off before it could destroy them (a live transfer's task is pending). A VDI
/// such a task names that its import never completed goes with it.
pub async fn sweep<T: Transport>(xapi: &Xapi<'_, T>, session: &str, now: u64, orphan_after: u64) {
    let Ok(tasks) = xapi.call("task.get_all_records", &[json!(session)]).await else { return };
    for (r, rec) in tasks.as_object().into_iter().flatten() {
        let stamp = rec.get("other_config").and_then(|o| o.get(STAMP_KEY)).and_then(Value::as_str);
        let stale = stamp.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s + orphan_after < now);
        if stale && outcome_of(rec).is_some() {
            let vdi = rec.get("other_config").and_then(|o| o.get(VDI_KEY)).and_then(Value::as_str);
            if let Some(vdi) = vdi {
                destroy_unfinished_import(xapi, session, vdi).await;
            }
            let _ = xapi.call("task.destroy", &[json!(session), json!(r)]).await;
        }
    }
}

/// Destroys `vdi` if an import created it and never completed (it still carries [`IMPORT_MARK`]).
async fn destroy_unfinished_import<T: Transport>(xapi: &Xapi<'_, T>, session: &str, vdi: &str) {
    let Ok(other) = xapi.call("VDI.get_other_config", &[json!(session), json!(vdi)]).await else { return };
    if other.get(IMPORT_MARK).is_some() {
        let _ = xapi.call("VDI.destroy", &[json!(session), json!(vdi)]).await;
    }
}

fn outcome_of(rec: &Value) -> Option<Outcome> {
    match rec.get("status").and_then(Value::as_str) {
        Some("pending") | Some("cancelling") => None,
        Some("success") => Some(Outcome::Success),
        _ => {
            let info: Vec<String> = rec
                .get("error_info")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect())
                .unwrap_or_default();
            let mut info = info.into_iter();
            let code = info.next().unwrap_or_else(|| "TASK_FAILED".to_string());
            Some(Outcome::Failure(XapiError::Api { code, params: info.collect() }))
        }
    }
}

/// Waits up to `max_wait` seconds for `task` to end, cancels it if it has not, and destroys it.
pub async fn settle<T: Transport>(
    xapi: &Xapi<'_, T>,
    session: &str,
    task: &str,
    max_wait: f64,
) -> Result<Outcome, XapiError> {
    settle_with_result(xapi, session, task, max_wait).await.map(|(o, _)| o)
}

/// Waits up to `max_wait` seconds for `task` to end: its record once ended, `None` while still pending.
pub async fn wait_end<T: Transport>(
    xapi: &Xapi<'_, T>,
    session: &str,
    task: &str,
    max_wait: f64,
) -> Result<Option<Value>, XapiError> {
    let s = json!(session);
    let mut token = Value::String(String::new());
    let mut waited = 0.0;
    loop {
        let rec = xapi.call("task.get_record", &[s.clone(), json!(task)]).await?;
        if outcome_of(&rec).is_some() {
            return Ok(Some(rec));
        }
        if waited >= max_wait {
            return Ok(None);
        }
        let step = (max_wait - waited).clamp(0.1, 30.0);
        let ev =
            xapi.call("event.from", &[s.clone(), json!([format!("task/{task}")]), token.clone(), json!(step)]).await?;
        token = ev.get("token").cloned().unwrap_or(token);
        waited += step;
    }
}

/// [`settle`], answering the task's `result` too (XAPI's text, e.g. the refs an import made).
pub async fn settle_with_result<T: Transport>(
    xapi: &Xapi<'_, T>,
    session: &str,
    task: &str,
    max_wait: f64,
) -> Result<(Outcome, String), XapiError> {
    let s = json!(session);
    let (outcome, result) = match wait_end(xapi, session, task, max_wait).await {
        Err(e) if e.code() == Some("HANDLE_INVALID") => return Ok((Outcome::Gone, String::new())),
        Err(e) => return Err(e),
        Ok(Some(rec)) => {
            let result = rec.get("result").and_then(Value::as_str).unwrap_or_default().to_string();
            (outcome_of(&rec).unwrap_or(Outcome::Gone), result)
        }
        Ok(None) => {
            // XAPI only records a cancel (the handler, if one runs, notices it) and defers destroying a pending
            // task until it completes, which never happens when the handler was never reached: end it as XO's
            // client does, so that `task.destroy` removes it now. A handler still running finds it ended and
            // leaves it alone (`TaskHelper.complete` acts on pending tasks only).
            let _ = xapi.call("task.cancel", &[s.clone(), json!(task)]).await;
            let _ = xapi.call("task.set_status", &[s.clone(), json!(task), json!("cancelled")]).await;
            (Outcome::TimedOut, String::new())
        }
    };
    match xapi.call("task.destroy", &[s, json!(task)]).await {
        Ok(_) => Ok((outcome, result)),
        Err(e) if e.code() == Some("HANDLE_INVALID") => Ok((outcome, result)),
        Err(e) => Err(e),
    }
}

/// Ends an upload that never reached a handler (XAPI redirected it where the edge does not follow): the task XAPI
/// never worked on is ended now rather than waited for, a VDI the edge created for it (`created`) is destroyed, a
/// temporary session logged out. Answers `error`, for the client.
pub async fn abandon<T: Transport>(
    xapi: &Xapi<'_, T>,
    session: &str,
    task: &str,
    created: Option<&str>,
    temporary_session: bool,
    error: crate::error::ApiError,
) -> crate::error::ApiError {
    let _ = settle(xapi, session, task, 0.0).await;
    if let Some(vdi) = created {
        let _ = xapi.call("VDI.destroy", &[json!(session), json!(vdi)]).await;
    }
    if temporary_session {
        let _ = xapi.logout(session).await;
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_from_records() {
        assert_eq!(outcome_of(&json!({"status": "pending"})), None);
        assert_eq!(outcome_of(&json!({"status": "success"})), Some(Outcome::Success));
        assert_eq!(
            outcome_of(&json!({"status": "failure", "error_info": ["VDI_IO_ERROR", "cut"]})),
            Some(Outcome::Failure(XapiError::Api { code: "VDI_IO_ERROR".into(), params: vec!["cut".into()] }))
        );
        assert_eq!(
            outcome_of(&json!({"status": "cancelled", "error_info": []})),
            Some(Outcome::Failure(XapiError::Api { code: "TASK_FAILED".into(), params: vec![] }))
        );
    }
}
