//! `POST /rest/v0/pools/<id>/actions/create_vm` end to end: a VM from a template with its own disks, or with the
//! disks, VIFs, settings and install media asked; the cloud-init config drive made at the edge and read back from
//! the VDI's content; the drive removed once the guest's agent reported; refusals before any write, and failures
//! mid-plan that leave no VM, disk, device or task behind.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::io::Read;
use std::time::{Duration, Instant};

fn sim(edge: &Edge, method: &str, args: J) -> J {
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let mut params = vec![sid.clone()];
    params.extend(args.as_array().unwrap().iter().cloned());
    let r = edge.xapi(method, J::Array(params));
    edge.xapi("session.logout", json!([sid]));
    assert!(r.get("error").is_none_or(J::is_null), "{method}: {r}");
    r["result"].clone()
}

fn send(edge: &Edge, t: &str, path: &str, body: J) -> (u16, String, J) {
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(t).json(&body).send().unwrap();
    let status = r.status().as_u16();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.text().unwrap();
    (status, location, serde_json::from_str(&text).unwrap_or(J::String(text)))
}

/// VMs (all kinds), VDIs, VBDs, VIFs, tasks.
fn counts(edge: &Edge) -> [u64; 5] {
    let s = edge.sim_stats();
    let o = |c: &str| s["objects"][c].as_u64().unwrap_or(0);
    [o("VM"), s["vdis"].as_u64().unwrap(), o("VBD"), o("VIF"), s["tasks"].as_u64().unwrap()]
}

struct Setup {
    edge: Edge,
    token: String,
    path: String,
    template: String,
}

fn setup() -> Setup {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    let pool = edge.uuid_of(&token, "pools", "Demo pool");
    let template = edge.uuid_of(&token, "vm-templates", "Debian Bookworm 12");
    Setup { edge, token, path: format!("/rest/v0/pools/{pool}/actions/create_vm"), template }
}

/// The VM's disks: (userdevice, SR name, size, VDI uuid), CDs left out.
fn disks(edge: &Edge, vm: &str) -> Vec<(String, String, u64, String)> {
    let mut out = Vec::new();
    for vbd in sim(edge, "VM.get_VBDs", json!([vm])).as_array().unwrap() {
        let v = sim(edge, "VBD.get_record", json!([vbd]));
        if v["type"] == "CD" {
            continue;
        }
        let d = sim(edge, "VDI.get_record", json!([v["VDI"]]));
        let sr = sim(edge, "SR.get_name_label", json!([d["SR"]])).as_str().unwrap().to_string();
        out.push((
            v["userdevice"].as_str().unwrap().to_string(),
            sr,
            d["virtual_size"].as_u64().unwrap(),
            d["uuid"].as_str().unwrap().to_string(),
        ));
    }
    out.sort();
    out
}

fn vm_ref(edge: &Edge, uuid: &str) -> String {
    sim(edge, "VM.get_by_uuid", json!([uuid])).as_str().unwrap().to_string()
}

