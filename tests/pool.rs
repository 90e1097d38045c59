//! A pool of several hosts, through the edge: disks on the second host's local storage exported and imported
//! through XAPI's redirect, redirects the edge must refuse (outside `pool_hosts`, outside the pool, in a loop, to a
//! host that does not answer), a slave as `xapi_url`, and a master that fails over. Every failure is a clear JSON
//! error and leaves nothing on XAPI.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::io::Read;

const MIB: usize = 1 << 20;

/// VDIs, tasks and sessions on the simulator.
fn counts(edge: &Edge) -> (u64, u64, u64) {
    let s = edge.sim_stats();
    (s["vdis"].as_u64().unwrap(), s["tasks"].as_u64().unwrap(), s["sessions"].as_u64().unwrap())
}

fn get(edge: &Edge, token: &str, path: &str) -> (u16, Vec<u8>) {
    let mut r = edge.get(path).bearer_auth(token).send().unwrap();
    let mut body = Vec::new();
    let _ = r.read_to_end(&mut body);
    (r.status().as_u16(), body)
}

fn json_of(body: &[u8]) -> J {
    serde_json::from_slice(body).unwrap_or(J::Null)
}

fn upload(edge: &Edge, token: &str, path: &str, body: Vec<u8>) -> (u16, J) {
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(token).body(body).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(J::String(text)))
}

fn handler_requests(edge: &Edge, path: &str) -> u64 {
    edge.sim_stats()["handler_requests"][path].as_u64().unwrap_or(0)
}

/// `ocaml/xapi/export_raw_vdi.ml` and `import_raw_vdi.ml` redirect to the host that sees a local SR; the edge
/// follows, within the pool, and the body of an upload goes to that host whole (nothing before XAPI's answer).
#[test]
fn disks_on_the_second_hosts_local_storage_go_through_the_redirect() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let local = edge.uuid_of(&token, "srs", "Local storage");
    let before = counts(&edge);
    // Import: a new raw VDI on the local SR.
    let disk: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    let (status, body) =
        upload(&edge, &token, &format!("/rest/v0/srs/{local}/vdis?raw&name_label=local"), disk.clone());
    assert_eq!(status, 201, "{body}");
    let uuid = body.as_str().unwrap().to_string();
    assert_eq!(handler_requests(&edge, "/import_raw_vdi"), 2, "redirected once, then served");
    // Export: the same bytes back, through the redirect again.
    let (status, back) = get(&edge, &token, &format!("/rest/v0/vdis/{uuid}.raw"));
    assert_eq!(status, 200);
    assert_eq!(back, disk);
    assert_eq!(handler_requests(&edge, "/export_raw_vdi"), 2);
    // The db VM's disks are on that SR too: its export is redirected, as XAPI's /export is (`export.ml`).
    let scratch = edge.uuid_of(&token, "vdis", "[NOSNAP] db scratch");
    let (status, vhd) = get(&edge, &token, &format!("/rest/v0/vdis/{scratch}.vhd"));
    assert_eq!(status, 200);
    assert_eq!(&vhd[vhd.len() - 512..vhd.len() - 504], b"conectix");
    let (vdis, tasks, sessions) = edge.settled(&(before.0 + 1, before.1, before.2), counts);
    assert_eq!((vdis, tasks, sessions), (before.0 + 1, before.1, before.2), "nothing left but the new disk");
}

