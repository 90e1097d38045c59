//! Issue 17 (running the pool: hosts, pools, SRs, networks, PBDs), end to end through the runtime against the
//! simulator: every action listed and described, refused with 409 and XAPI's code when the pool's state forbids it
//! (naming the VMs in the way), run as a task (202) or `?sync`, plans of several XAPI calls under one task, and
//! nothing left behind when a step fails.

mod common;

use common::Edge;
use serde_json::{json, Value as J};
use std::time::{Duration, Instant};

const PASSWORD: &str = "xapi-sim";

fn get(edge: &Edge, t: &str, path: &str) -> (u16, J) {
    let r = edge.get(path).bearer_auth(t).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(J::Null))
}

/// `method path` with a JSON body: status, Location, JSON answer.
fn send(edge: &Edge, t: &str, method: &str, path: &str, body: J) -> (u16, String, J) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = edge
        .http
        .request(m, format!("{}{path}", edge.url))
        .bearer_auth(t)
        .header("accept", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    (status, location, r.json().unwrap_or(J::Null))
}

fn sim_session(edge: &Edge) -> J {
    edge.xapi("session.login_with_password", json!(["root", PASSWORD]))["result"].clone()
}

/// A simulator call's result (with a fresh root session).
fn sim(edge: &Edge, method: &str, args: J) -> J {
    let sid = sim_session(edge);
    let mut params = vec![sid.clone()];
    params.extend(args.as_array().unwrap().iter().cloned());
    let r = edge.xapi(method, J::Array(params));
    edge.xapi("session.logout", json!([sid]));
    r["result"].clone()
}

fn by_name(edge: &Edge, class: &str, name: &str) -> String {
    sim(edge, &format!("{class}.get_by_name_label"), json!([name]))[0].as_str().unwrap().to_string()
}

fn stat(edge: &Edge, key: &str) -> u64 {
    edge.sim_stats()[key].as_u64().unwrap()
}

fn count(edge: &Edge, class: &str) -> u64 {
    edge.sim_stats()["objects"][class].as_u64().unwrap()
}

/// Follows a 202's task to its end (`GET /rest/v0/tasks/<id>?wait=result`), answers it.
fn task_outcome(edge: &Edge, t: &str, location: &str) -> J {
    assert!(location.starts_with("/rest/v0/tasks/"), "{location}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, task) = get(edge, t, &format!("{location}?wait=result"));
        assert_eq!(status, 200, "{task}");
        if task["status"] != "pending" {
            return task;
        }
        assert!(Instant::now() < deadline, "{task}");
    }
}

