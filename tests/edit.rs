//! Issue 16, items 1 and 2, end to end through the runtime: `PATCH /rest/v0/<collection>/<id>` (names,
//! descriptions, tags; every XAPI call awaited, 204 only when all succeeded, partial failures say what was applied)
//! and tag `PUT`/`DELETE` (URL-decoded, idempotent), on every collection whose XAPI class has them.

mod common;

use common::Edge;
use serde_json::{json, Value as J};

const PASSWORD: &str = "xapi-sim";

fn first(edge: &Edge, t: &str, coll: &str) -> String {
    let r = edge.get(&format!("/rest/v0/{coll}?fields=uuid&limit=1")).bearer_auth(t).send().unwrap();
    r.json::<J>().unwrap()[0]["uuid"].as_str().unwrap_or_else(|| panic!("no {coll}")).to_string()
}

fn object(edge: &Edge, t: &str, coll: &str, id: &str) -> J {
    edge.get(&format!("/rest/v0/{coll}/{id}")).bearer_auth(t).send().unwrap().json().unwrap()
}

fn patch(edge: &Edge, t: &str, path: &str, body: &str) -> (u16, J) {
    let r = edge.http.patch(format!("{}{path}", edge.url)).bearer_auth(t).body(body.to_string()).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(J::Null))
}

/// Calls the simulator saw of methods starting with `prefix`.
fn calls(edge: &Edge, prefix: &str) -> u64 {
    let stats = edge.sim_stats();
    stats["calls"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains(prefix))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum()
}

