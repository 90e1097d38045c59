//! VM exports end to end (`GET /rest/v0/vms/<id>.xva`): valid XVAs for every power state and for snapshots and
//! templates, compression through the CLIs, and faults that leave no snapshot, VDI or task behind.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

fn login(edge: &Edge) -> J {
    edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone()
}

/// (uuid, ref) of the VM named `name` (any kind).
fn vm(edge: &Edge, name: &str) -> (String, String) {
    let sid = login(edge);
    let r = edge.xapi("VM.get_by_name_label", json!([sid, name]))["result"][0].as_str().unwrap().to_string();
    let uuid = edge.xapi("VM.get_uuid", json!([sid, r]))["result"].as_str().unwrap().to_string();
    edge.xapi("session.logout", json!([sid]));
    (uuid, r)
}

/// The content digests of a VM's exportable disks (not CDs), `[NOSNAP]` ones left out when `nosnap` is false.
fn disk_digests(edge: &Edge, vm_ref: &str, with_nosnap: bool) -> BTreeSet<String> {
    let sid = login(edge);
    let vbds = edge.xapi("VM.get_VBDs", json!([sid, vm_ref]))["result"].clone();
    let mut out = BTreeSet::new();
    for vbd in vbds.as_array().unwrap() {
        let rec = edge.xapi("VBD.get_record", json!([sid, vbd]))["result"].clone();
        if rec["type"] == "CD" || rec["VDI"] == "OpaqueRef:NULL" {
            continue;
        }
        let vdi = edge.xapi("VDI.get_record", json!([sid, rec["VDI"]]))["result"].clone();
        if !with_nosnap && vdi["name_label"].as_str().unwrap().contains("[NOSNAP]") {
            continue;
        }
        let uuid = vdi["uuid"].as_str().unwrap();
        let d: J = edge.http.get(format!("{}/_sim/vdis/{uuid}", edge.sim_url)).send().unwrap().json().unwrap();
        out.insert(d["digest"].as_str().unwrap().to_string());
    }
    edge.xapi("session.logout", json!([sid]));
    out
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Result<Vec<u8>, String>,
}

fn fetch(edge: &Edge, token: &str, path: &str) -> Got {
    let r = edge.get(path).bearer_auth(token).send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().map(|b| b.to_vec()).map_err(|e| format!("{e:?}"));
    Got { status, headers, body }
}

fn xva_digests(bytes: &[u8]) -> BTreeSet<String> {
    let contents = xapi_sim::xva::read_and_check(bytes).expect("a valid XVA");
    assert!(contents.ova_xml.contains("<struct>"));
    contents.disks.values().map(|(_, d)| d.clone()).collect()
}

use common::cli;