/// Runs a plan (`POST path`, 202) and follows its task on the task stream, opened first: XAPI's GC removes a task a
/// client made within 30 s of its end (a client cannot set its `finished` time), so a plan's outcome is read as it
/// happens. Answers the task's last state.
fn plan(edge: &Edge, t: &str, path: &str, body: J) -> J {
    let stream = edge.watch_tasks(t, "ndjson&watch");
    let (status, location, answer) = send(edge, t, "POST", path, body);
    assert_eq!(status, 202, "{path}: {answer}");
    loop {
        let line = stream.recv_timeout(Duration::from_secs(30)).expect("the plan's task ends on the stream");
        if line[0] == "update" && line[1]["href"] == location.as_str() && line[1]["status"] != "pending" {
            return line[1].clone();
        }
    }
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn resident_on(edge: &Edge, vm: &str) -> String {
    sim(edge, "VM.get_resident_on", json!([vm])).as_str().unwrap().to_string()
}

fn power(edge: &Edge, vm: &str) -> String {
    sim(edge, "VM.get_power_state", json!([vm])).as_str().unwrap().to_string()
}

fn live(edge: &Edge, host: &str) -> bool {
    let m = sim(edge, "host.get_metrics", json!([host]));
    sim(edge, "host_metrics.get_live", json!([m])) == json!(true)
}

#[test]
fn infrastructure_actions_are_listed_and_described() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    for (coll, names) in [
        (
            "hosts",
            &[
                "disable",
                "enable",
                "start",
                "clean_shutdown",
                "clean_reboot",
                "smart_reboot",
                "restart_toolstack",
                "emergency_shutdown",
                "management_reconfigure",
                "scan_pifs",
                "detach",
                "forget",
            ][..],
        ),
        (
            "pools",
            &[
                "create_network",
                "create_bonded_network",
                "create_internal_network",
                "management_reconfigure",
                "emergency_shutdown",
                "add_host",
                "rolling_reboot",
                "rolling_update",
            ][..],
        ),
        ("srs", &["scan", "forget", "reclaim_space"][..]),
        ("pbds", &["plug", "unplug"][..]),
    ] {
        let (status, list) = get(&edge, &t, &format!("/rest/v0/{coll}/_/actions"));
        assert_eq!(status, 200);
        let list: Vec<&str> = list.as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        for name in names {
            assert!(list.contains(&format!("/rest/v0/{coll}/_/actions/{name}").as_str()), "{coll} {name}: {list:?}");
        }
    }
    let (_, d) = get(&edge, &t, "/rest/v0/hosts/_/actions/disable");
    assert_eq!(d["params"]["properties"]["evacuate"]["type"], "boolean");
    assert_eq!(d["params"]["properties"]["vmIdsToForceMigrate"]["type"], "array");
    let (_, d) = get(&edge, &t, "/rest/v0/pools/_/actions/create_network");
    assert_eq!(d["params"]["required"], json!(["name", "pif", "vlan"]));
    // Parameters are checked before anything reaches XAPI.
    let host = edge.uuid_of(&t, "hosts", "xcp-host2");
    let before = edge.sim_calls();
    for (path, body) in [
        (format!("/rest/v0/hosts/{host}/actions/disable"), json!({"evacuate": "yes"})),
        (format!("/rest/v0/hosts/{host}/actions/clean_reboot"), json!({"nope": true})),
        (format!("/rest/v0/hosts/{host}/actions/management_reconfigure"), json!({})),
    ] {
        let (status, _, e) = send(&edge, &t, "POST", &path, body);
        assert_eq!(status, 400, "{path}: {e}");
        assert!(e["data"]["schema"].is_object(), "{e}");
    }
    assert!(edge.sim_calls() - before <= 6, "only the session and the host were read");
    // What the edge does not offer answers 501 with the reason and what to do instead.
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    for name in ["add_host", "rolling_reboot", "rolling_update"] {
        let body = if name == "add_host" { json!({"host": "192.0.2.99"}) } else { json!({}) };
        let (status, _, e) = send(&edge, &t, "POST", &format!("/rest/v0/pools/{pool}/actions/{name}"), body);
        assert_eq!(status, 501, "{name}: {e}");
        assert!(e["data"]["instead"].as_str().unwrap().len() > 20, "{e}");
    }
}

