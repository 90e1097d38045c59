//! Where a request's credentials are: the `authenticationToken` (or `token`) cookie, `Authorization: Bearer`, or
//! `Authorization: Basic`; and the `Set-Cookie` header the edge answers with.
//!
//! Parsing only: nothing is verified here (see [`super::token`]) and nothing is logged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Credentials found in a request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A token from the cookie or a Bearer header.
    Token(String),
    /// A user name and password from Basic authentication.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// Why credentials could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsError {
    /// An `Authorization` header that is neither valid Basic nor Bearer.
    BadAuthorization,
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Reads credentials from the `Authorization` and `Cookie` headers. `Authorization` wins when both are present.
pub fn from_headers(authorization: Option<&str>, cookies: &[&str]) -> Result<Option<Credentials>, CredentialsError> {
    if let Some(auth) = authorization {
        let (scheme, rest) = auth.trim().split_once(' ').ok_or(CredentialsError::BadAuthorization)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Some(Credentials::Token(rest.to_string())));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let raw = STANDARD.decode(rest).map_err(|_| CredentialsError::BadAuthorization)?;
            let text = String::from_utf8(raw).map_err(|_| CredentialsError::BadAuthorization)?;
            let (user, password) = text.split_once(':').ok_or(CredentialsError::BadAuthorization)?;
            if user.is_empty() {
                return Err(CredentialsError::BadAuthorization);
            }
            return Ok(Some(Credentials::Basic { user: user.to_string(), password: password.to_string() }));
        }
        return Err(CredentialsError::BadAuthorization);
    }
    for header in cookies {
        if let Some(t) = cookie(header, "authenticationToken").or_else(|| cookie(header, "token")) {
            if !t.is_empty() {
                return Ok(Some(Credentials::Token(t.to_string())));
            }
        }
    }
    Ok(None)
}

/// The `Set-Cookie` value carrying a token valid for `max_age` seconds; `Secure` when `secure`.
pub fn token_cookie(token: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("authenticationToken={token}; Max-Age={max_age}; Path=/rest; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the token cookie.
pub fn clear_cookie(secure: bool) -> String {
    token_cookie("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_everywhere() {
        assert_eq!(
            from_headers(None, &["a=b; authenticationToken=T1; c=d"]),
            Ok(Some(Credentials::Token("T1".into())))
        );
        assert_eq!(from_headers(None, &["token=T2"]), Ok(Some(Credentials::Token("T2".into()))));
        assert_eq!(from_headers(Some("Bearer T3"), &[]), Ok(Some(Credentials::Token("T3".into()))));
        assert_eq!(
            from_headers(Some("Basic cm9vdDpwYTpzcw=="), &["authenticationToken=T1"]),
            Ok(Some(Credentials::Basic { user: "root".into(), password: "pa:ss".into() }))
        );
        assert_eq!(from_headers(None, &[]), Ok(None));
        assert_eq!(from_headers(None, &["authenticationToken="]), Ok(None));
        for bad in ["Basic !!!", "Basic", "Digest x", "Basic OnBhc3M="] {
            assert_eq!(from_headers(Some(bad), &[]), Err(CredentialsError::BadAuthorization), "{bad}");
        }
        assert!(!format!("{:?}", Credentials::Basic { user: "u".into(), password: "secret".into() }).contains("secret"));
        let c = token_cookie("T", 60, false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/rest"));
        assert!(!c.contains("Secure") && token_cookie("T", 60, true).ends_with("; Secure"));
        assert!(clear_cookie(true).starts_with("authenticationToken=; Max-Age=0;"));
    }
}
