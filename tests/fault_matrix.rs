//! The fault matrix, end to end through the runtime: every operation that talks to XAPI, under every fault the
//! simulator can inject, must end the expected way (an HTTP status with a JSON error before the first byte, or an
//! aborted response after it) and leave nothing behind on XAPI: no VDI, snapshot, task or session more than before.
//! The test prints the matrix it checked (README "Fault matrix" is this table).

mod common;

use common::Edge;
use serde_json::{json, Value as J};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const TIMEOUT: &str = "2";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Collection,
    VdiRaw,
    VdiVhd,
    VmPlain,
    VmZstd,
    VmRunning,
    VmZstdRunning,
    ImportRaw,
    ImportVhd,
    ImportVm,
    ImportVmZstd,
}

const OPS: [Op; 11] = [
    Op::Collection,
    Op::VdiRaw,
    Op::VdiVhd,
    Op::VmPlain,
    Op::VmZstd,
    Op::VmRunning,
    Op::VmZstdRunning,
    Op::ImportRaw,
    Op::ImportVhd,
    Op::ImportVm,
    Op::ImportVmZstd,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Collection => "collection GET",
            Op::VdiRaw => "VDI export .raw",
            Op::VdiVhd => "VDI export .vhd",
            Op::VmPlain => "VM export, halted",
            Op::VmZstd => "VM export zstd at the edge, halted",
            Op::VmRunning => "VM export, running (snapshot)",
            Op::VmZstdRunning => "VM export zstd at the edge, running",
            Op::ImportRaw => "VDI import .raw",
            Op::ImportVhd => "VDI import .vhd",
            Op::ImportVm => "VM import, XVA",
            Op::ImportVmZstd => "VM import, zstd XVA",
        }
    }

    /// Whether the operation uploads a body.
    fn uploads(self) -> bool {
        matches!(self, Op::ImportRaw | Op::ImportVhd | Op::ImportVm | Op::ImportVmZstd)
    }

    /// XAPI's HTTP handler the operation streams through.
    fn handler(self) -> Option<&'static str> {
        match self {
            Op::Collection => None,
            Op::VdiRaw | Op::VdiVhd => Some("/export_raw_vdi"),
            Op::VmPlain | Op::VmZstd | Op::VmRunning | Op::VmZstdRunning => Some("/export"),
            Op::ImportRaw | Op::ImportVhd => Some("/import_raw_vdi"),
            Op::ImportVm | Op::ImportVmZstd => Some("/import"),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The whole answer arrived with this status.
    Done(u16),
    /// A JSON error with this status.
    Error(u16),
    /// The response started (200) and was cut off: never a complete-looking body.
    Aborted,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Done(s) => write!(f, "{s}, complete"),
            End::Error(s) => write!(f, "{s} JSON"),
            End::Aborted => f.write_str("aborted"),
        }
    }
}

struct Fixture {
    token: String,
    disk: String,
    halted: String,
    running: String,
    sr: String,
    /// A 2 MiB dynamic VHD made by qemu-img.
    vhd: Vec<u8>,
    pool: String,
    /// The halted VM's XVA, uncompressed and zstd.
    xva: Vec<u8>,
    xva_zstd: Vec<u8>,
}

fn sim_login(edge: &Edge) -> J {
    edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone()
}

fn uuid_of(edge: &Edge, class: &str, name: &str) -> String {
    let sid = sim_login(edge);
    let r = edge.xapi(&format!("{class}.get_by_name_label"), json!([sid, name]))["result"][0].clone();
    let uuid = edge.xapi(&format!("{class}.get_uuid"), json!([sid, r]))["result"].as_str().unwrap().to_string();
    edge.xapi("session.logout", json!([sid]));
    uuid
}

fn fixture(edge: &Edge) -> Fixture {
    let token = edge.token("root", "xapi-sim");
    let halted = uuid_of(edge, "VM", "Rocky Linux 8");
    let xva = |q: &str| {
        let r = edge.get(&format!("/rest/v0/vms/{halted}.xva{q}")).bearer_auth(&token).send().unwrap();
        r.bytes().unwrap().to_vec()
    };
    Fixture {
        pool: uuid_of(edge, "pool", "Demo pool"),
        xva: xva(""),
        xva_zstd: xva("?compress=zstd&compress_at=edge"),
        token,
        disk: edge.sim_disk("matrix disk", 4 << 20, 9),
        halted: uuid_of(edge, "VM", "Rocky Linux 8"),
        running: uuid_of(edge, "VM", "Debian 12 web"),
        sr: uuid_of(edge, "SR", "Local storage"),
        vhd: qemu_vhd(true),
    }
}