/// Redirects the edge does not follow: to a host outside `pool_hosts`, to an address that is not a host of the pool,
/// round in a loop, to a host that does not answer. Each is a 502 saying why, and nothing stays behind: the task
/// (XAPI never started it), a VDI made for the upload.
#[test]
fn redirects_outside_the_pool_in_a_loop_or_to_a_dead_host_are_refused_and_leave_nothing() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let local = edge.uuid_of(&token, "srs", "Local storage");
    let shared_vdi = edge.uuid_of(&token, "vdis", "web root");
    let scratch = edge.uuid_of(&token, "vdis", "[NOSNAP] db scratch");
    let before = counts(&edge);
    let port = edge.sim_url.rsplit(':').next().unwrap().to_string();
    let import_path = format!("/rest/v0/srs/{local}/vdis?raw&name_label=x");
    let cases: Vec<(&str, J, String, &str)> = vec![
        (
            "a host that is not the pool's",
            json!({"redirect": {"/export_raw_vdi": format!("http://127.0.0.9:{port}")}}),
            format!("/rest/v0/vdis/{shared_vdi}.vhd"),
            "not a host of this pool",
        ),
        (
            "a loop between the hosts",
            json!({"redirect": {"/export_raw_vdi": "next"}}),
            format!("/rest/v0/vdis/{scratch}.vhd"),
            "loop",
        ),
        (
            "an upload sent round in a loop",
            json!({"redirect": {"/import_raw_vdi": "next"}}),
            import_path.clone(),
            "loop",
        ),
    ];
    for (what, fault, path, says) in cases {
        edge.faults(fault);
        let (status, body) = if path.contains("/srs/") {
            upload(&edge, &token, &path, vec![1; MIB])
        } else {
            let (s, b) = get(&edge, &token, &path);
            (s, json_of(&b))
        };
        assert_eq!(status, 502, "{what}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{what}: {body}");
        assert_eq!(edge.settled(&before, counts), before, "{what}: something was left behind");
    }
    edge.faults(json!({}));
    // The second host off the network (the master still counts it live, so it still redirects there).
    let host2 = edge.uuid_of(&token, "hosts", "xcp-host2");
    let r = edge.http.put(format!("{}/_sim/hosts/{host2}/link", edge.control_url())).json(&json!({"up": false})).send();
    assert!(r.unwrap().status().is_success());
    let (status, body) = get(&edge, &token, &format!("/rest/v0/vdis/{scratch}.vhd"));
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let (status, body) = upload(&edge, &token, &import_path, vec![1; MIB]);
    assert_eq!(status, 502, "{body}");
    assert_eq!(edge.settled(&before, counts), before, "a dead redirect target: something was left behind");

    // The default pool_hosts: no host but xapi_url's. The redirect is refused, and says what to set.
    let fenced = Edge::start_with(&[("XO_EDGE_POOL_HOSTS", xo_edge::xapi::pool::NO_OTHER_HOSTS)], Default::default());
    let token = fenced.token("root", "xapi-sim");
    let (scratch, shared_vdi) =
        (fenced.uuid_of(&token, "vdis", "[NOSNAP] db scratch"), fenced.uuid_of(&token, "vdis", "web root"));
    let import_path = format!("/rest/v0/srs/{}/vdis?raw&name_label=x", fenced.uuid_of(&token, "srs", "Local storage"));
    let before = counts(&fenced);
    let (status, body) = get(&fenced, &token, &format!("/rest/v0/vdis/{scratch}.vhd"));
    let body = json_of(&body);
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("pool_hosts"), "{body}");
    let (status, body) = upload(&fenced, &token, &import_path, vec![1; MIB]);
    assert_eq!(status, 502, "{body}");
    assert_eq!(fenced.settled(&before, counts), before);
    // What needs no other host still works.
    assert_eq!(get(&fenced, &token, &format!("/rest/v0/vdis/{shared_vdi}.vhd")).0, 200);
}

/// The URL of the simulated pool's other host.
fn second_host(edge: &Edge) -> String {
    let sim = edge.sim();
    let master = sim.master();
    let host2 = sim.db.lock().all("host").map(|(r, _)| r.clone()).find(|h| *h != master).unwrap();
    xapi_sim::pool_net::url_of(sim, &host2).unwrap()
}

/// `xapi_url` naming a host that is not the master: XAPI answers `HOST_IS_SLAVE [master]` (`xapi_session.ml`,
/// `session_check.ml`) and the edge goes on to the master, for logins and calls alike.
#[test]
fn a_slave_as_xapi_url_leads_to_the_master() {
    let mut edge = Edge::start();
    let slave = second_host(&edge);
    edge.restart_runtime_with(&[("XO_EDGE_XAPI_URL", slave.as_str())]);
    let token = edge.token("root", "xapi-sim");
    let (status, body) = get(&edge, &token, "/rest/v0/vms?fields=name_label");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(json_of(&body).as_array().unwrap().len() > 3);
}

