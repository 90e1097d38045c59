//! The pool's infrastructure: hosts (disable, enable, evacuate, reboot, shutdown, power on, toolstack restart,
//! management interface, eject, forget), storage (`SR.create/destroy/forget/scan`, `PBD.plug/unplug`) and networks
//! (`network.create/destroy`, VLANs, bonds), with XAPI's rules.
//!
//! Sources, cited per function: `ocaml/xapi/xapi_host.ml`, `xapi_pool.ml`, `xapi_sr.ml`, `xapi_pbd.ml`,
//! `xapi_network.ml`, `xapi_vlan.ml`, `xapi_bond.ml` and the checks `message_forwarding.ml` adds in front of them.
//! What a host does while it is down is not modelled: a rebooting host is not live for
//! [`FaultSpec::host_boot_ms`](crate::sim::FaultSpec) and comes back as XAPI's startup leaves it (enabled unless
//! `auto_enable` was switched off, its PBDs plugged).

use crate::api::{arg_str, bool_of, int_of, obj, refs_of, str_of, vm_power, R};
use crate::db::{now_datetime, Db};
use crate::schema::Fields;
use crate::sim::{Sim, XapiError};
use crate::value::Value;
use std::sync::Arc;

/// The calls this module implements (all writes: pool administrators only).
pub const CALLS: &[&str] = &[
    "host.disable",
    "host.enable",
    "host.evacuate",
    "host.get_vms_which_prevent_evacuation",
    "host.reboot",
    "host.shutdown",
    "host.power_on",
    "host.restart_agent",
    "host.management_reconfigure",
    "host.destroy",
    "host.call_plugin",
    "PIF.scan",
    "pool.eject",
    "pool.management_reconfigure",
    "pool.create_VLAN_from_PIF",
    "pool.designate_new_master",
    "SR.create",
    "SR.destroy",
    "SR.forget",
    "SR.scan",
    "PBD.plug",
    "PBD.unplug",
    "network.create",
    "network.destroy",
    "network.add_purpose",
    "VLAN.destroy",
    "Bond.create",
    "Bond.destroy",
];

/// Calls that only read (any role may make them).
pub const READS: &[&str] = &["host.get_vms_which_prevent_evacuation"];

/// The argument counts each call accepts (XAPI accepts a call without its trailing parameters that have defaults:
/// `host.disable`'s `auto_enable`, `host.evacuate`'s `network` and `evacuate_batch_size`, `Bond.create`'s
/// `properties`; `ocaml/idl/datamodel_host.ml`, `datamodel_bond.ml`).
pub fn arity(op: &str) -> std::ops::RangeInclusive<usize> {
    match op {
        "disable" => 1..=2,
        "evacuate" => 1..=3,
        "call_plugin" => 4..=4,
        "create_VLAN_from_PIF" => 3..=3,
        _ => 1..=1,
    }
}

/// Runs one call of [`CALLS`] (`class.op`, arguments after the session).
pub async fn call(sim: &Arc<Sim>, class: &str, op: &str, args: &[Value]) -> R<Value> {
    let a = |i: usize| args.get(i).map(arg_str).unwrap_or_default();
    let n = args.len();
    let expected = match (class, op) {
        ("SR", "create") => 9..=9,
        ("Bond", "create") => 4..=5,
        ("network", "create") => 1..=1,
        ("network", "add_purpose") => 2..=2,
        _ => arity(op),
    };
    if !expected.contains(&n) {
        return Err(crate::api::count_mismatch(&format!("{class}.{op}"), expected.end() + 1, n + 1));
    }
    match (class, op) {
        ("host", "disable") => {
            let auto = args.get(1).and_then(Value::as_bool).unwrap_or(true);
            let host = a(0);
            sim.write(|db| host_disable(db, &host))?;
            let mut off = sim.auto_enable_off.lock();
            if !auto {
                off.insert(host);
            }
            Ok(Value::str(""))
        }
        ("host", "enable") => {
            let host = a(0);
            sim.write(|db| host_enable(db, &host))?;
            sim.auto_enable_off.lock().remove(&host);
            Ok(Value::str(""))
        }
        ("host", "evacuate") => sim.write(|db| host_evacuate(db, &a(0))),
        ("host", "get_vms_which_prevent_evacuation") => {
            let db = sim.db.lock();
            obj(&db, "host", &a(0))?;
            let plans = evacuation_plan(&db, &a(0));
            Ok(Value::Map(
                plans.into_iter().filter_map(|(vm, plan)| plan.err().map(|e| (vm, Value::strs(e.0)))).collect(),
            ))
        }
        ("host", "reboot" | "shutdown") => host_power_off(sim, &a(0), op == "reboot"),
        ("host", "power_on") => sim.write(|db| host_power_on(db, &a(0))),
        ("host", "restart_agent") => restart_agent(sim, &a(0)),
        ("host", "management_reconfigure") => sim.write(|db| management_reconfigure(db, &[a(0)])),
        ("host", "destroy") => sim.write(|db| host_destroy(db, &a(0))),
        ("host", "call_plugin") => sim.write(|db| call_plugin(db, &a(0), &a(1), &a(2), args.get(3))),
        ("PIF", "scan") => {
            // The simulated hosts have no devices besides the PIFs they already have: a scan finds nothing new.
            obj(&sim.db.lock(), "host", &a(0))?;
            Ok(Value::str(""))
        }
        ("pool", "eject") => sim.write(|db| pool_eject(db, &a(0))),
        ("pool", "designate_new_master") => designate_new_master(sim, &a(0)),
        ("pool", "management_reconfigure") => sim.write(|db| {
            let network = a(0);
            let pifs = refs_of(obj(db, "network", &network)?, "PIFs");
            management_reconfigure(db, &pifs)
        }),
        ("pool", "create_VLAN_from_PIF") => {
            let tag = args[2].as_i64().or_else(|| a(2).parse().ok()).unwrap_or(-1);
            sim.write(|db| create_vlan_from_pif(db, &a(0), &a(1), tag))
        }
        ("SR", "create") => sim.write(|db| sr_create(db, args)),
        ("SR", "destroy" | "forget") => sim.write(|db| sr_remove(db, &a(0), op == "destroy")),
        ("SR", "scan") => sim.write(|db| sr_scan(db, &a(0))),
        ("PBD", "plug" | "unplug") => sim.write(|db| pbd_plug(db, &a(0), op == "plug")),
        ("network", "create") => sim.write(|db| network_create(db, &args[0])),
        ("network", "destroy") => sim.write(|db| network_destroy(db, &a(0))),
        ("network", "add_purpose") => sim.write(|db| {
            obj(db, "network", &a(0))?;
            if a(1) != "nbd" && a(1) != "insecure_nbd" {
                return Err(XapiError::new("ENUM_INVALID", &["network_purpose", &a(1)]));
            }
            db.set_add(&a(0), "purpose", &a(1));
            Ok(Value::str(""))
        }),
        ("VLAN", "destroy") => sim.write(|db| vlan_destroy(db, &a(0))),
        ("Bond", "create") => {
            let members: Vec<String> = args[1].as_array().unwrap_or(&[]).iter().map(arg_str).collect();
            sim.write(|db| bond_create(db, &a(0), &members, &a(2), &a(3)))
        }
        ("Bond", "destroy") => sim.write(|db| bond_destroy(db, &a(0))),
        _ => Err(XapiError::new("MESSAGE_METHOD_UNKNOWN", &[&format!("{class}.{op}")])),
    }
}

