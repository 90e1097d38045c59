//! What reaches XAPI's wire from the edge: every RPC call goes out with a `Content-Length` and its whole body, never
//! chunked. A chunked body trails its headers, and on a pooled connection without `TCP_NODELAY` (Spin's) it waits
//! for the server's delayed ACK: about 43 ms a call. The simulator counts RPC requests without a Content-Length.

mod common;
use common::Edge;
use serde_json::Value as J;

#[test]
fn every_xapi_call_goes_out_whole() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let cookie = format!("authenticationToken={token}");
    let get = |path: &str| {
        let r = edge.get(path).header("cookie", &cookie).send().unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.bytes().unwrap()
    };
    get("/rest/v0");
    let vms: J = serde_json::from_slice(&get("/rest/v0/vms?fields=uuid,name_label")).unwrap();
    let vm = vms[0]["uuid"].as_str().unwrap().to_string();
    get(&format!("/rest/v0/vms/{vm}"));
    get("/rest/v0/vdis?fields=uuid&limit=3");
    let disk = edge.sim_disk("wire", 4 << 20, 7);
    get(&format!("/rest/v0/vdis/{disk}.raw"));
    get(&format!("/rest/v0/vdis/{disk}.vhd"));
    let basic = edge.get("/rest/v0/hosts").basic_auth("root", Some("xapi-sim")).send().unwrap();
    assert!(basic.status().is_success());
    let stats = edge.sim_stats();
    let requests = stats["rpc_requests"].as_u64().unwrap();
    assert!(requests >= 20, "the operations above make many XAPI calls: {requests}");
    assert_eq!(stats["rpc_chunked"], 0, "{requests} RPC requests, some chunked: {stats}");

    // The counter sees a chunked call (a streamed body has no Content-Length).
    let body = br#"{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","xapi-sim"],"id":1}"#;
    let stream = reqwest::blocking::Body::new(std::io::Cursor::new(body.to_vec()));
    let r = edge.http.post(format!("{}/jsonrpc", edge.sim_url)).header("content-type", "application/json").body(stream);
    assert!(r.send().unwrap().status().is_success());
    assert_eq!(edge.sim_stats()["rpc_chunked"], 1);
}
