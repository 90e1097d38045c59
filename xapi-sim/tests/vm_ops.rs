//! `VM.clone`, `VM.copy`, `VM.revert`, `VM.pool_migrate`, VBD and VIF create/plug/unplug/destroy, and
//! `allowed_operations`, each checked over JSON-RPC against what XAPI's source says (file and function per test).

mod common;
use common::Sim;
use serde_json::{json, Value as J};

fn rec(sim: &Sim, sid: &str, class: &str, r: &str) -> J {
    sim.call(&format!("{class}.get_record"), json!([sid, r])).unwrap()
}

fn refs(v: &J) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

fn code(r: Result<J, Vec<String>>) -> String {
    r.unwrap_err()[0].clone()
}

/// The VDIs behind a VM's disk VBDs.
fn disks(sim: &Sim, sid: &str, vm: &str) -> Vec<String> {
    refs(&rec(sim, sid, "VM", vm)["VBDs"])
        .iter()
        .map(|b| rec(sim, sid, "VBD", b))
        .filter(|b| b["type"] == "Disk")
        .map(|b| b["VDI"].as_str().unwrap().to_string())
        .collect()
}

/// `ocaml/xapi/xapi_vm_clone.ml` (`clone`, `copy_vm_record`, `safe_clone_disks`) and `xapi_vm_lifecycle.ml`
/// (`allowed_power_states` for `` `clone | `copy ``, `check_snapshot`).
#[test]
fn clone_and_copy_make_halted_top_level_vms_with_new_disks_and_macs() {
    let sim = Sim::start();
    let sid = sim.root();
    let running = sim.by_name(&sid, "VM", "Debian 12 web");
    let halted = sim.by_name(&sid, "VM", "Rocky Linux 8");
    // A running VM cannot be cloned.
    let err = sim.call("VM.clone", json!([sid, running, "x"])).unwrap_err();
    assert_eq!(err, ["VM_BAD_POWER_STATE", running.as_str(), "halted", "running"]);
    let vdis_before = sim.stats()["vdis"].as_u64().unwrap();
    let clone = sim.call("VM.clone", json!([sid, halted, "Rocky clone"])).unwrap();
    let clone = clone.as_str().unwrap();
    let (orig, new) = (rec(&sim, &sid, "VM", &halted), rec(&sim, &sid, "VM", clone));
    assert_eq!(new["name_label"], "Rocky clone");
    assert_eq!((new["is_a_template"].as_bool(), new["is_a_snapshot"].as_bool()), (Some(false), Some(false)));
    assert_eq!(new["power_state"], "Halted");
    assert_eq!((new["parent"].as_str(), new["snapshot_of"].as_str()), (Some("OpaqueRef:NULL"), Some("OpaqueRef:NULL")));
    assert!(new["other_config"]["mac_seed"].is_string());
    assert_eq!(new["memory_static_max"], orig["memory_static_max"]);
    let (od, nd) = (disks(&sim, &sid, &halted), disks(&sim, &sid, clone));
    assert_eq!(od.len(), nd.len());
    assert!(od.iter().all(|d| !nd.contains(d)), "the clone has disks of its own");
    assert_eq!(sim.stats()["vdis"].as_u64().unwrap(), vdis_before + nd.len() as u64);
    for (o, n) in od.iter().zip(&nd) {
        let (o, n) = (rec(&sim, &sid, "VDI", o), rec(&sim, &sid, "VDI", n));
        assert_eq!((n["virtual_size"].clone(), n["SR"].clone()), (o["virtual_size"].clone(), o["SR"].clone()));
        assert_eq!(n["is_a_snapshot"], false);
    }
    let macs = |vm: &str| -> Vec<String> {
        refs(&rec(&sim, &sid, "VM", vm)["VIFs"])
            .iter()
            .map(|v| rec(&sim, &sid, "VIF", v)["MAC"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(macs(clone).len(), macs(&halted).len());
    assert!(macs(clone).iter().all(|m| !macs(&halted).contains(m)), "new MACs (preserve_mac_address: false)");
    // The clone of a snapshot is a template (is_a_template of the original, which every snapshot is).
    let snap = sim.call("VM.snapshot", json!([sid, running, "s"])).unwrap();
    let from_snap = sim.call("VM.clone", json!([sid, snap, "from snapshot"])).unwrap();
    let r = rec(&sim, &sid, "VM", from_snap.as_str().unwrap());
    assert_eq!((r["is_a_template"].as_bool(), r["is_a_snapshot"].as_bool()), (Some(true), Some(false)));
    // VM.copy into another SR: full copies there.
    let local = sim.by_name(&sid, "SR", "Local storage");
    let copy = sim.call("VM.copy", json!([sid, halted, "Rocky copy", local])).unwrap();
    for d in disks(&sim, &sid, copy.as_str().unwrap()) {
        assert_eq!(rec(&sim, &sid, "VDI", &d)["SR"], local.as_str());
    }
    // Blocked operations are refused.
    let protected = sim.by_name(&sid, "VM", "Protected VM");
    sim.call("VM.add_to_blocked_operations", json!([sid, protected, "clone", "no"])).unwrap();
    assert_eq!(code(sim.call("VM.clone", json!([sid, protected, "x"]))), "OPERATION_BLOCKED");
}

/// `ocaml/xapi/xapi_vm_snapshot.ml`, `revert` and `revert_vbds` (the clone path of SRs without `VDI_REVERT`),
/// `message_forwarding.ml` `VM.revert`, `xapi_vm_lifecycle.ml` (`ONLY_REVERT_SNAPSHOT`).
#[test]
fn revert_replaces_the_disks_with_clones_of_the_snapshots_and_takes_its_power_state() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    assert_eq!(code(sim.call("VM.revert", json!([sid, vm]))), "ONLY_REVERT_SNAPSHOT");
    let before = disks(&sim, &sid, &vm);
    let snap = sim.call("VM.snapshot", json!([sid, vm, "before"])).unwrap();
    let snap = snap.as_str().unwrap();
    let snap_disks = disks(&sim, &sid, snap);
    let vifs_before = refs(&rec(&sim, &sid, "VM", &vm)["VIFs"]);
    let mac = rec(&sim, &sid, "VIF", &vifs_before[0])["MAC"].clone();
    let vdis = sim.stats()["vdis"].as_u64().unwrap();
    sim.call("VM.revert", json!([sid, snap])).unwrap();
    let after = disks(&sim, &sid, &vm);
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|d| !before.contains(d)), "the old disks went, clones took their place");
    for d in &before {
        assert!(sim.call("VDI.get_record", json!([sid, d])).is_err(), "the snapshotted disk was destroyed");
    }
    assert_eq!(sim.stats()["vdis"].as_u64().unwrap(), vdis, "as many VDIs as before: one clone per destroyed disk");
    for (s, a) in snap_disks.iter().zip(&after) {
        assert_eq!(rec(&sim, &sid, "VDI", s)["snapshot_of"], a.as_str(), "the snapshot now hangs off the clone");
    }
    let r = rec(&sim, &sid, "VM", &vm);
    assert_eq!(r["power_state"], "Halted", "force_state_reset to the snapshot's power state");
    assert_eq!(r["resident_on"], "OpaqueRef:NULL");
    let vifs = refs(&r["VIFs"]);
    assert_eq!(vifs.len(), vifs_before.len());
    assert!(vifs.iter().all(|v| !vifs_before.contains(v)));
    assert_eq!(rec(&sim, &sid, "VIF", &vifs[0])["MAC"], mac, "the snapshot's VIFs, same MACs");
    // The VM starts again on its reverted disks.
    sim.call("VM.start", json!([sid, vm, false, false])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &vm)["power_state"], "Running");
}

