//! The HTTP handlers over real HTTP: XVA structure and checksums, VHD read by qemu-img, VHD made by qemu-img
//! imported bit-exact, chunked uploads refused, auth, faults.

mod common;
use common::Sim;
use serde_json::{json, Value as J};
use std::io::Read;
use std::process::Command;

fn uuid_of(sim: &Sim, sid: &str, class: &str, r: &str) -> String {
    sim.call(&format!("{class}.get_uuid"), json!([sid, r])).unwrap().as_str().unwrap().to_string()
}

fn fetch(sim: &Sim, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = sim.get(path);
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let mut body = Vec::new();
    let _ = r.read_to_end(&mut body);
    (status, headers, body)
}

/// Checks an XVA and that each disk's content equals the simulator's VDI.
fn check_xva(sim: &Sim, bytes: &[u8]) -> xapi_sim::xva::XvaContents {
    let xva = xapi_sim::xva::read_and_check(bytes).expect("valid XVA");
    for (id, (size, digest)) in &xva.disks {
        let uuid = &xva.disk_uuids[id];
        let info = sim.vdi_info(uuid);
        assert_eq!(info["size"].as_u64().unwrap(), *size, "{id}");
        assert_eq!(info["digest"].as_str().unwrap(), digest, "content of {id} ({uuid})");
    }
    xva
}

#[test]
fn xva_export_is_valid_and_complete_in_every_compression() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let (status, headers, plain) = fetch(&sim, &format!("/export?ref={vm}&session_id={sid}"));
    assert_eq!(status, 200);
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-disposition"], "attachment; filename=\"export.xva\"");
    assert!(headers["task-id"].to_str().unwrap().starts_with("OpaqueRef:"));
    let xva = check_xva(&sim, &plain);
    assert_eq!(xva.disks.len(), 1);
    // The 64 MiB disk holds data in MiB 0-5 and 40-42, plus the mandatory last chunk.
    assert_eq!(xva.chunks, 6 + 3 + 1);
    assert!(xva.ova_xml.starts_with("<value><struct><member><name>version</name>"));
    assert!(xva.ova_xml.contains("<name>export_vsn</name><value>2</value>"));
    // By uuid too, and compressed: decompresses to a valid XVA with the same disks.
    let uuid = uuid_of(&sim, &sid, "VM", &vm);
    for (param, magic) in
        [("gzip", &[0x1f, 0x8b][..]), ("true", &[0x1f, 0x8b][..]), ("zstd", &[0x28, 0xb5, 0x2f, 0xfd][..])]
    {
        let (status, _, body) = fetch(&sim, &format!("/export/?uuid={uuid}&session_id={sid}&use_compression={param}"));
        assert_eq!(status, 200);
        assert_eq!(&body[..magic.len()], magic, "{param}");
        let mut raw = Vec::new();
        if magic[0] == 0x1f {
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut raw).unwrap();
        } else {
            zstd::stream::read::Decoder::new(&body[..]).unwrap().read_to_end(&mut raw).unwrap();
        }
        let again = check_xva(&sim, &raw);
        assert_eq!(again.disks, xva.disks);
    }
    // Several disks, sorted by id as strings, CD excluded; snapshots and templates export too.
    for name in ["Windows Server 2022 - patched", "Web server template", "Debian 12 web - before upgrade", "Empty VM"] {
        let r = sim.by_name(&sid, "VM", name);
        let (status, _, body) = fetch(&sim, &format!("/export?ref={r}&session_id={sid}"));
        assert_eq!(status, 200, "{name}");
        let x = check_xva(&sim, &body);
        if name.starts_with("Debian") {
            assert_eq!(x.disks.len(), 2);
        }
    }
    // No task leaked by handler-owned tasks.
    assert_eq!(sim.stats()["tasks"], 0);
}

