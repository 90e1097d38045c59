//! JSON-RPC 1.0 and 2.0 at `POST /jsonrpc`, with XAPI's exact envelopes.
//!
//! v2 (`"jsonrpc": "2.0"`): `{"jsonrpc","result","id"}` or `{"jsonrpc","error":{"code":1,"message":CODE,"data":[…]},"id"}`;
//! v1 (no `jsonrpc` member): `{"result","error":null,"id"}` or `{"result":null,"error":[CODE,…],"id"}`.
//! A request that is not a JSON object with a string `method`, an array `params` and a non-null `id` is
//! malformed (XAPI answers those with an HTML 500). This module only encodes and decodes.

use crate::sim::XapiError;
use crate::value::Value;
use serde_json::{json, Value as J};

/// A decoded call.
#[derive(Debug)]
pub struct Request {
    pub v2: bool,
    pub id: J,
    pub method: String,
    pub params: Vec<Value>,
}

/// Decodes a request body; `Err` means malformed.
pub fn parse(body: &[u8]) -> Result<Request, String> {
    let j: J = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let obj = j.as_object().ok_or("request is not an object")?;
    let v2 = match obj.get("jsonrpc") {
        None => false,
        Some(J::String(s)) if s == "2.0" => true,
        Some(other) => return Err(format!("unsupported jsonrpc version {other}")),
    };
    let method = obj.get("method").and_then(J::as_str).ok_or("missing method")?.to_string();
    let params = match obj.get("params") {
        Some(J::Array(a)) => a.iter().map(Value::from_json).collect(),
        None if v2 => Vec::new(),
        _ => return Err("params must be an array".into()),
    };
    let id = obj.get("id").cloned().unwrap_or(J::Null);
    if id.is_null() {
        return Err("id must not be null".into());
    }
    Ok(Request { v2, id, method, params })
}

/// Encodes a reply.
pub fn reply(req: &Request, result: &Result<Value, XapiError>) -> J {
    match (result, req.v2) {
        (Ok(v), true) => json!({"jsonrpc": "2.0", "result": v.to_json(), "id": req.id}),
        (Ok(v), false) => json!({"result": v.to_json(), "error": null, "id": req.id}),
        (Err(e), true) => json!({
            "jsonrpc": "2.0",
            "error": {"code": 1, "message": e.code(), "data": e.0.get(1..).unwrap_or(&[])},
            "id": req.id
        }),
        (Err(e), false) => json!({"result": null, "error": e.0, "id": req.id}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_match_xapi() {
        let r2 = parse(br#"{"jsonrpc":"2.0","method":"VM.get_all","params":["s"],"id":7}"#).unwrap();
        let r1 = parse(br#"{"method":"VM.get_all","params":["s"],"id":"a"}"#).unwrap();
        let err = Err(XapiError::new("SESSION_INVALID", &["s"]));
        assert_eq!(
            reply(&r2, &err),
            json!({"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_INVALID","data":["s"]},"id":7})
        );
        assert_eq!(reply(&r1, &err), json!({"result":null,"error":["SESSION_INVALID","s"],"id":"a"}));
        assert_eq!(reply(&r2, &Ok(Value::Int(1))), json!({"jsonrpc":"2.0","result":1,"id":7}));
        assert_eq!(reply(&r1, &Ok(Value::Int(1))), json!({"result":1,"error":null,"id":"a"}));
        assert!(parse(b"[1]").is_err());
        assert!(parse(br#"{"method":"x","params":[],"id":null}"#).is_err());
        assert!(parse(b"{nope").is_err());
    }
}