/// `ocaml/xapi/xapi_vm_migrate.ml` `pool_migrate` (a localhost migration is allowed) and `xapi_vm_lifecycle.ml`
/// (`` `pool_migrate `` needs `Running`).
#[test]
fn pool_migrate_moves_a_running_vm_between_hosts() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let halted = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let hosts = refs(&sim.call("host.get_all", json!([sid])).unwrap());
    let from = rec(&sim, &sid, "VM", &vm)["resident_on"].as_str().unwrap().to_string();
    let to = hosts.iter().find(|h| **h != from).unwrap();
    assert_eq!(code(sim.call("VM.pool_migrate", json!([sid, halted, to, {}]))), "VM_BAD_POWER_STATE");
    assert_eq!(code(sim.call("VM.pool_migrate", json!([sid, vm, "OpaqueRef:nope", {}]))), "HANDLE_INVALID");
    sim.call("VM.pool_migrate", json!([sid, vm, to, {"live": "true"}])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &vm)["resident_on"], to.as_str());
    assert!(refs(&rec(&sim, &sid, "host", to)["resident_VMs"]).contains(&vm));
    assert!(!refs(&rec(&sim, &sid, "host", &from)["resident_VMs"]).contains(&vm));
    sim.call("VM.pool_migrate", json!([sid, vm, to, {}])).unwrap();
}