#[test]
fn export_refuses_running_vms_and_reports_on_the_task() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let task = sim.call("task.create", json!([sid, "export", ""])).unwrap();
    let task = task.as_str().unwrap();
    let (status, _, body) = fetch(&sim, &format!("/export?ref={vm}&session_id={sid}&task_id={task}"));
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&body).contains("VM_BAD_POWER_STATE"));
    assert_eq!(sim.call("task.get_status", json!([sid, task])).unwrap(), "failure");
    assert_eq!(
        sim.call("task.get_error_info", json!([sid, task])).unwrap(),
        json!(["VM_BAD_POWER_STATE", vm, "halted", "running"])
    );
    // Blocked export, unknown VM.
    let protected = sim.by_name(&sid, "VM", "Protected VM");
    let (status, _, body) = fetch(&sim, &format!("/export?ref={protected}&session_id={sid}"));
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&body).contains("OPERATION_BLOCKED"));
    let (status, _, _) = fetch(&sim, &format!("/export?uuid=00000000-0000-0000-0000-000000000000&session_id={sid}"));
    assert_eq!(status, 500);
    // A suspended VM exports.
    let freenas = sim.by_name(&sid, "VM", "FreeNAS");
    let (status, _, body) = fetch(&sim, &format!("/export?ref={freenas}&session_id={sid}"));
    assert_eq!(status, 200);
    check_xva(&sim, &body);
}

#[test]
fn zstd_export_refused_where_restricted() {
    let sim = Sim::start_with(xapi_sim::Options { restrict_zstd: true, ..Default::default() });
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    assert_eq!(fetch(&sim, &format!("/export?ref={vm}&session_id={sid}&use_compression=zstd")).0, 500);
    assert_eq!(fetch(&sim, &format!("/export?ref={vm}&session_id={sid}&use_compression=gzip")).0, 200);
}

#[test]
fn handler_auth_session_cookie_basic_and_rbac() {
    let sim = Sim::start();
    let sid = sim.root();
    let vdi = sim.by_name(&sid, "VDI", "agent root");
    let path = format!("/export_raw_vdi?vdi={vdi}&format=raw");
    let r = sim.get(&path);
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"xapi\"");
    assert_eq!(sim.get(&format!("{path}&session_id=OpaqueRef:bad")).status().as_u16(), 401);
    let by_cookie =
        sim.http.get(format!("{}{path}", sim.url)).header("cookie", format!("session_id={sid}")).send().unwrap();
    assert_eq!(by_cookie.status().as_u16(), 200);
    assert_eq!(by_cookie.bytes().unwrap().len(), 32 << 20);
    let sessions = sim.stats()["sessions"].as_u64().unwrap();
    let basic = sim.http.get(format!("{}{path}", sim.url)).basic_auth("root", Some("xapi-sim")).send().unwrap();
    assert_eq!(basic.status().as_u16(), 200);
    assert_eq!(basic.bytes().unwrap().len(), 32 << 20);
    assert_eq!(sim.stats()["sessions"].as_u64().unwrap(), sessions, "the Basic temporary session is logged out");
    let wrong = sim.http.get(format!("{}{path}", sim.url)).basic_auth("root", Some("nope")).send().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let ro = sim.login("auditor", "auditor-password");
    assert_eq!(sim.get(&format!("{path}&session_id={ro}")).status().as_u16(), 403);
    assert_eq!(sim.get(&format!("/export_raw_vdi?vdi={vdi}&format=qcow9&session_id={sid}")).status().as_u16(), 404);
}

fn have_qemu_img() -> bool {
    Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn vhd_export_reads_back_with_qemu_img_equal_to_raw() {
    assert!(have_qemu_img(), "qemu-img is required (Debian package qemu-utils)");
    let sim = Sim::start();
    let sid = sim.root();
    let dir = tempfile::tempdir().unwrap();
    for name in ["rocky root", "agent root", "web data"] {
        let vdi = sim.by_name(&sid, "VDI", name);
        let uuid = uuid_of(&sim, &sid, "VDI", &vdi);
        let (status, headers, vhd) = fetch(&sim, &format!("/export_raw_vdi?vdi={uuid}&format=vhd&session_id={sid}"));
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/vhd");
        assert_eq!(headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"{uuid}.vhd\""));
        let (_, _, raw) = fetch(&sim, &format!("/export_raw_vdi?vdi={vdi}&format=raw&session_id={sid}"));
        let size = sim.call("VDI.get_virtual_size", json!([sid, vdi])).unwrap().as_u64().unwrap();
        assert_eq!(raw.len() as u64, size);
        if name == "rocky root" {
            assert!(vhd.len() < raw.len() / 4, "only allocated blocks are exported");
        }
        let vhd_path = dir.path().join("d.vhd");
        let out = dir.path().join("d.raw");
        std::fs::write(&vhd_path, &vhd).unwrap();
        let st = Command::new("qemu-img")
            .args(["convert", "-f", "vpc", "-O", "raw"])
            .arg(&vhd_path)
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let converted = std::fs::read(&out).unwrap();
        assert_eq!(converted.len(), raw.len(), "{name}");
        assert!(converted == raw, "{name}: qemu-img's reading of our VHD equals the raw export");
    }
}