/// A 2 MiB dynamic VHD of patterned data (`filled`), or an empty 8 MiB one, made by qemu-img.
fn qemu_vhd(filled: bool) -> Vec<u8> {
    let dir = std::env::temp_dir();
    let (src, dst) = (
        dir.join(format!("matrix-{}.raw", std::process::id())),
        dir.join(format!("matrix-{}.vhd", std::process::id())),
    );
    let raw: Vec<u8> =
        if filled { (0..2u32 << 20).map(|i| (i / 4096 % 251) as u8).collect() } else { vec![0; 8 << 20] };
    std::fs::write(&src, raw).unwrap();
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on"])
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("qemu-img is needed (apt install qemu-utils)");
    assert!(out.status.success(), "qemu-img: {}", String::from_utf8_lossy(&out.stderr));
    let vhd = std::fs::read(&dst).unwrap();
    let _ = (std::fs::remove_file(src), std::fs::remove_file(dst));
    vhd
}

/// VDIs, VM snapshots, tasks, sessions and VMs (all kinds) on the simulator, once they equal `want`, or with no
/// `want` once no task is left (or after 15 s either way).
fn counts(edge: &Edge, want: Option<[u64; 5]>) -> [u64; 5] {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = edge.sim_stats();
        let [a, b, c, d] = ["vdis", "vm_snapshots", "tasks", "sessions"].map(|k| s[k].as_u64().unwrap());
        let c = [a, b, c, d, s["objects"]["VM"].as_u64().unwrap()];
        // With nothing to compare with, "settled" is no task left (the last operation's may still be ending).
        let settled = match want {
            Some(w) => w == c,
            None => c[2] == 0,
        };
        if settled || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn path(op: Op, f: &Fixture) -> String {
    match op {
        Op::Collection => "/rest/v0/vms?fields=name_label,power_state".into(),
        Op::VdiRaw => format!("/rest/v0/vdis/{}.raw", f.disk),
        Op::VdiVhd => format!("/rest/v0/vdis/{}.vhd", f.disk),
        Op::VmPlain => format!("/rest/v0/vms/{}.xva", f.halted),
        Op::VmZstd => format!("/rest/v0/vms/{}.xva?compress=zstd&compress_at=edge", f.halted),
        Op::VmRunning => format!("/rest/v0/vms/{}.xva", f.running),
        Op::VmZstdRunning => format!("/rest/v0/vms/{}.xva?compress=zstd&compress_at=edge", f.running),
        Op::ImportRaw => format!("/rest/v0/srs/{}/vdis?raw&name_label=matrix", f.sr),
        Op::ImportVhd => format!("/rest/v0/srs/{}/vdis?name_label=matrix", f.sr),
        Op::ImportVm | Op::ImportVmZstd => format!("/rest/v0/pools/{}/vms?sr={}", f.pool, f.sr),
    }
}

fn classify(r: reqwest::blocking::Response) -> End {
    let status = r.status().as_u16();
    let json = r.headers().get("content-type").is_some_and(|v| v == "application/json");
    match r.bytes() {
        Ok(_) if status >= 400 && json => End::Error(status),
        Ok(_) => End::Done(status),
        Err(_) => End::Aborted,
    }
}

/// Runs `op` once, plainly.
fn run(edge: &Edge, op: Op, f: &Fixture) -> End {
    let url = format!("{}{}", edge.url, path(op, f));
    let r = match op {
        Op::ImportRaw => edge.http.post(url).bearer_auth(&f.token).body(vec![7u8; 2 << 20]).send(),
        Op::ImportVhd => edge.http.post(url).bearer_auth(&f.token).body(f.vhd.clone()).send(),
        Op::ImportVm => edge.http.post(url).bearer_auth(&f.token).body(f.xva.clone()).send(),
        Op::ImportVmZstd => edge.http.post(url).bearer_auth(&f.token).body(f.xva_zstd.clone()).send(),
        _ => edge.http.get(url).bearer_auth(&f.token).send(),
    };
    r.map(classify).unwrap_or(End::Aborted)
}

/// Starts `op` and goes away in the middle (XAPI's side throttled so that there is a middle).
fn disconnect(edge: &Edge, op: Op, f: &Fixture) {
    let port = edge.url.rsplit(':').next().unwrap();
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let p = path(op, f);
    if op.uploads() {
        let head = format!(
            "POST {p} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
            f.token,
            8 << 20
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&upload_start(op, f)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    } else {
        let head = format!("GET {p} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n", f.token);
        s.write_all(head.as_bytes()).unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = s.read(&mut buf);
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(s);
}

/// Sends an upload whose Content-Length promises more than comes, then half-closes.
/// The first MiB of what `op` uploads.
fn upload_start(op: Op, f: &Fixture) -> Vec<u8> {
    if op == Op::ImportVhd {
        f.vhd[..1 << 20].to_vec()
    } else if op == Op::ImportVm {
        f.xva[..1 << 20].to_vec()
    } else if op == Op::ImportVmZstd {
        f.xva_zstd[..(1 << 20).min(f.xva_zstd.len() / 2)].to_vec()
    } else {
        vec![1u8; 1 << 20]
    }
}

fn truncated_upload(edge: &Edge, op: Op, f: &Fixture) -> End {
    let port = edge.url.rsplit(':').next().unwrap();
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        path(op, f),
        f.token,
        4 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&upload_start(op, f)).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    match text.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()) {
        Some(code) if code >= 400 => End::Error(code),
        Some(code) => End::Done(code),
        None => End::Aborted,
    }
}

/// The XAPI calls `op` makes, in order of first use (from the simulator's call counters).
fn calls_of(edge: &Edge, op: Op, f: &Fixture) -> Vec<String> {
    let before = edge.sim_stats()["calls"].clone();
    assert!(matches!(run(edge, op, f), End::Done(200) | End::Done(201)), "{} works without faults", op.name());
    let after = edge.sim_stats()["calls"].clone();
    let mut methods: Vec<String> = after
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| v.as_u64() > before.get(k.as_str()).and_then(J::as_u64).or(Some(0)))
        .map(|(k, _)| k.clone())
        // Handlers and sessions have cells of their own; cleanup calls are left alone (a failed cleanup is what the
        // orphan sweep is for, tested in vm_export.rs).
        .filter(|k| !k.starts_with('/') && !k.starts_with("session.") && !k.ends_with(".destroy"))
        .collect();
    methods.sort();
    methods
}

