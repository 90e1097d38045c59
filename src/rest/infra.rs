//! The infrastructure's actions (hosts, pools, SRs): their parameters, the states that forbid them (checked before
//! anything is done: 409 with XAPI's code, naming the VMs in the way), and what each does: one XAPI call, or a
//! [plan](super::plans) of several. Their rows are in [`super::actions::ACTIONS`]. Also the deletion of SRs and
//! networks, which are plans' steps run before the answer.

use super::auth::Caller;
use super::collections::find;
use super::plans::{self, call, progress, task, Outcome};
use super::Ctx;
use crate::error::ApiError;
use crate::objects;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Map, Value};

/// An infrastructure action's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `host.disable`, and with `evacuate` the host's VMs moved away (a plan).
    HostDisable,
    /// Disable, evacuate (unless `bypassEvacuate`), then this XAPI call (`host.reboot`, `host.shutdown`): a plan.
    HostPowerOff(&'static str),
    /// Suspend the host's VMs in place, reboot, resume them: a plan.
    SmartReboot,
    /// Disable the host, suspend its VMs (errors ignored), shut it down: a plan.
    HostEmergency,
    /// [`Op::HostEmergency`] for every host, the master last.
    PoolEmergency,
    /// `host.management_reconfigure(pif)` with `{pif}`.
    HostPif,
    /// `pool.management_reconfigure(network)` with `{network}`.
    PoolNetwork,
    /// XCP-ng's `trim` plugin on a host that has the SR plugged.
    Trim,
    /// Unplug the SR's PBDs, then `SR.forget` (plugged back if it fails): a plan.
    SrForget,
    /// A network with a VLAN on a PIF's network: a plan.
    CreateNetwork,
    /// A network with a bond on each host: a plan.
    CreateBondedNetwork,
    /// A network with no PIF: a plan.
    CreateInternalNetwork,
    /// A VM from a template ([`super::create_vm`]): a plan.
    CreateVm,
    /// Not offered by the edge: 501 with the reason and what to do instead.
    Unavailable(&'static str),
}

/// What the body asks, ready to run.
#[derive(Debug)]
pub enum Prepared {
    /// One XAPI call (`Async.<method>`), with its arguments after the session.
    Call(&'static str, Vec<Value>),
    /// A plan, its task named `label`.
    Plan { label: String, steps: Steps },
}

/// A plan's steps, with the refs they act on.
#[derive(Debug)]
pub enum Steps {
    /// Disable `host` (`auto_enable` off when asked), evacuate it (VMs in `unblock` migrate despite a blocked
    /// `pool_migrate`), then `then` (`host.reboot`/`host.shutdown`). A failed evacuation enables the host again and
    /// fails, unless `force`.
    Clear {
        host: String,
        auto_enable_off: bool,
        evacuate: bool,
        force: bool,
        unblock: Vec<String>,
        then: Option<&'static str>,
    },
    /// XO's smart reboot: disable, suspend the running VMs (clean shutdown, then hard, when they cannot be), reboot,
    /// wait for the host, resume them there. `unblock`: VMs whose blocked `suspend` is lifted meanwhile.
    SmartReboot { host: String, unblock: Vec<(String, String)> },
    /// An emergency shutdown of each host in turn.
    Emergency { hosts: Vec<String> },
    /// Unplug the SR's PBDs and `SR.forget` (or `SR.destroy`).
    SrRemove { sr: String, destroy: bool },
    /// `network.create`, then NBD, a VLAN on each host of `vlan`'s PIF network, or a bond per member group.
    Network { record: Value, nbd: bool, vlan: Option<(String, i64)>, bonds: Vec<Vec<String>>, mode: String },
    /// A VM from a template.
    CreateVm(Box<super::create_vm::Spec>),
}

/// The body's properties and required ones, as JSON Schema pieces.
pub fn schema(op: Op) -> (Value, Vec<&'static str>) {
    let b = |d: &str| json!({ "type": "boolean", "description": d });
    let network = |extra: Value| {
        let mut p = json!({
            "name": { "type": "string" },
            "description": { "type": "string" },
            "mtu": { "type": "integer", "default": 1500 },
            "nbd": { "type": "boolean", "description": "open the network to NBD clients" },
        });
        if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p
    };
    let unused = "accepted for XO compatibility; the edge runs no backup jobs";
    match op {
        Op::HostDisable => (
            json!({
                "autoEnable": b("enable the host again when its toolstack restarts (default true)"),
                "evacuate": b("also move its running VMs to other hosts"),
                "force": b("with evacuate: keep the host disabled even if some VMs could not move"),
                "vmIdsToForceMigrate": { "type": "array", "items": { "type": "string" },
                    "description": "VMs to migrate although their pool_migrate is blocked" },
            }),
            vec![],
        ),
        Op::HostPowerOff(_) => (
            json!({
                "bypassEvacuate": b("do not move the running VMs away first (refused while VMs run, unless force)"),
                "force": b("go on even if VMs could not be moved: XAPI then shuts them down"),
                "bypassBackupCheck": b(unused),
                "bypassVersionCheck": b("accepted for XO compatibility; XAPI checks versions itself"),
            }),
            vec![],
        ),
        Op::SmartReboot => (
            json!({
                "bypassBlockedSuspend": b("suspend VMs whose suspend is blocked (the block is put back)"),
                "bypassCurrentVmCheck": b("accepted for XO compatibility; the edge does not run in a VM of the pool"),
                "bypassBackupCheck": b(unused),
                "bypassVersionCheck": b("accepted for XO compatibility; XAPI checks versions itself"),
            }),
            vec![],
        ),
        Op::HostPif => (json!({ "pif": { "type": "string", "description": "a PIF of this host" } }), vec!["pif"]),
        Op::PoolNetwork => (json!({ "network": { "type": "string" } }), vec!["network"]),
        Op::CreateNetwork => (
            network(json!({
                "pif": { "type": "string", "description": "the PIF whose network carries the VLAN (on every host)" },
                "vlan": { "type": "integer", "minimum": 0, "maximum": 4094 },
            })),
            vec!["name", "pif", "vlan"],
        ),
        Op::CreateBondedNetwork => (
            network(json!({
                "pifIds": { "type": "array", "items": { "type": "string" },
                    "description": "PIFs to bond; their networks' PIFs are bonded on every host" },
                "bondMode": { "type": "string", "enum": ["balance-slb", "active-backup", "lacp"] },
            })),
            vec!["name", "pifIds", "bondMode"],
        ),
        Op::CreateInternalNetwork => (network(json!({})), vec!["name"]),
        Op::Unavailable("add_host") => (json!({ "host": { "type": "string" }, "force": b("") }), vec!["host"]),
        Op::Unavailable(_) => (json!({ "shutdownPinnedVms": b("") }), vec![]),
        Op::CreateVm => super::create_vm::schema(),
        Op::HostEmergency | Op::PoolEmergency | Op::Trim | Op::SrForget => (json!({}), vec![]),
    }
}

/// Why the unavailable actions are not offered, and what to use instead.
pub fn unavailable(name: &str) -> ApiError {
    let (why, instead) = match name {
        "add_host" => (
            "a host joins a pool from its own XAPI (pool.join, with this pool's master credentials): the edge talks to \
             this pool only and keeps no credentials",
            "run `xe pool-join` on the joining host, or XO",
        ),
        "rolling_update" => (
            "updating hosts needs update repositories and runs for hours, longer than an edge instance lives",
            "update each host (yum update, or XO), then reboot the hosts one by one as for rolling_reboot",
        ),
        _ => (
            "a rolling reboot runs for as long as all hosts take to reboot, one after the other, and must survive the \
             master's own reboot, which ends every XAPI session: a stateless edge cannot carry it",
            "for each host, the master last: POST …/hosts/<id>/actions/clean_reboot (which evacuates it, reboots it; \
             it comes back enabled), wait until GET /rest/v0/hosts/<id> shows it enabled, then the next one",
        ),
    };
    ApiError::new(501, format!("{name} is not offered by xo-edge: {why}"))
        .with_data(json!({ "code": "NOT_IMPLEMENTED", "params": [name], "instead": instead }))
}

fn collection(name: &str) -> Result<&'static objects::Collection, ApiError> {
    objects::collection(name).ok_or_else(|| ApiError::internal(format!("collection {name} missing")))
}

fn xapi(e: XapiError) -> ApiError {
    e.to_api_error()
}

/// The guests on `host` (not its control domain) that are not halted: `(ref, record)`.
async fn guests<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, host: &str) -> Result<Vec<(String, Value)>, XapiError> {
    let expr = format!(r#"field "resident_on"="{host}" and field "is_control_domain"="false""#);
    let all = call(ctx, s, "VM.get_all_records_where", &[json!(expr)]).await?;
    Ok(all
        .as_object()
        .map(|m| m.iter().filter(|(_, v)| v["power_state"] != "Halted").map(|(r, v)| (r.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// `name (uuid)` of each VM record, for messages.
fn named(vms: &[(String, Value)]) -> String {
    vms.iter()
        .map(|(_, v)| {
            format!("{} ({})", v["name_label"].as_str().unwrap_or_default(), v["uuid"].as_str().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// 409 when XAPI says VMs would stop the host's evacuation (`host.get_vms_which_prevent_evacuation`), naming them
/// and XAPI's reason for each; `unblock`ed VMs' blocked migration does not count.
async fn assert_evacuable<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    host: &str,
    unblock: &[String],
) -> Result<(), ApiError> {
    let blockers = call(ctx, s, "host.get_vms_which_prevent_evacuation", &[json!(host)]).await.map_err(xapi)?;
    let mut in_the_way = Vec::new();
    let mut reasons = Map::new();
    for (vm, why) in blockers.as_object().into_iter().flatten() {
        if unblock.contains(vm) && why[0] == "OPERATION_BLOCKED" {
            continue;
        }
        let rec = call(ctx, s, "VM.get_record", &[json!(vm)]).await.map_err(xapi)?;
        reasons.insert(rec["uuid"].as_str().unwrap_or_default().to_string(), why.clone());
        in_the_way.push((vm.clone(), rec));
    }
    if in_the_way.is_empty() {
        return Ok(());
    }
    let params: Vec<String> = in_the_way.iter().map(|(r, _)| r.clone()).collect();
    Err(ApiError::new(
        409,
        format!(
            "the host cannot be evacuated: these VMs cannot move: {} (see data.vms; force goes on)",
            named(&in_the_way)
        ),
    )
    .with_data(json!({ "code": "CANNOT_EVACUATE_HOST", "params": params, "vms": reasons })))
}

/// Resolves `ids` (uuids in `coll`) to refs; 404 naming the first unknown.
async fn refs_of<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    coll: &str,
    ids: &[Value],
) -> Result<Vec<(String, Value)>, ApiError> {
    let mut out = Vec::new();
    for id in ids.iter().filter_map(Value::as_str) {
        out.push(find(ctx, caller, collection(coll)?, id).await?);
    }
    Ok(out)
}

/// Checks the state and resolves the body of `op` on the object `reference` (`rec`).
pub async fn prepare<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    op: Op,
    name: &str,
    reference: &str,
    rec: &Value,
    body: &Value,
) -> Result<Prepared, ApiError> {
    let s = json!(caller.session);
    let flag = |k: &str| body[k] == json!(true);
    let label = |what: &str| format!("{what} {} (xo-edge)", rec["name_label"].as_str().unwrap_or_default());
    match op {
        Op::Unavailable(n) => Err(unavailable(n)),
        Op::CreateVm => {
            let spec = super::create_vm::prepare(ctx, caller, rec, body).await?;
            let name = body["name_label"].as_str().unwrap_or_default();
            Ok(Prepared::Plan { label: format!("create VM {name} (xo-edge)"), steps: Steps::CreateVm(Box::new(spec)) })
        }
        Op::HostDisable if !flag("evacuate") => {
            let mut args = vec![json!(reference)];
            if body["autoEnable"] == json!(false) {
                args.push(json!(false));
            }
            Ok(Prepared::Call("host.disable", args))
        }
        Op::HostDisable => {
            let ids = body["vmIdsToForceMigrate"].as_array().cloned().unwrap_or_default();
            let unblock: Vec<String> = refs_of(ctx, caller, "vms", &ids).await?.into_iter().map(|(r, _)| r).collect();
            if !flag("force") {
                assert_evacuable(ctx, &s, reference, &unblock).await?;
            }
            let steps = Steps::Clear {
                host: reference.to_string(),
                auto_enable_off: body["autoEnable"] == json!(false),
                evacuate: true,
                force: flag("force"),
                unblock,
                then: None,
            };
            Ok(Prepared::Plan { label: label("disable and evacuate"), steps })
        }
        Op::HostPowerOff(then) => {
            let evacuate = !flag("bypassEvacuate");
            if !flag("force") {
                if evacuate {
                    assert_evacuable(ctx, &s, reference, &[]).await?;
                } else {
                    let running = guests(ctx, &s, reference).await.map_err(xapi)?;
                    if !running.is_empty() {
                        let mut params = vec![reference.to_string(), "vm".to_string()];
                        params.extend(running.iter().map(|(r, _)| r.clone()));
                        let uuids: Vec<&Value> = running.iter().map(|(_, v)| &v["uuid"]).collect();
                        return Err(ApiError::new(
                            409,
                            format!(
                                "VMs run on this host: {}; evacuate it (the default), stop them, or force (XAPI then \
                                 shuts them down)",
                                named(&running)
                            ),
                        )
                        .with_data(json!({ "code": "HOST_IN_USE", "params": params, "vms": uuids })));
                    }
                }
            }
            let steps = Steps::Clear {
                host: reference.to_string(),
                auto_enable_off: false,
                evacuate,
                force: flag("force"),
                unblock: vec![],
                then: Some(then),
            };
            Ok(Prepared::Plan { label: label(name), steps })
        }
        Op::SmartReboot => {
            let pool = call(ctx, &s, "pool.get_all_records", &[]).await.map_err(xapi)?;
            if pool.as_object().into_iter().flatten().any(|(_, p)| p["master"] == json!(reference)) {
                return Err(ApiError::new(
                    409,
                    "a smart reboot of the pool master cannot resume its VMs: the master's reboot ends every XAPI \
                     session, the edge's too. Suspend its VMs, clean_reboot it, then resume them",
                )
                .with_data(json!({ "code": "HOST_IS_MASTER", "params": [reference] })));
            }
            let running = guests(ctx, &s, reference).await.map_err(xapi)?;
            let blocked: Vec<(String, Value)> =
                running.into_iter().filter(|(_, v)| v["blocked_operations"].get("suspend").is_some()).collect();
            if !blocked.is_empty() && !flag("bypassBlockedSuspend") {
                let params: Vec<&String> = blocked.iter().map(|(r, _)| r).collect();
                return Err(ApiError::new(
                    409,
                    format!(
                        "suspend is blocked on VMs of this host: {} (bypassBlockedSuspend goes on)",
                        named(&blocked)
                    ),
                )
                .with_data(json!({ "code": "OPERATION_BLOCKED", "params": params })));
            }
            let unblock = blocked
                .iter()
                .map(|(r, v)| (r.clone(), v["blocked_operations"]["suspend"].as_str().unwrap_or_default().to_string()))
                .collect();
            Ok(Prepared::Plan {
                label: label("smart reboot"),
                steps: Steps::SmartReboot { host: reference.into(), unblock },
            })
        }
        Op::HostEmergency => Ok(Prepared::Plan {
            label: label("emergency shutdown"),
            steps: Steps::Emergency { hosts: vec![reference.to_string()] },
        }),
        Op::PoolEmergency => {
            let master = rec["master"].as_str().unwrap_or_default().to_string();
            let all = call(ctx, &s, "host.get_all", &[]).await.map_err(xapi)?;
            let mut hosts: Vec<String> = all
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|h| *h != master)
                .map(str::to_string)
                .collect();
            hosts.push(master);
            Ok(Prepared::Plan { label: label("emergency shutdown"), steps: Steps::Emergency { hosts } })
        }
        Op::HostPif => {
            let (pif, pif_rec) =
                find(ctx, caller, collection("pifs")?, body["pif"].as_str().unwrap_or_default()).await?;
            if pif_rec["host"] != json!(reference) {
                return Err(ApiError::bad_request("the PIF is not one of this host's"));
            }
            Ok(Prepared::Call("host.management_reconfigure", vec![json!(pif)]))
        }
        Op::PoolNetwork => {
            let id = body["network"].as_str().unwrap_or_default();
            let (network, _) = find(ctx, caller, collection("networks")?, id).await?;
            Ok(Prepared::Call("pool.management_reconfigure", vec![json!(network)]))
        }
        Op::Trim => {
            let expr = format!(r#"field "SR"="{reference}" and field "currently_attached"="true""#);
            let pbds = call(ctx, &s, "PBD.get_all_records_where", &[json!(expr)]).await.map_err(xapi)?;
            let host =
                pbds.as_object().and_then(|m| m.values().next()).and_then(|p| p["host"].as_str()).map(str::to_string);
            let Some(host) = host else {
                return Err(ApiError::new(409, "the SR is plugged on no host")
                    .with_data(json!({ "code": "SR_HAS_NO_PBDS", "params": [reference] })));
            };
            let args = vec![json!(host), json!("trim"), json!("do_trim"), json!({ "sr_uuid": rec["uuid"] })];
            Ok(Prepared::Call("host.call_plugin", args))
        }
        Op::SrForget => Ok(Prepared::Plan {
            label: label("forget"),
            steps: Steps::SrRemove { sr: reference.to_string(), destroy: false },
        }),
        Op::CreateNetwork | Op::CreateBondedNetwork | Op::CreateInternalNetwork => {
            let mtu = body.get("mtu").map_or(Some(1500), Value::as_i64).filter(|m| (68..=9216).contains(m));
            let Some(mtu) = mtu else {
                return Err(ApiError::bad_request("mtu must be an integer from 68 to 9216"));
            };
            let record = json!({
                "name_label": body["name"],
                "name_description": body["description"].as_str().unwrap_or_default(),
                "MTU": mtu,
                "other_config": { "automatic": "false" },
            });
            let mut vlan = None;
            let mut bonds = Vec::new();
            let mode = body["bondMode"].as_str().unwrap_or_default().to_string();
            if op == Op::CreateNetwork {
                let tag = body["vlan"].as_i64().filter(|t| (0..=4094).contains(t)).ok_or_else(|| {
                    ApiError::bad_request("vlan must be an integer from 0 to 4094")
                        .with_data(json!({ "code": "VLAN_TAG_INVALID", "params": [body["vlan"]] }))
                })?;
                let (pif, _) = find(ctx, caller, collection("pifs")?, body["pif"].as_str().unwrap_or_default()).await?;
                vlan = Some((pif, tag));
            }
            if op == Op::CreateBondedNetwork {
                if !["balance-slb", "active-backup", "lacp"].contains(&mode.as_str()) {
                    return Err(ApiError::bad_request("bondMode must be balance-slb, active-backup or lacp"));
                }
                let ids = body["pifIds"].as_array().cloned().unwrap_or_default();
                // As XO: each named PIF stands for its network, whose PIFs are bonded on every host.
                let mut by_host: Vec<(String, Vec<String>)> = Vec::new();
                for (_, pif) in refs_of(ctx, caller, "pifs", &ids).await? {
                    let network = pif["network"].as_str().unwrap_or_default();
                    let members = call(ctx, &s, "network.get_PIFs", &[json!(network)]).await.map_err(xapi)?;
                    for m in members.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        let host = call(ctx, &s, "PIF.get_host", &[json!(m)]).await.map_err(xapi)?;
                        let host = host.as_str().unwrap_or_default().to_string();
                        match by_host.iter_mut().find(|(h, _)| *h == host) {
                            Some((_, group)) if !group.iter().any(|g| g == m) => group.push(m.to_string()),
                            Some(_) => {}
                            None => by_host.push((host, vec![m.to_string()])),
                        }
                    }
                }
                bonds = by_host.into_iter().map(|(_, g)| g).collect();
            }
            let steps = Steps::Network { record, nbd: flag("nbd"), vlan, bonds, mode };
            Ok(Prepared::Plan {
                label: format!("{name} {} (xo-edge)", body["name"].as_str().unwrap_or_default()),
                steps,
            })
        }
    }
}

impl Steps {
    /// The collection of what the steps make, if anything.
    pub fn makes(&self) -> Option<&'static str> {
        match self {
            Steps::Network { .. } => Some("networks"),
            Steps::CreateVm(_) => Some("vms"),
            _ => None,
        }
    }

    /// Runs the steps under the plan's task `plan`.
    pub async fn run<T: Transport>(&self, ctx: &Ctx<'_, T>, s: &Value, plan: &str) -> Outcome {
        match self {
            Steps::Clear { host, auto_enable_off, evacuate, force, unblock, then } => {
                let h = json!(host);
                let mut args = vec![h.clone()];
                if *auto_enable_off {
                    args.push(json!(false));
                }
                call(ctx, s, "host.disable", &args).await?;
                progress(ctx, s, plan, 0.1).await;
                if *evacuate {
                    let lifted = lift_blocks(ctx, s, unblock, &["pool_migrate", "migrate_send"]).await;
                    let evacuated = task(ctx, s, "host.evacuate", std::slice::from_ref(&h)).await;
                    restore_blocks(ctx, s, &lifted).await;
                    if let Err(e) = evacuated {
                        if !force {
                            let _ = call(ctx, s, "host.enable", &[h]).await;
                            return Err(e);
                        }
                    }
                    progress(ctx, s, plan, 0.7).await;
                }
                if let Some(then) = then {
                    task(ctx, s, then, &[h]).await?;
                }
                Ok(None)
            }
            Steps::SmartReboot { host, unblock } => smart_reboot(ctx, s, plan, host, unblock).await,
            Steps::CreateVm(spec) => super::create_vm::run(ctx, s, plan, spec).await,
            Steps::Emergency { hosts } => {
                for (i, host) in hosts.iter().enumerate() {
                    let h = json!(host);
                    let _ = call(ctx, s, "host.disable", std::slice::from_ref(&h)).await;
                    for (vm, _) in guests(ctx, s, host).await? {
                        let _ = task(ctx, s, "VM.suspend", &[json!(vm)]).await;
                    }
                    task(ctx, s, "host.shutdown", &[h]).await?;
                    progress(ctx, s, plan, (i + 1) as f64 / hosts.len() as f64).await;
                }
                Ok(None)
            }
            Steps::SrRemove { sr, destroy } => remove_sr(ctx, s, sr, *destroy).await.map(|()| None),
            Steps::Network { record, nbd, vlan, bonds, mode } => {
                let net = call(ctx, s, "network.create", std::slice::from_ref(record)).await?;
                let net = net.as_str().unwrap_or_default().to_string();
                let n = json!(net);
                let built: Result<(), XapiError> = async {
                    if *nbd {
                        call(ctx, s, "network.add_purpose", &[n.clone(), json!("nbd")]).await?;
                    }
                    if let Some((pif, tag)) = vlan {
                        task(ctx, s, "pool.create_VLAN_from_PIF", &[json!(pif), n.clone(), json!(tag)]).await?;
                    }
                    for group in bonds {
                        // Four arguments: `properties` has a default (XAPI older than it accepts the call).
                        task(ctx, s, "Bond.create", &[n.clone(), json!(group), json!(""), json!(mode)]).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = built {
                    // Nothing half-made stays: the VLANs and bonds made so far, then the network.
                    let _ = dismantle(ctx, s, &net).await;
                    let _ = call(ctx, s, "network.destroy", &[n]).await;
                    return Err(e);
                }
                Ok(Some(net))
            }
        }
    }
}

/// Removes `ops` from the VMs' `blocked_operations`; answers what was lifted, to put back.
async fn lift_blocks<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    vms: &[String],
    ops: &[&str],
) -> Vec<(String, String, String)> {
    let mut lifted = Vec::new();
    for vm in vms {
        let Ok(blocked) = call(ctx, s, "VM.get_blocked_operations", &[json!(vm)]).await else { continue };
        for op in ops {
            if let Some(reason) = blocked.get(*op).and_then(Value::as_str) {
                if call(ctx, s, "VM.remove_from_blocked_operations", &[json!(vm), json!(op)]).await.is_ok() {
                    lifted.push((vm.clone(), op.to_string(), reason.to_string()));
                }
            }
        }
    }
    lifted
}

async fn restore_blocks<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, lifted: &[(String, String, String)]) {
    for (vm, op, reason) in lifted {
        let _ = call(ctx, s, "VM.add_to_blocked_operations", &[json!(vm), json!(op), json!(reason)]).await;
    }
}

/// How long a smart reboot waits for the host to come back, in seconds.
const BOOT_MAX: u64 = 30 * 60;

async fn smart_reboot<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    plan: &str,
    host: &str,
    unblock: &[(String, String)],
) -> Outcome {
    let h = json!(host);
    call(ctx, s, "host.disable", std::slice::from_ref(&h)).await?;
    let vms: Vec<String> = unblock.iter().map(|(v, _)| v.clone()).collect();
    let lifted = lift_blocks(ctx, s, &vms, &["suspend"]).await;
    let mut suspended = Vec::new();
    let mut failure = None;
    for (vm, rec) in guests(ctx, s, host).await? {
        let v = json!(vm);
        if rec["power_state"] == "Suspended" {
            continue;
        }
        if task(ctx, s, "VM.suspend", std::slice::from_ref(&v)).await.is_ok() {
            suspended.push(vm);
            continue;
        }
        // As XO: a VM that cannot be suspended is shut down, cleanly if it can be.
        if task(ctx, s, "VM.clean_shutdown", std::slice::from_ref(&v)).await.is_err() {
            if let Err(e) = task(ctx, s, "VM.hard_shutdown", &[v]).await {
                failure = Some(e);
                break;
            }
        }
    }
    restore_blocks(ctx, s, &lifted).await;
    progress(ctx, s, plan, 0.3).await;
    let before = call(ctx, s, "host.get_other_config", std::slice::from_ref(&h)).await?["agent_start_time"].clone();
    let rebooted = match failure {
        Some(e) => Err(e),
        None => task(ctx, s, "host.reboot", std::slice::from_ref(&h)).await.map(|_| ()),
    };
    if let Err(e) = rebooted {
        // The host did not go down: it is enabled again and its VMs resumed.
        let _ = call(ctx, s, "host.enable", std::slice::from_ref(&h)).await;
        for vm in &suspended {
            let _ = task(ctx, s, "VM.resume", &[json!(vm), json!(false), json!(false)]).await;
        }
        return Err(e);
    }
    progress(ctx, s, plan, 0.5).await;
    // Back once live with a new agent start time (the reboot call returns before the host goes down), waiting on
    // XAPI's events for the host and its metrics between looks (`event.from`'s long poll, at most 10 s each).
    let metrics = call(ctx, s, "host.get_metrics", std::slice::from_ref(&h)).await?;
    let watched = json!([format!("host/{host}"), format!("host_metrics/{}", metrics.as_str().unwrap_or_default())]);
    let mut token = json!("");
    let mut waited = 0;
    loop {
        let other = call(ctx, s, "host.get_other_config", std::slice::from_ref(&h)).await;
        let metrics = call(ctx, s, "host.get_metrics", std::slice::from_ref(&h)).await;
        let live = match metrics {
            Ok(m) => call(ctx, s, "host_metrics.get_live", &[m]).await.ok() == Some(json!(true)),
            Err(_) => false,
        };
        let enabled = call(ctx, s, "host.get_enabled", std::slice::from_ref(&h)).await.ok() == Some(json!(true));
        if live && enabled && other.is_ok_and(|o| o["agent_start_time"] != before) {
            break;
        }
        if waited >= BOOT_MAX {
            return Err(XapiError::Api {
                code: "HOST_OFFLINE".into(),
                params: vec![host.into(), format!("not back after {BOOT_MAX} s: its VMs stay suspended")],
            });
        }
        // A session lost meanwhile (the toolstack restarted) ends the wait with XAPI's error.
        let ev = call(ctx, s, "event.from", &[watched.clone(), token.clone(), json!(10.0)]).await?;
        token = ev.get("token").cloned().unwrap_or(token);
        // A long poll that saw nothing took its 10 s; one that saw a change, about none (counted as 1 s).
        waited += if ev["events"].as_array().is_some_and(|e| !e.is_empty()) { 1 } else { 10 };
    }
    progress(ctx, s, plan, 0.8).await;
    let mut not_resumed = Vec::new();
    for vm in &suspended {
        let args = [json!(vm), h.clone(), json!(false), json!(false)];
        if task(ctx, s, "VM.resume_on", &args).await.is_err()
            && task(ctx, s, "VM.resume", &[json!(vm), json!(false), json!(false)]).await.is_err()
        {
            not_resumed.push(vm.clone());
        }
    }
    if !not_resumed.is_empty() {
        return Err(XapiError::Api { code: "VM_RESUME_FAILED".into(), params: not_resumed });
    }
    Ok(None)
}

/// Unplugs the SR's PBDs and forgets or destroys it; a failure plugs back what was unplugged.
pub async fn remove_sr<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, sr: &str, destroy: bool) -> Result<(), XapiError> {
    let expr = format!(r#"field "SR"="{sr}" and field "currently_attached"="true""#);
    let pbds = call(ctx, s, "PBD.get_all_records_where", &[json!(expr)]).await?;
    let mut unplugged = Vec::new();
    let mut result = Ok(());
    for pbd in pbds.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        match task(ctx, s, "PBD.unplug", &[json!(pbd)]).await {
            Ok(_) => unplugged.push(pbd),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        let method = if destroy { "SR.destroy" } else { "SR.forget" };
        result = task(ctx, s, method, &[json!(sr)]).await.map(|_| ());
    }
    if result.is_err() {
        for pbd in unplugged {
            let _ = task(ctx, s, "PBD.plug", &[json!(pbd)]).await;
        }
    }
    result
}

/// Destroys the network's VLANs and bonds (what XO's network deletion removes first).
async fn dismantle<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, net: &str) -> Result<(), XapiError> {
    let pifs = call(ctx, s, "network.get_PIFs", &[json!(net)]).await?;
    for pif in pifs.as_array().into_iter().flatten() {
        let rec = call(ctx, s, "PIF.get_record", std::slice::from_ref(pif)).await?;
        let vlan = rec["VLAN_master_of"].as_str().unwrap_or_default();
        if !vlan.is_empty() && vlan != "OpaqueRef:NULL" {
            call(ctx, s, "VLAN.destroy", &[json!(vlan)]).await?;
        }
        for bond in rec["bond_master_of"].as_array().into_iter().flatten() {
            call(ctx, s, "Bond.destroy", std::slice::from_ref(bond)).await?;
        }
    }
    Ok(())
}

/// `DELETE /rest/v0/networks/<id>`: refused (409, before anything is destroyed) while a VIF on it is attached or a
/// physical PIF carries it; else its VLANs and bonds, then the network.
pub async fn delete_network<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, net: &str, rec: &Value) -> Result<(), ApiError> {
    let mut attached = Vec::new();
    for vif in rec["VIFs"].as_array().into_iter().flatten() {
        if call(ctx, s, "VIF.get_currently_attached", std::slice::from_ref(vif)).await.ok() == Some(json!(true)) {
            attached.push(vif.clone());
        }
    }
    if !attached.is_empty() {
        return Err(ApiError::new(409, "VMs are connected to this network: disconnect their VIFs first")
            .with_data(json!({ "code": "NETWORK_CONTAINS_VIF", "params": attached })));
    }
    for pif in rec["PIFs"].as_array().into_iter().flatten() {
        let p = call(ctx, s, "PIF.get_record", std::slice::from_ref(pif)).await.map_err(xapi)?;
        let vlan = p["VLAN_master_of"].as_str().is_some_and(|v| !v.is_empty() && v != "OpaqueRef:NULL");
        let bond = p["bond_master_of"].as_array().is_some_and(|b| !b.is_empty());
        if !vlan && !bond {
            return Err(ApiError::new(409, "a physical interface carries this network: it cannot be deleted")
                .with_data(json!({ "code": "NETWORK_CONTAINS_PIF", "params": [pif] })));
        }
    }
    dismantle(ctx, s, net).await.map_err(xapi)?;
    call(ctx, s, "network.destroy", &[json!(net)]).await.map_err(|e| {
        // Its VLANs and bonds are gone already: the answer says so (as a VM's deletion names what it destroyed).
        let mut error = e.to_api_error();
        error.message = format!("{}: the network's VLANs and bonds were removed, the network was not", error.message);
        error
    })?;
    Ok(())
}

/// Starts the plan of `steps` for a request: its task made (named `label`, marked with the collection of what it
/// makes), the answer 202 with it and the plan to run after, or with `sync` the plan run now and its outcome.
pub async fn start<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    req: &super::Request,
    label: String,
    steps: Steps,
    sync: bool,
) -> Result<super::Reply, ApiError> {
    let s = json!(caller.session);
    let t = call(ctx, &s, "task.create", &[json!(label), json!("a plan of xo-edge: several XAPI calls")])
        .await
        .map_err(xapi)?;
    let t = t.as_str().unwrap_or_default().to_string();
    if let Some(coll) = steps.makes() {
        let _ = call(ctx, &s, "task.add_to_other_config", &[json!(t), json!("xo-edge:makes"), json!(coll)]).await;
    }
    let uuid = call(ctx, &s, "task.get_uuid", &[json!(t)]).await.map_err(xapi)?;
    let uuid = uuid.as_str().unwrap_or_default().to_string();
    let makes = steps.makes();
    let plan = plans::Plan { session: caller.session.clone(), task: t.clone(), steps, logout: false };
    if !sync {
        let mut reply = super::actions::accepted(req, &uuid);
        reply.stream = Some(super::Stream::Plan(Box::new(plan)));
        return Ok(reply);
    }
    let outcome = plan.run(ctx).await;
    let _ = call(ctx, &s, "task.destroy", &[json!(t)]).await;
    match (outcome.map_err(xapi)?, makes) {
        (Some(made), Some(coll)) => {
            let class = collection(coll)?.class;
            let made = call(ctx, &s, &format!("{class}.get_uuid"), &[json!(made)]).await.map_err(xapi)?;
            let made = made.as_str().unwrap_or_default();
            Ok(super::Reply::json(201, &json!({ "id": made }))
                .with_header("location", format!("/rest/v0/{coll}/{made}")))
        }
        _ => Ok(super::Reply::no_content()),
    }
}
