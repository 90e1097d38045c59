//! Issue 19, live events: `GET /rest/v0/events` as Server-Sent Events with XO 6's subscriptions, end to end through
//! the runtime against the simulator. A client subscribes (from another connection, as the edge keeps nothing
//! between requests), sees a VM's power change, unsubscribes, and leaves: its task is gone and no XAPI call stays.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// One Server-Sent Event: its name and its data.
type Event = (String, J);

/// Opens the stream over a plain TCP connection (so that the test can close it while a read waits); its events
/// arrive on the channel. The returned stream is the connection: shutting it down is the client leaving.
fn open(edge: &Edge, token: &str) -> (Receiver<Event>, std::net::TcpStream) {
    let addr = edge.url.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    let request =
        format!("GET /rest/v0/events HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\naccept: text/event-stream\r\n\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream\r\n"), "{head}");
    assert!(head.contains("cache-control: no-cache, no-transform\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut name, mut data, mut pending) = (String::new(), String::new(), String::new());
        loop {
            // One chunk: its size in hex, its bytes, CRLF.
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                return;
            }
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return };
            if n == 0 {
                return;
            }
            let mut chunk = vec![0; n + 2];
            if reader.read_exact(&mut chunk).is_err() {
                return;
            }
            pending.push_str(&String::from_utf8_lossy(&chunk[..n]));
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let line = line.trim_end_matches('\n');
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_string();
                } else if line.is_empty() && !name.is_empty() {
                    let event = (std::mem::take(&mut name), serde_json::from_str(&std::mem::take(&mut data)).unwrap());
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (rx, conn)
}

/// The next event other than a ping, within `secs`.
fn next(rx: &Receiver<Event>, secs: u64) -> Option<Event> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, _)) if name == "ping" => continue,
            Ok(e) => return Some(e),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn post(edge: &Edge, token: &str, path: &str, body: J) -> (u16, J) {
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(token).json(&body).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(J::Null))
}

fn delete(edge: &Edge, token: &str, path: &str) -> u16 {
    edge.http.delete(format!("{}{path}", edge.url)).bearer_auth(token).send().unwrap().status().as_u16()
}

fn streams(edge: &Edge) -> usize {
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let tasks = edge.xapi("task.get_all_records", json!([sid]))["result"].clone();
    edge.xapi("session.logout", json!([sid]));
    tasks.as_object().unwrap().values().filter(|t| t["name_label"] == "xo-edge: event stream").count()
}

fn in_flight(edge: &Edge) -> J {
    edge.sim_stats()["in_flight"].clone()
}

#[test]
fn a_client_subscribes_sees_a_power_change_unsubscribes_and_leaves() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let (rx, stop) = open(&edge, &t);
    let (name, init) = next(&rx, 10).expect("init");
    assert_eq!(name, "init");
    let id = init["id"].as_str().unwrap().to_string();
    assert_eq!(streams(&edge), 1, "the stream is an XAPI task");
    // Nothing is sent before a subscription: a change now goes unseen.
    let (status, _) = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start?sync"), json!({}));
    assert!(status == 204 || status == 201, "{status}");
    assert_eq!(next(&rx, 2), None);
    // Subscriptions: XO's body; bad ones refused before anything is written.
    let path = format!("/rest/v0/events/{id}/subscriptions");
    assert_eq!(post(&edge, &t, &path, json!({"collection": "vms"})).0, 400, "XO's type names, not collections");
    assert_eq!(post(&edge, &t, &path, json!({"collection": "VM", "fields": "name_label"})).0, 400);
    assert_eq!(post(&edge, &t, &path, json!({"collection": "VM", "other": 1})).0, 400);
    let missing = "/rest/v0/events/00000000-0000-0000-0000-000000000000/subscriptions";
    assert_eq!(post(&edge, &t, missing, json!({"collection": "VM"})).0, 404);
    let (status, body) =
        post(&edge, &t, &path, json!({"collection": "VM", "fields": ["id", "name_label", "power_state"]}));
    assert_eq!((status, body), (201, json!({"id": "VM"})));
    // A VM's power change: one update with the fields asked for.
    let (status, _) = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clean_shutdown?sync"), json!({}));
    assert!(status == 204 || status == 201, "{status}");
    let (name, data) = next(&rx, 10).expect("an update");
    assert_eq!(name, "update");
    assert_eq!(data, json!({"$subscription": "VM", "id": vm, "name_label": "Rocky Linux 8", "power_state": "Halted"}));
    // A change outside the fields asked for sends nothing; a new VM is an add, its removal a remove.
    edge.xapi("VM.set_name_description", json!([sid(&edge), vm_ref(&edge, &vm), "changed"]));
    assert_eq!(next(&rx, 2), None, "name_description was not asked for");
    let (status, made) =
        post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clone?sync"), json!({"name_label": "copy"}));
    assert_eq!(status, 201, "{made}");
    let copy = made["id"].as_str().unwrap().to_string();
    let (name, data) = next(&rx, 10).expect("an add");
    assert_eq!((name.as_str(), &data["id"], &data["$subscription"]), ("add", &json!(copy), &json!("VM")));
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vms/{copy}")), 204);
    let (name, data) = next(&rx, 10).expect("a remove");
    assert_eq!(name, "remove");
    assert_eq!(
        data,
        json!({"$subscription": "VM", "id": copy, "name_label": data["name_label"], "power_state": "Halted"})
    );
    // A second subscription, every field, on hosts; then VMs unsubscribed: their changes no longer come.
    assert_eq!(post(&edge, &t, &path, json!({"collection": "host"})).0, 201);
    assert_eq!(delete(&edge, &t, &format!("{path}/VM")), 204);
    assert_eq!(delete(&edge, &t, &format!("{path}/VM")), 404, "no such subscription any more");
    // (A VM's rename: starting it would change its host's resident VMs, which the host subscription would send.)
    edge.xapi("VM.set_name_label", json!([sid(&edge), vm_ref(&edge, &vm), "renamed"]));
    assert_eq!(next(&rx, 2), None, "unsubscribed");
    let host = edge.uuid_of(&t, "hosts", "xcp-host1");
    edge.xapi("host.set_name_description", json!([sid(&edge), host_ref(&edge, &host), "the master"]));
    let (name, data) = next(&rx, 10).expect("a host update");
    assert_eq!((name.as_str(), &data["$subscription"], &data["id"]), ("update", &json!("host"), &json!(host)));
    assert_eq!(data["name_description"], "the master", "every field: {data}");
    assert_eq!(data["type"], "host");
    // The client leaves: the edge notices, destroys the stream's task (which also ends its pending event.from).
    stop.shutdown(std::net::Shutdown::Both).unwrap();
    drop(rx);
    let gone =
        edge.settled(&(0, J::Null), |e| (streams(e), in_flight(e).get("event.from").cloned().unwrap_or(J::Null)));
    assert_eq!(gone, (0, J::Null), "the stream's task and its event.from are gone");
    assert_eq!(edge.sim_stats()["pending_tasks"], 0);
}

