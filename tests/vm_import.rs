//! VM imports end to end (`POST /rest/v0/pools/<id>/vms`): XVAs uncompressed, gzip and zstd (the edge's exports and
//! the CLIs' recompressions of them) into new VMs on the SR asked or the pool's default, the round trip of an
//! export through an import and back, bodies that are not XVAs refused before any XAPI call, and broken XVAs that
//! leave no VM, disk, device or task behind.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

fn login(edge: &Edge) -> J {
    edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone()
}

/// A call on a fresh session.
fn call(edge: &Edge, method: &str, args: J) -> J {
    let sid = login(edge);
    let mut params = vec![sid.clone()];
    params.extend(args.as_array().unwrap().iter().cloned());
    let r = edge.xapi(method, J::Array(params));
    edge.xapi("session.logout", json!([sid]));
    assert!(r.get("error").is_none_or(J::is_null), "{method}: {r}");
    r["result"].clone()
}

fn vm_ref(edge: &Edge, uuid: &str) -> String {
    call(edge, "VM.get_by_uuid", json!([uuid])).as_str().unwrap().to_string()
}

/// What matters of a VM: name, memory, VCPUs, its disks (SR name, size, content digest, device position) and its
/// VIFs (device, network name).
fn summary(edge: &Edge, vm: &str) -> (J, BTreeSet<String>, BTreeSet<String>) {
    let rec = call(edge, "VM.get_record", json!([vm]));
    let head = json!({
        "name_label": rec["name_label"], "memory_static_max": rec["memory_static_max"],
        "memory_dynamic_max": rec["memory_dynamic_max"], "VCPUs_max": rec["VCPUs_max"],
        "VCPUs_at_startup": rec["VCPUs_at_startup"], "HVM_boot_policy": rec["HVM_boot_policy"],
        "power_state": rec["power_state"],
    });
    let mut disks = BTreeSet::new();
    for vbd in rec["VBDs"].as_array().unwrap() {
        let v = call(edge, "VBD.get_record", json!([vbd]));
        if v["type"] == "CD" || v["VDI"] == "OpaqueRef:NULL" {
            continue;
        }
        let vdi = call(edge, "VDI.get_record", json!([v["VDI"]]));
        let sr = call(edge, "SR.get_name_label", json!([vdi["SR"]]));
        let uuid = vdi["uuid"].as_str().unwrap();
        let d: J = edge.http.get(format!("{}/_sim/vdis/{uuid}", edge.sim_url)).send().unwrap().json().unwrap();
        disks.insert(format!("{} {} {} {}", v["userdevice"], sr, vdi["virtual_size"], d["digest"]));
    }
    let mut vifs = BTreeSet::new();
    for vif in rec["VIFs"].as_array().unwrap() {
        let v = call(edge, "VIF.get_record", json!([vif]));
        let net = call(edge, "network.get_name_label", json!([v["network"]]));
        vifs.insert(format!("{} {}", v["device"], net));
    }
    (head, disks, vifs)
}

use common::cli;

fn export(edge: &Edge, token: &str, uuid: &str, query: &str) -> Vec<u8> {
    let r = edge.get(&format!("/rest/v0/vms/{uuid}.xva{query}")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.bytes().unwrap().to_vec()
}

/// (status, headers, body) of an import.
fn import(
    edge: &Edge,
    token: &str,
    pool: &str,
    query: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = edge.http.post(format!("{}/rest/v0/pools/{pool}/vms{query}", edge.url)).bearer_auth(token).body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().unwrap())
}

/// VMs (all kinds), VDIs, VBDs, VIFs, tasks and sessions on the simulator.
fn counts(edge: &Edge) -> [u64; 6] {
    let s = edge.sim_stats();
    let o = |c: &str| s["objects"][c].as_u64().unwrap_or(0);
    [
        o("VM"),
        s["vdis"].as_u64().unwrap(),
        o("VBD"),
        o("VIF"),
        s["tasks"].as_u64().unwrap(),
        s["sessions"].as_u64().unwrap(),
    ]
}

struct Setup {
    edge: Edge,
    token: String,
    pool: String,
    rocky: String,
}