fn master(db: &Db) -> String {
    db.all("pool").next().map(|(_, p)| str_of(p, "master")).unwrap_or_default()
}

/// Whether the host's metrics say it is live.
pub fn is_live(db: &Db, host: &str) -> bool {
    db.get(host).map(|h| str_of(h, "metrics")).and_then(|m| db.get(&m).map(|m| bool_of(m, "live"))).unwrap_or(false)
}

pub(crate) fn set_live(db: &mut Db, host: &str, live: bool) {
    let metrics = db.field_str(host, "metrics");
    db.update(&metrics, |m| {
        m.insert("live".into(), Value::Bool(live));
        m.insert("last_updated".into(), Value::DateTime(now_datetime()));
    });
}

/// The guest VMs running (or paused) on `host`: not its control domain.
pub fn guests_on(db: &Db, host: &str) -> Vec<String> {
    db.all("VM")
        .filter(|(_, v)| str_of(v, "resident_on") == host && !bool_of(v, "is_control_domain"))
        .map(|(r, _)| r.clone())
        .collect()
}

/// The SRs whose VDIs the VM's disks use.
fn srs_of_vm(db: &Db, vm: &Fields) -> Vec<String> {
    let mut out = Vec::new();
    for vbd in refs_of(vm, "VBDs") {
        let vdi = db.field_str(&vbd, "VDI");
        let sr = db.field_str(&vdi, "SR");
        if db.get_of("SR", &sr).is_some() && !out.contains(&sr) {
            out.push(sr);
        }
    }
    out
}

/// Whether `host` has a plugged PBD for `sr` (`Xapi_vm_helpers.assert_can_see_specified_SRs`).
pub fn sees(db: &Db, host: &str, sr: &str) -> bool {
    db.all("PBD").any(|(_, p)| str_of(p, "host") == host && str_of(p, "SR") == sr && bool_of(p, "currently_attached"))
}

/// `Xapi_vm_helpers.assert_can_boot_here`: an enabled (`HOST_DISABLED`), live (`HOST_OFFLINE`) host that sees every
/// SR the VM's disks use (`VM_REQUIRES_SR`).
pub fn assert_can_boot_here(db: &Db, vm: &str, host: &str) -> R<()> {
    let target = obj(db, "host", host)?;
    if !bool_of(target, "enabled") {
        return Err(XapiError::new("HOST_DISABLED", &[host]));
    }
    if !is_live(db, host) {
        return Err(XapiError::new("HOST_OFFLINE", &[host]));
    }
    if let Some(sr) = unseen_sr(db, vm, host) {
        return Err(XapiError::new("VM_REQUIRES_SR", &[vm, &sr]));
    }
    Ok(())
}

/// An SR the VM's disks use that `host` does not see, if any.
pub fn unseen_sr(db: &Db, vm: &str, host: &str) -> Option<String> {
    let rec = db.get_of("VM", vm)?;
    srs_of_vm(db, rec).into_iter().find(|sr| !sees(db, host, sr))
}

/// A host that can run `vm`: `preferred` if it can, else another; enabled, live and seeing every SR the VM's disks
/// are on (`Xapi_vm_helpers.choose_host_for_vm`, `assert_can_boot_here`). Errors as XAPI: `VM_REQUIRES_SR` when only
/// storage stands in the way, else `NO_HOSTS_AVAILABLE`.
pub fn choose_host(db: &Db, vm: &str, preferred: Option<&str>, except: Option<&str>) -> R<String> {
    let rec = obj(db, "VM", vm)?;
    let srs = srs_of_vm(db, rec);
    let mut candidates: Vec<String> = db
        .all("host")
        .filter(|(r, h)| Some(r.as_str()) != except && bool_of(h, "enabled") && is_live(db, r))
        .map(|(r, _)| r.clone())
        .collect();
    if let Some(p) = preferred {
        if let Some(i) = candidates.iter().position(|c| c == p) {
            candidates.swap(0, i);
        }
    }
    if candidates.is_empty() {
        return Err(XapiError::new("NO_HOSTS_AVAILABLE", &[vm]));
    }
    match candidates.iter().find(|h| srs.iter().all(|sr| sees(db, h, sr))) {
        Some(h) => Ok(h.clone()),
        None => {
            let sr = srs.iter().find(|sr| !candidates.iter().any(|h| sees(db, h, sr))).cloned().unwrap_or_default();
            Err(XapiError::new("VM_REQUIRES_SR", &[vm, &sr]))
        }
    }
}

/// Where each guest of `host` would go (`Xapi_host.compute_evacuation_plan_no_wlb`): another enabled host that
/// sees its storage, or the error that prevents it.
pub fn evacuation_plan(db: &Db, host: &str) -> Vec<(String, Result<String, XapiError>)> {
    guests_on(db, host)
        .into_iter()
        .map(|vm| {
            // Only a running VM whose migration is not blocked migrates (`Xapi_vm_lifecycle.check_operation_error`
            // on `pool_migrate`: `allowed_power_states`, `blocked_operations`).
            let state = db.field_str(&vm, "power_state");
            let plan = if state != "Running" {
                Err(crate::api::bad_power_state(&vm, "running", &state))
            } else if let Err(e) = db.get(&vm).map_or(Ok(()), |r| crate::api::check_blocked(&vm, r, "pool_migrate")) {
                Err(e)
            } else {
                choose_host(db, &vm, None, Some(host))
            };
            (vm, plan)
        })
        .collect()
}

