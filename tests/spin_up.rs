//! The per-route Spin app under a real `spin up`, for what only Spin provides: its key-value store (login
//! throttling shared by every instance, surviving restarts) and the client address it reports in
//! `spin-client-addr` (per-client throttling that a client's own header cannot dodge).
//!
//! CI has no Spin binary (it cannot be downloaded; see `../shared/tools/spin`), so these tests run where `SPIN`
//! names one or `spin` is on `PATH`, and say that they were skipped otherwise. The same throttling code runs in CI
//! against the bundle's state directory (`security.rs`, `failed_logins_are_throttled_per_user_across_instances`).

mod common;

use common::{free_port, SECRET};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "xapi-sim";

fn spin() -> Option<String> {
    let bin = std::env::var("SPIN").ok().or_else(|| {
        Command::new("spin").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| "spin".into())
    })?;
    let version = Command::new(&bin).arg("--version").output().ok()?;
    eprintln!("running under {}", String::from_utf8_lossy(&version.stdout).trim());
    Some(bin)
}

/// A token of root's from the token endpoint of `url`.
fn root_token(http: &reqwest::blocking::Client, url: &str) -> String {
    let token = http.post(format!("{url}/rest/v0/users/authentication_tokens")).basic_auth("root", Some(PASSWORD));
    token.send().unwrap().json::<serde_json::Value>().unwrap()["token"]["id"].as_str().unwrap().to_string()
}