/// The maintenance scenario: disable a host and evacuate it (refused first, naming the VMs that cannot move), reboot
/// it, enable it; the VMs run again and nothing is left behind.
#[test]
fn maintenance_of_a_host() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let (h1, h2) = (by_name(&edge, "host", "xcp-host1"), by_name(&edge, "host", "xcp-host2"));
    let host = edge.uuid_of(&t, "hosts", "xcp-host2");
    let act = |name: &str| format!("/rest/v0/hosts/{host}/actions/{name}");
    let guests = |edge: &Edge| -> Vec<String> {
        let expr = format!(r#"field "resident_on"="{h2}" and field "is_control_domain"="false""#);
        let all = sim(edge, "VM.get_all_records_where", json!([expr]));
        all.as_object().unwrap().keys().cloned().collect()
    };
    let on_h2 = guests(&edge);
    assert_eq!(on_h2.len(), 2, "the demo pool has two VMs on host 2");
    let db_vm = by_name(&edge, "VM", "Ubuntu 22.04 db");
    let uuid = |vm: &str| sim(&edge, "VM.get_uuid", json!([vm])).as_str().unwrap().to_string();
    let vm_act = |vm: &str, name: &str| format!("/rest/v0/vms/{}/actions/{name}?sync", uuid(vm));
    let tasks_before = stat(&edge, "tasks");
    let agent = by_name(&edge, "VM", "Build agent");
    // Evacuation is refused before anything is done, naming the VMs in the way with XAPI's reasons: the build agent
    // is paused (only a running VM migrates) and the db VM's disks are on host 2's local SR, seen by no other host.
    let (status, _, e) = send(&edge, &t, "POST", &act("disable"), json!({"evacuate": true}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("CANNOT_EVACUATE_HOST")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("Ubuntu 22.04 db"), "{e}");
    assert_eq!(e["data"]["vms"][uuid(&agent)][0], "VM_BAD_POWER_STATE", "{e}");
    assert_eq!(e["data"]["vms"][uuid(&db_vm)][0], "VM_REQUIRES_SR", "{e}");
    assert_eq!(send(&edge, &t, "POST", &vm_act(&agent, "unpause"), json!({})).0, 204);
    let (status, _, e) = send(&edge, &t, "POST", &act("disable"), json!({"evacuate": true}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("CANNOT_EVACUATE_HOST")), "{e}");
    assert_eq!(e["data"]["vms"].as_object().unwrap().len(), 1, "{e}");
    assert_eq!(stat(&edge, "enabled_hosts"), 2, "nothing was disabled");
    // Rebooting without evacuating while VMs run: refused, naming them (XAPI itself would shut them down).
    let (status, _, e) = send(&edge, &t, "POST", &act("clean_reboot"), json!({"bypassEvacuate": true}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("HOST_IN_USE")), "{e}");
    assert_eq!(e["data"]["vms"].as_array().unwrap().len(), 2, "{e}");
    assert!(live(&edge, &h2) && stat(&edge, "enabled_hosts") == 2);
    // The admin stops the db VM.
    assert_eq!(send(&edge, &t, "POST", &vm_act(&db_vm, "clean_shutdown"), json!({})).0, 204);
    let moving: Vec<String> = guests(&edge);
    assert_eq!(moving.len(), 1);
    // Disable and evacuate: 202 and the edge's task, which ends in success once the VMs have moved.
    let task = plan(&edge, &t, &act("disable"), json!({"evacuate": true}));
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["progress"], 100, "{task}");
    assert!(guests(&edge).is_empty(), "host 2 is empty");
    for vm in &moving {
        assert_eq!((resident_on(&edge, vm), power(&edge, vm)), (h1.clone(), "Running".to_string()));
    }
    assert_eq!(sim(&edge, "host.get_enabled", json!([h2])), false);
    // A disabled host takes no VM: starting the db VM (its disks are only there) is refused with XAPI's reason.
    let (status, _, e) = send(&edge, &t, "POST", &vm_act(&db_vm, "start"), json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("VM_REQUIRES_SR")), "{e}");
    // Reboot (?sync): the host goes down, then comes back enabled; the edge's host object says so.
    let started = sim(&edge, "host.get_other_config", json!([h2]))["agent_start_time"].clone();
    let (status, _, e) = send(&edge, &t, "POST", &format!("{}?sync", act("clean_reboot")), json!({}));
    assert_eq!(status, 204, "{e}");
    until("host 2 back", || {
        live(&edge, &h2) && sim(&edge, "host.get_other_config", json!([h2]))["agent_start_time"] != started
    });
    let (_, h) = get(&edge, &t, &format!("/rest/v0/hosts/{host}"));
    assert_eq!((h["power_state"].as_str(), h["enabled"].as_bool()), (Some("Running"), Some(true)), "{h}");
    // Enable (already enabled after the boot: XAPI's enable does nothing then) and start the db VM where its disks are.
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act("enable")), json!({})).0, 204);
    assert_eq!(send(&edge, &t, "POST", &vm_act(&db_vm, "start"), json!({})).0, 204);
    assert_eq!(resident_on(&edge, &db_vm), h2);
    for vm in on_h2.iter().chain(moving.iter()) {
        assert_eq!(power(&edge, vm), "Running", "every VM runs again");
    }
    // Nothing left: the plan's task went with its GC-free end (a 202 task stays for the client, as XAPI's do, but
    // none is pending), and the ?sync ones are destroyed.
    let left = edge.settled(&(tasks_before + 1), |e| stat(e, "tasks"));
    assert!(left <= tasks_before + 1, "tasks left: {left} (before {tasks_before})");
    assert_eq!(stat(&edge, "enabled_hosts"), 2);
    let pending = sim(&edge, "task.get_all_records_where", json!([r#"field "status"="pending""#]));
    assert_eq!(pending.as_object().unwrap().len(), 0, "{pending}");
}

/// XO's smart reboot: the host's VMs suspended in place, the host rebooted, the VMs resumed there. Refused on the
/// master (its reboot ends every session) and while a VM's suspend is blocked, unless bypassed (the block is put back).
#[test]
fn smart_reboot_resumes_the_vms_in_place() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let h2 = by_name(&edge, "host", "xcp-host2");
    let host = edge.uuid_of(&t, "hosts", "xcp-host2");
    let master = edge.uuid_of(&t, "hosts", "xcp-host1");
    let (status, _, e) = send(&edge, &t, "POST", &format!("/rest/v0/hosts/{master}/actions/smart_reboot"), json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("HOST_IS_MASTER")), "{e}");
    let agent = by_name(&edge, "VM", "Build agent");
    sim(&edge, "VM.add_to_blocked_operations", json!([agent, "suspend", "keep running"]));
    let path = format!("/rest/v0/hosts/{host}/actions/smart_reboot");
    let (status, _, e) = send(&edge, &t, "POST", &path, json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("OPERATION_BLOCKED")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("Build agent"), "{e}");
    let running: Vec<String> = ["Ubuntu 22.04 db", "Build agent"].iter().map(|n| by_name(&edge, "VM", n)).collect();
    sim(&edge, "VM.unpause", json!([running[1]]));
    for vm in &running {
        assert_eq!((power(&edge, vm), resident_on(&edge, vm)), ("Running".to_string(), h2.clone()));
    }
    let vdis_before = count(&edge, "VDI");
    let task = plan(&edge, &t, &path, json!({"bypassBlockedSuspend": true}));
    assert_eq!(task["status"], "success", "{task}");
    for vm in &running {
        assert_eq!((power(&edge, vm), resident_on(&edge, vm)), ("Running".to_string(), h2.clone()), "resumed in place");
    }
    assert_eq!(count(&edge, "VDI"), vdis_before, "the suspend images are gone");
    let blocked = sim(&edge, "VM.get_blocked_operations", json!([agent]));
    assert_eq!(blocked["suspend"], "keep running", "the block is back");
    assert_eq!(sim(&edge, "host.get_enabled", json!([h2])), true);
}

