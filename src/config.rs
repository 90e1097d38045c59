//! The edge's configuration: which XAPI to talk to, the token secret and lifetimes.
//!
//! Values come from a lookup function, so the same parsing serves both sources the components use (Spin
//! application variables, or environment variables for the single-component `bundle`). Keys are the Spin
//! variable names; environment variables are the same names upper-cased with an `XO_EDGE_` prefix
//! (`xapi_url` → `XO_EDGE_XAPI_URL`). This module reads nothing by itself.

use crate::error::ApiError;

/// Every configuration key, with its default (`None`: required).
pub const KEYS: &[(&str, Option<&str>)] = &[
    ("xapi_url", None),
    ("pool_hosts", Some(crate::xapi::pool::NO_OTHER_HOSTS)),
    ("token_secret", None),
    ("token_secret_previous", Some("")),
    ("token_lifetime", Some("86400")),
    ("token_max_lifetime", Some("2592000")),
    ("orphan_after", Some("600")),
    ("xapi_timeout", Some("60")),
    ("client_timeout", Some("60")),
    ("basic_auth", Some("token-endpoint-only")),
    ("session_recovery", Some("true")),
    ("cookie_secure", Some("auto")),
    ("login_failures", Some("10")),
    ("login_failures_per_client", Some("30")),
    ("login_window", Some("300")),
];

/// When the token cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecure {
    /// Unless the request was addressed to a loopback host (`localhost`, `127.0.0.1`, `[::1]`): local plain-HTTP
    /// use works, every deployment behind a name gets `Secure` (TLS usually ends before Spin, so the scheme the
    /// guest sees says nothing).
    Auto,
    Always,
    Never,
}

/// Minimum length of `token_secret` in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Parsed configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the pool master's XAPI, e.g. `https://192.0.2.10` (no trailing slash).
    pub xapi_url: String,
    /// Where the edge may send requests: `xapi_url`'s host and the `pool_hosts` pattern (the pool's other hosts).
    pub fence: crate::xapi::pool::Fence,
    /// The secret token keys are derived from.
    pub token_secret: Vec<u8>,
    /// The secret before the last rotation: its tokens are still accepted (and renewed under the current one).
    pub token_secret_previous: Option<Vec<u8>>,
    /// Default token lifetime in seconds.
    pub token_lifetime: u64,
    /// Largest lifetime a client may ask for with `expiresIn`.
    pub token_max_lifetime: u64,
    /// Seconds after which what a transfer left on XAPI because its edge instance was cut off before it could clean
    /// up (an export snapshot whose heartbeat stopped, a finished task) is destroyed by a later transfer.
    pub orphan_after: u64,
    /// Seconds an XAPI call may take to answer (beyond the long poll of `event.from`) before the edge gives up with
    /// 504; for an export, the seconds XAPI may take to start sending.
    pub xapi_timeout: u64,
    /// Seconds a client may send nothing of its upload, or take nothing of an answer, before the transfer is
    /// aborted and cleaned up.
    pub client_timeout: u64,
    /// Whether Basic credentials are accepted on every route (`basic_auth = "everywhere"`) or only to create a
    /// token (`"token-endpoint-only"`, the default): every Basic request is a password guess XAPI answers.
    pub basic_everywhere: bool,
    /// Whether new tokens carry what a login after a master failover needs (`crate::auth::token::Recovery`).
    pub session_recovery: bool,
    pub cookie_secure: CookieSecure,
    /// Failed password logins allowed per user name in a window, where the host has a shared store (0: no limit).
    pub login_failures: u32,
    /// Failed password logins allowed per client address in a window (0: no limit; behind a proxy that hides
    /// client addresses every client shares one).
    pub login_failures_per_client: u32,
    /// Seconds a login throttling window lasts.
    pub login_window: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("xapi_url", &self.xapi_url)
            .field("fence", &self.fence)
            .field("token_secret", &"<redacted>")
            .field("token_secret_previous", &self.token_secret_previous.as_ref().map(|_| "<redacted>"))
            .field("token_lifetime", &self.token_lifetime)
            .field("token_max_lifetime", &self.token_max_lifetime)
            .field("orphan_after", &self.orphan_after)
            .field("xapi_timeout", &self.xapi_timeout)
            .field("client_timeout", &self.client_timeout)
            .field("basic_everywhere", &self.basic_everywhere)
            .field("session_recovery", &self.session_recovery)
            .field("cookie_secure", &self.cookie_secure)
            .field("login_failures", &self.login_failures)
            .field("login_failures_per_client", &self.login_failures_per_client)
            .field("login_window", &self.login_window)
            .finish()
    }
}

/// The environment variable name of a key.
pub fn env_name(key: &str) -> String {
    format!("XO_EDGE_{}", key.to_ascii_uppercase())
}

fn number(key: &str, v: &str) -> Result<u64, ApiError> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::internal(format!("configuration: {key} must be a positive number of seconds")))
}

