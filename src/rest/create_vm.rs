//! `POST /rest/v0/pools/<id>/actions/create_vm[?sync]`: a new VM from a template, with XO 6's parameters, as a plan
//! ([`super::plans`]: a task of the edge's, 202 at once, or `?sync` for 201 and the VM's href).
//!
//! The steps, as XO's `createVm` takes them (`xo-server/src/xapi/mixins/vm.mjs`), each an XAPI call awaited:
//! 1. `VM.clone` of the template (`clone: false`: `VM.copy`, full disks).
//! 2. Disks: without `vdis`, the template's own provision XML (`other_config:disks`), each disk on the SR it names
//!    or else the pool's default SR, made by `VM.provision`; with `vdis`, as XO: the XML dropped, `VM.provision`,
//!    then each entry: a new disk (`VDI.create`, `VBD.create`), an existing one of the template's changed (name,
//!    size; grow only) or destroyed (`destroy: true`).
//! 3. Settings: description, memory, CPUs, affinity, HA, auto power-on, secure boot, firmware (the same calls as
//!    `PATCH /vms/<id>`).
//! 4. Install: an ISO in a CD drive, first in the boot order (`cdrom`), or network boot first (`network`).
//! 5. VIFs: new ones (`VIF.create`: the first free device unless given, the network's MTU unless given, locked to
//!    the addresses given), or the template's replaced or destroyed by device.
//! 6. cloud-init: the config drive ([`crate::formats::config_drive`]) made at the edge, on the SR of the VM's first
//!    disk, uploaded through XAPI's `/import_raw_vdi` under a task and attached.
//! 7. `boot`: `VM.start`; with `destroy_cloud_config_vdi`, the drive is unplugged and destroyed once the guest's
//!    agent has reported (it has read its configuration), at most 10 minutes later, as XO does.
//!
//! Any failure before the VM runs destroys the VM and every disk it got, and fails the task with XAPI's error.

use super::auth::Caller;
use super::collections::find;
use super::plans::{call, progress, task, Outcome};
use super::Ctx;
use crate::error::ApiError;
use crate::objects;
use crate::transfer::task as transfer_task;
use crate::xapi::{Transport, XapiError};
use serde_json::{json, Map, Value};

/// Longest wait for the guest's agent before the config drive is removed (XO's `destroyCloudInitConfig`).
const AGENT_WAIT: f64 = 600.0;

/// A disk entry of `vdis`.
#[derive(Debug, Clone)]
enum Disk {
    /// A new disk, at `userdevice` when given and free (else the next free position).
    New { name_label: String, name_description: String, size: u64, sr: String, userdevice: Option<String> },
    /// The template's disk at `userdevice`: changed if it exists (else made as new, when it can be), or destroyed.
    Existing {
        userdevice: String,
        name_label: Option<String>,
        name_description: Option<String>,
        size: Option<u64>,
        destroy: bool,
        /// What to make when the template has no disk there.
        otherwise: Option<Box<Disk>>,
    },
}

/// A VIF entry of `vifs`.
#[derive(Debug, Clone)]
enum Nic {
    New { network: String, mtu: u64, mac: String, device: Option<String>, ipv4: Vec<Value>, ipv6: Vec<Value> },
    Destroy { device: String },
}

/// What `install` asks.
#[derive(Debug, Clone, PartialEq)]
enum Install {
    None,
    /// This ISO VDI in a CD drive, booted first.
    Cdrom(String),
    Network,
}

