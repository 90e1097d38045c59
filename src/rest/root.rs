//! `GET /rest/v0`: the list of collections, as legacy XO answers it (monitoring probes rely on it).

use super::auth::Caller;
use super::{Ctx, Reply};
use crate::error::ApiError;
use crate::xapi::Transport;

/// Answers the collection list once XAPI confirms the session is alive (so revoked tokens are refused here too).
pub async fn list<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller) -> Result<Reply, ApiError> {
    ctx.xapi.check_session(&caller.session).await.map_err(|e| e.to_api_error())?;
    let mut w = crate::query::params::ListWriter::new(false);
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
