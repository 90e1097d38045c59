//! VDI exports end to end (`GET /rest/v0/vdis/<id>.raw|.vhd`): content, headers, ranges, errors, faults, and the
//! simulator's tasks and sessions afterwards. The bundle runs under wasmtime serve against the simulator.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// The uuid of the first VDI named `name` whose `is_a_snapshot` is `snapshot`.
fn vdi(edge: &Edge, name: &str, snapshot: bool) -> String {
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let all = edge.xapi("VDI.get_all_records", json!([sid]))["result"].clone();
    edge.xapi("session.logout", json!([sid]));
    let found = all.as_object().unwrap().values().find(|r| r["name_label"] == name && r["is_a_snapshot"] == snapshot);
    found.unwrap_or_else(|| panic!("no VDI {name}"))["uuid"].as_str().unwrap().to_string()
}

/// The simulator's view of a VDI: size and content digest.
fn sim_vdi(edge: &Edge, uuid: &str) -> J {
    edge.http.get(format!("{}/_sim/vdis/{uuid}", edge.sim_url)).send().unwrap().json().unwrap()
}

/// The simulator's content digest of raw disk bytes.
fn digest(bytes: &[u8]) -> String {
    let mut d = xapi_sim::xva::SparseDigest::default();
    for (i, chunk) in bytes.chunks(MIB).enumerate() {
        d.chunk((i * MIB) as u64, chunk);
    }
    d.finish(bytes.len() as u64)
}

/// Waits until the simulator has no task left and `sessions` live sessions (the edge ends tasks and temporary
/// sessions once a transfer is over); answers its stats.
fn settled(edge: &Edge, sessions: &J) -> J {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = edge.sim_stats();
        if (s["tasks"] == 0 && &s["sessions"] == sessions) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The body, or why reading it failed (an aborted response).
    body: Result<Vec<u8>, String>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn ok(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_else(|e| panic!("body failed: {e}"))
    }
}

fn fetch(edge: &Edge, token: &str, path: &str, range: Option<&str>) -> Got {
    let mut req = edge.get(path).header("cookie", format!("authenticationToken={token}"));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().map(|b| b.to_vec()).map_err(|e| format!("{e:?}"));
    Got { status, headers, body }
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vdi-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `qemu-img convert -f vpc -O raw` of a VHD.
fn vhd_to_raw(vhd: &[u8], name: &str) -> Vec<u8> {
    let (src, dst) = (tmp(&format!("{name}.vhd")), tmp(&format!("{name}.raw")));
    std::fs::write(&src, vhd).unwrap();
    let out = Command::new("qemu-img").args(["convert", "-f", "vpc", "-O", "raw"]).arg(&src).arg(&dst).output();
    let out = out.expect("qemu-img is needed (apt install qemu-utils)");
    assert!(out.status.success(), "qemu-img: {}", String::from_utf8_lossy(&out.stderr));
    let raw = std::fs::read(&dst).unwrap();
    let _ = std::fs::remove_file(src);
    let _ = std::fs::remove_file(dst);
    raw
}

#[test]
fn raw_and_vhd_exports_are_the_vdis_content() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let sessions = edge.sim_stats()["sessions"].clone();
    for (coll, name, snapshot) in
        [("vdis", "rocky root", false), ("vdis", "agent root", false), ("vdi-snapshots", "web data", true)]
    {
        let uuid = vdi(&edge, name, snapshot);
        let want = sim_vdi(&edge, &uuid);
        let raw = fetch(&edge, &token, &format!("/rest/v0/{coll}/{uuid}.raw"), None);
        assert_eq!(raw.status, 200, "{name}");
        assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
        assert_eq!(
            raw.header("content-disposition").map(str::to_string),
            Some(format!("attachment; filename=\"{uuid}.raw\""))
        );
        assert_eq!(raw.header("content-length").map(str::to_string), Some(want["size"].to_string()), "{name}");
        assert_eq!(raw.header("accept-ranges"), Some("bytes"));
        let raw = raw.ok().to_vec();
        assert_eq!(raw.len() as u64, want["size"].as_u64().unwrap());
        assert_eq!(digest(&raw), want["digest"].as_str().unwrap(), "{name}: raw export differs from the VDI");

        // The seed's line: curl -b authenticationToken=… 'https://…/rest/v0/vdis/<id>.vhd' > myDisk.vhd
        let url = format!("{}/rest/v0/{coll}/{uuid}.vhd", edge.url);
        let out = Command::new("curl").args(["-sf", "-b", &format!("authenticationToken={token}"), &url]).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{name}: curl failed");
        let vhd = out.stdout;
        let head = edge.http.head(&url).bearer_auth(&token).send().unwrap();
        let disposition = head.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(disposition, Some(format!("attachment; filename=\"{uuid}.vhd\"")));
        assert!(vhd_to_raw(&vhd, name) == raw, "{name}: qemu-img's reading of the VHD differs from the raw export");
    }
    // A VDI snapshot is not in `vdis`, nor a VDI in `vdi-snapshots`.
    let snap = vdi(&edge, "web data", true);
    assert_eq!(fetch(&edge, &token, &format!("/rest/v0/vdis/{snap}.raw"), None).status, 404);
    let disk = vdi(&edge, "rocky root", false);
    assert_eq!(fetch(&edge, &token, &format!("/rest/v0/vdi-snapshots/{disk}.vhd"), None).status, 404);
    let after = settled(&edge, &sessions);
    assert_eq!((after["tasks"].clone(), after["sessions"].clone()), (json!(0), sessions), "tasks or sessions left");
    assert!(after["calls"]["task.destroy"].as_u64().unwrap() >= 6);
}

