//! Who is calling: a token (cookie or Bearer), verified without XAPI, or Basic credentials, checked by logging in
//! to XAPI and requiring a pool administrator.

use super::{Ctx, Request};
use crate::auth::credentials::{self, Credentials};
use crate::auth::throttle;
use crate::auth::token::{self, TokenClaims};
use crate::config::{Config, CookieSecure};
use crate::error::ApiError;
use crate::xapi::Transport;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The XAPI session to act with.
    pub session: String,
    pub user: String,
    /// A temporary session from Basic credentials, to log out when the request ends.
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
