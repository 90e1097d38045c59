//! JSON-RPC calls to XAPI and the few compound operations the edge needs (login, logout, admin check).

use crate::error::ApiError;
use serde_json::{json, Value};
use std::future::Future;

/// A failure below XAPI's protocol: nothing usable came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Connection refused, DNS, TLS or similar.
    Unreachable(String),
    /// No answer in time.
    Timeout,
}

/// The HTTP exchange the XAPI client needs; implemented by each runtime.
pub trait Transport {
    /// POSTs a JSON `body` to `path` (e.g. `/jsonrpc`) of XAPI; returns the HTTP status and body. `patience` is how
    /// many seconds XAPI may legitimately hold the answer back (a long poll), on top of the transport's timeout.
    fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
        patience: u64,
    ) -> impl Future<Output = Result<(u16, Vec<u8>), TransportError>>;

    /// PUTs a small `body` (a few MiB at most: it is held whole) to one of XAPI's HTTP handlers, `path` with its
    /// query, authenticated by the `cookie` header; answers the HTTP status.
    fn put(&self, path: &str, cookie: &str, body: Vec<u8>) -> impl Future<Output = Result<u16, TransportError>> {
        let _ = (path, cookie, body);
        std::future::ready(Err(TransportError::Unreachable("this runtime cannot upload to XAPI".into())))
    }

    /// GETs one of XAPI's small HTTP resources (`/rrd_updates`), `path` with its query, authenticated by the
    /// `cookie` header; answers the HTTP status and the body (held whole: a few MiB at most).
    fn get(&self, path: &str, cookie: &str) -> impl Future<Output = Result<(u16, Vec<u8>), TransportError>> {
        let _ = (path, cookie);
        std::future::ready(Err(TransportError::Unreachable("this runtime cannot fetch from XAPI".into())))
    }

    /// Milliseconds since the request began, for answers that must not come sooner; 0 where unknown.
    fn elapsed_ms(&self) -> u64 {
        0
    }

    /// Waits `ms` milliseconds (a no-op where the runtime cannot wait).
    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()> {
        let _ = ms;
        std::future::ready(())
    }

    /// The store every instance of the app shares (login throttling), where the host has one.
    fn shared_store(&self) -> Option<&dyn crate::auth::throttle::Store> {
        None
    }
}

/// What an XAPI call can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XapiError {
    /// XAPI answered with an error: its code and parameters.
    Api {
        code: String,
        params: Vec<String>,
    },
    Transport(TransportError),
    /// XAPI answered something that is not a JSON-RPC reply.
    Protocol(String),
}