#[test]
fn a_vm_from_a_template_with_its_disks_settings_and_vifs() {
    let Setup { edge, token, path, template } = setup();
    let eth1 = edge.uuid_of(&token, "networks", "Pool-wide network associated with eth1");
    let before = counts(&edge);
    let body = json!({
        "name_label": "web-1", "template": template, "name_description": "made by the test",
        "memory": 2u64 << 30, "cpus": 2, "autoPoweron": true,
        "vifs": [{"network": eth1, "mac": "02:00:00:aa:bb:01"}],
        "boot": true,
    });
    let (status, location, answer) = send(&edge, &token, &format!("{path}?sync"), body);
    assert_eq!(status, 201, "{answer}");
    let uuid = answer["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/vms/{uuid}"));
    let vm = vm_ref(&edge, &uuid);
    let rec = sim(&edge, "VM.get_record", json!([vm]));
    assert_eq!(
        (rec["name_label"].as_str(), rec["name_description"].as_str()),
        (Some("web-1"), Some("made by the test"))
    );
    assert_eq!((rec["is_a_template"].clone(), rec["power_state"].clone()), (json!(false), json!("Running")));
    assert_eq!(rec["memory_dynamic_max"], json!(2u64 << 30));
    assert_eq!(rec["VCPUs_at_startup"], json!(2));
    assert_eq!(rec["other_config"]["auto_poweron"], "true");
    assert!(rec["other_config"].get("disks").is_none(), "the provision XML is used up");
    // The template's disk (10 GiB, its XML naming no SR): on the pool's default SR, at device 0.
    let d = disks(&edge, &vm);
    assert_eq!(
        d.iter().map(|(u, sr, size, _)| (u.as_str(), sr.as_str(), *size)).collect::<Vec<_>>(),
        [("0", "Shared NFS storage", 10u64 << 30)]
    );
    let vifs = sim(&edge, "VM.get_VIFs", json!([vm]));
    let vif = sim(&edge, "VIF.get_record", json!([vifs[0]]));
    assert_eq!((vif["MAC"].as_str(), vif["device"].as_str()), (Some("02:00:00:aa:bb:01"), Some("0")));
    assert_eq!(sim(&edge, "network.get_name_label", json!([vif["network"]])), "Pool-wide network associated with eth1");
    let after = counts(&edge);
    assert_eq!([after[0], after[1], after[3], after[4]], [before[0] + 1, before[1] + 1, before[3] + 1, before[4]]);
    // The VM as XO shows it.
    let r = edge.get(&location).bearer_auth(&token).send().unwrap().json::<J>().unwrap();
    assert_eq!((r["name_label"].as_str(), r["power_state"].as_str()), (Some("web-1"), Some("Running")));
}