impl Config {
    /// The login throttling limits (see [`crate::auth::throttle`]).
    pub fn login_limits(&self) -> crate::auth::throttle::Limits {
        crate::auth::throttle::Limits {
            per_user: self.login_failures,
            per_client: self.login_failures_per_client,
            window: self.login_window,
        }
    }

    /// The secrets tokens are opened with: the current one first.
    pub fn token_secrets(&self) -> Vec<&[u8]> {
        std::iter::once(self.token_secret.as_slice()).chain(self.token_secret_previous.as_deref()).collect()
    }

    /// Builds the configuration from `lookup(key)`; a missing required key or a bad value is a 500 naming the key
    /// (never its value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ApiError> {
        let get = |key: &str| -> Result<String, ApiError> {
            let default = KEYS.iter().find(|(k, _)| *k == key).and_then(|(_, d)| *d);
            match lookup(key).filter(|v| !v.is_empty()) {
                Some(v) => Ok(v),
                None => default
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::internal(format!("configuration: {key} is not set"))),
            }
        };
        let xapi_url = get("xapi_url")?.trim_end_matches('/').to_string();
        if !(xapi_url.starts_with("http://") || xapi_url.starts_with("https://")) {
            return Err(ApiError::internal("configuration: xapi_url must start with http:// or https://"));
        }
        let fence = crate::xapi::pool::Fence::new(&xapi_url, &get("pool_hosts")?)
            .map_err(|e| ApiError::internal(format!("configuration: {e}")))?;
        let token_secret = get("token_secret")?.into_bytes();
        if token_secret.len() < MIN_SECRET_LEN {
            return Err(ApiError::internal(format!(
                "configuration: token_secret must be at least {MIN_SECRET_LEN} bytes"
            )));
        }
        let token_secret_previous = Some(get("token_secret_previous")?.into_bytes()).filter(|s| !s.is_empty());
        if token_secret_previous.as_ref().is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return Err(ApiError::internal(format!(
                "configuration: token_secret_previous must be empty or at least {MIN_SECRET_LEN} bytes"
            )));
        }
        let token_lifetime = number("token_lifetime", &get("token_lifetime")?)?;
        let token_max_lifetime = number("token_max_lifetime", &get("token_max_lifetime")?)?.max(token_lifetime);
        let orphan_after = number("orphan_after", &get("orphan_after")?)?;
        let xapi_timeout = number("xapi_timeout", &get("xapi_timeout")?)?;
        let client_timeout = number("client_timeout", &get("client_timeout")?)?;
        let basic_everywhere = match get("basic_auth")?.trim() {
            "everywhere" => true,
            "token-endpoint-only" => false,
            _ => {
                return Err(ApiError::internal(
                    "configuration: basic_auth must be \"everywhere\" or \"token-endpoint-only\"",
                ))
            }
        };
        let session_recovery = match get("session_recovery")?.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(ApiError::internal("configuration: session_recovery must be true or false")),
        };
        let cookie_secure = match get("cookie_secure")?.trim() {
            "auto" => CookieSecure::Auto,
            "always" => CookieSecure::Always,
            "never" => CookieSecure::Never,
            _ => return Err(ApiError::internal("configuration: cookie_secure must be auto, always or never")),
        };
        let count = |key: &str| -> Result<u32, ApiError> {
            get(key)?.trim().parse::<u32>().map_err(|_| {
                ApiError::internal(format!("configuration: {key} must be a number (0 turns that limit off)"))
            })
        };
        let login_failures = count("login_failures")?;
        let login_failures_per_client = count("login_failures_per_client")?;
        let login_window = number("login_window", &get("login_window")?)?;
        Ok(Config {
            xapi_url,
            fence,
            token_secret,
            token_secret_previous,
            token_lifetime,
            token_max_lifetime,
            orphan_after,
            xapi_timeout,
            client_timeout,
            basic_everywhere,
            session_recovery,
            cookie_secure,
            login_failures,
            login_failures_per_client,
            login_window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_and_validation() {
        let secret = "s".repeat(32);
        let c = Config::from_lookup(lookup(&[("xapi_url", "http://127.0.0.1:1/"), ("token_secret", &secret)])).unwrap();
        assert_eq!(c.xapi_url, "http://127.0.0.1:1");
        assert_eq!((c.token_lifetime, c.token_max_lifetime), (86400, 2592000));
        assert!(!format!("{c:?}").contains(&secret));
        let e = Config::from_lookup(lookup(&[("xapi_url", "http://x")])).unwrap_err();
        assert_eq!(e.message, "configuration: token_secret is not set");
        let e = Config::from_lookup(lookup(&[("xapi_url", "http://x"), ("token_secret", "short")])).unwrap_err();
        assert!(e.message.contains("at least 32"));
        let e = Config::from_lookup(lookup(&[("xapi_url", "x"), ("token_secret", &secret)])).unwrap_err();
        assert!(e.message.contains("http://"));
        let e = Config::from_lookup(lookup(&[
            ("xapi_url", "http://x"),
            ("token_secret", &secret),
            ("token_lifetime", "0"),
        ]));
        assert!(e.is_err());
        assert_eq!(env_name("xapi_url"), "XO_EDGE_XAPI_URL");
    }
}
