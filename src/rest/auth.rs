//! Who is calling: a token (cookie or Bearer), verified without XAPI, or Basic credentials, checked by logging in
//! to XAPI and requiring a pool administrator.

use super::{Ctx, Request};
use crate::auth::credentials::{self, Credentials};
use crate::auth::token::{self, TokenClaims};
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

/// The message non-administrators get.
pub fn not_admin(user: &str) -> ApiError {
    ApiError::forbidden(format!(
        "user {user} is not a pool administrator: xo-edge serves the local superuser and users with the pool-admin role only"
    ))
}

/// Reads the request's credentials.
pub fn credentials_of(req: &Request) -> Result<Option<Credentials>, ApiError> {
    credentials::from_headers(req.header("authorization"), &req.headers_named("cookie"))
        .map_err(|_| ApiError::unauthorized("unreadable Authorization header"))
}

/// Logs in with Basic credentials and requires a pool administrator; the session is logged out again if not.
pub async fn basic_login<T: Transport>(ctx: &Ctx<'_, T>, user: &str, password: &str) -> Result<String, ApiError> {
    let session = ctx.xapi.login(user, password).await.map_err(|e| e.to_api_error())?;
    match ctx.xapi.is_pool_admin(&session).await {
        Ok(true) => Ok(session),
        Ok(false) => {
            let _ = ctx.xapi.logout(&session).await;
            Err(not_admin(user))
        }
        Err(e) => {
            let _ = ctx.xapi.logout(&session).await;
            Err(e.to_api_error())
        }
    }
}

/// Authenticates a request. Tokens are decided without any XAPI call.
pub async fn authenticate<T: Transport>(ctx: &Ctx<'_, T>, req: &Request) -> Result<Caller, ApiError> {
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
                credentials::token_cookie(&token::seal(&renewed, &ctx.config.token_secret), lifetime)
            });
            Ok(Caller {
                session: claims.session.clone(),
                user: claims.user.clone(),
                basic: false,
                claims: Some(claims),
                refresh_cookie,
            })
        }
        Some(Credentials::Basic { user, password }) => {
            let session = basic_login(ctx, &user, &password).await?;
            Ok(Caller { session, user, basic: true, claims: None, refresh_cookie: None })
        }
    }
}
