//! Issue 16, items 4 and 5 (VM actions), end to end through the runtime: actions listed and described (JSON Schema),
//! run as XAPI tasks (202 + `Location: /rest/v0/tasks/<uuid>`, or `?sync`: the outcome), parameters validated and
//! power states checked before any XAPI call.

mod common;

use common::Edge;
use serde_json::{json, Value as J};

const PASSWORD: &str = "xapi-sim";

fn get(edge: &Edge, t: &str, path: &str) -> (u16, J) {
    let r = edge.get(path).bearer_auth(t).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(J::Null))
}

fn post(edge: &Edge, t: &str, path: &str, body: &str, json_wanted: bool) -> reqwest::blocking::Response {
    let mut r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(t).body(body.to_string());
    if json_wanted {
        r = r.header("accept", "application/json");
    }
    r.send().unwrap()
}

#[test]
fn actions_are_listed_and_described() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let (status, list) = get(&edge, &t, "/rest/v0/vms/_/actions");
    assert_eq!(status, 200);
    let list: Vec<&str> = list.as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for name in ["start", "clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "pause", "unpause"] {
        assert!(list.contains(&format!("/rest/v0/vms/_/actions/{name}").as_str()), "{name}: {list:?}");
    }
    assert!(list.contains(&"/rest/v0/vms/_/actions/snapshot"));
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let (_, mine) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/actions"));
    assert!(mine[0].as_str().unwrap().starts_with(&format!("/rest/v0/vms/{vm}/actions/")));
    let (status, described) = get(&edge, &t, "/rest/v0/vms/_/actions/snapshot");
    assert_eq!(status, 200);
    assert_eq!(described["params"]["properties"]["name_label"]["type"], "string");
    assert_eq!(described["params"]["additionalProperties"], false);
    assert_eq!(get(&edge, &t, "/rest/v0/vms/_/actions/fly").0, 404);
    assert_eq!(get(&edge, &t, "/rest/v0/pifs/_/actions").1, json!([]));
    assert_eq!(get(&edge, &t, "/rest/v0/vms/00000000-0000-4000-8000-000000000000/actions").0, 404);
    // GET /rest/v0 stays the list of collections; with ?routes, the route table spelled out.
    let (_, root) = get(&edge, &t, "/rest/v0");
    assert!(root.as_array().unwrap().iter().all(|h| h.as_str().unwrap().matches('/').count() == 3), "{root}");
    let (status, routes) = get(&edge, &t, "/rest/v0?routes");
    assert_eq!(status, 200);
    let has = |m: &str, p: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == p && r["methods"].as_array().unwrap().contains(&json!(m)))
    };
    for (m, p) in [
        ("POST", "/rest/v0/vms/{id}/actions/snapshot"),
        ("POST", "/rest/v0/vdis/{id}/actions/migrate"),
        ("POST", "/rest/v0/tasks/{id}/actions/abort"),
        ("POST", "/rest/v0/vifs"),
        ("PATCH", "/rest/v0/vms/{id}"),
        ("GET", "/rest/v0/vms/{id}/tasks"),
    ] {
        assert!(has(m, p), "{m} {p}");
    }
}

#[test]
fn an_action_runs_as_an_xapi_task() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    // Legacy answer: 202, the task's href as text and in Location.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start"), "", false);
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/rest/v0/tasks/"), "{location}");
    assert_eq!(r.text().unwrap(), location);
    let (status, task) = get(&edge, &t, &format!("{location}?wait=result"));
    assert_eq!((status, task["status"].as_str()), (200, Some("success")), "{task}");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Running");
    // With Accept: application/json, {"taskId"}.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clean_shutdown"), "{}", true);
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    assert_eq!(get(&edge, &t, &format!("/rest/v0/tasks/{id}?wait=result")).1["status"], "success");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Halted");
    // ?sync: the outcome itself, and the edge's task is gone.
    let tasks = edge.sim_stats()["tasks"].clone();
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start?sync"), "", false);
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Running");
    assert_eq!(edge.sim_stats()["tasks"], tasks, "no task left by a sync action");
}