/// `host.disable` (`Xapi_host.disable`; `message_forwarding.ml` marks the operation first).
fn host_disable(db: &mut Db, host: &str) -> R<Value> {
    obj(db, "host", host)?;
    db.set(host, "enabled", Value::Bool(false));
    Ok(Value::str(""))
}

/// `host.enable` (`Xapi_host.enable`, `assert_safe_to_reenable`): a host that is not live cannot be re-enabled.
fn host_enable(db: &mut Db, host: &str) -> R<Value> {
    obj(db, "host", host)?;
    if !is_live(db, host) {
        return Err(XapiError::new("HOST_OFFLINE", &[host]));
    }
    db.set(host, "enabled", Value::Bool(true));
    Ok(Value::str(""))
}

/// `host.evacuate` (`Xapi_host.evacuate`): every guest of the host migrates, live, to the host its plan names; any
/// VM without a plan fails the whole call before anything moves.
fn host_evacuate(db: &mut Db, host: &str) -> R<Value> {
    obj(db, "host", host)?;
    let plans = evacuation_plan(db, host);
    let mut moves = Vec::new();
    for (vm, plan) in plans {
        moves.push((vm, plan?));
    }
    for (vm, to) in moves {
        crate::vm_ops::vm_pool_migrate(db, &vm, &to)?;
    }
    Ok(Value::str(""))
}

/// `host.reboot` / `host.shutdown` (`Xapi_host.shutdown_and_reboot_common`): the host must be disabled
/// (`prepare_for_poweroff_precheck`: `HOST_NOT_DISABLED`); the call returns, then the host stops its guests
/// (`Vm_evacuation.ensure_no_vms`: a clean shutdown each), unplugs its PBDs (`Xapi_pbd.unplug_all_pbds`) and goes
/// down. A rebooted host comes back after [`Sim::host_boot`]; a master's restart drops every session and task, which
/// XAPI does not persist (`ocaml/idl/datamodel.ml`: `session` and `task` are `PersistNothing`).
fn host_power_off(sim: &Arc<Sim>, host: &str, reboot: bool) -> R<Value> {
    sim.write(|db| {
        let rec = obj(db, "host", host)?;
        if bool_of(rec, "enabled") {
            return Err(XapiError::new("HOST_NOT_DISABLED", &[]));
        }
        if !is_live(db, host) {
            return Err(XapiError::new("HOST_OFFLINE", &[host]));
        }
        for vm in guests_on(db, host) {
            let state = db.field_str(&vm, "power_state");
            let op = if state == "Running" { "clean_shutdown" } else { "hard_shutdown" };
            vm_power(db, &vm, op, false)?;
        }
        let pbds: Vec<String> =
            db.all("PBD").filter(|(_, p)| str_of(p, "host") == host).map(|(r, _)| r.clone()).collect();
        for pbd in pbds {
            db.set(&pbd, "currently_attached", Value::Bool(false));
        }
        set_live(db, host, false);
        Ok::<_, XapiError>(())
    })?;
    // The call returns before the host goes (XAPI waits 10 s before running `shutdown`): a master's sessions and
    // tasks go a moment later.
    let is_master = master(&sim.db.lock()) == host;
    if is_master {
        let (sim, delay) = (sim.clone(), sim.host_boot() / 4);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sim.restart_master();
        });
    }
    if reboot {
        let (sim, host) = (sim.clone(), host.to_string());
        let boot = sim.host_boot();
        tokio::spawn(async move {
            tokio::time::sleep(boot).await;
            let auto_enable = !sim.auto_enable_off.lock().contains(&host);
            sim.write(|db| boot_up(db, &host, auto_enable));
        });
    }
    Ok(Value::str(""))
}

/// A host coming up (`xapi.ml` startup, `Xapi_host_helpers.consider_enabling_host`): live, its PBDs plugged, enabled
/// unless `auto_enable` is off, its agent start time new.
fn boot_up(db: &mut Db, host: &str, auto_enable: bool) {
    if db.get_of("host", host).is_none() {
        return;
    }
    set_live(db, host, true);
    let pbds: Vec<String> = db.all("PBD").filter(|(_, p)| str_of(p, "host") == host).map(|(r, _)| r.clone()).collect();
    for pbd in pbds {
        db.set(&pbd, "currently_attached", Value::Bool(true));
    }
    db.set(host, "enabled", Value::Bool(auto_enable));
    stamp_agent_start(db, host);
    let now = format!("{}.0", time::OffsetDateTime::now_utc().unix_timestamp());
    db.update(host, |h| {
        if let Some(Value::Map(m)) = h.get_mut("other_config") {
            m.retain(|(k, _)| k != "boot_time");
            m.push(("boot_time".into(), Value::str(now)));
        }
    });
}

/// `other_config:agent_start_time`, which XAPI sets when it starts (`dbsync_slave.ml`, `record_host_memory_properties`
/// and its neighbours) and clients watch to know a toolstack restart is done.
pub(crate) fn stamp_agent_start(db: &mut Db, host: &str) {
    let now = format!("{:.1}", time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9);
    db.update(host, |h| {
        if let Some(Value::Map(m)) = h.get_mut("other_config") {
            m.retain(|(k, _)| k != "agent_start_time");
            m.push(("agent_start_time".into(), Value::str(now)));
        }
    });
}

/// `host.power_on` (`Xapi_host.power_on` runs the host's `power_on_mode` plugin; `xapi_host_helpers.ml` allows it
/// on a host that is not live only): `HOST_IS_LIVE`, `HOST_POWER_ON_MODE_DISABLED`, else the host boots.
fn host_power_on(db: &mut Db, host: &str) -> R<Value> {
    let rec = obj(db, "host", host)?;
    if str_of(rec, "power_on_mode").is_empty() {
        return Err(XapiError::new("HOST_POWER_ON_MODE_DISABLED", &[]));
    }
    if is_live(db, host) {
        return Err(XapiError::new("HOST_IS_LIVE", &[host]));
    }
    boot_up(db, host, true);
    Ok(Value::str(""))
}

