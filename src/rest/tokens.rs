//! Token endpoints: `POST /rest/v0/users/authentication_tokens` (Basic credentials, optional JSON
//! `{description, expiresIn}`) and `DELETE /rest/v0/users/me/authentication_tokens/current` (revocation: the
//! XAPI session is logged out, so the token and every copy of it stop working; a token able to recover from a
//! master failover is also recorded as revoked on the pool).

use super::auth::{self, Caller};
use super::{duration, Ctx, Reply, Request};
use crate::auth::credentials::{self, Credentials};
use crate::auth::token::{self, Recovery, TokenClaims};
use crate::error::ApiError;
use crate::xapi::Transport;
use serde_json::{json, Value};

/// Shortest lifetime a client may ask for.
pub const MIN_LIFETIME: u64 = 60;

/// The `tokens` component's requests: creation and revocation; any other method is 405.
pub async fn route<T: Transport>(ctx: &Ctx<'_, T>, req: &Request) -> Reply {
    match (req.method.as_str(), req.normalized_path()) {
        ("POST", "/rest/v0/users/authentication_tokens") => create(ctx, req).await,
        ("DELETE", "/rest/v0/users/me/authentication_tokens/current") => {
            super::authenticated(ctx, req, |ctx, caller| revoke(ctx, caller, req)).await
        }
        _ => Reply::error(&ApiError::new(405, "method not allowed")),
    }
}

/// Creates a token for Basic credentials of a pool administrator.
///
/// The one endpoint whose 401 carries `WWW-Authenticate: Basic` (a browser may then ask for a password); a cross-site
/// request is refused, so no other site can log a browser in with its cached Basic credentials.
pub async fn create<T: Transport>(ctx: &Ctx<'_, T>, req: &Request) -> Reply {
    match create_inner(ctx, req).await {
        Ok(r) => r,
        Err(e) if e.status == 401 => Reply::error(&e).with_header("www-authenticate", "Basic realm=\"xo\""),
        Err(e) => Reply::error(&e),
    }
}

async fn create_inner<T: Transport>(ctx: &Ctx<'_, T>, req: &Request) -> Result<Reply, ApiError> {
    auth::cross_site(req)?;
    let Some(Credentials::Basic { user, password }) = auth::credentials_of(req)? else {
        return Err(ApiError::unauthorized("token creation needs Basic credentials (curl -u user:password)"));
    };
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let description = match body.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 1024 => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("description must be a string of at most 1024 bytes")),
    };
    // XO's `client: {id}` names the program asking; XO then extends the token it stored for that client. Tokens
    // are not stored here, so each call gives a new one, which carries the client back as XO's record does.
    let client = match body.get("client") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) if c.keys().all(|k| k == "id") && c.get("id").is_none_or(Value::is_string) => {
            Some(Value::Object(c.clone()))
        }
        Some(_) => return Err(ApiError::bad_request("client must be an object {\"id\": <string>}")),
    };
    let lifetime = match body.get("expiresIn") {
        None | Some(Value::Null) => ctx.config.token_lifetime,
        Some(v) => {
            let s = duration::seconds(v).ok_or_else(|| {
                ApiError::bad_request("expiresIn must be milliseconds or a duration such as \"30 days\"")
            })?;
            if !(MIN_LIFETIME..=ctx.config.token_max_lifetime).contains(&s) {
                return Err(ApiError::bad_request(format!(
                    "expiresIn must be between {MIN_LIFETIME} and {} seconds",
                    ctx.config.token_max_lifetime
                )));
            }
            s
        }
    };
    let session = auth::basic_login(ctx, req, &user, &password).await?;
    // The pool's hosts, for finding the master when xapi_url does not answer (a failover): best effort.
    let hosts = match ctx.xapi.call_raw("host.get_all_records", &[json!(session)]).await {
        Ok(records) => crate::xapi::pool::addresses_of(&records).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    // What a login after a master failover needs (`session_recovery`): not for a password too long for a cookie.
    let recovery = if ctx.config.session_recovery && password.len() <= token::MAX_RECOVERY_PASSWORD {
        let agent_start = auth::agent_start(ctx, &session).await;
        match (token::new_id(), agent_start.is_empty()) {
            (Some(id), false) => Some(Recovery { id, password: password.clone(), agent_start }),
            _ => None,
        }
    } else {
        None
    };
    let claims = TokenClaims::new(session, user.clone(), ctx.now, lifetime, ctx.config.token_max_lifetime)
        .with_hosts(hosts)
        .with_recovery(recovery);
    let t = token::seal(&claims, &ctx.config.token_secret);
    let mut record = json!({
        "id": t,
        "user_id": user,
        "created_at": claims.iat * 1000,
        "expiration": claims.exp * 1000,
    });
    if let Some(d) = description {
        record["description"] = json!(d);
    }
    if let Some(c) = client {
        record["client"] = c;
    }
    Ok(Reply::json(200, &json!({ "token": record }))
        .with_header("set-cookie", credentials::token_cookie(&t, lifetime, auth::secure_cookies(ctx.config, req))))
}

/// Logs out the caller's XAPI session and clears the cookie. Basic credentials name no token: 400, rather than a
/// 204 that would revoke nothing. A token able to recover from a failover is first recorded as revoked on the pool
/// ([`auth::record_revocation`]), so that no later failover revives it; if that cannot be written, the session is
/// still logged out and the answer says what is left.
pub async fn revoke<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller, req: &Request) -> Result<Reply, ApiError> {
    if caller.claims.is_none() {
        return Err(ApiError::bad_request(
            "revocation needs the token to revoke (the authenticationToken cookie or a Bearer token), not Basic credentials",
        ));
    }
    let recorded = match caller.claims.as_ref().and_then(|c| c.recovery.as_ref().map(|r| (r, c.max))) {
        Some((recovery, until)) => auth::record_revocation(ctx, &caller.session, &recovery.id, until).await,
        None => Ok(()),
    };
    ctx.xapi.logout(&caller.session).await.map_err(|e| e.to_api_error())?;
    if let Err(e) = recorded {
        return Err(ApiError::new(
            e.status.max(500),
            format!(
                "the token's XAPI session is logged out, but its revocation could not be recorded on the pool ({}): \
                 after a master failover the token would work again until it expires; retry, or set \
                 session_recovery = \"false\" and rotate token_secret",
                e.message
            ),
        ));
    }
    Ok(Reply {
        status: 204,
        headers: vec![("set-cookie".into(), credentials::clear_cookie(auth::secure_cookies(ctx.config, req)))],
        body: Vec::new(),
        stream: None,
    })
}