/// `GET /rest/v0/tasks?<query>` (a watch) on `url`: its lines on a channel (heartbeats skipped).
fn task_stream(url: &str, token: &str, query: &str) -> std::sync::mpsc::Receiver<serde_json::Value> {
    use std::io::BufRead;
    let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
    let r = client.get(format!("{url}/rest/v0/tasks?{query}")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok).filter(|l| !l.is_empty()) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// `spin up` of this repository's `spin.toml` (its components already built by `scripts/build.sh`).
struct SpinUp {
    url: String,
    child: Child,
    args: Vec<String>,
    env: Vec<(String, String)>,
    bin: String,
    log: PathBuf,
}

impl SpinUp {
    fn start(bin: &str, xapi_url: &str, state: &Path, env: &[(&str, &str)]) -> SpinUp {
        common::wasm("xo_edge_api");
        let port = free_port();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let args: Vec<String> = [
            "up",
            "-f",
            root.join("spin.toml").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
            state.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut vars = vec![
            ("SPIN_VARIABLE_XAPI_URL".to_string(), xapi_url.to_string()),
            ("SPIN_VARIABLE_TOKEN_SECRET".to_string(), SECRET.to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = std::env::temp_dir().join(format!("xo-edge-spin-{}-{port}.log", std::process::id()));
        let mut up = SpinUp {
            url: format!("http://127.0.0.1:{port}"),
            child: Command::new("true").process_group(0).spawn().unwrap(),
            args,
            env: vars,
            bin: bin.to_string(),
            log,
        };
        up.restart();
        up
    }

    /// Ends `spin up` and what it started: `spin up` runs the app in a `spin trigger http` child, which a kill of
    /// `spin up` alone leaves serving (on the port the next start wants). Each start is its own process group.
    fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        self.child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap();
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while http.get(format!("{}/rest/v0", self.url)).send().is_err() {
            assert!(
                Instant::now() < deadline,
                "spin up did not come up: {}",
                std::fs::read_to_string(&self.log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Issue 15, item 7, under Spin: failed logins are counted in Spin's key-value store per user name (surviving a
/// restart of Spin) and per client address as Spin reports it, whatever `spin-client-addr` the client sends.
#[test]
fn login_throttling_uses_spins_key_value_store_and_client_address() {
    let Some(bin) = spin() else {
        eprintln!("skipped: no Spin binary (set SPIN=<path to spin>)");
        return;
    };
    let sim = xapi_sim::start_background(&xapi_sim::Options::default()).unwrap();
    let state = std::env::temp_dir().join(format!("xo-edge-spin-state-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let env = [
        ("SPIN_VARIABLE_LOGIN_FAILURES", "2"),
        ("SPIN_VARIABLE_LOGIN_FAILURES_PER_CLIENT", "6"),
        ("SPIN_VARIABLE_LOGIN_WINDOW", "300"),
    ];
    let mut up = SpinUp::start(&bin, &sim.url, &state, &env);
    let http = reqwest::blocking::Client::new();
    let tokens = format!("{}/rest/v0/users/authentication_tokens", up.url);
    let attempt = |user: &str, password: &str, spoof: Option<&str>| {
        let mut r = http.post(&tokens).basic_auth(user, Some(password));
        if let Some(addr) = spoof {
            r = r.header("spin-client-addr", addr);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.headers().get("retry-after").is_some())
    };
    // The app works under Spin: a token, then a collection with it.
    let token = http.post(&tokens).basic_auth("root", Some(PASSWORD)).send().unwrap();
    assert_eq!(token.status().as_u16(), 200);
    let token = token.json::<serde_json::Value>().unwrap()["token"]["id"].as_str().unwrap().to_string();
    let vms = http.get(format!("{}/rest/v0/vms", up.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(vms.status().as_u16(), 200);
    // Per user name: two failures, then even the right password is refused, also after Spin restarts.
    assert_eq!(attempt("root", "wrong", None).0, 401);
    assert_eq!(attempt("root", "wrong", None).0, 401);
    assert_eq!(attempt("root", PASSWORD, None), (429, true));
    up.restart();
    assert_eq!(attempt("root", PASSWORD, None), (429, true), "the count survives a restart of Spin");
    // Tokens are not affected.
    let vms = http.get(format!("{}/rest/v0/vms", up.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(vms.status().as_u16(), 200);
    // Per client (6): new user names each time, and a different made-up
    // spin-client-addr each time, which Spin's own value (appended last) overrides.
    for i in 0..4 {
        let spoof = format!("198.51.100.{i}:1234");
        assert_eq!(attempt(&format!("user{i}"), "wrong", Some(&spoof)).0, 401, "guess {i}");
    }
    // root's two failures and these four are the six 127.0.0.1 may make: the next guess is refused.
    assert_eq!(attempt("someone-else", "wrong", Some("203.0.113.7:1")), (429, true));
    drop(up);
    let _ = std::fs::remove_dir_all(&state);
}

/// Issues 16 and 17 under Spin's per-route `api` component: a `?sync` snapshot and the clone of it made a VM, a new
/// disk plugged into a running VM, the task stream, which Spin must keep writing after the handler's head (the
/// component drives it with XAPI calls between writes), and a plan run after its answer.
#[test]
fn writes_and_the_task_stream_work_under_spin() {
    let Some(bin) = spin() else {
        eprintln!("skipped: no Spin binary (set SPIN=<path to spin>)");
        return;
    };
    let sim = xapi_sim::start_background(&xapi_sim::Options::default()).unwrap();
    let state = std::env::temp_dir().join(format!("xo-edge-spin-writes-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let up = SpinUp::start(&bin, &sim.url, &state, &[]);
    let http = reqwest::blocking::Client::new();
    let token = root_token(&http, &up.url);
    let get = |path: &str| -> serde_json::Value {
        http.get(format!("{}{path}", up.url)).bearer_auth(&token).send().unwrap().json().unwrap()
    };
    let post = |path: &str, body: serde_json::Value| {
        let r = http.post(format!("{}{path}", up.url)).bearer_auth(&token).header("accept", "application/json");
        let r = r.body(body.to_string()).send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap_or_default())
    };
    let uuid = |coll: &str, name: &str| {
        get(&format!("/rest/v0/{coll}?fields=uuid&filter=name_label:%22{name}%22"))[0]["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (vm, sr) = (uuid("vms", "Debian 12 web"), uuid("srs", "Shared NFS storage"));
    // The task stream, opened first.
    let stream = task_stream(&up.url, &token, "ndjson&watch&fields=status,result");
    let (status, snap) = post(&format!("/rest/v0/vms/{vm}/actions/snapshot?sync"), serde_json::json!({}));
    assert_eq!(status, 201, "{snap}");
    let snap = snap["id"].as_str().unwrap().to_string();
    let (status, clone) = post(&format!("/rest/v0/vm-snapshots/{snap}/actions/clone?sync"), serde_json::json!({}));
    assert_eq!(status, 201, "{clone}");
    let clone = clone["id"].as_str().unwrap().to_string();
    assert_eq!(get(&format!("/rest/v0/vms/{clone}"))["power_state"], "Halted");
    let (status, task) = post(&format!("/rest/v0/vms/{clone}/actions/start"), serde_json::json!({}));
    assert_eq!(status, 202, "{task}");
    let href = format!("/rest/v0/tasks/{}", task["taskId"].as_str().unwrap());
    loop {
        let line = stream.recv_timeout(Duration::from_secs(20)).expect("the start task's success on the stream");
        if line[0] == "update" && line[1]["href"] == href.as_str() && line[1]["status"] == "success" {
            break;
        }
    }
    let (status, disk) = post("/rest/v0/vdis", serde_json::json!({"srId": sr, "virtual_size": 1 << 20}));
    assert_eq!(status, 201, "{disk}");
    let (status, vbd) = post("/rest/v0/vbds", serde_json::json!({"VM": clone, "VDI": disk["id"]}));
    assert_eq!(status, 201, "{vbd}");
    assert_eq!(get(&format!("/rest/v0/vbds/{}", vbd["id"].as_str().unwrap()))["attached"], true);
    let del = http.delete(format!("{}/rest/v0/vms/{clone}", up.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    // Issue 17's plans: the answer (202) goes first, then the component runs the plan's steps, which Spin lets a
    // handler do after its response is complete (its HTTP trigger keeps the guest call running). The plan's task is
    // followed on the stream (XAPI's GC removes a task a client made soon after its end).
    let pool = get("/rest/v0/pools?fields=uuid")[0]["uuid"].as_str().unwrap().to_string();
    let eth0 = uuid("networks", "Pool-wide%20network%20associated%20with%20eth0");
    let pif = get(&format!("/rest/v0/networks/{eth0}"))["PIFs"][0].as_str().unwrap().to_string();
    let started = Instant::now();
    let body = serde_json::json!({"name": "VLAN 30", "pif": pif, "vlan": 30});
    let (status, task) = post(&format!("/rest/v0/pools/{pool}/actions/create_network"), body);
    assert_eq!(status, 202, "{task}");
    let href = format!("/rest/v0/tasks/{}", task["taskId"].as_str().unwrap());
    let done = loop {
        let line = stream.recv_timeout(Duration::from_secs(20)).expect("the plan's task ends on the stream");
        if line[0] == "update" && line[1]["href"] == href.as_str() && line[1]["status"] != "pending" {
            break line[1].clone();
        }
    };
    assert_eq!(done["status"], "success", "{done}");
    let net = done["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(get(&format!("/rest/v0/networks/{net}"))["PIFs"].as_array().unwrap().len(), 2);
    eprintln!("plan answered and done under Spin in {} ms", started.elapsed().as_millis());
    // Issue 18 under Spin: an XVA back in through the transfers component (its route in spin.toml), and a VM from a
    // template whose cloud-init drive the api component uploads to XAPI's /import_raw_vdi.
    let rocky = uuid("vms", "Rocky%20Linux%208");
    let xva = http.get(format!("{}/rest/v0/vms/{rocky}.xva?compress=zstd", up.url)).bearer_auth(&token).send().unwrap();
    let xva = xva.bytes().unwrap().to_vec();
    let r = http.post(format!("{}/rest/v0/pools/{pool}/vms", up.url)).bearer_auth(&token).body(xva).send().unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let imported = r.text().unwrap();
    assert_eq!(get(&format!("/rest/v0/vms/{imported}"))["name_label"], "Rocky Linux 8");
    let template = uuid("vm-templates", "Debian%20Bookworm%2012");
    let body = serde_json::json!({"name_label": "spin-ci", "template": template, "cloud_config": "#cloud-config\n"});
    let (status, made) = post(&format!("/rest/v0/pools/{pool}/actions/create_vm?sync"), body);
    assert_eq!(status, 201, "{made}");
    let disks = get(&format!("/rest/v0/vms/{}/vdis?fields=name_label", made["id"].as_str().unwrap()));
    let names: Vec<&str> = disks.as_array().unwrap().iter().filter_map(|d| d["name_label"].as_str()).collect();
    assert!(names.contains(&"XO CloudConfigDrive") && names.len() == 2, "{names:?}");
    // Issue 19 under Spin: statistics and the Prometheus exposition, from XAPI's /rrd_updates (a GET the api
    // component makes beside its JSON-RPC calls).
    let web = uuid("vms", "Debian%2012%20web");
    let stats = get(&format!("/rest/v0/vms/{web}/stats"));
    assert_eq!(stats["interval"], 5, "{stats}");
    assert!(stats["stats"]["cpus"]["0"].as_array().is_some_and(|a| a.len() > 100), "{stats}");
    let r = http.get(format!("{}/rest/v0/pools/{pool}/metrics", up.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().unwrap().contains(&format!("xcp_vm_memory_bytes{{pool=\"{pool}\",vm=\"{web}\"")));
    drop(up);
    let _ = std::fs::remove_dir_all(&state);
}

/// Issue 19's live events under Spin: the stream (an SSE body the api component writes while it waits on XAPI),
/// a subscription from another connection, a VM's change seen, and the client leaving: Spin's host must let the
/// component notice (no stream task and no `event.from` left on XAPI). Also a host's logs through the transfers
/// component.
#[test]
fn live_events_and_host_logs_under_spin() {
    use std::io::{BufReader, Read, Write};
    let Some(bin) = spin() else {
        eprintln!("skipped: no Spin binary (set SPIN=<path to spin>)");
        return;
    };
    let sim = xapi_sim::start_background(&xapi_sim::Options::default()).unwrap();
    let state = std::env::temp_dir().join(format!("xo-edge-spin-events-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let up = SpinUp::start(&bin, &sim.url, &state, &[]);
    let http = reqwest::blocking::Client::new();
    let token = root_token(&http, &up.url);
    let addr = up.url.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(conn, "GET /rest/v0/events HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    // Head, then the init event (chunked: sizes skipped, lines kept).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut text = String::new();
        loop {
            let Ok(n) = reader.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(i) = text.find("\n\n") {
                let event: String = text.drain(..i + 2).collect();
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("the stream's head and init event");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The head ends in CRLF CRLF, so the first piece cut at a blank line holds the head and the init event.
    let init =
        if first.contains("event: init") { first.clone() } else { rx.recv_timeout(Duration::from_secs(20)).unwrap() };
    let id = init.split("\"id\":\"").nth(1).and_then(|r| r.split('"').next()).expect("init's id").to_string();
    let sub = http
        .post(format!("{}/rest/v0/events/{id}/subscriptions", up.url))
        .bearer_auth(&token)
        .body(r#"{"collection": "VM", "fields": ["name_label"]}"#)
        .send()
        .unwrap();
    assert_eq!(sub.status().as_u16(), 201);
    let sid = {
        let body = r#"{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","xapi-sim"],"id":1}"#;
        let r: serde_json::Value = http.post(format!("{}/jsonrpc", sim.url)).body(body).send().unwrap().json().unwrap();
        r["result"].clone()
    };
    let call = |method: &str, params: serde_json::Value| -> serde_json::Value {
        let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let r: serde_json::Value =
            http.post(format!("{}/jsonrpc", sim.url)).json(&body).send().unwrap().json().unwrap();
        r["result"].clone()
    };
    let vms = call("VM.get_all_records_where", serde_json::json!([sid, "field \"name_label\"=\"Rocky Linux 8\""]));
    let vm = vms.as_object().unwrap().keys().next().unwrap().clone();
    std::thread::sleep(Duration::from_millis(500));
    call("VM.set_name_label", serde_json::json!([sid, vm, "renamed under spin"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event = rx.recv_timeout(Duration::from_secs(20)).expect("the rename as an event");
        if event.contains("event: update") && event.contains("renamed under spin") {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    // The client leaves.
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(rx);
    let stats = |http: &reqwest::blocking::Client| -> serde_json::Value {
        http.get(format!("{}/_sim/stats", sim.url)).send().unwrap().json().unwrap()
    };
    let started = Instant::now();
    loop {
        let s = stats(&http);
        if s["in_flight"].get("event.from").is_none() && s["pending_tasks"] == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the stream outlived its client under Spin: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("a client that left was noticed under Spin in {} ms", started.elapsed().as_millis());
    // A host's logs archive, streamed by the transfers component.
    let host = call("pool.get_all_records", serde_json::json!([sid]));
    let master = host.as_object().unwrap().values().next().unwrap()["master"].clone();
    let uuid = call("host.get_uuid", serde_json::json!([sid, master]));
    let r = http
        .get(format!("{}/rest/v0/hosts/{}/logs.tgz", up.url, uuid.as_str().unwrap()))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().unwrap();
    assert!(bytes.len() > 10_000 && bytes[..2] == [0x1f, 0x8b], "a gzip'd archive: {} bytes", bytes.len());
    drop(up);
    let _ = std::fs::remove_dir_all(&state);
}

/// Issue 20 under Spin: `allowed_outbound_hosts = ["{{ xapi_url }}", "{{ pool_hosts }}"]` with a CIDR range and a
/// port lets the components follow XAPI to the pool's other hosts (a disk on the second host's local storage,
/// imported and exported through the redirect; a slave as `xapi_url`), and the default `pool_hosts` (RFC 6666's
/// discard prefix, which Spin must accept) reaches no other host: the redirect is refused with a 502 naming the
/// variable.
#[test]
fn a_pool_of_hosts_under_spin() {
    let Some(bin) = spin() else {
        eprintln!("skipped: no Spin binary (set SPIN=<path to spin>)");
        return;
    };
    let sim = xapi_sim::start_background(&xapi_sim::Options::default()).unwrap();
    let port = sim.url.rsplit(':').next().unwrap().to_string();
    let master = sim.sim.master();
    let host2 = sim.sim.db.lock().all("host").map(|(r, _)| r.clone()).find(|h| *h != master).unwrap();
    let slave_url = xapi_sim::pool_net::url_of(&sim.sim, &host2).unwrap();
    let state = std::env::temp_dir().join(format!("xo-edge-spin-pool-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let pool_hosts = format!("http://127.0.0.0/24:{port}");
    let up = SpinUp::start(&bin, &slave_url, &state, &[("SPIN_VARIABLE_POOL_HOSTS", pool_hosts.as_str())]);
    let http = reqwest::blocking::Client::new();
    // xapi_url is a slave: the login and every call go on to the master it names.
    let token = root_token(&http, &up.url);
    let find = |coll: &str, name: &str| -> String {
        let r: serde_json::Value = http
            .get(format!("{}/rest/v0/{coll}?fields=uuid,name_label", up.url))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let found = r.as_array().unwrap().iter().find(|o| o["name_label"] == name).cloned();
        found.unwrap_or_else(|| panic!("no {coll} {name}: {r}"))["uuid"].as_str().unwrap().to_string()
    };
    let local = find("srs", "Local storage");
    let disk: Vec<u8> = (0..1usize << 20).map(|i| (i * 13 % 241) as u8).collect();
    let r = http
        .post(format!("{}/rest/v0/srs/{local}/vdis?raw&name_label=spin-local", up.url))
        .bearer_auth(&token)
        .body(disk.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let uuid = r.text().unwrap();
    let r = http.get(format!("{}/rest/v0/vdis/{uuid}.raw", up.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().unwrap() == disk, "the disk came back through the redirect");
    drop(up);

    // The default pool_hosts: Spin starts with it, and no other host is reachable.
    let up = SpinUp::start(&bin, &sim.url, &state, &[]);
    let token = root_token(&http, &up.url);
    let r = http.get(format!("{}/rest/v0/vdis/{uuid}.raw", up.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(r.text().unwrap().contains("pool_hosts"));
    let _ = std::fs::remove_dir_all(&state);
}