/// `ocaml/xapi/xapi_host.ml` (`migrate_receive`: the network needs a PIF on the host,
/// `HOST_CANNOT_ATTACH_NETWORK`, with an address, `PIF_HAS_NO_NETWORK_CONFIGURATION` when unconfigured; the token's
/// `SM`, `host`, `xenops`, `session_id`, `master`), `xapi_vm_migrate.ml` (`migrate_send` within the pool: the
/// mapped disks move to new VDIs, the others must be seen by the destination, `VM_REQUIRES_SR`; `pool_migrate`'s
/// `options:network`, `Xapi_network_attach_helpers.assert_valid_ip_configuration_on_network_for_host`:
/// `INTERFACE_HAS_NO_IP`, `PIF_NOT_PRESENT`).
#[test]
fn migrate_receive_and_migrate_send_move_a_vm_and_its_disks() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Ubuntu 22.04 db");
    let from = rec(&sim, &sid, "VM", &vm)["resident_on"].as_str().unwrap().to_string();
    let hosts = refs(&sim.call("host.get_all", json!([sid])).unwrap());
    let to = hosts.iter().find(|h| **h != from).unwrap().clone();
    let eth0 = sim.by_name(&sid, "network", "Pool-wide network associated with eth0");
    let eth1 = sim.by_name(&sid, "network", "Pool-wide network associated with eth1");
    assert_eq!(code(sim.call("host.migrate_receive", json!([sid, to, eth1, {}]))), "PIF_HAS_NO_NETWORK_CONFIGURATION");
    let net = sim
        .call(
            "network.create",
            json!([sid, {"name_label": "internal", "name_description": "", "MTU": 1500,
            "other_config": {}, "bridge": "", "managed": true, "tags": []}]),
        )
        .unwrap();
    assert_eq!(code(sim.call("host.migrate_receive", json!([sid, to, net, {}]))), "HOST_CANNOT_ATTACH_NETWORK");
    let e = sim.call("VM.pool_migrate", json!([sid, vm, to, {"network": net}])).unwrap_err();
    assert_eq!(e[0], "PIF_NOT_PRESENT");
    let token = sim.call("host.migrate_receive", json!([sid, to, eth0, {}])).unwrap();
    let mut keys: Vec<&String> = token.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["SM", "host", "master", "session_id", "xenops"]);
    assert_eq!(token["host"], to.as_str());
    // Its disks are on the source host's local SR: without a map they cannot follow.
    let before = disks(&sim, &sid, &vm);
    let local = rec(&sim, &sid, "VDI", &before[0])["SR"].as_str().unwrap().to_string();
    let shared = sim.by_name(&sid, "SR", "Shared NFS storage");
    let e = sim.call("VM.migrate_send", json!([sid, vm, token, true, {}, {}, {}, {}])).unwrap_err();
    assert_eq!(e, ["VM_REQUIRES_SR", vm.as_str(), local.as_str()]);
    let map: serde_json::Map<String, J> = before.iter().map(|d| (d.clone(), json!(shared))).collect();
    sim.call("VM.migrate_send", json!([sid, vm, token, true, map, {}, {}, {}])).unwrap();
    let after = disks(&sim, &sid, &vm);
    assert_eq!(after.len(), before.len());
    for d in &after {
        assert!(!before.contains(d), "a moved disk is a new VDI");
        assert_eq!(rec(&sim, &sid, "VDI", d)["SR"], shared.as_str());
    }
    for d in &before {
        assert_eq!(code(sim.call("VDI.get_record", json!([sid, d]))), "HANDLE_INVALID", "the source is gone");
    }
    assert_eq!(rec(&sim, &sid, "VM", &vm)["resident_on"], to.as_str());
    // `pool_migrate` over a network: the destination needs an address on it.
    let back = sim.call("VM.pool_migrate", json!([sid, vm, from, {"network": eth1}])).unwrap_err();
    assert_eq!(back[0], "INTERFACE_HAS_NO_IP");
    sim.call("VM.pool_migrate", json!([sid, vm, from, {"network": eth0}])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &vm)["resident_on"], from.as_str());
}