fn setup() -> Setup {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let pool = edge.uuid_of(&token, "pools", "Demo pool");
    let rocky = edge.uuid_of(&token, "vms", "Rocky Linux 8");
    Setup { edge, token, pool, rocky }
}

#[test]
fn xvas_in_every_compression_come_back_whole_and_round_trip() {
    let Setup { edge, token, pool, rocky } = setup();
    let local = edge.uuid_of(&token, "srs", "Local storage");
    let source = summary(&edge, &vm_ref(&edge, &rocky));
    let plain = export(&edge, &token, &rocky, "");
    type Body<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let bodies: Vec<Body> = vec![
        ("the edge's uncompressed XVA", plain.clone(), vec![]),
        ("the edge's gzip XVA", export(&edge, &token, &rocky, "?compress=gzip"), vec![]),
        ("the edge's zstd XVA", export(&edge, &token, &rocky, "?compress=zstd&compress_at=edge"), vec![]),
        ("XAPI's zstd XVA", export(&edge, &token, &rocky, "?compress=zstd&compress_at=xapi"), vec![]),
        ("gzip -1 of it", cli("gzip", &["-1", "-c"], &plain), vec![]),
        (
            "zstd -19 of it, with Content-Encoding",
            cli("zstd", &["-19", "-q", "-c"], &plain),
            vec![("content-encoding", "zstd")],
        ),
    ];
    for (what, body, headers) in bodies {
        let before = counts(&edge);
        let (status, h, uuid) = import(&edge, &token, &pool, &format!("?sr={local}"), body, &headers);
        assert_eq!(status, 201, "{what}: {uuid}");
        assert_eq!(h["location"], format!("/rest/v0/vms/{uuid}").as_str(), "{what}");
        assert_eq!(h["content-type"], "text/plain; charset=utf-8");
        let made = vm_ref(&edge, &uuid);
        let (head, disks, vifs) = summary(&edge, &made);
        assert_eq!(head, source.0, "{what}: the VM's settings");
        let want: BTreeSet<String> =
            source.1.iter().map(|d| d.replace("\"Shared NFS storage\"", "\"Local storage\"")).collect();
        assert_eq!(disks, want, "{what}: the disks, on the SR asked, same content");
        assert_eq!(vifs, source.2, "{what}: the VIFs, on the same networks");
        let after = counts(&edge);
        assert_eq!(after[0], before[0] + 1, "{what}: one VM more");
        assert_eq!(after[4], before[4], "{what}: no task left");
        // The VM is an XO VM on the edge, with its disks.
        let r = edge.get(&format!("/rest/v0/vms/{uuid}")).bearer_auth(&token).send().unwrap();
        assert_eq!(r.json::<J>().unwrap()["name_label"], "Rocky Linux 8");
        // And exports again to the same disks.
        let again = export(&edge, &token, &uuid, "");
        let d1 = xapi_sim::xva::read_and_check(&again[..]).unwrap();
        let d0 = xapi_sim::xva::read_and_check(&plain[..]).unwrap();
        let digests =
            |c: &xapi_sim::xva::XvaContents| c.disks.values().map(|(_, d)| d.clone()).collect::<BTreeSet<_>>();
        assert_eq!(digests(&d1), digests(&d0), "{what}: the import exports to the same disks");
    }
    // JSON answer.
    let (status, _, body) = import(&edge, &token, &pool, "", plain.clone(), &[("accept", "application/json")]);
    assert_eq!(status, 201);
    let id = serde_json::from_str::<J>(&body).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(call(&edge, "VM.get_name_label", json!([vm_ref(&edge, &id)])), "Rocky Linux 8");
}

