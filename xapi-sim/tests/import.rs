//! `PUT /import`: XVAs into new VMs, checked against XAPI's importer (`ocaml/xapi/import.ml`, `handler`,
//! `complete_import`, `Net.handle`; `stream_vdi.ml`, `recv_all_vdi`): plain, gzip and zstd (the latter two made by
//! the `flate2` and `zstd` crates, not by the simulator's exporter), the new VM's disks equal to the exported ones,
//! the default SR, chunked bodies refused, and nothing left by a broken import.

mod common;
use common::Sim;
use serde_json::{json, Value as J};
use std::io::{Read, Write};

fn rec(sim: &Sim, sid: &str, class: &str, r: &str) -> J {
    sim.call(&format!("{class}.get_record"), json!([sid, r])).unwrap()
}

fn export(sim: &Sim, sid: &str, vm: &str) -> Vec<u8> {
    let mut r = sim.get(&format!("/export?ref={vm}&session_id={sid}"));
    assert_eq!(r.status().as_u16(), 200);
    let mut body = Vec::new();
    r.read_to_end(&mut body).unwrap();
    body
}

/// PUTs an XVA to `/import` under a task of ours; answers the task's record once it has ended.
fn import(sim: &Sim, sid: &str, query: &str, body: Vec<u8>) -> J {
    let task = sim.new_task(sid);
    let status = sim.put(&format!("/import?session_id={sid}&task_id={task}{query}"), body);
    assert!(status.is_none() || status == Some(200), "{status:?}");
    sim.task_status(sid, &task);
    rec(sim, sid, "task", &task)
}

fn counts(sim: &Sim) -> (u64, u64, u64, u64) {
    let s = sim.stats();
    let o = |c: &str| s["objects"][c].as_u64().unwrap();
    (o("VM"), o("VDI"), o("VBD"), o("VIF"))
}

/// The VDIs of a VM's disks (empty drives left out).
fn disks_of(sim: &Sim, sid: &str, vm: &J) -> Vec<String> {
    vm["VBDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| rec(sim, sid, "VBD", b.as_str().unwrap())["VDI"].as_str().unwrap().to_string())
        .filter(|v| v != "OpaqueRef:NULL")
        .collect()
}

/// The VM a successful import made (`complete_import`: the task's result is the set of new VM refs).
fn made_vm(task: &J) -> String {
    let result = task["result"].as_str().unwrap();
    let start = result.find("OpaqueRef:").expect("a VM ref in the result");
    result[start..].split('<').next().unwrap().to_string()
}

#[test]
fn an_exported_vm_comes_back_whole_in_every_compression() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let source = rec(&sim, &sid, "VM", &vm);
    let local = sim.by_name(&sid, "SR", "Local storage");
    let plain = export(&sim, &sid, &vm);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    let source_disks = disks_of(&sim, &sid, &source);
    let digest_of = |vdi: &str| {
        let uuid = rec(&sim, &sid, "VDI", vdi)["uuid"].as_str().unwrap().to_string();
        sim.vdi_info(&uuid)["digest"].as_str().unwrap().to_string()
    };
    let want: Vec<String> = source_disks.iter().map(|v| digest_of(v)).collect();
    for (name, body) in [("plain", plain.clone()), ("gzip", gz), ("zstd", zst)] {
        let task = import(&sim, &sid, &format!("&sr_id={local}"), body);
        assert_eq!(task["status"], "success", "{name}: {task}");
        let new = made_vm(&task);
        let r = rec(&sim, &sid, "VM", &new);
        assert_ne!(r["uuid"], source["uuid"], "{name}: a new uuid");
        for k in ["name_label", "memory_static_max", "VCPUs_max", "HVM_boot_policy"] {
            assert_eq!(r[k], source[k], "{name}: {k}");
        }
        assert_eq!(r["power_state"], "Halted");
        assert_eq!(r["VIFs"].as_array().unwrap().len(), source["VIFs"].as_array().unwrap().len(), "{name}");
        let disks = disks_of(&sim, &sid, &r);
        let got: Vec<String> = disks.iter().map(|v| digest_of(v)).collect();
        assert_eq!(got, want, "{name}: the disks' contents");
        for d in &disks {
            assert_eq!(rec(&sim, &sid, "VDI", d)["SR"], json!(local), "{name}: onto the SR asked");
        }
    }
    // Without an SR: the pool's default SR.
    let task = import(&sim, &sid, "", plain);
    let new = made_vm(&task);
    let vbd = rec(&sim, &sid, "VM", &new)["VBDs"][0].as_str().unwrap().to_string();
    let vdi = rec(&sim, &sid, "VBD", &vbd)["VDI"].as_str().unwrap().to_string();
    let pool = sim.call("pool.get_all", json!([sid])).unwrap()[0].as_str().unwrap().to_string();
    assert_eq!(rec(&sim, &sid, "VDI", &vdi)["SR"], rec(&sim, &sid, "pool", &pool)["default_SR"]);
}