#[test]
fn vhd_made_by_qemu_img_imports_bit_exact() {
    assert!(have_qemu_img(), "qemu-img is required (Debian package qemu-utils)");
    let sim = Sim::start();
    let sid = sim.root();
    let dir = tempfile::tempdir().unwrap();
    // 20 MiB + 4 KiB source with data in a few places, including a partial last block.
    let size: usize = (20 << 20) + 4096;
    let mut raw = vec![0u8; size];
    for (i, b) in raw[..3 << 20].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    raw[(9 << 20) + 100..(9 << 20) + 5000].fill(0xAB);
    raw[size - 3000..].fill(0x5C);
    let src = dir.path().join("src.raw");
    let vhd_path = dir.path().join("src.vhd");
    std::fs::write(&src, &raw).unwrap();
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on"])
        .arg(&src)
        .arg(&vhd_path)
        .status()
        .unwrap();
    assert!(st.success());
    let vhd = std::fs::read(&vhd_path).unwrap();
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    for (format, body) in [("vhd", vhd), ("raw", raw.clone())] {
        let vdi = sim.new_vdi(&sid, &sr, size as u64);
        let task = sim.new_task(&sid);
        let status =
            sim.put(&format!("/import_raw_vdi?vdi={vdi}&format={format}&session_id={sid}&task_id={task}"), body);
        assert_eq!(status, Some(200), "{format}");
        assert_eq!(sim.task_status(&sid, &task), "success", "{format}");
        assert_eq!(sim.call("task.get_result", json!([sid, task])).unwrap(), json!(format!("<value>{vdi}</value>")));
        let (_, _, back) = fetch(&sim, &format!("/export_raw_vdi?vdi={vdi}&format=raw&session_id={sid}"));
        assert!(back == raw, "imported {format} reads back bit-exact");
        sim.call("task.destroy", json!([sid, task])).unwrap();
    }
}

#[test]
fn chunked_and_broken_imports_fail_as_xapi_does() {
    let sim = Sim::start();
    let sid = sim.root();
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    let vdi = sim.new_vdi(&sid, &sr, 4 << 20);
    let url = format!("{}/import_raw_vdi?vdi={vdi}&format=raw&session_id={sid}", sim.url);
    // Chunked transfer encoding (a body of unknown length): 404 as XAPI ("Cannot handle encoding").
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(vec![1u8; 2000]));
    assert_eq!(sim.http.put(&url).body(chunked).send().unwrap().status().as_u16(), 404);
    // Raw bigger than the VDI, and a VHD that is not one: the task fails (with the parser's reason).
    let task = sim.new_task(&sid);
    let _ =
        sim.put(&format!("/import_raw_vdi?vdi={vdi}&format=raw&session_id={sid}&task_id={task}"), vec![1u8; 5 << 20]);
    assert_eq!(sim.task_status(&sid, &task), "failure");
    let task = sim.new_task(&sid);
    let _ = sim.put(&format!("/import_raw_vdi?vdi={vdi}&format=vhd&session_id={sid}&task_id={task}"), vec![0u8; 4096]);
    assert_eq!(sim.task_status(&sid, &task), "failure");
    let info = sim.call("task.get_error_info", json!([sid, task])).unwrap();
    assert!(info[1].as_str().unwrap().contains("conectix"), "{info}");
    // VHD without a target VDI: 400.
    assert_eq!(sim.put(&format!("/import_raw_vdi?sr_id={sr}&format=vhd&session_id={sid}"), vec![0u8; 512]), Some(400));
    // Raw onto an SR creates "Imported VDI" sized by Content-Length.
    let before = sim.stats()["vdis"].as_u64().unwrap();
    let task = sim.new_task(&sid);
    let status =
        sim.put(&format!("/import_raw_vdi?sr_id={sr}&format=raw&session_id={sid}&task_id={task}"), vec![3u8; 1 << 20]);
    assert_eq!(status, Some(200));
    assert_eq!(sim.stats()["vdis"].as_u64().unwrap(), before + 1);
    let result = sim.call("task.get_result", json!([sid, task])).unwrap();
    let new_vdi = result.as_str().unwrap().trim_start_matches("<value>").trim_end_matches("</value>").to_string();
    assert_eq!(sim.call("VDI.get_virtual_size", json!([sid, new_vdi])).unwrap(), json!(1 << 20));
}