/// `host.restart_agent` (`Xapi_host.restart_agent`): the call returns, then the toolstack restarts; on the master
/// that drops every session and task (they are not persisted). The host's `agent_start_time` changes.
fn restart_agent(sim: &Arc<Sim>, host: &str) -> R<Value> {
    obj(&sim.db.lock(), "host", host)?;
    let is_master = master(&sim.db.lock()) == host;
    let (sim, host) = (sim.clone(), host.to_string());
    let delay = sim.host_boot() / 4;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if is_master {
            sim.restart_master();
        }
        sim.write(|db| stamp_agent_start(db, &host));
    });
    Ok(Value::str(""))
}

/// `pool.designate_new_master(host)` (`ocaml/xapi/xapi_pool.ml`, `designate_new_master`, and
/// `xapi_pool_transition.ml`, `attempt_two_phase_commit_of_new_master`): refused while HA is on
/// (`HA_IS_ENABLED`); a no-op on the master itself. Otherwise the call returns, then the master moves: both
/// toolstacks restart on the new roles, so every session and task is gone (they are not persisted), and the new
/// master posts `POOL_MASTER_TRANSITION` (`consider_sending_alert`).
fn designate_new_master(sim: &Arc<Sim>, host: &str) -> R<Value> {
    {
        let db = sim.db.lock();
        obj(&db, "host", host)?;
        let pool = db.all("pool").next().map(|(_, p)| p.clone()).unwrap_or_default();
        if bool_of(&pool, "ha_enabled") {
            return Err(XapiError::new("HA_IS_ENABLED", &[]));
        }
        if str_of(&pool, "master") == host {
            return Ok(Value::str(""));
        }
        if !is_live(&db, host) {
            return Err(XapiError::new("HOST_OFFLINE", &[host]));
        }
    }
    let (sim, host) = (sim.clone(), host.to_string());
    let delay = sim.host_boot() / 4;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        move_master(&sim, &host);
    });
    Ok(Value::str(""))
}

/// The master moves to `new` (a designation, or an HA failover): every session and task is gone, `pool.master`
/// names `new`, the toolstacks of the old and new master have a new start time, and the new master posts
/// `POOL_MASTER_TRANSITION` (`ocaml/xapi-consts/api_messages.ml`, priority 4).
pub fn move_master(sim: &Sim, new: &str) {
    sim.restart_master();
    sim.write(|db| {
        let old = master(db);
        let pool = db.all("pool").next().map(|(r, _)| r.clone());
        if let Some(pool) = pool {
            db.set(&pool, "master", Value::str(new));
        }
        for h in [old.as_str(), new] {
            if db.get_of("host", h).is_some() && is_live(db, h) {
                stamp_agent_start(db, h);
            }
        }
        let uuid = db.field_str(new, "uuid");
        let f = Fields::from([
            ("name".into(), Value::str("POOL_MASTER_TRANSITION")),
            ("priority".into(), Value::Int(4)),
            ("cls".into(), Value::str("Host")),
            ("obj_uuid".into(), Value::str(uuid)),
            ("body".into(), Value::str("")),
            ("timestamp".into(), Value::DateTime(now_datetime())),
        ]);
        db.create("message", f);
    });
}

/// An HA failover: the master dies (off the network, not live) and the first other live host takes over
/// (`ocaml/xapi/xapi_ha.ml`: the surviving hosts elect a master, which restarts as master): `new`, chosen by
/// [`failover_target`]. The VMs the dead host ran are left as they were.
pub fn fail_over(sim: &Sim, new: &str) {
    let old = master(&sim.db.lock());
    crate::pool_net::set_link(sim, &old, false);
    sim.write(|db| set_live(db, &old, false));
    move_master(sim, new);
}

/// The host an HA failover makes master: the first other live host by name.
pub fn failover_target(sim: &Sim) -> Option<String> {
    let db = sim.db.lock();
    let old = master(&db);
    let mut others: Vec<String> =
        db.all("host").map(|(r, _)| r.clone()).filter(|h| *h != old && is_live(&db, h)).collect();
    others.sort_by_key(|h| db.field_str(h, "name_label"));
    others.into_iter().next()
}

/// `host.management_reconfigure(pif)` / `pool.management_reconfigure(network)` (`Xapi_host.management_reconfigure`,
/// `Xapi_pool.management_reconfigure`): each PIF needs an IP configuration (`PIF_HAS_NO_NETWORK_CONFIGURATION`);
/// it becomes its host's management interface and the host's address follows.
fn management_reconfigure(db: &mut Db, pifs: &[String]) -> R<Value> {
    for pif in pifs {
        let rec = obj(db, "PIF", pif)?;
        if str_of(rec, "ip_configuration_mode") == "None" || str_of(rec, "ip_configuration_mode").is_empty() {
            return Err(XapiError::new("PIF_HAS_NO_NETWORK_CONFIGURATION", &[pif]));
        }
    }
    for pif in pifs {
        let host = db.field_str(pif, "host");
        let ip = db.field_str(pif, "IP");
        for other in refs_of(obj(db, "host", &host)?, "PIFs") {
            db.set(&other, "management", Value::Bool(&other == pif));
        }
        db.set(&host, "address", Value::str(ip));
    }
    Ok(Value::str(""))
}

/// Removes a host and what only it had: its PIFs and their metrics, PBDs, control domain and metrics; VMs whose
/// affinity it was lose it; SRs only it could see go.
fn remove_host(db: &mut Db, host: &str) {
    let rec = db.get(host).cloned().unwrap_or_default();
    for pif in refs_of(&rec, "PIFs") {
        let network = db.field_str(&pif, "network");
        db.set_remove(&network, "PIFs", &pif);
        let metrics = db.field_str(&pif, "metrics");
        db.destroy(&metrics);
        db.destroy(&pif);
    }
    let pbds: Vec<(String, String)> =
        db.all("PBD").filter(|(_, p)| str_of(p, "host") == host).map(|(r, p)| (r.clone(), str_of(p, "SR"))).collect();
    for (pbd, sr) in pbds {
        db.destroy(&pbd);
        let left = db.all("PBD").any(|(_, p)| str_of(p, "SR") == sr);
        if !left && db.get_of("SR", &sr).is_some_and(|s| !bool_of(s, "shared")) {
            forget_sr_records(db, &sr);
        }
    }
    let dom0 = str_of(&rec, "control_domain");
    if let Some(m) = db.get(&dom0).map(|d| str_of(d, "metrics")) {
        db.destroy(&m);
    }
    db.destroy(&dom0);
    let affine: Vec<String> =
        db.all("VM").filter(|(_, v)| str_of(v, "affinity") == host).map(|(r, _)| r.clone()).collect();
    for vm in affine {
        db.set(&vm, "affinity", Value::null_ref());
    }
    db.destroy(&str_of(&rec, "metrics"));
    db.destroy(host);
}