#[test]
fn broken_imports_leave_nothing() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let plain = export(&sim, &sid, &vm);
    let before = counts(&sim);
    // Cut short, inside a chunk and at a member boundary; a corrupt chunk; garbage.
    let mut corrupt = plain.clone();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 0xff;
    for (name, body) in [
        ("cut inside", plain[..plain.len() / 2].to_vec()),
        ("cut after ova.xml", plain[..4096].to_vec()),
        ("corrupt chunk", corrupt),
        ("not an XVA", vec![0x42; 8192]),
    ] {
        let task = import(&sim, &sid, "", body);
        assert_eq!(task["status"], "failure", "{name}: {task}");
        assert_eq!(counts(&sim), before, "{name}: nothing left");
    }
    // A chunked body: refused before anything (403, IMPORT_ERROR_CANNOT_HANDLE_CHUNKED on the task).
    let task = sim.new_task(&sid);
    let chunks = futures_like(plain[..4096].to_vec());
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/import?session_id={sid}&task_id={task}", sim.url))
        .body(reqwest::blocking::Body::new(chunks))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(rec(&sim, &sid, "task", &task)["error_info"][0], "IMPORT_ERROR_CANNOT_HANDLE_CHUNKED");
    // An ISO SR is refused.
    let iso = sim.by_name(&sid, "SR", "ISO library");
    let task = sim.new_task(&sid);
    assert_eq!(sim.put(&format!("/import?session_id={sid}&task_id={task}&sr_id={iso}"), vec![0; 512]), Some(400));
    assert_eq!(counts(&sim), before);
}

/// A reader with no known length, so that reqwest sends it chunked.
fn futures_like(data: Vec<u8>) -> impl Read + Send + 'static {
    std::io::Cursor::new(data)
}

/// Rewrites an uncompressed XVA member by member: `edit` gets each (name, data) and answers what to write instead.
fn rewrite(xva: &[u8], mut edit: impl FnMut(&str, Vec<u8>) -> Option<(String, Vec<u8>)>) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(xva);
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if let Some((name, data)) = edit(&name, data) {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o400);
            h.set_cksum();
            out.append_data(&mut h, &name, &data[..]).unwrap();
        }
    }
    out.into_inner().unwrap()
}

/// `stream_vdi.ml`, `recv_all_vdi`: each disk is read up to its `virtual_size` and no further, so an archive cut
/// right after the last disk's last checksum (its end-of-archive marker missing) imports; and
/// `verify_inline_checksum` checks `.checksum` members (SHA-1, lower-case hex, older XAPIs) as it does `.xxhash`.
#[test]
fn the_importer_stops_at_the_last_disk_and_checks_sha1_members() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let plain = export(&sim, &sid, &vm);
    let before = counts(&sim);
    let unended = rewrite(&plain, |n, d| Some((n.to_string(), d)));
    // tar::Builder::into_inner wrote the two zero blocks: take them off.
    let unended = unended[..unended.len() - 1024].to_vec();
    let task = import(&sim, &sid, "", unended);
    assert_eq!(task["status"], "success", "{task}");
    let made = made_vm(&task);
    let sha1_hex = |d: &[u8]| {
        use sha1::Digest;
        sha1::Sha1::digest(d).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut last = Vec::new();
    let with_sha1 = rewrite(&plain, |n, d| match n.strip_suffix(".xxhash") {
        Some(chunk) => Some((format!("{chunk}.checksum"), sha1_hex(&last).into_bytes())),
        None => {
            last = d.clone();
            Some((n.to_string(), d))
        }
    });
    let task = import(&sim, &sid, "", with_sha1.clone());
    assert_eq!(task["status"], "success", "{task}");
    let mut bad = with_sha1;
    // The first checksum member's text, upper-cased: XAPI compares strings exactly.
    let at = bad.windows(9).position(|w| w == b".checksum").unwrap();
    let data = (at / 512 + 1) * 512;
    bad[data..data + 40].make_ascii_uppercase();
    let task = import(&sim, &sid, "", bad);
    assert_eq!(task["status"], "failure", "{task}");
    let after = counts(&sim);
    assert_eq!(after.0, before.0 + 2, "two VMs made, the failed one removed");
    sim.call("VM.destroy", json!([sid, made])).unwrap();
}