/// A create_vm request, checked and resolved: every id is a ref.
#[derive(Debug)]
pub struct Spec {
    template: String,
    clone: bool,
    name_label: String,
    /// `PATCH /vms` fields, applied in order.
    settings: Vec<(&'static str, Value)>,
    /// The affinity host's ref.
    host: Option<String>,
    /// `Some`: the template's provision XML, its SRs resolved; `None`: dropped (`vdis` given).
    provision: Option<String>,
    disks: Vec<Disk>,
    nics: Vec<Nic>,
    install: Install,
    /// (user data, network config, destroy once the guest read it).
    cloud: Option<(String, Option<String>, bool)>,
    boot: bool,
}

/// The body's properties and required ones (XO 6's `CreateVmBody`).
pub fn schema() -> (Value, Vec<&'static str>) {
    let s = |d: &str| json!({ "type": "string", "description": d });
    let b = |d: &str| json!({ "type": "boolean", "description": d });
    let n = |d: &str| json!({ "type": "integer", "description": d });
    let props = json!({
        "name_label": s("the VM's name"),
        "template": s("the template's uuid"),
        "name_description": s("the VM's description"),
        "clone": b("a fast clone of the template (default); false: a full copy"),
        "memory": n("memory, bytes"),
        "cpus": n("VCPUs"),
        "affinity": s("the host the VM prefers (uuid)"),
        "high_availability": { "type": "string", "enum": ["", "best-effort", "restart"] },
        "autoPoweron": b("start the VM with the pool"),
        "secureBoot": b("UEFI secure boot"),
        "hvmBootFirmware": { "type": "string", "enum": ["uefi", "bios"] },
        "boot": b("start the VM once made"),
        "vifs": {
            "type": "array",
            "description": "VIFs to add ({network, mac, mtu, device, ipv4_allowed, ipv6_allowed}) or to remove ({device, destroy: true})",
            "items": { "type": "object" }
        },
        "vdis": {
            "type": "array",
            "description": "disks to add ({size, name_label, name_description, sr (or SR)}), or the template's to change ({userdevice, name_label, name_description, size}) or remove ({userdevice, destroy: true}); without it, the template's own disks",
            "items": { "type": "object" }
        },
        "install": {
            "type": "object",
            "description": "{method: \"cdrom\", repository: <ISO VDI uuid>} or {method: \"network\", repository: \"\"}"
        },
        "cloud_config": s("cloud-init user data, on a config drive (label cidata) the VM gets"),
        "network_config": s("cloud-init network configuration, on the same drive"),
        "destroy_cloud_config_vdi": b("with boot: remove the config drive once the guest has read it"),
        "copyHostBiosStrings": b("not supported by xo-edge (false only)"),
        "createVtpm": b("not supported by xo-edge (false only)"),
        "gpuGroup": s("not supported by xo-edge"),
        "vgpuType": s("not supported by xo-edge"),
    });
    (props, vec!["name_label", "template"])
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// A positive integer (XO sends numbers, possibly as floats without a fraction).
fn count(v: &Value, what: &str) -> Result<u64, ApiError> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 1.0 && f.fract() == 0.0 && *f < 9.0e15).map(|f| f as u64))
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(format!("{what} must be a positive integer")))
}

fn text(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{k} must be a string"))),
    }
}

fn only(o: &Map<String, Value>, keys: &[&str], what: &str) -> Result<(), ApiError> {
    match o.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("{what} takes no {k:?} (its keys: {keys:?})"))),
        None => Ok(()),
    }
}

fn collection(name: &str) -> Result<&'static objects::Collection, ApiError> {
    objects::collection(name).ok_or_else(|| ApiError::internal(format!("collection {name} missing")))
}

/// The pool's default SR (ref and uuid), if it has one.
async fn default_sr<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, pool: &Value) -> Option<(String, String)> {
    let sr = pool["default_SR"].as_str().filter(|r| !r.is_empty() && *r != "OpaqueRef:NULL")?;
    let uuid = call(ctx, s, "SR.get_uuid", &[json!(sr)]).await.ok()?;
    Some((sr.to_string(), uuid.as_str()?.to_string()))
}

fn no_default_sr(what: &str) -> ApiError {
    ApiError::new(409, format!("{what} names no SR and the pool has no default SR: give an sr"))
        .with_data(json!({ "code": "DEFAULT_SR_NOT_FOUND" }))
}

/// Rewrites a template's provision XML: each disk's `sr` resolved (an SR uuid that exists stays; else `default`).
fn provision_with_srs(xml: &str, known: &[String], default: Option<&str>) -> Result<String, ApiError> {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new(Vec::new());
    let broken = |e: String| ApiError::bad_gateway(format!("the template's provision XML is broken: {e}"));
    loop {
        let event = reader.read_event().map_err(|e| broken(e.to_string()))?;
        let empty = matches!(event, Event::Empty(_));
        let event = match event {
            Event::Empty(e) | Event::Start(e) if e.name().as_ref() == b"disk" => {
                let mut disk = BytesStart::new("disk");
                for a in e.attributes() {
                    let a = a.map_err(|e| broken(e.to_string()))?;
                    let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                    let value = a.unescape_value().map_err(|e| broken(e.to_string()))?.into_owned();
                    let value = if key == "sr" && !known.contains(&value) {
                        default.ok_or_else(|| no_default_sr("the template's disks"))?.to_string()
                    } else {
                        value
                    };
                    disk.push_attribute((key.as_str(), value.as_str()));
                }
                if empty {
                    Event::Empty(disk)
                } else {
                    Event::Start(disk)
                }
            }
            Event::Eof => break,
            other => other.into_owned(),
        };
        writer.write_event(event).map_err(|e| broken(e.to_string()))?;
    }
    String::from_utf8(writer.into_inner()).map_err(|e| broken(e.to_string()))
}