#[test]
fn patch_renames_describes_and_retags_every_editable_collection() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    for coll in ["vms", "vm-snapshots", "vm-templates", "vdis", "vdi-snapshots", "srs", "networks", "hosts", "pools"] {
        let id = first(&edge, &t, coll);
        let body =
            json!({"name_label": format!("{coll} renamed"), "name_description": "by xo-edge", "tags": ["a", "b c"]});
        let (status, answer) = patch(&edge, &t, &format!("/rest/v0/{coll}/{id}"), &body.to_string());
        assert_eq!(status, 204, "{coll}: {answer}");
        let o = object(&edge, &t, coll, &id);
        assert_eq!(o["name_label"], format!("{coll} renamed"), "{coll}");
        assert_eq!(o["name_description"], "by xo-edge", "{coll}");
        assert_eq!(o["tags"], json!(["a", "b c"]), "{coll}");
        // Tags replace: the new list is the whole list.
        assert_eq!(patch(&edge, &t, &format!("/rest/v0/{coll}/{id}"), r#"{"tags":["z"]}"#).0, 204);
        assert_eq!(object(&edge, &t, coll, &id)["tags"], json!(["z"]), "{coll}");
    }
    // An empty body changes nothing and answers 204.
    let vm = first(&edge, &t, "vms");
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{vm}"), "{}").0, 204);
}

#[test]
fn bad_patches_are_refused_before_any_write() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = first(&edge, &t, "vms");
    let writes = calls(&edge, ".set_");
    let path = format!("/rest/v0/vms/{vm}");
    let (status, e) = patch(&edge, &t, &path, r#"{"name_label":"x","power_state":"Halted"}"#);
    assert_eq!(status, 400);
    assert_eq!(e["data"]["unknown"], json!(["power_state"]));
    let editable = e["data"]["editable"].as_array().unwrap();
    for field in ["name_label", "nameLabel", "name_description", "tags", "cpus", "memory", "blockedOperations"] {
        assert!(editable.contains(&json!(field)), "{field}: {editable:?}");
    }
    for body in [r#"{"tags":"a"}"#, r#"{"name_label":3}"#, r#"{"cpus":0}"#, r#"{"memory":"lots"}"#, "[]", "{", ""] {
        assert_eq!(patch(&edge, &t, &path, body).0, 400, "{body}");
    }
    assert_eq!(calls(&edge, ".set_"), writes, "no XAPI write for a refused body");
    assert!(object(&edge, &t, "vms", &vm)["name_label"].as_str().is_some_and(|n| n != "x"));
    // Objects that do not exist, ids that cannot exist, collections with nothing to edit, other methods.
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{missing}"), r#"{"name_label":"x"}"#).0, 404);
    assert_eq!(patch(&edge, &t, "/rest/v0/vms/not-an-id", r#"{"name_label":"x"}"#).0, 404);
    let vbd = first(&edge, &t, "vbds");
    let url = format!("{}/rest/v0/vbds/{vbd}", edge.url);
    let r = edge.http.patch(url).bearer_auth(&t).body(r#"{"name_label":"x"}"#).send().unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "GET, HEAD, DELETE"));
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH, DELETE");
    // Without credentials, or cross-site with only a cookie: refused before anything else.
    let r = edge.http.patch(format!("{}{path}", edge.url)).body(r#"{"name_label":"x"}"#).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = edge
        .http
        .patch(format!("{}{path}", edge.url))
        .header("cookie", format!("authenticationToken={t}"))
        .header("origin", "https://evil.example")
        .body(r#"{"name_label":"x"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(calls(&edge, ".set_"), writes);
}

/// A write XAPI refuses half-way: the answer is XAPI's error and says which fields were applied (XO answers 204
/// before XAPI has answered and loses the failure).
#[test]
fn a_partial_patch_says_what_was_applied() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = first(&edge, &t, "vms");
    let faults = json!({"fail": [{"method": "VM.set_tags", "nth": 1, "error": ["INTERNAL_ERROR", "disk full"]}]});
    edge.faults(faults);
    let body = r#"{"name_label":"half","name_description":"done too","tags":["never"]}"#;
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vms/{vm}"), body);
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["data"]["applied"], json!(["name_label", "name_description"]));
    assert_eq!(e["data"]["notApplied"], json!(["tags"]));
    assert_eq!(e["data"]["code"], "INTERNAL_ERROR");
    assert!(e["error"].as_str().unwrap().starts_with("tags was not changed"), "{e}");
    let o = object(&edge, &t, "vms", &vm);
    assert_eq!((o["name_label"].as_str(), o["name_description"].as_str()), (Some("half"), Some("done too")));
    assert!(!o["tags"].as_array().unwrap().contains(&json!("never")));
}

#[test]
fn tags_are_added_and_removed_one_at_a_time_idempotently() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    for coll in ["vms", "vdis", "srs", "networks", "hosts", "pools", "vm-templates"] {
        let id = first(&edge, &t, coll);
        let tag_url = format!("{}/rest/v0/{coll}/{id}/tags/prod%2Feu%20west", edge.url);
        for _ in 0..2 {
            assert_eq!(edge.http.put(&tag_url).bearer_auth(&t).send().unwrap().status().as_u16(), 204, "{coll}");
        }
        let tags = object(&edge, &t, coll, &id)["tags"].clone();
        assert_eq!(tags.as_array().unwrap().iter().filter(|x| *x == "prod/eu west").count(), 1, "{coll}: {tags}");
        for _ in 0..2 {
            assert_eq!(edge.http.delete(&tag_url).bearer_auth(&t).send().unwrap().status().as_u16(), 204, "{coll}");
        }
        assert!(!object(&edge, &t, coll, &id)["tags"].as_array().unwrap().contains(&json!("prod/eu west")));
    }
    let vif = first(&edge, &t, "vifs");
    // VIFs have no tags: no such route.
    let r = edge.http.put(format!("{}/rest/v0/vifs/{vif}/tags/x", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let missing = "00000000-0000-4000-8000-000000000000";
    let r = edge.http.put(format!("{}/rest/v0/vms/{missing}/tags/x", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// The XAPI record of the object `uuid` of `class`, straight from the simulator.
fn record(edge: &Edge, class: &str, uuid: &str) -> J {
    let sid = edge.xapi("session.login_with_password", json!(["root", PASSWORD]))["result"].clone();
    let r = edge.xapi(&format!("{class}.get_by_uuid"), json!([sid, uuid]))["result"].clone();
    edge.xapi(&format!("{class}.get_record"), json!([sid, r]))["result"].clone()
}

/// XO 6's VM fields (`UpdateVmRequestBody`), a VDI's `size` and a VIF's locking and rate limit, each carried out with
/// XAPI's own calls and checks.
#[test]
fn patch_carries_out_xo6_vm_vdi_and_vif_fields() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let halted = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let running = edge.uuid_of(&t, "vms", "Debian 12 web");
    let (_, hosts) = (0, edge.get("/rest/v0/hosts?fields=uuid").bearer_auth(&t).send().unwrap().json::<J>().unwrap());
    let host = hosts[1]["uuid"].as_str().unwrap().to_string();
    let g: u64 = 1 << 30;
    let body = json!({
        "nameLabel": "rocky", "nameDescription": "edited", "cpus": 6, "memory": 2 * g, "autoPoweron": true,
        "highAvailability": "best-effort", "startDelay": 5, "affinityHost": host,
        "blockedOperations": {"destroy": "keep it", "clone": true}, "xenStoreData": {"role": "db"},
    });
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vms/{halted}"), &body.to_string());
    assert_eq!(status, 204, "{e}");
    let r = record(&edge, "VM", &halted);
    assert_eq!((r["name_label"].as_str(), r["name_description"].as_str()), (Some("rocky"), Some("edited")));
    assert_eq!((r["VCPUs_at_startup"].as_i64(), r["VCPUs_max"].as_i64()), (Some(6), Some(6)), "the maximum grew first");
    assert_eq!((r["memory_dynamic_max"].as_u64(), r["memory_static_max"].as_u64()), (Some(2 * g), Some(2 * g)));
    assert_eq!(r["other_config"]["auto_poweron"], "true");
    assert_eq!((r["ha_restart_priority"].as_str(), r["start_delay"].as_i64()), (Some("best-effort"), Some(5)));
    assert_eq!(r["blocked_operations"], json!({"destroy": "keep it", "clone": "true"}));
    assert_eq!(r["xenstore_data"]["vm-data/role"], "db", "xenStoreData keys get their vm-data/ prefix");
    assert_eq!(record(&edge, "host", &host)["uuid"], host.as_str());
    assert_eq!(object(&edge, &t, "vms", &halted)["name_label"], "rocky");
    // The platform, VCPU parameters, boot and other settings XO 6 edits.
    let sr = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let body = json!({
        "coresPerSocket": 2, "cpuCap": 50, "cpuWeight": 512, "cpuMask": [0, 2], "notes": "db primary",
        "PV_args": "console=hvc0", "hasVendorDevice": true, "nestedVirt": true, "viridian": false, "nicType": "e1000",
        "vga": "std", "videoram": 16, "secureBoot": true, "hvmBootFirmware": "uefi", "suspendSr": sr,
        "virtualizationMode": "hvm",
    });
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vms/{halted}"), &body.to_string());
    assert_eq!(status, 204, "{e}");
    let r = record(&edge, "VM", &halted);
    let p = &r["platform"];
    assert_eq!(
        (p["cores-per-socket"].as_str(), p["nested-virt"].as_str(), p.get("viridian")),
        (Some("2"), Some("true"), None)
    );
    assert_eq!(
        (p["nic_type"].as_str(), p["vga"].as_str(), p["videoram"].as_str()),
        (Some("e1000"), Some("std"), Some("16"))
    );
    assert_eq!((p["secureboot"].as_str(), p["device-model"].as_str()), (Some("true"), Some("qemu-upstream-uefi")));
    assert_eq!(r["HVM_boot_params"]["firmware"], "uefi");
    let v = &r["VCPUs_params"];
    assert_eq!((v["cap"].as_str(), v["weight"].as_str(), v["mask"].as_str()), (Some("50"), Some("512"), Some("0,2")));
    assert_eq!(
        (r["other_config"]["xo:notes"].as_str(), r["PV_args"].as_str()),
        (Some("db primary"), Some("console=hvc0"))
    );
    let sid = edge.xapi("session.login_with_password", json!(["root", PASSWORD]))["result"].clone();
    let sr_ref = edge.xapi("SR.get_by_uuid", json!([sid, sr]))["result"].clone();
    assert_eq!((r["has_vendor_device"].as_bool(), &r["suspend_SR"]), (Some(true), &sr_ref));
    assert_eq!((r["domain_type"].as_str(), r["HVM_boot_policy"].as_str()), (Some("hvm"), Some("BIOS order")));
    // What was set reads back under XO's names.
    let o = object(&edge, &t, "vms", &halted);
    assert_eq!(
        (&o["cpuCap"], &o["cpuWeight"], &o["cpuMask"], &o["notes"], &o["nicType"]),
        (&json!(50), &json!(512), &json!([0, 2]), &json!("db primary"), &json!("e1000"))
    );
    // XO 6's `uefiMode`: `VM.set_uefi_mode` (`datamodel_vm.ml`: `setup` or `user`); anything else before any call.
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{halted}"), r#"{"uefiMode":"setup"}"#).0, 204);
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{halted}"), r#"{"uefiMode":"off"}"#).0, 400);
    assert_eq!(calls(&edge, "VM.set_uefi_mode"), 1);
    // A xenstore key cannot leave the VM's vm-data/; a video RAM XO does not offer is refused; both before any call.
    let writes = calls(&edge, ".set_") + calls(&edge, ".add_to_");
    for body in
        [r#"{"xenStoreData":{"../../local/domain/0":"x"}}"#, r#"{"xenStoreData":{"/abs":"x"}}"#, r#"{"videoram":3}"#]
    {
        assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{halted}"), body).0, 400, "{body}");
    }
    assert_eq!(calls(&edge, ".set_") + calls(&edge, ".add_to_"), writes);
    // Unblocking and clearing.
    let body =
        json!({"blockedOperations": {"destroy": null, "clone": false}, "affinityHost": null, "autoPoweron": false});
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{halted}"), &body.to_string()).0, 204);
    let r = record(&edge, "VM", &halted);
    assert_eq!((r["blocked_operations"].clone(), r["affinity"].as_str()), (json!({}), Some("OpaqueRef:NULL")));
    assert!(r["other_config"].get("auto_poweron").is_none());
    // A running VM: VCPUs change live; beyond its maximum XAPI refuses, and the answer says what was applied.
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vms/{running}"), r#"{"cpus":1}"#).0, 204);
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vms/{running}"), r#"{"nameLabel":"web","cpus":99}"#);
    assert_eq!((status, e["data"]["code"].as_str()), (400, Some("INVALID_VALUE")), "{e}");
    assert_eq!(
        (e["data"]["applied"].clone(), e["data"]["notApplied"].clone()),
        (json!(["nameLabel"]), json!(["cpus"]))
    );
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vms/{running}"), r#"{"cpusStaticMax":8}"#);
    assert_eq!((status, e["data"]["code"].as_str()), (409, Some("VM_BAD_POWER_STATE")), "{e}");
    // A VDI grows (offline, or online when a running VM has it attached); it never shrinks.
    let sr = edge.uuid_of(&t, "srs", "Shared NFS storage");
    let r = edge.http.post(format!("{}/rest/v0/vdis", edge.url)).bearer_auth(&t);
    let made: J = r.body(json!({"srId": sr, "virtual_size": g}).to_string()).send().unwrap().json().unwrap();
    let vdi = made["id"].as_str().unwrap().to_string();
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vdis/{vdi}"), &json!({"size": 2 * g}).to_string()).0, 204);
    assert_eq!(object(&edge, &t, "vdis", &vdi)["size"], 2 * g);
    let resizes = calls(&edge, "VDI.resize");
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vdis/{vdi}"), &json!({"size": g}).to_string());
    assert_eq!(status, 400, "{e}");
    assert_eq!(calls(&edge, "VDI.resize"), resizes, "refused before any call");
    let disks: J = edge
        .get(&format!("/rest/v0/vms/{running}/vdis?fields=uuid,size"))
        .bearer_auth(&t)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (disk, size) = (disks[0]["uuid"].as_str().unwrap(), disks[0]["size"].as_u64().unwrap());
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vdis/{disk}"), &json!({"size": size + g}).to_string()).0, 204);
    assert_eq!(edge.sim_calls_of("VDI.resize_online"), 1);
    // A VIF: allowed addresses lock it; a rate limit is XAPI's ratelimit QoS.
    let vif = object(&edge, &t, "vms", &running)["VIFs"][0].as_str().unwrap().to_string();
    let body = json!({"allowedIpv4Addresses": ["192.0.2.10"], "rateLimit": 1000, "txChecksumming": false});
    let (status, e) = patch(&edge, &t, &format!("/rest/v0/vifs/{vif}"), &body.to_string());
    assert_eq!(status, 204, "{e}");
    let r = record(&edge, "VIF", &vif);
    assert_eq!((r["locking_mode"].as_str(), r["ipv4_allowed"].clone()), (Some("locked"), json!(["192.0.2.10"])));
    assert_eq!(
        (r["qos_algorithm_type"].as_str(), r["qos_algorithm_params"]["kbps"].as_str()),
        (Some("ratelimit"), Some("1000"))
    );
    assert_eq!(r["other_config"]["ethtool-tx"], "false");
    assert_eq!(patch(&edge, &t, &format!("/rest/v0/vifs/{vif}"), r#"{"allowedIpv4Addresses":["nope"]}"#).0, 400);
}