#[test]
fn ranges_resume_an_interrupted_download() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let uuid = vdi(&edge, "rocky root", false);
    let path = format!("/rest/v0/vdis/{uuid}.raw");
    let full = fetch(&edge, &token, &path, None).ok().to_vec();
    let size = full.len();
    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-512", size - 512, size - 1),
        ("bytes=67000000-", 67_000_000, size - 1),
        ("bytes=5242879-9999999999", 5_242_879, size - 1),
    ] {
        let part = fetch(&edge, &token, &path, Some(range));
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.header("content-range").map(str::to_string), Some(format!("bytes {start}-{end}/{size}")));
        assert_eq!(part.header("content-length").map(str::to_string), Some((end - start + 1).to_string()));
        assert!(part.ok() == &full[start..=end], "{range}: wrong bytes");
    }
    let out = fetch(&edge, &token, &path, Some(&format!("bytes={size}-")));
    assert_eq!((out.status, out.header("content-range").map(str::to_string)), (416, Some(format!("bytes */{size}"))));
    // `curl -C -` on a partial file finishes it.
    let file = tmp("resume.raw");
    std::fs::write(&file, &full[..30_000_000]).unwrap();
    let status = Command::new("curl")
        .args(["-sf", "-C", "-", "-o"])
        .arg(&file)
        .args(["-b", &format!("authenticationToken={token}"), &format!("{}{path}", edge.url)])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&file).unwrap() == full, "the resumed file differs");
    let _ = std::fs::remove_file(file);
    // HEAD tells the size's ranges without starting an export.
    let before = edge.sim_stats()["handler_requests"]["/export_raw_vdi"].clone();
    let head = edge.http.head(format!("{}{path}", edge.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers().get("accept-ranges").unwrap(), "bytes");
    assert_eq!(edge.sim_stats()["handler_requests"]["/export_raw_vdi"], before);
    let sessions = edge.sim_stats()["sessions"].clone();
    assert_eq!(settled(&edge, &sessions)["tasks"], 0);
}

