//! The RPC surface over real HTTP: envelopes, errors, sessions, RBAC, datamodel calls, writes, power rules, tasks, events.

mod common;
use common::Sim;
use serde_json::{json, Value as J};

fn raw_post(sim: &Sim, path: &str, body: &str) -> (u16, String, String) {
    let r = sim.http.post(format!("{}{path}", sim.url)).body(body.to_string()).send().unwrap();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (r.status().as_u16(), ct, r.text().unwrap())
}

#[test]
fn json_rpc_envelopes_are_xapis() {
    let sim = Sim::start();
    let (status, ct, body) = raw_post(
        &sim,
        "/jsonrpc",
        r#"{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","xapi-sim"],"id":7}"#,
    );
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let j: J = serde_json::from_str(&body).unwrap();
    assert_eq!(j["jsonrpc"], "2.0");
    assert_eq!(j["id"], 7);
    let sid = j["result"].as_str().unwrap().to_string();
    assert!(sid.starts_with("OpaqueRef:"));

    // v1 success and error envelopes.
    let (_, _, body) =
        raw_post(&sim, "/jsonrpc", &format!(r#"{{"method":"pool.get_all","params":["{sid}"],"id":"x"}}"#));
    let j: J = serde_json::from_str(&body).unwrap();
    assert_eq!(j["error"], J::Null);
    assert_eq!(j["id"], "x");
    assert_eq!(j["result"].as_array().unwrap().len(), 1);
    assert!(j.get("jsonrpc").is_none());
    let (_, _, body) = raw_post(&sim, "/jsonrpc", r#"{"method":"pool.get_all","params":["OpaqueRef:nope"],"id":1}"#);
    let j: J = serde_json::from_str(&body).unwrap();
    assert_eq!(j, json!({"result": null, "error": ["SESSION_INVALID", "OpaqueRef:nope"], "id": 1}));
    // v2 error envelope.
    let (_, _, body) =
        raw_post(&sim, "/jsonrpc", r#"{"jsonrpc":"2.0","method":"pool.get_all","params":["OpaqueRef:nope"],"id":2}"#);
    let j: J = serde_json::from_str(&body).unwrap();
    assert_eq!(
        j,
        json!({"jsonrpc": "2.0", "error": {"code": 1, "message": "SESSION_INVALID", "data": ["OpaqueRef:nope"]}, "id": 2})
    );

    // Malformed requests: HTML 500.
    for bad in ["{nope", "[1,2]", r#"{"method":"x","params":[],"id":null}"#, r#"{"method":"x","params":"s","id":1}"#] {
        let (status, ct, body) = raw_post(&sim, "/jsonrpc", bad);
        assert_eq!(status, 500, "{bad}");
        assert_eq!(ct, "text/html");
        assert!(body.contains("HTTP 500 internal server error"));
    }
}

#[test]
fn xml_rpc_envelopes_and_types() {
    let sim = Sim::start();
    let login = "<?xml version='1.0'?><methodCall><methodName>session.login_with_password</methodName><params><param><value><string>root</string></value></param><param><value><string>xapi-sim</string></value></param></params></methodCall>";
    let (status, ct, body) = raw_post(&sim, "/", login);
    assert_eq!((status, ct.as_str()), (200, "text/xml"));
    let v = xapi_sim::xmlrpc::parse_value_str(&body[body.find("<value>").unwrap()..body.rfind("</param>").unwrap()])
        .unwrap();
    assert_eq!(v.get("Status").unwrap().as_str(), Some("Success"));
    let sid = v.get("Value").unwrap().as_str().unwrap().to_string();
    // ints are decimal strings, datetimes dateTime.iso8601, bools boolean; /RPC2 works too.
    let call = format!("<methodCall><methodName>host.get_all_records</methodName><params><param><value>{sid}</value></param></params></methodCall>");
    let (status, _, body) = raw_post(&sim, "/RPC2", &call);
    assert_eq!(status, 200);
    assert!(body.contains("<name>API_version_major</name><value>2</value>"), "int64 as a decimal string");
    assert!(body.contains("<name>enabled</name><value><boolean>1</boolean></value>"));
    assert!(body.contains(
        "<name>last_software_update</name><value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>"
    ));
    let bad = "<methodCall><methodName>VM.get_all</methodName><params><param><value>OpaqueRef:x</value></param></params></methodCall>";
    let (_, _, body) = raw_post(&sim, "/", bad);
    assert!(body.contains("<name>Status</name><value>Failure</value>"));
    assert!(body.contains("<name>ErrorDescription</name><value><array><data><value>SESSION_INVALID</value><value>OpaqueRef:x</value></data></array></value>"));
    let (status, _, _) = raw_post(&sim, "/", "<methodCall><params>");
    assert_eq!(status, 500);
}

#[test]
fn errors_for_unknown_methods_handles_uuids_and_arity() {
    let sim = Sim::start();
    let sid = sim.root();
    assert_eq!(sim.call("VM.fly", json!([sid])).unwrap_err(), vec!["MESSAGE_METHOD_UNKNOWN", "VM.fly"]);
    assert_eq!(sim.call("vm.get_all", json!([sid])).unwrap_err()[0], "MESSAGE_METHOD_UNKNOWN");
    assert_eq!(
        sim.call("VM.get_record", json!([sid])).unwrap_err(),
        vec!["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "2", "1"]
    );
    assert_eq!(
        sim.call("VM.get_record", json!([sid, "OpaqueRef:x"])).unwrap_err(),
        vec!["HANDLE_INVALID", "VM", "OpaqueRef:x"]
    );
    assert_eq!(sim.call("VM.get_by_uuid", json!([sid, "nope"])).unwrap_err(), vec!["UUID_INVALID", "VM", "nope"]);
    let sr = sim.call("SR.get_all", json!([sid])).unwrap()[0].as_str().unwrap().to_string();
    // A ref of another class is not a VM.
    assert_eq!(sim.call("VM.get_record", json!([sid, sr])).unwrap_err()[0], "HANDLE_INVALID");
    let sr_uuid = sim.call("SR.get_uuid", json!([sid, sr])).unwrap();
    assert_eq!(sim.call("SR.get_by_uuid", json!([sid, sr_uuid])).unwrap(), json!(sr));
    assert_eq!(sim.call("VM.get_by_uuid", json!([sid, sr_uuid])).unwrap_err()[0], "UUID_INVALID");
}

#[test]
fn sessions_login_logout_expiry_and_rbac() {
    let sim = Sim::start();
    assert_eq!(
        sim.call("session.login_with_password", json!(["root", "wrong"])).unwrap_err()[0],
        "SESSION_AUTHENTICATION_FAILED"
    );
    // 4-argument form.
    let sid = sim.call("session.login_with_password", json!(["root", "xapi-sim", "1.0", "xo-edge-test"])).unwrap();
    let sid = sid.as_str().unwrap();
    assert_eq!(sim.call("session.get_is_local_superuser", json!([sid, sid])).unwrap(), json!(true));
    assert_eq!(sim.call("session.get_subject", json!([sid, sid])).unwrap(), json!("OpaqueRef:NULL"));
    assert_eq!(sim.call("session.get_originator", json!([sid, sid])).unwrap(), json!("xo-edge-test"));

    // An external pool-admin: not local superuser, its subject has the pool-admin role.
    let admin = sim.login("admin", "admin-password");
    assert_eq!(sim.call("session.get_is_local_superuser", json!([admin, admin])).unwrap(), json!(false));
    let subject = sim.call("session.get_subject", json!([admin, admin])).unwrap();
    let roles = sim.call("subject.get_roles", json!([admin, subject])).unwrap();
    assert_eq!(sim.call("role.get_name_label", json!([admin, roles[0]])).unwrap(), json!("pool-admin"));
    let perms = sim.call("session.get_rbac_permissions", json!([admin, admin])).unwrap();
    assert!(perms.as_array().unwrap().contains(&json!("VDI.create")));

    // Read-only: reads work, writes are denied.
    let ro = sim.login("auditor", "auditor-password");
    let subject = sim.call("session.get_subject", json!([ro, ro])).unwrap();
    let roles = sim.call("subject.get_roles", json!([ro, subject])).unwrap();
    assert_eq!(sim.call("role.get_name_label", json!([ro, roles[0]])).unwrap(), json!("read-only"));
    let perms = sim.call("session.get_rbac_permissions", json!([ro, ro])).unwrap();
    assert!(!perms.as_array().unwrap().contains(&json!("VDI.create")));
    let vms = sim.call("VM.get_all_records", json!([ro])).unwrap();
    assert!(vms.as_object().unwrap().len() > 10);
    let vm = sim.by_name(&ro, "VM", "Rocky Linux 8");
    assert_eq!(
        sim.call("VM.start", json!([ro, vm, false, false])).unwrap_err(),
        vec!["RBAC_PERMISSION_DENIED", "VM.start", "No permission in user session"]
    );
    assert_eq!(sim.call("VM.set_name_label", json!([ro, vm, "x"])).unwrap_err()[0], "RBAC_PERMISSION_DENIED");

    // Logout invalidates; the control API can expire a session.
    sim.call("session.logout", json!([sid])).unwrap();
    assert_eq!(sim.call("pool.get_all", json!([sid])).unwrap_err(), vec!["SESSION_INVALID", sid]);
    let r = sim.http.post(format!("{}/_sim/sessions/expire", sim.url)).json(&json!({"session": admin})).send().unwrap();
    assert_eq!(r.json::<J>().unwrap()["expired"], 1);
    assert_eq!(sim.call("pool.get_all", json!([admin])).unwrap_err()[0], "SESSION_INVALID");
    assert!(sim.call("pool.get_all", json!([ro])).is_ok());
}

#[test]
fn idle_sessions_expire_after_the_configured_timeout() {
    let sim = Sim::start_with(xapi_sim::Options {
        config: xapi_sim::sim::Config { session_timeout: std::time::Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    });
    let sid = sim.root();
    assert!(sim.call("pool.get_all", json!([sid])).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(sim.call("pool.get_all", json!([sid])).unwrap_err()[0], "SESSION_INVALID");
}

/// XAPI's session GC (`ocaml/xapi/db_gc_util.ml`, `timeout_sessions`): root sessions are grouped by originator
/// (those without one are the "external" group), other users' by user name, and each group keeps only its most
/// recently active sessions up to its limit (`ocaml/xapi/xapi_globs.ml`: `max_sessions`,
/// `max_sessions_per_originator`, `max_sessions_per_user_name`). One originator's logins never evict another's.
#[test]
fn the_session_gc_keeps_each_groups_most_recently_active() {
    let sim = Sim::start_with(xapi_sim::Options {
        config: xapi_sim::sim::Config {
            max_sessions: 2,
            max_sessions_per_originator: 3,
            max_sessions_per_user_name: 2,
            ..Default::default()
        },
        ..Default::default()
    });
    let login = |user: &str, password: &str, originator: &str| {
        let sid = sim.call("session.login_with_password", json!([user, password, "1.0", originator])).unwrap();
        sid.as_str().unwrap().to_string()
    };
    let alive = |sid: &str| sim.call("pool.get_all", json!([sid])).is_ok();
    let other = login("root", "xapi-sim", "XenCenter");
    let external: Vec<String> = (0..2).map(|_| login("root", "xapi-sim", "")).collect();
    let mine: Vec<String> = (0..5).map(|_| login("root", "xapi-sim", "xo-edge")).collect();
    let admin: Vec<String> = (0..3).map(|_| login("admin", "admin-password", "xo-edge")).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // The first of the five is used again: it is now more recent than the second and third.
    assert!(alive(&mine[0]));
    // The GC runs at most once a second, as calls arrive.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sim.inner().gc_sessions();
    assert!(alive(&other), "another originator's session is not touched");
    assert!(external.iter().all(|s| alive(s)), "the external group is within its limit");
    let kept: Vec<bool> = mine.iter().map(|s| alive(s)).collect();
    assert_eq!(kept, [true, false, false, true, true], "the three most recently active of the originator stay");
    // admin is grouped by user name (whatever the originator): two of three stay.
    assert_eq!(admin.iter().filter(|s| alive(s)).count(), 2);
}

#[test]
fn records_getters_setters_tags_and_where() {
    let sim = Sim::start();
    let sid = sim.root();
    let vms = sim.call("VM.get_all_records", json!([sid])).unwrap();
    let (r, rec) = vms.as_object().unwrap().iter().find(|(_, v)| v["name_label"] == "XOA 🎷").unwrap();
    assert_eq!(rec["power_state"], "Running");
    assert!(rec["VCPUs_max"].is_i64());
    assert!(rec["HVM_shadow_multiplier"].is_f64());
    assert_eq!(sim.call("VM.get_record", json!([sid, r])).unwrap(), *rec);
    assert_eq!(sim.call("VM.get_power_state", json!([sid, r])).unwrap(), json!("Running"));
    assert_eq!(sim.call("VM.get_nonexistent_field", json!([sid, r])).unwrap_err()[0], "MESSAGE_METHOD_UNKNOWN");
    sim.call("VM.set_name_label", json!([sid, r, "renamed"])).unwrap();
    sim.call("VM.set_name_description", json!([sid, r, "d"])).unwrap();
    sim.call("VM.add_tags", json!([sid, r, "new"])).unwrap();
    sim.call("VM.remove_tags", json!([sid, r, "xo"])).unwrap();
    let rec = sim.call("VM.get_record", json!([sid, r])).unwrap();
    assert_eq!(
        (rec["name_label"].clone(), rec["name_description"].clone(), rec["tags"].clone()),
        (json!("renamed"), json!("d"), json!(["new"]))
    );
    sim.call("VM.set_tags", json!([sid, r, ["a", "b"]])).unwrap();
    sim.call("VM.add_to_other_config", json!([sid, r, "k", "v"])).unwrap();
    assert_eq!(sim.call("VM.add_to_other_config", json!([sid, r, "k", "v"])).unwrap_err()[0], "MAP_DUPLICATE_KEY");
    sim.call("VM.remove_from_other_config", json!([sid, r, "k"])).unwrap();
    let running = sim
        .call(
            "VM.get_all_records_where",
            json!([sid, r#"field "power_state"="Running" and field "is_control_domain"="false""#]),
        )
        .unwrap();
    let names: Vec<_> =
        running.as_object().unwrap().values().map(|v| v["name_label"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(sim.call("VM.get_all_records_where", json!([sid, "field ="])).is_err());
    // Every class answers get_all_records with uuids.
    for class in [
        "pool",
        "host",
        "host_metrics",
        "VM_metrics",
        "VM_guest_metrics",
        "VBD",
        "VDI",
        "SR",
        "PBD",
        "network",
        "VIF",
        "PIF",
        "message",
    ] {
        let all = sim.call(&format!("{class}.get_all_records"), json!([sid])).unwrap();
        assert!(!all.as_object().unwrap().is_empty(), "{class}");
        for (r, v) in all.as_object().unwrap() {
            assert!(r.starts_with("OpaqueRef:"));
            assert_eq!(v["uuid"].as_str().unwrap().len(), 36, "{class}");
        }
    }
}

#[test]
fn vdi_create_destroy_and_sr_checks() {
    let sim = Sim::start();
    let sid = sim.root();
    let nfs = sim.by_name(&sid, "SR", "Shared NFS storage");
    let iso = sim.by_name(&sid, "SR", "ISO library");
    let lvm = sim.by_name(&sid, "SR", "Local storage");
    let before = sim.stats()["vdis"].as_u64().unwrap();
    let rec = json!({"name_label": "t", "name_description": "", "SR": nfs, "virtual_size": 1 << 30, "type": "user", "sharable": false, "read_only": false, "other_config": {}});
    let vdi = sim.call("VDI.create", json!([sid, rec])).unwrap();
    assert_eq!(sim.stats()["vdis"].as_u64().unwrap(), before + 1);
    let r = sim.call("VDI.get_record", json!([sid, vdi])).unwrap();
    assert_eq!(
        (r["virtual_size"].clone(), r["SR"].clone(), r["managed"].clone()),
        (json!(1 << 30), json!(nfs), json!(true))
    );
    assert!(sim.call("SR.get_VDIs", json!([sid, nfs])).unwrap().as_array().unwrap().contains(&vdi));
    // Missing required field, ISO SR, no space on a thick SR.
    let mut missing = rec.clone();
    missing.as_object_mut().unwrap().remove("virtual_size");
    assert_eq!(sim.call("VDI.create", json!([sid, missing])).unwrap_err(), vec!["FIELD_TYPE_ERROR", "virtual_size"]);
    let mut on_iso = rec.clone();
    on_iso["SR"] = json!(iso);
    assert_eq!(sim.call("VDI.create", json!([sid, on_iso])).unwrap_err()[0], "SR_OPERATION_NOT_SUPPORTED");
    let mut huge = rec.clone();
    huge["SR"] = json!(lvm);
    huge["virtual_size"] = json!(600i64 << 30);
    assert_eq!(sim.call("VDI.create", json!([sid, huge])).unwrap_err()[0], "SR_BACKEND_FAILURE_44");
    // XML-RPC clients send ints as strings: accepted.
    let mut as_string = rec.clone();
    as_string["virtual_size"] = json!("1048576");
    let small = sim.call("VDI.create", json!([sid, as_string])).unwrap();
    sim.call("VDI.destroy", json!([sid, small])).unwrap();
    sim.call("VDI.destroy", json!([sid, vdi])).unwrap();
    assert_eq!(sim.call("VDI.destroy", json!([sid, vdi])).unwrap_err()[0], "HANDLE_INVALID");
    assert_eq!(sim.stats()["vdis"].as_u64().unwrap(), before);
    // An attached VDI cannot be destroyed.
    let web = sim.by_name(&sid, "VM", "Debian 12 web");
    let vbd = sim.call("VM.get_VBDs", json!([sid, web])).unwrap()[0].clone();
    let disk = sim.call("VBD.get_VDI", json!([sid, vbd])).unwrap();
    assert_eq!(sim.call("VDI.destroy", json!([sid, disk])).unwrap_err()[0], "VDI_IN_USE");
}

#[test]
fn power_state_rules() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let bad = |op: &str, args: J| sim.call(&format!("VM.{op}"), args).unwrap_err();
    assert_eq!(bad("clean_shutdown", json!([sid, vm])), vec!["VM_BAD_POWER_STATE", &vm, "running", "halted"]);
    assert_eq!(bad("unpause", json!([sid, vm]))[0], "VM_BAD_POWER_STATE");
    assert_eq!(bad("resume", json!([sid, vm, false, false]))[0], "VM_BAD_POWER_STATE");
    sim.call("VM.start", json!([sid, vm, false, false])).unwrap();
    let rec = sim.call("VM.get_record", json!([sid, vm])).unwrap();
    assert_eq!(rec["power_state"], "Running");
    assert_ne!(rec["resident_on"], "OpaqueRef:NULL");
    assert_eq!(bad("start", json!([sid, vm, false, false])), vec!["VM_BAD_POWER_STATE", &vm, "halted", "running"]);
    assert_eq!(bad("destroy", json!([sid, vm]))[0], "VM_BAD_POWER_STATE");
    sim.call("VM.pause", json!([sid, vm])).unwrap();
    assert_eq!(bad("clean_shutdown", json!([sid, vm]))[0], "VM_BAD_POWER_STATE");
    sim.call("VM.unpause", json!([sid, vm])).unwrap();
    sim.call("VM.suspend", json!([sid, vm])).unwrap();
    let rec = sim.call("VM.get_record", json!([sid, vm])).unwrap();
    assert_eq!(rec["power_state"], "Suspended");
    assert_ne!(rec["suspend_VDI"], "OpaqueRef:NULL");
    sim.call("VM.resume", json!([sid, vm, false, false])).unwrap();
    sim.call("VM.clean_reboot", json!([sid, vm])).unwrap();
    sim.call("VM.hard_shutdown", json!([sid, vm])).unwrap();
    assert_eq!(sim.call("VM.get_power_state", json!([sid, vm])).unwrap(), "Halted");
    // Templates, control domains, blocked operations.
    let tpl = sim.by_name(&sid, "VM", "Debian Bookworm 12");
    assert_eq!(bad("start", json!([sid, tpl, false, false]))[0], "VM_IS_TEMPLATE");
    let dom0 = sim.by_name(&sid, "VM", "Control domain on host: xcp-host1");
    assert_eq!(bad("clean_shutdown", json!([sid, dom0]))[0], "OPERATION_NOT_ALLOWED");
    let protected = sim.by_name(&sid, "VM", "Protected VM");
    assert_eq!(bad("destroy", json!([sid, protected])), vec!["OPERATION_BLOCKED", &protected, "true"]);
}

#[test]
fn async_calls_run_under_tasks_with_xml_rpc_results() {
    let sim = Sim::start();
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let before = sim.stats();
    let nosnap: Vec<J> = vec![];
    let task = sim.call("Async.VM.snapshot", json!([sid, vm, "snap", nosnap])).unwrap();
    // The call answers at once; the task's completion arrives as an event whose snapshot holds the result.
    let rec = wait_task(&sim, &sid, task.as_str().unwrap());
    assert_eq!((rec["status"].clone(), rec["progress"].clone()), (json!("success"), json!(1.0)));
    assert_eq!(rec["allowed_operations"], json!([]));
    assert!(rec["finished"].as_str().unwrap() > rec["created"].as_str().unwrap() || rec["finished"] == rec["created"]);
    assert_eq!((rec["type"].clone(), rec["subtask_of"].clone()), (json!("<none/>"), json!("OpaqueRef:NULL")));
    let result = rec["result"].as_str().unwrap();
    assert!(result.starts_with("<value>OpaqueRef:") && result.ends_with("</value>"), "{result}");
    let snap = &result[7..result.len() - 8];
    let s = sim.call("VM.get_record", json!([sid, snap])).unwrap();
    assert_eq!(
        (s["is_a_snapshot"].clone(), s["is_a_template"].clone(), s["snapshot_of"].clone()),
        (json!(true), json!(true), json!(vm))
    );
    assert_eq!(s["power_state"], "Halted");
    assert_eq!(sim.stats()["vm_snapshots"], before["vm_snapshots"].as_u64().unwrap() + 1);
    assert_eq!(sim.stats()["vdi_snapshots"], before["vdi_snapshots"].as_u64().unwrap() + 2);
    // A failing async call fails its task with error_info.
    let t2 = sim.call("Async.VM.start", json!([sid, vm, false, false])).unwrap();
    assert_eq!(wait_task(&sim, &sid, t2.as_str().unwrap())["status"], "failure");
    assert_eq!(sim.call("task.get_error_info", json!([sid, t2])).unwrap()[0], "VM_BAD_POWER_STATE");
    // Clean up as a client must: snapshot VM and its VDIs, tasks.
    sim.call("VM.set_is_a_template", json!([sid, snap, false])).unwrap();
    let vbds = sim.call("VM.get_VBDs", json!([sid, snap])).unwrap();
    let vdis: Vec<J> =
        vbds.as_array().unwrap().iter().map(|b| sim.call("VBD.get_VDI", json!([sid, b])).unwrap()).collect();
    sim.call("VM.destroy", json!([sid, snap])).unwrap();
    for v in vdis {
        if sim.call("VDI.get_is_a_snapshot", json!([sid, v])).unwrap() == json!(true) {
            sim.call("VDI.destroy", json!([sid, v])).unwrap();
        }
    }
    sim.call("task.destroy", json!([sid, task])).unwrap();
    sim.call("task.destroy", json!([sid, t2])).unwrap();
    let after = sim.stats();
    for k in ["vm_snapshots", "vdi_snapshots", "vdis", "tasks"] {
        assert_eq!(after[k], before[k], "{k}");
    }
    // [NOSNAP]-style ignore list: the ignored disk is not snapshotted.
    let dbvm = sim.by_name(&sid, "VM", "Ubuntu 22.04 db");
    let scratch = sim.by_name(&sid, "VDI", "[NOSNAP] db scratch");
    let snap = sim.call("VM.snapshot", json!([sid, dbvm, "s", [scratch]])).unwrap();
    assert_eq!(sim.call("VM.get_VBDs", json!([sid, snap])).unwrap().as_array().unwrap().len(), 1);
    // Cancel and destroy as XAPI does them (`ocaml/xapi/xapi_task.ml`, `cancel`, `destroy`; `db_gc_util.ml`,
    // `timeout_tasks`): on a task no operation runs under, cancel is only recorded and destroy only marks it; the
    // task goes once something completes it (XO's client sets its status to cancelled first for that reason).
    let t = sim.call("task.create", json!([sid, "mine", "desc"])).unwrap();
    let rec = sim.call("task.get_record", json!([sid, t])).unwrap();
    assert_eq!((rec["status"].clone(), rec["progress"].clone()), (json!("pending"), json!(0.0)));
    assert_eq!((rec["allowed_operations"].clone(), rec["backtrace"].clone()), (json!([]), json!("()")));
    sim.call("task.cancel", json!([sid, t])).unwrap();
    assert_eq!(sim.call("task.get_status", json!([sid, t])).unwrap(), "pending");
    let ops = sim.call("task.get_current_operations", json!([sid, t])).unwrap();
    assert_eq!(ops.as_object().unwrap().values().collect::<Vec<_>>(), [&json!("cancel")]);
    sim.call("task.destroy", json!([sid, t])).unwrap();
    assert_eq!(sim.call("task.get_status", json!([sid, t])).unwrap(), "pending", "a pending task is not destroyed");
    sim.call("task.set_status", json!([sid, t, "cancelled"])).unwrap();
    sim.call("task.destroy", json!([sid, t])).unwrap();
    assert_eq!(sim.call("task.get_status", json!([sid, t])).unwrap_err()[0], "HANDLE_INVALID");
}

/// Waits for `task` to leave `pending` through `event.from`, as XO's client does; returns the record the
/// completion event carried.
fn wait_task(sim: &Sim, sid: &str, task: &str) -> J {
    let mut token = json!("");
    for _ in 0..50 {
        let r = sim.call("event.from", json!([sid, [format!("task/{task}")], token, 5.0])).unwrap();
        for e in r["events"].as_array().unwrap() {
            if e["snapshot"]["status"] != "pending" && e["snapshot"].is_object() {
                // The completion's snapshot already holds the outcome.
                let s = &e["snapshot"];
                assert!(s["status"] != "failure" || s["error_info"] != json!([]), "{s}");
                assert_eq!(s["progress"], 1.0, "{s}");
                return s.clone();
            }
        }
        token = r["token"].clone();
    }
    panic!("{task} did not complete");
}

/// XAPI's task GC: finished tasks stay until destroyed or older than `completed_task_timeout`, pending ones until
/// `pending_task_timeout`.
#[test]
fn finished_tasks_are_kept_until_destroyed_or_expired() {
    let sim = Sim::start_with(xapi_sim::Options {
        config: xapi_sim::sim::Config {
            completed_task_timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    });
    let sid = sim.root();
    let vm = sim.by_name(&sid, "VM", "Debian 12 web");
    let t = sim.call("Async.VM.clean_reboot", json!([sid, vm])).unwrap();
    let t = t.as_str().unwrap();
    assert_eq!(wait_task(&sim, &sid, t)["status"], "success");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(sim.task_status(&sid, t), "success", "kept while young");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let _ = sim.call("pool.get_all", json!([sid]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let _ = sim.call("pool.get_all", json!([sid]));
    assert_eq!(sim.call("task.get_status", json!([sid, t])).unwrap_err()[0], "HANDLE_INVALID", "expired");
}

#[test]
fn events_from_and_inject() {
    let sim = Sim::start();
    let sid = sim.root();
    let first = sim.call("event.from", json!([sid, ["vm"], "", 0.0])).unwrap();
    let n = first["events"].as_array().unwrap().len();
    assert_eq!(first["valid_ref_counts"]["vm"].as_u64().unwrap() as usize, n);
    let token = first["token"].as_str().unwrap().to_string();
    // Nothing new: returns after the timeout with no events.
    let t0 = std::time::Instant::now();
    let none = sim.call("event.from", json!([sid, ["vm"], token, 0.3])).unwrap();
    assert!(none["events"].as_array().unwrap().is_empty());
    assert!(t0.elapsed().as_millis() >= 250);
    // A change wakes a waiting event.from.
    let vm = sim.by_name(&sid, "VM", "Rocky Linux 8");
    let pool = sim.call("pool.get_all", json!([sid])).unwrap()[0].clone();
    let url = sim.url.clone();
    let waiter = std::thread::spawn({
        let sid = sid.clone();
        let token = token.clone();
        move || {
            let c = reqwest::blocking::Client::new();
            let body = json!({"jsonrpc":"2.0","method":"event.from","params":[sid, ["vm"], token, 30.0],"id":1});
            c.post(format!("{url}/jsonrpc")).json(&body).send().unwrap().json::<J>().unwrap()
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    sim.call("VM.set_name_label", json!([sid, vm, "changed"])).unwrap();
    let got = waiter.join().unwrap();
    let ev = &got["result"]["events"][0];
    assert_eq!(
        (ev["class"].clone(), ev["operation"].clone(), ev["ref"].clone()),
        (json!("vm"), json!("mod"), json!(vm))
    );
    assert_eq!(ev["snapshot"]["name_label"], "changed");
    let inj = sim.call("event.inject", json!([sid, "pool", pool])).unwrap();
    assert!(inj.as_str().unwrap().contains(','));
    let evs = sim.call("event.from", json!([sid, ["pool"], token, 0.0])).unwrap();
    assert_eq!(evs["events"].as_array().unwrap().len(), 1);
}

/// `event.from` per object, as `ocaml/xapi/xapi_event.ml` (`collect_events`, `from_inner`) computes it: `add` for
/// an object created since the token, `mod` for one changed, `del` without a snapshot for one gone, nothing for one
/// created and destroyed in between; `id` is a string and `valid_ref_counts` counts every table.
#[test]
fn event_from_reports_each_object_once_as_xapi() {
    let sim = Sim::start();
    let sid = sim.root();
    let token = sim.call("event.from", json!([sid, ["task", "vdi"], "", 0.0])).unwrap()["token"].clone();
    let sr = sim.by_name(&sid, "SR", "Shared NFS storage");
    // Created then changed twice: one `add`. Created and destroyed: nothing. Existing, changed: one `mod`.
    let kept = sim.new_task(&sid);
    sim.call("task.set_progress", json!([sid, kept, 0.5])).unwrap();
    sim.call("task.set_progress", json!([sid, kept, 0.7])).unwrap();
    let gone = sim.new_task(&sid);
    sim.call("task.set_status", json!([sid, gone, "cancelled"])).unwrap();
    sim.call("task.destroy", json!([sid, gone])).unwrap();
    let vdi = sim.new_vdi(&sid, &sr, 1 << 20);
    let mid = sim.call("event.from", json!([sid, ["task", "vdi"], token, 0.0])).unwrap();
    let evs = mid["events"].as_array().unwrap();
    let ops: Vec<(String, String)> =
        evs.iter().map(|e| (e["ref"].as_str().unwrap().into(), e["operation"].as_str().unwrap().into())).collect();
    assert_eq!(ops.iter().filter(|(r, _)| *r == kept).count(), 1, "{ops:?}");
    assert!(ops.contains(&(kept.clone(), "add".into())), "{ops:?}");
    assert!(!ops.iter().any(|(r, _)| *r == gone), "{ops:?}");
    assert!(ops.contains(&(vdi.clone(), "add".into())));
    let ev = evs.iter().find(|e| e["ref"] == json!(kept)).unwrap();
    assert_eq!(ev["snapshot"]["progress"], 0.7);
    assert!(ev["id"].is_string() && ev["timestamp"] == "0.0", "{ev}");
    assert!(ev.get("obj_uuid").is_none());
    // Every table is counted, watched or not.
    assert_eq!(mid["valid_ref_counts"]["vm"].as_u64(), Some(sim.stats()["objects"]["VM"].as_u64().unwrap()));
    // Then: the VDI changes (`mod`), the task goes (`del`, no snapshot).
    let token = mid["token"].clone();
    sim.call("VDI.set_name_label", json!([sid, vdi, "renamed"])).unwrap();
    sim.call("task.set_status", json!([sid, kept, "success"])).unwrap();
    sim.call("task.destroy", json!([sid, kept])).unwrap();
    let last = sim.call("event.from", json!([sid, ["task", "vdi"], token, 0.0])).unwrap();
    let evs = last["events"].as_array().unwrap();
    let del = evs.iter().find(|e| e["ref"] == json!(kept)).unwrap();
    assert_eq!(del["operation"], "del");
    assert!(del.get("snapshot").is_none(), "{del}");
    let vdi_ev = evs.iter().find(|e| e["ref"] == json!(vdi)).unwrap();
    assert_eq!(
        (vdi_ev["operation"].clone(), vdi_ev["snapshot"]["name_label"].clone()),
        (json!("mod"), json!("renamed"))
    );
    // XML-RPC: the counts are <i4>, as ocaml-rpc writes Int32.
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>event.from</methodName><params><param><value>{sid}</value></param>\
         <param><value><array><data><value>vm</value></data></array></value></param><param><value></value></param>\
         <param><value><double>0</double></value></param></params></methodCall>"
    );
    let (_, _, xml) = raw_post(&sim, "/", &body);
    assert!(xml.contains("<name>vm</name><value><i4>"), "{}", &xml[..xml.len().min(400)]);
}

/// `system.listMethods` as XAPI answers it (`ocaml/xapi/api_server.ml`, `callback1` and `callback`;
/// `ocaml/idl/ocaml_backend/gen_server.ml`, the dispatcher's `system.listMethods` arm): no session, any
/// arguments, every `Class.method`, and on XML-RPC the bare array without the `Status`/`Value` struct. The list
/// holds what the simulator implements and only that.
#[test]
fn system_list_methods_lists_what_is_implemented() {
    let sim = Sim::start();
    let sid = sim.root();
    let list = sim.call("system.listMethods", json!([])).unwrap();
    assert_eq!(sim.call("system.listMethods", json!([sid, "whatever"])).unwrap(), list);
    let methods: Vec<&str> = list.as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for m in ["VM.get_all_records", "task.set_progress", "pool.add_to_other_config", "event.from", "VDI.create"] {
        assert!(methods.contains(&m), "{m}");
    }
    assert!(!methods.contains(&"VM.assert_can_migrate"));
    // Each listed method is dispatched (a wrong arity, not an unknown method); others are unknown.
    for m in &methods {
        if *m == "session.login_with_password" || *m == "session.logout" {
            continue;
        }
        let params = if m.starts_with("event.from") {
            json!([sid, [], "", 0.0, "extra"])
        } else {
            json!([sid, 1, 2, 3, 4, 5, 6])
        };
        let err = sim.call(m, params).err().unwrap_or_default();
        assert_ne!(err.first().map(String::as_str), Some("MESSAGE_METHOD_UNKNOWN"), "{m} is listed but unknown");
    }
    for m in ["VM.assert_can_migrate", "pool.join", "VM.get_nonexistent_field", "message.add_tags"] {
        assert_eq!(sim.call(m, json!([sid])).unwrap_err()[0], "MESSAGE_METHOD_UNKNOWN", "{m}");
    }
    // XML-RPC, no session: a bare array.
    let (status, _, xml) = raw_post(
        &sim,
        "/",
        "<?xml version=\"1.0\"?><methodCall><methodName>system.listMethods</methodName><params></params></methodCall>",
    );
    assert_eq!(status, 200);
    assert!(
        xml.starts_with("<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>"),
        "{}",
        &xml[..200]
    );
    assert!(!xml.contains("<name>Status</name>"));
    assert_eq!(xml.matches("<value>").count(), methods.len() + 1);
}

#[test]
fn faults_latency_and_failing_the_nth_call() {
    let sim = Sim::start();
    let sid = sim.root();
    sim.faults(json!({"fail": [{"method": "pool.get_all", "nth": 2, "error": ["INTERNAL_ERROR", "boom"]}], "latency_ms": {"host.get_all": 300}}));
    assert!(sim.call("pool.get_all", json!([sid])).is_ok());
    assert_eq!(sim.call("pool.get_all", json!([sid])).unwrap_err(), vec!["INTERNAL_ERROR", "boom"]);
    assert!(sim.call("pool.get_all", json!([sid])).is_ok());
    let t0 = std::time::Instant::now();
    sim.call("host.get_all", json!([sid])).unwrap();
    assert!(t0.elapsed().as_millis() >= 300);
    let calls = &sim.stats()["calls"];
    assert_eq!(calls["pool.get_all"], 3);
    sim.http.post(format!("{}/_sim/stats/reset", sim.url)).send().unwrap();
    assert_eq!(sim.stats()["total_calls"], 0);
}

#[test]
fn ten_thousand_vms_load_fast_and_answer_get_all_records() {
    let t0 = std::time::Instant::now();
    let sim = Sim::start_with(xapi_sim::Options { demo: false, vms: 10_000, ..Default::default() });
    let built = t0.elapsed();
    let sid = sim.root();
    let all = sim.call("VM.get_all_records", json!([sid])).unwrap();
    let n = all.as_object().unwrap().len();
    assert_eq!(n, 10_002); // plus the two control domains
    assert!(built.as_secs() < 20, "built in {built:?}");
}
