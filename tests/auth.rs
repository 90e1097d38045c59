//! Authentication end to end: the bundle under wasmtime serve, the XAPI simulator, plain HTTP.

mod common;
use common::{Edge, SECRET};
use serde_json::{json, Value as J};
use std::process::Command;
use xo_edge::auth::token::{self, TokenClaims};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn status(r: reqwest::blocking::Response) -> u16 {
    r.status().as_u16()
}

#[test]
fn token_creation_answers_xos_shape_and_the_seed_curl_line_works() {
    let edge = Edge::start();
    let r = edge
        .http
        .post(format!("{}/rest/v0/users/authentication_tokens", edge.url))
        .basic_auth("root", Some("xapi-sim"))
        .json(&json!({"description": "ci token", "expiresIn": "1 hour", "client": {"id": "ci"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let body: J = r.json().unwrap();
    let t = &body["token"];
    let id = t["id"].as_str().unwrap();
    assert_eq!(t["user_id"], "root");
    assert_eq!(t["description"], "ci token");
    assert_eq!(t["client"], json!({"id": "ci"}), "XO's record carries the client");
    let (created, expiration) = (t["created_at"].as_u64().unwrap(), t["expiration"].as_u64().unwrap());
    assert_eq!(expiration - created, 3_600_000, "milliseconds, as XO");
    assert!(cookie.starts_with(&format!("authenticationToken={id};")));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/rest", "Max-Age=3600"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // The seed's line, verbatim but for the host: curl -b authenticationToken=… http://…/rest/v0/
    let out = Command::new("curl")
        .args(["-s", "-b", &format!("authenticationToken={id}"), &format!("{}/rest/v0/", edge.url)])
        .output()
        .unwrap();
    let list: J = serde_json::from_slice(&out.stdout).expect("curl got JSON");
    assert!(list.as_array().unwrap().contains(&json!("/rest/v0/vms")));
    // The `token` cookie name works too.
    assert_eq!(status(edge.get("/rest/v0").header("cookie", format!("token={id}")).send().unwrap()), 200);
}

#[test]
fn bad_tokens_get_401_without_any_xapi_call() {
    let edge = Edge::start();
    let good = edge.token("root", "xapi-sim");
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let session =
        edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].as_str().unwrap().to_string();
    let expired = token::seal(
        &TokenClaims { iat: now() - 7200, exp: now() - 3600, ..TokenClaims::new(&session, "root", 0, 0, 0) },
        SECRET.as_bytes(),
    );
    let foreign =
        token::seal(&TokenClaims::new(&session, "root", now(), 3600, 3600), b"another-secret-of-more-than-32-bytes!!");
    let before = edge.sim_calls();
    let cases: Vec<(&str, reqwest::blocking::RequestBuilder)> = vec![
        ("missing", edge.get("/rest/v0")),
        ("garbage", edge.get("/rest/v0").header("cookie", "authenticationToken=garbage")),
        ("tampered", edge.get("/rest/v0").header("cookie", format!("authenticationToken={tampered}"))),
        ("foreign secret", edge.get("/rest/v0").bearer_auth(&foreign)),
        ("oversized", edge.get("/rest/v0").bearer_auth("x".repeat(5000))),
        ("bad authorization", edge.get("/rest/v0").header("authorization", "Digest abc")),
        ("wrong route too", edge.get("/rest/v0/vms").header("cookie", "authenticationToken=garbage")),
    ];
    for (name, req) in cases {
        let r = req.send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{name}");
        assert!(r.headers().get("www-authenticate").is_none(), "{name}: only the token endpoint challenges");
        assert_eq!(r.headers()["content-type"], "application/json", "{name}");
        let body: J = r.json().unwrap();
        assert_eq!(body["error"], "invalid credentials", "{name}");
    }
    assert_eq!(edge.sim_calls(), before, "a rejected token costs no XAPI call");
    // An expired token costs one: its session is logged out (tests/security.rs).
    let r = edge.get("/rest/v0").header("cookie", format!("authenticationToken={expired}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<J>().unwrap()["data"]["reason"], "token expired");
}

#[test]
fn bearer_and_basic_work_on_any_route() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    assert_eq!(status(edge.get("/rest/v0").bearer_auth(&t).send().unwrap()), 200);
    let sessions = edge.sim_stats()["sessions"].as_u64().unwrap();
    let r = edge.get("/rest/v0/").basic_auth("root", Some("xapi-sim")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        edge.sim_stats()["sessions"].as_u64().unwrap(),
        sessions,
        "the Basic request's XAPI session was logged out"
    );
    // An external pool-admin (not the local superuser) is an administrator too.
    assert_eq!(status(edge.get("/rest/v0").basic_auth("admin", Some("admin-password")).send().unwrap()), 200);
    assert_eq!(status(edge.get("/rest/v0").basic_auth("root", Some("wrong")).send().unwrap()), 401);
}

/// A read-only user's right password gets exactly what a wrong password gets (a different answer would confirm
/// the password), and its session is logged out.
#[test]
fn read_only_users_are_refused_like_wrong_passwords() {
    let edge = Edge::start();
    let attempt = |user: &str, password: &str| {
        let r = edge
            .http
            .post(format!("{}/rest/v0/users/authentication_tokens", edge.url))
            .basic_auth(user, Some(password))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, body) = attempt("auditor", "auditor-password");
    assert_eq!(status, 401);
    assert!(body.contains("not a pool administrator"), "{body}");
    assert_eq!((status, body.clone()), attempt("auditor", "wrong-password"));
    assert_eq!((status, body), attempt("nobody", "wrong-password"));
    let r = edge.get("/rest/v0").basic_auth("auditor", Some("auditor-password")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(edge.sim_stats()["sessions"], 0, "refused sessions are logged out");
}

#[test]
fn refresh_cookie_past_half_life_works() {
    let edge = Edge::start_with(&[("XO_EDGE_TOKEN_LIFETIME", "4")], xapi_sim::Options::default());
    let first = |coll: &str, filter: &str| -> String {
        let r = edge.get(&format!("/rest/v0/{coll}?fields=uuid&filter={filter}")).basic_auth("root", Some("xapi-sim"));
        r.send().unwrap().json::<J>().unwrap()[0]["uuid"].as_str().unwrap().to_string()
    };
    let (vdi, sr) = (first("vdis", "name_label:rocky"), first("srs", "name_label:NFS"));
    let t = edge.token("root", "xapi-sim");
    let r = edge.get("/rest/v0").bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "fresh tokens are not refreshed");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = edge.get("/rest/v0").header("cookie", format!("authenticationToken={t}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let fresh = cookie.strip_prefix("authenticationToken=").unwrap().split(';').next().unwrap().to_string();
    assert_ne!(fresh, t);
    assert!(cookie.contains("HttpOnly") && cookie.contains("Max-Age=4"));
    // Transfers renew it too.
    let export = edge.http.head(format!("{}/rest/v0/vdis/{vdi}.raw", edge.url)).bearer_auth(&t).send().unwrap();
    assert!(export.headers().get("set-cookie").is_some(), "an export renews the token");
    let import =
        edge.http.post(format!("{}/rest/v0/srs/{sr}/vdis?raw", edge.url)).bearer_auth(&t).body(vec![1u8; 4096]);
    let import = import.send().unwrap();
    assert_eq!(import.status().as_u16(), 201);
    assert!(import.headers().get("set-cookie").is_some(), "an import renews the token");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // The old token has expired by now; the refreshed one still works.
    assert_eq!(status(edge.get("/rest/v0").bearer_auth(&fresh).send().unwrap()), 200);
    // Presenting the expired one ends the XAPI session they share (README, "Tokens"): a browser never sends an
    // expired cookie, so whoever presents one holds a copy, and the session should not outlive it.
    assert_eq!(status(edge.get("/rest/v0").bearer_auth(&t).send().unwrap()), 401);
    assert_eq!(status(edge.get("/rest/v0").bearer_auth(&fresh).send().unwrap()), 401);
}

#[test]
fn revoke_makes_the_token_and_its_copies_401() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let sessions = edge.sim_stats()["sessions"].as_u64().unwrap();
    let r = edge
        .http
        .delete(format!("{}/rest/v0/users/me/authentication_tokens/current", edge.url))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(edge.sim_stats()["sessions"].as_u64().unwrap(), sessions - 1, "the XAPI session is logged out");
    assert_eq!(status(edge.get("/rest/v0").bearer_auth(&t).send().unwrap()), 401);
    assert_eq!(status(edge.get("/rest/v0").header("cookie", format!("authenticationToken={t}")).send().unwrap()), 401);
    // XAPI expiring the session has the same effect.
    let t2 = edge.token("root", "xapi-sim");
    edge.http.post(format!("{}/_sim/sessions/expire", edge.sim_url)).json(&json!({})).send().unwrap();
    assert_eq!(status(edge.get("/rest/v0").bearer_auth(&t2).send().unwrap()), 401);
}

#[test]
fn token_creation_validates_its_input() {
    let edge = Edge::start();
    let url = format!("{}/rest/v0/users/authentication_tokens", edge.url);
    let post = || edge.http.post(&url).basic_auth("root", Some("xapi-sim"));
    assert_eq!(status(post().body("{not json").send().unwrap()), 400);
    assert_eq!(status(post().json(&json!({"expiresIn": "forever"})).send().unwrap()), 400);
    assert_eq!(status(post().json(&json!({"expiresIn": 1000})).send().unwrap()), 400, "below the 60 s minimum");
    assert_eq!(status(post().json(&json!({"expiresIn": "1 year"})).send().unwrap()), 400, "above token_max_lifetime");
    assert_eq!(status(post().json(&json!({"description": 5})).send().unwrap()), 400);
    assert_eq!(status(post().json(&json!({"client": "ci"})).send().unwrap()), 400);
    assert_eq!(status(post().json(&json!({"client": {"id": 1}})).send().unwrap()), 400);
    assert_eq!(status(edge.http.post(&url).send().unwrap()), 401);
    assert_eq!(status(edge.http.post(&url).basic_auth("root", Some("nope")).send().unwrap()), 401);
    assert_eq!(edge.sim_stats()["sessions"], 0, "no session left behind by refused requests");
}

#[test]
fn every_spin_route_is_served_by_the_bundle() {
    let edge = Edge::start();
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spin.toml")).unwrap();
    let routes = xo_edge::routes::parse_manifest(&manifest).unwrap();
    assert!(!routes.is_empty());
    for r in routes {
        // A concrete path for the pattern: wildcards get a sample suffix, parameters a sample value.
        let path: String = r
            .pattern
            .replace("/...", "/sample")
            .split('/')
            .map(|s| match s.strip_prefix(':') {
                Some(p) => p.split_once('.').map(|(_, ext)| format!("x.{ext}")).unwrap_or_else(|| "x".into()),
                None => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["GET", "POST", "DELETE"] {
            let resp = edge.http.request(method.parse().unwrap(), format!("{}{path}", edge.url)).send().unwrap();
            let code = resp.status().as_u16();
            let body = resp.text().unwrap();
            assert!(!body.contains("does not include"), "{method} {path}: bundle lacks component {}", r.component);
            assert!(code != 500, "{method} {path}: {body}");
        }
    }
}
