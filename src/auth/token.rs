//! Stateless, unforgeable, expiring tokens.
//!
//! A token is `<claims>.<signature>`, both base64url without padding: the claims are a small JSON object (the XAPI
//! session ref, the user name, issue and expiry times in seconds since the epoch, a format version) and the
//! signature is HMAC-SHA256 over the encoded claims under `token_secret`, compared in constant time. Nothing is
//! stored at the edge and no XAPI password is ever in a token: the XAPI session is the only state, so revoking
//! means logging that session out. Deciding whether a token is valid needs no XAPI call.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 2048;
const VERSION: u8 = 1;

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    #[serde(rename = "v")]
    pub version: u8,
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
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not the token format at all (wrong shape, bad base64, bad JSON, too long, unknown version).
    Malformed,
    /// Well-formed but not signed with our secret: forged or tampered.
    BadSignature,
    /// Signed by us, but past its expiry time.
    Expired,
}

impl TokenError {
    /// A short reason for the 401 body (never echoing the token).
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "invalid token signature",
            TokenError::Expired => "token expired",
        }
    }
}

impl TokenClaims {
    pub fn new(session: impl Into<String>, user: impl Into<String>, now: u64, lifetime: u64) -> Self {
        TokenClaims {
            version: VERSION,
            session: session.into(),
            user: user.into(),
            iat: now,
            exp: now.saturating_add(lifetime),
        }
    }

    /// True once more than half of the token's lifetime has passed (a fresh token should be offered).
    pub fn needs_refresh(&self, now: u64) -> bool {
        let half = self.exp.saturating_sub(self.iat) / 2;
        now >= self.iat.saturating_add(half)
    }

    /// The same claims with a new lifetime starting `now`.
    pub fn renewed(&self, now: u64) -> Self {
        let lifetime = self.exp.saturating_sub(self.iat);
        TokenClaims { iat: now, exp: now.saturating_add(lifetime), ..self.clone() }
    }
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Encodes and signs `claims`.
pub fn sign(claims: &TokenClaims, secret: &[u8]) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// Checks a token's shape, signature (constant time) and expiry at `now`.
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if claims.version != VERSION {
        return Err(TokenError::Malformed);
    }
    if now >= claims.exp {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_expiry_and_refresh() {
        let c = TokenClaims::new("OpaqueRef:abc", "root", 1000, 100);
        let t = sign(&c, SECRET);
        assert_eq!(verify(&t, SECRET, 1000).unwrap(), c);
        assert_eq!(verify(&t, SECRET, 1099).unwrap(), c);
        assert_eq!(verify(&t, SECRET, 1100), Err(TokenError::Expired));
        assert!(!c.needs_refresh(1049));
        assert!(c.needs_refresh(1050));
        let r = c.renewed(1060);
        assert_eq!((r.iat, r.exp, r.session.as_str()), (1060, 1160, "OpaqueRef:abc"));
    }

    #[test]
    fn forged_tampered_and_garbage_tokens_are_refused() {
        let c = TokenClaims::new("OpaqueRef:abc", "root", 1000, 100);
        let t = sign(&c, SECRET);
        assert_eq!(verify(&t, b"another secret, 32 bytes long!!!", 1000), Err(TokenError::BadSignature));
        // Change the claims but keep the signature.
        let forged_claims = TokenClaims { user: "admin".into(), ..c.clone() };
        let forged =
            format!("{}.{}", sign(&forged_claims, SECRET).split('.').next().unwrap(), t.split('.').nth(1).unwrap());
        assert_eq!(verify(&forged, SECRET, 1000), Err(TokenError::BadSignature));
        let mut flipped = t.clone().into_bytes();
        flipped[3] ^= 1;
        assert!(verify(&String::from_utf8(flipped).unwrap(), SECRET, 1000).is_err());
        for garbage in ["", ".", "abc", "a.b", "!!!.???", &"x".repeat(5000)] {
            assert!(verify(garbage, SECRET, 1000).is_err(), "{garbage}");
        }
        // A correctly signed payload that is not our JSON.
        let payload = URL_SAFE_NO_PAD.encode(b"{}");
        let mut m = mac(SECRET);
        m.update(payload.as_bytes());
        let t = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
        assert_eq!(verify(&t, SECRET, 1000), Err(TokenError::Malformed));
    }

    /// The signature is checked whole, through `Mac::verify_slice` (the `subtle` crate's constant-time equality, so
    /// the time taken does not tell how many leading bytes matched): a difference in the first or the last byte, a
    /// prefix and an extension are all refused alike.
    #[test]
    fn the_signature_is_compared_whole_in_constant_time() {
        let t = sign(&TokenClaims::new("OpaqueRef:abc", "root", 1000, 100), SECRET);
        let (payload, sig) = t.split_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let with = |s: &[u8]| format!("{payload}.{}", URL_SAFE_NO_PAD.encode(s));
        let (mut first, mut last) = (sig.clone(), sig.clone());
        first[0] ^= 1;
        *last.last_mut().unwrap() ^= 0x80;
        let mut longer = sig.clone();
        longer.push(0);
        for bad in [first, last, sig[..sig.len() - 1].to_vec(), sig[..1].to_vec(), longer, Vec::new()] {
            assert_eq!(verify(&with(&bad), SECRET, 1000), Err(TokenError::BadSignature), "{bad:?}");
        }
        assert!(verify(&with(&sig), SECRET, 1000).is_ok());
    }
}
