//! A pool of several hosts, each checked against XAPI's source: every host answers on its own address, a host that
//! is not the master refuses logins and calls with `HOST_IS_SLAVE`, handlers redirect to the host that sees the
//! storage, the master moves (`pool.designate_new_master`, an HA failover) and takes every session with it, and each
//! host's `/rrd_updates` is its own.

mod common;
use common::Sim;
use serde_json::{json, Value as J};
use std::time::{Duration, Instant};

/// A client that does not follow redirects (XAPI's clients decide for themselves where to go).
fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn hosts(sim: &Sim) -> Vec<J> {
    sim.http.get(format!("{}/_sim/hosts", sim.url)).send().unwrap().json::<J>().unwrap().as_array().unwrap().clone()
}

/// A JSON-RPC call to the host at `url`; `Err` holds `[code, params…]`.
fn call_at(url: &str, method: &str, params: J) -> Result<J, Vec<String>> {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let r: J = no_redirects().post(format!("{url}/jsonrpc")).json(&body).send().unwrap().json().unwrap();
    match r.get("error") {
        Some(e) => {
            let mut v = vec![e["message"].as_str().unwrap().to_string()];
            v.extend(e["data"].as_array().unwrap().iter().map(|x| x.as_str().unwrap_or_default().to_string()));
            Err(v)
        }
        None => Ok(r["result"].clone()),
    }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").rsplit_once(':').unwrap().0.to_string()
}

/// The second host: the URL it answers on.
fn second(sim: &Sim) -> String {
    let hosts = hosts(sim);
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(hosts[0]["master"], true);
    hosts[1]["url"].as_str().unwrap().to_string()
}

/// `ocaml/xapi/xapi_session.ml`, `login_with_password`: a host that is not the master answers a login with
/// `HOST_IS_SLAVE [master address]`; `ocaml/xapi/session_check.ml`, `check`: a call with an ordinary session gets
/// the same (`Non_master_login_on_slave`), an unknown session `SESSION_INVALID` (looked up first).
#[test]
fn every_host_answers_on_its_own_address_and_only_the_master_serves_calls() {
    let sim = Sim::start();
    let sid = sim.root();
    let other = second(&sim);
    assert_ne!(address(&other), address(&sim.url));
    // Each host's address is the one it answers on.
    let records = sim.call("host.get_all_records", json!([sid])).unwrap();
    let mut addresses: Vec<String> =
        records.as_object().unwrap().values().map(|h| h["address"].as_str().unwrap().to_string()).collect();
    addresses.sort();
    let mut want = vec![address(&sim.url), address(&other)];
    want.sort();
    assert_eq!(addresses, want);

    let master_address = address(&sim.url);
    assert_eq!(
        call_at(&other, "session.login_with_password", json!(["root", "xapi-sim"])),
        Err(vec!["HOST_IS_SLAVE".to_string(), master_address.clone()])
    );
    assert_eq!(call_at(&other, "VM.get_all", json!([sid])), Err(vec!["HOST_IS_SLAVE".to_string(), master_address]));
    assert_eq!(
        call_at(&other, "VM.get_all", json!(["OpaqueRef:nope"])),
        Err(vec!["SESSION_INVALID".to_string(), "OpaqueRef:nope".to_string()])
    );
    // What needs no session is answered anywhere.
    assert!(call_at(&other, "system.listMethods", json!([])).is_ok());
    // The master answers as before.
    assert!(call_at(&sim.url, "VM.get_all", json!([sid])).is_ok());
}

