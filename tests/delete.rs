//! Issue 16, item 3, end to end through the runtime: `DELETE` of VMs (shut down, destroyed with their snapshots and
//! the disks only they use), VM templates and snapshots, VDIs and VDI snapshots; protections refused with 409 before
//! any write; a failure half-way says what was destroyed.

mod common;

use common::Edge;
use serde_json::{json, Value as J};

const PASSWORD: &str = "xapi-sim";

fn delete(edge: &Edge, t: &str, path: &str) -> (u16, J) {
    let r = edge.http.delete(format!("{}{path}", edge.url)).bearer_auth(t).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(J::Null))
}

fn status(edge: &Edge, t: &str, path: &str) -> u16 {
    edge.get(path).bearer_auth(t).send().unwrap().status().as_u16()
}

fn counts(edge: &Edge) -> [i64; 4] {
    let s = edge.sim_stats();
    ["vms", "vm_snapshots", "vdis", "vdi_snapshots"].map(|k| s[k].as_i64().unwrap())
}

/// XO's semantics (reference §9.19): a running VM is hard-shut-down, destroyed with its snapshots and with the disks
/// only it and its snapshots use; its CD's ISO stays.
#[test]
fn deleting_a_running_vm_takes_its_snapshots_and_own_disks_only() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Debian 12 web");
    let snapshot = edge.uuid_of(&t, "vm-snapshots", "Debian 12 web - before upgrade");
    let vdis: Vec<J> =
        edge.get(&format!("/rest/v0/vms/{vm}/vdis?fields=uuid,type")).bearer_auth(&t).send().unwrap().json().unwrap();
    let iso = edge.uuid_of(&t, "vdis", "debian-12.9.0-amd64-netinst.iso");
    let before = counts(&edge);
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vms/{vm}")), (204, J::Null));
    assert_eq!(status(&edge, &t, &format!("/rest/v0/vms/{vm}")), 404);
    assert_eq!(status(&edge, &t, &format!("/rest/v0/vm-snapshots/{snapshot}")), 404);
    for v in vdis.iter().filter(|v| v["uuid"] != json!(iso)) {
        let uuid = v["uuid"].as_str().unwrap();
        assert_eq!(status(&edge, &t, &format!("/rest/v0/vdis/{uuid}")), 404, "{v}");
    }
    assert_eq!(status(&edge, &t, &format!("/rest/v0/vdis/{iso}")), 200, "the ISO is not the VM's to delete");
    let after = counts(&edge);
    // One VM, one snapshot, two disks and their two snapshots.
    assert_eq!([before[0] - after[0], before[1] - after[1], before[2] - after[2], before[3] - after[3]], [1, 1, 4, 2]);
    assert_eq!(edge.sim_stats()["tasks"], 0);
}

#[test]
fn protected_vms_and_default_templates_are_refused_before_any_write() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let writes =
        || edge.sim_calls_of("VM.destroy") + edge.sim_calls_of("VM.hard_shutdown") + edge.sim_calls_of("VDI.destroy");
    let before = (writes(), counts(&edge));
    let protected = edge.uuid_of(&t, "vms", "Protected VM");
    let (status_code, e) = delete(&edge, &t, &format!("/rest/v0/vms/{protected}"));
    assert_eq!((status_code, e["data"]["code"].as_str()), (409, Some("OPERATION_BLOCKED")), "{e}");
    let default = edge.uuid_of(&t, "vm-templates", "Debian Bookworm 12");
    let (status_code, e) = delete(&edge, &t, &format!("/rest/v0/vm-templates/{default}"));
    assert_eq!(status_code, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("default template"));
    assert_eq!((writes(), counts(&edge)), before, "nothing written, nothing gone");
    // A template of one's own goes, with its disk.
    let mine = edge.uuid_of(&t, "vm-templates", "Web server template");
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vm-templates/{mine}")).0, 204);
    let after = counts(&edge);
    assert_eq!((before.1[2] - after[2], status(&edge, &t, &format!("/rest/v0/vm-templates/{mine}"))), (1, 404));
    // Collections that cannot be deleted from, ids that do not exist.
    let host = edge.get("/rest/v0/hosts?fields=uuid").bearer_auth(&t).send().unwrap().json::<J>().unwrap()[0]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/hosts/{host}")).0, 405);
    let dom0 = edge.get("/rest/v0/vm-controllers?fields=uuid").bearer_auth(&t).send().unwrap().json::<J>().unwrap()[0]
        ["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vm-controllers/{dom0}")).0, 405);
    assert_eq!(delete(&edge, &t, "/rest/v0/vms/00000000-0000-4000-8000-000000000000").0, 404);
}

#[test]
fn disks_in_use_are_refused_and_others_deleted() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let running = edge.uuid_of(&t, "vms", "Ubuntu 22.04 db");
    let vdis: Vec<J> =
        edge.get(&format!("/rest/v0/vms/{running}/vdis?fields=uuid")).bearer_auth(&t).send().unwrap().json().unwrap();
    let attached = vdis[0]["uuid"].as_str().unwrap();
    let before = counts(&edge);
    let (code, e) = delete(&edge, &t, &format!("/rest/v0/vdis/{attached}"));
    assert_eq!((code, e["data"]["code"].as_str()), (409, Some("VDI_IN_USE")), "{e}");
    assert_eq!(counts(&edge), before);
    let loose = edge.sim_disk("loose", 1 << 20, 1);
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vdis/{loose}")).0, 204);
    assert_eq!(status(&edge, &t, &format!("/rest/v0/vdis/{loose}")), 404);
    let snap = edge.get("/rest/v0/vdi-snapshots?fields=uuid").bearer_auth(&t).send().unwrap().json::<J>().unwrap()[0]
        ["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vdi-snapshots/{snap}")).0, 204);
    assert_eq!(status(&edge, &t, &format!("/rest/v0/vdi-snapshots/{snap}")), 404);
    // A VDI id under the wrong collection is not found there.
    let some = vdis[0]["uuid"].as_str().unwrap();
    assert_eq!(delete(&edge, &t, &format!("/rest/v0/vdi-snapshots/{some}")).0, 404);
}

/// A disk XAPI refuses to destroy once the VM is gone: the answer says what went and what is left.
#[test]
fn a_delete_failing_half_way_says_what_was_destroyed() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let vdis: Vec<J> =
        edge.get(&format!("/rest/v0/vms/{vm}/vdis?fields=uuid")).bearer_auth(&t).send().unwrap().json().unwrap();
    assert!(!vdis.is_empty());
    let faults =
        json!({"fail": [{"method": "VDI.destroy", "nth": 1, "error": ["SR_BACKEND_FAILURE_1200", "", "busy", ""]}]});
    edge.faults(faults);
    let (code, e) = delete(&edge, &t, &format!("/rest/v0/vms/{vm}"));
    assert!(code >= 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("deleted in part"), "{e}");
    assert!(e["data"]["destroyed"].as_array().unwrap().contains(&json!(vm)), "{e}");
    let left = e["data"]["notDestroyed"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{e}");
    assert_eq!(status(&edge, &t, &format!("/rest/v0/vms/{vm}")), 404);
    assert_eq!(
        status(&edge, &t, &format!("/rest/v0/vdis/{}", left[0].as_str().unwrap())),
        200,
        "the disk left is there"
    );
}