#[test]
fn storage_srs_and_pbds() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let host = edge.uuid_of(&t, "hosts", "xcp-host2");
    let srs = count(&edge, "SR");
    // A driver refusing the device config: 400 with its code, nothing made.
    let nfs =
        json!({"name_label": "VMs on NAS", "SR_type": "nfs", "hostId": host, "device_config": {"server": "192.0.2.9"}});
    let (status, _, e) = send(&edge, &t, "POST", "/rest/v0/srs", nfs);
    assert_eq!((status, e["data"]["code"].as_str()), (400, Some("SR_BACKEND_FAILURE_38")), "{e}");
    assert_eq!((count(&edge, "SR"), count(&edge, "PBD")), (srs, 5));
    let (status, _, e) =
        send(&edge, &t, "POST", "/rest/v0/srs", json!({"name_label": "x", "SR_type": "zfs2", "hostId": host}));
    assert_eq!(status, 400, "{e}");
    // NFS: shared, a PBD per host, plugged.
    let nfs = json!({"name_label": "VMs on NAS", "SR_type": "nfs", "hostId": host,
                     "device_config": {"server": "192.0.2.9", "serverpath": "/export/vms"}});
    let (status, location, made) = send(&edge, &t, "POST", "/rest/v0/srs", nfs);
    assert_eq!(status, 201, "{made}");
    let sr = made["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/srs/{sr}"));
    let (_, o) = get(&edge, &t, &location);
    assert_eq!((o["SR_type"].as_str(), o["shared"].as_bool()), (Some("nfs"), Some(true)), "{o}");
    let (_, pbds) = get(&edge, &t, &format!("/rest/v0/pbds?fields=uuid,attached,host,device_config&filter=SR:{sr}"));
    let pbds = pbds.as_array().unwrap().clone();
    assert_eq!(pbds.len(), 2, "{pbds:?}");
    assert!(pbds.iter().all(|p| p["attached"] == true && p["device_config"]["serverpath"] == "/export/vms"));
    // PBD unplug / plug, scan, reclaim space, tags.
    let pbd = pbds[0]["uuid"].as_str().unwrap();
    assert_eq!(send(&edge, &t, "POST", &format!("/rest/v0/pbds/{pbd}/actions/unplug?sync"), json!({})).0, 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/pbds/{pbd}")).1["attached"], false);
    assert_eq!(send(&edge, &t, "POST", &format!("/rest/v0/pbds/{pbd}/actions/plug?sync"), json!({})).0, 204);
    let (status, location, _) = send(&edge, &t, "POST", &format!("/rest/v0/srs/{sr}/actions/scan"), json!({}));
    assert_eq!(status, 202);
    assert_eq!(task_outcome(&edge, &t, &location)["status"], "success");
    assert_eq!(send(&edge, &t, "POST", &format!("/rest/v0/srs/{sr}/actions/reclaim_space?sync"), json!({})).0, 204);
    assert_eq!(edge.sim_calls_of("Async.host.call_plugin"), 1);
    assert_eq!(send(&edge, &t, "PUT", &format!("/rest/v0/srs/{sr}/tags/nas"), json!(null)).0, 204);
    // Forget: PBDs unplugged, SR gone.
    let (status, _, e) = send(&edge, &t, "POST", &format!("/rest/v0/srs/{sr}/actions/forget?sync"), json!({}));
    assert_eq!(status, 204, "{e}");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/srs/{sr}")).0, 404);
    assert_eq!((count(&edge, "SR"), count(&edge, "PBD")), (srs, 5));
    // A local EXT SR, then DELETE: gone with its PBD.
    let ext =
        json!({"name_label": "scratch", "SR_type": "ext", "hostId": host, "device_config": {"device": "/dev/sdb"}});
    let (status, _, made) = send(&edge, &t, "POST", "/rest/v0/srs", ext);
    assert_eq!(status, 201);
    let local = made["id"].as_str().unwrap();
    assert_eq!(get(&edge, &t, &format!("/rest/v0/srs/{local}")).1["shared"], false);
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/srs/{local}"), json!(null)).0, 204);
    assert_eq!((count(&edge, "SR"), count(&edge, "PBD")), (srs, 5));
    // An ISO library on a local path (not shared) and a local LVM SR.
    let iso = json!({"name_label": "ISOs", "SR_type": "iso", "hostId": host, "device_config": {"location": "/opt/isos", "legacy_mode": "true"}});
    let (status, _, made) = send(&edge, &t, "POST", "/rest/v0/srs", iso);
    assert_eq!(status, 201, "{made}");
    let (_, o) = get(&edge, &t, &format!("/rest/v0/srs/{}", made["id"].as_str().unwrap()));
    assert_eq!(
        (o["SR_type"].as_str(), o["shared"].as_bool(), o["content_type"].as_str()),
        (Some("iso"), Some(false), Some("iso")),
        "{o}"
    );
    let lvm =
        json!({"name_label": "fast", "SR_type": "lvm", "hostId": host, "device_config": {"device": "/dev/nvme0n1"}});
    let (status, _, made) = send(&edge, &t, "POST", "/rest/v0/srs", lvm);
    assert_eq!(status, 201, "{made}");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/srs/{}", made["id"].as_str().unwrap())).1["SR_type"], "lvm");
    assert_eq!((count(&edge, "SR"), count(&edge, "PBD")), (srs + 2, 7));
    // Deleting the SR running VMs use: refused (VDI_IN_USE), and the PBDs unplugged meanwhile are plugged back.
    let shared = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let attached = stat(&edge, "attached_pbds");
    let (status, _, e) = send(&edge, &t, "DELETE", &format!("/rest/v0/srs/{shared}"), json!(null));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("VDI_IN_USE")), "{e}");
    assert_eq!((stat(&edge, "attached_pbds"), count(&edge, "SR")), (attached, srs + 2), "nothing lost");
    let pending = sim(&edge, "task.get_all_records_where", json!([r#"field "status"="pending""#]));
    assert_eq!(pending.as_object().unwrap().len(), 0);
}

#[test]
fn networks_vlans_and_bonds() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    let act = |name: &str| format!("/rest/v0/pools/{pool}/actions/{name}");
    let eth0 = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth0");
    let (_, net) = get(&edge, &t, &format!("/rest/v0/networks/{eth0}"));
    let pif = net["PIFs"][0].as_str().unwrap().to_string();
    let (networks, pifs) = (count(&edge, "network"), count(&edge, "PIF"));
    // A VLAN network (?sync: 201 and the new network).
    let body = json!({"name": "VLAN 42", "description": "storage", "pif": pif, "vlan": 42, "nbd": true, "mtu": 9000});
    let (status, location, made) = send(&edge, &t, "POST", &format!("{}?sync", act("create_network")), body.clone());
    assert_eq!(status, 201, "{made}");
    let vlan_net = made["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/networks/{vlan_net}"));
    let (_, n) = get(&edge, &t, &location);
    assert_eq!(
        (n["name_label"].as_str(), n["MTU"].as_i64(), n["nbd"].as_bool()),
        (Some("VLAN 42"), Some(9000), Some(true))
    );
    assert_eq!(
        (n["PIFs"].as_array().unwrap().len(), n["automatic"].as_bool()),
        (2, Some(false)),
        "a VLAN PIF per host"
    );
    assert_eq!((count(&edge, "network"), count(&edge, "PIF"), count(&edge, "VLAN")), (networks + 1, pifs + 2, 2));
    // The same tag again: XAPI refuses (PIF_VLAN_EXISTS, 409) and the half-made network goes.
    let (status, _, e) = send(&edge, &t, "POST", &format!("{}?sync", act("create_network")), body);
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("PIF_VLAN_EXISTS")), "{e}");
    assert_eq!((count(&edge, "network"), count(&edge, "PIF")), (networks + 1, pifs + 2), "nothing half-made");
    let (status, _, e) =
        send(&edge, &t, "POST", &act("create_network"), json!({"name": "x", "pif": pif, "vlan": 5000}));
    assert_eq!(status, 400, "{e}");
    // An internal network, 202: the task's result names the new network.
    let task = plan(&edge, &t, &act("create_internal_network"), json!({"name": "backplane"}));
    assert_eq!(task["status"], "success", "{task}");
    let internal = task["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(task["result"]["href"], format!("/rest/v0/networks/{internal}"));
    assert_eq!(get(&edge, &t, &format!("/rest/v0/networks/{internal}")).1["PIFs"], json!([]));
    // A bond of eth0 needs two PIFs per host: XAPI refuses (400), and the network made for it goes.
    let (status, _, e) = send(
        &edge,
        &t,
        "POST",
        &format!("{}?sync", act("create_bonded_network")),
        json!({"name": "bond", "pifIds": [pif], "bondMode": "active-backup"}),
    );
    assert_eq!((status, e["data"]["code"].as_str()), (400, Some("PIF_BOND_NEEDS_MORE_MEMBERS")), "{e}");
    assert_eq!(count(&edge, "network"), networks + 2);
    // eth0 and eth1: as XO, each named PIF stands for its network, so every host gets a bond of its eth0 and eth1.
    let eth1 = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth1");
    let (_, n1) = get(&edge, &t, &format!("/rest/v0/networks/{eth1}"));
    let pif1 = n1["PIFs"][0].as_str().unwrap().to_string();
    let (status, _, made) = send(
        &edge,
        &t,
        "POST",
        &format!("{}?sync", act("create_bonded_network")),
        json!({"name": "bond", "pifIds": [pif, pif1], "bondMode": "active-backup"}),
    );
    assert_eq!(status, 201, "{made}");
    let bonded = made["id"].as_str().unwrap().to_string();
    let (_, b) = get(&edge, &t, &format!("/rest/v0/networks/{bonded}"));
    assert_eq!((b["PIFs"].as_array().unwrap().len(), b["isBonded"].as_bool()), (2, Some(true)), "{b}");
    assert_eq!(count(&edge, "Bond"), 2);
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/networks/{bonded}"), json!(null)).0, 204);
    assert_eq!(count(&edge, "Bond"), 0);
    let (_, p) = get(&edge, &t, &format!("/rest/v0/pifs/{pif}"));
    assert_eq!((p["management"].as_bool(), p["isBondSlave"].as_bool()), (Some(true), Some(false)), "{p}");
    // Tags, then DELETE: the VLANs go with the network.
    assert_eq!(send(&edge, &t, "PUT", &format!("/rest/v0/networks/{vlan_net}/tags/storage"), json!(null)).0, 204);
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/networks/{vlan_net}"), json!(null)).0, 204);
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/networks/{internal}"), json!(null)).0, 204);
    assert_eq!((count(&edge, "network"), count(&edge, "PIF"), count(&edge, "VLAN")), (networks, pifs, 0));
    // eth0 carries running VMs: refused before anything is touched.
    let (status, _, e) = send(&edge, &t, "DELETE", &format!("/rest/v0/networks/{eth0}"), json!(null));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("NETWORK_CONTAINS_VIF")), "{e}");
    assert_eq!(count(&edge, "network"), networks);
}