/// A chunked upload (no Content-Length) goes through with `size=`, and is a 411 without it.
#[test]
fn chunked_uploads_need_their_size() {
    let Setup { edge, token, pool, rocky } = setup();
    let plain = export(&edge, &token, &rocky, "");
    let chunked = |query: String| {
        let body = reqwest::blocking::Body::new(std::io::Cursor::new(plain.clone()));
        let r = edge.http.post(format!("{}/rest/v0/pools/{pool}/vms{query}", edge.url)).bearer_auth(&token).body(body);
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let before = counts(&edge);
    let (status, body) = chunked(String::new());
    assert_eq!(status, 411, "{body}");
    assert!(body.contains("size="), "{body}");
    assert_eq!(counts(&edge), before);
    let (status, uuid) = chunked(format!("?size={}", plain.len()));
    assert_eq!(status, 201, "{uuid}");
    let (status, body) = chunked(format!("?size={}", plain.len() + 512));
    assert_eq!(status, 400, "{body}");
    let after = edge.settled(&(before[0] + 1), |e| counts(e)[0]);
    assert_eq!(after, before[0] + 1, "a short body leaves nothing");
}

#[test]
fn the_default_sr_is_used_and_a_pool_without_one_is_a_409() {
    let Setup { edge, token, pool, rocky } = setup();
    let plain = export(&edge, &token, &rocky, "");
    let (status, _, uuid) = import(&edge, &token, &pool, "", plain.clone(), &[]);
    assert_eq!(status, 201, "{uuid}");
    let (_, disks, _) = summary(&edge, &vm_ref(&edge, &uuid));
    assert!(disks.iter().all(|d| d.contains("\"Shared NFS storage\"")), "the pool's default SR: {disks:?}");
    let pool_ref = call(&edge, "pool.get_all", json!([]))[0].clone();
    call(&edge, "pool.set_default_SR", json!([pool_ref, "OpaqueRef:NULL"]));
    let before = (counts(&edge), edge.sim_calls_of("task.create"));
    let (status, _, body) = import(&edge, &token, &pool, "", plain.clone(), &[]);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no default SR") && body.contains("?sr="), "{body}");
    assert_eq!((counts(&edge), edge.sim_calls_of("task.create")), before, "refused before any write");
    // An ISO SR, an unknown pool, an unknown SR, a GET.
    let iso = edge.uuid_of(&token, "srs", "ISO library");
    let (status, _, body) = import(&edge, &token, &pool, &format!("?sr={iso}"), plain.clone(), &[]);
    assert_eq!(status, 409, "{body}");
    assert_eq!(import(&edge, &token, "nope", "", plain.clone(), &[]).0, 404);
    assert_eq!(import(&edge, &token, &pool, "?sr=nope", plain, &[]).0, 404);
    let r = edge.get(&format!("/rest/v0/pools/{pool}/vms")).bearer_auth(&token).send().unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "POST"));
    assert_eq!(counts(&edge), before.0);
}

/// A tar member header (ustar), for hand-made archives.
fn member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h.extend(data);
    h.resize(512 + data.len().div_ceil(512) * 512, 0);
    h
}

#[test]
fn bodies_that_are_not_xvas_are_refused_before_any_xapi_call() {
    let Setup { edge, token, pool, rocky } = setup();
    let plain = export(&edge, &token, &rocky, "");
    let mut vhd = b"conectix".to_vec();
    vhd.resize(64 << 10, 0);
    let mut qcow = b"QFI\xfb".to_vec();
    qcow.resize(4096, 1);
    let mut ova = member("vm.ovf", b"<Envelope/>");
    ova.extend(vec![0; 1024]);
    let mut bad_xml = member("ova.xml", b"<value><struct>");
    bad_xml.extend(vec![0; 1024]);
    let before = (counts(&edge), edge.sim_calls_of("task.create"));
    for (what, body, headers, status, says) in [
        ("a VHD", vhd, vec![], 415, "VHD"),
        ("a qcow2", qcow, vec![], 415, "qcow2"),
        ("an OVA", ova, vec![], 415, "OVA"),
        ("zeros", vec![0u8; 1 << 20], vec![], 415, "zero block"),
        ("text", b"hello, world".to_vec(), vec![], 415, "unrecognised"),
        ("gzip garbage", [&[0x1f, 0x8b][..], &[0xff; 600][..]].concat(), vec![], 415, "gzip"),
        ("a plain XVA sent as gzip", plain.clone(), vec![("content-encoding", "gzip")], 415, "Content-Encoding"),
        ("a broken ova.xml", bad_xml, vec![], 422, "ova.xml"),
        ("brotli", plain.clone(), vec![("content-encoding", "br")], 415, "br"),
    ] {
        let (got, h, body) = import(&edge, &token, &pool, "", body, &headers);
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(h["content-type"], "application/json", "{what}");
        assert!(body.contains(says), "{what}: {body}");
        assert_eq!((counts(&edge), edge.sim_calls_of("task.create")), before, "{what}: XAPI was not asked");
    }
}