#[test]
fn stream_faults_cut_or_corrupt_exports_and_fail_the_task() {
    let sim = Sim::start();
    let sid = sim.root();
    let vdi = sim.by_name(&sid, "VDI", "agent root");
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let settle = || std::thread::sleep(std::time::Duration::from_millis(200));
    // Cut after 1 MiB: the body is short and the task fails.
    sim.faults(json!({"cut_after": {"/export_raw_vdi": 1048576}}));
    let task = sim.new_task(&sid);
    let (status, _, body) =
        fetch(&sim, &format!("/export_raw_vdi?vdi={vdi}&format=raw&session_id={sid}&task_id={task}"));
    assert_eq!((status, body.len()), (200, 1 << 20));
    settle();
    assert_eq!(sim.task_status(&sid, &task), "failure");
    // HTTP/1.1 500 inside a 200 body (xen-api issue 4603).
    sim.faults(json!({"http_error_in_body": ["/export"]}));
    let task = sim.new_task(&sid);
    let (status, _, body) = fetch(&sim, &format!("/export?ref={vm}&session_id={sid}&task_id={task}"));
    assert_eq!(status, 200);
    assert!(body.starts_with(b"HTTP/1.1 500"));
    settle();
    assert_eq!(sim.task_status(&sid, &task), "failure");
    // Failing the Nth handler request.
    sim.faults(json!({"fail": [{"method": "/export", "nth": 1}]}));
    assert_eq!(fetch(&sim, &format!("/export?ref={vm}&session_id={sid}")).0, 500);
    assert_eq!(fetch(&sim, &format!("/export?ref={vm}&session_id={sid}")).0, 200);
    assert_eq!(sim.stats()["handler_requests"]["/export"], 3);
}

#[test]
fn cancelling_a_task_stops_a_transfer() {
    let sim = Sim::start();
    let sid = sim.root();
    let vdi = sim.by_name(&sid, "VDI", "100 GiB holding 10 MiB");
    let task = sim.call("task.create", json!([sid, "t", ""])).unwrap();
    let task = task.as_str().unwrap().to_string();
    let mut r = sim.get(&format!("/export_raw_vdi?vdi={vdi}&format=raw&session_id={sid}&task_id={task}"));
    let mut buf = vec![0u8; 1 << 20];
    r.read_exact(&mut buf).unwrap();
    sim.call("task.cancel", json!([sid, task])).unwrap();
    let mut total = 1u64 << 20;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(total < 1 << 30, "stopped well before 100 GiB ({total})");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sim.call("task.get_status", json!([sid, task])).unwrap(), "cancelled");
    let _: J = sim.stats();
}

#[test]
fn a_100_gib_vdi_holding_10_mib_costs_about_10_mib() {
    let sim = Sim::start();
    let sid = sim.root();
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    let rec = json!({"name_label": "big", "SR": sr, "virtual_size": 100i64 << 30, "type": "user", "sharable": false, "read_only": false, "other_config": {}});
    let vdi = sim.call("VDI.create", json!([sid, rec])).unwrap();
    let vdi = vdi.as_str().unwrap();
    let before = sim.stats()["stored_disk_bytes"].as_u64().unwrap();
    let data: Vec<u8> = (0..10u32 << 20).map(|i| (i % 253) as u8 | 1).collect();
    let r = sim
        .http
        .put(format!("{}/import_raw_vdi?vdi={vdi}&format=raw&session_id={sid}", sim.url))
        .body(data)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The import is over when the answer ends (the header comes first, as on XAPI).
    let _ = r.bytes();
    let grown = sim.stats()["stored_disk_bytes"].as_u64().unwrap() - before;
    assert_eq!(grown, 10 << 20, "only the written 10 MiB are stored");
    // The demo's synthetic 100 GiB disk stores nothing and exports as a small VHD.
    let big = sim.by_name(&sid, "VDI", "100 GiB holding 10 MiB");
    let mut r = sim.get(&format!("/export_raw_vdi?vdi={big}&format=vhd&session_id={sid}"));
    let mut vhd = Vec::new();
    r.read_to_end(&mut vhd).unwrap();
    assert!(vhd.len() < 16 << 20, "{}", vhd.len());
}