/// `pool.eject` (`Xapi_pool.eject`): not the master (`Cannot_eject_master`, an internal error), no guest running
/// there (`OPERATION_NOT_ALLOWED`); the host leaves the pool's database.
fn pool_eject(db: &mut Db, host: &str) -> R<Value> {
    obj(db, "host", host)?;
    if master(db) == host {
        return Err(XapiError::new("INTERNAL_ERROR", &["Xapi_pool.Cannot_eject_master"]));
    }
    if db.all("VM").any(|(_, v)| str_of(v, "resident_on") == host && !bool_of(v, "is_control_domain")) {
        return Err(XapiError::new("OPERATION_NOT_ALLOWED", &["VM resident on host"]));
    }
    remove_host(db, host);
    Ok(Value::str(""))
}

/// `host.destroy` (`Xapi_host.destroy`): only a host that is not live (`HOST_IS_LIVE`), not the master
/// (`HOST_CANNOT_DESTROY_SELF`) and without resident guests (`HOST_HAS_RESIDENT_VMS`).
fn host_destroy(db: &mut Db, host: &str) -> R<Value> {
    obj(db, "host", host)?;
    if master(db) == host {
        return Err(XapiError::new("HOST_CANNOT_DESTROY_SELF", &[host]));
    }
    if is_live(db, host) {
        return Err(XapiError::new("HOST_IS_LIVE", &[host]));
    }
    if !guests_on(db, host).is_empty() {
        return Err(XapiError::new("HOST_HAS_RESIDENT_VMS", &[host]));
    }
    remove_host(db, host);
    Ok(Value::str(""))
}

/// `host.call_plugin`, with the plugins of an XCP-ng host that XO calls (`xcp-ng-xapi-plugins`):
/// - `trim` / `do_trim` (`sr_uuid`): reclaims an SR's free space, `"True"`;
/// - `updater.py` / `check_update`: the packages yum would update, a JSON list (name, version, release, description,
///   changelog {date, author, description}, url, size, license), [`UPDATES`] on every host;
/// - `hyperthreading.py` / `get_hyperthreading`: `"true"` or `"false"` (the host's `cpu_info` `threads_per_core`
///   when set, else `"true"`).
///
/// Others answer XAPI's `XENAPI_MISSING_PLUGIN`, unknown functions `UNKNOWN_XENAPI_PLUGIN_FUNCTION`
/// (`ocaml/xapi/xapi_plugins.ml`, `call_plugin`).
fn call_plugin(db: &mut Db, host: &str, plugin: &str, function: &str, args: Option<&Value>) -> R<Value> {
    let rec = obj(db, "host", host)?.clone();
    let unknown = || Err(XapiError::new("UNKNOWN_XENAPI_PLUGIN_FUNCTION", &[function]));
    match plugin {
        "trim" if function != "do_trim" => return unknown(),
        "trim" => {}
        "updater.py" if function == "check_update" => return Ok(Value::str(UPDATES)),
        "hyperthreading.py" if function == "get_hyperthreading" => {
            let threads = rec.get("cpu_info").and_then(|m| m.get("threads_per_core")).map(arg_str);
            let on = threads.is_none_or(|t| t.parse::<u64>().map_or(true, |n| n > 1));
            return Ok(Value::str(if on { "true" } else { "false" }));
        }
        "updater.py" | "hyperthreading.py" => return unknown(),
        _ => return Err(XapiError::new("XENAPI_MISSING_PLUGIN", &[plugin])),
    }
    let uuid = args.and_then(|a| a.get("sr_uuid")).map(arg_str).unwrap_or_default();
    let sr = db.ref_by_uuid(&uuid).cloned().filter(|r| db.get_of("SR", r).is_some());
    let Some(sr) = sr else {
        return Err(XapiError::new("UUID_INVALID", &["SR", &uuid]));
    };
    if !sees(db, host, &sr) {
        return Err(XapiError::new("SR_HAS_NO_PBDS", &[&sr]));
    }
    Ok(Value::str("True"))
}

/// What the simulated updater plugin finds missing on every host: `check_update`'s JSON, as the plugin writes it
/// (`json.dumps` of a list of package objects).
pub const UPDATES: &str = r#"[{"name": "xapi-core", "version": "25.6.1", "release": "1.2.xcpng8.3", "description": "The xapi toolstack", "changelog": {"date": 1764547200, "author": "Simulated Packager <sim@example.invalid> - 25.6.1-1.2", "description": "- Fix a simulated bug"}, "url": "https://example.invalid/xapi", "size": 5421696, "license": "LGPL-2.1-or-later"}, {"name": "openssh", "version": "7.4p1", "release": "23.3.3.xcpng8.3", "description": "An open source implementation of SSH protocol version 2", "changelog": {"date": 1763942400, "author": "Simulated Packager <sim@example.invalid> - 7.4p1-23.3.3", "description": "- Fix a simulated CVE"}, "url": "http://www.openssh.com/portable.html", "size": 530132, "license": "BSD"}]"#;

