//! Issue 16, item 4 (disks and devices), end to end through the runtime: `POST /rest/v0/vdis`, `/vbds`, `/vifs`,
//! `DELETE` of VBDs and VIFs, VBD/VIF `connect`/`disconnect` actions; bodies checked before any XAPI call, XAPI's
//! refusals answered with their codes, nothing half-made left behind.

mod common;

use common::Edge;
use serde_json::{json, Value as J};

const PASSWORD: &str = "xapi-sim";

fn get(edge: &Edge, t: &str, path: &str) -> (u16, J) {
    let r = edge.get(path).bearer_auth(t).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(J::Null))
}

fn send(edge: &Edge, t: &str, method: &str, path: &str, body: J) -> (u16, Option<String>, J) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = edge.http.request(m, format!("{}{path}", edge.url)).bearer_auth(t);
    if !body.is_null() {
        r = r.body(body.to_string());
    }
    let r = r.send().unwrap();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    (r.status().as_u16(), location, r.json().unwrap_or(J::Null))
}

/// VDIs, VBDs and VIFs on the simulator.
fn counts(edge: &Edge) -> (u64, u64, u64) {
    let s = edge.sim_stats();
    let n = |c: &str| s["objects"][c].as_u64().unwrap_or(0);
    (n("VDI"), n("VBD"), n("VIF"))
}

#[test]
fn a_disk_is_created_attached_to_a_running_vm_detached_and_removed() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let sr = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let start = counts(&edge);
    let (status, location, body) = send(
        &edge,
        &t,
        "POST",
        "/rest/v0/vdis",
        json!({"srId": sr, "virtual_size": 1u64 << 30, "name_label": "data", "tags": ["new"]}),
    );
    assert_eq!(status, 201, "{body}");
    let vdi = body["id"].as_str().unwrap().to_string();
    assert_eq!(location.as_deref(), Some(format!("/rest/v0/vdis/{vdi}").as_str()));
    let (_, v) = get(&edge, &t, &format!("/rest/v0/vdis/{vdi}"));
    assert_eq!(
        (v["name_label"].as_str(), v["size"].as_u64(), v["$SR"].as_str()),
        (Some("data"), Some(1 << 30), Some(sr.as_str()))
    );
    assert_eq!(v["tags"], json!(["new"]));
    // Attach it: the VM runs, so the new VBD is plugged.
    let (status, location, body) = send(&edge, &t, "POST", "/rest/v0/vbds", json!({"VM": vm, "VDI": vdi}));
    assert_eq!(status, 201, "{body}");
    let vbd = body["id"].as_str().unwrap().to_string();
    assert_eq!(location.as_deref(), Some(format!("/rest/v0/vbds/{vbd}").as_str()));
    let (_, b) = get(&edge, &t, &format!("/rest/v0/vbds/{vbd}"));
    assert_eq!(
        (b["attached"].as_bool(), b["VDI"].as_str(), b["VM"].as_str()),
        (Some(true), Some(vdi.as_str()), Some(vm.as_str()))
    );
    let (_, disks) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/vdis?fields=uuid"));
    assert!(disks.as_array().unwrap().iter().any(|d| d["uuid"] == vdi.as_str()));
    // connect when connected: 409 before the call.
    let plugs = edge.sim_calls_of("Async.VBD.plug");
    let (status, _, e) = send(&edge, &t, "POST", &format!("/rest/v0/vbds/{vbd}/actions/connect"), J::Null);
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("DEVICE_ALREADY_ATTACHED")));
    assert_eq!(edge.sim_calls_of("Async.VBD.plug"), plugs);
    // disconnect, as an XAPI task; then connect again with ?sync.
    let (status, location, _) = send(&edge, &t, "POST", &format!("/rest/v0/vbds/{vbd}/actions/disconnect"), J::Null);
    assert_eq!(status, 202);
    let (_, task) = get(&edge, &t, &format!("{}?wait=result", location.unwrap()));
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vbds/{vbd}")).1["attached"], false);
    let (status, _, _) = send(&edge, &t, "POST", &format!("/rest/v0/vbds/{vbd}/actions/connect?sync"), J::Null);
    assert_eq!(status, 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vbds/{vbd}")).1["attached"], true);
    // A VDI attached to a running VM cannot be deleted; the VBD can (unplugged first), and the VDI stays.
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/vdis/{vdi}"), J::Null).0, 409);
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/vbds/{vbd}"), J::Null).0, 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vbds/{vbd}")).0, 404);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vdis/{vdi}")).0, 200);
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/vdis/{vdi}"), J::Null).0, 204);
    assert_eq!(counts(&edge), start, "back to the start");
}

