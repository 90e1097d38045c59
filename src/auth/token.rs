//! Stateless, opaque, unforgeable, expiring tokens.
//!
//! A token is one base64url string (no padding) of `version ‖ nonce ‖ ciphertext`: the claims (the XAPI session
//! ref, the user name, issue time, expiry, and the absolute ceiling no renewal may pass) are JSON sealed with
//! XChaCha20-Poly1305 under a key derived from `token_secret` by HKDF-SHA256, with a random 192-bit nonce and the
//! version byte as associated data. Nothing in a token is readable without the secret, and any change to it fails
//! authentication. Keys rotate: tokens sealed under `token_secret_previous` are still opened (and renewed under the
//! current key) until they expire.
//!
//! Nothing is stored at the edge: the XAPI session is the only state, so revoking means logging that session out.
//! A token is an XAPI bearer credential until it expires or is revoked. Deciding whether a token is valid needs no
//! XAPI call.
//!
//! XAPI does not keep sessions across a restart of the master's toolstack, and a new master starts with none
//! (`ocaml/database/db_xml.ml`: tables that are not persisted are not written out). So that a token outlives a
//! master failover as XO's connection does, a token made while `session_recovery` is on also seals the password it
//! was made with, the master's `agent_start_time` when its session was made, and a random id: the edge logs in again
//! with them only when the session is gone *and* the master's toolstack has started since (`crate::rest::auth`,
//! `recover`), never for a token revoked through the API (its id is recorded on the pool). The password is readable
//! by no one without `token_secret`; `session_recovery = "false"` keeps it out of tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Longest token accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 2048;
/// The format version, first byte of every token and its associated data.
const VERSION: u8 = 2;
const NONCE_LEN: usize = 24;
/// HKDF inputs: the salt names the application, the info the use of the key, so the same `token_secret` never
/// keys two different things.
const HKDF_SALT: &[u8] = b"xo-edge";
const HKDF_INFO: &[u8] = b"authentication token, XChaCha20-Poly1305, v2";

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The XAPI session ref the token stands for.
    #[serde(rename = "s")]
    pub session: String,
    /// The XAPI user name.
    #[serde(rename = "u")]
    pub user: String,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// Expiry time, seconds since the Unix epoch.
    pub exp: u64,
    /// The absolute expiry fixed when the first token of this session was created: no renewal goes past it.
    pub max: u64,
    /// The addresses of the pool's hosts when the token was made (at most [`MAX_HOSTS`]): where to look for the
    /// master when `xapi_url` does not answer.
    #[serde(rename = "h", default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// What logging in again after a master failover needs (`session_recovery`), when the token has it.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// What a token needs to get a new XAPI session after the master's toolstack restarted (see the module's doc).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The token's id: the same across renewals and recoveries, what a revocation records on the pool.
    #[serde(rename = "i")]
    pub id: String,
    /// The password the token was made with.
    #[serde(rename = "p")]
    pub password: String,
    /// The pool master's `other_config:agent_start_time` when the token's current session was made.
    #[serde(rename = "a")]
    pub agent_start: String,
}

/// Never prints the password.
impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery").field("id", &self.id).field("agent_start", &self.agent_start).finish_non_exhaustive()
    }
}

/// Longest password a token carries for recovery (a token must fit in a cookie): longer ones make tokens without.
pub const MAX_RECOVERY_PASSWORD: usize = 256;

/// A new random token id (128 bits, base64url), or `None` without a CSPRNG.
pub fn new_id() -> Option<String> {
    let mut id = [0u8; 16];
    getrandom::getrandom(&mut id).ok()?;
    Some(URL_SAFE_NO_PAD.encode(id))
}

/// Most pool host addresses a token carries (a token must fit in a cookie).
pub const MAX_HOSTS: usize = 16;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not the token format at all (wrong shape, bad base64, too long, unknown version).
    Malformed,
    /// Well-formed but not sealed with our secret: forged or tampered.
    BadSignature,
    /// Sealed by us, but past its expiry time: the claims, so that the session can be ended.
    Expired(Box<TokenClaims>),
}

impl TokenError {
    /// A short reason for the 401 body (never echoing the token).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "invalid token",
            TokenError::Expired(_) => "token expired",
        }
    }
}

impl TokenClaims {
    /// Claims for a new session: valid `lifetime` seconds from `now`, renewable up to `ceiling` seconds from `now`.
    pub fn new(session: impl Into<String>, user: impl Into<String>, now: u64, lifetime: u64, ceiling: u64) -> Self {
        TokenClaims {
            session: session.into(),
            user: user.into(),
            iat: now,
            exp: now.saturating_add(lifetime),
            max: now.saturating_add(ceiling.max(lifetime)),
            hosts: Vec::new(),
            recovery: None,
        }
    }

