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

/// Creates a task for a transfer.
pub async fn create<T: Transport>(
    xapi: &Xapi<'_, T>,
    session: &str,
    label: &str,
    description: &str,
) -> Result<String, XapiError> {
    let r = xapi.call("task.create", &[json!(session), json!(label), json!(description)]).await?;
    Ok(r.as_str().unwrap_or_default().to_string())
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
    let s = json!(session);
    let mut token = Value::String(String::new());
    let mut waited = 0.0;
    let outcome = loop {
        let rec = match xapi.call("task.get_record", &[s.clone(), json!(task)]).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("HANDLE_INVALID") => return Ok(Outcome::Gone),
            Err(e) => return Err(e),
        };
        if let Some(o) = outcome_of(&rec) {
            break o;
        }
        if waited >= max_wait {
            let _ = xapi.call("task.cancel", &[s.clone(), json!(task)]).await;
            break Outcome::TimedOut;
        }
        let step = (max_wait - waited).clamp(0.1, 30.0);
        let ev =
            xapi.call("event.from", &[s.clone(), json!([format!("task/{task}")]), token.clone(), json!(step)]).await?;
        token = ev.get("token").cloned().unwrap_or(token);
        waited += step;
    };
    match xapi.call("task.destroy", &[s, json!(task)]).await {
        Ok(_) => Ok(outcome),
        Err(e) if e.code() == Some("HANDLE_INVALID") => Ok(outcome),
        Err(e) => Err(e),
    }
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