/// `pool.create_VLAN_from_PIF` (`Xapi_pool.create_VLAN_from_PIF`, `Xapi_vlan.create_internal`): a tag in 0..=4094
/// (`VLAN_TAG_INVALID`), on a PIF that is not a VLAN already (`PIF_IS_VLAN`) and has none with this tag
/// (`PIF_VLAN_EXISTS`): a VLAN and its untagged PIF on every host, for each PIF of the tagged PIF's network.
fn create_vlan_from_pif(db: &mut Db, pif: &str, network: &str, tag: i64) -> R<Value> {
    let rec = obj(db, "PIF", pif)?.clone();
    obj(db, "network", network)?;
    if !(0..=4094).contains(&tag) {
        return Err(XapiError::new("VLAN_TAG_INVALID", &[&tag.to_string()]));
    }
    if int_of(&rec, "VLAN") >= 0 {
        return Err(XapiError::new("PIF_IS_VLAN", &[pif]));
    }
    let base_network = str_of(&rec, "network");
    let tagged: Vec<String> = refs_of(obj(db, "network", &base_network)?, "PIFs");
    for t in &tagged {
        let exists = db.all("VLAN").any(|(_, v)| &str_of(v, "tagged_PIF") == t && int_of(v, "tag") == tag);
        if exists {
            return Err(XapiError::new("PIF_VLAN_EXISTS", &[t]));
        }
    }
    let mut made = Vec::new();
    for t in tagged {
        let base = obj(db, "PIF", &t)?.clone();
        let host = str_of(&base, "host");
        let metrics = db.create("PIF_metrics", Fields::new());
        let untagged = db.create(
            "PIF",
            Fields::from([
                ("device".into(), Value::str(str_of(&base, "device"))),
                ("network".into(), Value::str(network)),
                ("host".into(), Value::str(host.clone())),
                ("MAC".into(), Value::str(str_of(&base, "MAC"))),
                ("MTU".into(), Value::Int(int_of(&base, "MTU"))),
                ("VLAN".into(), Value::Int(tag)),
                ("physical".into(), Value::Bool(false)),
                ("currently_attached".into(), Value::Bool(true)),
                ("ip_configuration_mode".into(), Value::str("None")),
                ("managed".into(), Value::Bool(true)),
                ("metrics".into(), Value::str(metrics)),
            ]),
        );
        let vlan = db.create(
            "VLAN",
            Fields::from([
                ("tagged_PIF".into(), Value::str(t.clone())),
                ("untagged_PIF".into(), Value::str(untagged.clone())),
                ("tag".into(), Value::Int(tag)),
            ]),
        );
        db.set(&untagged, "VLAN_master_of", Value::str(vlan.clone()));
        db.set_add(&t, "VLAN_slave_of", &vlan);
        db.set_add(&host, "PIFs", &untagged);
        db.set_add(network, "PIFs", &untagged);
        made.push(untagged);
    }
    Ok(Value::strs(made))
}

/// Destroys a PIF that is not physical, with its metrics, out of its host and network.
fn destroy_pif(db: &mut Db, pif: &str) {
    let (host, network, metrics) =
        (db.field_str(pif, "host"), db.field_str(pif, "network"), db.field_str(pif, "metrics"));
    db.set_remove(&host, "PIFs", pif);
    db.set_remove(&network, "PIFs", pif);
    db.destroy(&metrics);
    db.destroy(pif);
}

/// `VLAN.destroy` (`Xapi_vlan.destroy`): the untagged PIF goes with it (`PIF_IS_MANAGEMENT_INTERFACE` if it is one).
fn vlan_destroy(db: &mut Db, vlan: &str) -> R<Value> {
    let rec = obj(db, "VLAN", vlan)?.clone();
    let untagged = str_of(&rec, "untagged_PIF");
    if db.get(&untagged).is_some_and(|p| bool_of(p, "management")) {
        return Err(XapiError::new("PIF_IS_MANAGEMENT_INTERFACE", &[&untagged]));
    }
    db.set_remove(&str_of(&rec, "tagged_PIF"), "VLAN_slave_of", vlan);
    destroy_pif(db, &untagged);
    db.destroy(vlan);
    Ok(Value::str(""))
}

/// `Bond.create` (`Xapi_bond.create`): at least two members (`PIF_BOND_NEEDS_MORE_MEMBERS`), on one host
/// (`PIF_CANNOT_BOND_CROSS_HOST`), none bonded already (`PIF_ALREADY_BONDED`) nor a VLAN (`PIF_IS_VLAN`), a mode of
/// `bond_mode` (`ENUM_INVALID`): a bond master PIF on `network`, which takes over a member's management role.
fn bond_create(db: &mut Db, network: &str, members: &[String], mac: &str, mode: &str) -> R<Value> {
    obj(db, "network", network)?;
    if !matches!(mode, "balance-slb" | "active-backup" | "lacp") {
        return Err(XapiError::new("ENUM_INVALID", &["bond_mode", mode]));
    }
    if members.len() < 2 {
        return Err(XapiError::new("PIF_BOND_NEEDS_MORE_MEMBERS", &[]));
    }
    let mut host = None;
    for m in members {
        let rec = obj(db, "PIF", m)?;
        if !str_of(rec, "bond_slave_of").starts_with("OpaqueRef:NULL") && !str_of(rec, "bond_slave_of").is_empty() {
            return Err(XapiError::new("PIF_ALREADY_BONDED", &[m]));
        }
        if int_of(rec, "VLAN") >= 0 {
            return Err(XapiError::new("PIF_IS_VLAN", &[m]));
        }
        let h = str_of(rec, "host");
        if host.get_or_insert_with(|| h.clone()) != &h {
            return Err(XapiError::new("PIF_CANNOT_BOND_CROSS_HOST", &[]));
        }
    }
    let host = host.unwrap_or_default();
    let first = obj(db, "PIF", &members[0])?.clone();
    let n = db.all("Bond").count();
    let management = members.iter().any(|m| db.get(m).is_some_and(|p| bool_of(p, "management")));
    let metrics = db.create("PIF_metrics", Fields::new());
    let master_pif = db.create(
        "PIF",
        Fields::from([
            ("device".into(), Value::str(format!("bond{n}"))),
            ("network".into(), Value::str(network)),
            ("host".into(), Value::str(host.clone())),
            ("MAC".into(), Value::str(if mac.is_empty() { str_of(&first, "MAC") } else { mac.to_string() })),
            ("MTU".into(), Value::Int(int_of(&first, "MTU"))),
            ("VLAN".into(), Value::Int(-1)),
            ("currently_attached".into(), Value::Bool(true)),
            ("management".into(), Value::Bool(management)),
            ("ip_configuration_mode".into(), Value::str(if management { "Static" } else { "None" })),
            ("IP".into(), Value::str(if management { str_of(&first, "IP") } else { String::new() })),
            ("managed".into(), Value::Bool(true)),
            ("metrics".into(), Value::str(metrics)),
        ]),
    );
    let bond = db.create(
        "Bond",
        Fields::from([
            ("master".into(), Value::str(master_pif.clone())),
            ("slaves".into(), Value::strs(members.iter().cloned())),
            ("mode".into(), Value::str(mode)),
            ("primary_slave".into(), Value::str(members[0].clone())),
            ("links_up".into(), Value::Int(members.len() as i64)),
        ]),
    );
    db.set_add(&master_pif, "bond_master_of", &bond);
    for m in members {
        db.update(m, |p| {
            p.insert("bond_slave_of".into(), Value::str(bond.clone()));
            p.insert("management".into(), Value::Bool(false));
            p.insert("currently_attached".into(), Value::Bool(false));
        });
    }
    db.set_add(&host, "PIFs", &master_pif);
    db.set_add(network, "PIFs", &master_pif);
    Ok(Value::str(bond))
}