/// Checks the body and resolves its ids (404 naming what is missing; 400 for a malformed entry; 409 when a disk
/// needs the pool's default SR and there is none; 422 for what xo-edge does not do).
pub async fn prepare<T: Transport>(
    ctx: &Ctx<'_, T>,
    caller: &Caller,
    pool: &Value,
    body: &Value,
) -> Result<Spec, ApiError> {
    let s = json!(caller.session);
    let o = body.as_object().cloned().unwrap_or_default();
    let flag = |k: &str| o.get(k) == Some(&json!(true));
    for k in ["copyHostBiosStrings", "createVtpm"] {
        if flag(k) {
            return Err(ApiError::new(422, format!("{k} is not supported by xo-edge")));
        }
    }
    for k in ["gpuGroup", "vgpuType"] {
        if o.contains_key(k) {
            return Err(ApiError::new(422, format!("{k}: vGPUs are not supported by xo-edge")));
        }
    }
    let template_id = text(&o, "template")?.unwrap_or_default();
    let (template, trec) = find(ctx, caller, collection("vm-templates")?, &template_id).await?;
    let name_label = text(&o, "name_label")?.unwrap_or_default();
    let mut settings: Vec<(&'static str, Value)> = Vec::new();
    if let Some(d) = text(&o, "name_description")? {
        settings.push(("name_description", json!(d)));
    }
    if let Some(v) = o.get("cpus") {
        settings.push(("cpus", json!(count(v, "cpus")?)));
    }
    if let Some(v) = o.get("memory") {
        settings.push(("memory", json!(count(v, "memory")?)));
    }
    if let Some(v) = o.get("high_availability") {
        settings.push(("highAvailability", v.clone()));
    }
    if let Some(v) = o.get("autoPoweron") {
        settings.push(("autoPoweron", v.clone()));
    }
    if let Some(v) = o.get("hvmBootFirmware") {
        settings.push(("hvmBootFirmware", v.clone()));
    }
    if let Some(v) = o.get("secureBoot") {
        settings.push(("secureBoot", v.clone()));
    }
    let host = match text(&o, "affinity")? {
        Some(h) => {
            settings.push(("affinityHost", json!(h)));
            Some(find(ctx, caller, collection("hosts")?, &h).await?.0)
        }
        None => None,
    };
    let default = default_sr(ctx, &s, pool).await;
    let srs = collection("srs")?;
    let mut disks = Vec::new();
    let provision = match o.get("vdis") {
        Some(list) => {
            for (i, entry) in list.as_array().into_iter().flatten().enumerate() {
                let e = entry.as_object().ok_or_else(|| bad(format!("vdis[{i}] must be an object")))?;
                let what = format!("vdis[{i}]");
                only(
                    e,
                    &["name_label", "name_description", "size", "sr", "SR", "userdevice", "userdervice", "destroy"],
                    &what,
                )?;
                let userdevice = text(e, "userdevice")?.or(text(e, "userdervice")?);
                if userdevice.as_ref().is_some_and(|d| d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(bad(format!("{what}.userdevice must be a decimal number")));
                }
                let size = e.get("size").map(|v| count(v, &format!("{what}.size"))).transpose()?;
                // (`sr` as XO 6 names it; `SR` as xo-server's `vm.create` did.)
                let sr = match text(e, "sr")?.or(text(e, "SR")?) {
                    Some(id) => Some(find(ctx, caller, srs, &id).await?.0),
                    None => None,
                };
                let new = match (size, text(e, "name_label")?) {
                    (Some(size), Some(name_label)) => {
                        let sr = match sr.clone().or(default.as_ref().map(|d| d.0.clone())) {
                            Some(sr) => sr,
                            None => return Err(no_default_sr(&what)),
                        };
                        Some(Disk::New {
                            name_label,
                            name_description: text(e, "name_description")?.unwrap_or_default(),
                            size,
                            sr,
                            userdevice: userdevice.clone(),
                        })
                    }
                    _ => None,
                };
                let destroy = e.get("destroy") == Some(&json!(true));
                disks.push(match (userdevice, new) {
                    (None, Some(new)) => new,
                    (None, None) => return Err(bad(format!("{what}: a new disk needs size and name_label"))),
                    (Some(userdevice), new) => {
                        if sr.is_some() && new.is_none() {
                            return Err(ApiError::new(
                                422,
                                format!("{what}: moving a template's disk to another SR is not supported"),
                            ));
                        }
                        Disk::Existing {
                            userdevice,
                            name_label: text(e, "name_label")?,
                            name_description: text(e, "name_description")?,
                            size,
                            destroy,
                            otherwise: new.map(Box::new),
                        }
                    }
                });
            }
            None
        }
        None => match trec["other_config"]["disks"].as_str() {
            Some(xml) => {
                let all = call(ctx, &s, "SR.get_all_records", &[]).await.map_err(|e| e.to_api_error())?;
                let known: Vec<String> = all
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, r)| r["content_type"] != "iso")
                    .filter_map(|(_, r)| r["uuid"].as_str().map(str::to_string))
                    .collect();
                Some(provision_with_srs(xml, &known, default.as_ref().map(|d| d.1.as_str()))?)
            }
            None => None,
        },
    };
    let networks = collection("networks")?;
    let mut nics = Vec::new();
    for (i, entry) in o.get("vifs").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let e = entry.as_object().ok_or_else(|| bad(format!("vifs[{i}] must be an object")))?;
        let what = format!("vifs[{i}]");
        only(e, &["network", "mac", "mtu", "device", "ipv4_allowed", "ipv6_allowed", "destroy"], &what)?;
        let device = text(e, "device")?;
        if device.as_ref().is_some_and(|d| d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad(format!("{what}.device must be a decimal number")));
        }
        if e.get("destroy") == Some(&json!(true)) {
            let device = device.ok_or_else(|| bad(format!("{what}: destroy needs the device")))?;
            nics.push(Nic::Destroy { device });
            continue;
        }
        let network_id = text(e, "network")?.ok_or_else(|| bad(format!("{what} needs a network")))?;
        let (network, nrec) = find(ctx, caller, networks, &network_id).await?;
        let mac = text(e, "mac")?.unwrap_or_default().to_ascii_lowercase();
        let hex_pairs = mac.split(':').count() == 6
            && mac.split(':').all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !mac.is_empty() && !hex_pairs {
            return Err(bad(format!("{what}.mac must be six pairs of hex digits separated by colons")));
        }
        let mtu = match e.get("mtu") {
            Some(v) => count(v, &format!("{what}.mtu"))?,
            None => nrec["MTU"].as_u64().unwrap_or(1500),
        };
        let list = |k: &str| -> Result<Vec<Value>, ApiError> {
            match e.get(k) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(a.clone()),
                Some(_) => Err(bad(format!("{what}.{k} must be an array of addresses"))),
            }
        };
        nics.push(Nic::New { network, mtu, mac, device, ipv4: list("ipv4_allowed")?, ipv6: list("ipv6_allowed")? });
    }
    let install = match o.get("install") {
        None | Some(Value::Null) => Install::None,
        Some(Value::Object(i)) => {
            only(i, &["method", "repository"], "install")?;
            match (text(i, "method")?.as_deref(), text(i, "repository")?.unwrap_or_default()) {
                (Some("cdrom"), repo) if !repo.is_empty() => {
                    let (iso, _) = find(ctx, caller, collection("vdis")?, &repo).await?;
                    Install::Cdrom(iso)
                }
                (Some("network"), _) => Install::Network,
                _ => {
                    return Err(bad(
                        "install is {method: \"cdrom\", repository: <ISO VDI uuid>} or {method: \"network\"}",
                    ))
                }
            }
        }
        Some(_) => return Err(bad("install must be an object")),
    };
    let cloud = match text(&o, "cloud_config")? {
        Some(user) => Some((user, text(&o, "network_config")?, flag("destroy_cloud_config_vdi"))),
        None if o.contains_key("network_config") => {
            return Err(bad("network_config goes on the cloud-init drive: give cloud_config too"))
        }
        None => None,
    };
    Ok(Spec {
        template,
        clone: o.get("clone") != Some(&json!(false)),
        name_label,
        settings,
        host,
        provision,
        disks,
        nics,
        install,
        cloud,
        boot: flag("boot"),
    })
}