/// `ocaml/idl/datamodel_vm.ml` (`set_uefi_mode`: `vm_uefi_mode`, `setup` or `user`, answered by the host's
/// `varstore-sb-state`).
#[test]
fn set_uefi_mode_takes_setup_or_user() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    for mode in ["setup", "user"] {
        sim.call("VM.set_uefi_mode", json!([sid, vm, mode])).unwrap();
    }
    assert_eq!(code(sim.call("VM.set_uefi_mode", json!([sid, vm, "off"]))), "INVALID_VALUE");
}

/// `ocaml/xapi/xapi_vbd.ml` (`create`), `xapi_vbd_helpers.ml` (`valid_operations`, `destroy`),
/// `xapi_vif_helpers.ml` (`create`, `valid_operations`, `destroy`).
#[test]
fn vbds_and_vifs_are_created_plugged_unplugged_and_destroyed_with_xapis_checks() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let halted = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    let vdi = sim.new_vdi(&sid, &sr, 1 << 20);
    let vbd = |vm: &str, dev: &str, mode: &str, kind: &str, empty: bool| {
        json!({"VM": vm, "VDI": if empty { "OpaqueRef:NULL" } else { vdi.as_str() }, "userdevice": dev,
               "bootable": false, "mode": mode, "type": kind, "empty": empty, "other_config": {},
               "qos_algorithm_type": "", "qos_algorithm_params": {}})
    };
    assert_eq!(code(sim.call("VBD.create", json!([sid, vbd(&vm, "0", "RW", "Disk", false)]))), "DEVICE_ALREADY_EXISTS");
    assert_eq!(code(sim.call("VBD.create", json!([sid, vbd(&vm, "xvdz", "RW", "Disk", false)]))), "INVALID_DEVICE");
    assert_eq!(code(sim.call("VBD.create", json!([sid, vbd(&vm, "5", "RW", "CD", true)]))), "VBD_CDS_MUST_BE_READONLY");
    assert_eq!(
        code(sim.call("VBD.create", json!([sid, vbd(&vm, "5", "RW", "Disk", true)]))),
        "VBD_NOT_REMOVABLE_MEDIA"
    );
    assert_eq!(
        code(sim.call("VBD.create", json!([sid, {"VM": vm, "VDI": vdi}]))),
        "FIELD_TYPE_ERROR",
        "a record without its required fields"
    );
    let taken: Vec<String> = refs(&rec(&sim, &sid, "VM", &vm)["VBDs"])
        .iter()
        .map(|b| rec(&sim, &sid, "VBD", b)["userdevice"].as_str().unwrap().to_string())
        .collect();
    let lowest_free = (0..).map(|n: u32| n.to_string()).find(|n| !taken.contains(n)).unwrap();
    let b = sim.call("VBD.create", json!([sid, vbd(&vm, "autodetect", "RW", "Disk", false)])).unwrap();
    let b = b.as_str().unwrap();
    let r = rec(&sim, &sid, "VBD", b);
    assert_eq!(
        (r["currently_attached"].as_bool(), r["userdevice"].as_str()),
        (Some(false), Some(lowest_free.as_str()))
    );
    assert!(refs(&rec(&sim, &sid, "VDI", &vdi)["VBDs"]).contains(&b.to_string()));
    assert_eq!(refs(&r["allowed_operations"]), ["plug", "attach"], "recomputed: detached on a running VM");
    assert_eq!(code(sim.call("VBD.unplug", json!([sid, b]))), "DEVICE_ALREADY_DETACHED");
    sim.call("VBD.plug", json!([sid, b])).unwrap();
    assert_eq!(code(sim.call("VBD.plug", json!([sid, b]))), "DEVICE_ALREADY_ATTACHED");
    let msg = code(sim.call("VBD.destroy", json!([sid, b])));
    assert_eq!(msg, "OPERATION_NOT_ALLOWED", "attached VBDs are not destroyed");
    assert_eq!(code(sim.call("VDI.destroy", json!([sid, vdi]))), "VDI_IN_USE");
    sim.call("VBD.unplug", json!([sid, b])).unwrap();
    sim.call("VBD.destroy", json!([sid, b])).unwrap();
    assert!(refs(&rec(&sim, &sid, "VDI", &vdi)["VBDs"]).is_empty(), "the VDI stays, without the VBD");
    // On a halted VM: no hot-plug.
    let hb = sim.call("VBD.create", json!([sid, vbd(&halted, "7", "RW", "Disk", false)])).unwrap();
    let err = sim.call("VBD.plug", json!([sid, hb])).unwrap_err();
    assert_eq!(err, ["VM_BAD_POWER_STATE", halted.as_str(), "running", "halted"]);
    // VIFs.
    let net = sim.by_name(&sid, "network", "Pool-wide network associated with eth0");
    let vif = |dev: &str, mac: &str| {
        json!({"device": dev, "network": net, "VM": vm, "MAC": mac, "MTU": 1500, "other_config": {},
               "qos_algorithm_type": "", "qos_algorithm_params": {}})
    };
    assert_eq!(code(sim.call("VIF.create", json!([sid, vif("0", "02:00:00:00:00:01")]))), "DEVICE_ALREADY_EXISTS");
    assert_eq!(code(sim.call("VIF.create", json!([sid, vif("eth1", "02:00:00:00:00:01")]))), "INVALID_DEVICE");
    assert_eq!(code(sim.call("VIF.create", json!([sid, vif("1", "")]))), "MAC_INVALID", "no mac_seed, no MAC");
    sim.call("VM.add_to_other_config", json!([sid, vm, "mac_seed", "0f6c1a3e-8d4e-4b8a-9c9e-6d1a1b2c3d4e"])).unwrap();
    let v = sim.call("VIF.create", json!([sid, vif("1", "")])).unwrap();
    let v = v.as_str().unwrap();
    let r = rec(&sim, &sid, "VIF", v);
    assert_eq!(r["MAC_autogenerated"], true);
    assert_eq!(r["MAC"].as_str().unwrap().len(), 17);
    assert!(refs(&rec(&sim, &sid, "network", &net)["VIFs"]).contains(&v.to_string()));
    sim.call("VIF.plug", json!([sid, v])).unwrap();
    let err = sim.call("VIF.destroy", json!([sid, v])).unwrap_err();
    assert_eq!(err, ["OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM"]);
    sim.call("VIF.unplug", json!([sid, v])).unwrap();
    sim.call("VIF.destroy", json!([sid, v])).unwrap();
    assert!(!refs(&rec(&sim, &sid, "VM", &vm)["VIFs"]).contains(&v.to_string()));
    assert!(!refs(&rec(&sim, &sid, "network", &net)["VIFs"]).contains(&v.to_string()));
    // The read-only role may do none of it.
    let ro = sim.login("auditor", "auditor-password");
    assert_eq!(code(sim.call("VIF.create", json!([ro, vif("2", "02:00:00:00:00:02")]))), "RBAC_PERMISSION_DENIED");
}

