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

    /// PUTs a small `body` (a few MiB at most: it is held whole) to one of XAPI's HTTP handlers at `base` (a pool
    /// host's base URL), `path` with its query, authenticated by the `cookie` header.
    fn put(
        &self,
        base: &str,
        path: &str,
        cookie: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<HttpAnswer, TransportError>> {
        let _ = (base, path, cookie, body);
        std::future::ready(Err(TransportError::Unreachable("this runtime cannot upload to XAPI".into())))
    }

    /// GETs one of XAPI's small HTTP resources (`/rrd_updates`) at `base`, `path` with its query, authenticated by
    /// the `cookie` header (the body is held whole: a few MiB at most).
    fn get(&self, base: &str, path: &str, cookie: &str) -> impl Future<Output = Result<HttpAnswer, TransportError>> {
        let _ = (base, path, cookie);
        std::future::ready(Err(TransportError::Unreachable("this runtime cannot fetch from XAPI".into())))
    }

    /// The base URL of the pool host at `address`, if the fence allows it
    /// ([`crate::xapi::pool::Fence::host_base`]).
    fn host_base(&self, address: &str) -> Result<String, String> {
        Err(format!("this runtime cannot reach {address}"))
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

    /// Sends this request's calls (and those of every transport of the same request) to the pool host at
    /// `address` from now on: the master moved there. Refused where the fence does not allow it
    /// ([`crate::xapi::pool::Fence::host_base`]) or the runtime cannot.
    fn retarget(&self, address: &str) -> Result<(), String> {
        Err(format!("this runtime cannot reach {address}"))
    }

    /// The base URL calls go to now (`xapi_url`, or the host [`Transport::retarget`] moved them to).
    fn base(&self) -> String {
        String::new()
    }

    /// The addresses of the pool's hosts this request knows of (from its token), tried in turn when the master
    /// does not answer.
    fn candidates(&self) -> Vec<String> {
        Vec::new()
    }

    /// Records the pool's host addresses for [`Transport::candidates`].
    fn set_candidates(&self, addresses: Vec<String>) {
        let _ = addresses;
    }
}

/// An answer of one of XAPI's HTTP handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Most moves from host to host for one call (`HOST_IS_SLAVE`, or a master that does not answer).
const MAX_MOVES: usize = 4;

/// The master a `HOST_IS_SLAVE` reply names.
fn slave_of(reply: &[u8]) -> Option<String> {
    const CODE: &[u8] = b"HOST_IS_SLAVE";
    if !reply.windows(CODE.len()).any(|w| w == CODE) {
        return None;
    }
    match decode_reply(200, reply) {
        Err(XapiError::Api { code, params }) if code == "HOST_IS_SLAVE" => params.into_iter().next(),
        _ => None,
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
                    "SESSION_INVALID" => ApiError::unauthorized(SESSION_GONE),
                    // Only left when the master named could not be followed (see `Xapi::exchange`).
                    "HOST_IS_SLAVE" => ApiError::bad_gateway(format!(
                        "the pool's master is now {}, which this edge may not reach: set pool_hosts (and Spin's \
                         allowed_outbound_hosts with it) to cover every host of the pool",
                        params.first().map(String::as_str).unwrap_or("another host")
                    ))
                    .with_data(data),
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
                    | "PIF_IS_MANAGEMENT_INTERFACE"
                    // The migration network has no address on the destination host.
                    | "INTERFACE_HAS_NO_IP"
                    | "PIF_NOT_PRESENT"
                    | "REQUIRED_PIF_IS_UNPLUGGED"
                    | "HOST_CANNOT_ATTACH_NETWORK" => {
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

/// What a client is told when XAPI no longer knows its session (`SESSION_INVALID`); [`session_gone`] tells it.
pub const SESSION_GONE: &str = "XAPI session expired or revoked";

/// Whether `e` is XAPI's `SESSION_INVALID`, as [`XapiError::to_api_error`] turns it.
pub fn session_gone(e: &ApiError) -> bool {
    e.status == 401 && e.data.as_ref().and_then(|d| d.get("reason")).and_then(Value::as_str) == Some(SESSION_GONE)
}

/// An XAPI client over a transport.
pub struct Xapi<'a, T> {
    transport: &'a T,
    /// Calls XAPI answered without an error so far.
    succeeded: std::cell::Cell<u32>,
}

impl<'a, T: Transport> Xapi<'a, T> {
    pub fn new(transport: &'a T) -> Self {
        Xapi { transport, succeeded: std::cell::Cell::new(0) }
    }

    /// How many calls XAPI answered without an error so far: whether a failed request changed anything yet.
    pub fn succeeded(&self) -> u32 {
        self.succeeded.get()
    }

    fn count<V, E>(&self, result: Result<V, E>) -> Result<V, E> {
        if result.is_ok() {
            self.succeeded.set(self.succeeded.get().saturating_add(1));
        }
        result
    }

    /// GETs one of XAPI's small HTTP resources from the master ([`Transport::get`]), following a redirect to the
    /// pool host it names ([`Xapi::follow`]); `session` authenticates the read of the pool's hosts that needs.
    pub async fn get(&self, path: &str, session: &str) -> Result<(u16, Vec<u8>), ApiError> {
        self.get_at(None, path, session).await
    }

    /// [`Xapi::get`] from the pool host at `address` (`None`: the master), for what XAPI serves on each host only
    /// (`/rrd_updates`, a host's logs).
    pub async fn get_at(&self, address: Option<&str>, path: &str, session: &str) -> Result<(u16, Vec<u8>), ApiError> {
        let mut base = match address {
            Some(a) => self.transport.host_base(a).map_err(ApiError::bad_gateway)?,
            None => self.transport.base(),
        };
        let cookie = format!("session_id={session}");
        let mut visited = vec![base.clone()];
        loop {
            let answer =
                self.transport.get(&base, path, &cookie).await.map_err(|e| XapiError::Transport(e).to_api_error())?;
            match (answer.status, &answer.location) {
                (302, Some(location)) => base = self.follow(location, session, &mut visited).await?,
                _ => return Ok((answer.status, answer.body)),
            }
        }
    }

    /// PUTs a small body to one of XAPI's HTTP handlers on the master ([`Transport::put`]), following a redirect to
    /// the pool host it names: XAPI decides before it reads a byte (`ocaml/xapi/import_raw_vdi.ml`, `import`), and
    /// the body, held whole, goes again to the other host.
    pub async fn put(&self, path: &str, session: &str, body: Vec<u8>) -> Result<u16, ApiError> {
        let mut base = self.transport.base();
        let cookie = format!("session_id={session}");
        let mut visited = vec![base.clone()];
        loop {
            let answer = self
                .transport
                .put(&base, path, &cookie, body.clone())
                .await
                .map_err(|e| XapiError::Transport(e).to_api_error())?;
            match (answer.status, &answer.location) {
                (302, Some(location)) => base = self.follow(location, session, &mut visited).await?,
                _ => return Ok(answer.status),
            }
        }
    }

    /// Where an HTTP handler's redirect to `location` leads: the base URL of the pool host it names, checked against
    /// the pool's hosts (`host.get_all_records`, read with `session`) and the fence ([`crate::xapi::pool::follow`]).
    pub async fn follow(&self, location: &str, session: &str, visited: &mut Vec<String>) -> Result<String, ApiError> {
        let records = self.call_raw("host.get_all_records", &[json!(session)]).await.map_err(|e| e.to_api_error())?;
        let pool = super::pool::addresses_of(&records).map_err(ApiError::bad_gateway)?;
        super::pool::follow_with(location, &pool, visited, |a| self.transport.host_base(a))
            .map_err(|refused| ApiError::bad_gateway(refused.reason()))
    }

    /// The transport calls go through.
    pub fn transport(&self) -> &'a T {
        self.transport
    }

    /// One call; `params` include the session first where the method needs one.
    pub async fn call(&self, method: &str, params: &[Value]) -> Result<Value, XapiError> {
        let (status, body) = self.exchange(method, params).await?;
        self.count(decode_reply(status, &body))
    }

    /// Sends one call to the pool's master, wherever it is now: a host answering `HOST_IS_SLAVE` sends the call on
    /// to the master it names (`ocaml/xapi/session_check.ml`, `check`; `xapi_session.ml`, login), and when the
    /// master does not answer, the pool's other known hosts are asked in turn (one of them is the new master, the
    /// others name it). A call whose master broke off is never sent to that master again: it may have run there.
    async fn exchange(&self, method: &str, params: &[Value]) -> Result<(u16, Vec<u8>), XapiError> {
        let body = encode_call(method, params, 1);
        let patience = patience(method, params);
        let mut unreachable: Vec<String> = Vec::new();
        let mut others: Option<Vec<String>> = None;
        let mut moves = 0;
        loop {
            let tried = self.transport.base();
            match self.transport.post_json("/jsonrpc", body.clone(), patience).await {
                Ok((status, reply)) => {
                    let Some(master) = slave_of(&reply) else { return Ok((status, reply)) };
                    if moves >= MAX_MOVES || self.transport.retarget(&master).is_err() {
                        return Ok((status, reply));
                    }
                    if unreachable.contains(&self.transport.base()) {
                        return Err(XapiError::Transport(TransportError::Unreachable(
                            "the pool's master broke off the call".into(),
                        )));
                    }
                    moves += 1;
                }
                Err(TransportError::Unreachable(why)) => {
                    unreachable.push(tried);
                    let queue = others.get_or_insert_with(|| {
                        let mut c = self.transport.candidates();
                        c.reverse();
                        c
                    });
                    loop {
                        let Some(next) = queue.pop() else {
                            return Err(XapiError::Transport(TransportError::Unreachable(why)));
                        };
                        if self.transport.retarget(&next).is_ok() && !unreachable.contains(&self.transport.base()) {
                            break;
                        }
                    }
                    moves += 1;
                    if moves > MAX_MOVES {
                        return Err(XapiError::Transport(TransportError::Unreachable(why)));
                    }
                }
                Err(e) => return Err(XapiError::Transport(e)),
            }
        }
    }

    /// One call whose reply is returned undecoded (large `get_all_records` answers are then parsed record by
    /// record, borrowing from this buffer). XAPI errors are still decoded.
    pub async fn call_raw(&self, method: &str, params: &[Value]) -> Result<Vec<u8>, XapiError> {
        let (status, body) = self.exchange(method, params).await?;
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
        self.count(Ok(body))
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
    fn a_gone_session_is_told_apart() {
        let gone = XapiError::Api { code: "SESSION_INVALID".into(), params: vec!["OpaqueRef:x".into()] };
        assert!(session_gone(&gone.to_api_error()));
        assert!(!session_gone(&ApiError::unauthorized("token revoked")));
        let denied = XapiError::Api { code: "RBAC_PERMISSION_DENIED".into(), params: vec![] };
        assert!(!session_gone(&denied.to_api_error()));
    }

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

    /// A pool on paper: each base URL answers a fixed reply or is unreachable; every request is logged.
    struct Pool {
        base: std::cell::RefCell<String>,
        answers: std::collections::HashMap<&'static str, Option<&'static str>>,
        candidates: Vec<String>,
        log: std::cell::RefCell<Vec<String>>,
    }

    impl Pool {
        fn new(answers: &[(&'static str, Option<&'static str>)], candidates: &[&str]) -> Pool {
            Pool {
                base: std::cell::RefCell::new("http://a".into()),
                answers: answers.iter().copied().collect(),
                candidates: candidates.iter().map(|c| c.to_string()).collect(),
                log: std::cell::RefCell::new(Vec::new()),
            }
        }
    }

    impl Transport for Pool {
        fn post_json(
            &self,
            _: &str,
            _: Vec<u8>,
            _: u64,
        ) -> impl Future<Output = Result<(u16, Vec<u8>), TransportError>> {
            let base = self.base.borrow().clone();
            self.log.borrow_mut().push(base.clone());
            std::future::ready(match self.answers.get(base.as_str()).copied().flatten() {
                Some(reply) => Ok((200, reply.as_bytes().to_vec())),
                None => Err(TransportError::Unreachable("refused".into())),
            })
        }
        fn host_base(&self, address: &str) -> Result<String, String> {
            if address == "fenced" {
                return Err("fenced is not allowed".into());
            }
            Ok(format!("http://{address}"))
        }
        fn retarget(&self, address: &str) -> Result<(), String> {
            *self.base.borrow_mut() = self.host_base(address)?;
            Ok(())
        }
        fn base(&self) -> String {
            self.base.borrow().clone()
        }
        fn candidates(&self) -> Vec<String> {
            self.candidates.clone()
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    const OK: &str = r#"{"jsonrpc":"2.0","result":"done","id":1}"#;
    const SLAVE_OF_B: &str = r#"{"jsonrpc":"2.0","error":{"code":1,"message":"HOST_IS_SLAVE","data":["b"]},"id":1}"#;
    const SLAVE_OF_A: &str = r#"{"jsonrpc":"2.0","error":{"code":1,"message":"HOST_IS_SLAVE","data":["a"]},"id":1}"#;

    #[test]
    fn calls_follow_the_master_a_slave_names() {
        let pool = Pool::new(&[("http://a", Some(SLAVE_OF_B)), ("http://b", Some(OK))], &[]);
        let xapi = Xapi::new(&pool);
        assert_eq!(run(xapi.call("VM.get_all", &[json!("s")])), Ok(json!("done")));
        // The rest of the request goes straight to the master.
        assert_eq!(run(xapi.call("VM.get_all", &[json!("s")])), Ok(json!("done")));
        assert_eq!(*pool.log.borrow(), ["http://a", "http://b", "http://b"]);
    }

    #[test]
    fn a_master_that_does_not_answer_is_looked_for_among_the_known_hosts() {
        // a is down; c is down too; d is a slave naming b, the new master.
        let answers = [("http://a", None), ("http://c", None), ("http://d", Some(SLAVE_OF_B)), ("http://b", Some(OK))];
        let pool = Pool::new(&answers, &["a", "c", "d"]);
        let xapi = Xapi::new(&pool);
        assert_eq!(run(xapi.call("VM.get_all", &[json!("s")])), Ok(json!("done")));
        assert_eq!(*pool.log.borrow(), ["http://a", "http://c", "http://d", "http://b"]);
        // Without known hosts, the master's silence is the answer.
        let pool = Pool::new(&[("http://a", None)], &[]);
        let e = run(Xapi::new(&pool).call("VM.get_all", &[json!("s")])).unwrap_err();
        assert_eq!(e.to_api_error().status, 502);
    }

    #[test]
    fn a_call_the_master_broke_off_is_not_sent_to_it_again() {
        // a (the master) fails the call; the other host names a as the master: the call may have run there.
        let pool = Pool::new(&[("http://a", None), ("http://d", Some(SLAVE_OF_A))], &["d"]);
        let e = run(Xapi::new(&pool).call("VM.destroy", &[json!("s"), json!("vm")])).unwrap_err();
        assert!(matches!(e, XapiError::Transport(TransportError::Unreachable(_))), "{e:?}");
        assert_eq!(*pool.log.borrow(), ["http://a", "http://d"]);
    }

    #[test]
    fn a_master_outside_the_fence_is_not_followed_and_says_what_to_set() {
        const SLAVE_OF_FENCED: &str =
            r#"{"jsonrpc":"2.0","error":{"code":1,"message":"HOST_IS_SLAVE","data":["fenced"]},"id":1}"#;
        let pool = Pool::new(&[("http://a", Some(SLAVE_OF_FENCED))], &[]);
        let e = run(Xapi::new(&pool).call("VM.get_all", &[json!("s")])).unwrap_err().to_api_error();
        assert_eq!(e.status, 502);
        assert!(e.message.contains("pool_hosts"), "{}", e.message);
        assert_eq!(*pool.log.borrow(), ["http://a"]);
        // Two slaves naming each other: a bounded number of moves, then XAPI's answer.
        let pool = Pool::new(&[("http://a", Some(SLAVE_OF_B)), ("http://b", Some(SLAVE_OF_A))], &[]);
        assert!(run(Xapi::new(&pool).call("VM.get_all", &[json!("s")])).is_err());
        assert_eq!(pool.log.borrow().len(), MAX_MOVES + 1);
    }
}