/// The ref in an `Async` task's result.
fn made(result: &str) -> Result<String, XapiError> {
    let start = result.find("OpaqueRef:").ok_or_else(|| XapiError::Api {
        code: "INTERNAL_ERROR".into(),
        params: vec![format!("xo-edge: no ref in the task result {result:?}")],
    })?;
    let rest = &result[start..];
    let end = rest[10..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).map_or(rest.len(), |i| i + 10);
    Ok(rest[..end].to_string())
}

fn s_of(v: Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Runs the steps; on failure, destroys what was made.
pub async fn run<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, plan: &str, spec: &Spec) -> Outcome {
    let copy = if spec.clone {
        task(ctx, s, "VM.clone", &[json!(spec.template), json!(spec.name_label)]).await?
    } else {
        task(ctx, s, "VM.copy", &[json!(spec.template), json!(spec.name_label), json!("OpaqueRef:NULL")]).await?
    };
    let vm = made(&copy)?;
    progress(ctx, s, plan, 0.2).await;
    let mut drive: Option<String> = None;
    match build(ctx, s, plan, spec, &vm, &mut drive).await {
        Ok(()) => {}
        Err(e) => {
            if let Some(vdi) = &drive {
                let _ = call(ctx, s, "VDI.destroy", &[json!(vdi)]).await;
            }
            super::delete::destroy_with_own_disks(ctx, s, &vm).await;
            return Err(e);
        }
    }
    if spec.boot {
        if let Err(e) = task(ctx, s, "VM.start", &[json!(vm), json!(false), json!(false)]).await {
            super::delete::destroy_with_own_disks(ctx, s, &vm).await;
            return Err(e);
        }
        progress(ctx, s, plan, 0.9).await;
        if let (Some((_, _, true)), Some(vdi)) = (&spec.cloud, &drive) {
            remove_drive_once_read(ctx, s, &vm, vdi).await;
        }
    }
    Ok(Some(vm))
}