#[test]
fn a_sync_snapshot_answers_the_new_snapshot_and_leaves_nosnap_disks_out() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Ubuntu 22.04 db");
    let (_, disks) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/vdis?fields=uuid,name_label"));
    let disks = disks.as_array().unwrap().clone();
    assert!(disks.len() >= 2, "{disks:?}");
    let scratch = disks[1]["uuid"].as_str().unwrap();
    let r = edge
        .http
        .patch(format!("{}/rest/v0/vdis/{scratch}", edge.url))
        .bearer_auth(&t)
        .body(r#"{"name_label":"[NOSNAP] scratch"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/snapshot?sync"), r#"{"name_label":"before"}"#, true);
    assert_eq!(r.status().as_u16(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/vm-snapshots/{id}"));
    let (status, snapshot) = get(&edge, &t, &location);
    assert_eq!((status, snapshot["name_label"].as_str()), (200, Some("before")));
    let (_, snap_disks) = get(&edge, &t, &format!("{location}/vdis?fields=name_label"));
    let names: Vec<&str> = snap_disks.as_array().unwrap().iter().filter_map(|d| d["name_label"].as_str()).collect();
    assert_eq!(names.len(), disks.len() - 1, "{names:?}");
    assert!(!names.iter().any(|n| n.contains("[NOSNAP]")), "{names:?}");
}

#[test]
fn bad_parameters_and_wrong_states_are_refused_before_any_call() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let running = edge.uuid_of(&t, "vms", "Debian 12 web");
    let before = (edge.sim_calls_of("Async.VM.start"), edge.sim_calls_of("Async.VM.snapshot"));
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/start"), "", false);
    assert_eq!(r.status().as_u16(), 409);
    let e = r.json::<J>().unwrap();
    assert_eq!(e["data"]["code"], "VM_BAD_POWER_STATE", "{e}");
    for body in [r#"{"name_label":1}"#, r#"{"nope":true}"#, "[]", "{"] {
        let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/snapshot"), body, false);
        assert_eq!(r.status().as_u16(), 400, "{body}");
    }
    assert_eq!(post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/fly"), "", false).status().as_u16(), 404);
    assert_eq!(post(&edge, &t, "/rest/v0/vms/_/actions/start", "", false).status().as_u16(), 404);
    assert_eq!((edge.sim_calls_of("Async.VM.start"), edge.sim_calls_of("Async.VM.snapshot")), before);
    // The counter does count: a good request is one call.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/snapshot?sync"), "{}", false);
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(edge.sim_calls_of("Async.VM.snapshot"), before.1 + 1);
}

#[test]
fn clone_copy_revert_and_migrate() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let halted = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let running = edge.uuid_of(&t, "vms", "Debian 12 web");
    let local = edge.uuid_of(&t, "srs", "Local storage");
    // A running VM cannot be cloned (XAPI clones halted VMs): 409 before any call.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/clone"), "", false);
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(edge.sim_calls_of("Async.VM.clone"), 0);
    // A fast clone, async: the task's result is the new VM's href.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{halted}/actions/clone"), r#"{"name_label":"fast"}"#, true);
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    let (_, task) = get(&edge, &t, &format!("/rest/v0/tasks/{id}?wait=result"));
    assert_eq!(task["status"], "success", "{task}");
    let href = task["result"]["href"].as_str().or(task["result"].as_str()).unwrap_or_default().to_string();
    assert!(href.starts_with("/rest/v0/vms/"), "{task}");
    assert_eq!(get(&edge, &t, &href).1["name_label"], "fast");
    // A full copy into another SR, sync: 201 and the copy's disks are there.
    let r = post(
        &edge,
        &t,
        &format!("/rest/v0/vms/{halted}/actions/clone?sync"),
        &json!({"name_label": "copied", "srId": local, "compress": "zstd"}).to_string(),
        false,
    );
    assert_eq!(r.status().as_u16(), 201);
    let copy = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(edge.sim_calls_of("Async.VM.copy"), 1);
    let (_, disks) = get(&edge, &t, &format!("/rest/v0/vms/{copy}/vdis?fields=$SR"));
    assert!(disks.as_array().unwrap().iter().all(|d| d["$SR"] == local.as_str()), "{disks}");
    let (status, _) = get(&edge, &t, &format!("/rest/v0/srs/{local}"));
    assert_eq!(status, 200);
    let bad = post(
        &edge,
        &t,
        &format!("/rest/v0/vms/{halted}/actions/clone"),
        r#"{"srId":"00000000-0000-4000-8000-000000000000"}"#,
        false,
    );
    assert_eq!(bad.status().as_u16(), 404);
    let bad = post(&edge, &t, &format!("/rest/v0/vms/{halted}/actions/clone"), r#"{"compress":"lz4"}"#, false);
    assert_eq!(bad.status().as_u16(), 400, "compress is gzip or zstd");
    // Revert: a snapshot of another VM is refused; snapshotBefore keeps the current state as a snapshot.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/snapshot?sync"), r#"{"name_label":"s1"}"#, false);
    let snap = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    let r = post(
        &edge,
        &t,
        &format!("/rest/v0/vms/{halted}/actions/revert_snapshot"),
        &json!({"snapshotId": snap}).to_string(),
        false,
    );
    assert_eq!(r.status().as_u16(), 400);
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/revert_snapshot"), "{}", false);
    assert_eq!(r.status().as_u16(), 400, "snapshotId is required");
    let snapshots_before = get(&edge, &t, &format!("/rest/v0/vms/{running}")).1["snapshots"].as_array().unwrap().len();
    let body = json!({"snapshotId": snap, "snapshotBefore": true}).to_string();
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/revert_snapshot?sync"), &body, false);
    assert_eq!(r.status().as_u16(), 204);
    let (_, vm) = get(&edge, &t, &format!("/rest/v0/vms/{running}"));
    assert_eq!(vm["power_state"], "Halted", "the snapshot had no memory: the VM is halted after the revert");
    assert_eq!(vm["snapshots"].as_array().unwrap().len(), snapshots_before + 1, "the snapshot taken before");
    // Migrate within the pool: a running VM on shared storage to the other host (`VM.pool_migrate`).
    let vm2 = edge.uuid_of(&t, "vms", "XOA 🎷");
    let (_, rec) = get(&edge, &t, &format!("/rest/v0/vms/{vm2}"));
    let from = rec["$container"].as_str().unwrap().to_string();
    let (_, hosts) = get(&edge, &t, "/rest/v0/hosts?fields=uuid");
    let to =
        hosts.as_array().unwrap().iter().map(|h| h["uuid"].as_str().unwrap()).find(|h| *h != from).unwrap().to_string();
    let r =
        post(&edge, &t, &format!("/rest/v0/vms/{vm2}/actions/migrate?sync"), &json!({"hostId": to}).to_string(), true);
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm2}")).1["$container"], to.as_str());
    let r =
        post(&edge, &t, &format!("/rest/v0/vms/{halted}/actions/migrate"), &json!({"hostId": to}).to_string(), false);
    assert_eq!(r.status().as_u16(), 409, "a halted VM does not migrate");
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm2}/actions/migrate"), r#"{"hostId":"nope"}"#, false);
    assert_eq!(r.status().as_u16(), 404);
}

