//! Issue 16, items 1 and 2, end to end through the runtime: `PATCH /rest/v0/<collection>/<id>` (names,
//! descriptions, tags; every XAPI call awaited, 204 only when all succeeded, partial failures say what was applied)
//! and tag `PUT`/`DELETE` (URL-decoded, idempotent), on every collection whose XAPI class has them.

mod common;

use common::Edge;
use serde_json::{json, Value as J};

const PASSWORD: &str = "xapi-sim";

fn first(edge: &Edge, t: &str, coll: &str) -> String {
    let r = edge.get(&format!("/rest/v0/{coll}?fields=uuid&limit=1")).bearer_auth(t).send().unwrap();
    r.json::<J>().unwrap()[0]["uuid"].as_str().unwrap_or_else(|| panic!("no {coll}")).to_string()
}

fn object(edge: &Edge, t: &str, coll: &str, id: &str) -> J {
    edge.get(&format!("/rest/v0/{coll}/{id}")).bearer_auth(t).send().unwrap().json().unwrap()
}

fn patch(edge: &Edge, t: &str, path: &str, body: &str) -> (u16, J) {
    let r = edge.http.patch(format!("{}{path}", edge.url)).bearer_auth(t).body(body.to_string()).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(J::Null))
}

/// Calls the simulator saw of methods starting with `prefix`.
fn calls(edge: &Edge, prefix: &str) -> u64 {
    let stats = edge.sim_stats();
    stats["calls"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains(prefix))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum()
}

#[test]
fn patch_renames_describes_and_retags_every_editable_collection() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    for coll in ["vms", "vm-snapshots", "vm-templates", "vdis", "vdi-snapshots", "srs", "networks", "hosts", "pools"] {
        let id = first(&edge, &t, coll);
        let body =
            json!({"name_label": format!("{coll} renamed"), "name_description": "by xo-edge", "tags": ["a", "b c"]});
        let (status, answer) = patch(&edge, &t, &format!("/rest/v0/{coll}/{id}"), &body.to_string());
        assert_eq!(status, 204, "{coll}: {answer}");
        let o = object(&edge, &t, coll, &id);
        assert_eq!(o["name_label"], format!("{coll} renamed"), "{coll}");
        assert_eq!(o["name_description"], "by xo-edge", "{coll}");
        assert_eq!(o["tags"], json!(["a", "b c"]), "{coll}");
        // Tags replace: the new list is the whole list.
        assert_eq!(patch(&edge, &t, &format!("/rest/v0/{coll}/{id}"), r#"{"tags":["z"]}"#).0, 204);
        assert_eq!(object(&edge, &t, coll, &id)["tags"], json!(["z"]), "{coll}");
    }
    // An empty body changes nothing and answers 204.
    let vm = first(&edge, &t, "vms");
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{vm}"), "{}").0, 204);
}

#[test]
fn bad_patches_are_refused_before_any_write() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = first(&edge, &t, "vms");
    let writes = calls(&edge, ".set_");
    let path = format!("/rest/v0/vms/{vm}");
    let (status, e) = patch(&edge, &t, &path, r#"{"name_label":"x","power_state":"Halted"}"#);
    assert_eq!(status, 400);
    assert_eq!(e["data"]["unknown"], json!(["power_state"]));
    assert_eq!(e["data"]["editable"], json!(["name_label", "name_description", "tags"]));
    for body in [r#"{"tags":"a"}"#, r#"{"name_label":3}"#, "[]", "{", ""] {
        assert_eq!(patch(&edge, &t, &path, body).0, 400, "{body}");
    }
    assert_eq!(calls(&edge, ".set_"), writes, "no XAPI write for a refused body");
    assert!(object(&edge, &t, "vms", &vm)["name_label"].as_str().is_some_and(|n| n != "x"));
    // Objects that do not exist, ids that cannot exist, collections with nothing to edit, other methods.
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{missing}"), r#"{"name_label":"x"}"#).0, 404);
    assert_eq!(patch(&edge, &t, "/rest/v0/vms/not-an-id", r#"{"name_label":"x"}"#).0, 404);
    let vbd = first(&edge, &t, "vbds");
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vbds/{vbd}"), r#"{"name_label":"x"}"#);
    assert_eq!((status, e["error"].as_str().unwrap().contains("cannot be edited")), (405, true));
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH, DELETE");
    // Without credentials, or cross-site with only a cookie: refused before anything else.
    let r = edge.http.patch(format!("{}{path}", edge.url)).body(r#"{"name_label":"x"}"#).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = edge
        .http
        .patch(format!("{}{path}", edge.url))
        .header("cookie", format!("authenticationToken={t}"))
        .header("origin", "https://evil.example")
        .body(r#"{"name_label":"x"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(calls(&edge, ".set_"), writes);
}

/// A write XAPI refuses half-way: the answer is XAPI's error and says which fields were applied (XO answers 204
/// before XAPI has answered and loses the failure).
#[test]
fn a_partial_patch_says_what_was_applied() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = first(&edge, &t, "vms");
    let faults = json!({"fail": [{"method": "VM.set_tags", "nth": 1, "error": ["INTERNAL_ERROR", "disk full"]}]});
    assert!(edge.http.put(format!("{}/_sim/faults", edge.sim_url)).json(&faults).send().unwrap().status().is_success());
    let body = r#"{"name_label":"half","name_description":"done too","tags":["never"]}"#;
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vms/{vm}"), body);
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["data"]["applied"], json!(["name_label", "name_description"]));
    assert_eq!(e["data"]["notApplied"], json!(["tags"]));
    assert_eq!(e["data"]["code"], "INTERNAL_ERROR");
    assert!(e["error"].as_str().unwrap().starts_with("tags was not changed"), "{e}");
    let o = object(&edge, &t, "vms", &vm);
    assert_eq!((o["name_label"].as_str(), o["name_description"].as_str()), (Some("half"), Some("done too")));
    assert!(!o["tags"].as_array().unwrap().contains(&json!("never")));
}

#[test]
fn tags_are_added_and_removed_one_at_a_time_idempotently() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    for coll in ["vms", "vdis", "srs", "networks", "hosts", "pools", "vm-templates"] {
        let id = first(&edge, &t, coll);
        let tag_url = format!("{}/rest/v0/{coll}/{id}/tags/prod%2Feu%20west", edge.url);
        for _ in 0..2 {
            assert_eq!(edge.http.put(&tag_url).bearer_auth(&t).send().unwrap().status().as_u16(), 204, "{coll}");
        }
        let tags = object(&edge, &t, coll, &id)["tags"].clone();
        assert_eq!(tags.as_array().unwrap().iter().filter(|x| *x == "prod/eu west").count(), 1, "{coll}: {tags}");
        for _ in 0..2 {
            assert_eq!(edge.http.delete(&tag_url).bearer_auth(&t).send().unwrap().status().as_u16(), 204, "{coll}");
        }
        assert!(!object(&edge, &t, coll, &id)["tags"].as_array().unwrap().contains(&json!("prod/eu west")));
    }
    let vif = first(&edge, &t, "vifs");
    let r = edge.http.put(format!("{}/rest/v0/vifs/{vif}/tags/x", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let missing = "00000000-0000-4000-8000-000000000000";
    let r = edge.http.put(format!("{}/rest/v0/vms/{missing}/tags/x", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
