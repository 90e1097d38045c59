//! VDI imports end to end (`POST /rest/v0/srs/<id>/vdis`, `PUT /rest/v0/vdis/<id>.raw|.vhd`): the seed's curl line,
//! VHDs made by qemu-img, chunked and compressed uploads, and every failure leaving no VDI and no task behind.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vdi-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A disk-like raw image: text, zeros and random bytes, `size` bytes (a multiple of 512).
fn disk(size: usize, seed: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(size);
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    while d.len() < size {
        match (d.len() / MIB) % 3 {
            0 => d.extend_from_slice(format!("block {} of seed {seed}\n", d.len()).as_bytes()),
            1 => d.extend(std::iter::repeat_n(0u8, 4096)),
            _ => {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                d.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    d.truncate(size);
    d
}

fn digest(bytes: &[u8]) -> String {
    let mut d = xapi_sim::xva::SparseDigest::default();
    for (i, chunk) in bytes.chunks(MIB).enumerate() {
        d.chunk((i * MIB) as u64, chunk);
    }
    d.finish(bytes.len() as u64)
}

/// `qemu-img convert -O vpc -o subformat=<sub>,force_size=on` of a raw image.
fn to_vhd(raw: &[u8], name: &str, sub: &str) -> Vec<u8> {
    let (src, dst) = (tmp(&format!("{name}.raw")), tmp(&format!("{name}.vhd")));
    std::fs::write(&src, raw).unwrap();
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vpc", "-o", &format!("subformat={sub},force_size=on")])
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("qemu-img is needed (apt install qemu-utils)");
    assert!(out.status.success(), "qemu-img: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&dst).unwrap()
}

/// Compresses with a CLI (`gzip` or `zstd`).
fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool).arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out.stdout
}

fn sr(edge: &Edge, name: &str) -> String {
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let r = edge.xapi("SR.get_by_name_label", json!([sid, name]))["result"][0].clone();
    let uuid = edge.xapi("SR.get_uuid", json!([sid, r]))["result"].as_str().unwrap().to_string();
    edge.xapi("session.logout", json!([sid]));
    uuid
}

fn vdi_record(edge: &Edge, uuid: &str) -> J {
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let r = edge.xapi("VDI.get_by_uuid", json!([sid, uuid]))["result"].clone();
    let rec = edge.xapi("VDI.get_record", json!([sid, r]))["result"].clone();
    edge.xapi("session.logout", json!([sid]));
    rec
}

fn sim_digest(edge: &Edge, uuid: &str) -> String {
    let v: J = edge.http.get(format!("{}/_sim/vdis/{uuid}", edge.sim_url)).send().unwrap().json().unwrap();
    v["digest"].as_str().unwrap().to_string()
}

/// VDIs, tasks and sessions on the simulator once the edge is done (waits for the tasks to go).
fn counts(edge: &Edge) -> (u64, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = edge.sim_stats();
        let c = (s["vdis"].as_u64().unwrap(), s["tasks"].as_u64().unwrap(), s["sessions"].as_u64().unwrap());
        if c.1 == 0 || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request with `headers` whose body is `body`; answers status and body text.
fn send(edge: &Edge, method: &str, path: &str, token: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, J) {
    let what = format!("{method} {path} {headers:?}");
    let mut req = edge
        .http
        .request(method.parse().unwrap(), format!("{}{path}", edge.url))
        .header("cookie", format!("authenticationToken={token}"))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_else(|e| panic!("{what}: {e:?}"));
    (status, serde_json::from_str(&text).unwrap_or(J::String(text)))
}

/// Sends a request announcing `declared` body bytes, sends `body` (fewer), and hangs up.
fn send_short(edge: &Edge, path: &str, token: &str, declared: usize, body: &[u8]) {
    let addr = edge.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: authenticationToken={token}\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    std::thread::sleep(Duration::from_millis(300));
    let _ = s.shutdown(std::net::Shutdown::Both);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

fn export_raw(edge: &Edge, token: &str, uuid: &str) -> Vec<u8> {
    let r = edge.get(&format!("/rest/v0/vdis/{uuid}.raw")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.bytes().unwrap().to_vec()
}

#[test]
fn the_seed_line_imports_a_raw_disk_and_prints_its_uuid() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let sr = sr(&edge, "Shared NFS storage");
    let raw = disk(20 * MIB + 4096, 1);
    let file = tmp("seed.raw");
    std::fs::write(&file, &raw).unwrap();
    let (vdis, _, sessions) = counts(&edge);
    // curl -X POST -b authenticationToken=… -T myDisk.raw '…/rest/v0/srs/<sr>/vdis?raw&name_label=my_imported_VDI' | cat
    let url = format!("{}/rest/v0/srs/{sr}/vdis?raw&name_label=my_imported_VDI", edge.url);
    let mut curl = Command::new("curl")
        .args(["-s", "-X", "POST", "-b", &format!("authenticationToken={token}"), "-T"])
        .arg(&file)
        .arg(&url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let cat = Command::new("cat").stdin(curl.stdout.take().unwrap()).output().unwrap();
    assert!(curl.wait().unwrap().success());
    let uuid = String::from_utf8(cat.stdout).unwrap();
    assert_eq!(uuid.len(), 36, "the answer is the new VDI's uuid: {uuid}");
    let rec = vdi_record(&edge, &uuid);
    assert_eq!(rec["name_label"], "my_imported_VDI");
    assert_eq!(rec["virtual_size"].as_u64(), Some(raw.len() as u64));
    assert_eq!(sim_digest(&edge, &uuid), digest(&raw), "the VDI holds the file");
    assert!(export_raw(&edge, &token, &uuid) == raw, "exported back bit-exact");
    let (after_vdis, tasks, after_sessions) = counts(&edge);
    assert_eq!((after_vdis, tasks, after_sessions), (vdis + 1, 0, sessions));
    let _ = std::fs::remove_file(file);
}

#[test]
fn vhds_chunked_and_compressed_uploads_import_bit_exact() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let sr = sr(&edge, "Shared NFS storage");
    let raw = disk(20 * MIB + 4096, 2);
    let vhd = to_vhd(&raw, "dyn", "dynamic");
    let (vdis, _, _) = counts(&edge);
    let path = format!("/rest/v0/srs/{sr}/vdis?name_label=from%20qemu&name_description=a%20test");
    let mut made = 0;
    // Plain VHD with Content-Length; JSON answer with Location.
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(&token).header("accept", "application/json");
    let r = r.body(vhd.clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let location = r.headers().get("location").unwrap().to_str().unwrap().to_string();
    let id = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/vdis/{id}"));
    let rec = vdi_record(&edge, &id);
    assert_eq!((rec["name_label"].as_str(), rec["name_description"].as_str()), (Some("from qemu"), Some("a test")));
    assert!(export_raw(&edge, &token, &id) == raw, "VHD import exported back bit-exact");
    made += 1;
    // Chunked (curl -T -): the length comes from the VHD's BAT.
    let url = format!("{}{path}", edge.url);
    let mut curl = Command::new("curl")
        .args(["-sf", "-X", "POST", "-b", &format!("authenticationToken={token}"), "-T", "-", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = curl.stdin.take().unwrap();
    let body = vhd.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = curl.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap();
    assert!(export_raw(&edge, &token, &id) == raw, "chunked VHD import");
    made += 1;
    // Compressed: gzip and zstd VHDs, and a zstd raw disk with size=.
    for tool in ["gzip", "zstd"] {
        let (status, id) = send(&edge, "POST", &path, &token, &[("content-encoding", tool)], compress(tool, &vhd));
        assert_eq!(status, 201, "{tool}: {id}");
        assert!(export_raw(&edge, &token, id.as_str().unwrap()) == raw, "{tool} VHD import");
        made += 1;
    }
    let raw_path = format!("/rest/v0/srs/{sr}/vdis?raw&size={}", raw.len());
    let (status, id) = send(&edge, "POST", &raw_path, &token, &[("content-encoding", "zstd")], compress("zstd", &raw));
    assert_eq!(status, 201, "{id}");
    assert!(export_raw(&edge, &token, id.as_str().unwrap()) == raw, "zstd raw import");
    made += 1;
    let (after, tasks, _) = counts(&edge);
    assert_eq!((after, tasks), (vdis + made, 0));
}

#[test]
fn put_replaces_the_content_of_a_vdi_of_the_same_size() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let sr = sr(&edge, "Shared NFS storage");
    let first = disk(8 * MIB, 3);
    let (status, id) = send(&edge, "POST", &format!("/rest/v0/srs/{sr}/vdis?raw"), &token, &[], first.clone());
    assert_eq!(status, 201);
    let id = id.as_str().unwrap().to_string();
    let second = disk(8 * MIB, 4);
    let (status, answer) = send(&edge, "PUT", &format!("/rest/v0/vdis/{id}.raw"), &token, &[], second.clone());
    assert_eq!((status, answer.as_str()), (200, Some(id.as_str())));
    assert!(export_raw(&edge, &token, &id) == second);
    let third = disk(8 * MIB, 5);
    let (status, _) =
        send(&edge, "PUT", &format!("/rest/v0/vdis/{id}.vhd"), &token, &[], to_vhd(&third, "put", "dynamic"));
    assert_eq!(status, 200);
    assert!(export_raw(&edge, &token, &id) == third);
    // Another size is refused before XAPI is asked to write anything.
    let (status, err) = send(&edge, "PUT", &format!("/rest/v0/vdis/{id}.raw"), &token, &[], disk(4 * MIB, 6));
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["data"]["vdiSize"], 8 * MIB);
    assert!(export_raw(&edge, &token, &id) == third, "the VDI is untouched");
    assert_eq!(counts(&edge).1, 0);
}

#[test]
fn failed_imports_leave_no_vdi_and_no_task() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let sr_uuid = sr(&edge, "Shared NFS storage");
    let iso = sr(&edge, "ISO library");
    let raw = disk(4 * MIB, 7);
    let vhd = to_vhd(&raw, "fail", "dynamic");
    let fixed = to_vhd(&raw, "fixed", "fixed");
    let (vdis, _, sessions) = counts(&edge);
    let new = format!("/rest/v0/srs/{sr_uuid}/vdis");
    let new_raw = format!("/rest/v0/srs/{sr_uuid}/vdis?raw");
    let mut broken_vhd = vhd.clone();
    broken_vhd[512 + 100] ^= 0xff; // inside the header: its checksum fails
    let mut bad_gzip = compress("gzip", &vhd);
    let n = bad_gzip.len();
    bad_gzip.truncate(n / 2);
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("not a VHD", new.clone(), vec![], raw.clone(), 415),
        ("a fixed VHD", new.clone(), vec![], fixed, 415),
        ("a damaged VHD header", new.clone(), vec![], broken_vhd, 422),
        ("a VHD with bytes after its footer", new.clone(), vec![], [vhd.clone(), vec![0; 512]].concat(), 422),
        ("a cut gzip body", new.clone(), vec![("content-encoding", "gzip")], bad_gzip, 422),
        ("an unknown encoding", new.clone(), vec![("content-encoding", "br")], vhd.clone(), 415),
        ("raw with a wrong size=", format!("{new_raw}&size=10"), vec![], raw.clone(), 400),
        (
            "compressed raw without size=",
            new_raw.clone(),
            vec![("content-encoding", "zstd")],
            compress("zstd", &raw),
            411,
        ),
        (
            "compressed raw longer than size=",
            format!("{new_raw}&size=1048576"),
            vec![("content-encoding", "zstd")],
            compress("zstd", &raw),
            413,
        ),
        (
            "compressed raw shorter than size=",
            format!("{new_raw}&size=8388608"),
            vec![("content-encoding", "zstd")],
            compress("zstd", &raw),
            400,
        ),
        (
            "an unknown SR",
            "/rest/v0/srs/00000000-0000-0000-0000-000000000000/vdis?raw".into(),
            vec![],
            raw.clone(),
            404,
        ),
        ("an ISO SR", format!("/rest/v0/srs/{iso}/vdis?raw"), vec![], raw.clone(), 400),
    ];
    for (what, path, headers, body, status) in cases {
        let (got, err) = send(&edge, "POST", &path, &token, &headers, body);
        assert_eq!(got, status, "{what}: {err}");
        assert!(err["error"].is_string(), "{what}: a JSON error");
        assert_eq!(
            edge.settled(&(vdis, 0, sessions), counts),
            (vdis, 0, sessions),
            "{what}: something was left behind"
        );
    }
    // XAPI fails: creating the VDI, or in the middle of the upload (raw pass-through and VHD through the guest).
    // (An SR without space is 507 Insufficient Storage; XAPI failing otherwise is 502.)
    for (fault, path, body, status) in [
        (
            json!({"fail": [{"method": "VDI.create", "nth": 1, "error": ["SR_BACKEND_FAILURE_44", "", "no space", ""]}]}),
            new_raw.clone(),
            raw.clone(),
            507,
        ),
        (json!({"cut_after": {"/import_raw_vdi": 1_000_000}}), new_raw.clone(), raw.clone(), 502),
        (json!({"cut_after": {"/import_raw_vdi": 1_000_000}}), new.clone(), vhd.clone(), 502),
        (
            json!({"fail": [{"method": "/import_raw_vdi", "nth": 1, "error": ["VDI_IO_ERROR", "device"]}]}),
            new.clone(),
            vhd.clone(),
            502,
        ),
    ] {
        edge.faults(fault.clone());
        let (got, err) = send(&edge, "POST", &path, &token, &[], body);
        assert_eq!(got, status, "{fault}: {err}");
        assert_eq!(
            edge.settled(&(vdis, 0, sessions), counts),
            (vdis, 0, sessions),
            "{fault}: something was left behind"
        );
    }
    edge.faults(json!({}));
    // The client hangs up in the middle: pass-through raw, and a VHD read through the guest.
    send_short(&edge, &new_raw, &token, raw.len(), &raw[..raw.len() / 2]);
    assert_eq!(edge.settled(&(vdis, 0, sessions), counts), (vdis, 0, sessions), "abandoned raw upload");
    send_short(&edge, &new, &token, vhd.len(), &vhd[..vhd.len() / 2]);
    assert_eq!(edge.settled(&(vdis, 0, sessions), counts), (vdis, 0, sessions), "abandoned VHD upload");
    // Basic credentials: the temporary session goes too, success or failure.
    let r = edge.http.post(format!("{}{new}", edge.url)).basic_auth("root", Some("xapi-sim")).body(raw.clone()).send();
    assert_eq!(r.unwrap().status().as_u16(), 415);
    let r = edge.http.post(format!("{}{new_raw}", edge.url)).basic_auth("root", Some("xapi-sim")).body(raw.clone());
    assert_eq!(r.send().unwrap().status().as_u16(), 201);
    assert_eq!(edge.settled(&(vdis + 1, 0, sessions), counts), (vdis + 1, 0, sessions));
}