#[test]
fn streams_belong_to_their_user_and_end_with_their_task() {
    let edge = Edge::start();
    let root = edge.token("root", "xapi-sim");
    let admin = edge.token("admin", "admin-password");
    let (rx, _stop) = open(&edge, &root);
    let (_, init) = next(&rx, 10).expect("init");
    let id = init["id"].as_str().unwrap().to_string();
    // Another user cannot subscribe or unsubscribe this stream: it is not theirs (404, as an unknown one).
    let path = format!("/rest/v0/events/{id}/subscriptions");
    assert_eq!(post(&edge, &admin, &path, json!({"collection": "VM"})).0, 404);
    assert_eq!(post(&edge, &root, &path, json!({"collection": "alarm", "fields": "*"})).0, 201);
    assert_eq!(delete(&edge, &admin, &format!("{path}/alarm")), 404);
    // An alarm raised now comes, in XO's alarm shape.
    let host = edge.uuid_of(&root, "hosts", "xcp-host1");
    let body = "value: 0.97\nconfig:\n<variable>\n\t<name value=\"cpu_usage\"/>\n\t<alarm_trigger_level value=\"0.9\"/>\n</variable>\n";
    edge.xapi("message.create", json!([sid(&edge), "ALARM", 2, "Host", host, body]));
    let (name, data) = next(&rx, 10).expect("an alarm");
    assert_eq!((name.as_str(), &data["$subscription"]), ("add", &json!("alarm")));
    assert_eq!(data["body"], json!({"value": "97.0", "name": "cpu_usage"}));
    assert_eq!(data["object"]["uuid"], host.as_str());
    // Destroying the stream's task ends the stream (an operator's way to close one): through the edge's tasks.
    assert_eq!(delete(&edge, &root, &format!("/rest/v0/tasks/{id}")), 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Err(RecvTimeoutError::Disconnected) => break,
            _ => assert!(Instant::now() < deadline, "the stream did not end"),
        }
    }
    let left = edge.settled(&J::Null, |e| in_flight(e).get("event.from").cloned().unwrap_or(J::Null));
    assert_eq!(left, J::Null);
    // Basic credentials: the request's own session is logged out when the stream ends.
    let sessions = edge.sim_stats()["sessions"].as_u64().unwrap();
    let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
    let r = client.get(format!("{}/rest/v0/events", edge.url)).basic_auth("root", Some("xapi-sim")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(edge.sim_stats()["sessions"].as_u64().unwrap(), sessions + 1);
    drop(r);
    let after = edge.settled(&(sessions, 0), |e| (e.sim_stats()["sessions"].as_u64().unwrap(), streams(e)));
    assert_eq!(after, (sessions, 0), "the Basic session and the stream's task are gone");
}

fn sid(edge: &Edge) -> J {
    edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone()
}

fn vm_ref(edge: &Edge, uuid: &str) -> J {
    edge.xapi("VM.get_by_uuid", json!([sid(edge), uuid]))["result"].clone()
}

fn host_ref(edge: &Edge, uuid: &str) -> J {
    edge.xapi("host.get_by_uuid", json!([sid(edge), uuid]))["result"].clone()
}

/// A stream without events pings every 30 s (XO's interval), so that proxies do not cut it; the ping's data is the
/// time in milliseconds.
#[test]
fn a_quiet_stream_pings() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let (rx, _conn) = open(&edge, &t);
    let (name, _) = rx.recv_timeout(Duration::from_secs(10)).expect("init");
    assert_eq!(name, "init");
    let started = Instant::now();
    let (name, data) = rx.recv_timeout(Duration::from_secs(45)).expect("a ping");
    assert_eq!(name, "ping");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(25) && waited <= Duration::from_secs(40), "{waited:?}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now - data["ping"].as_i64().unwrap()).abs() < 5_000, "{data} vs {now}");
}