#[test]
fn asked_disks_install_media_and_a_task_to_follow() {
    let Setup { edge, token, path, template } = setup();
    let local = edge.uuid_of(&token, "srs", "Local storage");
    let iso = edge.uuid_of(&token, "vdis", "debian-12.9.0-amd64-netinst.iso");
    let stream = edge.watch_tasks(&token, "ndjson&watch");
    let body = json!({
        "name_label": "db-1", "template": template, "clone": false,
        "vdis": [{"name_label": "root", "size": 64u64 << 20, "SR": local}, {"name_label": "data", "name_description": "d", "size": 32u64 << 20}],
        "install": {"method": "cdrom", "repository": iso},
    });
    let (status, location, answer) = send(&edge, &token, &path, body);
    assert_eq!(status, 202, "{answer}");
    assert!(location.starts_with("/rest/v0/tasks/"), "{location}");
    let end = loop {
        let line = stream.recv_timeout(Duration::from_secs(30)).expect("the task ends on the stream");
        if line[0] == "update" && line[1]["href"] == location.as_str() && line[1]["status"] != "pending" {
            break line[1].clone();
        }
    };
    assert_eq!(end["status"], "success", "{end}");
    let href = end["result"]["href"].as_str().or(end["result"].as_str()).unwrap_or_default().to_string();
    let uuid = href.rsplit('/').next().unwrap().to_string();
    let vm = vm_ref(&edge, &uuid);
    // The template's own disk is not made (vdis given, as XO); the two asked are, the first bootable.
    let d = disks(&edge, &vm);
    assert_eq!(
        d.iter().map(|(_, sr, size, _)| (sr.as_str(), *size)).collect::<Vec<_>>(),
        [("Local storage", 64u64 << 20), ("Shared NFS storage", 32u64 << 20)]
    );
    let rec = sim(&edge, "VM.get_record", json!([vm]));
    assert_eq!(rec["power_state"], "Halted");
    let cd = rec["VBDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| sim(&edge, "VBD.get_record", json!([b])))
        .find(|v| v["type"] == "CD")
        .expect("a CD drive");
    assert_eq!(sim(&edge, "VDI.get_uuid", json!([cd["VDI"]])), iso.as_str(), "the ISO inserted");
    if rec["HVM_boot_policy"] != "" {
        assert!(rec["HVM_boot_params"]["order"].as_str().unwrap().starts_with('d'), "{}", rec["HVM_boot_params"]);
    } else {
        assert_eq!(rec["other_config"]["install-repository"], "cdrom");
    }
}

/// Reads the VDI `uuid`'s content through the edge (`.raw`) and opens it as a FAT volume.
fn drive(edge: &Edge, token: &str, uuid: &str) -> fatfs::FileSystem<std::io::Cursor<Vec<u8>>> {
    let r = edge.get(&format!("/rest/v0/vdis/{uuid}.raw")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().unwrap().to_vec();
    fatfs::FileSystem::new(std::io::Cursor::new(bytes), fatfs::FsOptions::new()).expect("a FAT volume")
}

fn file(fs: &fatfs::FileSystem<std::io::Cursor<Vec<u8>>>, path: &str) -> Option<String> {
    let mut s = String::new();
    fs.root_dir().open_file(path).ok()?.read_to_string(&mut s).ok()?;
    Some(s)
}

#[test]
fn cloud_init_gets_a_config_drive_read_back_from_the_disk() {
    let Setup { edge, token, path, template } = setup();
    let user = "#cloud-config\nhostname: ci-1\nusers:\n  - name: admin\n";
    let network = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";
    let body = json!({ "name_label": "ci-1", "template": template, "cloud_config": user, "network_config": network });
    let (status, _, answer) = send(&edge, &token, &format!("{path}?sync"), body);
    assert_eq!(status, 201, "{answer}");
    let uuid = answer["id"].as_str().unwrap().to_string();
    let vm = vm_ref(&edge, &uuid);
    let d = disks(&edge, &vm);
    assert_eq!(d.len(), 2, "{d:?}");
    let (_, sr, size, vdi) = d.iter().find(|(_, _, size, _)| *size < 1 << 30).unwrap().clone();
    assert_eq!((sr.as_str(), size), ("Shared NFS storage", 2 << 20), "on the SR of the VM's first disk");
    assert_eq!(
        sim(&edge, "VDI.get_name_label", json!([sim(&edge, "VDI.get_by_uuid", json!([vdi]))])),
        "XO CloudConfigDrive"
    );
    let fs = drive(&edge, &token, &vdi);
    assert_eq!(fs.volume_label(), "cidata");
    assert_eq!(file(&fs, "user-data").as_deref(), Some(user));
    assert_eq!(file(&fs, "network-config").as_deref(), Some(network));
    assert_eq!(file(&fs, "meta-data"), Some(format!("instance-id: {uuid}\n")));
    assert_eq!(file(&fs, "openstack/latest/user_data").as_deref(), Some(user));
    // The read-back export ends its own task in the background of its answer: wait for that, not just the upload's.
    let tasks = edge.settled(&json!(0), |e| e.sim_stats()["tasks"].clone());
    assert_eq!(tasks, 0, "the upload's task is gone");
}

#[test]
fn the_config_drive_goes_once_the_guest_agent_reported() {
    let Setup { edge, token, path, template } = setup();
    let body = json!({
        "name_label": "ci-2", "template": template, "cloud_config": "#cloud-config\n", "boot": true,
        "destroy_cloud_config_vdi": true,
    });
    let url = format!("{}{path}?sync", edge.url);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let t = token.clone();
    let request = std::thread::spawn(move || {
        let r = client.post(url).bearer_auth(t).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<J>().unwrap())
    });
    // The guest boots, then its agent reports.
    let deadline = Instant::now() + Duration::from_secs(30);
    let vm = loop {
        let found = sim(&edge, "VM.get_by_name_label", json!(["ci-2"]));
        if let Some(vm) = found.as_array().and_then(|a| a.first()).and_then(J::as_str) {
            if sim(&edge, "VM.get_power_state", json!([vm])) == "Running" {
                break vm.to_string();
            }
        }
        assert!(Instant::now() < deadline, "the VM never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(disks(&edge, &vm).len(), 2, "the drive is there while the guest has not read it");
    assert!(!request.is_finished(), "the plan waits for the guest");
    let uuid = sim(&edge, "VM.get_uuid", json!([vm])).as_str().unwrap().to_string();
    let r = edge.http.post(format!("{}/_sim/vms/{uuid}/guest_agent", edge.sim_url)).send().unwrap();
    assert!(r.status().is_success());
    let (status, answer) = request.join().unwrap();
    assert_eq!(status, 201, "{answer}");
    let d = disks(&edge, &vm);
    assert_eq!(d.len(), 1, "the drive is gone: {d:?}");
    assert_eq!(d[0].2, 10 << 30);
}

#[test]
fn bad_requests_are_refused_before_any_write_and_failures_leave_nothing() {
    let Setup { edge, token, path, template } = setup();
    let eth0 = edge.uuid_of(&token, "networks", "Pool-wide network associated with eth0");
    let before = (counts(&edge), edge.sim_calls_of("Async.VM.clone"));
    for (what, body, want) in [
        ("no name", json!({"template": template}), 400),
        ("unknown template", json!({"name_label": "x", "template": "nope"}), 404),
        (
            "a VM is not a template",
            json!({"name_label": "x", "template": edge.uuid_of(&token, "vms", "Rocky Linux 8")}),
            404,
        ),
        ("unknown key", json!({"name_label": "x", "template": template, "colour": "red"}), 400),
        ("bad memory", json!({"name_label": "x", "template": template, "memory": -1}), 400),
        (
            "a VIF without network",
            json!({"name_label": "x", "template": template, "vifs": [{"mac": "02:00:00:00:00:01"}]}),
            400,
        ),
        ("unknown network", json!({"name_label": "x", "template": template, "vifs": [{"network": "nope"}]}), 404),
        ("bad MAC", json!({"name_label": "x", "template": template, "vifs": [{"network": eth0, "mac": "nope"}]}), 400),
        ("a disk without size", json!({"name_label": "x", "template": template, "vdis": [{"name_label": "d"}]}), 400),
        (
            "unknown SR",
            json!({"name_label": "x", "template": template, "vdis": [{"name_label": "d", "size": 1024, "sr": "nope"}]}),
            404,
        ),
        ("bad install", json!({"name_label": "x", "template": template, "install": {"method": "floppy"}}), 400),
        ("vGPU", json!({"name_label": "x", "template": template, "vgpuType": "x"}), 422),
        ("network_config alone", json!({"name_label": "x", "template": template, "network_config": "v: 2"}), 400),
        ("bad HA", json!({"name_label": "x", "template": template, "high_availability": "always"}), 400),
    ] {
        let (status, _, answer) = send(&edge, &token, &format!("{path}?sync"), body);
        assert_eq!(status, want, "{what}: {answer}");
        assert_eq!((counts(&edge), edge.sim_calls_of("Async.VM.clone")), before, "{what}: nothing written");
    }
    // The template's disks need the default SR: none, 409 before any write.
    let pool = sim(&edge, "pool.get_all", json!([]))[0].clone();
    let default = sim(&edge, "pool.get_default_SR", json!([pool]));
    sim(&edge, "pool.set_default_SR", json!([pool, "OpaqueRef:NULL"]));
    let (status, _, answer) =
        send(&edge, &token, &format!("{path}?sync"), json!({"name_label": "x", "template": template}));
    assert_eq!(status, 409, "{answer}");
    assert_eq!((counts(&edge), edge.sim_calls_of("Async.VM.clone")), before);
    sim(&edge, "pool.set_default_SR", json!([pool, default]));
    // XAPI fails mid-plan: each of these calls once; the VM and everything it got go, nothing is left.
    let faults = |spec: J| edge.faults(spec);
    // (The second VDI.create and VBD.create are the config drive's.)
    for (method, nth) in [
        ("Async.VM.clone", 1),
        ("Async.VM.provision", 1),
        ("VDI.create", 1),
        ("VBD.create", 1),
        ("VIF.create", 1),
        ("VDI.create", 2),
        ("/import_raw_vdi", 1),
        ("VBD.create", 2),
        ("Async.VM.start", 1),
    ] {
        faults(json!({"fail": [{"method": method, "nth": nth, "error": ["INTERNAL_ERROR", "injected"]}]}));
        let body = json!({
            "name_label": "doomed", "template": template, "vifs": [{"network": eth0}],
            "vdis": [{"name_label": "data", "size": 16u64 << 20}], "cloud_config": "#cloud-config\n", "boot": true,
        });
        let (status, _, answer) = send(&edge, &token, &format!("{path}?sync"), body);
        faults(json!({}));
        assert!(status >= 400, "{method} #{nth}: {status} {answer}");
        assert!(answer.to_string().contains("injected"), "{method} #{nth}: XAPI's error is answered: {answer}");
        let left = edge.settled(&before.0, counts);
        assert_eq!(left, before.0, "{method} #{nth}: left behind (VMs, VDIs, VBDs, VIFs, tasks)");
    }
}