/// The rest of the hosts' and pool's actions: management interface, PIF scan, toolstack restart (the master's ends
/// every session, the edge's tokens too), detach and forget (refused on the master and on a live host), emergency
/// shutdown, power on.
#[test]
fn toolstack_emergency_detach_and_forget() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let (h1, h2) = (by_name(&edge, "host", "xcp-host1"), by_name(&edge, "host", "xcp-host2"));
    let (master, host) = (edge.uuid_of(&t, "hosts", "xcp-host1"), edge.uuid_of(&t, "hosts", "xcp-host2"));
    let act = |h: &str, name: &str| format!("/rest/v0/hosts/{h}/actions/{name}");
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    let eth0 = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth0");
    let (_, pifs) = get(&edge, &t, "/rest/v0/pifs?fields=uuid,%24host,management");
    let pif_of = |h: &str| {
        let all = pifs.as_array().unwrap();
        let pif = all.iter().find(|p| p["$host"] == h && p["management"] == true).unwrap_or_else(|| panic!("{pifs}"));
        pif["uuid"].as_str().unwrap().to_string()
    };
    let (status, _, e) =
        send(&edge, &t, "POST", &act(&host, "management_reconfigure"), json!({"pif": pif_of(&master)}));
    assert_eq!(status, 400, "another host's PIF: {e}");
    let (status, _, _) = send(
        &edge,
        &t,
        "POST",
        &format!("{}?sync", act(&host, "management_reconfigure")),
        json!({"pif": pif_of(&host)}),
    );
    assert_eq!(status, 204);
    let path = format!("/rest/v0/pools/{pool}/actions/management_reconfigure?sync");
    assert_eq!(send(&edge, &t, "POST", &path, json!({"network": eth0})).0, 204);
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act(&host, "scan_pifs")), json!({})).0, 204);
    // States XAPI forbids, answered before any write with its codes.
    for (h, name, code) in
        [(&master, "detach", "HOST_IS_MASTER"), (&host, "forget", "HOST_IS_LIVE"), (&host, "start", "HOST_IS_LIVE")]
    {
        let (status, _, e) = send(&edge, &t, "POST", &act(h, name), json!({}));
        assert_eq!((status, e["data"]["code"].as_str()), (409, Some(code)), "{name}: {e}");
    }
    let (status, _, e) = send(&edge, &t, "POST", &format!("{}?sync", act(&host, "detach")), json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("OPERATION_NOT_ALLOWED")), "VMs run there: {e}");
    // A slave's toolstack restart keeps the sessions.
    let (status, _, _) = send(
        &edge,
        &t,
        "POST",
        &format!("{}?sync", act(&host, "restart_toolstack")),
        json!({"bypassBackupCheck": true}),
    );
    assert_eq!(status, 204);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&edge, &t, "/rest/v0/hosts?fields=uuid").0, 200);
    // Emergency shutdown of host 2: its running VM suspended (the paused one cannot be: it stops with the host), the
    // host down.
    assert_eq!(plan(&edge, &t, &act(&host, "emergency_shutdown"), json!({}))["status"], "success");
    assert!(!live(&edge, &h2));
    assert_eq!(power(&edge, &by_name(&edge, "VM", "Ubuntu 22.04 db")), "Suspended");
    assert_eq!(power(&edge, &by_name(&edge, "VM", "Build agent")), "Halted");
    let (_, o) = get(&edge, &t, &format!("/rest/v0/hosts/{host}"));
    assert_eq!(o["power_state"], "Halted", "{o}");
    // Power on (host 2 has Wake-on-LAN; the master has no power-on mode: XAPI's code, 409), then down again.
    let (status, _, e) = send(&edge, &t, "POST", &format!("{}?sync", act(&master, "start")), json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("HOST_IS_LIVE")), "{e}");
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act(&host, "start")), json!({})).0, 204);
    assert!(live(&edge, &h2));
    let (_, o) = get(&edge, &t, &format!("/rest/v0/hosts/{host}"));
    assert_eq!(o["power_state"], "Running", "{o}");
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act(&host, "clean_shutdown")), json!({})).0, 204);
    assert!(!live(&edge, &h2));
    // Forget the dead host: it leaves the pool.
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act(&host, "forget")), json!({})).0, 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/hosts/{host}")).0, 404);
    assert_eq!(count(&edge, "host"), 1);
    // The master's toolstack restart ends every session (`ocaml/xapi/xapi_host.ml`, `restart_agent`; sessions are
    // not persisted): the token's too, which then logs in again (README, "Tokens across a master failover").
    let (status, _, _) = send(&edge, &t, "POST", &format!("{}?sync", act(&master, "restart_toolstack")), json!({}));
    assert_eq!(status, 204);
    until("sessions dropped", || edge.sim_stats()["sessions"] == 0);
    until("the token recovered", || get(&edge, &t, &format!("/rest/v0/hosts/{master}")).0 == 200);
    let _ = h1;
}

