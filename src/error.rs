//! One error type for every failure a request can meet, mapped to one HTTP status and one JSON body shape.
//!
//! Bodies are `{"error": "<message>", "data": {...}}` (XO's shape); XAPI error codes are kept in `data.code` and
//! `data.params`. This module only describes errors; components turn them into responses.

use serde_json::{json, Value};

/// A failed request: status, message and optional structured data.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub data: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, message)
    }

    /// 401: no credentials, or credentials that are not (or no longer) valid.
    pub fn unauthorized(reason: &str) -> Self {
        ApiError::new(401, "invalid credentials").with_data(json!({ "reason": reason }))
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, message)
    }

    /// 502: XAPI could not be reached or answered nonsense.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        ApiError::new(502, message)
    }

    /// 500: a configuration or internal problem of the edge itself.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        match &self.data {
            Some(d) => json!({ "error": self.message, "data": d }),
            None => json!({ "error": self.message }),
        }
    }

    /// 429: too many failed password logins for this user name or from this client (see
    /// [`crate::auth::throttle`]); `Retry-After` says when the window ends.
    pub fn too_many_logins(retry_after: u64) -> Self {
        ApiError::new(
            429,
            "too many failed logins for this user name or from this client: wait before trying a password again \
             (tokens are not affected)",
        )
        .with_data(json!({ "retryAfter": retry_after }))
    }

    /// The error's headers: `Retry-After` on 429. No `WWW-Authenticate` challenge: a browser answering it with cached Basic credentials
    /// would let any site act with them; only the token endpoint challenges ([`crate::rest::tokens`]).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let (429, Some(after)) = (self.status, self.data.as_ref().and_then(|d| d["retryAfter"].as_u64())) {
            headers.push(("retry-after", after.to_string()));
        }
        headers
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_headers() {
        let e = ApiError::unauthorized("token expired");
        assert_eq!(e.body(), json!({"error": "invalid credentials", "data": {"reason": "token expired"}}));
        assert!(!e.headers().iter().any(|(k, _)| *k == "www-authenticate"));
        assert_eq!(ApiError::not_found("no such VM x").body(), json!({"error": "no such VM x"}));
        assert_eq!(ApiError::forbidden("x").headers().len(), 1);
    }
}