/// `ocaml/xapi/xapi_vm_lifecycle.ml`, `update_allowed_operations`: recomputed after each change of state.
#[test]
fn allowed_operations_follow_the_power_state() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let ops = |vm: &str| refs(&rec(&sim, &sid, "VM", vm)["allowed_operations"]);
    assert!(ops(&vm).contains(&"start".to_string()) && !ops(&vm).contains(&"clean_shutdown".to_string()));
    sim.call("VM.start", json!([sid, vm, false, false])).unwrap();
    assert!(ops(&vm).contains(&"clean_shutdown".to_string()) && !ops(&vm).contains(&"start".to_string()));
    let snap = sim.call("VM.snapshot", json!([sid, vm, "s"])).unwrap();
    let snap_ops = ops(snap.as_str().unwrap());
    assert!(snap_ops.contains(&"revert".to_string()) && !snap_ops.contains(&"start".to_string()));
    sim.call("VM.hard_shutdown", json!([sid, vm])).unwrap();
    assert!(ops(&vm).contains(&"clone".to_string()));
}

/// An operation that takes time (`op_duration_ms`): its task's progress advances while it runs
/// (`TaskHelper.set_progress`), the VM lists it in `current_operations` (`Xapi_vm_lifecycle` marks the operation for
/// its duration), and `task.cancel` of the running task ends it as `cancelled` without acting
/// (`ocaml/xapi/xapi_task.ml` `cancel`; `TaskHelper.exn_if_cancelling`).
#[test]
fn slow_operations_show_progress_and_can_be_cancelled() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    sim.faults(json!({"op_duration_ms": {"VM.clone": 1500}}));
    let task = sim.call("Async.VM.clone", json!([sid, vm, "slow"])).unwrap();
    let task = task.as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let t = rec(&sim, &sid, "task", &task);
    assert_eq!(t["status"], "pending");
    let progress = t["progress"].as_f64().unwrap();
    assert!(progress > 0.0 && progress < 1.0, "{progress}");
    assert_eq!(rec(&sim, &sid, "VM", &vm)["current_operations"][&task], "clone");
    assert_eq!(sim.task_status(&sid, &task), "success");
    assert_eq!(rec(&sim, &sid, "VM", &vm)["current_operations"], json!({}));
    // Cancelled while running: the task ends cancelled and nothing was cloned.
    let vms = sim.stats()["objects"]["VM"].as_u64().unwrap();
    let task = sim.call("Async.VM.clone", json!([sid, vm, "never"])).unwrap();
    let task = task.as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    sim.call("task.cancel", json!([sid, task])).unwrap();
    assert_eq!(sim.task_status(&sid, &task), "cancelled");
    assert_eq!(rec(&sim, &sid, "task", &task)["error_info"][0], "TASK_CANCELLED");
    assert_eq!(sim.stats()["objects"]["VM"].as_u64().unwrap(), vms);
}