#[test]
fn every_operation_under_every_fault_ends_cleanly_and_leaves_nothing() {
    let edge = Edge::start_with(&[("XO_EDGE_XAPI_TIMEOUT", TIMEOUT)], xapi_sim::Options::default());
    let f = fixture(&edge);
    let mut table: Vec<(Op, &str, String)> = Vec::new();
    for op in OPS {
        let calls = calls_of(&edge, op, &f);
        // (A successful import adds its VDI: the baseline is taken after that run.)
        let base = counts(&edge, None);
        let mut cell = |fault: &'static str, spec: J, want: &[End], how: &dyn Fn() -> End| {
            edge.faults(spec);
            let got = how();
            edge.faults(json!({}));
            let left = counts(&edge, Some(base));
            assert!(want.contains(&got), "{} / {fault}: got {got}, want one of {want:?}", op.name());
            assert_eq!(left, base, "{} / {fault}: left behind (VDIs, snapshots, tasks, sessions, VMs)", op.name());
            table.push((op, fault, got.to_string()));
        };
        let plain = || run(&edge, op, &f);
        // XAPI slower than xapi_timeout: on the first call the operation makes, or on the handler's answer.
        let slow = match op.handler() {
            Some(h) if !op.uploads() => json!({"latency_ms": {h: 5000}}),
            _ => json!({"latency_ms": {calls[0].clone(): 5000}}),
        };
        // (An upload's answer comes after its body, so for an import it is a call around it that is slow.)
        cell("XAPI slow beyond the timeout", slow, &[End::Error(504)], &plain);
        // XAPI fails the call the operation hinges on: the snapshot, the new VDI, the task, else its only call.
        let nth = ["VM.snapshot", "VDI.create", "task.create"]
            .into_iter()
            .map(str::to_string)
            .find(|m| calls.contains(m))
            .unwrap_or_else(|| calls[0].clone());
        cell(
            "XAPI error on a call",
            json!({"fail": [{"method": nth, "nth": 1, "error": ["INTERNAL_ERROR", "injected"]}]}),
            &[End::Error(500), End::Error(502), End::Aborted],
            &plain,
        );
        cell(
            "session expired mid-request",
            json!({"fail": [{"method": nth, "nth": 1, "error": ["SESSION_INVALID", "OpaqueRef:gone"]}]}),
            &[End::Error(401), End::Aborted],
            &plain,
        );
        if let Some(h) = op.handler() {
            cell(
                "XAPI's handler fails",
                json!({"fail": [{"method": h, "nth": 1, "error": ["VDI_IO_ERROR", "injected"]}]}),
                &[End::Error(500), End::Error(502)],
                &plain,
            );
            cell(
                "stream cut after 1 MiB",
                json!({"cut_after": {h: 1 << 20}}),
                &[End::Aborted, End::Error(500), End::Error(502)],
                &plain,
            );
            if !op.uploads() {
                // A `.raw` export is passed through untouched (its length is known), so the runtime cuts it short
                // instead; every other export reads the first bytes and answers 502.
                let want: &[End] = if op == Op::VdiRaw { &[End::Aborted] } else { &[End::Error(502)] };
                cell("HTTP/ error inside a 200 body", json!({"http_error_in_body": [h]}), want, &plain);
            }
            // XAPI stops sending for longer than xapi_timeout (the simulator at 80 kB/s sends a 256 KiB chunk,
            // then waits 3.3 s). A `.raw` export is passed through without the guest reading it: the client's own
            // timeout applies there.
            if op != Op::VdiRaw && !op.uploads() {
                cell("XAPI stalls mid-stream", json!({"throttle_bytes_per_sec": {h: 80_000}}), &[End::Aborted], &plain);
            }
            cell(
                "client disconnects mid-transfer",
                json!({"throttle_bytes_per_sec": {h: 2_000_000}}),
                &[End::Aborted],
                &|| {
                    disconnect(&edge, op, &f);
                    End::Aborted
                },
            );
        }
        if op.uploads() {
            // A raw upload with a length is handed to XAPI untouched, so the edge learns of the short body from
            // XAPI's side of the transfer: 502 (a 400 would be more precise; the client rarely reads it anyway).
            cell(
                "truncated upload (Content-Length larger than the body)",
                json!({}),
                &[End::Error(400), End::Error(502)],
                &|| truncated_upload(&edge, op, &f),
            );
        }
        if matches!(op, Op::ImportRaw | Op::ImportVhd) {
            // More than the disk holds, into an existing VDI: refused before anything is written.
            let put =
                format!("{}/rest/v0/vdis/{}.{}", edge.url, f.disk, if op == Op::ImportVhd { "vhd" } else { "raw" });
            cell("upload larger than the disk (PUT)", json!({}), &[End::Error(413), End::Error(422)], &|| {
                let body = if op == Op::ImportVhd { qemu_vhd(false) } else { vec![3u8; 5 << 20] };
                edge.http.put(&put).bearer_auth(&f.token).body(body).send().map(classify).unwrap_or(End::Aborted)
            });
        }
    }
    // XAPI unreachable: the same operations against an edge pointed at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead =
        Edge::start_with(&[("XO_EDGE_XAPI_URL", &format!("http://127.0.0.1:{closed}"))], xapi_sim::Options::default());
    let token = xo_edge::auth::token::seal(
        &xo_edge::auth::token::TokenClaims::new("OpaqueRef:any", "root", common_now(), 3600, 3600),
        common::SECRET.as_bytes(),
    );
    let dead_f = Fixture { token, ..fixture_ids(&f) };
    for op in OPS {
        let got = run(&dead, op, &dead_f);
        assert_eq!(got, End::Error(502), "{} with XAPI unreachable", op.name());
        table.push((op, "XAPI unreachable", got.to_string()));
    }
    println!("| operation | fault | outcome |\n|---|---|---|");
    for (op, fault, got) in &table {
        println!("| {} | {fault} | {got}, nothing left |", op.name());
    }
}