/// A transfer's task reports its progress while it runs and ends at 1 (XAPI: `Vhd_tool_wrapper` and the export
/// code update `Task.progress` as bytes move; `TaskHelper.complete` sets 1).
#[test]
fn transfer_tasks_report_progress_while_they_run() {
    let sim = Sim::start();
    let sid = sim.root();
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    let size = 8u64 << 20;
    let vdi = sim.new_vdi(&sid, &sr, size);
    let progress = |t: &str| sim.call("task.get_progress", json!([sid, t])).unwrap().as_f64().unwrap();
    // Import: a body that arrives over about a second.
    struct Slow(u64);
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Ok(0);
            }
            // About 8 MiB/s whatever the reader's buffer size: 1 ms per 8 KiB.
            let n = (buf.len() as u64).min(self.0).min(8 << 10) as usize;
            std::thread::sleep(std::time::Duration::from_millis(1));
            buf[..n].fill(5);
            self.0 -= n as u64;
            Ok(n)
        }
    }
    let task = sim.new_task(&sid);
    let url = format!("{}/import_raw_vdi?vdi={vdi}&format=raw&session_id={sid}&task_id={task}", sim.url);
    let http = sim.http.clone();
    let upload = std::thread::spawn(move || {
        let body = reqwest::blocking::Body::sized(Slow(size), size);
        let r = http.put(url).body(body).send().unwrap();
        let _ = r.bytes();
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mid = progress(&task);
    upload.join().unwrap();
    assert!(mid > 0.0 && mid < 1.0, "import progress mid-way: {mid}");
    assert_eq!((sim.task_status(&sid, &task), progress(&task)), ("success".to_string(), 1.0));
    // Export: throttled to about a second.
    sim.faults(json!({"throttle_bytes_per_sec": {"/export_raw_vdi": size}}));
    let task = sim.new_task(&sid);
    let mut r = sim.get(&format!("/export_raw_vdi?vdi={vdi}&format=raw&session_id={sid}&task_id={task}"));
    let mut buf = vec![0u8; 4 << 20];
    r.read_exact(&mut buf).unwrap();
    let mid = progress(&task);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(mid > 0.0 && mid < 1.0, "export progress mid-way: {mid}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!((sim.task_status(&sid, &task), progress(&task)), ("success".to_string(), 1.0));
}

/// The XVAs' `ova.xml`, read by Python's own XML-RPC parser, has XAPI's value types for every field: the version
/// struct as `importexport.ml` (`rpc_of_version`) builds it and each object's record as the datamodel types it,
/// encoded as rpclib's `Xmlrpc.to_string` writes them (`tests/python/ova_types.py` says how).
#[test]
fn xva_ova_xml_has_xapis_value_types() {
    let sim = Sim::start();
    let sid = sim.root();
    let dir = tempfile::tempdir().unwrap();
    let vms = sim.call("VM.get_all_records_where", json!([sid, r#"field "is_control_domain"="false""#])).unwrap();
    let mut files = Vec::new();
    for (vm, rec) in vms.as_object().unwrap() {
        let state = rec["power_state"].as_str().unwrap();
        if rec["blocked_operations"].get("export").is_some() || !matches!(state, "Halted" | "Suspended") {
            continue;
        }
        let (status, _, body) = fetch(&sim, &format!("/export?ref={vm}&session_id={sid}"));
        assert_eq!(status, 200, "{vm}");
        let path = dir.path().join(format!("{}.xva", files.len()));
        std::fs::write(&path, body).unwrap();
        files.push(path);
    }
    assert!(files.len() >= 4, "{} XVAs", files.len());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(manifest.join("tests/python/ova_types.py"))
        .arg(manifest.join("src/datamodel.json"))
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ova.xml types OK"), "{stdout}");
}
