//! Issue 16, item 5 (tasks are XAPI's tasks), end to end through the runtime: the task stream
//! (`GET /rest/v0/tasks?ndjson&watch`), an object's pending tasks, progress while an operation runs, abort
//! (`task.cancel`) and `DELETE /rest/v0/tasks/<id>`.

mod common;

use common::Edge;
use serde_json::{json, Value as J};
use std::sync::mpsc;
use std::time::Duration;

const PASSWORD: &str = "xapi-sim";

fn get(edge: &Edge, t: &str, path: &str) -> (u16, J) {
    let r = edge.get(path).bearer_auth(t).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(J::Null))
}

fn post(edge: &Edge, t: &str, path: &str, body: &str) -> reqwest::blocking::Response {
    let r = edge.http.post(format!("{}{path}", edge.url)).bearer_auth(t).header("accept", "application/json");
    r.body(body.to_string()).send().unwrap()
}

/// Lines until one satisfies `done` (at most 15 s between lines).
fn until(rx: &mpsc::Receiver<J>, done: impl Fn(&J) -> bool) -> Vec<J> {
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        let stop = done(&line);
        seen.push(line);
        if stop {
            return seen;
        }
    }
    panic!("the stream never said it: {seen:#?}");
}

#[test]
fn the_task_stream_follows_an_action_from_start_to_removal() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    assert_eq!(get(&edge, &t, "/rest/v0/tasks?watch").0, 400, "watch needs ndjson");
    // A task from before the watch is not dumped: only changes are streamed.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start"), "");
    let before = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    assert_eq!(get(&edge, &t, &format!("/rest/v0/tasks/{before}?wait=result")).1["status"], "success");
    let rx = edge.watch_tasks(&t, "ndjson&watch&fields=status,progress,properties");
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clean_shutdown"), "");
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    let href = format!("/rest/v0/tasks/{id}");
    let lines = until(&rx, |l| l[0] == "update" && l[1]["href"] == href.as_str() && l[1]["status"] == "success");
    let mine: Vec<&J> = lines.iter().filter(|l| l[1]["href"] == href.as_str()).collect();
    assert_eq!(mine.last().unwrap()[1]["progress"], 100);
    assert_eq!(mine[0][1]["properties"]["name"], "Async.VM.clean_shutdown", "{mine:?}");
    assert!(mine[0][1].get("start").is_none(), "fields apply: {:?}", mine[0]);
    assert!(lines.iter().all(|l| l[1]["href"] != format!("/rest/v0/tasks/{before}").as_str() || l[0] == "remove"));
    // Deleting the task: a removal line naming it.
    let del = edge.http.delete(format!("{}{href}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    let lines = until(&rx, |l| l[0] == "remove" && l[1]["id"] == id.as_str());
    assert_eq!(lines.last().unwrap()[1]["href"], href.as_str());
    assert_eq!(get(&edge, &t, &href).0, 404);
    // The removal of a task that existed before the watch is named too.
    let del = edge.http.delete(format!("{}/rest/v0/tasks/{before}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    until(&rx, |l| l[0] == "remove" && l[1]["id"] == before.as_str());
    // A filter applies to updates.
    let rx = edge.watch_tasks(&t, "ndjson&watch&filter=status:success");
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/start"), "");
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    let lines = until(&rx, |l| l[1]["href"] == format!("/rest/v0/tasks/{id}").as_str());
    assert!(lines.iter().all(|l| l[0] != "update" || l[1]["status"] == "success"), "{lines:?}");
}

#[test]
fn a_running_operation_shows_progress_on_its_object_and_can_be_aborted() {
    let edge = Edge::start();
    let t = edge.token("root", PASSWORD);
    let vm = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let vms = edge.sim_stats()["objects"]["VM"].clone();
    edge.faults(json!({"op_duration_ms": {"VM.clone": 3000}}));
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clone"), r#"{"name_label":"slow"}"#);
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(800));
    // The VM's pending tasks.
    let (status, tasks) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/tasks?fields=id,status,progress"));
    assert_eq!(status, 200);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!((tasks[0]["id"].as_str(), tasks[0]["status"].as_str()), (Some(id.as_str()), Some("pending")));
    let progress = tasks[0]["progress"].as_f64().unwrap();
    assert!(progress > 0.0 && progress < 100.0, "{progress}");
    let (_, listed) = get(&edge, &t, &format!("/rest/v0/vms/{vm}/tasks"));
    assert_eq!(listed, json!([format!("/rest/v0/tasks/{id}")]));
    // Abort: a real 202; the task ends as a failure (XAPI: cancelled) and nothing was cloned.
    let r = post(&edge, &t, &format!("/rest/v0/tasks/{id}/actions/abort"), "");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(r.headers()["location"], format!("/rest/v0/tasks/{id}").as_str());
    let (_, task) = get(&edge, &t, &format!("/rest/v0/tasks/{id}?wait=result"));
    assert_eq!((task["status"].as_str(), task["xapiStatus"].as_str()), (Some("failure"), Some("cancelled")), "{task}");
    assert_eq!(task["result"]["code"], "TASK_CANCELLED");
    assert_eq!(edge.sim_stats()["objects"]["VM"], vms);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/vms/{vm}/tasks")).1, json!([]));
    // An ended task cannot be aborted.
    let r = post(&edge, &t, &format!("/rest/v0/tasks/{id}/actions/abort"), "");
    assert_eq!(r.status().as_u16(), 409);
    // ?sync: answered once the task has ended.
    let r = post(&edge, &t, &format!("/rest/v0/vms/{vm}/actions/clone"), "{}");
    let id = r.json::<J>().unwrap()["taskId"].as_str().unwrap().to_string();
    let r = post(&edge, &t, &format!("/rest/v0/tasks/{id}/actions/abort?sync"), "");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/tasks/{id}")).1["xapiStatus"], "cancelled");
    // abort is listed among the tasks' actions; a task that is no XAPI task is 404.
    assert_eq!(get(&edge, &t, "/rest/v0/tasks/_/actions").1, json!(["/rest/v0/tasks/_/actions/abort"]));
    let r = post(&edge, &t, "/rest/v0/tasks/00000000-0000-4000-8000-000000000000/actions/abort", "");
    assert_eq!(r.status().as_u16(), 404);
}