    /// The same claims, able to recover from a master failover (see [`Recovery`]).
    pub fn with_recovery(mut self, recovery: Option<Recovery>) -> Self {
        self.recovery = recovery;
        self
    }

    /// The same claims, carrying the pool's host addresses (the first [`MAX_HOSTS`]).
    pub fn with_hosts(mut self, mut hosts: Vec<String>) -> Self {
        hosts.truncate(MAX_HOSTS);
        self.hosts = hosts;
        self
    }

    /// True once more than half of the token's lifetime has passed and a renewal would extend it.
    pub fn needs_refresh(&self, now: u64) -> bool {
        let half = self.exp.saturating_sub(self.iat) / 2;
        now >= self.iat.saturating_add(half) && self.exp < self.max
    }

    /// The same claims with a new lifetime starting `now`, never past the ceiling.
    pub fn renewed(&self, now: u64) -> Self {
        let lifetime = self.exp.saturating_sub(self.iat);
        TokenClaims { iat: now, exp: now.saturating_add(lifetime).min(self.max), ..self.clone() }
    }
}

fn cipher(secret: &[u8]) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret).expand(HKDF_INFO, &mut key);
    XChaCha20Poly1305::new(&key.into())
}

/// Seals `claims` under `secret` with a fresh random nonce.
pub fn seal(claims: &TokenClaims, secret: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    // The host's CSPRNG (wasi:random); without one, no token can be made safely.
    if getrandom::getrandom(&mut nonce).is_err() {
        return String::new();
    }
    seal_with_nonce(claims, secret, nonce)
}

fn seal_with_nonce(claims: &TokenClaims, secret: &[u8], nonce: [u8; NONCE_LEN]) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let Ok(sealed) = cipher(secret).encrypt(XNonce::from_slice(&nonce), Payload { msg: &json, aad: &[VERSION] }) else {
        return String::new();
    };
    let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    raw.push(VERSION);
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Opens a token with the first of `secrets` that authenticates it, whatever its expiry; also says whether that
/// was the first (current) secret.
pub fn open(token: &str, secrets: &[&[u8]]) -> Result<(TokenClaims, bool), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Malformed)?;
    let (&version, rest) = raw.split_first().ok_or(TokenError::Malformed)?;
    if version != VERSION || rest.len() < NONCE_LEN + 16 {
        return Err(TokenError::Malformed);
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    for (i, secret) in secrets.iter().enumerate() {
        let Ok(json) = cipher(secret).decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &[VERSION] })
        else {
            continue;
        };
        // Authenticated, so written by us: claims that do not parse are a format we no longer read.
        let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        return Ok((claims, i == 0));
    }
    Err(TokenError::BadSignature)
}

