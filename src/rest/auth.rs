//! Who is calling: a token (cookie or Bearer), verified without XAPI, or Basic credentials, checked by logging in
//! to XAPI and requiring a pool administrator.

use super::{Ctx, Request};
use crate::auth::credentials::{self, Credentials};
use crate::auth::throttle;
use crate::auth::token::{self, Recovery, TokenClaims};
use crate::config::{Config, CookieSecure};
use crate::error::ApiError;
use crate::xapi::rpc::SESSION_GONE;
use crate::xapi::Transport;
use serde_json::{json, Value};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The XAPI session to act with.
    pub session: String,
    pub user: String,
    /// A session for this request only, to log out when it ends: from Basic credentials, or a Bearer token's
    /// [`recover`]y.
    pub basic: bool,
    /// The token's claims, for token callers.
    pub claims: Option<TokenClaims>,
    /// A `Set-Cookie` value with a renewed token, when the token is past half its lifetime.
    pub refresh_cookie: Option<String>,
}

/// What every failed Basic login answers, whether the password was wrong or the user is not a pool administrator:
/// a different answer would confirm a password.
pub fn login_refused() -> ApiError {
    ApiError::unauthorized(
        "wrong user name or password, or not a pool administrator (xo-edge serves the local superuser and users \
         with the pool-admin role only)",
    )
}

/// Failed logins are answered no sooner than this many milliseconds after the request began (the stateless part
/// of login throttling: a client guessing in sequence gets one guess a second, and the time taken no longer tells a
/// wrong password from a non-administrator's right one).
pub const FAILED_LOGIN_FLOOR_MS: u64 = 1000;

/// Reads the request's credentials.
pub fn credentials_of(req: &Request) -> Result<Option<Credentials>, ApiError> {
    credentials::from_headers(req.header("authorization"), &req.headers_named("cookie"))
        .map_err(|_| ApiError::unauthorized("unreadable Authorization header"))
}

/// Logs in with Basic credentials and requires a pool administrator; the session is logged out again if not. Any
/// refusal is [`login_refused`], answered after [`FAILED_LOGIN_FLOOR_MS`]. Where the host shares a store between
/// instances, failures are also counted per user name and per client ([`throttle`]): past the limit the answer is
/// a 429, without asking XAPI.
pub async fn basic_login<T: Transport>(
    ctx: &Ctx<'_, T>,
    req: &Request,
    user: &str,
    password: &str,
) -> Result<String, ApiError> {
    let limits = ctx.config.login_limits();
    let store = ctx.xapi.transport().shared_store();
    let attempt = match store {
        Some(store) => {
            let client = throttle::client_id(&req.headers_named("spin-client-addr"));
            Some(throttle::begin(store, limits, user, client.as_deref(), ctx.now).map_err(ApiError::too_many_logins)?)
        }
        None => None,
    };
    let result = match ctx.xapi.login(user, password).await {
        Err(e) if e.code() == Some("SESSION_AUTHENTICATION_FAILED") => Err(login_refused()),
        Err(e) => Err(e.to_api_error()),
        Ok(session) => match ctx.xapi.is_pool_admin(&session).await {
            Ok(true) => Ok(session),
            Ok(false) => {
                let _ = ctx.xapi.logout(&session).await;
                Err(login_refused())
            }
            Err(e) => {
                let _ = ctx.xapi.logout(&session).await;
                Err(e.to_api_error())
            }
        },
    };
    match (&result, store, attempt) {
        (Ok(_), Some(store), Some(attempt)) => throttle::succeeded(store, attempt),
        (Err(e), Some(store), Some(attempt)) if e.status != 401 => {
            // XAPI unreachable or failing: not a guess, it does not count.
            throttle::succeeded(store, attempt)
        }
        _ => {}
    }
    if result.is_err() {
        let elapsed = ctx.xapi.transport().elapsed_ms();
        ctx.xapi.transport().sleep_ms(FAILED_LOGIN_FLOOR_MS.saturating_sub(elapsed)).await;
    }
    result
}

/// Whether the request must be refused as a cross-site request forgery: a state-changing method sent by a browser
/// from another site (`Sec-Fetch-Site: cross-site`, or an `Origin` other than the request's host), unless it carries
/// a Bearer token, which a browser never adds by itself. Cookies are `SameSite=Strict` already; this covers Basic
/// credentials a browser has cached.
pub fn cross_site(req: &Request) -> Result<(), ApiError> {
    if matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        return Ok(());
    }
    let bearer = req.header("authorization").is_some_and(|a| {
        let a = a.trim_start();
        a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer ")
    });
    if bearer {
        return Ok(());
    }
    let cross = req.header("sec-fetch-site").is_some_and(|s| s.trim().eq_ignore_ascii_case("cross-site"));
    let foreign = req.header("origin").is_some_and(|origin| {
        let host = origin.trim().split_once("://").map(|(_, h)| h.trim_end_matches('/'));
        !matches!((host, req.header("host")), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h.trim()))
    });
    if cross || foreign {
        return Err(ApiError::forbidden(
            "cross-site request refused: a request that changes something, sent from another site, must carry a \
             Bearer token (Authorization: Bearer <token>)",
        ));
    }
    Ok(())
}