#[test]
fn a_vif_is_created_plugged_edited_away_and_removed() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let halted = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let net = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth0");
    let start = counts(&edge);
    let (status, _, body) = send(&edge, &t, "POST", "/rest/v0/vifs", json!({"vmId": vm, "networkId": net}));
    assert_eq!(status, 201, "{body}");
    let vif = body["id"].as_str().unwrap().to_string();
    let (_, v) = get(&edge, &t, &format!("/rest/v0/vifs/{vif}"));
    assert_eq!((v["attached"].as_bool(), v["device"].as_str()), (Some(true), Some("1")), "{v}");
    assert_eq!(v["MAC"].as_str().unwrap().len(), 17);
    assert_eq!((v["$VM"].as_str(), v["$network"].as_str()), (Some(vm.as_str()), Some(net.as_str())));
    // The same device again: XAPI's DEVICE_ALREADY_EXISTS, nothing made.
    let (status, _, e) = send(
        &edge,
        &t,
        "POST",
        "/rest/v0/vifs",
        json!({"vmId": vm, "networkId": net, "device": "1", "MAC": "02:00:00:00:00:09"}),
    );
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("DEVICE_ALREADY_EXISTS")), "{e}");
    // On a halted VM: created, not plugged; connect is refused by the VM's power state.
    let (status, _, body) = send(
        &edge,
        &t,
        "POST",
        "/rest/v0/vifs",
        json!({"vmId": halted, "networkId": net, "MAC": "02:AB:00:00:00:01", "MTU": 9000}),
    );
    assert_eq!(status, 201, "{body}");
    let cold = body["id"].as_str().unwrap().to_string();
    let (_, c) = get(&edge, &t, &format!("/rest/v0/vifs/{cold}"));
    assert_eq!(
        (c["attached"].as_bool(), c["MAC"].as_str(), c["MTU"].as_u64()),
        (Some(false), Some("02:ab:00:00:00:01"), Some(9000))
    );
    let (status, _, e) = send(&edge, &t, "POST", &format!("/rest/v0/vifs/{cold}/actions/connect"), J::Null);
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("VM_BAD_POWER_STATE")));
    // `currently_attached: false` (XO's `Vif.create`): made on the running VM, not plugged.
    let (status, _, body) = send(
        &edge,
        &t,
        "POST",
        "/rest/v0/vifs",
        json!({"vmId": vm, "networkId": net, "MAC": "02:AB:00:00:00:02", "currently_attached": false}),
    );
    assert_eq!(status, 201, "{body}");
    let unplugged = body["id"].as_str().unwrap().to_string();
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vifs/{unplugged}")).1["attached"], false);
    let (status, _, e) =
        send(&edge, &t, "POST", "/rest/v0/vifs", json!({"vmId": vm, "networkId": net, "currently_attached": "no"}));
    assert_eq!(status, 400, "{e}");
    assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/vifs/{unplugged}"), J::Null).0, 204);
    // Disconnect the running one as a task, then delete both.
    let (status, _, _) = send(&edge, &t, "POST", &format!("/rest/v0/vifs/{vif}/actions/disconnect?sync"), J::Null);
    assert_eq!(status, 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vifs/{vif}")).1["attached"], false);
    for v in [&vif, &cold] {
        assert_eq!(send(&edge, &t, "DELETE", &format!("/rest/v0/vifs/{v}"), J::Null).0, 204);
    }
    assert_eq!(counts(&edge), start, "back to the start");
    let (_, actions) = get(&edge, &t, "/rest/v0/vifs/_/actions");
    assert_eq!(actions, json!(["/rest/v0/vifs/_/actions/connect", "/rest/v0/vifs/_/actions/disconnect"]));
}

