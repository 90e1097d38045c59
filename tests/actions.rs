//! Issue 16, items 4 and 5 (VM actions), end to end through the runtime: actions listed and described (JSON Schema),
//! run as XAPI tasks (202 + `Location: /rest/v0/tasks/<uuid>`, or `?sync`: the outcome), parameters validated and
//! power states checked before any XAPI call.

mod common;

use common::Edge;
use serde_json::{json, Value as J};

const PASSWORD: &str = "xapi-sim";

fn get(edge: &Edge, t: &str, path: &str) -> (u16, J) {
    let r = edge.get(path).bearer_auth(t).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(J::Null))
}

fn post(edge: &Edge, t: &str, path: &str, body: &str, json_wanted: bool) -> reqwest::blocking::Response {
    let mut r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(t).body(body.to_string());
    if json_wanted {
        r = r.header("accept", "application/json");
    }
    r.send().unwrap()
}

#[test]
fn actions_are_listed_and_described() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let (status, list) = get(&edge, &t, "/rest/v0/vms/_/actions");
    assert_eq!(status, 200);
    let list: Vec<&str> = list.as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for name in ["start", "clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "pause", "unpause"] {
        assert!(list.contains(&format!("/rest/v0/vms/_/actions/{name}").as_str()), "{name}: {list:?}");
    }
    assert!(list.contains(&"/rest/v0/vms/_/actions/snapshot"));
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let (_, mine) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/actions"));
    assert!(mine[0].as_str().unwrap().starts_with(&format!("/rest/v0/vms/{vm}/actions/")));
    let (status, described) = get(&edge, &t, "/rest/v0/vms/_/actions/snapshot");
    assert_eq!(status, 200);
    assert_eq!(described["params"]["properties"]["name_label"]["type"], "string");
    assert_eq!(described["params"]["additionalProperties"], false);
    assert_eq!(get(&edge, &t, "/rest/v0/vms/_/actions/fly").0, 404);
    assert_eq!(get(&edge, &t, "/rest/v0/srs/_/actions").1, json!([]));
    assert_eq!(get(&edge, &t, "/rest/v0/vms/00000000-0000-4000-8000-000000000000/actions").0, 404);
}

#[test]
fn an_action_runs_as_an_xapi_task() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    // Legacy answer: 202, the task's href as text and in Location.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start"), "", false);
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/rest/v0/tasks/"), "{location}");
    assert_eq!(r.text().unwrap(), location);
    let (status, task) = get(&edge, &t, &format!("{location}?wait=result"));
    assert_eq!((status, task["status"].as_str()), (200, Some("success")), "{task}");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Running");
    // With Accept: application/json, {"taskId"}.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clean_shutdown"), "{}", true);
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    assert_eq!(get(&edge, &t, &format!("/rest/v0/tasks/{id}?wait=result")).1["status"], "success");
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Halted");
    // ?sync: the outcome itself, and the edge's task is gone.
    let tasks = edge.sim_stats()["tasks"].clone();
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start?sync"), "", false);
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}")).1["power_state"], "Running");
    assert_eq!(edge.sim_stats()["tasks"], tasks, "no task left by a sync action");
}

#[test]
fn a_sync_snapshot_answers_the_new_snapshot_and_leaves_nosnap_disks_out() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Ubuntu 22.04 db");
    let (_, disks) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/vdis?fields=uuid,name_label"));
    let disks = disks.as_array().unwrap().clone();
    assert!(disks.len() >= 2, "{disks:?}");
    let scratch = disks[1]["uuid"].as_str().unwrap();
    let r = edge
        .http
        .patch(format!("{}/rest/v0/vdis/{scratch}", edge.url))
        .bearer_auth(&t)
        .body(r#"{"name_label":"[NOSNAP] scratch"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/snapshot?sync"), r#"{"name_label":"before"}"#, true);
    assert_eq!(r.status().as_u16(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = r.json::<J>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/rest/v0/vm-snapshots/{id}"));
    let (status, snapshot) = get(&edge, &t, &location);
    assert_eq!((status, snapshot["name_label"].as_str()), (200, Some("before")));
    let (_, snap_disks) = get(&edge, &t, &format!("{location}/vdis?fields=name_label"));
    let names: Vec<&str> = snap_disks.as_array().unwrap().iter().filter_map(|d| d["name_label"].as_str()).collect();
    assert_eq!(names.len(), disks.len() - 1, "{names:?}");
    assert!(!names.iter().any(|n| n.contains("[NOSNAP]")), "{names:?}");
}

#[test]
fn bad_parameters_and_wrong_states_are_refused_before_any_call() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let running = edge.uuid_of(&t, "vms", "Debian 12 web");
    let before = (edge.sim_calls_of("Async.VM.start"), edge.sim_calls_of("Async.VM.snapshot"));
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/start"), "", false);
    assert_eq!(r.status().as_u16(), 409);
    let e = r.json::<J>().unwrap();
    assert_eq!(e["data"]["code"], "VM_BAD_POWER_STATE", "{e}");
    for body in [r#"{"name_label":1}"#, r#"{"nope":true}"#, "[]", "{"] {
        let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/snapshot"), body, false);
        assert_eq!(r.status().as_u16(), 400, "{body}");
    }
    assert_eq!(post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/fly"), "", false).status().as_u16(), 404);
    assert_eq!(post(&edge, &t, "/rest/v0/vms/_/actions/start", "", false).status().as_u16(), 404);
    assert_eq!((edge.sim_calls_of("Async.VM.start"), edge.sim_calls_of("Async.VM.snapshot")), before);
    // The counter does count: a good request is one call.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{running}/actions/snapshot?sync"), "{}", false);
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(edge.sim_calls_of("Async.VM.snapshot"), before.1 + 1);
}