/// `ocaml/xapi/xapi_vdi.ml` `copy`; `message_forwarding.ml` `VDI.pool_migrate` and `xapi_vm_migrate.ml`
/// `vdi_pool_migrate`.
#[test]
fn vdi_copy_and_pool_migrate_move_content_between_srs() {
    let sim = Sim::start();
    let sid = sim.root();
    let shared = sim.by_name(&sid, "SR", "Shared NFS storage");
    let local = sim.by_name(&sid, "SR", "Local storage");
    let loose = sim.new_vdi(&sid, &shared, 1 << 20);
    sim.call("VDI.set_name_label", json!([sid, loose, "loose"])).unwrap();
    assert_eq!(code(sim.call("VDI.pool_migrate", json!([sid, loose, local, {}]))), "VDI_NEEDS_VM_FOR_MIGRATE");
    let copy = sim.call("VDI.copy", json!([sid, loose, local, "OpaqueRef:NULL", "OpaqueRef:NULL"])).unwrap();
    let c = rec(&sim, &sid, "VDI", copy.as_str().unwrap());
    assert_eq!(
        (c["SR"].as_str(), c["name_label"].as_str(), c["read_only"].as_bool()),
        (Some(local.as_str()), Some("loose"), Some(false))
    );
    assert!(sim.call("VDI.get_record", json!([sid, loose])).is_ok(), "a copy leaves the source");
    // A running VM's disk moves under it: the VBD now uses a new VDI in the target SR; the source is gone.
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let disk = disks(&sim, &sid, &vm)[0].clone();
    let snap = sim.call("VM.snapshot", json!([sid, vm, "s"])).unwrap();
    let snap_disk = disks(&sim, &sid, snap.as_str().unwrap())[0].clone();
    let target = if rec(&sim, &sid, "VDI", &disk)["SR"] == shared.as_str() { local.clone() } else { shared.clone() };
    let moved = sim.call("VDI.pool_migrate", json!([sid, disk, target, {}])).unwrap();
    let moved = moved.as_str().unwrap();
    assert_ne!(moved, disk);
    assert_eq!(rec(&sim, &sid, "VDI", moved)["SR"], target.as_str());
    assert!(disks(&sim, &sid, &vm).contains(&moved.to_string()));
    assert!(sim.call("VDI.get_record", json!([sid, disk])).is_err());
    assert_eq!(rec(&sim, &sid, "VDI", &snap_disk)["snapshot_of"], moved);
}

