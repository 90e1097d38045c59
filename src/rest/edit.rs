//! Changing objects' names, descriptions and tags: `PATCH /rest/v0/<collection>/<id>` and
//! `PUT`/`DELETE /rest/v0/<collection>/<id>/tags/<tag>`.
//!
//! Every XAPI call is awaited before the answer (XO answers PATCH before XAPI has, and loses its failures): 204 only
//! when all succeeded; otherwise XAPI's error, saying which fields were applied and which not. The body is checked
//! whole before any call.

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::xapi::Transport;
use serde_json::{json, Map, Value};

/// What `PATCH` may set on objects of an XAPI class, in the order it is applied: the fields with an XAPI setter
/// that XO's legacy API edits (`<Class>.set_name_label`, `set_name_description`, `set_tags`).
pub fn editable(class: &str) -> &'static [&'static str] {
    match class {
        "VM" | "VDI" | "SR" | "network" | "host" | "pool" => &["name_label", "name_description", "tags"],
        _ => &[],
    }
}

fn nothing_editable(coll: &Collection) -> ApiError {
    ApiError::new(405, format!("{} cannot be edited: they have no name, description or tags", coll.name))
}

/// Checks a PATCH body: a JSON object of editable fields with values of their types.
fn fields(coll: &Collection, body: &[u8]) -> Result<Vec<(&'static str, Value)>, ApiError> {
    let allowed = editable(coll.class);
    if allowed.is_empty() {
        return Err(nothing_editable(coll));
    }
    let object: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) if body.iter().all(u8::is_ascii_whitespace) => {
            let _ = e;
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        Err(e) => return Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    };
    let unknown: Vec<&String> = object.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "cannot edit {} of {}: the editable fields are {}",
            unknown.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "),
            coll.name,
            allowed.join(", ")
        ))
        .with_data(json!({ "unknown": unknown, "editable": allowed })));
    }
    let mut out = Vec::new();
    for field in allowed {
        let Some(value) = object.get(*field) else { continue };
        let ok = match *field {
            "tags" => value.as_array().is_some_and(|tags| tags.iter().all(Value::is_string)),
            _ => value.is_string(),
        };
        if !ok {
            let want = if *field == "tags" { "an array of strings" } else { "a string" };
            return Err(ApiError::bad_request(format!("{field} must be {want}")));
        }
        out.push((*field, value.clone()));
    }
    Ok(out)
}

/// `PATCH /rest/v0/<collection>/<id>`.
pub async fn patch<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    req: &Request,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let fields = fields(coll, &req.body)?;
    let (reference, _) = find(ctx, &caller, coll, id).await?;
    let session = json!(caller.session);
    let mut applied: Vec<&str> = Vec::new();
    for (i, (field, value)) in fields.iter().enumerate() {
        let method = format!("{}.set_{field}", coll.class);
        if let Err(e) = ctx.xapi.call(&method, &[session.clone(), json!(reference), value.clone()]).await {
            let not_applied: Vec<&str> = fields[i..].iter().map(|(f, _)| *f).collect();
            let mut error = e.to_api_error();
            let mut data = match error.data.take() {
                Some(Value::Object(d)) => d,
                _ => Map::new(),
            };
            data.insert("applied".into(), json!(applied));
            data.insert("notApplied".into(), json!(not_applied));
            error.message = format!("{field} was not changed: {}", error.message);
            return Err(error.with_data(Value::Object(data)));
        }
        applied.push(field);
    }
    Ok(Reply::no_content())
}

/// `PUT` (`add`) or `DELETE` (remove) `/rest/v0/<collection>/<id>/tags/<tag>`: idempotent, 204.
pub async fn tag<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
    tag: &str,
    add: bool,
) -> Result<Reply, ApiError> {
    if !editable(coll.class).contains(&"tags") {
        return Err(nothing_editable(coll));
    }
    let (reference, _) = find(ctx, &caller, coll, id).await?;
    let method = format!("{}.{}", coll.class, if add { "add_tags" } else { "remove_tags" });
    ctx.xapi
        .call(&method, &[json!(caller.session), json!(reference), json!(tag)])
        .await
        .map_err(|e| e.to_api_error())?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::collection;

    #[test]
    fn bodies_are_checked_whole() {
        let vms = collection("vms").unwrap();
        let f = fields(vms, br#"{"tags":["a"],"name_label":"x"}"#).unwrap();
        assert_eq!(f.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["name_label", "tags"], "applied in table order");
        assert!(fields(vms, b"{}").unwrap().is_empty());
        let e = fields(vms, br#"{"name_label":"x","power_state":"Halted"}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("\"power_state\"") && e.message.contains("name_label, name_description, tags"));
        assert_eq!(fields(vms, br#"{"tags":"a"}"#).unwrap_err().message, "tags must be an array of strings");
        assert_eq!(fields(vms, br#"{"tags":[1]}"#).unwrap_err().status, 400);
        assert_eq!(fields(vms, br#"{"name_label":null}"#).unwrap_err().message, "name_label must be a string");
        assert_eq!(fields(vms, b"[]").unwrap_err().message, "the body must be a JSON object");
        assert_eq!(fields(vms, b"").unwrap_err().message, "the body must be a JSON object");
        assert!(fields(vms, b"{").unwrap_err().message.starts_with("the body is not JSON"));
        assert_eq!(fields(collection("vbds").unwrap(), b"{}").unwrap_err().status, 405);
    }
}