fn common_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn fixture_ids(f: &Fixture) -> Fixture {
    Fixture {
        token: String::new(),
        disk: f.disk.clone(),
        halted: f.halted.clone(),
        running: f.running.clone(),
        sr: f.sr.clone(),
        vhd: f.vhd.clone(),
        pool: f.pool.clone(),
        xva: f.xva.clone(),
        xva_zstd: f.xva_zstd.clone(),
    }
}

/// One write of issue 16: its request (method, path, body) and the XAPI call it hinges on.
struct WriteOp {
    method: &'static str,
    path: String,
    body: J,
    /// The XAPI call the write hinges on (failed, or made slow, by the cells).
    hinge: &'static str,
}

/// Objects a write could leave: VMs (snapshots and templates included), VDIs, VBDs, VIFs, tasks, sessions.
fn write_counts(edge: &Edge) -> [u64; 6] {
    let s = edge.sim_stats();
    let o = |c: &str| s["objects"][c].as_u64().unwrap_or(0);
    [o("VM"), o("VDI"), o("VBD"), o("VIF"), s["tasks"].as_u64().unwrap(), s["sessions"].as_u64().unwrap()]
}

/// The pool's templates that are not snapshots (a clone of a snapshot left half-made would be one).
fn templates(edge: &Edge) -> usize {
    let sid = sim_login(edge);
    let expr = r#"field "is_a_template"="true" and field "is_a_snapshot"="false""#;
    let n = edge.xapi("VM.get_all_records_where", json!([sid, expr]))["result"].as_object().unwrap().len();
    edge.xapi("session.logout", json!([sid]));
    n
}