/// Migration with storage motion, as XO's `migrateVm` decides it (`xapi/index.mjs`): a VM whose disks the host
/// cannot see moves them (to the pool's default SR) instead of failing with `VM_REQUIRES_SR`; `srId`,
/// `srIdByVdiId` and a non-empty `networkIdByVifId` ask for it; `migrationNetworkId` is the network it goes over.
/// XAPI's side: `host.migrate_receive` (`xapi_host.ml`) then `VM.migrate_send` (`xapi_vm_migrate.ml`); each moved
/// disk is a new VDI, the source gone.
#[test]
fn migration_with_storage_motion() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Ubuntu 22.04 db");
    let (host1, host2) = (edge.uuid_of(&t, "hosts", "xcp-host1"), edge.uuid_of(&t, "hosts", "xcp-host2"));
    let (local, shared) = (edge.uuid_of(&t, "srs", "Local storage"), edge.uuid_of(&t, "srs", "Shared NFS storage"));
    let eth1 = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth1");
    let disks = |edge: &Edge| {
        let (_, d) = get(edge, &t, &format!("/rest/v0/vms/{vm}/vdis?fields=uuid,$SR"));
        let text = |v: &J| v.as_str().unwrap().to_string();
        d.as_array().unwrap().iter().map(|d| (text(&d["uuid"]), text(&d["$SR"]))).collect::<Vec<_>>()
    };
    let container = |edge: &Edge| get(edge, &t, &format!("/rest/v0/vms/{vm}")).1["$container"].clone();
    assert_eq!(container(&edge), host2.as_str());
    let before = disks(&edge);
    assert!(before.iter().all(|(_, sr)| *sr == local), "{before:?}");
    let migrate =
        |body: J| post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/migrate?sync"), &body.to_string(), true);
    // Ids are resolved before anything: 404, no call.
    for bad in [
        json!({"hostId": host1, "srId": "00000000-0000-4000-8000-000000000000"}),
        json!({"hostId": host1, "srIdByVdiId": {"00000000-0000-4000-8000-000000000000": shared}}),
        json!({"hostId": host1, "migrationNetworkId": "00000000-0000-4000-8000-000000000000"}),
    ] {
        assert_eq!(migrate(bad.clone()).status().as_u16(), 404, "{bad}");
    }
    assert_eq!(migrate(json!({"hostId": host1, "srIdByVdiId": {"x": 1}})).status().as_u16(), 400);
    // A network without an address on the destination: XAPI refuses, nothing moved.
    let r = migrate(json!({"hostId": host1, "migrationNetworkId": eth1, "srId": shared}));
    assert_eq!(r.status().as_u16(), 400, "eth1 has no IP configuration");
    assert_eq!(r.json::<J>().unwrap()["data"]["code"], "PIF_HAS_NO_NETWORK_CONFIGURATION");
    assert_eq!((edge.sim_calls_of("Async.VM.migrate_send"), disks(&edge)), (0, before.clone()));
    // The local disks cannot be seen from host1: storage motion to the pool's default SR.
    let r = migrate(json!({"hostId": host1}));
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    assert_eq!((edge.sim_calls_of("Async.VM.migrate_send"), edge.sim_calls_of("Async.VM.pool_migrate")), (1, 0));
    let moved = disks(&edge);
    assert_eq!(moved.len(), before.len());
    assert!(moved.iter().all(|(id, sr)| *sr == shared && !before.iter().any(|(b, _)| b == id)));
    assert_eq!(container(&edge), host1.as_str());
    // One disk back to host2's local SR, the other where it is.
    let first = moved[0].0.clone();
    let r = migrate(json!({"hostId": host2, "srIdByVdiId": {first.clone(): local}}));
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    let now = disks(&edge);
    let on = |sr: &str| now.iter().filter(|(_, s)| s == sr).count();
    assert_eq!((on(&local), on(&shared)), (1, 1), "{now:?}");
    assert!(!now.iter().any(|(id, _)| *id == first), "the moved disk is a new VDI");
    assert_eq!(container(&edge), host2.as_str());
    // Everything to one SR with srId; then a VIF map asks for storage motion too (within the pool the VIFs keep
    // their networks, as XO does).
    assert_eq!(migrate(json!({"hostId": host2, "srId": shared})).status().as_u16(), 204);
    assert!(disks(&edge).iter().all(|(_, sr)| *sr == shared));
    let (_, vifs) = get(&edge, &t, &format!("/rest/v0/vifs?fields=uuid,$network&filter=%24VM:{vm}"));
    let vif = vifs[0]["uuid"].as_str().unwrap().to_string();
    let calls = edge.sim_calls_of("Async.VM.migrate_send");
    let r = migrate(json!({"hostId": host1, "networkIdByVifId": {vif.clone(): eth1}}));
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    assert_eq!(edge.sim_calls_of("Async.VM.migrate_send"), calls + 1);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vifs/{vif}")).1["$network"], vifs[0]["$network"]);
    // Shared disks only, over the management network named: `VM.pool_migrate` with that network.
    let eth0 = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth0");
    let r = migrate(json!({"hostId": host2, "migrationNetworkId": eth0}));
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    assert_eq!(edge.sim_calls_of("Async.VM.pool_migrate"), 1);
    assert_eq!(container(&edge), host2.as_str());
    // No task, session or disk left over: the VDIs are the VM's two and nothing else was made.
    assert_eq!(disks(&edge).len(), 2);
}