/// `VM.provision` (`ocaml/xapi/xapi_vm.ml`, `provision`; `xapi_templates.ml`, `disk_of_xml`, `create_disk`,
/// `post_install`): a clone of a template becomes a VM; each disk of `other_config:disks` becomes a VDI on the SR
/// the XML names, named after its device and described "Created by template provisioner", with a VBD at that device;
/// `disks` leaves `other_config`. An SR that is not a uuid fails with `UUID_INVALID`, and nothing is left.
#[test]
fn provision_makes_the_template_disks_on_the_sr_named() {
    let sim = Sim::start();
    let sid = sim.root();
    let tpl = sim.by_name(&sid, "VM", "Debian Bookworm 12");
    let before = sim.stats()["objects"].clone();
    // The default template names no SR (sr=""): XAPI cannot resolve it.
    let clone = sim.call("VM.clone", json!([sid, tpl, "as is"])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", clone.as_str().unwrap())["is_a_template"], true, "a clone of a template");
    assert_eq!(code(sim.call("VM.provision", json!([sid, clone]))), "UUID_INVALID");
    assert_eq!(sim.stats()["objects"]["VDI"], before["VDI"], "no disk left");
    // Named: made there.
    let sr = sim.by_name(&sid, "SR", "Local storage");
    let sr_uuid = rec(&sim, &sid, "SR", &sr)["uuid"].as_str().unwrap().to_string();
    let xml = format!(
        "<provision><disk device=\"0\" size=\"8388608\" sr=\"{sr_uuid}\" bootable=\"true\" type=\"system\"/>\
         <disk device=\"1\" size=\"4194304\" sr=\"{sr_uuid}\" bootable=\"false\" type=\"user\"/></provision>"
    );
    let vm = sim.call("VM.clone", json!([sid, tpl, "provisioned"])).unwrap();
    sim.call("VM.remove_from_other_config", json!([sid, vm, "disks"])).unwrap();
    sim.call("VM.add_to_other_config", json!([sid, vm, "disks", xml])).unwrap();
    sim.call("VM.provision", json!([sid, vm])).unwrap();
    let r = rec(&sim, &sid, "VM", vm.as_str().unwrap());
    assert_eq!(r["is_a_template"], false);
    assert!(r["other_config"].get("disks").is_none());
    let mut disks: Vec<(String, J, J, J)> = refs(&r["VBDs"])
        .iter()
        .map(|b| {
            let vbd = rec(&sim, &sid, "VBD", b);
            let vdi = rec(&sim, &sid, "VDI", vbd["VDI"].as_str().unwrap());
            assert_eq!(vdi["SR"], sr.as_str());
            assert_eq!(vdi["name_description"], "Created by template provisioner");
            assert_eq!(vdi["name_label"], vbd["userdevice"], "named after its device");
            assert_eq!(vbd["unpluggable"], vdi["type"] != "system");
            (
                vbd["userdevice"].as_str().unwrap().to_string(),
                vbd["bootable"].clone(),
                vdi["virtual_size"].clone(),
                vdi["type"].clone(),
            )
        })
        .collect();
    disks.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        disks,
        [
            ("0".to_string(), json!(true), json!(8388608), json!("system")),
            ("1".to_string(), json!(false), json!(4194304), json!("user"))
        ]
    );
    // Provisioning again makes nothing more (the XML is gone).
    sim.call("VM.provision", json!([sid, vm])).unwrap();
    assert_eq!(refs(&rec(&sim, &sid, "VM", vm.as_str().unwrap())["VBDs"]).len(), 2);
}
