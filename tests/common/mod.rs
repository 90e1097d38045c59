//! End-to-end harness: the XAPI simulator and `wasmtime serve` running the built `bundle` component, both on
//! free loopback ports, torn down on drop. Tests talk HTTP only.
#![allow(dead_code)]

use serde_json::{json, Value as J};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The wasmtime release the tests run under.
pub const WASMTIME_VERSION: &str = "49.0.3";
/// The token secret the edge is started with (tests sign their own tokens with it).
pub const SECRET: &str = "e2e-secret-0123456789abcdef-0123456789";

pub fn wasm_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("wasm32-wasip2").join("wasm")
}

pub fn wasm(name: &str) -> PathBuf {
    let p = wasm_dir().join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `bash scripts/build.sh` first", p.display());
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the runtime, appending what it prints (the edge's log lines) to `log`.
fn spawn(command: &[String], log: &std::path::Path) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(wasmtime()).args(command).stdout(file.try_clone().unwrap()).stderr(file).spawn().unwrap()
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn wasmtime() -> String {
    let bin = std::env::var("WASMTIME").unwrap_or_else(|_| "wasmtime".into());
    let out = Command::new(&bin).arg("--version").output().unwrap_or_else(|_| {
        panic!("{bin} not found: run the tests through scripts/test.sh, or set WASMTIME=$(bash scripts/wasmtime.sh)")
    });
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.contains(WASMTIME_VERSION), "tests need wasmtime {WASMTIME_VERSION}, found {v}");
    bin
}

pub struct Edge {
    /// Base URL of the edge (the bundle under wasmtime serve).
    pub url: String,
    /// Base URL of the simulator.
    pub sim_url: String,
    pub http: reqwest::blocking::Client,
    child: Child,
    /// The runtime's command line, to restart it.
    command: Vec<String>,
    /// Where the runtime's output goes.
    log: PathBuf,
    _sim: xapi_sim::Background,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Edge {
    pub fn start() -> Edge {
        Self::start_with(&[], xapi_sim::Options::default())
    }

    /// Starts the simulator with `options` and the bundle with extra `XO_EDGE_*` variables.
    pub fn start_with(env: &[(&str, &str)], options: xapi_sim::Options) -> Edge {
        let sim = xapi_sim::start_background(&options).unwrap();
        let sim_url = sim.url.clone();
        let port = free_port();
        let mut command: Vec<String> = ["serve", "-Scli", "--addr"].iter().map(|s| s.to_string()).collect();
        command.push(format!("127.0.0.1:{port}"));
        // `env` may point the edge elsewhere (e.g. at a closed port, for "XAPI unreachable").
        let mut vars = vec![format!("XO_EDGE_TOKEN_SECRET={SECRET}")];
        // Most tests use Basic credentials on ordinary routes; the default (token endpoint only) is tested in
        // security.rs.
        if !env.iter().any(|(k, _)| *k == "XO_EDGE_BASIC_AUTH") {
            vars.push("XO_EDGE_BASIC_AUTH=everywhere".to_string());
        }
        if !env.iter().any(|(k, _)| *k == "XO_EDGE_XAPI_URL") {
            vars.push(format!("XO_EDGE_XAPI_URL={sim_url}"));
        }
        // The simulator's other hosts listen on the next loopback addresses, same port: the fence covers them as an
        // operator's `pool_hosts` covers the pool's subnet.
        if !env.iter().any(|(k, _)| *k == "XO_EDGE_POOL_HOSTS") {
            let port = sim_url.rsplit(':').next().unwrap_or_default();
            vars.push(format!("XO_EDGE_POOL_HOSTS=http://127.0.0.0/24:{port}"));
        }
        vars.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        // A state directory (login throttling) is preopened at the same path inside the guest.
        if let Some((_, dir)) = env.iter().find(|(k, _)| *k == "XO_EDGE_STATE_DIR") {
            command.extend(["--dir".to_string(), format!("{dir}::{dir}")]);
        }
        for v in vars {
            command.extend(["--env".to_string(), v]);
        }
        command.push(wasm("xo_edge_bundle").display().to_string());
        let log = std::env::temp_dir().join(format!("xo-edge-e2e-{}-{port}.log", std::process::id()));
        let child = spawn(&command, &log);
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let edge = Edge { url: format!("http://127.0.0.1:{port}"), sim_url, http, child, command, log, _sim: sim };
        edge.wait_up();
        edge
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http.get(format!("{}/rest/v0", self.url)).send().is_err() {
            assert!(Instant::now() < deadline, "wasmtime serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the runtime (as a host cutting an instance off would), then starts it again on the same port.
    pub fn restart_runtime(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.command, &self.log);
        self.wait_up();
    }

    /// Restarts the runtime with `env` (`XO_EDGE_*` variables) replacing the ones it had of the same names.
    pub fn restart_runtime_with(&mut self, env: &[(&str, &str)]) {
        for (k, v) in env {
            let prefix = format!("{k}=");
            match self.command.iter().position(|a| a.starts_with(&prefix)) {
                Some(i) => self.command[i] = format!("{k}={v}"),
                None => {
                    let at = self.command.len() - 1;
                    self.command.insert(at, format!("{k}={v}"));
                    self.command.insert(at, "--env".into());
                }
            }
        }
        self.restart_runtime();
    }

    /// The runtime process's resident memory now (`VmRSS`), in KiB.
    pub fn runtime_rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Runs `f` while sampling the runtime's resident memory every few milliseconds; answers `f`'s result and the
    /// largest sample, in KiB. (Not `VmHWM`: compiling the component at start can peak above any request.)
    pub fn peak_rss_during<R>(&self, f: impl FnOnce() -> R) -> (R, u64) {
        let pid = self.child.id();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak.max(rss_kib(pid))
        });
        let r = f();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, sampler.join().unwrap())
    }

    /// Everything the runtime has printed so far: the edge's log lines.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    /// Creates a token with Basic credentials through the edge.
    pub fn token(&self, user: &str, password: &str) -> String {
        let r = self
            .http
            .post(format!("{}/rest/v0/users/authentication_tokens", self.url))
            .basic_auth(user, Some(password))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json::<J>().unwrap()["token"]["id"].as_str().unwrap().to_string()
    }

    /// A disk of the simulator's synthetic data (`POST /_sim/vdis`), attached to no VM; answers its uuid.
    pub fn sim_disk(&self, name: &str, size: u64, seed: u64) -> String {
        let r: J = self
            .http
            .post(format!("{}/_sim/vdis", self.sim_url))
            .json(&json!({"name_label": name, "size": size, "seed": seed}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["uuid"].as_str().unwrap().to_string()
    }

    /// The simulator, in this process.
    pub fn sim(&self) -> &std::sync::Arc<xapi_sim::sim::Sim> {
        &self._sim.sim
    }

    /// The URL of the pool's master now (it moves on failover; the control API answers on every host that is up).
    pub fn control_url(&self) -> String {
        let sim = self.sim();
        xapi_sim::pool_net::url_of(sim, &sim.master()).unwrap_or_else(|| self.sim_url.clone())
    }

    pub fn sim_stats(&self) -> J {
        self.http.get(format!("{}/_sim/stats", self.control_url())).send().unwrap().json().unwrap()
    }

    /// What `read` gives once it equals `want`, or whatever it gives after 20 s. The edge cleans up after a failed or
    /// abandoned transfer in the background of the response (a client that hung up, or saw the end of a broken body,
    /// is not waited for), so a check right after the response races that cleanup on a loaded machine.
    pub fn settled<T: PartialEq>(&self, want: &T, read: impl Fn(&Edge) -> T) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = read(self);
            if got == *want || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Opens `GET /rest/v0/tasks?<query>` (a watch); its lines arrive on the channel (heartbeats skipped).
    pub fn watch_tasks(&self, token: &str, query: &str) -> std::sync::mpsc::Receiver<J> {
        use std::io::BufRead;
        let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
        let r = client.get(format!("{}/rest/v0/tasks?{query}", self.url)).bearer_auth(token).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(r).lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    continue;
                }
                if tx.send(serde_json::from_str::<J>(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Calls the simulator saw of `method` (as called, e.g. `Async.VM.start`).
    pub fn sim_calls_of(&self, method: &str) -> u64 {
        self.sim_stats()["calls"][method].as_u64().unwrap_or(0)
    }

    /// The uuid of the object of `coll` named `name`, found through the edge.
    pub fn uuid_of(&self, token: &str, coll: &str, name: &str) -> String {
        let filter: String = format!("name_label:\"{name}\"")
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let r = self.get(&format!("/rest/v0/{coll}?fields=uuid&filter={filter}")).bearer_auth(token).send().unwrap();
        r.json::<J>().unwrap()[0]["uuid"].as_str().unwrap_or_else(|| panic!("no {coll} {name}")).to_string()
    }

    pub fn sim_calls(&self) -> u64 {
        self.sim_stats()["total_calls"].as_u64().unwrap()
    }

    /// Sets the simulator's faults (`PUT /_sim/faults`, a `FaultSpec`), replacing any set before.
    pub fn faults(&self, spec: J) {
        let r = self.http.put(format!("{}/_sim/faults", self.control_url())).json(&spec).send().unwrap();
        assert!(r.status().is_success(), "faults refused: {spec}");
    }

    /// Gives the demo pool what XO's optional fields are made from, so that shape checks see them: "Debian 12 web"
    /// gets scheduler parameters (`VCPUs_params` cap, weight, mask), PCI passthrough and XO notes
    /// (`other_config`), a NIC type (`platform`); its first disk an `image-format`; "Rocky Linux 8" a rate-limited
    /// VIF; every host a bond of eth0 and eth1. Answers the VM's, the disk's and the VIF's uuids.
    #[allow(dead_code)]
    pub fn with_optional_fields(&self, token: &str) -> (String, String, String) {
        let sid = self.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
        let vm = self.uuid_of(token, "vms", "Debian 12 web");
        let vm_ref = self.xapi("VM.get_by_uuid", json!([sid, vm]))["result"].clone();
        for (field, k, v) in [
            ("VCPUs_params", "cap", "50"),
            ("VCPUs_params", "weight", "512"),
            ("VCPUs_params", "mask", "0,1"),
            ("other_config", "pci", "0/0000:00:02.0,1/0000:00:03.0"),
            ("other_config", "xo:notes", "backed up | nightly"),
            ("platform", "nic_type", "e1000"),
        ] {
            let r = self.xapi(&format!("VM.add_to_{field}"), json!([sid, vm_ref, k, v]));
            assert!(r.get("error").is_none(), "{r}");
        }
        let url = |p: &str| format!("{}/rest/v0/{p}", self.url);
        let get = |p: &str| self.http.get(url(p)).bearer_auth(token).send().unwrap().json::<J>().unwrap();
        let vdi = get(&format!("vms/{vm}/vdis?fields=uuid"))[0]["uuid"].as_str().unwrap().to_string();
        let vdi_ref = self.xapi("VDI.get_by_uuid", json!([sid, vdi]))["result"].clone();
        self.xapi("VDI.add_to_sm_config", json!([sid, vdi_ref, "image-format", "qcow2"]));
        let net = |name: &str| self.uuid_of(token, "networks", name);
        let (eth0, eth1) =
            (net("Pool-wide network associated with eth0"), net("Pool-wide network associated with eth1"));
        let body = json!({"vmId": self.uuid_of(token, "vms", "Rocky Linux 8"), "networkId": eth0,
            "qos_algorithm_type": "ratelimit", "qos_algorithm_params": {"kbps": "1250"}});
        let r = self.http.post(url("vifs")).bearer_auth(token).json(&body).send().unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let vif = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
        let pif_of = |n: &str| get(&format!("networks/{n}"))["PIFs"][0].as_str().unwrap().to_string();
        let pool = get("pools?fields=uuid")[0]["uuid"].as_str().unwrap().to_string();
        let body = json!({"name": "bond", "pifIds": [pif_of(&eth0), pif_of(&eth1)], "bondMode": "active-backup"});
        let r = self
            .http
            .post(url(&format!("pools/{pool}/actions/create_bonded_network?sync")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        self.xapi("session.logout", json!([sid]));
        (vm, vdi, vif)
    }

    /// A JSON-RPC call straight to the simulator.
    pub fn xapi(&self, method: &str, params: J) -> J {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        self.http.post(format!("{}/jsonrpc", self.control_url())).json(&body).send().unwrap().json().unwrap()
    }
}

/// Runs a command-line tool (gzip, zstd, …) on `input`; its output.
pub fn cli(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(tool).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} {args:?} failed");
    out.stdout
}