/// The pending tasks.
fn pending_tasks(edge: &Edge) -> usize {
    let sid = sim_login(edge);
    let r = edge.xapi("task.get_all_records_where", json!([sid, r#"field "status"="pending""#]));
    edge.xapi("session.logout", json!([sid]));
    r["result"].as_object().unwrap().len()
}

/// The writes of issue 16 under XAPI's faults, each row on a fresh pool: an XAPI error or an expired session ends
/// with a JSON error and leaves XAPI exactly as it was (no task, no half-made VM, disk or device). XAPI slower than
/// `xapi_timeout` ends with 504, whose meaning is "outcome unknown": XAPI finishes the call on its own, as it does
/// whoever waits (the simulator too), so the check there is that nothing is left half-made or pending and no disk
/// is lost. A client that leaves a `?sync` write in the middle leaves no task. The test prints its rows of the
/// README's fault matrix.
#[test]
fn every_write_under_every_fault_ends_cleanly_and_leaves_nothing() {
    let mut table: Vec<(&str, &str, String)> = Vec::new();
    let rows = [
        "PATCH a VM",
        "action, ?sync (snapshot)",
        "action, async (clone)",
        "clone of a snapshot (made a VM)",
        "POST /vdis",
        "POST /vbds (plugged)",
        "POST /vifs (plugged)",
        "VDI migrate, loose disk (copy)",
    ];
    for (row, name) in rows.into_iter().enumerate() {
        let edge = Edge::start_with(&[("XO_EDGE_XAPI_TIMEOUT", TIMEOUT)], xapi_sim::Options::default());
        let token = edge.token("root", "xapi-sim");
        let (running, halted) = (uuid_of(&edge, "VM", "Debian 12 web"), uuid_of(&edge, "VM", "Rocky Linux 8"));
        let sr = uuid_of(&edge, "SR", "Shared NFS storage");
        let net = uuid_of(&edge, "network", "Pool-wide network associated with eth0");
        let post = |path: &str, body: J| -> J {
            let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(&token).body(body.to_string());
            r.send().unwrap().json().unwrap()
        };
        let w = match row {
            0 => WriteOp {
                method: "PATCH",
                path: format!("/rest/v0/vms/{halted}"),
                body: json!({"nameLabel": "m", "cpus": 3}),
                hinge: "VM.set_VCPUs_at_startup",
            },
            1 => WriteOp {
                method: "POST",
                path: format!("/rest/v0/vms/{running}/actions/snapshot?sync"),
                body: json!({}),
                hinge: "Async.VM.snapshot",
            },
            2 => WriteOp {
                method: "POST",
                path: format!("/rest/v0/vms/{halted}/actions/clone"),
                body: json!({}),
                hinge: "Async.VM.clone",
            },
            3 => {
                let snap = post(&format!("/rest/v0/vms/{running}/actions/snapshot?sync"), json!({}))["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                WriteOp {
                    method: "POST",
                    path: format!("/rest/v0/vm-snapshots/{snap}/actions/clone?sync"),
                    body: json!({}),
                    hinge: "VM.set_is_a_template",
                }
            }
            4 => WriteOp {
                method: "POST",
                path: "/rest/v0/vdis".into(),
                body: json!({"srId": sr, "virtual_size": 1 << 20}),
                hinge: "VDI.create",
            },
            5 | 7 => {
                let loose = post("/rest/v0/vdis", json!({"srId": sr, "virtual_size": 1 << 20}))["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                if row == 5 {
                    WriteOp {
                        method: "POST",
                        path: "/rest/v0/vbds".into(),
                        body: json!({"VM": running, "VDI": loose}),
                        hinge: "VBD.plug",
                    }
                } else {
                    let local = uuid_of(&edge, "SR", "Local storage");
                    WriteOp {
                        method: "POST",
                        path: format!("/rest/v0/vdis/{loose}/actions/migrate?sync"),
                        body: json!({"srId": local}),
                        hinge: "VDI.destroy",
                    }
                }
            }
            _ => WriteOp {
                method: "POST",
                path: "/rest/v0/vifs".into(),
                body: json!({"vmId": running, "networkId": net}),
                hinge: "VIF.plug",
            },
        };
        let send = || -> End {
            let m = reqwest::Method::from_bytes(w.method.as_bytes()).unwrap();
            let r =
                edge.http.request(m, format!("{}{}", edge.url, w.path)).bearer_auth(&token).body(w.body.to_string());
            r.send().map(classify).unwrap_or(End::Aborted)
        };
        let base = edge.settled(&write_counts(&edge), write_counts);
        let base_templates = templates(&edge);
        for (fault, error, want) in [
            ("XAPI error on the call it hinges on", "INTERNAL_ERROR", End::Error(502)),
            ("session expired mid-request", "SESSION_INVALID", End::Error(401)),
        ] {
            edge.faults(json!({"fail": [{"method": w.hinge, "nth": 1, "error": [error, "injected"]}]}));
            let got = send();
            edge.faults(json!({}));
            let left = edge.settled(&base, write_counts);
            assert_eq!(got, want, "{name} / {fault}");
            assert_eq!(left, base, "{name} / {fault}: left behind (VMs, VDIs, VBDs, VIFs, tasks, sessions)");
            table.push((name, fault, format!("{got}, nothing left")));
        }
        edge.faults(json!({"latency_ms": {w.hinge: 4000}}));
        let got = send();
        std::thread::sleep(Duration::from_millis(4500));
        edge.faults(json!({}));
        assert_eq!(got, End::Error(504), "{name} / slow");
        let settled = edge.settled(&0, pending_tasks);
        assert_eq!(settled, 0, "{name} / slow: a task is still pending");
        assert_eq!(templates(&edge), base_templates, "{name} / slow: a half-made clone (a template) is left");
        assert!(write_counts(&edge)[1] >= base[1], "{name} / slow: a disk was lost");
        table.push((
            name,
            "XAPI slow beyond the timeout",
            format!("{got}; XAPI completes the call: nothing half-made or pending"),
        ));
    }
    // A client that leaves a ?sync action while XAPI works: the action completes (it was accepted) and its task
    // is destroyed all the same.
    let edge = Edge::start_with(&[("XO_EDGE_XAPI_TIMEOUT", TIMEOUT)], xapi_sim::Options::default());
    let token = edge.token("root", "xapi-sim");
    let halted = uuid_of(&edge, "VM", "Rocky Linux 8");
    let base = edge.settled(&write_counts(&edge), write_counts);
    edge.faults(json!({"op_duration_ms": {"VM.clone": 1500}}));
    let port = edge.url.rsplit(':').next().unwrap();
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let head = format!(
        "POST /rest/v0/vms/{halted}/actions/clone?sync HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    let mut want = base;
    want[0] += 1;
    want[1] += 1;
    want[2] += base_vbds_of(&edge, &halted);
    want[3] += base_vifs_of(&edge, &halted);
    let left = edge.settled(&want, write_counts);
    edge.faults(json!({}));
    assert_eq!(left, want, "the clone is whole and its task is gone");
    table.push(("action, ?sync (clone)", "client leaves while XAPI works", "completes; its task destroyed".into()));
    println!("| write | fault | outcome |\n|---|---|---|");
    for (w, fault, got) in &table {
        println!("| {w} | {fault} | {got} |");
    }
}

/// How many VBDs (VIFs) the VM `uuid` has: a clone gets as many.
fn base_vbds_of(edge: &Edge, uuid: &str) -> u64 {
    device_count(edge, uuid, "VBDs")
}

fn base_vifs_of(edge: &Edge, uuid: &str) -> u64 {
    device_count(edge, uuid, "VIFs")
}

fn device_count(edge: &Edge, uuid: &str, field: &str) -> u64 {
    let sid = sim_login(edge);
    let r = edge.xapi("VM.get_by_uuid", json!([sid, uuid]))["result"].clone();
    let n = edge.xapi(&format!("VM.get_{field}"), json!([sid, r]))["result"].as_array().unwrap().len() as u64;
    edge.xapi("session.logout", json!([sid]));
    n
}

/// What an infrastructure write could leave or lose: SRs, PBDs, plugged PBDs, networks, PIFs, VLANs, enabled
/// hosts, guests on the master, tasks, sessions.
fn infra_counts(edge: &Edge) -> [u64; 10] {
    let s = edge.sim_stats();
    let o = |c: &str| s["objects"][c].as_u64().unwrap_or(0);
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let sid = sim_login(edge);
    let master = edge.xapi("pool.get_all", json!([sid]))["result"][0].clone();
    let master = edge.xapi("pool.get_master", json!([sid, master]))["result"].clone();
    let resident = edge.xapi("host.get_resident_VMs", json!([sid, master]))["result"].as_array().unwrap().len() as u64;
    edge.xapi("session.logout", json!([sid]));
    [
        o("SR"),
        o("PBD"),
        n("attached_pbds"),
        o("network"),
        o("PIF"),
        o("VLAN"),
        n("enabled_hosts"),
        resident,
        n("tasks"),
        n("sessions"),
    ]
}

/// Issue 17's writes (hosts, SRs, PBDs, networks) under XAPI's faults, each row on a fresh pool: an XAPI error or an
/// expired session ends with a JSON error and leaves the pool as it was (a plan undoes its steps: a host it disabled
/// is enabled, PBDs it unplugged are plugged, a network it made is destroyed; its ?sync task is destroyed; an async
/// plan's task ends failed, read on the task stream, and XAPI's GC removes it). XAPI slower than `xapi_timeout`: 504
/// and nothing pending or half-made afterwards. The test prints its rows of the README's fault matrix.
#[test]
fn every_infrastructure_write_under_every_fault_ends_cleanly() {
    let mut table: Vec<(&str, &str, String)> = Vec::new();
    let rows = [
        "host disable + evacuate (plan, ?sync)",
        "create_network with a VLAN (plan, ?sync)",
        "create_network with a VLAN (plan, async)",
        "POST /srs (NFS)",
        "SR forget (plan, ?sync)",
        "PBD unplug (?sync)",
        "host restart_toolstack (?sync)",
    ];
    for (row, name) in rows.into_iter().enumerate() {
        let edge = Edge::start_with(&[("XO_EDGE_XAPI_TIMEOUT", TIMEOUT)], xapi_sim::Options::default());
        let token = edge.token("root", "xapi-sim");
        let post = |path: &str, body: J| -> (u16, J) {
            let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(&token).body(body.to_string());
            let r = r.send().unwrap();
            (r.status().as_u16(), r.json().unwrap_or(J::Null))
        };
        let master = uuid_of(&edge, "host", "xcp-host1");
        let host2 = uuid_of(&edge, "host", "xcp-host2");
        let eth0 = uuid_of(&edge, "network", "Pool-wide network associated with eth0");
        let pool = {
            let sid = sim_login(&edge);
            let p = edge.xapi("pool.get_all", json!([sid]))["result"][0].clone();
            edge.xapi("pool.get_uuid", json!([sid, p]))["result"].as_str().unwrap().to_string()
        };
        let pif = {
            let sid = sim_login(&edge);
            let n = edge.xapi("network.get_by_uuid", json!([sid, eth0]))["result"].clone();
            let p = edge.xapi("network.get_PIFs", json!([sid, n]))["result"][0].clone();
            edge.xapi("PIF.get_uuid", json!([sid, p]))["result"].as_str().unwrap().to_string()
        };
        let nfs = json!({"name_label": "nas", "SR_type": "nfs", "hostId": host2,
                         "device_config": {"server": "192.0.2.9", "serverpath": "/vms"}});
        let vlan = json!({"name": "VLAN 7", "pif": pif, "vlan": 7});
        // (request path, body, the XAPI call it hinges on, whether its failed task stays)
        let (path, body, hinge, task_stays) = match row {
            0 => (
                format!("/rest/v0/hosts/{master}/actions/disable?sync"),
                json!({"evacuate": true}),
                "Async.host.evacuate",
                false,
            ),
            1 => (
                format!("/rest/v0/pools/{pool}/actions/create_network?sync"),
                vlan,
                "Async.pool.create_VLAN_from_PIF",
                false,
            ),
            2 => {
                (format!("/rest/v0/pools/{pool}/actions/create_network"), vlan, "Async.pool.create_VLAN_from_PIF", true)
            }
            3 => ("/rest/v0/srs".to_string(), nfs, "Async.SR.create", false),
            4 | 5 => {
                let (status, made) = post("/rest/v0/srs", nfs);
                assert_eq!(status, 201, "{made}");
                let sr = made["id"].as_str().unwrap().to_string();
                if row == 4 {
                    (format!("/rest/v0/srs/{sr}/actions/forget?sync"), json!({}), "Async.SR.forget", false)
                } else {
                    let sid = sim_login(&edge);
                    let r = edge.xapi("SR.get_by_uuid", json!([sid, sr]))["result"].clone();
                    let pbd = edge.xapi("SR.get_PBDs", json!([sid, r]))["result"][0].clone();
                    let pbd = edge.xapi("PBD.get_uuid", json!([sid, pbd]))["result"].as_str().unwrap().to_string();
                    (format!("/rest/v0/pbds/{pbd}/actions/unplug?sync"), json!({}), "Async.PBD.unplug", false)
                }
            }
            _ => (
                format!("/rest/v0/hosts/{host2}/actions/restart_toolstack?sync"),
                json!({}),
                "Async.host.restart_agent",
                false,
            ),
        };
        let send = || -> End {
            let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(&token).body(body.to_string());
            r.send().map(classify).unwrap_or(End::Aborted)
        };
        let base = edge.settled(&infra_counts(&edge), infra_counts);
        for (fault, error, want) in [
            (
                "XAPI error on the call it hinges on",
                "INTERNAL_ERROR",
                if task_stays { End::Done(202) } else { End::Error(502) },
            ),
            (
                "session expired mid-request",
                "SESSION_INVALID",
                if task_stays { End::Done(202) } else { End::Error(401) },
            ),
        ] {
            edge.faults(json!({"fail": [{"method": hinge, "nth": 1, "error": [error, "injected"]}]}));
            // A 202 plan's outcome is read on the task stream, as it happens (XAPI's GC removes a task a client made
            // within 30 s of its end).
            let stream = task_stays.then(|| edge.watch_tasks(&token, "ndjson&watch"));
            let got = send();
            if let Some(stream) = stream {
                let end = loop {
                    let line = stream.recv_timeout(Duration::from_secs(20)).expect("the plan's task ends");
                    if line[0] == "update" && line[1]["status"] != "pending" {
                        break line[1].clone();
                    }
                };
                assert_eq!(
                    (end["status"].as_str(), end["result"]["code"].as_str()),
                    (Some("failure"), Some(error)),
                    "{end}"
                );
            }
            let left = edge.settled(&base, infra_counts);
            edge.faults(json!({}));
            assert_eq!(got, want, "{name} / {fault}");
            assert_eq!(
                left, base,
                "{name} / {fault}: (SRs, PBDs, plugged, networks, PIFs, VLANs, enabled hosts, guests on the master, tasks, sessions)"
            );
            let outcome = if task_stays {
                format!("{got}; its task fails with the error; nothing left")
            } else {
                format!("{got}, nothing left")
            };
            table.push((name, fault, outcome));
        }
        edge.faults(json!({"latency_ms": {hinge: 4000}}));
        let got = send();
        std::thread::sleep(Duration::from_millis(4500));
        edge.faults(json!({}));
        assert_eq!(got, if task_stays { End::Done(202) } else { End::Error(504) }, "{name} / slow");
        let settled = edge.settled(&0, pending_tasks);
        assert_eq!(settled, 0, "{name} / slow: a task is still pending");
        let now = infra_counts(&edge);
        // XAPI completes the call it was slow on: a new SR's PBDs are plugged, an unplugged PBD stays so; otherwise
        // no PBD is left unplugged by a plan that gave up.
        if !matches!(row, 3 | 5) {
            assert_eq!(now[2], base[2], "{name} / slow: a PBD was left unplugged");
        }
        assert_eq!(now[6], base[6], "{name} / slow: a host was left disabled");
        table.push((name, "XAPI slow beyond the timeout", format!("{got}; nothing pending or half-made")));
    }
    println!("| write | fault | outcome |\n|---|---|---|");
    for (w, fault, got) in &table {
        println!("| {w} | {fault} | {got} |");
    }
}