/// `Bond.destroy` (`Xapi_bond.destroy`): the members are released (the first takes the management role back) and
/// the bond's PIF goes.
fn bond_destroy(db: &mut Db, bond: &str) -> R<Value> {
    let rec = obj(db, "Bond", bond)?.clone();
    let master_pif = str_of(&rec, "master");
    let management = db.get(&master_pif).is_some_and(|p| bool_of(p, "management"));
    for (i, m) in refs_of(&rec, "slaves").iter().enumerate() {
        db.update(m, |p| {
            p.insert("bond_slave_of".into(), Value::null_ref());
            p.insert("currently_attached".into(), Value::Bool(true));
            p.insert("management".into(), Value::Bool(management && i == 0));
        });
    }
    destroy_pif(db, &master_pif);
    db.destroy(bond);
    Ok(Value::str(""))
}

/// `network.create` (`Xapi_network.create`): a record with `name_label` (required), and `name_description`, `MTU`
/// (default 1500, 68..=9216 else `MTU_RANGE`… answered `INVALID_VALUE` here), `other_config`, `tags`; a new bridge.
fn network_create(db: &mut Db, record: &Value) -> R<Value> {
    let Value::Map(m) = record else {
        return Err(XapiError::new("FIELD_TYPE_ERROR", &["args"]));
    };
    let get = |k: &str| m.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let name = get("name_label").ok_or_else(|| XapiError::new("FIELD_TYPE_ERROR", &["name_label"]))?;
    let mtu = get("MTU").map(|v| v.as_i64().or_else(|| arg_str(v).parse().ok()).unwrap_or(-1)).unwrap_or(1500);
    if !(68..=9216).contains(&mtu) {
        return Err(XapiError::new("MTU_RANGE", &[&mtu.to_string(), "68", "9216"]));
    }
    let n = db.all("network").count();
    let mut f = Fields::from([
        ("name_label".into(), Value::str(arg_str(name))),
        ("MTU".into(), Value::Int(mtu)),
        ("bridge".into(), Value::str(format!("xapi{n}"))),
        ("managed".into(), Value::Bool(true)),
    ]);
    for k in ["name_description", "other_config", "tags"] {
        if let Some(v) = get(k) {
            f.insert(k.into(), v.clone());
        }
    }
    Ok(Value::str(db.create("network", f)))
}

