//! Test harness: a simulator on a free loopback port, driven over real HTTP.
#![allow(dead_code)]

use serde_json::{json, Value as J};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Sim {
    pub url: String,
    pub http: reqwest::blocking::Client,
    _bg: xapi_sim::Background,
}

static ID: AtomicU64 = AtomicU64::new(1);

impl Sim {
    pub fn start() -> Sim {
        Self::start_with(xapi_sim::Options::default())
    }

    pub fn start_with(options: xapi_sim::Options) -> Sim {
        let bg = xapi_sim::start_background(&options).unwrap();
        let http = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap();
        Sim { url: bg.url.clone(), http, _bg: bg }
    }

    /// The simulator itself, to look at its store.
    pub fn inner(&self) -> &xapi_sim::sim::Sim {
        &self._bg.sim
    }

    /// A JSON-RPC 2.0 call; `Err` holds `[code, params…]`.
    pub fn call(&self, method: &str, params: J) -> Result<J, Vec<String>> {
        let id = ID.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let r: J = self.http.post(format!("{}/jsonrpc", self.url)).json(&body).send().unwrap().json().unwrap();
        if let Some(e) = r.get("error") {
            let mut v = vec![e["message"].as_str().unwrap().to_string()];
            v.extend(e["data"].as_array().unwrap().iter().map(|x| x.as_str().unwrap_or_default().to_string()));
            return Err(v);
        }
        Ok(r["result"].clone())
    }

    pub fn login(&self, user: &str, password: &str) -> String {
        self.call("session.login_with_password", json!([user, password])).unwrap().as_str().unwrap().to_string()
    }

    pub fn root(&self) -> String {
        self.login("root", "xapi-sim")
    }

    pub fn stats(&self) -> J {
        self.http.get(format!("{}/_sim/stats", self.url)).send().unwrap().json().unwrap()
    }

    pub fn faults(&self, spec: J) {
        let r = self.http.put(format!("{}/_sim/faults", self.url)).json(&spec).send().unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
    }

    pub fn vdi_info(&self, uuid: &str) -> J {
        self.http.get(format!("{}/_sim/vdis/{uuid}", self.url)).send().unwrap().json().unwrap()
    }

    /// The ref of the object of `class` named `name`.
    pub fn by_name(&self, sid: &str, class: &str, name: &str) -> String {
        let r = self.call(&format!("{class}.get_by_name_label"), json!([sid, name])).unwrap();
        r[0].as_str().unwrap_or_else(|| panic!("no {class} named {name}")).to_string()
    }

    /// A new pending task.
    pub fn new_task(&self, sid: &str) -> String {
        self.call("task.create", json!([sid, "test", ""])).unwrap().as_str().unwrap().to_string()
    }

    /// The status of `task` once it has left `pending` (async calls run in the background, as on XAPI), or
    /// `pending` if it is still running after 10 s.
    pub fn task_status(&self, sid: &str, task: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = self.call("task.get_status", json!([sid, task])).unwrap().as_str().unwrap().to_string();
            if status != "pending" || std::time::Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A new empty user VDI of `size` bytes on `sr`.
    pub fn new_vdi(&self, sid: &str, sr: &str, size: u64) -> String {
        let rec = json!({"name_label": "test", "SR": sr, "virtual_size": size, "type": "user", "sharable": false, "read_only": false, "other_config": {}});
        self.call("VDI.create", json!([sid, rec])).unwrap().as_str().unwrap().to_string()
    }

    /// PUTs `body` to `path`; the status, or `None` if the connection broke.
    /// PUTs `body` and reads the answer to its end: XAPI's import handler sends its `200` before it reads the
    /// body and closes the connection when the import is over, so only the end of the answer says it is done.
    /// Sent as XAPI's protocol allows: the head, then XAPI's answer, then the body, so that a `302` (to the host
    /// that sees the storage) is followed with the body whole, to the `Location`.
    pub fn put(&self, path: &str, body: Vec<u8>) -> Option<u16> {
        let mut url = format!("{}{path}", self.url);
        for _ in 0..3 {
            match put_raw(&url, &body)? {
                (302, Some(location)) => url = location,
                (status, _) => return Some(status),
            }
        }
        None
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.http.get(format!("{}{path}", self.url)).send().unwrap()
    }
}

/// One PUT over a plain connection: the head with the body's length, XAPI's answer head, then (on 200) the body and
/// the rest of the answer. Answers the status and a `Location`; `None` if the connection broke.
fn put_raw(url: &str, body: &[u8]) -> Option<(u16, Option<String>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (authority, target) = rest.split_at(rest.find('/')?);
    let mut conn = std::net::TcpStream::connect(authority).ok()?;
    write!(conn, "PUT {target} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {}\r\n\r\n", body.len()).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut location = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("location") {
                location = Some(v.trim().to_string());
            }
        }
    }
    if status == 200 {
        if conn.write_all(body).is_err() {
            return None;
        }
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    }
    Some((status, location))
}
