//! The `xapi-sim` binary: starts, prints its URL and credentials, serves the demo pool; sparse disks stay cheap.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_prints_url_and_credentials_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xapi-sim"))
        .args(["--listen", "127.0.0.1:0", "--demo"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("XAPI_SIM_URL=").expect("first line gives the URL").to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    let rest: Vec<String> = lines.by_ref().take(2).map(|l| l.unwrap()).collect();
    assert!(rest[1].contains("root/xapi-sim") && rest[1].contains("auditor/auditor-password"), "{rest:?}");
    // Then where each host of the pool answers: the master at the URL, the other on the next loopback address.
    let hosts: Vec<String> = lines.by_ref().take(2).map(|l| l.unwrap()).collect();
    assert!(hosts[0].starts_with("xapi-sim: host xcp-host1 on ") && hosts[0].ends_with(&url), "{hosts:?}");
    assert!(hosts[1].contains("xcp-host2 on http://127.0.0.2:"), "{hosts:?}");
    let body = serde_json::json!({"jsonrpc": "2.0", "method": "session.login_with_password", "params": ["root", "xapi-sim"], "id": 1});
    let r: serde_json::Value =
        reqwest::blocking::Client::new().post(format!("{url}/jsonrpc")).json(&body).send().unwrap().json().unwrap();
    assert!(r["result"].as_str().unwrap().starts_with("OpaqueRef:"));
    child.kill().unwrap();
    let _ = child.wait();
}
