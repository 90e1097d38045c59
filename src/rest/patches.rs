//! What hosts say of themselves through XAPI plugins: missing patches and SMT.
//!
//! - `GET /rest/v0/hosts/<id>/missing_patches`: XCP-ng's `updater.py` plugin (`host.call_plugin … check_update`), the
//!   packages yum would update, as XO lists them (`XcpPatches`). `GET /rest/v0/pools/<id>/missing_patches`: those of
//!   every host, each package once.
//! - **XenServer pools** have no updater plugin: XO reads XenServer's patch catalogue from the internet, which the
//!   edge never reaches (outbound traffic goes to the pool only). Their hosts answer 501 naming XenServer's own update
//!   tooling; the dashboards say `{"hasAuthorization": false}` for them, as XO does when it may not look.
//! - `GET /rest/v0/hosts/<id>/smt`: `{"enabled": bool}`, from `cpu_info.threads_per_core` where XAPI has it (XCP-ng
//!   8.3), else XCP-ng's `hyperthreading.py` plugin; `null` when neither can tell (as XO).

use super::auth::Caller;
use super::collections::find;
use super::{Ctx, Reply};
use crate::error::ApiError;
use crate::objects::Collection;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Map, Value};

fn is_xcp_ng(host: &Value) -> bool {
    host["software_version"]["product_brand"].as_str().is_some_and(|b| b.eq_ignore_ascii_case("XCP-ng"))
}

fn not_xcp_ng() -> ApiError {
    ApiError::new(
        501,
        "missing patches are listed for XCP-ng hosts only (its updater plugin); XenServer's catalogue is on the \
         internet, which xo-edge does not reach: use XenServer's own update tooling",
    )
}

/// The packages the host's updater plugin would update.
async fn host_patches<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    reference: &str,
) -> Result<Vec<Value>, ApiError> {
    let args = [json!(caller.session), json!(reference), json!("updater.py"), json!("check_update"), json!({})];
    let raw = ctx.xapi.call("host.call_plugin", &args).await.map_err(|e| e.to_api_error())?;
    let parsed: Value = serde_json::from_str(raw.as_str().unwrap_or_default())
        .map_err(|e| ApiError::bad_gateway(format!("the updater plugin answered something else than JSON: {e}")))?;
    if let Some(error) = parsed.get("error").filter(|e| !e.is_null()) {
        return Err(ApiError::bad_gateway(format!("the updater plugin failed: {error}")));
    }
    // The plugin may answer a message instead of a package ("The updater plugin is busy"): not a package.
    Ok(parsed.as_array().map(|a| a.iter().filter(|p| p.is_object()).cloned().collect()).unwrap_or_default())
}

/// `GET /rest/v0/hosts/<id>/missing_patches` and `GET /rest/v0/pools/<id>/missing_patches`.
pub async fn missing<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    if coll.class == "host" {
        if !is_xcp_ng(&rec) {
            return Err(not_xcp_ng());
        }
        return Ok(Reply::json(200, &Value::Array(host_patches(ctx, &caller, &reference).await?)));
    }
    let hosts = ctx.xapi.call("host.get_all_records", &[json!(caller.session)]).await.map_err(|e| e.to_api_error())?;
    let hosts = hosts.as_object().cloned().unwrap_or_default();
    if !hosts.values().any(is_xcp_ng) {
        return Err(not_xcp_ng());
    }
    let mut out: Vec<Value> = Vec::new();
    for (r, h) in &hosts {
        if !is_xcp_ng(h) {
            continue;
        }
        for p in host_patches(ctx, &caller, r).await? {
            if !out
                .iter()
                .any(|q| q["name"] == p["name"] && q["version"] == p["version"] && q["release"] == p["release"])
            {
                out.push(p);
            }
        }
    }
    Ok(Reply::json(200, &Value::Array(out)))
}

/// The global dashboard's `missingPatches` (`MissingPatchesInfo`).
pub async fn pool_summary<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, hosts: &Map<String, Value>) -> Value {
    if !hosts.values().any(is_xcp_ng) {
        return json!({ "hasAuthorization": false });
    }
    let (mut with, mut failed) = (0, 0);
    for (r, _) in hosts.iter().filter(|(_, h)| is_xcp_ng(h)) {
        match host_patches(ctx, caller, r).await {
            Ok(p) if !p.is_empty() => with += 1,
            Ok(_) => {}
            Err(_) => failed += 1,
        }
    }
    json!({
        "hasAuthorization": true,
        "nHosts": hosts.len(),
        "nHostsWithMissingPatches": with,
        "nHostsFailed": failed,
        "nHostsEol": { "isEmpty": true },
        "nPools": 1,
        "nPoolsWithMissingPatches": u8::from(with > 0),
    })
}

/// The pool dashboard's `hosts.missingPatches`: every package missing on some host, once.
pub async fn pool_list<T: Transport>(ctx: &Ctx<'_, T>, caller: &Caller, hosts: &Map<String, Value>) -> Value {
    if !hosts.values().any(is_xcp_ng) {
        return json!({ "hasAuthorization": false });
    }
    let mut out: Vec<Value> = Vec::new();
    for (r, _) in hosts.iter().filter(|(_, h)| is_xcp_ng(h)) {
        for p in host_patches(ctx, caller, r).await.unwrap_or_default() {
            if !out.iter().any(|q| q["name"] == p["name"] && q["version"] == p["version"]) {
                out.push(p);
            }
        }
    }
    json!({ "hasAuthorization": true, "missingPatches": out })
}

/// `GET /rest/v0/hosts/<id>/smt`.
pub async fn smt<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: Caller,
    coll: &Collection,
    id: &str,
) -> Result<Reply, ApiError> {
    let (reference, rec) = find(ctx, &caller, coll, id).await?;
    let threads = rec["cpu_info"]["threads_per_core"].as_str().and_then(|t| t.parse::<u64>().ok());
    let enabled = match threads {
        Some(t) => json!(t > 1),
        None => {
            let args = [
                json!(caller.session),
                json!(reference),
                json!("hyperthreading.py"),
                json!("get_hyperthreading"),
                json!({}),
            ];
            match ctx.xapi.call("host.call_plugin", &args).await {
                Ok(v) => json!(v.as_str() != Some("false")),
                Err(XapiError::Api { code, .. })
                    if code == "XENAPI_MISSING_PLUGIN" || code == "UNKNOWN_XENAPI_PLUGIN_FUNCTION" =>
                {
                    Value::Null
                }
                Err(e) => return Err(e.to_api_error()),
            }
        }
    };
    Ok(Reply::json(200, &json!({ "enabled": enabled })))
}
/// The JSON Schema of `missing_patches` (the OpenAPI document's): the XCP-ng updater's packages; a pool's also an
/// `error` entry for a host that could not be asked.
pub fn schema() -> Value {
    let package = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "version": { "type": "string" },
            "release": { "type": "string" },
            "description": { "type": "string" },
            "changelog": { "type": "object", "properties": {
                "date": { "type": "integer" }, "author": { "type": "string" }, "description": { "type": "string" } } },
            "url": { "type": "string" },
            "size": { "type": "integer" },
            "license": { "type": "string" },
            "error": { "type": "object", "description": "a host that could not be asked (pools only)" },
        },
    });
    json!({ "type": "array", "items": package })
}

/// The JSON Schema of `smt` (the OpenAPI document's).
pub fn smt_schema() -> Value {
    json!({ "type": "object", "required": ["enabled"], "properties": { "enabled": { "type": "boolean" } } })
}