/// Opens a token and checks its expiry at `now`.
pub fn verify(token: &str, secrets: &[&[u8]], now: u64) -> Result<(TokenClaims, bool), TokenError> {
    let (claims, current) = open(token, secrets)?;
    if now >= claims.exp {
        return Err(TokenError::Expired(Box::new(claims)));
    }
    Ok((claims, current))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"another secret, 32 bytes long!!!";

    #[test]
    fn round_trip_expiry_and_refresh_up_to_the_ceiling() {
        let c = TokenClaims::new("OpaqueRef:abc", "root", 1000, 100, 250);
        let t = seal(&c, SECRET);
        assert_eq!(verify(&t, &[SECRET], 1000).unwrap(), (c.clone(), true));
        assert_eq!(verify(&t, &[SECRET], 1099).unwrap().0, c);
        assert_eq!(verify(&t, &[SECRET], 1100), Err(TokenError::Expired(Box::new(c.clone()))));
        assert!(!c.needs_refresh(1049));
        assert!(c.needs_refresh(1050));
        let r = c.renewed(1060);
        assert_eq!((r.iat, r.exp, r.max, r.session.as_str()), (1060, 1160, 1250, "OpaqueRef:abc"));
        // Renewals stop at the ceiling fixed at creation, and a token at the ceiling is not offered another.
        let r = r.renewed(1200);
        assert_eq!(r.exp, 1250);
        assert!(!r.needs_refresh(1240));
        assert_eq!(r.renewed(1249).exp, 1250);
        // The ceiling is never below the first lifetime.
        assert_eq!(TokenClaims::new("s", "u", 0, 100, 10).max, 100);
    }

    #[test]
    fn nothing_in_a_token_is_readable() {
        let c = TokenClaims::new("OpaqueRef:0123456789", "root", 1000, 100, 200);
        let t = seal(&c, SECRET);
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for needle in [&b"OpaqueRef"[..], b"0123456789", b"root", b"\"s\"", b"1100"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle), "{needle:?} readable");
        }
        assert!(!t.contains('.'), "one opaque string");
        // A fresh nonce per token: the same claims never give the same token.
        assert_ne!(seal(&c, SECRET), t);
    }

    #[test]
    fn recovery_rides_sealed_and_never_prints() {
        let r = Recovery { id: new_id().unwrap(), password: "hunter2-passphrase".into(), agent_start: "1.0".into() };
        let c = TokenClaims::new("OpaqueRef:abc", "root", 1000, 100, 100)
            .with_hosts(vec!["10.0.0.1".into(); 20])
            .with_recovery(Some(r.clone()));
        let t = seal(&c, SECRET);
        assert!(t.len() < MAX_TOKEN_LEN / 2, "{} bytes", t.len());
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        assert!(!raw.windows(7).any(|w| w == b"hunter2"));
        let opened = verify(&t, &[SECRET], 1000).unwrap().0;
        assert_eq!(opened.recovery.as_ref(), Some(&r));
        assert_eq!(opened.renewed(1050).recovery, Some(r.clone()));
        assert!(!format!("{opened:?}").contains("hunter2"));
        // The largest a token gets: every host, the longest password, a long user name.
        let big = Recovery { password: "x".repeat(MAX_RECOVERY_PASSWORD), ..r };
        let c = TokenClaims::new(format!("OpaqueRef:{}", "0".repeat(36)), "u".repeat(255), u64::MAX, 1, 1)
            .with_hosts(vec!["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".into(); MAX_HOSTS])
            .with_recovery(Some(big));
        assert!(seal(&c, SECRET).len() <= MAX_TOKEN_LEN, "{}", seal(&c, SECRET).len());
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn forged_tampered_and_garbage_tokens_are_refused() {
        let c = TokenClaims::new("OpaqueRef:abc", "root", 1000, 100, 100);
        let t = seal(&c, SECRET);
        assert_eq!(verify(&t, &[OTHER], 1000), Err(TokenError::BadSignature));
        // Every single-bit change anywhere is refused.
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert!(verify(&URL_SAFE_NO_PAD.encode(&bad), &[SECRET], 1000).is_err(), "byte {i}");
        }
        assert!(verify(&URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]), &[SECRET], 1000).is_err());
        for garbage in ["", ".", "abc", "a.b", "!!!.???", &"x".repeat(5000), "AgAAAA"] {
            assert!(verify(garbage, &[SECRET], 1000).is_err(), "{garbage}");
        }
        // A version-1 token (signed JSON claims) is no longer accepted.
        assert_eq!(verify("eyJ2IjoxfQ.c2ln", &[SECRET], 1000), Err(TokenError::Malformed));
        // Sealed by us but not our claims.
        let sealed = cipher(SECRET).encrypt(XNonce::from_slice(&[7; 24]), Payload { msg: b"{}", aad: &[VERSION] });
        let mut raw = vec![VERSION];
        raw.extend_from_slice(&[7; 24]);
        raw.extend_from_slice(&sealed.unwrap());
        assert_eq!(verify(&URL_SAFE_NO_PAD.encode(raw), &[SECRET], 1000), Err(TokenError::Malformed));
    }

    #[test]
    fn keys_rotate_through_the_previous_secret() {
        let c = TokenClaims::new("OpaqueRef:abc", "root", 1000, 100, 100);
        let old = seal(&c, OTHER);
        assert_eq!(verify(&old, &[SECRET, OTHER], 1000).unwrap(), (c.clone(), false));
        assert_eq!(verify(&old, &[SECRET], 1000), Err(TokenError::BadSignature));
        let new = seal(&c, SECRET);
        assert_eq!(verify(&new, &[SECRET, OTHER], 1000).unwrap(), (c, true));
    }

    /// The key is derived, not the secret itself: the same nonce and claims under two secrets differ everywhere
    /// after the nonce.
    #[test]
    fn the_key_is_derived_from_the_secret() {
        let c = TokenClaims::new("s", "u", 1, 1, 1);
        let (a, b) = (seal_with_nonce(&c, SECRET, [1; 24]), seal_with_nonce(&c, OTHER, [1; 24]));
        assert_eq!(a.len(), b.len());
        assert_ne!(URL_SAFE_NO_PAD.decode(&a).unwrap()[25..], URL_SAFE_NO_PAD.decode(&b).unwrap()[25..]);
    }
}
