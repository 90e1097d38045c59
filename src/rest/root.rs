//! `GET /rest/v0`: the list of collections, as legacy XO answers it (monitoring probes rely on it); with `?routes`,
//! every route of the `api` component's table, spelled out per collection and action.

use super::auth::Caller;
use super::{Ctx, Reply, Request};
use crate::error::ApiError;
use crate::xapi::Transport;

/// Answers the collection list once XAPI confirms the session is alive (so revoked tokens are refused here too).
pub async fn list<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, req: &Request) -> Result<Reply, ApiError> {
    ctx.xapi.check_session(&caller.session).await.map_err(|e| e.to_api_error())?;
    if crate::query::params::pairs(&req.query).iter().any(|(k, _)| k == "routes") {
        let routes: Vec<serde_json::Value> = super::router::spelled_out()
            .into_iter()
            .map(|(methods, path)| serde_json::json!({ "methods": methods, "path": path }))
            .collect();
        return Ok(Reply::json(200, &serde_json::Value::Array(routes)));
    }
    let mut w = crate::query::params::ListWriter::new(crate::query::params::Format::Json);
    for c in crate::objects::COLLECTIONS {
        w.push(&serde_json::json!(format!("/rest/v0/{}", c.name)));
    }
    Ok(Reply {
        status: 200,
        headers: vec![("content-type".into(), w.content_type().into())],
        body: w.finish(),
        stream: None,
    })
}