impl XapiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            XapiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP error a client gets for this failure. Session refs in parameters are not echoed.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            XapiError::Api { code, params } => {
                let safe: Vec<&String> =
                    params.iter().filter(|p| !p.starts_with("OpaqueRef:") || code != "SESSION_INVALID").collect();
                let data = json!({ "code": code, "params": safe });
                match code.as_str() {
                    "SESSION_INVALID" => ApiError::unauthorized("XAPI session expired or revoked"),
                    "SESSION_AUTHENTICATION_FAILED" => ApiError::unauthorized("wrong user name or password"),
                    "RBAC_PERMISSION_DENIED" => {
                        ApiError::forbidden("not enough permissions on the pool").with_data(data)
                    }
                    "HANDLE_INVALID" | "UUID_INVALID" => ApiError::not_found("no such object").with_data(data),
                    "VM_BAD_POWER_STATE"
                    | "OPERATION_BLOCKED"
                    | "OPERATION_NOT_ALLOWED"
                    | "OTHER_OPERATION_IN_PROGRESS"
                    | "VDI_IN_USE"
                    | "VM_IS_TEMPLATE"
                    | "VM_IS_SNAPSHOT"
                    | "ONLY_REVERT_SNAPSHOT"
                    | "DEVICE_ALREADY_ATTACHED"
                    | "DEVICE_ALREADY_DETACHED"
                    | "DEVICE_ALREADY_EXISTS"
                    | "VBD_NOT_UNPLUGGABLE"
                    // The pool's state forbids it (hosts, storage, networks).
                    | "HOST_NOT_DISABLED"
                    | "HOST_IN_USE"
                    | "HOST_IS_LIVE"
                    | "HOST_OFFLINE"
                    | "HOST_DISABLED"
                    | "HOST_HAS_RESIDENT_VMS"
                    | "HOST_CANNOT_DESTROY_SELF"
                    | "HOST_POWER_ON_MODE_DISABLED"
                    | "CANNOT_EVACUATE_HOST"
                    | "NO_HOSTS_AVAILABLE"
                    | "VM_REQUIRES_SR"
                    | "SR_HAS_PBD"
                    | "SR_HAS_NO_PBDS"
                    | "SR_INDESTRUCTIBLE"
                    | "NETWORK_CONTAINS_VIF"
                    | "NETWORK_CONTAINS_PIF"
                    | "PIF_VLAN_EXISTS"
                    | "PIF_ALREADY_BONDED"
                    | "PIF_IS_MANAGEMENT_INTERFACE" => {
                        ApiError::new(409, format!("{code}({})", params.join(", "))).with_data(data)
                    }
                    // The request asked for something XAPI cannot make.
                    "INVALID_DEVICE"
                    | "MAC_INVALID"
                    | "VDI_INCOMPATIBLE_TYPE"
                    | "VBD_CDS_MUST_BE_READONLY"
                    | "VBD_NOT_REMOVABLE_MEDIA"
                    | "VDI_READONLY"
                    | "VDI_INVALID_SIZE"
                    | "SR_OPERATION_NOT_SUPPORTED"
                    | "FIELD_TYPE_ERROR"
                    | "ENUM_INVALID"
                    | "INVALID_VALUE"
                    | "MEMORY_CONSTRAINT_VIOLATION_ORDER"
                    | "INVALID_IP_ADDRESS_SPECIFIED"
                    | "VLAN_TAG_INVALID"
                    | "PIF_IS_VLAN"
                    | "PIF_BOND_NEEDS_MORE_MEMBERS"
                    | "PIF_CANNOT_BOND_CROSS_HOST"
                    | "PIF_HAS_NO_NETWORK_CONFIGURATION"
                    | "MTU_RANGE"
                    | "SR_UNKNOWN_DRIVER"
                    // The SM drivers' refusals of a device config missing what they need (server, path,
                    // location, device).
                    | "SR_BACKEND_FAILURE_37"
                    | "SR_BACKEND_FAILURE_38"
                    | "SR_BACKEND_FAILURE_77"
                    | "SR_BACKEND_FAILURE_90" => {
                        ApiError::bad_request(format!("{code}({})", params.join(", "))).with_data(data)
                    }
                    "SR_BACKEND_FAILURE_44" => ApiError::new(507, "not enough space on the SR").with_data(data),
                    _ => ApiError::bad_gateway(format!("XAPI error {code}")).with_data(data),
                }
            }
            XapiError::Transport(TransportError::Timeout) => ApiError::new(504, "XAPI did not answer in time"),
            XapiError::Transport(TransportError::Unreachable(why)) => {
                ApiError::bad_gateway("XAPI is unreachable").with_data(json!({ "reason": why }))
            }
            XapiError::Protocol(why) => {
                ApiError::bad_gateway("XAPI answered with an invalid reply").with_data(json!({ "reason": why }))
            }
        }
    }
}

/// Encodes a JSON-RPC 2.0 call.
pub fn encode_call(method: &str, params: &[Value], id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})).unwrap_or_default()
}

/// Decodes a JSON-RPC reply (2.0 or 1.0 envelopes).
pub fn decode_reply(status: u16, body: &[u8]) -> Result<Value, XapiError> {
    let reply: Value = serde_json::from_slice(body)
        .map_err(|_| XapiError::Protocol(format!("HTTP {status} with a body that is not JSON")))?;
    match reply.get("error") {
        None | Some(Value::Null) => reply.get("result").cloned().ok_or_else(|| XapiError::Protocol("no result".into())),
        Some(Value::Object(e)) => Err(XapiError::Api {
            code: e.get("message").and_then(Value::as_str).unwrap_or("UNKNOWN").to_string(),
            params: e
                .get("data")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(value_text).collect())
                .unwrap_or_default(),
        }),
        Some(Value::Array(a)) => Err(XapiError::Api {
            code: a.first().map(value_text).unwrap_or_default(),
            params: a.iter().skip(1).map(value_text).collect(),
        }),
        Some(_) => Err(XapiError::Protocol("malformed error member".into())),
    }
}

fn value_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// Seconds a call may wait by design: `event.from`'s timeout (its fourth parameter), nothing for other calls.
fn patience(method: &str, params: &[Value]) -> u64 {
    match (method, params.get(3).and_then(Value::as_f64)) {
        ("event.from", Some(wait)) if wait > 0.0 => wait.ceil().min(86_400.0) as u64,
        _ => 0,
    }
}

/// An XAPI client over a transport.
pub struct Xapi<'a, T> {
    transport: &'a T,
}

impl<'a, T: Transport> Xapi<'a, T> {
    pub fn new(transport: &'a T) -> Self {
        Xapi { transport }
    }

    /// GETs one of XAPI's small HTTP resources ([`Transport::get`]).
    pub async fn get(&self, path: &str, cookie: &str) -> Result<(u16, Vec<u8>), TransportError> {
        self.transport.get(path, cookie).await
    }

    /// PUTs a small body to one of XAPI's HTTP handlers ([`Transport::put`]).
    pub async fn put(&self, path: &str, cookie: &str, body: Vec<u8>) -> Result<u16, TransportError> {
        self.transport.put(path, cookie, body).await
    }