/// Whether cookies for this request get `Secure` (see [`CookieSecure`]).
pub fn secure_cookies(config: &Config, req: &Request) -> bool {
    match config.cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => {
            let host = req.header("host").unwrap_or("").trim();
            let name = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => host.rsplit_once(':').map_or(host, |(h, _)| h),
            };
            !(name.eq_ignore_ascii_case("localhost") || name == "::1" || name.starts_with("127."))
        }
    }
}

/// Authenticates a request. Tokens are decided without any XAPI call.
pub async fn authenticate<T: Transport>(ctx: &Ctx<'_, T>, req: &Request) -> Result<Caller, ApiError> {
    cross_site(req)?;
    match credentials_of(req)? {
        None => Err(ApiError::unauthorized(
            "no credentials: send the authenticationToken cookie, a Bearer token or Basic credentials",
        )),
        Some(Credentials::Token(t)) => {
            let (claims, current) = match token::verify(&t, &ctx.config.token_secrets(), ctx.now) {
                Ok(v) => v,
                Err(e) => {
                    if let token::TokenError::Expired(claims) = &e {
                        // Presented after its expiry: end the XAPI session it stood for (and every renewal of it),
                        // so the session does not outlive the token by XAPI's idle timeout.
                        let _ = ctx.xapi.logout(&claims.session).await;
                    }
                    return Err(ApiError::unauthorized(e.reason()));
                }
            };
            // Past half-life, or sealed under the previous secret: offer a renewal under the current one.
            let refresh_cookie = (claims.needs_refresh(ctx.now) || !current).then(|| {
                let renewed = claims.renewed(ctx.now);
                let lifetime = renewed.exp.saturating_sub(ctx.now);
                let secure = secure_cookies(ctx.config, req);
                credentials::token_cookie(&token::seal(&renewed, &ctx.config.token_secret), lifetime, secure)
            });
            // The pool's hosts the token knows: where to look for the master if xapi_url does not answer.
            ctx.xapi.transport().set_candidates(claims.hosts.clone());
            Ok(Caller {
                session: claims.session.clone(),
                user: claims.user.clone(),
                basic: false,
                claims: Some(claims),
                refresh_cookie,
            })
        }
        Some(Credentials::Basic { .. }) if !ctx.config.basic_everywhere => Err(ApiError::unauthorized(
            "Basic credentials are accepted only to create a token (POST /rest/v0/users/authentication_tokens): \
             send the token as the authenticationToken cookie or a Bearer token",
        )),
        Some(Credentials::Basic { user, password }) => {
            let session = basic_login(ctx, req, &user, &password).await?;
            Ok(Caller { session, user, basic: true, claims: None, refresh_cookie: None })
        }
    }
}

/// The key of the pool's `other_config` entry that records a revoked token able to recover (its value: when the
/// token would have expired anyway, after which the entry is pruned).
pub const REVOKED_PREFIX: &str = "xo_edge_revoked_";

/// For a token able to recover, one call to see that its XAPI session is alive, and [`recover`] if it is gone: for
/// requests that hand their caller on to a stream (transfers), where the handler cannot simply run again. Any other
/// failure of that call is left for the transfer to meet and report.
pub async fn live<T: Transport>(ctx: &Ctx<'_, T>, req: &Request, caller: Caller) -> Result<Caller, ApiError> {
    if !recoverable(&caller) {
        return Ok(caller);
    }
    match ctx.xapi.check_session(&caller.session).await {
        Err(e) if crate::xapi::rpc::session_gone(&e.to_api_error()) => recover(ctx, req, &caller).await,
        _ => Ok(caller),
    }
}

/// Whether the caller's token may get a new XAPI session when its own is gone ([`recover`]).
pub fn recoverable(caller: &Caller) -> bool {
    caller.claims.as_ref().is_some_and(|c| c.recovery.is_some())
}