/// `network.destroy` (`Xapi_network.destroy`): not while a VIF on it is attached (`NETWORK_CONTAINS_VIF`) or a PIF
/// is on it (`NETWORK_CONTAINS_PIF`); its detached VIFs go with it.
fn network_destroy(db: &mut Db, network: &str) -> R<Value> {
    let rec = obj(db, "network", network)?.clone();
    let vifs = refs_of(&rec, "VIFs");
    let attached: Vec<String> =
        vifs.iter().filter(|v| db.get(v).is_some_and(|f| bool_of(f, "currently_attached"))).cloned().collect();
    if !attached.is_empty() {
        return Err(XapiError::new("NETWORK_CONTAINS_VIF", &attached.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    let pifs = refs_of(&rec, "PIFs");
    if !pifs.is_empty() {
        return Err(XapiError::new("NETWORK_CONTAINS_PIF", &pifs.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    for vif in vifs {
        crate::devices::vif_destroy(db, &vif)?;
    }
    db.destroy(network);
    Ok(Value::str(""))
}

/// What each SR type needs in its device config (the SM drivers' own checks: `NFSSR.py`, `ISOSR.py`, `LVMSR.py`,
/// `EXTSR.py` of xapi-project/sm, which answer `SR_BACKEND_FAILURE_<n>`).
fn device_config_errors(ty: &str, config: &[(String, Value)]) -> Option<XapiError> {
    let has = |k: &str| config.iter().any(|(key, v)| key == k && !arg_str(v).is_empty());
    let missing = |code: &str, what: &str| Some(XapiError::new(code, &["", what, ""]));
    match ty {
        "nfs" if !has("server") => missing("SR_BACKEND_FAILURE_37", "The NFS server was not specified"),
        "nfs" if !has("serverpath") => missing("SR_BACKEND_FAILURE_38", "The NFS server path was not specified"),
        "iso" if !has("location") => missing("SR_BACKEND_FAILURE_77", "The ISO location was not specified"),
        "lvm" | "ext" if !has("device") => {
            missing("SR_BACKEND_FAILURE_90", "The request is missing the device parameter")
        }
        _ => None,
    }
}

/// The SM drivers the simulated hosts have (`SR_UNKNOWN_DRIVER` for others, `Sm.supported_drivers`).
const DRIVERS: &[&str] = &["nfs", "iso", "lvm", "ext", "file", "smb", "lvmoiscsi", "lvmohba", "udev", "dummy"];

/// `SR.create(host, device_config, physical_size, name_label, name_description, type, content_type, shared,
/// sm_config)` (`Xapi_sr.create`): a PBD per host when shared (the master first), else on `host` only; the SR record
/// is removed again when the driver refuses; then every PBD is plugged.
fn sr_create(db: &mut Db, args: &[Value]) -> R<Value> {
    let host = arg_str(&args[0]);
    obj(db, "host", &host)?;
    let config: Vec<(String, Value)> = args[1].as_map().map(<[_]>::to_vec).unwrap_or_default();
    let size = args[2].as_i64().or_else(|| arg_str(&args[2]).parse().ok()).unwrap_or(0);
    let ty = arg_str(&args[5]);
    let shared = args[7].as_bool().unwrap_or(false);
    if !DRIVERS.contains(&ty.as_str()) {
        return Err(XapiError::new("SR_UNKNOWN_DRIVER", &[&ty]));
    }
    if let Some(e) = device_config_errors(&ty, &config) {
        return Err(e);
    }
    let content_type = arg_str(&args[6]);
    let physical_size = match ty.as_str() {
        "lvm" | "ext" => size.max(100 << 30),
        "iso" => 0,
        _ => 2 << 40,
    };
    let sr = db.create(
        "SR",
        Fields::from([
            ("name_label".into(), Value::str(arg_str(&args[3]))),
            ("name_description".into(), Value::str(arg_str(&args[4]))),
            ("type".into(), Value::str(ty.clone())),
            ("content_type".into(), Value::str(content_type)),
            ("shared".into(), Value::Bool(shared)),
            ("sm_config".into(), args[8].clone()),
            ("physical_size".into(), Value::Int(physical_size)),
            ("allowed_operations".into(), Value::strs(["vdi_create", "vdi_destroy", "scan", "destroy", "forget"])),
        ]),
    );
    let hosts: Vec<String> = if shared {
        let m = master(db);
        std::iter::once(m.clone()).chain(db.all("host").map(|(r, _)| r.clone()).filter(|h| *h != m)).collect()
    } else {
        vec![host]
    };
    let config = Value::Map(config);
    for h in hosts {
        let live = is_live(db, &h);
        let p = db.create(
            "PBD",
            Fields::from([
                ("host".into(), Value::str(h.clone())),
                ("SR".into(), Value::str(sr.clone())),
                ("device_config".into(), config.clone()),
                ("currently_attached".into(), Value::Bool(live)),
            ]),
        );
        db.set_add(&sr, "PBDs", &p);
        db.set_add(&h, "PBDs", &p);
    }
    Ok(Value::str(sr))
}

/// The SR's records go (its VDIs with their VBDs, PBDs, the SR), as `Xapi_sr.really_forget` does.
fn forget_sr_records(db: &mut Db, sr: &str) {
    let vdis: Vec<String> = db.all("VDI").filter(|(_, v)| str_of(v, "SR") == sr).map(|(r, _)| r.clone()).collect();
    for vdi in vdis {
        let vbds = db.get(&vdi).map(|v| refs_of(v, "VBDs")).unwrap_or_default();
        for vbd in vbds {
            let vm = db.field_str(&vbd, "VM");
            db.set_remove(&vm, "VBDs", &vbd);
            db.destroy(&vbd);
        }
        db.destroy(&vdi);
    }
    let pbds: Vec<(String, String)> =
        db.all("PBD").filter(|(_, p)| str_of(p, "SR") == sr).map(|(r, p)| (r.clone(), str_of(p, "host"))).collect();
    for (pbd, host) in pbds {
        db.set_remove(&host, "PBDs", &pbd);
        db.destroy(&pbd);
    }
    db.destroy(sr);
}

/// `SR.destroy` / `SR.forget` (`message_forwarding.ml`, `SR.destroy`/`forget`: `Xapi_sr.assert_all_pbds_unplugged`
/// (`SR_HAS_PBD`), `assert_sr_not_indestructible`; then `really_forget`). A destroy also deletes the VDIs' data;
/// a forget leaves it on the storage, which the simulator does not keep apart.
fn sr_remove(db: &mut Db, sr: &str, destroy: bool) -> R<Value> {
    let rec = obj(db, "SR", sr)?;
    if db.all("PBD").any(|(_, p)| str_of(p, "SR") == sr && bool_of(p, "currently_attached")) {
        return Err(XapiError::new("SR_HAS_PBD", &[sr]));
    }
    if destroy && rec.get("other_config").and_then(|o| o.get("indestructible")).map(arg_str).as_deref() == Some("true")
    {
        return Err(XapiError::new("SR_INDESTRUCTIBLE", &[sr]));
    }
    forget_sr_records(db, sr);
    Ok(Value::str(""))
}

/// `SR.scan` (`Xapi_sr.scan`, forwarded to a host with the SR plugged: `SR_HAS_NO_PBDS` when none is): the SR's
/// usage is recomputed from its VDIs.
fn sr_scan(db: &mut Db, sr: &str) -> R<Value> {
    obj(db, "SR", sr)?;
    if !db.all("PBD").any(|(_, p)| str_of(p, "SR") == sr && bool_of(p, "currently_attached")) {
        return Err(XapiError::new("SR_HAS_NO_PBDS", &[sr]));
    }
    let used: i64 =
        db.all("VDI").filter(|(_, v)| str_of(v, "SR") == sr).map(|(_, v)| int_of(v, "physical_utilisation")).sum();
    let allocated: i64 =
        db.all("VDI").filter(|(_, v)| str_of(v, "SR") == sr).map(|(_, v)| int_of(v, "virtual_size")).sum();
    db.update(sr, |s| {
        s.insert("physical_utilisation".into(), Value::Int(used));
        s.insert("virtual_allocation".into(), Value::Int(allocated));
    });
    Ok(Value::str(""))
}

/// `PBD.plug` / `PBD.unplug` (`Xapi_pbd.plug`, `unplug`): the host must be live (`HOST_OFFLINE`); an unplug is
/// refused while a running VM on that host uses one of the SR's VDIs (`VDI_IN_USE`, naming them). Plugging a
/// plugged PBD or unplugging an unplugged one does nothing, as in XAPI.
fn pbd_plug(db: &mut Db, pbd: &str, plug: bool) -> R<Value> {
    let rec = obj(db, "PBD", pbd)?.clone();
    let (host, sr) = (str_of(&rec, "host"), str_of(&rec, "SR"));
    if !is_live(db, &host) {
        return Err(XapiError::new("HOST_OFFLINE", &[&host]));
    }
    if bool_of(&rec, "currently_attached") == plug {
        return Ok(Value::str(""));
    }
    if !plug {
        let mut in_use = Vec::new();
        for (vdi, v) in db.all("VDI").filter(|(_, v)| str_of(v, "SR") == sr) {
            let used = refs_of(v, "VBDs").iter().any(|vbd| {
                db.get(vbd).is_some_and(|b| {
                    bool_of(b, "currently_attached") && db.field_str(&str_of(b, "VM"), "resident_on") == host
                })
            });
            if used {
                in_use.push(vdi.clone());
            }
        }
        if !in_use.is_empty() {
            return Err(XapiError::new("VDI_IN_USE", &in_use.iter().map(String::as_str).collect::<Vec<_>>()));
        }
    }
    db.set(pbd, "currently_attached", Value::Bool(plug));
    Ok(Value::str(""))
}