/// XO 6's `hostId` of `start`: `VM.start_on` that host (`xapi_vm.ml`, `start_on`: the VM runs there); an id that
/// names no host is a 404 before any call.
#[test]
fn start_on_a_chosen_host() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let host2 = edge.uuid_of(&t, "hosts", "xcp-host2");
    let bad = json!({"hostId": "00000000-0000-4000-8000-000000000000"}).to_string();
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start?sync"), &bad, false);
    assert_eq!(r.status().as_u16(), 404);
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start?sync"), r#"{"hostId":1}"#, false);
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!((edge.sim_calls_of("Async.VM.start_on"), edge.sim_calls_of("Async.VM.start")), (0, 0));
    let body = json!({"hostId": host2}).to_string();
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start?sync"), &body, false);
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    let (_, rec) = get(&edge, &t, &format!("/rest/v0/vms/{vm}"));
    assert_eq!((rec["power_state"].as_str(), rec["$container"].as_str()), (Some("Running"), Some(host2.as_str())));
    assert_eq!((edge.sim_calls_of("Async.VM.start_on"), edge.sim_calls_of("Async.VM.start")), (1, 0));
}

/// The acceptance scenario, as a script would run it: snapshot a running VM with `?sync`, clone the snapshot, start
/// the clone, watch its task, tag and rename it, add a disk and a VIF, delete it; the pool's counts are back to the
/// start (but for the snapshot, deleted last).
#[test]
fn a_script_like_scenario_leaves_the_pool_as_it_was() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let counts = |edge: &Edge| {
        let s = edge.sim_stats();
        ["VM", "VDI", "VBD", "VIF", "task"].map(|c| s["objects"][c].as_u64().unwrap_or(0))
    };
    let start = edge.settled(&counts(&edge), counts);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/snapshot?sync"), r#"{"name_label":"golden"}"#, false);
    assert_eq!(r.status().as_u16(), 201);
    let snap = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    // Clone the snapshot: a VM (not the template XAPI makes of it).
    let r = post(
        &edge,
        &t,
        &format!("/rest/v0/vm-snapshots/{snap}/actions/clone?sync"),
        r#"{"name_label":"from golden"}"#,
        false,
    );
    assert_eq!(r.status().as_u16(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let clone = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/vms/{clone}"));
    let (status, c) = get(&edge, &t, &location);
    assert_eq!((status, c["power_state"].as_str()), (200, Some("Halted")), "{c}");
    // Start it and follow its task on the task stream.
    let stream = edge.watch_tasks(&t, "ndjson&watch&fields=status");
    let r = post(&edge, &t, &format!("/rest/v0/vms/{clone}/actions/start"), "", true);
    assert_eq!(r.status().as_u16(), 202);
    let task = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    let href = format!("/rest/v0/tasks/{task}");
    loop {
        let line = stream.recv_timeout(std::time::Duration::from_secs(15)).expect("the start task's success");
        if line[0] == "update" && line[1]["href"] == href.as_str() && line[1]["status"] == "success" {
            break;
        }
    }
    assert_eq!(get(&edge, &t, &location).1["power_state"], "Running");
    // Tag and rename.
    let put = edge.http.put(format!("{}{location}/tags/scenario", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(put.status().as_u16(), 204);
    let patch = edge.http.patch(format!("{}{location}", edge.url)).bearer_auth(&t).body(r#"{"name_label":"renamed"}"#);
    assert_eq!(patch.send().unwrap().status().as_u16(), 204);
    let (_, c) = get(&edge, &t, &location);
    assert_eq!(c["name_label"], "renamed");
    assert_eq!(
        c["tags"],
        json!(["prod", "web", "scenario"]),
        "the snapshot's tags, which XAPI copies, and the new one"
    );
    // A new disk and a VIF, plugged into the running clone.
    let sr = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let net = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth0");
    let r = post(
        &edge,
        &t,
        "/rest/v0/vdis",
        &json!({"srId": sr, "virtual_size": 1u64 << 30, "name_label": "extra"}).to_string(),
        false,
    );
    assert_eq!(r.status().as_u16(), 201);
    let disk = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    let r = post(&edge, &t, "/rest/v0/vbds", &json!({"VM": clone, "VDI": disk}).to_string(), false);
    assert_eq!(r.status().as_u16(), 201);
    let r = post(&edge, &t, "/rest/v0/vifs", &json!({"vmId": clone, "networkId": net}).to_string(), false);
    assert_eq!(r.status().as_u16(), 201);
    let (_, disks) = get(&edge, &t, &format!("{location}/vdis?fields=uuid"));
    assert!(disks.as_array().unwrap().iter().any(|d| d["uuid"] == disk.as_str()));
    // Delete the clone (shut down, with its own disks, the new one included), then the snapshot.
    let del = edge.http.delete(format!("{}{location}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    let del = edge.http.delete(format!("{}/rest/v0/vm-snapshots/{snap}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    // The start task is XAPI's to expire once read; the script deletes it, as XO's clients may.
    let del = edge.http.delete(format!("{}{href}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    assert_eq!(edge.settled(&start, counts), start, "VMs, VDIs, VBDs, VIFs and tasks back to the start");
}