    /// The transport calls go through.
    pub fn transport(&self) -> &'a T {
        self.transport
    }

    /// One call; `params` include the session first where the method needs one.
    pub async fn call(&self, method: &str, params: &[Value]) -> Result<Value, XapiError> {
        let (status, body) = self
            .transport
            .post_json("/jsonrpc", encode_call(method, params, 1), patience(method, params))
            .await
            .map_err(XapiError::Transport)?;
        decode_reply(status, &body)
    }

    /// One call whose reply is returned undecoded (large `get_all_records` answers are then parsed record by
    /// record, borrowing from this buffer). XAPI errors are still decoded.
    pub async fn call_raw(&self, method: &str, params: &[Value]) -> Result<Vec<u8>, XapiError> {
        let (status, body) = self
            .transport
            .post_json("/jsonrpc", encode_call(method, params, 1), patience(method, params))
            .await
            .map_err(XapiError::Transport)?;
        #[derive(serde::Deserialize)]
        struct Probe<'a> {
            #[serde(borrow)]
            error: Option<&'a serde_json::value::RawValue>,
        }
        let probe: Probe<'_> = serde_json::from_slice(&body)
            .map_err(|_| XapiError::Protocol(format!("HTTP {status} with a body that is not JSON")))?;
        if probe.error.is_some_and(|e| e.get() != "null") {
            decode_reply(status, &body)?;
        }
        Ok(body)
    }

    /// Logs in; returns the session ref.
    pub async fn login(&self, user: &str, password: &str) -> Result<String, XapiError> {
        let v = self
            .call("session.login_with_password", &[json!(user), json!(password), json!("1.0"), json!("xo-edge")])
            .await?;
        v.as_str().map(str::to_string).ok_or_else(|| XapiError::Protocol("login result is not a string".into()))
    }

    /// Logs a session out.
    pub async fn logout(&self, session: &str) -> Result<(), XapiError> {
        self.call("session.logout", &[json!(session)]).await.map(|_| ())
    }

    /// Whether the session is a pool administrator: the local superuser, or a subject with the `pool-admin` role.
    pub async fn is_pool_admin(&self, session: &str) -> Result<bool, XapiError> {
        let s = json!(session);
        if self.call("session.get_is_local_superuser", &[s.clone(), s.clone()]).await? == json!(true) {
            return Ok(true);
        }
        let subject = self.call("session.get_subject", &[s.clone(), s.clone()]).await?;
        if subject.as_str().is_none_or(|r| r == "OpaqueRef:NULL") {
            return Ok(false);
        }
        let roles = self.call("subject.get_roles", &[s.clone(), subject]).await?;
        for role in roles.as_array().map(Vec::as_slice).unwrap_or_default() {
            if self.call("role.get_name_label", &[s.clone(), role.clone()]).await? == json!("pool-admin") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A cheap call that fails with `SESSION_INVALID` when the session is gone.
    pub async fn check_session(&self, session: &str) -> Result<(), XapiError> {
        self.call("session.get_uuid", &[json!(session), json!(session)]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_envelopes() {
        assert_eq!(decode_reply(200, br#"{"jsonrpc":"2.0","result":5,"id":1}"#), Ok(json!(5)));
        assert_eq!(decode_reply(200, br#"{"result":5,"error":null,"id":1}"#), Ok(json!(5)));
        assert_eq!(
            decode_reply(
                200,
                br#"{"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_INVALID","data":["OpaqueRef:x"]},"id":1}"#
            ),
            Err(XapiError::Api { code: "SESSION_INVALID".into(), params: vec!["OpaqueRef:x".into()] })
        );
        assert_eq!(
            decode_reply(200, br#"{"result":null,"error":["HANDLE_INVALID","VM","x"],"id":1}"#),
            Err(XapiError::Api { code: "HANDLE_INVALID".into(), params: vec!["VM".into(), "x".into()] })
        );
        assert!(matches!(decode_reply(500, b"<html>"), Err(XapiError::Protocol(_))));
    }

    #[test]
    fn maps_to_http_errors_without_leaking_sessions() {
        let e =
            XapiError::Api { code: "SESSION_INVALID".into(), params: vec!["OpaqueRef:secret".into()] }.to_api_error();
        assert_eq!(e.status, 401);
        assert!(!e.body().to_string().contains("secret"));
        let e = XapiError::Api {
            code: "VM_BAD_POWER_STATE".into(),
            params: vec!["r".into(), "halted".into(), "running".into()],
        };
        assert_eq!(e.to_api_error().status, 409);
        assert_eq!(XapiError::Transport(TransportError::Timeout).to_api_error().status, 504);
        assert_eq!(XapiError::Transport(TransportError::Unreachable("x".into())).to_api_error().status, 502);
    }
}
