//! VM settings and VDI resizing, each checked over JSON-RPC against XAPI's source (file and function per test).

mod common;
use common::Sim;
use serde_json::{json, Value as J};

fn rec(sim: &Sim, sid: &str, class: &str, r: &str) -> J {
    sim.call(&format!("{class}.get_record"), json!([sid, r])).unwrap()
}

fn code(r: Result<J, Vec<String>>) -> String {
    r.unwrap_err()[0].clone()
}

/// `ocaml/xapi/xapi_vm.ml`: `set_VCPUs_max`, `set_VCPUs_at_startup` (0 < at_startup ≤ max, `INVALID_VALUE`),
/// `set_memory_limits`, `set_memory_dynamic_range` (`MEMORY_CONSTRAINT_VIOLATION_ORDER`), `set_ha_restart_priority`,
/// `set_start_delay`; `xapi_vm_lifecycle.ml` `allowed_power_states` (`changing_VCPUs`, `changing_memory_limits`:
/// halted; `changing_VCPUs_live`: running).
#[test]
fn vm_settings_follow_xapis_rules() {
    let sim = Sim::start();
    let sid = sim.root();
    let halted = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let running = sim.by_name(&sid, "VM", "Debian 12 web");
    sim.call("VM.set_VCPUs_max", json!([sid, halted, 8])).unwrap();
    sim.call("VM.set_VCPUs_at_startup", json!([sid, halted, 4])).unwrap();
    let r = rec(&sim, &sid, "VM", &halted);
    assert_eq!((r["VCPUs_max"].as_i64(), r["VCPUs_at_startup"].as_i64()), (Some(8), Some(4)));
    assert_eq!(code(sim.call("VM.set_VCPUs_at_startup", json!([sid, halted, 9]))), "INVALID_VALUE");
    assert_eq!(code(sim.call("VM.set_VCPUs_max", json!([sid, halted, 2]))), "INVALID_VALUE", "below at_startup");
    assert_eq!(code(sim.call("VM.set_VCPUs_max", json!([sid, running, 8]))), "VM_BAD_POWER_STATE");
    assert_eq!(code(sim.call("VM.set_VCPUs_number_live", json!([sid, halted, 2]))), "VM_BAD_POWER_STATE");
    let max = rec(&sim, &sid, "VM", &running)["VCPUs_max"].as_i64().unwrap();
    sim.call("VM.set_VCPUs_number_live", json!([sid, running, max])).unwrap();
    assert_eq!(code(sim.call("VM.set_VCPUs_number_live", json!([sid, running, max + 1]))), "INVALID_VALUE");
    let g = 1i64 << 30;
    sim.call("VM.set_memory_limits", json!([sid, halted, g / 2, 2 * g, g, 2 * g])).unwrap();
    let r = rec(&sim, &sid, "VM", &halted);
    assert_eq!((r["memory_static_max"].as_i64(), r["memory_dynamic_min"].as_i64()), (Some(2 * g), Some(g)));
    let err = sim.call("VM.set_memory_limits", json!([sid, halted, g, g, 2 * g, 2 * g])).unwrap_err();
    assert_eq!(err, ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]);
    assert_eq!(code(sim.call("VM.set_memory_limits", json!([sid, running, g, g, g, g]))), "VM_BAD_POWER_STATE");
    let smax = rec(&sim, &sid, "VM", &running)["memory_static_max"].as_i64().unwrap();
    sim.call("VM.set_memory_dynamic_range", json!([sid, running, smax / 2, smax])).unwrap();
    assert_eq!(
        code(sim.call("VM.set_memory_dynamic_range", json!([sid, running, smax, smax * 2]))),
        "MEMORY_CONSTRAINT_VIOLATION_ORDER"
    );
    sim.call("VM.set_ha_restart_priority", json!([sid, running, "restart"])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &running)["ha_always_run"], true, "a running VM is protected at once");
    assert_eq!(code(sim.call("VM.set_ha_restart_priority", json!([sid, running, "always"]))), "INVALID_VALUE");
    assert_eq!(code(sim.call("VM.set_start_delay", json!([sid, running, -1]))), "INVALID_VALUE");
    let host = sim.call("host.get_all", json!([sid])).unwrap()[1].clone();
    sim.call("VM.set_affinity", json!([sid, halted, host])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &halted)["affinity"], host);
    assert_eq!(code(sim.call("VM.set_affinity", json!([sid, halted, "OpaqueRef:nope"]))), "HANDLE_INVALID");
}

