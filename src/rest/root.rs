//! `GET /rest/v0`: the list of collections, as legacy XO answers it (monitoring probes rely on it).

use super::auth::Caller;
use super::{Ctx, Reply};
use crate::error::ApiError;
use crate::xapi::Transport;

/// The XAPI-backed collections of the REST API.
pub const COLLECTIONS: &[&str] = &[
    "vms",
    "vm-snapshots",
    "vm-templates",
    "vm-controllers",
    "hosts",
    "pools",
    "srs",
    "vdis",
    "vdi-snapshots",
    "networks",
    "vbds",
    "vifs",
    "pifs",
    "messages",
    "tasks",
];

/// Legacy XO's streamed JSON array layout: `[`, items separated by `,\n`, `]` on its own line.
pub fn json_array_body(items: &[serde_json::Value]) -> Vec<u8> {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&serde_json::to_string_pretty(item).unwrap_or_default());
    }
    out.push_str("\n]\n");
    out.into_bytes()
}

/// Answers the collection list once XAPI confirms the session is alive (so revoked tokens are refused here too).
pub async fn list<T: Transport>(ctx: &Ctx<'_, T>, caller: Caller) -> Result<Reply, ApiError> {
    ctx.xapi
        .check_session(&caller.session)
        .await
        .map_err(|e| e.to_api_error())?;
    let items: Vec<serde_json::Value> = COLLECTIONS
        .iter()
        .map(|c| serde_json::json!(format!("/rest/v0/{c}")))
        .collect();
    Ok(Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json_array_body(&items),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_layout_matches_legacy_xo() {
        assert_eq!(json_array_body(&[]), b"[\n]\n");
        let v = vec![serde_json::json!("/a"), serde_json::json!({"x": 1})];
        assert_eq!(
            String::from_utf8(json_array_body(&v)).unwrap(),
            "[\n\"/a\",\n{\n  \"x\": 1\n}\n]\n"
        );
    }
}