#[test]
fn errors_before_the_first_byte_are_json() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let uuid = vdi(&edge, "rocky root", false);
    let json_error = |g: &Got| -> J {
        assert_eq!(g.header("content-type"), Some("application/json"));
        serde_json::from_slice(g.ok()).unwrap()
    };
    let calls = edge.sim_calls();
    for bad in ["not-a-uuid", "../../etc/passwd", "OpaqueRef:"] {
        let g = fetch(&edge, &token, &format!("/rest/v0/vdis/{bad}.raw"), None);
        assert_eq!(g.status, 404, "{bad}");
        json_error(&g);
    }
    assert_eq!(edge.sim_calls(), calls, "ids that cannot name a VDI cost no XAPI call");
    let g = fetch(&edge, &token, "/rest/v0/vdis/00000000-0000-0000-0000-000000000000.vhd", None);
    assert_eq!(g.status, 404);
    assert_eq!(json_error(&g)["data"]["type"], "VDI");
    let anonymous = edge.get(&format!("/rest/v0/vdis/{uuid}.raw")).send().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let post = edge.http.post(format!("{}/rest/v0/vdis/{uuid}.raw", edge.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(post.status().as_u16(), 405);

    // XAPI refuses the export: its error decides the status, and the task is gone.
    for (error, status) in
        [(json!(["VDI_IN_USE", "OpaqueRef:x", "export"]), 409), (json!(["SR_BACKEND_FAILURE_46"]), 502)]
    {
        for fmt in ["raw", "vhd"] {
            edge.faults(json!({"fail": [{"method": "/export_raw_vdi", "nth": 1, "error": error}]}));
            let g = fetch(&edge, &token, &format!("/rest/v0/vdis/{uuid}.{fmt}"), None);
            assert_eq!(g.status, status, "{error} {fmt}");
            assert_eq!(json_error(&g)["data"]["code"], error[0], "{fmt}");
        }
    }
    // An HTTP error inside a 200 body (xen-api#4603) is caught before the first byte of a VHD.
    edge.faults(json!({"http_error_in_body": ["/export_raw_vdi"]}));
    let g = fetch(&edge, &token, &format!("/rest/v0/vdis/{uuid}.vhd"), None);
    assert_eq!(g.status, 502);
    assert!(json_error(&g)["error"].as_str().unwrap().contains("HTTP error"));
    let sessions = edge.sim_stats()["sessions"].clone();
    assert_eq!(settled(&edge, &sessions)["tasks"], 0);
}

#[test]
fn mid_stream_failures_never_look_complete() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let sessions = edge.sim_stats()["sessions"].clone();
    let uuid = vdi(&edge, "rocky root", false);
    for spec in
        [json!({"cut_after": {"/export_raw_vdi": 3_000_000}}), json!({"http_error_in_body": ["/export_raw_vdi"]})]
    {
        for fmt in ["raw", "vhd"] {
            edge.faults(spec.clone());
            let g = fetch(&edge, &token, &format!("/rest/v0/vdis/{uuid}.{fmt}"), None);
            if g.status == 200 {
                assert!(g.body.is_err(), "{spec} {fmt}: a broken export ended like a complete one");
            } else {
                assert_eq!(g.status, 502, "{spec} {fmt}");
            }
            // A range through the guest is aborted too (or refused with a JSON error when its first bytes are bad).
            if fmt == "raw" {
                let g = fetch(&edge, &token, &format!("/rest/v0/vdis/{uuid}.raw"), Some("bytes=1000-"));
                if g.status == 206 {
                    assert!(g.body.is_err(), "{spec}: a broken range ended like a complete one");
                } else {
                    assert_eq!(g.status, 502, "{spec} range");
                }
            }
        }
    }
    let after = settled(&edge, &sessions);
    assert_eq!((after["tasks"].clone(), after["sessions"].clone()), (json!(0), sessions));
}

#[test]
fn a_client_that_goes_away_leaves_nothing_behind() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let uuid = vdi(&edge, "rocky root", false);
    let sessions = edge.sim_stats()["sessions"].clone();
    edge.faults(json!({"throttle_bytes_per_sec": {"/export_raw_vdi": 8_000_000}}));
    for (fmt, basic) in [("raw", false), ("vhd", false), ("raw", true), ("vhd", true)] {
        let req = edge.get(&format!("/rest/v0/vdis/{uuid}.{fmt}"));
        let req = if basic { req.basic_auth("root", Some("xapi-sim")) } else { req.bearer_auth(&token) };
        let mut r = req.send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < MIB {
            got += std::io::Read::read(&mut r, &mut buf).unwrap();
        }
        assert!(edge.sim_stats()["pending_tasks"] == 1, "the export runs under a task");
        drop(r);
        let after = settled(&edge, &sessions);
        assert_eq!(after["tasks"], 0, "{fmt}: the task of an abandoned export is left");
        assert_eq!(after["sessions"], sessions, "{fmt}: the Basic session is left");
    }
}
