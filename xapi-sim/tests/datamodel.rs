//! Every record the simulator serves is a record XAPI would send: each field of the XenAPI datamodel
//! (`src/datamodel.json`, from xapi-project/xen-api `doc/data/xenapi.json`) present, no other, each value of its
//! declared type with enum values spelled as XAPI does. Checked on the demo pool and on a 1 000-VM pool, after
//! the writes the simulator implements, in the store (typed values) and on the wire (JSON-RPC).

mod common;
use common::Sim;
use serde_json::{json, Value as J};
use xapi_sim::{datamodel, schema};

/// Does what a client does to a pool: snapshots, VDIs, async tasks, a handler's task, messages, map edits.
fn exercise(sim: &Sim) {
    let sid = sim.root();
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    let vms = sim
        .call(
            "VM.get_all_records_where",
            json!([sid, r#"field "power_state"="Running" and field "is_control_domain"="false""#]),
        )
        .unwrap();
    let vm = vms.as_object().unwrap().keys().next().unwrap().clone();
    let snap = sim.call("VM.snapshot", json!([sid, vm, "check"])).unwrap();
    let clone = sim.call("VM.clone", json!([sid, snap, "check clone"])).unwrap();
    sim.call("VM.copy", json!([sid, clone, "check copy", "OpaqueRef:NULL"])).unwrap();
    sim.call("VM.revert", json!([sid, snap])).unwrap();
    sim.call("VM.start", json!([sid, vm, false, false])).unwrap();
    let vdi = sim.new_vdi(&sid, &sr, 1 << 20);
    sim.call("VDI.add_to_other_config", json!([sid, vdi, "k", "v"])).unwrap();
    let vbd = json!({"VM": vm, "VDI": vdi, "userdevice": "autodetect", "bootable": false, "mode": "RW", "type": "Disk",
                     "empty": false, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}});
    let vbd = sim.call("VBD.create", json!([sid, vbd])).unwrap();
    sim.call("VBD.plug", json!([sid, vbd])).unwrap();
    let net = sim.call("network.get_all", json!([sid])).unwrap()[0].clone();
    let vif = json!({"device": "7", "network": net, "VM": vm, "MAC": "02:00:00:00:00:07", "MTU": 1500,
                     "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}});
    let vif = sim.call("VIF.create", json!([sid, vif])).unwrap();
    sim.call("VIF.plug", json!([sid, vif])).unwrap();
    let task = sim.call("Async.VM.clean_shutdown", json!([sid, vm])).unwrap();
    assert_eq!(sim.task_status(&sid, task.as_str().unwrap()), "success");
    let failed = sim.call("Async.VM.unpause", json!([sid, vm])).unwrap();
    assert_eq!(sim.task_status(&sid, failed.as_str().unwrap()), "failure");
    let handler_task = sim.new_task(&sid);
    let status = sim
        .put(&format!("/import_raw_vdi?vdi={vdi}&format=raw&session_id={sid}&task_id={handler_task}"), vec![7u8; 4096]);
    assert_eq!(status, Some(200));
    sim.call("task.set_progress", json!([sid, sim.new_task(&sid), 0.25])).unwrap();
    let pool = sim.call("pool.get_all", json!([sid])).unwrap()[0].clone();
    let pool_uuid = sim.call("pool.get_uuid", json!([sid, pool])).unwrap();
    sim.call("message.create", json!([sid, "CHECK", 3, "Pool", pool_uuid, "body"])).unwrap();
}

/// The store's typed records.
fn check_store(sim: &Sim) -> usize {
    let db = sim.inner().db.lock();
    let mut checked = 0;
    for class in schema::CLASSES {
        for (r, record) in db.all(class) {
            let problems = datamodel::check(class, record);
            assert!(problems.is_empty(), "{class} {r}: {problems:#?}");
            checked += 1;
        }
    }
    checked
}

/// Whether a JSON-RPC value has the JSON shape of type `ty`.
fn wire_type_ok(ty: &str, v: &J) -> bool {
    if let Some(inner) = ty.strip_suffix(" set") {
        return v.as_array().is_some_and(|a| a.iter().all(|x| wire_type_ok(inner, x)));
    }
    if let Some(inner) = ty.strip_suffix(" map") {
        let value_ty = inner.trim_end_matches(')').split_once(" -> ").map_or("string", |(_, v)| v);
        return v.as_object().is_some_and(|m| m.values().all(|x| wire_type_ok(value_ty, x)));
    }
    if ty.ends_with(" ref") {
        return v.as_str().is_some_and(|s| s.starts_with("OpaqueRef:"));
    }
    if let Some(e) = ty.strip_prefix("enum ") {
        return v.as_str().is_some_and(|s| datamodel::get().enums[e].iter().any(|x| x == s));
    }
    match ty {
        "int" => v.is_i64(),
        "float" => v.is_f64(),
        "bool" => v.is_boolean(),
        "datetime" => v.as_str().is_some_and(|s| s.len() == 18 && s.ends_with('Z') && s.as_bytes()[8] == b'T'),
        _ => v.is_string(),
    }
}

/// The records as a JSON-RPC client receives them.
fn check_wire(sim: &Sim) -> usize {
    let sid = sim.root();
    let mut checked = 0;
    for class in schema::CLASSES {
        let records = sim.call(&format!("{class}.get_all_records"), json!([sid])).unwrap();
        let fields: Vec<(&str, &str)> = datamodel::fields(class).collect();
        for (r, record) in records.as_object().unwrap() {
            let rec = record.as_object().unwrap();
            let mut keys: Vec<&str> = rec.keys().map(String::as_str).collect();
            let mut expected: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
            keys.sort_unstable();
            expected.sort_unstable();
            assert_eq!(keys, expected, "{class} {r}: the fields are the datamodel's");
            for (name, ty) in &fields {
                assert!(wire_type_ok(ty, &rec[*name]), "{class}.{name} of {r}: {} is not a {ty}", rec[*name]);
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn demo_pool_records_are_xapis() {
    let sim = Sim::start();
    exercise(&sim);
    let n = check_store(&sim);
    assert_eq!(check_wire(&sim), n);
    assert!(n > 100, "{n} records checked");
}

#[test]
fn thousand_vm_pool_records_are_xapis() {
    let sim = Sim::start_with(xapi_sim::Options { demo: false, vms: 1000, ..Default::default() });
    let n = check_store(&sim);
    assert_eq!(check_wire(&sim), n);
    assert!(n > 4000, "{n} records checked");
}

/// A record that differs from the datamodel is caught (the check can fail).
#[test]
fn the_check_catches_what_xapi_would_not_send() {
    let mut vm = schema::defaults("VM");
    assert!(datamodel::check("VM", &vm).is_empty());
    vm.insert("power_state".into(), xapi_sim::value::Value::str("running"));
    vm.insert("made_up".into(), xapi_sim::value::Value::Bool(true));
    vm.remove("VCPUs_max");
    vm.insert("memory_target".into(), xapi_sim::value::Value::Float(1.0));
    let problems = datamodel::check("VM", &vm).join("\n");
    for expected in ["VM.power_state", "VM.made_up", "VM.VCPUs_max missing", "VM.memory_target"] {
        assert!(problems.contains(expected), "{expected} not in {problems}");
    }
    assert!(!wire_type_ok("enum vm_power_state", &json!("running")));
    assert!(!wire_type_ok("int", &json!(1.5)));
}