#[test]
fn bad_bodies_and_missing_ids_are_refused_before_any_write() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let sr = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let iso_sr = edge.uuid_of(&t, "srs", "ISO library");
    let writes = || ["VDI.create", "VBD.create", "VIF.create"].iter().map(|m| edge.sim_calls_of(m)).sum::<u64>();
    let before = (writes(), counts(&edge));
    let missing = "00000000-0000-4000-8000-000000000000";
    for (path, body, status) in [
        ("/rest/v0/vdis", json!({"virtual_size": 1024}), 400),
        ("/rest/v0/vdis", json!({"srId": sr, "virtual_size": 1024, "size": 1}), 400),
        ("/rest/v0/vdis", json!({"srId": sr, "virtual_size": "big"}), 400),
        ("/rest/v0/vdis", json!({"srId": sr, "virtual_size": 0}), 400),
        ("/rest/v0/vdis", json!({"srId": sr, "virtual_size": 1024, "type": "nope"}), 400),
        ("/rest/v0/vdis", json!({"srId": missing, "virtual_size": 1024}), 404),
        ("/rest/v0/vdis", json!([1]), 400),
        ("/rest/v0/vbds", json!({"VM": vm}), 400),
        ("/rest/v0/vbds", json!({"VM": vm, "VDI": missing}), 404),
        ("/rest/v0/vbds", json!({"VM": vm, "VDI": "x", "mode": "RX"}), 400),
        ("/rest/v0/vifs", json!({"vmId": vm, "networkId": "not-an-id"}), 404),
        ("/rest/v0/vifs", json!({"vmId": vm, "networkId": missing, "MAC": "zz"}), 400),
        ("/rest/v0/vifs", json!({"vmId": vm, "networkId": missing, "device": "eth0"}), 400),
    ] {
        let (got, _, e) = send(&edge, &t, "POST", path, body.clone());
        assert_eq!(got, status, "{path} {body}: {e}");
        assert!(e["error"].is_string(), "{e}");
    }
    let (got, _, e) = send(&edge, &t, "POST", "/rest/v0/vdis", json!({"srId": sr, "virtual_size": 1, "size": 1}));
    assert_eq!(got, 400);
    assert!(e["data"]["accepted"].as_array().unwrap().contains(&json!("virtual_size")), "{e}");
    assert_eq!((writes(), counts(&edge)), before, "no constructor was called, nothing made");
    // XAPI's own refusal: a VDI on the ISO library (SR_OPERATION_NOT_SUPPORTED), answered as a 400, nothing made.
    let (got, _, e) = send(&edge, &t, "POST", "/rest/v0/vdis", json!({"srId": iso_sr, "virtual_size": 1024}));
    assert_eq!((got, e["data"]["code"].as_str()), (400, Some("SR_OPERATION_NOT_SUPPORTED")), "{e}");
    assert_eq!(counts(&edge), before.1);
    // POST on a collection that has no constructor here.
    assert_eq!(send(&edge, &t, "POST", "/rest/v0/vms", json!({})).0, 405);
    // XAPI's RBAC refusing the constructor (the edge serves pool administrators only, so this takes a role that
    // changed under a live session; the simulator stands in with XAPI's error): 403, nothing made.
    let spec = json!({"fail": [{"method": "VDI.create", "nth": 1,
                                "error": ["RBAC_PERMISSION_DENIED", "VDI.create", "No permission in user session"]}]});
    edge.faults(spec);
    let (got, _, e) = send(&edge, &t, "POST", "/rest/v0/vdis", json!({"srId": sr, "virtual_size": 1024}));
    assert_eq!((got, e["data"]["code"].as_str()), (403, Some("RBAC_PERMISSION_DENIED")), "{e}");
    assert_eq!(counts(&edge), before.1);
}