/// Steps 2 to 6 on the new VM `vm`; `drive` gets the config drive's VDI as soon as it exists.
async fn build<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    plan: &str,
    spec: &Spec,
    vm: &str,
    drive: &mut Option<String>,
) -> Result<(), XapiError> {
    let v = json!(vm);
    let _ = call(ctx, s, "VM.remove_from_other_config", &[v.clone(), json!("disks")]).await;
    if let Some(xml) = &spec.provision {
        call(ctx, s, "VM.add_to_other_config", &[v.clone(), json!("disks"), json!(xml)]).await?;
    }
    task(ctx, s, "VM.provision", std::slice::from_ref(&v)).await?;
    progress(ctx, s, plan, 0.4).await;
    for (field, value) in &spec.settings {
        super::edit::apply_vm(ctx, s, vm, field, value, spec.host.as_deref()).await?;
    }
    install(ctx, s, vm, &spec.install).await?;
    disks(ctx, s, vm, &spec.disks, spec.install != Install::None).await?;
    progress(ctx, s, plan, 0.6).await;
    nics(ctx, s, vm, &spec.nics).await?;
    if let Some((user, network, _)) = &spec.cloud {
        config_drive(ctx, s, vm, user, network.as_deref(), drive).await?;
    }
    progress(ctx, s, plan, 0.8).await;
    Ok(())
}

/// The VM's VBDs: (ref, record).
async fn vbds<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str) -> Result<Vec<(String, Value)>, XapiError> {
    let refs = call(ctx, s, "VM.get_VBDs", &[json!(vm)]).await?;
    let mut out = Vec::new();
    for r in refs.as_array().into_iter().flatten() {
        out.push((s_of(r.clone()), call(ctx, s, "VBD.get_record", std::slice::from_ref(r)).await?));
    }
    Ok(out)
}