/// A new XAPI session for a token whose session is gone, when the master's toolstack restarted since the session
/// was made (a failover, `pool.designate_new_master`, a toolstack restart: XAPI kept no session). Refused, with the
/// new session logged out again, when the session ended otherwise (logged out, expired: the master's
/// `agent_start_time` is unchanged), when the token was revoked (recorded on the pool by [`record_revocation`]), or
/// when the user is no longer a pool administrator or its password changed.
///
/// The caller that comes back acts with the new session. A cookie client gets a token for it (`Set-Cookie`); a
/// Bearer client cannot be given one, so its new session is logged out when the request ends, and each of its
/// requests recovers again until it makes a new token.
pub async fn recover<T: Transport>(ctx: &Ctx<'_, T>, req: &Request, caller: &Caller) -> Result<Caller, ApiError> {
    let (Some(claims), Some(recovery)) = (&caller.claims, caller.claims.as_ref().and_then(|c| c.recovery.as_ref()))
    else {
        return Err(ApiError::unauthorized(SESSION_GONE));
    };
    let session = match ctx.xapi.login(&claims.user, &recovery.password).await {
        Ok(s) => s,
        Err(e) if e.code() == Some("SESSION_AUTHENTICATION_FAILED") => {
            return Err(ApiError::unauthorized(
                "the token's XAPI session is gone and its password no longer logs in: create a new token",
            ))
        }
        Err(e) => return Err(e.to_api_error()),
    };
    let agent_start = match may_recover(ctx, &session, recovery).await {
        Ok(a) => a,
        Err(e) => {
            let _ = ctx.xapi.logout(&session).await;
            return Err(e);
        }
    };
    let renewed = TokenClaims {
        session: session.clone(),
        recovery: Some(Recovery { agent_start, ..recovery.clone() }),
        ..claims.clone()
    };
    let bearer = req.header("authorization").is_some_and(|a| {
        let a = a.trim_start();
        a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer ")
    });
    let refresh_cookie = (!bearer).then(|| {
        let lifetime = renewed.exp.saturating_sub(ctx.now);
        credentials::token_cookie(
            &token::seal(&renewed, &ctx.config.token_secret),
            lifetime,
            secure_cookies(ctx.config, req),
        )
    });
    Ok(Caller { session, user: claims.user.clone(), basic: bearer, claims: Some(renewed), refresh_cookie })
}

/// Whether the token may recover, read with the new `session`; the master's `agent_start_time` if so.
async fn may_recover<T: Transport>(ctx: &Ctx<'_, T>, session: &str, recovery: &Recovery) -> Result<String, ApiError> {
    let xapi = |e: crate::xapi::XapiError| e.to_api_error();
    let (pool, agent_start) = pool_and_agent_start(ctx, session).await.map_err(xapi)?;
    if pool["other_config"].get(format!("{REVOKED_PREFIX}{}", recovery.id)).is_some() {
        return Err(ApiError::unauthorized("token revoked"));
    }
    if agent_start.is_empty() || agent_start == recovery.agent_start {
        // The master's toolstack did not restart: the session was logged out or expired, and stays so.
        return Err(ApiError::unauthorized(SESSION_GONE));
    }
    if !ctx.xapi.is_pool_admin(session).await.map_err(xapi)? {
        return Err(login_refused());
    }
    Ok(agent_start)
}

/// The pool's record and its master's `other_config:agent_start_time` (empty if it has none), read with `session`.
async fn pool_and_agent_start<T: Transport>(
    ctx: &Ctx<'_, T>,
    session: &str,
) -> Result<(Value, String), crate::xapi::XapiError> {
    let s = json!(session);
    let pools = ctx.xapi.call("pool.get_all_records", std::slice::from_ref(&s)).await?;
    let pool = pools.as_object().and_then(|m| m.values().next()).cloned().unwrap_or(Value::Null);
    let other = ctx.xapi.call("host.get_other_config", &[s, pool["master"].clone()]).await?;
    let agent_start = other["agent_start_time"].as_str().unwrap_or_default().to_string();
    Ok((pool, agent_start))
}

/// The master's `other_config:agent_start_time` seen with `session`: what a token made now records, so that
/// [`recover`] can tell a restarted master from a session that ended. Empty when it cannot be read.
pub async fn agent_start<T: Transport>(ctx: &Ctx<'_, T>, session: &str) -> String {
    pool_and_agent_start(ctx, session).await.map(|(_, a)| a).unwrap_or_default()
}

/// Records on the pool that the token with recovery `id`, valid until `until`, is revoked, so that no failover
/// revives it; entries of tokens that have expired since are pruned.
pub async fn record_revocation<T: Transport>(
    ctx: &Ctx<'_, T>,
    session: &str,
    id: &str,
    until: u64,
) -> Result<(), ApiError> {
    let s = json!(session);
    let xapi = |e: crate::xapi::XapiError| e.to_api_error();
    let pools = ctx.xapi.call("pool.get_all_records", std::slice::from_ref(&s)).await.map_err(xapi)?;
    let Some((pool, record)) = pools.as_object().and_then(|m| m.iter().next()) else {
        return Err(ApiError::bad_gateway("XAPI has no pool record"));
    };
    for (key, value) in record["other_config"].as_object().into_iter().flatten() {
        let expired = value.as_str().and_then(|v| v.parse::<u64>().ok()).is_some_and(|t| t <= ctx.now);
        if key.starts_with(REVOKED_PREFIX) && expired {
            let _ = ctx.xapi.call("pool.remove_from_other_config", &[s.clone(), json!(pool), json!(key)]).await;
        }
    }
    let key = format!("{REVOKED_PREFIX}{id}");
    ctx.xapi
        .call("pool.add_to_other_config", &[s, json!(pool), json!(key), json!(until.to_string())])
        .await
        .map_err(xapi)?;
    Ok(())
}