#[test]
fn a_failed_plug_leaves_no_device() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let net = edge.uuid_of(&t, "networks", "Pool-wide network associated with eth0");
    let start = counts(&edge);
    let spec = json!({"fail": [{"method": "VIF.plug", "nth": 1, "error": ["INTERNAL_ERROR", "plug failed"]}]});
    edge.faults(spec);
    let (status, _, e) = send(&edge, &t, "POST", "/rest/v0/vifs", json!({"vmId": vm, "networkId": net}));
    assert_eq!((status, e["data"]["code"].as_str()), (502, Some("INTERNAL_ERROR")), "{e}");
    assert_eq!(counts(&edge), start, "the unplugged VIF was destroyed");
}

#[test]
fn a_vdi_migrates_to_another_sr_and_gets_a_new_id() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let shared = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let local = edge.uuid_of(&t, "srs", "Local storage");
    let start = counts(&edge);
    // A disk a running VM uses: storage motion (VDI.pool_migrate), the VM keeps running on the new VDI.
    let (_, disks) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/vdis?fields=uuid,$SR"));
    let disk = disks[0]["uuid"].as_str().unwrap().to_string();
    let target = if disks[0]["$SR"] == shared.as_str() { &local } else { &shared };
    let (status, _, e) =
        send(&edge, &t, "POST", &format!("/rest/v0/vdis/{disk}/actions/migrate"), json!({"srId": disks[0]["$SR"]}));
    assert_eq!(status, 400, "already there: {e}");
    let (status, location, body) =
        send(&edge, &t, "POST", &format!("/rest/v0/vdis/{disk}/actions/migrate?sync"), json!({"srId": target}));
    assert_eq!(status, 201, "{body}");
    let moved = body["id"].as_str().unwrap().to_string();
    assert_ne!(moved, disk);
    assert_eq!(location.as_deref(), Some(format!("/rest/v0/vdis/{moved}").as_str()));
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vdis/{moved}")).1["$SR"], target.as_str());
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vdis/{disk}")).0, 404);
    let (_, disks) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/vdis?fields=uuid"));
    assert!(disks.as_array().unwrap().iter().any(|d| d["uuid"] == moved.as_str()));
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Running");
    assert_eq!(edge.sim_calls_of("Async.VDI.pool_migrate"), 1);
    // A disk no VM uses: copied, then the source destroyed; the 202's task names the new VDI.
    let (_, _, made) = send(&edge, &t, "POST", "/rest/v0/vdis", json!({"srId": shared, "virtual_size": 1 << 20}));
    let loose = made["id"].as_str().unwrap().to_string();
    let r = edge
        .http
        .post(format!("{}/rest/v0/vdis/{loose}/actions/migrate", edge.url))
        .bearer_auth(&t)
        .header("accept", "application/json")
        .body(json!({"srId": local}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let task = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    let (_, task) = get(&edge, &t, &format!("/rest/v0/tasks/{task}"));
    assert_eq!(task["status"], "success", "answered once the copy is done: {task}");
    let href = task["result"]["href"].as_str().unwrap().to_string();
    assert_eq!(get(&edge, &t, &href).1["$SR"], local.as_str());
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vdis/{loose}")).0, 404, "the source is gone");
    assert_eq!(edge.sim_calls_of("Async.VDI.copy"), 1);
    let del = send(&edge, &t, "DELETE", &href, J::Null);
    assert_eq!(del.0, 204);
    assert_eq!(counts(&edge), start);
    let (status, _, _) = send(
        &edge,
        &t,
        "POST",
        &format!("/rest/v0/vdis/{moved}/actions/migrate"),
        json!({"srId": "00000000-0000-4000-8000-000000000000"}),
    );
    assert_eq!(status, 404);
}