async fn install<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str, install: &Install) -> Result<(), XapiError> {
    if *install == Install::None {
        return Ok(());
    }
    let v = json!(vm);
    let rec = call(ctx, s, "VM.get_record", std::slice::from_ref(&v)).await?;
    let hvm = rec["HVM_boot_policy"].as_str().is_some_and(|p| !p.is_empty());
    let first = if *install == Install::Network { 'n' } else { 'd' };
    if hvm {
        // XO: the install device first, the rest of the order kept.
        let order = rec["HVM_boot_params"]["order"].as_str().unwrap_or_default();
        let order = if order.is_empty() {
            if first == 'n' {
                "ncd".to_string()
            } else {
                "dcn".to_string()
            }
        } else {
            std::iter::once(first).chain(order.chars().filter(|c| *c != first)).collect()
        };
        let _ = call(ctx, s, "VM.remove_from_HVM_boot_params", &[v.clone(), json!("order")]).await;
        call(ctx, s, "VM.add_to_HVM_boot_params", &[v.clone(), json!("order"), json!(order)]).await?;
    } else {
        let repository = if first == 'n' { "network" } else { "cdrom" };
        let _ = call(ctx, s, "VM.remove_from_other_config", &[v.clone(), json!("install-repository")]).await;
        call(ctx, s, "VM.add_to_other_config", &[v.clone(), json!("install-repository"), json!(repository)]).await?;
    }
    if let Install::Cdrom(iso) = install {
        // The ISO goes in the VM's CD drive (a new one replaces the template's).
        for (vbd, rec) in vbds(ctx, s, vm).await? {
            if rec["type"] == "CD" {
                call(ctx, s, "VBD.destroy", &[json!(vbd)]).await?;
            }
        }
        let record = json!({
            "VM": vm, "VDI": iso, "userdevice": "autodetect", "bootable": true, "mode": "RO", "type": "CD",
            "empty": false, "unpluggable": true, "other_config": {}, "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        });
        call(ctx, s, "VBD.create", &[record]).await?;
    }
    Ok(())
}

async fn disks<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    vm: &str,
    disks: &[Disk],
    cd_boots: bool,
) -> Result<(), XapiError> {
    let current = vbds(ctx, s, vm).await?;
    let mut bootable = cd_boots || current.iter().any(|(_, r)| r["bootable"] == json!(true) && r["type"] == "Disk");
    for disk in disks {
        let new = match disk {
            Disk::New { .. } => Some(disk),
            Disk::Existing { userdevice, name_label, name_description, size, destroy, otherwise } => {
                let found = current.iter().find(|(_, r)| r["userdevice"] == userdevice.as_str() && r["type"] == "Disk");
                match found.map(|(_, r)| s_of(r["VDI"].clone())) {
                    Some(vdi) if *destroy => {
                        call(ctx, s, "VDI.destroy", &[json!(vdi)]).await?;
                        None
                    }
                    Some(vdi) => {
                        let d = json!(vdi);
                        if let Some(n) = name_label {
                            call(ctx, s, "VDI.set_name_label", &[d.clone(), json!(n)]).await?;
                        }
                        if let Some(n) = name_description {
                            call(ctx, s, "VDI.set_name_description", &[d.clone(), json!(n)]).await?;
                        }
                        if let Some(size) = size {
                            let now = call(ctx, s, "VDI.get_virtual_size", std::slice::from_ref(&d)).await?;
                            let now = now.as_u64().or_else(|| now.as_str().and_then(|x| x.parse().ok()));
                            match now {
                                Some(now) if *size < now => {
                                    return Err(XapiError::Api {
                                        code: "VDI_SIZE_SMALLER".into(),
                                        params: vec![userdevice.clone(), now.to_string(), size.to_string()],
                                    })
                                }
                                Some(now) if *size == now => {}
                                _ => {
                                    call(ctx, s, "VDI.resize", &[d, json!(size)]).await?;
                                }
                            }
                        }
                        None
                    }
                    None if *destroy => None,
                    None => otherwise.as_deref(),
                }
            }
        };
        if let Some(Disk::New { name_label, name_description, size, sr, userdevice }) = new {
            let record = json!({
                "name_label": name_label, "name_description": name_description, "SR": sr, "virtual_size": size,
                "type": "user", "sharable": false, "read_only": false, "other_config": {},
            });
            let vdi = s_of(call(ctx, s, "VDI.create", &[record]).await?);
            // (`userdevice` named in an `Existing` entry the template lacks, or in a new one.)
            let position = userdevice.clone().unwrap_or_else(|| "autodetect".into());
            let vbd = json!({
                "VM": vm, "VDI": vdi, "userdevice": position, "bootable": !bootable, "mode": "RW", "type": "Disk",
                "empty": false, "unpluggable": true, "other_config": {}, "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            });
            if let Err(e) = call(ctx, s, "VBD.create", &[vbd]).await {
                let _ = call(ctx, s, "VDI.destroy", &[json!(vdi)]).await;
                return Err(e);
            }
            bootable = true;
        }
    }
    Ok(())
}

/// The VM's VIFs: (ref, device).
async fn vifs<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str) -> Result<Vec<(String, String)>, XapiError> {
    let refs = call(ctx, s, "VM.get_VIFs", &[json!(vm)]).await?;
    let mut out = Vec::new();
    for r in refs.as_array().into_iter().flatten() {
        out.push((s_of(r.clone()), s_of(call(ctx, s, "VIF.get_device", std::slice::from_ref(r)).await?)));
    }
    Ok(out)
}

async fn nics<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str, nics: &[Nic]) -> Result<(), XapiError> {
    for nic in nics {
        let device = match nic {
            Nic::Destroy { device } | Nic::New { device: Some(device), .. } => Some(device),
            Nic::New { device: None, .. } => None,
        };
        if let Some(device) = device {
            for (vif, d) in vifs(ctx, s, vm).await? {
                if d == *device {
                    call(ctx, s, "VIF.destroy", &[json!(vif)]).await?;
                }
            }
        }
        let Nic::New { network, mtu, mac, device, ipv4, ipv6 } = nic else { continue };
        let used: Vec<String> = vifs(ctx, s, vm).await?.into_iter().map(|(_, d)| d).collect();
        let device = device
            .clone()
            .unwrap_or_else(|| (0u32..).map(|n| n.to_string()).find(|n| !used.contains(n)).unwrap_or_default());
        let locked = !ipv4.is_empty() || !ipv6.is_empty();
        let record = json!({
            "device": device, "network": network, "VM": vm, "MAC": mac, "MTU": mtu, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {},
            "locking_mode": if locked { "locked" } else { "network_default" },
            "ipv4_allowed": ipv4, "ipv6_allowed": ipv6,
        });
        call(ctx, s, "VIF.create", &[record]).await?;
    }
    Ok(())
}

/// Makes the config drive on the SR of the VM's first disk (as XO), uploads it, attaches it.
async fn config_drive<T: Transport>(
    ctx: &Ctx<'_, T>,
    s: &Value,
    vm: &str,
    user: &str,
    network: Option<&str>,
    drive: &mut Option<String>,
) -> Result<(), XapiError> {
    let failed =
        |why: String| XapiError::Api { code: "INTERNAL_ERROR".into(), params: vec![format!("xo-edge: {why}")] };
    let mut sr = None;
    for (_, rec) in vbds(ctx, s, vm).await? {
        let vdi = rec["VDI"].as_str().unwrap_or_default();
        if rec["type"] != "CD" && !vdi.is_empty() && vdi != "OpaqueRef:NULL" {
            sr = Some(call(ctx, s, "VDI.get_SR", &[json!(vdi)]).await?);
            break;
        }
    }
    let sr = sr.ok_or_else(|| XapiError::Api {
        code: "VM_HAS_NO_DISK".into(),
        params: vec!["a cloud-init config drive goes on the SR of the VM's first disk: give the VM a disk".into()],
    })?;
    let uuid = s_of(call(ctx, s, "VM.get_uuid", &[json!(vm)]).await?);
    let image = crate::formats::config_drive::build(&uuid, user, network).map_err(|e| failed(e.to_string()))?;
    let record = json!({
        "name_label": "XO CloudConfigDrive", "name_description": "cloud-init configuration (xo-edge)", "SR": sr,
        "virtual_size": image.len(), "type": "user", "sharable": false, "read_only": false, "other_config": {},
    });
    let vdi = s_of(call(ctx, s, "VDI.create", &[record]).await?);
    *drive = Some(vdi.clone());
    let session = s.as_str().unwrap_or_default();
    let t =
        transfer_task::create(&ctx.xapi, session, "Importing the cloud-init config drive", "xo-edge", ctx.now).await?;
    let path = format!(
        "/import_raw_vdi?{}",
        crate::transfer::export::query(&[("vdi", &vdi), ("format", "raw"), ("task_id", &t)])
    );
    let sent = ctx.xapi.put(&path, session, image).await;
    let outcome = transfer_task::settle(&ctx.xapi, session, &t, crate::transfer::export::SETTLE_WAIT).await?;
    match (sent, outcome) {
        (Ok(200), transfer_task::Outcome::Success) => {}
        (Ok(status), transfer_task::Outcome::Success) => {
            return Err(failed(format!("/import_raw_vdi answered {status}")))
        }
        (Err(e), _) => return Err(failed(format!("/import_raw_vdi: {}", e.message))),
        (_, transfer_task::Outcome::Failure(e)) => return Err(e),
        (_, other) => return Err(failed(format!("the config drive's upload ended {other:?}"))),
    }
    let vbd = json!({
        "VM": vm, "VDI": vdi, "userdevice": "autodetect", "bootable": false, "mode": "RW", "type": "Disk",
        "empty": false, "unpluggable": true, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
    });
    call(ctx, s, "VBD.create", &[vbd]).await?;
    Ok(())
}

/// Once the guest's agent has reported (PV drivers detected: the guest booted and read its drive), or after
/// [`AGENT_WAIT`], unplugs and destroys the config drive. Best effort: the VM is made and running either way.
async fn remove_drive_once_read<T: Transport>(ctx: &Ctx<'_, T>, s: &Value, vm: &str, vdi: &str) {
    let mut token = json!("");
    let mut waited = 0.0;
    while waited < AGENT_WAIT {
        let Ok(rec) = call(ctx, s, "VM.get_record", &[json!(vm)]).await else { return };
        let gm = rec["guest_metrics"].as_str().unwrap_or_default();
        if !gm.is_empty() && gm != "OpaqueRef:NULL" {
            let detected = call(ctx, s, "VM_guest_metrics.get_PV_drivers_detected", &[json!(gm)]).await;
            if detected.is_ok_and(|d| d == json!(true)) {
                break;
            }
        }
        let step = 30.0_f64.min(AGENT_WAIT - waited);
        let classes = json!([format!("vm/{vm}"), "vm_guest_metrics"]);
        match call(ctx, s, "event.from", &[classes, token.clone(), json!(step)]).await {
            Ok(ev) => token = ev.get("token").cloned().unwrap_or(token),
            Err(_) => return,
        }
        waited += step;
    }
    let vbds = call(ctx, s, "VDI.get_VBDs", &[json!(vdi)]).await.unwrap_or_default();
    for vbd in vbds.as_array().into_iter().flatten() {
        let _ = call(ctx, s, "VBD.unplug", std::slice::from_ref(vbd)).await;
    }
    let _ = call(ctx, s, "VDI.destroy", &[json!(vdi)]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provision_xml_gets_real_srs() {
        let xml = r#"<provision><disk device="0" size="10" sr="" bootable="true" type="system"/><disk device="1" size="5" sr="u-2" bootable="false" type="user"/></provision>"#;
        let out = provision_with_srs(xml, &["u-2".into()], Some("u-1")).unwrap();
        assert!(out.contains(r#"device="0" size="10" sr="u-1""#), "{out}");
        assert!(out.contains(r#"sr="u-2""#), "{out}");
        assert_eq!(provision_with_srs(xml, &[], None).unwrap_err().status, 409);
        assert!(provision_with_srs("<provision><disk", &[], Some("x")).is_err());
    }

    #[test]
    fn counts_and_refs() {
        assert_eq!(count(&json!(2), "x").unwrap(), 2);
        assert_eq!(count(&json!(1073741824.0), "x").unwrap(), 1 << 30);
        assert!(count(&json!(0), "x").is_err() && count(&json!(1.5), "x").is_err() && count(&json!("2"), "x").is_err());
        assert_eq!(made("<value>OpaqueRef:a-1</value>").unwrap(), "OpaqueRef:a-1");
        assert!(made("").is_err());
    }
}