/// (VMs incl. snapshots, VDIs, tasks) once the edge is done.
fn counts(edge: &Edge) -> (u64, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = edge.sim_stats();
        let c = (s["objects"]["VM"].as_u64().unwrap(), s["vdis"].as_u64().unwrap(), s["tasks"].as_u64().unwrap());
        if c.2 == 0 || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_kind_of_vm_exports_as_a_valid_xva() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let before = counts(&edge);
    let sid = login(&edge);
    let snapshot = edge.xapi("VM.get_all_records_where", json!([sid, r#"field "is_a_snapshot" = "true""#]))["result"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(r, rec)| (rec["uuid"].as_str().unwrap().to_string(), r.clone()))
        .next()
        .unwrap();
    edge.xapi("session.logout", json!([sid]));
    let template = vm(&edge, "Web server template");
    for (coll, name, (uuid, r), nosnap) in [
        ("vms", "Rocky Linux 8 (halted)", vm(&edge, "Rocky Linux 8"), true),
        ("vms", "FreeNAS (suspended)", vm(&edge, "FreeNAS"), true),
        ("vms", "Debian 12 web (running: snapshot)", vm(&edge, "Debian 12 web"), true),
        ("vms", "Ubuntu 22.04 db (running, a [NOSNAP] disk)", vm(&edge, "Ubuntu 22.04 db"), false),
        ("vms", "Build agent (paused: snapshot)", vm(&edge, "Build agent"), true),
        ("vm-snapshots", "a snapshot", snapshot.clone(), true),
        ("vm-templates", "a template", template.clone(), true),
    ] {
        let got = fetch(&edge, &token, &format!("/rest/v0/{coll}/{uuid}.xva"));
        assert_eq!(got.status, 200, "{name}");
        let disposition = got.headers.get("content-disposition").unwrap().to_str().unwrap().to_string();
        assert_eq!(disposition, format!("attachment; filename=\"{uuid}.xva\""));
        let digests = xva_digests(got.body.as_deref().unwrap_or_else(|e| panic!("{name}: {e}")));
        let want = disk_digests(&edge, &r, nosnap);
        assert_eq!(digests, want, "{name}: the XVA's disks are the VM's");
        assert_eq!(edge.settled(&before, counts), before, "{name}: snapshot, VDIs or task left behind");
    }
    // A VM in another collection is not found there.
    let (rocky, _) = vm(&edge, "Rocky Linux 8");
    assert_eq!(fetch(&edge, &token, &format!("/rest/v0/vm-snapshots/{rocky}.xva")).status, 404);
    // HEAD exports nothing.
    let head = edge.http.head(format!("{}/rest/v0/vms/{}.xva", edge.url, vm(&edge, "Debian 12 web").0));
    assert_eq!(head.bearer_auth(&token).send().unwrap().status().as_u16(), 200);
    assert_eq!(counts(&edge), before);
}

#[test]
fn compressed_exports_round_trip_through_the_clis() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let (uuid, r) = vm(&edge, "Rocky Linux 8");
    let want = disk_digests(&edge, &r, true);
    let path = format!("/rest/v0/vms/{uuid}.xva");
    let plain = fetch(&edge, &token, &path).body.unwrap();
    assert_eq!(xva_digests(&plain), want);
    for (query, tool) in [
        ("compress=zstd", "zstd"),
        ("compress=zstd&compress_at=edge", "zstd"),
        ("compress=gzip", "gzip"),
        ("compress=true", "gzip"),
        ("compress=gzip&compress_at=xapi", "gzip"),
    ] {
        let got = fetch(&edge, &token, &format!("{path}?{query}"));
        assert_eq!(got.status, 200, "{query}");
        let z = got.body.unwrap();
        assert!(z.len() < plain.len(), "{query}: compressed");
        let xva = cli(tool, &["-dc"], &z);
        assert_eq!(xva_digests(&xva), want, "{query}");
    }
    // The seed's line, verbatim shape: curl -b authenticationToken=… '…/vms/<id>.xva?compress=zstd' > myVM.xva
    let out = Command::new("curl")
        .args(["-sf", "-b", &format!("authenticationToken={token}"), &format!("{}{path}?compress=zstd", edge.url)])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(xva_digests(&cli("zstd", &["-dc"], &out.stdout)), want);
    assert_eq!(fetch(&edge, &token, &format!("{path}?compress=lz4")).status, 400);
    assert_eq!(counts(&edge).2, 0);
}

#[test]
fn zstd_is_done_at_the_edge_where_the_pool_forbids_it() {
    let options = xapi_sim::Options { restrict_zstd: true, ..Default::default() };
    let edge = Edge::start_with(&[], options);
    let token = edge.token("root", "xapi-sim");
    let (uuid, r) = vm(&edge, "Rocky Linux 8");
    let got = fetch(&edge, &token, &format!("/rest/v0/vms/{uuid}.xva?compress=zstd"));
    assert_eq!(got.status, 200);
    assert_eq!(xva_digests(&cli("zstd", &["-dc"], &got.body.unwrap())), disk_digests(&edge, &r, true));
    let refused = fetch(&edge, &token, &format!("/rest/v0/vms/{uuid}.xva?compress=zstd&compress_at=xapi"));
    assert_eq!(refused.status, 409);
    assert_eq!(counts(&edge).2, 0);
}

#[test]
fn failures_leave_no_snapshot_vdi_or_task() {
    let mut edge = Edge::start_with(&[("XO_EDGE_ORPHAN_AFTER", "2")], xapi_sim::Options::default());
    let token = edge.token("root", "xapi-sim");
    let before = counts(&edge);
    let (running, _) = vm(&edge, "Debian 12 web");
    let (halted, _) = vm(&edge, "Rocky Linux 8");
    let (protected, _) = vm(&edge, "Protected VM");
    assert_eq!(fetch(&edge, &token, "/rest/v0/vms/00000000-0000-0000-0000-000000000000.xva").status, 404);
    let blocked = fetch(&edge, &token, &format!("/rest/v0/vms/{protected}.xva"));
    assert_eq!(blocked.status, 409);
    let err: J = serde_json::from_slice(&blocked.body.unwrap()).unwrap();
    assert_eq!(err["data"]["code"], "OPERATION_BLOCKED");
    for (what, fault, vm, query) in [
        ("cut mid-stream", json!({"cut_after": {"/export": 2_000_000}}), &running, ""),
        (
            "cut mid-stream, zstd at the edge",
            json!({"cut_after": {"/export": 2_000_000}}),
            &running,
            "?compress=zstd&compress_at=edge",
        ),
        ("cut mid-stream, XAPI's zstd", json!({"cut_after": {"/export": 1_000_000}}), &halted, "?compress=zstd"),
        ("cut mid-stream, gzip at the edge", json!({"cut_after": {"/export": 2_000_000}}), &halted, "?compress=gzip"),
        ("HTTP error in the body", json!({"http_error_in_body": ["/export"]}), &running, ""),
        (
            "XAPI fails the export",
            json!({"fail": [{"method": "/export", "nth": 1, "error": ["VDI_IO_ERROR", "x"]}]}),
            &running,
            "",
        ),
        (
            "XAPI fails the snapshot",
            json!({"fail": [{"method": "VM.snapshot", "nth": 1, "error": ["SR_FULL", "x"]}]}),
            &running,
            "",
        ),
        (
            "XAPI fails the task",
            json!({"fail": [{"method": "task.create", "nth": 1, "error": ["INTERNAL_ERROR", "x"]}]}),
            &running,
            "",
        ),
    ] {
        edge.faults(fault);
        let got = fetch(&edge, &token, &format!("/rest/v0/vms/{vm}.xva{query}"));
        if got.status == 200 {
            assert!(got.body.is_err(), "{what}: a broken export ended like a complete one");
        } else {
            assert!(got.status >= 400, "{what}");
            let err: J = serde_json::from_slice(&got.body.unwrap()).unwrap();
            assert!(err["error"].is_string(), "{what}");
        }
        assert_eq!(edge.settled(&before, counts), before, "{what}: something was left behind");
    }
    // The client goes away in the middle.
    edge.faults(json!({"throttle_bytes_per_sec": {"/export": 4_000_000}}));
    let mut r = edge.get(&format!("/rest/v0/vms/{running}.xva")).bearer_auth(&token).send().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < 1_000_000 {
        got += std::io::Read::read(&mut r, &mut buf).unwrap();
    }
    drop(r);
    assert_eq!(edge.settled(&before, counts), before, "abandoned export");
    // The runtime is cut off in the middle: the snapshot stays, with a heartbeat that stops; the next export of a
    // running VM, once the heartbeat is stale, destroys it.
    let mut r = edge.get(&format!("/rest/v0/vms/{running}.xva")).bearer_auth(&token).send().unwrap();
    let mut got = 0;
    while got < 1_000_000 {
        got += std::io::Read::read(&mut r, &mut buf).unwrap();
    }
    edge.restart_runtime();
    drop(r);
    let s = edge.sim_stats();
    assert_eq!(s["objects"]["VM"].as_u64().unwrap(), before.0 + 1, "the cut-off export's snapshot is still there");
    std::thread::sleep(Duration::from_secs(4));
    edge.faults(json!({}));
    let (other, _) = vm(&edge, "XOA 🎷");
    let got = fetch(&edge, &token, &format!("/rest/v0/vms/{other}.xva"));
    assert_eq!(got.status, 200);
    assert!(got.body.is_ok());
    assert_eq!(edge.settled(&before, counts), before, "the orphaned snapshot was swept");
}