/// `ocaml/xapi/export_raw_vdi.ml`, `export_raw`, and `import_raw_vdi.ml`, `import`: a host that cannot see the
/// VDI's SR (`importexport.ml`, `check_sr_availability`) answers `302` to the host that can (`find_host_for_sr`),
/// with the same path and query (`return_302_redirect`), before any task work and before reading a body; the
/// client's task stays pending for the other host. There, the request is served.
#[test]
fn handlers_redirect_to_the_host_that_sees_the_storage() {
    let sim = Sim::start();
    let sid = sim.root();
    let other = second(&sim);
    let local_sr = sim.by_name(&sid, "SR", "Local storage");
    let vdi = sim.by_name(&sid, "VDI", "db system");
    assert_eq!(sim.call("VDI.get_SR", json!([sid, vdi])).unwrap(), json!(local_sr));
    let task = sim.new_task(&sid);
    let query = format!("vdi={vdi}&format=vhd&session_id={sid}&task_id={task}");

    let client = no_redirects();
    let r = client.get(format!("{}/export_raw_vdi?{query}", sim.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"].to_str().unwrap(), format!("{other}/export_raw_vdi?{query}"));
    assert_eq!(sim.call("task.get_status", json!([sid, task])).unwrap(), "pending");
    let mut r = client.get(format!("{other}/export_raw_vdi?{query}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut vhd = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut vhd).unwrap();
    assert_eq!(&vhd[..8], b"conectix", "a VHD of the disk");
    assert_eq!(sim.task_status(&sid, &task), "success");

    // A shared SR is seen from every host: no redirect.
    let shared = sim.by_name(&sid, "VDI", "web root");
    let r = client.get(format!("{}/export_raw_vdi?vdi={shared}&session_id={sid}", sim.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(r);

    // An upload is redirected before its body is read, and works at the right host.
    let target = sim.new_vdi(&sid, &local_sr, 1 << 20);
    let query = format!("vdi={target}&format=raw&session_id={sid}");
    let r = client.put(format!("{}/import_raw_vdi?{query}", sim.url)).body(vec![7u8; 1 << 20]).send().unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"].to_str().unwrap(), format!("{other}/import_raw_vdi?{query}"));
    let r = client.put(format!("{other}/import_raw_vdi?{query}")).body(vec![7u8; 1 << 20]).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = r.bytes();
    let uuid = sim.call("VDI.get_uuid", json!([sid, target])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.vdi_info(uuid.as_str().unwrap())["stored_bytes"] != json!(1 << 20) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sim.vdi_info(uuid.as_str().unwrap())["stored_bytes"], json!(1 << 20));

    // `import.ml`, `handler`: an XVA import into a host-local SR goes to that host.
    let r =
        client.put(format!("{}/import?sr_id={local_sr}&session_id={sid}", sim.url)).body(Vec::new()).send().unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert!(r.headers()["location"].to_str().unwrap().starts_with(&format!("{other}/import?")));

    // `export.ml`, `handler`: a VM whose disks another host sees (`check_vm_host_SRs`, `find_host_for_VM`).
    let db_vm = sim.by_name(&sid, "VM", "Ubuntu 22.04 db");
    let r = client.get(format!("{}/export?ref={db_vm}&session_id={sid}", sim.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert!(r.headers()["location"].to_str().unwrap().starts_with(&format!("{other}/export?")));
}

/// Waits until `pool.master`, read at `url` with a fresh login, is `want`.
fn wait_for_master(url: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(sid) = call_at(url, "session.login_with_password", json!(["root", "xapi-sim"])) {
            let pool = call_at(url, "pool.get_all", json!([sid])).unwrap()[0].clone();
            if call_at(url, "pool.get_master", json!([sid, pool])).unwrap() == json!(want) {
                return sid.as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "the master did not move to {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ocaml/xapi/xapi_pool.ml`, `designate_new_master`, and `xapi_pool_transition.ml`: the call returns, the
/// master moves and both toolstacks restart, so sessions (`PersistNothing` in `ocaml/idl/datamodel.ml`) are gone;
/// the old master answers `HOST_IS_SLAVE` naming the new one, which posts `POOL_MASTER_TRANSITION`
/// (`consider_sending_alert`).
#[test]
fn designating_a_new_master_moves_it_and_ends_every_session() {
    let sim = Sim::start();
    let sid = sim.root();
    let other = second(&sim);
    let host2 = sim.by_name(&sid, "host", "xcp-host2");
    let before = sim.call("host.get_other_config", json!([sid, host2])).unwrap()["agent_start_time"].clone();
    assert_eq!(sim.call("pool.designate_new_master", json!([sid, host2])).unwrap(), json!(""));
    let new_sid = wait_for_master(&other, &host2);
    assert_eq!(call_at(&other, "VM.get_all", json!([sid])).unwrap_err()[0], "SESSION_INVALID");
    assert_eq!(
        call_at(&sim.url, "session.login_with_password", json!(["root", "xapi-sim"])),
        Err(vec!["HOST_IS_SLAVE".to_string(), address(&other)])
    );
    let after = call_at(&other, "host.get_other_config", json!([new_sid, host2])).unwrap()["agent_start_time"].clone();
    assert_ne!(before, after, "the new master's toolstack restarted");
    let messages = call_at(&other, "message.get_all_records", json!([new_sid])).unwrap();
    assert!(messages.as_object().unwrap().values().any(|m| m["name"] == "POOL_MASTER_TRANSITION"));
    // Designating the master again is a no-op.
    assert_eq!(call_at(&other, "pool.designate_new_master", json!([new_sid, host2])).unwrap(), json!(""));
}

/// An HA failover (`/_sim/failover`): the master is off the network (connections refused), another host is master
/// with no session of before.
#[test]
fn a_failover_takes_the_master_off_the_network() {
    let sim = Sim::start();
    let sid = sim.root();
    let other = second(&sim);
    let r: J = sim.http.post(format!("{}/_sim/failover", sim.url)).send().unwrap().json().unwrap();
    assert_eq!(r["url"], json!(other));
    let host2 = sim.call("host.get_by_uuid", json!([sid, r["master"]])).unwrap();
    wait_for_master(&other, host2.as_str().unwrap());
    assert!(no_redirects().get(format!("{}/jsonrpc", sim.url)).send().is_err(), "the old master is unreachable");
    assert_eq!(call_at(&other, "VM.get_all", json!([sid])).unwrap_err()[0], "SESSION_INVALID");
    // Back on the network, the old master is a slave of the new one.
    let listed: J = sim.http.get(format!("{other}/_sim/hosts")).send().unwrap().json().unwrap();
    assert_eq!(listed[0]["url"], json!(other), "the new master comes first");
    assert_eq!(listed[1]["up"], json!(false));
    let old = listed[1].clone();
    let r = sim
        .http
        .put(format!("{other}/_sim/hosts/{}/link", old["uuid"].as_str().unwrap()))
        .json(&json!({"up": true}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let refusal = loop {
        if let Ok(r) =
            std::panic::catch_unwind(|| call_at(&sim.url, "session.login_with_password", json!(["root", "xapi-sim"])))
        {
            break r;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refusal, Err(vec!["HOST_IS_SLAVE".to_string(), address(&other)]));
}

/// `ocaml/xapi/rrdd_proxy.ml`, `get_rrd_updates_forwarder`: `/rrd_updates` is answered by the host asked, from its
/// own xcp-rrdd: that host and the VMs resident on it.
#[test]
fn each_hosts_rrd_updates_are_its_own() {
    let sim = Sim::start();
    let sid = sim.root();
    let other = second(&sim);
    let legend = |url: &str| -> Vec<String> {
        let r: J = sim
            .http
            .get(format!("{url}/rrd_updates?session_id={sid}&start=-60&host=true&json=true"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["meta"]["legend"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
    };
    let objects = |legend: &[String]| -> std::collections::BTreeSet<String> {
        legend.iter().map(|l| l.split(':').take(3).collect::<Vec<_>>().join(":")).collect()
    };
    let host_uuid = |name: &str| sim.call("host.get_uuid", json!([sid, sim.by_name(&sid, "host", name)])).unwrap();
    let resident = |name: &str| -> std::collections::BTreeSet<String> {
        let host = sim.by_name(&sid, "host", name);
        let vms = sim.call("host.get_resident_VMs", json!([sid, host])).unwrap();
        vms.as_array()
            .unwrap()
            .iter()
            .filter(|vm| sim.call("VM.get_is_control_domain", json!([sid, vm])).unwrap() == json!(false))
            .map(|vm| format!("AVERAGE:vm:{}", sim.call("VM.get_uuid", json!([sid, vm])).unwrap().as_str().unwrap()))
            .collect()
    };
    for (url, name) in [(sim.url.clone(), "xcp-host1"), (other.clone(), "xcp-host2")] {
        let mut want = resident(name);
        want.insert(format!("AVERAGE:host:{}", host_uuid(name).as_str().unwrap()));
        assert_eq!(objects(&legend(&url)), want, "{name}");
    }
}