/// Sends `body` announcing `length` bytes, half-closes, answers the status.
fn raw_post(edge: &Edge, token: &str, path: &str, length: usize, body: &[u8]) -> u16 {
    let port = edge.url.rsplit(':').next().unwrap();
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Byte offsets of the members of an uncompressed tar: (name, header offset, data length).
fn members(tar: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
        let h = &tar[at..at + 512];
        let name = String::from_utf8_lossy(h[..100].split(|&b| b == 0).next().unwrap()).into_owned();
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&h[124..135]).trim_matches(char::from(0)).trim(), 8).unwrap();
        out.push((name, at, size));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn broken_xvas_leave_nothing_behind() {
    let Setup { edge, token, pool, rocky } = setup();
    let plain = export(&edge, &token, &rocky, "");
    let m = members(&plain);
    let chunk = m.iter().find(|(n, _, size)| n.contains('/') && !n.contains('.') && *size > 0).unwrap();
    let end = m.last().map(|(_, at, size)| at + 512 + size.div_ceil(512) * 512).unwrap();
    let before = counts(&edge);
    let path = format!("/rest/v0/pools/{pool}/vms");
    let check = |what: &str, status: u16, want: &[u16]| {
        assert!(want.contains(&status), "{what}: {status}");
        assert_eq!(
            edge.settled(&before, counts),
            before,
            "{what}: left behind (VMs, VDIs, VBDs, VIFs, tasks, sessions)"
        );
    };
    // A chunk whose data does not match its checksum: 422 mid-stream, XAPI's upload aborted.
    let mut corrupt = plain.clone();
    corrupt[chunk.1 + 512 + 100] ^= 0xff;
    let (status, _, body) = import(&edge, &token, &pool, "", corrupt, &[]);
    assert!(body.contains("checksum"), "{body}");
    check("a corrupt chunk", status, &[422]);
    // The same, gzip-compressed: found after decompression.
    let mut corrupt = plain.clone();
    corrupt[chunk.1 + 512 + 100] ^= 0xff;
    let (status, _, _) = import(&edge, &token, &pool, "", cli("gzip", &["-c"], &corrupt), &[]);
    check("a corrupt chunk, gzip", status, &[422]);
    // Cut in the middle of a disk (the connection half-closed): 400.
    check("cut mid-disk", raw_post(&edge, &token, &path, plain.len(), &plain[..plain.len() / 2]), &[400]);
    // Cut after the last disk's last chunk, before the end-of-archive marker: XAPI has everything it reads and
    // completes the import; the edge removes the VM.
    let destroyed = edge.sim_calls_of("VM.destroy");
    check("cut before the end marker", raw_post(&edge, &token, &path, plain.len(), &plain[..end]), &[400]);
    assert_eq!(edge.sim_calls_of("VM.destroy"), destroyed + 1, "XAPI's completed import removed by the edge");
    // Garbage after the end of the archive: the same.
    let mut trailing = plain.clone();
    trailing.extend(b"not zeros");
    let (status, _, body) = import(&edge, &token, &pool, "", trailing, &[]);
    assert!(body.contains("after the end"), "{body}");
    check("data after the end", status, &[422]);
    assert_eq!(edge.sim_calls_of("VM.destroy"), destroyed + 2, "XAPI's completed import removed by the edge");
    // A client that goes away mid-upload.
    let port = edge.url.rsplit(':').next().unwrap();
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        plain.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&plain[..plain.len() / 3]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(s);
    check("the client leaves", 400, &[400]);
    // XAPI fails mid-import (its handler cut after 1 MiB).
    let faults = |spec: J| edge.faults(spec);
    faults(json!({"cut_after": {"/import": 1 << 20}}));
    let (status, _, body) = import(&edge, &token, &pool, "", plain.clone(), &[]);
    faults(json!({}));
    assert!(body.contains("IMPORT_ERROR") || body.contains("import"), "{body}");
    check("XAPI fails mid-import", status, &[502]);
}