/// `ocaml/xapi/xapi_vdi.ml`: `resize` (refused while attached: `check_operation_error`, `VDI_IN_USE`) and
/// `resize_online` (allowed then).
#[test]
fn vdis_grow_offline_or_online() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let vbd = sim.call("VM.get_VBDs", json!([sid, vm])).unwrap()[0].clone();
    let vdi = sim.call("VBD.get_VDI", json!([sid, vbd])).unwrap();
    let size = rec(&sim, &sid, "VDI", vdi.as_str().unwrap())["virtual_size"].as_i64().unwrap();
    assert_eq!(sim.call("VDI.resize", json!([sid, vdi, size * 2])).unwrap_err()[0], "VDI_IN_USE");
    sim.call("VDI.resize_online", json!([sid, vdi, size * 2])).unwrap();
    assert_eq!(rec(&sim, &sid, "VDI", vdi.as_str().unwrap())["virtual_size"], size * 2);
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    let loose = sim.new_vdi(&sid, &sr, 1 << 20);
    sim.call("VDI.resize", json!([sid, loose, 1 << 21])).unwrap();
    assert_eq!(rec(&sim, &sid, "VDI", &loose)["virtual_size"], 1 << 21);
    assert_eq!(sim.vdi_info(rec(&sim, &sid, "VDI", &loose)["uuid"].as_str().unwrap())["size"], 1 << 21);
}

/// `ocaml/xapi/xapi_vif.ml`: `set_locking_mode`, `set_ipv4_allowed` (a set; `Helpers.assert_is_valid_ip_addr`
/// refuses a CIDR that is no plain address).
#[test]
fn vif_locking_and_qos() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let vif = sim.call("VM.get_VIFs", json!([sid, vm])).unwrap()[0].clone();
    sim.call("VIF.set_locking_mode", json!([sid, vif, "locked"])).unwrap();
    sim.call("VIF.set_ipv4_allowed", json!([sid, vif, ["192.0.2.7", "192.0.2.7", "192.0.2.1"]])).unwrap();
    let r = rec(&sim, &sid, "VIF", vif.as_str().unwrap());
    assert_eq!(
        (r["locking_mode"].clone(), r["ipv4_allowed"].clone()),
        (json!("locked"), json!(["192.0.2.1", "192.0.2.7"]))
    );
    assert_eq!(
        code(sim.call("VIF.set_ipv4_allowed", json!([sid, vif, ["192.0.2.0/24"]]))),
        "INVALID_IP_ADDRESS_SPECIFIED"
    );
    assert_eq!(code(sim.call("VIF.set_locking_mode", json!([sid, vif, "open"]))), "ENUM_INVALID");
    sim.call("VIF.set_qos_algorithm_type", json!([sid, vif, "ratelimit"])).unwrap();
    sim.call("VIF.set_qos_algorithm_params", json!([sid, vif, {"kbps": "1000"}])).unwrap();
    assert_eq!(rec(&sim, &sid, "VIF", vif.as_str().unwrap())["qos_algorithm_params"], json!({"kbps": "1000"}));
}

/// `ocaml/xapi/xapi_vm.ml`: `set_has_vendor_device` (halted only: `assert_initial_power_state_is`), `set_domain_type`
/// (sets `HVM_boot_policy` from the type), and the map fields XO edits (`platform`, `VCPUs_params`,
/// `HVM_boot_params`: XAPI's generic `add_to_`/`remove_from_`).
#[test]
fn vm_platform_and_boot_settings() {
    let sim = Sim::start();
    let sid = sim.root();
    let halted = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let running = sim.by_name(&sid, "VM", "Debian 12 web");
    sim.call("VM.set_has_vendor_device", json!([sid, halted, true])).unwrap();
    assert_eq!(code(sim.call("VM.set_has_vendor_device", json!([sid, running, true]))), "VM_BAD_POWER_STATE");
    sim.call("VM.set_domain_type", json!([sid, halted, "pv"])).unwrap();
    let r = rec(&sim, &sid, "VM", &halted);
    assert_eq!((r["domain_type"].as_str(), r["HVM_boot_policy"].as_str()), (Some("pv"), Some("")));
    assert_eq!(code(sim.call("VM.set_domain_type", json!([sid, halted, "unspecified"]))), "INVALID_VALUE");
    let err = sim.call("VM.add_to_platform", json!([sid, halted, "cores-per-socket", "2"])).unwrap_err();
    assert_eq!(err[0], "MAP_DUPLICATE_KEY", "the demo VM has the key already");
    sim.call("VM.remove_from_platform", json!([sid, halted, "cores-per-socket"])).unwrap();
    sim.call("VM.add_to_platform", json!([sid, halted, "cores-per-socket", "2"])).unwrap();
    sim.call("VM.remove_from_VCPUs_params", json!([sid, halted, "cap"])).unwrap();
    sim.call("VM.add_to_VCPUs_params", json!([sid, halted, "cap", "50"])).unwrap();
    sim.call("VM.remove_from_HVM_boot_params", json!([sid, halted, "firmware"])).unwrap();
    sim.call("VM.add_to_HVM_boot_params", json!([sid, halted, "firmware", "uefi"])).unwrap();
    let r = rec(&sim, &sid, "VM", &halted);
    assert_eq!(r["platform"]["cores-per-socket"], "2");
    assert_eq!(
        (r["VCPUs_params"]["cap"].as_str(), r["HVM_boot_params"]["firmware"].as_str()),
        (Some("50"), Some("uefi"))
    );
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    sim.call("VM.set_suspend_SR", json!([sid, halted, sr])).unwrap();
    assert_eq!(rec(&sim, &sid, "VM", &halted)["suspend_SR"], sr.as_str());
}
