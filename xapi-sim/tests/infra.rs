//! Hosts, storage and networks, each checked over JSON-RPC against XAPI's source (file and function per test).

mod common;
use common::Sim;
use serde_json::{json, Value as J};
use std::time::{Duration, Instant};

fn rec(sim: &Sim, sid: &str, class: &str, r: &str) -> J {
    sim.call(&format!("{class}.get_record"), json!([sid, r])).unwrap()
}

fn code(r: Result<J, Vec<String>>) -> String {
    r.unwrap_err()[0].clone()
}

fn live(sim: &Sim, sid: &str, host: &str) -> bool {
    let metrics = rec(sim, sid, "host", host)["metrics"].clone();
    sim.call("host_metrics.get_live", json!([sid, metrics])).unwrap() == json!(true)
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ocaml/xapi/xapi_host.ml`: `disable`/`enable`; `compute_evacuation_plan_no_wlb` (targets are the other enabled
/// hosts; a VM no host can take is `NO_HOSTS_AVAILABLE`, one whose storage no target sees fails
/// `assert_can_see_specified_SRs`), `evacuate` (nothing moves when a plan fails), `shutdown_and_reboot_common`
/// (`prepare_for_poweroff_precheck`: `HOST_NOT_DISABLED`), `xapi_vm_helpers.ml` `assert_can_boot_here`
/// (`HOST_DISABLED`).
#[test]
fn maintenance_follows_xapis_rules() {
    let sim = Sim::start();
    sim.faults(json!({"host_boot_ms": 200}));
    let sid = sim.root();
    let hosts: Vec<String> = serde_json::from_value(sim.call("host.get_all", json!([sid])).unwrap()).unwrap();
    let (h1, h2) = (hosts[0].clone(), hosts[1].clone());
    let db_vm = sim.by_name(&sid, "VM", "Ubuntu 22.04 db");
    let agent = sim.by_name(&sid, "VM", "Build agent");
    assert_eq!(rec(&sim, &sid, "VM", &agent)["resident_on"], json!(h2));
    // Rebooting an enabled host is refused.
    assert_eq!(code(sim.call("host.reboot", json!([sid, h2]))), "HOST_NOT_DISABLED");
    sim.call("host.disable", json!([sid, h2])).unwrap();
    assert_eq!(rec(&sim, &sid, "host", &h2)["enabled"], false);
    assert_eq!(
        code(sim.call("VM.pool_migrate", json!([sid, sim.by_name(&sid, "VM", "Debian 12 web"), h2, {}]))),
        "HOST_DISABLED"
    );
    // What prevents evacuation: a paused VM cannot migrate (`Xapi_vm_lifecycle.allowed_power_states`:
    // `pool_migrate` needs running), and the db VM's disks are on host 2's local SR, which no other host sees.
    let blockers = sim.call("host.get_vms_which_prevent_evacuation", json!([sid, h2])).unwrap();
    assert_eq!(blockers[&db_vm][0], "VM_REQUIRES_SR", "{blockers}");
    assert_eq!(blockers.as_object().unwrap().len(), 2, "{blockers}");
    let paused = blockers.as_object().unwrap().keys().find(|k| **k != db_vm).unwrap().clone();
    assert_eq!(blockers[&paused][0], "VM_BAD_POWER_STATE", "{blockers}");
    // Evacuation is then refused and nothing moves.
    assert!(
        ["VM_REQUIRES_SR", "VM_BAD_POWER_STATE"].contains(&code(sim.call("host.evacuate", json!([sid, h2]))).as_str())
    );
    assert_eq!(rec(&sim, &sid, "VM", &agent)["resident_on"], json!(h2), "nothing moved");
    sim.call("VM.unpause", json!([sid, paused])).unwrap();
    sim.call("VM.hard_shutdown", json!([sid, db_vm])).unwrap();
    sim.call("host.evacuate", json!([sid, h2])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &agent)["resident_on"], json!(h1));
    assert_eq!(rec(&sim, &sid, "VM", &agent)["power_state"], "Running");
    // A halted VM started now avoids the disabled host; one that needs it cannot start.
    assert_eq!(code(sim.call("VM.start", json!([sid, db_vm, false, false]))), "VM_REQUIRES_SR");
    // The reboot: the host goes down, comes back enabled with its PBDs plugged, and a new agent start time.
    let started = rec(&sim, &sid, "host", &h2)["other_config"]["agent_start_time"].clone();
    sim.call("host.reboot", json!([sid, h2])).unwrap();
    assert!(!live(&sim, &sid, &h2));
    assert_eq!(code(sim.call("host.enable", json!([sid, h2]))), "HOST_OFFLINE");
    until("host 2 back", || live(&sim, &sid, &h2));
    let r = rec(&sim, &sid, "host", &h2);
    assert_eq!(r["enabled"], true, "auto_enable defaults to true");
    assert_ne!(r["other_config"]["agent_start_time"], started);
    for pbd in r["PBDs"].as_array().unwrap() {
        assert_eq!(rec(&sim, &sid, "PBD", pbd.as_str().unwrap())["currently_attached"], true);
    }
    sim.call("VM.start", json!([sid, db_vm, false, false])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &db_vm)["resident_on"], json!(h2));
    // auto_enable false: the host stays disabled across a reboot (`Localdb`, `host_auto_enable`).
    sim.call("VM.hard_shutdown", json!([sid, db_vm])).unwrap();
    sim.call("host.disable", json!([sid, h2, false])).unwrap();
    // A shutdown stops what still runs there (`Vm_evacuation.ensure_no_vms`).
    sim.call("VM.start", json!([sid, agent, false, false])).ok();
    sim.call("host.reboot", json!([sid, h2])).unwrap();
    until("host 2 back", || live(&sim, &sid, &h2));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rec(&sim, &sid, "host", &h2)["enabled"], false);
    sim.call("host.enable", json!([sid, h2])).unwrap();
    // Power: without a power-on mode, no host can be powered on (the master has none); a live one neither.
    assert_eq!(code(sim.call("host.power_on", json!([sid, h1]))), "HOST_POWER_ON_MODE_DISABLED");
    assert_eq!(code(sim.call("host.power_on", json!([sid, h2]))), "HOST_IS_LIVE");
    // A read-only session may ask what prevents evacuation, not disable.
    let ro = sim.login("auditor", "auditor-password");
    sim.call("host.get_vms_which_prevent_evacuation", json!([ro, h2])).unwrap();
    assert_eq!(code(sim.call("host.disable", json!([ro, h2]))), "RBAC_PERMISSION_DENIED");
    // Older clients call without the defaulted parameters; more than declared is a count mismatch.
    assert_eq!(code(sim.call("host.disable", json!([sid, h2, true, 1]))), "MESSAGE_PARAMETER_COUNT_MISMATCH");
}

/// `ocaml/xapi/xapi_host.ml` `restart_agent` (returns, then restarts), `ocaml/idl/datamodel.ml` (`session`, `task`:
/// `PersistNothing`: the master's restart drops them); `destroy` (`HOST_IS_LIVE`, `HOST_CANNOT_DESTROY_SELF`);
/// `xapi_pool.ml` `eject` (`Cannot_eject_master`, a resident VM: `OPERATION_NOT_ALLOWED`).
#[test]
fn toolstack_restart_eject_and_forget() {
    let sim = Sim::start();
    sim.faults(json!({"host_boot_ms": 200}));
    let sid = sim.root();
    let hosts: Vec<String> = serde_json::from_value(sim.call("host.get_all", json!([sid])).unwrap()).unwrap();
    let (h1, h2) = (hosts[0].clone(), hosts[1].clone());
    // A slave's restart leaves the sessions alone.
    let before = rec(&sim, &sid, "host", &h2)["other_config"]["agent_start_time"].clone();
    sim.call("host.restart_agent", json!([sid, h2])).unwrap();
    until("agent restarted", || rec(&sim, &sid, "host", &h2)["other_config"]["agent_start_time"] != before);
    // The master's drops them all.
    let task = sim.new_task(&sid);
    sim.call("host.restart_agent", json!([sid, h1])).unwrap();
    until("session dropped", || sim.call("pool.get_all", json!([sid])).is_err());
    assert_eq!(code(sim.call("pool.get_all", json!([sid]))), "SESSION_INVALID");
    let sid = sim.root();
    assert_eq!(code(sim.call("task.get_status", json!([sid, task]))), "HANDLE_INVALID");
    assert_eq!(code(sim.call("pool.eject", json!([sid, h1]))), "INTERNAL_ERROR");
    assert_eq!(code(sim.call("pool.eject", json!([sid, h2]))), "OPERATION_NOT_ALLOWED");
    assert_eq!(code(sim.call("host.destroy", json!([sid, h2]))), "HOST_IS_LIVE");
    assert_eq!(code(sim.call("host.destroy", json!([sid, h1]))), "HOST_CANNOT_DESTROY_SELF");
    // Shut host 2 down empty, then forget it: its PIFs, PBDs, control domain and local SR go.
    for vm in ["Ubuntu 22.04 db", "FreeNAS", "Build agent"] {
        let r = sim.by_name(&sid, "VM", vm);
        let _ = sim.call("VM.hard_shutdown", json!([sid, r]));
    }
    let pifs_before = sim.call("PIF.get_all", json!([sid])).unwrap().as_array().unwrap().len();
    let srs_before = sim.call("SR.get_all", json!([sid])).unwrap().as_array().unwrap().len();
    sim.call("host.disable", json!([sid, h2])).unwrap();
    sim.call("host.shutdown", json!([sid, h2])).unwrap();
    assert!(!live(&sim, &sid, &h2));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!live(&sim, &sid, &h2), "a shut down host stays down");
    sim.call("host.power_on", json!([sid, h2])).unwrap();
    assert!(live(&sim, &sid, &h2), "powered on (Wake-on-LAN)");
    sim.call("host.disable", json!([sid, h2])).unwrap();
    sim.call("host.shutdown", json!([sid, h2])).unwrap();
    sim.call("host.destroy", json!([sid, h2])).unwrap();
    assert_eq!(sim.call("host.get_all", json!([sid])).unwrap().as_array().unwrap().len(), 1);
    assert_eq!(sim.call("PIF.get_all", json!([sid])).unwrap().as_array().unwrap().len(), pifs_before - 2, "its two");
    assert_eq!(sim.call("SR.get_all", json!([sid])).unwrap().as_array().unwrap().len(), srs_before - 1, "local SR");
}

/// `ocaml/xapi/xapi_sr.ml` `create` (a PBD per host when shared, the master first; plugged afterwards),
/// `message_forwarding.ml` `SR.destroy`/`SR.forget` (`assert_all_pbds_unplugged`: `SR_HAS_PBD`), `xapi_pbd.ml`
/// `unplug` (`VDI_IN_USE` for a VDI a running VM on that host uses); `SR_UNKNOWN_DRIVER`; the SM drivers' own
/// device-config checks (`SR_BACKEND_FAILURE_<n>`).
#[test]
fn storage_follows_xapis_rules() {
    let sim = Sim::start();
    let sid = sim.root();
    let hosts: Vec<String> = serde_json::from_value(sim.call("host.get_all", json!([sid])).unwrap()).unwrap();
    let create = |ty: &str, config: J, shared: bool| {
        sim.call(
            "SR.create",
            json!([sid, hosts[1], config, 0, "new SR", "", ty, if ty == "iso" { "iso" } else { "user" }, shared, {}]),
        )
    };
    assert_eq!(code(create("nope", json!({}), false)), "SR_UNKNOWN_DRIVER");
    assert_eq!(code(create("nfs", json!({"server": "192.0.2.9"}), true)), "SR_BACKEND_FAILURE_38");
    assert_eq!(code(create("ext", json!({}), false)), "SR_BACKEND_FAILURE_90");
    let srs = sim.call("SR.get_all", json!([sid])).unwrap().as_array().unwrap().len();
    assert_eq!(srs, 3, "refused creations leave nothing");
    let nfs = create("nfs", json!({"server": "192.0.2.9", "serverpath": "/export/vms"}), true).unwrap();
    let r = rec(&sim, &sid, "SR", nfs.as_str().unwrap());
    assert_eq!(r["PBDs"].as_array().unwrap().len(), 2, "shared: a PBD per host");
    let first = rec(&sim, &sid, "PBD", r["PBDs"][0].as_str().unwrap());
    assert_eq!((first["host"].as_str(), first["currently_attached"].as_bool()), (Some(hosts[0].as_str()), Some(true)));
    assert_eq!(first["device_config"]["serverpath"], "/export/vms");
    let local = create("ext", json!({"device": "/dev/sdb"}), false).unwrap();
    let l = rec(&sim, &sid, "SR", local.as_str().unwrap());
    assert_eq!(l["PBDs"].as_array().unwrap().len(), 1);
    assert_eq!(rec(&sim, &sid, "PBD", l["PBDs"][0].as_str().unwrap())["host"], json!(hosts[1]));
    // A VDI there, used by nobody: scan counts it; destroy needs the PBDs unplugged.
    let vdi = sim.new_vdi(&sid, nfs.as_str().unwrap(), 1 << 20);
    sim.call("SR.scan", json!([sid, nfs])).unwrap();
    assert_eq!(rec(&sim, &sid, "SR", nfs.as_str().unwrap())["virtual_allocation"], 1 << 20);
    assert_eq!(code(sim.call("SR.destroy", json!([sid, nfs]))), "SR_HAS_PBD");
    for pbd in r["PBDs"].as_array().unwrap() {
        sim.call("PBD.unplug", json!([sid, pbd])).unwrap();
    }
    assert_eq!(code(sim.call("SR.scan", json!([sid, nfs]))), "SR_HAS_NO_PBDS");
    sim.call("SR.destroy", json!([sid, nfs])).unwrap();
    assert_eq!(code(sim.call("VDI.get_record", json!([sid, vdi]))), "HANDLE_INVALID", "its VDIs went with it");
    assert_eq!(code(sim.call("PBD.get_record", json!([sid, r["PBDs"][0]]))), "HANDLE_INVALID");
    // A PBD whose SR a running VM uses cannot be unplugged.
    let shared = sim.by_name(&sid, "SR", "Shared NFS storage");
    let pbds = rec(&sim, &sid, "SR", &shared)["PBDs"].clone();
    let on_h1 = pbds
        .as_array()
        .unwrap()
        .iter()
        .find(|p| rec(&sim, &sid, "PBD", p.as_str().unwrap())["host"] == json!(hosts[0]))
        .unwrap()
        .clone();
    let err = sim.call("PBD.unplug", json!([sid, on_h1])).unwrap_err();
    assert_eq!(err[0], "VDI_IN_USE");
    assert!(err.len() > 1, "names the VDIs: {err:?}");
    sim.call("SR.forget", json!([sid, local])).unwrap_err();
    sim.call("PBD.unplug", json!([sid, l["PBDs"][0]])).unwrap();
    sim.call("SR.forget", json!([sid, local])).unwrap();
    assert_eq!(sim.call("SR.get_all", json!([sid])).unwrap().as_array().unwrap().len(), 3);
}

/// `ocaml/xapi/xapi_network.ml` `create`/`destroy` (`NETWORK_CONTAINS_PIF`), `xapi_pool.ml`
/// `create_VLAN_from_PIF` (a VLAN on every host of the PIF's network), `xapi_vlan.ml` (`VLAN_TAG_INVALID`,
/// `PIF_VLAN_EXISTS`, `PIF_IS_VLAN`, `destroy`), `xapi_bond.ml` `create` (`PIF_BOND_NEEDS_MORE_MEMBERS`,
/// `PIF_CANNOT_BOND_CROSS_HOST`).
#[test]
fn networks_vlans_and_bonds() {
    let sim = Sim::start();
    let sid = sim.root();
    let eth0 = sim.by_name(&sid, "network", "Pool-wide network associated with eth0");
    let pif = rec(&sim, &sid, "network", &eth0)["PIFs"][0].clone();
    let net = sim
        .call(
            "network.create",
            json!([sid, {"name_label": "VLAN 42", "MTU": 1500, "other_config": {"automatic": "false"}}]),
        )
        .unwrap();
    assert_eq!(code(sim.call("network.create", json!([sid, {"name_label": "x", "MTU": 20}]))), "MTU_RANGE");
    assert_eq!(code(sim.call("pool.create_VLAN_from_PIF", json!([sid, pif, net, 5000]))), "VLAN_TAG_INVALID");
    let made = sim.call("pool.create_VLAN_from_PIF", json!([sid, pif, net, 42])).unwrap();
    assert_eq!(made.as_array().unwrap().len(), 2, "one per host");
    let untagged = rec(&sim, &sid, "PIF", made[0].as_str().unwrap());
    assert_eq!((untagged["VLAN"].as_i64(), untagged["network"].clone()), (Some(42), net.clone()));
    assert_eq!(code(sim.call("pool.create_VLAN_from_PIF", json!([sid, pif, net, 42]))), "PIF_VLAN_EXISTS");
    assert_eq!(code(sim.call("pool.create_VLAN_from_PIF", json!([sid, made[0], net, 43]))), "PIF_IS_VLAN");
    assert_eq!(code(sim.call("network.destroy", json!([sid, net]))), "NETWORK_CONTAINS_PIF");
    for p in made.as_array().unwrap() {
        let vlan = rec(&sim, &sid, "PIF", p.as_str().unwrap())["VLAN_master_of"].clone();
        sim.call("VLAN.destroy", json!([sid, vlan])).unwrap();
    }
    sim.call("network.destroy", json!([sid, net])).unwrap();
    assert_eq!(sim.call("VLAN.get_all", json!([sid])).unwrap(), json!([]));
    let bonded = sim.call("network.create", json!([sid, {"name_label": "bond"}])).unwrap();
    assert_eq!(
        code(sim.call("Bond.create", json!([sid, bonded, [pif], "", "active-backup"]))),
        "PIF_BOND_NEEDS_MORE_MEMBERS"
    );
    let pifs = rec(&sim, &sid, "network", &eth0)["PIFs"].clone();
    assert_eq!(code(sim.call("Bond.create", json!([sid, bonded, pifs, "", "lacp"]))), "PIF_CANNOT_BOND_CROSS_HOST");
    assert_eq!(code(sim.call("Bond.create", json!([sid, bonded, pifs, "", "nope"]))), "ENUM_INVALID");
    // eth0 and eth1 of host 1: the bond's PIF takes the management role, the members are its slaves; destroyed, the
    // first member has it back.
    let eth1 = sim.by_name(&sid, "network", "Pool-wide network associated with eth1");
    let host = rec(&sim, &sid, "PIF", pif.as_str().unwrap())["host"].clone();
    let on_host = |net: &str| {
        rec(&sim, &sid, "network", net)["PIFs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| rec(&sim, &sid, "PIF", p.as_str().unwrap())["host"] == host)
            .unwrap()
            .clone()
    };
    let members = json!([on_host(&eth0), on_host(&eth1)]);
    let bond = sim.call("Bond.create", json!([sid, bonded, members, "", "active-backup"])).unwrap();
    let b = rec(&sim, &sid, "Bond", bond.as_str().unwrap());
    let master = rec(&sim, &sid, "PIF", b["master"].as_str().unwrap());
    assert_eq!((master["device"].as_str(), master["management"].as_bool()), (Some("bond0"), Some(true)));
    assert_eq!(rec(&sim, &sid, "PIF", members[0].as_str().unwrap())["bond_slave_of"], bond);
    assert_eq!(code(sim.call("Bond.create", json!([sid, bonded, members, "", "lacp"]))), "PIF_ALREADY_BONDED");
    sim.call("Bond.destroy", json!([sid, bond])).unwrap();
    assert_eq!(rec(&sim, &sid, "PIF", members[0].as_str().unwrap())["management"], true);
    assert_eq!(sim.call("Bond.get_all", json!([sid])).unwrap(), json!([]));
}

/// `ocaml/xapi/xapi_vm.ml` `start_on`/`resume_on` (`Xapi_vm_helpers.assert_can_boot_here`: `HOST_DISABLED`,
/// `VM_REQUIRES_SR`), and a VM whose `pool_migrate` is blocked holds up an evacuation
/// (`Xapi_vm_lifecycle.check_operation_error`, `OPERATION_BLOCKED`).
#[test]
fn start_on_resume_on_and_blocked_migration() {
    let sim = Sim::start();
    let sid = sim.root();
    let hosts: Vec<String> = serde_json::from_value(sim.call("host.get_all", json!([sid])).unwrap()).unwrap();
    let (h1, h2) = (hosts[0].clone(), hosts[1].clone());
    let web = sim.by_name(&sid, "VM", "Debian 12 web");
    sim.call("VM.suspend", json!([sid, web])).unwrap();
    sim.call("host.disable", json!([sid, h2])).unwrap();
    assert_eq!(code(sim.call("VM.resume_on", json!([sid, web, h2, false, false]))), "HOST_DISABLED");
    sim.call("host.enable", json!([sid, h2])).unwrap();
    sim.call("VM.resume_on", json!([sid, web, h2, false, false])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &web)["resident_on"], json!(h2));
    let rocky = sim.by_name(&sid, "VM", "Rocky Linux 8");
    sim.call("VM.start_on", json!([sid, rocky, h1, false, false])).unwrap();
    let db_vm = sim.by_name(&sid, "VM", "Ubuntu 22.04 db");
    sim.call("VM.hard_shutdown", json!([sid, db_vm])).unwrap();
    assert_eq!(code(sim.call("VM.start_on", json!([sid, db_vm, h1, false, false]))), "VM_REQUIRES_SR");
    sim.call("VM.add_to_blocked_operations", json!([sid, rocky, "pool_migrate", "pinned"])).unwrap();
    let blockers = sim.call("host.get_vms_which_prevent_evacuation", json!([sid, h1])).unwrap();
    assert_eq!(blockers[&rocky][0], "OPERATION_BLOCKED", "{blockers}");
}

/// `ocaml/xapi/db_gc_util.ml` `timeout_tasks`: completed tasks go once their `finished` time is older than 65
/// minutes. A task a client made (`task.create`) and ended with `task.set_status` keeps `finished` at the epoch (no
/// call sets it: `ocaml/xapi/xapi_task.ml`, `set_status`), so the next GC pass removes it; one XAPI completed itself
/// stays.
#[test]
fn a_task_a_client_ended_goes_at_the_next_gc() {
    let sim = Sim::start();
    let sid = sim.root();
    let mine = sim.new_task(&sid);
    sim.call("task.set_status", json!([sid, mine, "success"])).unwrap();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let theirs = sim.call("Async.VM.start", json!([sid, vm, false, false])).unwrap();
    until("the start is done", || sim.task_status(&sid, theirs.as_str().unwrap()) == "success");
    std::thread::sleep(Duration::from_millis(1100));
    sim.call("pool.get_all", json!([sid])).unwrap();
    assert_eq!(code(sim.call("task.get_status", json!([sid, mine]))), "HANDLE_INVALID");
    assert_eq!(sim.call("task.get_status", json!([sid, theirs])).unwrap(), "success");
}