/// A pool's emergency shutdown: every host in turn, the master last (its shutdown ends the sessions).
#[test]
fn emergency_shutdown_of_the_pool() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let (h1, h2) = (by_name(&edge, "host", "xcp-host1"), by_name(&edge, "host", "xcp-host2"));
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    let (status, _, _) =
        send(&edge, &t, "POST", &format!("/rest/v0/pools/{pool}/actions/emergency_shutdown"), json!({}));
    assert_eq!(status, 202);
    until("both hosts down", || !live(&edge, &h2) && !live(&edge, &h1));
    let running = sim(
        &edge,
        "VM.get_all_records_where",
        json!([r#"field "power_state"="Running" and field "is_control_domain"="false""#]),
    );
    assert_eq!(running.as_object().unwrap().len(), 0, "every guest suspended or stopped");
}

/// A clean shutdown evacuates the host first (as XO), then the host goes down; a host emptied of its VMs leaves the
/// pool with `detach`. XAPI's RBAC refusing a host action or a plan's first step: 403, nothing done. Tags on hosts
/// and pools.
#[test]
fn clean_shutdown_detach_rbac_and_tags() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let (h1, h2) = (by_name(&edge, "host", "xcp-host1"), by_name(&edge, "host", "xcp-host2"));
    let host = edge.uuid_of(&t, "hosts", "xcp-host2");
    let act = |name: &str| format!("/rest/v0/hosts/{host}/actions/{name}");
    let (db_vm, agent) = (by_name(&edge, "VM", "Ubuntu 22.04 db"), by_name(&edge, "VM", "Build agent"));
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    assert_eq!(send(&edge, &t, "PUT", &format!("/rest/v0/pools/{pool}/tags/prod"), json!(null)).0, 204);
    assert_eq!(send(&edge, &t, "PUT", &format!("/rest/v0/hosts/{host}/tags/rack%201"), json!(null)).0, 204);
    assert_eq!(sim(&edge, "host.get_tags", json!([h2])), json!(["rack 1"]));
    assert!(sim(&edge, "pool.get_tags", json!([sim(&edge, "pool.get_all", json!([]))[0]]))
        .as_array()
        .unwrap()
        .contains(&json!("prod")));
    // XAPI's RBAC refusing (a role changed under a live session; the simulator stands in with XAPI's error): 403.
    let rbac = |method: &str| json!({"fail": [{"method": method, "nth": 1, "error": ["RBAC_PERMISSION_DENIED", method, "No permission in user session"]}]});
    let faults = |spec: J| edge.faults(spec);
    faults(rbac("Async.host.restart_agent"));
    let (status, _, e) = send(&edge, &t, "POST", &act("restart_toolstack"), json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (403, Some("RBAC_PERMISSION_DENIED")), "{e}");
    faults(rbac("host.disable"));
    sim(&edge, "VM.hard_shutdown", json!([db_vm]));
    sim(&edge, "VM.unpause", json!([agent]));
    let (status, _, e) = send(&edge, &t, "POST", &format!("{}?sync", act("clean_shutdown")), json!({}));
    assert_eq!((status, e["data"]["code"].as_str()), (403, Some("RBAC_PERMISSION_DENIED")), "{e}");
    faults(json!({}));
    assert!(live(&edge, &h2) && stat(&edge, "enabled_hosts") == 2, "nothing done");
    assert_eq!(resident_on(&edge, &agent), h2);
    // The clean shutdown: the agent moves to host 1, host 2 goes down.
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act("clean_shutdown")), json!({})).0, 204);
    assert_eq!((resident_on(&edge, &agent), power(&edge, &agent)), (h1.clone(), "Running".to_string()));
    assert!(!live(&edge, &h2));
    let (_, o) = get(&edge, &t, &format!("/rest/v0/hosts/{host}"));
    assert_eq!((o["power_state"].as_str(), o["enabled"].as_bool()), (Some("Halted"), Some(false)), "{o}");
    // A fresh pool: host 2 emptied (disable + evacuate), then detached; its PIFs, PBDs and local SR go with it.
    drop(edge);
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let host = edge.uuid_of(&t, "hosts", "xcp-host2");
    let act = |name: &str| format!("/rest/v0/hosts/{host}/actions/{name}");
    sim(&edge, "VM.hard_shutdown", json!([by_name(&edge, "VM", "Ubuntu 22.04 db")]));
    sim(&edge, "VM.unpause", json!([by_name(&edge, "VM", "Build agent")]));
    assert_eq!(send(&edge, &t, "POST", &format!("{}?sync", act("disable")), json!({"evacuate": true})).0, 204);
    let (pifs, srs) = (count(&edge, "PIF"), count(&edge, "SR"));
    let (status, _, e) = send(&edge, &t, "POST", &format!("{}?sync", act("detach")), json!({}));
    assert_eq!(status, 204, "{e}");
    assert_eq!((count(&edge, "host"), count(&edge, "PIF"), count(&edge, "SR")), (1, pifs - 2, srs - 1));
    assert_eq!(get(&edge, &t, &format!("/rest/v0/hosts/{host}")).0, 404);
}