/// An HA failover between two requests of one token, then in the middle of a listing: the master goes off the
/// network and the second host leads. XAPI's sessions died with the old master (`ocaml/idl/datamodel.ml`: `session`
/// is `PersistNothing`; `ocaml/database/db_xml.ml` writes out only persisted tables), so the token made before gets
/// a new session from the password sealed in it, having found the new master through the hosts it carries; a new
/// login finds it through the hosts `pool_hosts` covers. A listing cut by the failover is read again with the new
/// session: nothing is lost and nothing stays behind.
#[test]
fn after_a_failover_logins_and_tokens_find_the_new_master() {
    let mut edge = Edge::start();
    let port = edge.sim_url.rsplit(':').next().unwrap().to_string();
    // The pool's two hosts are 127.0.0.1 and .2: a /30 whose hosts the edge may try in turn.
    edge.restart_runtime_with(&[("XO_EDGE_POOL_HOSTS", format!("http://127.0.0.0/30:{port}").as_str())]);
    let before = edge.token("root", "xapi-sim");
    assert_eq!(get(&edge, &before, "/rest/v0/vms?fields=name_label").0, 200);
    let new_master = second_host(&edge);
    let r: J = edge.http.post(format!("{}/_sim/failover", edge.control_url())).send().unwrap().json().unwrap();
    assert_eq!(r["url"], json!(new_master));
    let sim = edge.sim().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while xapi_sim::pool_net::url_of(&sim, &sim.master()).as_deref() != Some(new_master.as_str()) {
        assert!(std::time::Instant::now() < deadline, "no failover");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(edge.http.get(format!("{}/jsonrpc", edge.sim_url)).send().is_err(), "the old master is gone");
    // The token made before: its XAPI session died with the old master; the token logs in again, once per request
    // (a Bearer client cannot be handed a new token), and leaves no session behind.
    let logins = || edge.sim_stats()["calls"]["session.login_with_password"].as_u64().unwrap_or(0);
    let logins_before = logins();
    for _ in 0..2 {
        let (status, body) = get(&edge, &before, "/rest/v0/vms?fields=name_label");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(json_of(&body).as_array().unwrap().len() > 3);
    }
    assert_eq!(logins() - logins_before, 2);
    assert_eq!(edge.sim_stats()["sessions"], 0);
    // A new login: xapi_url does not answer, the hosts pool_hosts covers are tried, the new master answers.
    let after = edge.token("root", "xapi-sim");
    let (status, body) = get(&edge, &after, "/rest/v0/vms?fields=name_label");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Without pool_hosts to try, the token's own hosts lead there too.
    edge.restart_runtime_with(&[("XO_EDGE_POOL_HOSTS", format!("http://127.0.0.0/24:{port}").as_str())]);
    assert_eq!(get(&edge, &after, "/rest/v0/vms?fields=name_label").0, 200);
    assert_eq!(edge.sim_stats()["sessions"], 1, "the new token's session only");

    // A failover in the middle of a listing: the call under way breaks off, the new master no longer knows the
    // session, and the token recovers: the listing is read again from the new master.
    // The old master first comes back, as a slave, so that it can take over again.
    let host1 = edge.uuid_of(&after, "hosts", "xcp-host1");
    let r = edge
        .http
        .put(format!("{}/_sim/hosts/{host1}/link", edge.control_url()))
        .json(&json!({"up": true, "live": true}));
    assert!(r.send().unwrap().status().is_success());
    edge.faults(json!({"latency_ms": {"VM.get_all_records_where": 1500}}));
    let listing = {
        let http = edge.http.clone();
        let url = format!("{}/rest/v0/vms?fields=name_label", edge.url);
        let token = after.clone();
        std::thread::spawn(move || {
            let r = http.get(url).bearer_auth(token).send().unwrap();
            (r.status().as_u16(), r.text().unwrap())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r: J = edge.http.post(format!("{}/_sim/failover", edge.control_url())).send().unwrap().json().unwrap();
    assert!(r["url"].is_string(), "{r}");
    let (status, body) = listing.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<J>(&body).unwrap().as_array().unwrap().len() > 3, "{body}");
    edge.faults(json!({}));
    assert_eq!(edge.sim_stats()["tasks"], 0);
    assert_eq!(edge.sim_stats()["sessions"], 0, "the recovered session was logged out with the request");
}

/// One JSON-RPC call to the pool's master, as any XAPI client makes it.
fn xapi(edge: &Edge, method: &str, params: J) -> J {
    let r: J = edge
        .http
        .post(format!("{}/jsonrpc", edge.control_url()))
        .json(&json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(r["error"].is_null(), "{method}: {r}");
    r["result"].clone()
}

/// `pool.designate_new_master` (`ocaml/xapi/xapi_pool.ml`, `designate_new_master`): the call returns, then both
/// toolstacks restart in their new roles, without a session. Waits until the move is done.
fn move_master_to(edge: &Edge, host: &str) {
    let session = xapi(edge, "session.login_with_password", json!(["root", "xapi-sim", "1.0", "test"]));
    xapi(edge, "pool.designate_new_master", json!([session, host]));
    let sim = edge.sim().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim.master() != host || edge.sim_stats()["sessions"] != 0 {
        assert!(std::time::Instant::now() < deadline, "the master did not move");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The XAPI session a token stands for (the test knows the edge's secret).
fn session_of(token: &str) -> String {
    let (claims, _) = xo_edge::auth::token::open(token, &[common::SECRET.as_bytes()]).unwrap();
    claims.session
}

/// Tokens outlive moves of the master (`pool.designate_new_master`, here with `xapi_url` left on a host that becomes
/// a slave and answers `HOST_IS_SLAVE`): a cookie client is handed a token for its new session, a Bearer client
/// logs in again per request, a transfer starts with the new session. They do not come back when they should not:
/// a token revoked through the API (before or after a move) stays revoked, a session that ended without a restart of
/// the master's toolstack stays ended (`agent_start_time` unchanged: `ocaml/xapi/dbsync_slave.ml` sets it when the
/// toolstack starts), and `session_recovery = "false"` makes tokens that end with their session.
#[test]
fn tokens_outlive_moves_of_the_master_unless_revoked_or_ended() {
    let mut edge = Edge::start();
    let (host1, host2) = {
        let sim = edge.sim();
        let master = sim.master();
        let other = sim.db.lock().all("host").map(|(r, _)| r.clone()).find(|h| *h != master).unwrap();
        (master, other)
    };
    edge.restart_runtime_with(&[("XO_EDGE_SESSION_RECOVERY", "false")]);
    let plain = edge.token("root", "xapi-sim");
    edge.restart_runtime_with(&[("XO_EDGE_SESSION_RECOVERY", "true")]);
    let (bearer, cookie, revoked, ended) = (
        edge.token("root", "xapi-sim"),
        edge.token("root", "xapi-sim"),
        edge.token("root", "xapi-sim"),
        edge.token("root", "xapi-sim"),
    );
    let disk = edge.sim_disk("recovery-export", MIB as u64, 7);
    let pool_config = || {
        let sim = edge.sim().clone();
        let db = sim.db.lock();
        let pool = db.all("pool").next().map(|(_, p)| p.clone()).unwrap();
        format!("{:?}", pool.get("other_config"))
    };

    // Revoked through the API: recorded on the pool, as only a token able to recover needs.
    let r =
        edge.http.delete(format!("{}/rest/v0/users/me/authentication_tokens/current", edge.url)).bearer_auth(&revoked);
    assert_eq!(r.send().unwrap().status().as_u16(), 204);
    assert!(pool_config().contains("xo_edge_revoked_"), "{}", pool_config());
    assert_eq!(get(&edge, &revoked, "/rest/v0/vms?fields=name_label").0, 401);
    // Ended without a restart of the master's toolstack (XAPI's idle timeout): stays ended.
    let r = edge
        .http
        .post(format!("{}/_sim/sessions/expire", edge.control_url()))
        .json(&json!({"session": session_of(&ended)}));
    assert_eq!(r.send().unwrap().json::<J>().unwrap()["expired"], 1);
    let (status, body) = get(&edge, &ended, "/rest/v0/vms?fields=name_label");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["data"]["reason"], "XAPI session expired or revoked");

    move_master_to(&edge, &host2);
    // A Bearer client: the same token keeps working, with a session for the request only.
    for path in ["/rest/v0/vms?fields=name_label", "/rest/v0/pools"] {
        let (status, body) = get(&edge, &bearer, path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(edge.sim_stats()["sessions"], 0);
    // A transfer: its session is checked first, and a new one made.
    let (status, body) = get(&edge, &bearer, &format!("/rest/v0/vdis/{disk}.raw"));
    assert_eq!((status, body.len()), (200, MIB), "{}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    assert_eq!(edge.settled(&json!(0), |e| e.sim_stats()["sessions"].clone()), 0);
    // A cookie client: handed a token for the new session, which needs no login after.
    let r = edge.get("/rest/v0/pools").header("cookie", format!("authenticationToken={cookie}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let set = r.headers().get("set-cookie").expect("a token for the new session").to_str().unwrap().to_string();
    let renewed = set.strip_prefix("authenticationToken=").unwrap().split(';').next().unwrap().to_string();
    assert_ne!(session_of(&renewed), session_of(&cookie));
    let logins = || edge.sim_stats()["calls"]["session.login_with_password"].as_u64().unwrap_or(0);
    let before = logins();
    let r = edge
        .get("/rest/v0/vms?fields=name_label")
        .header("cookie", format!("authenticationToken={renewed}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(logins(), before);
    assert_eq!(edge.sim_stats()["sessions"], 1);
    // Refused: revoked before the move, made without recovery.
    for (name, token) in [("revoked", &revoked), ("session_recovery off", &plain)] {
        let (status, body) = get(&edge, token, "/rest/v0/vms?fields=name_label");
        assert_eq!(status, 401, "{name}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(edge.sim_stats()["sessions"], 1, "a refused recovery logs its session out");

    // Revoked after the move (its session was gone: it recovers to be revoked), then the master moves back.
    let r =
        edge.http.delete(format!("{}/rest/v0/users/me/authentication_tokens/current", edge.url)).bearer_auth(&bearer);
    assert_eq!(r.send().unwrap().status().as_u16(), 204);
    move_master_to(&edge, &host1);
    let (status, body) = get(&edge, &bearer, "/rest/v0/vms?fields=name_label");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["data"]["reason"], "token revoked");
    let r = edge.get("/rest/v0/pools").header("cookie", format!("authenticationToken={renewed}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("set-cookie").is_some());
    assert_eq!(edge.sim_stats()["sessions"], 1);
    assert_eq!(edge.sim_stats()["tasks"], 0);
}
