//! Collections and objects end to end: the bundle under wasmtime serve against the simulator's demo pool.

mod common;
use common::Edge;
use serde_json::{json, Value as J};
use std::process::Command;

fn get(edge: &Edge, path: &str) -> (u16, String, String) {
    let r = edge.get(path).basic_auth("root", Some("xapi-sim")).send().unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, r.text().unwrap())
}

fn get_json(edge: &Edge, path: &str) -> J {
    let (status, ct, body) = get(edge, path);
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(ct, "application/json", "{path}");
    serde_json::from_str(&body).unwrap()
}

/// Records of `class` straight from XAPI, by ref.
fn records(edge: &Edge, class: &str) -> serde_json::Map<String, J> {
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let r = edge.xapi(&format!("{class}.get_all_records"), json!([sid]))["result"].clone();
    edge.xapi("session.logout", json!([sid]));
    r.as_object().unwrap().clone()
}

#[test]
fn seed_examples_work_verbatim() {
    let edge = Edge::start();
    let token = edge.token("root", "xapi-sim");
    // curl -b authenticationToken=… http://…/rest/v0/vms?fields=name_label,power_state
    let out = Command::new("curl")
        .args([
            "-s",
            "-b",
            &format!("authenticationToken={token}"),
            &format!("{}/rest/v0/vms?fields=name_label,power_state", edge.url),
        ])
        .output()
        .unwrap();
    let vms: J = serde_json::from_slice(&out.stdout).unwrap();
    let vms = vms.as_array().unwrap();
    assert_eq!(vms.len(), 10);
    for v in vms {
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["name_label", "power_state", "href"]);
        assert!(v["href"].as_str().unwrap().starts_with("/rest/v0/vms/"));
    }
    assert!(vms.iter().any(|v| v["name_label"] == "XOA 🎷" && v["power_state"] == "Running"));
    // GET /rest/v0/vms (hrefs) and the NDJSON form.
    let hrefs = get_json(&edge, "/rest/v0/vms");
    assert_eq!(hrefs.as_array().unwrap().len(), 10);
    let (status, ct, body) = get(&edge, "/rest/v0/vms?fields=name_label,power_state&ndjson");
    assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<J> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l["href"].is_string()));
}

/// (collection, XAPI class, membership of a record, XO type)
type Case<'a> = (&'a str, &'a str, &'a dyn Fn(&J) -> bool, &'a str);

#[test]
fn every_collection_matches_xapis_records() {
    let edge = Edge::start();
    let pool_uuid = records(&edge, "pool").values().next().unwrap()["uuid"].clone();
    let cases: &[Case] = &[
        (
            "vms",
            "VM",
            &|r| r["is_a_template"] == false && r["is_a_snapshot"] == false && r["is_control_domain"] == false,
            "VM",
        ),
        ("vm-snapshots", "VM", &|r| r["is_a_snapshot"] == true, "VM-snapshot"),
        (
            "vm-templates",
            "VM",
            &|r| r["is_a_template"] == true && r["is_a_snapshot"] == false && r["is_control_domain"] == false,
            "VM-template",
        ),
        ("vm-controllers", "VM", &|r| r["is_control_domain"] == true, "VM-controller"),
        ("hosts", "host", &|_| true, "host"),
        ("pools", "pool", &|_| true, "pool"),
        ("srs", "SR", &|_| true, "SR"),
        ("vdis", "VDI", &|r| r["is_a_snapshot"] == false, "VDI"),
        ("vdi-snapshots", "VDI", &|r| r["is_a_snapshot"] == true, "VDI-snapshot"),
        ("networks", "network", &|_| true, "network"),
        ("vbds", "VBD", &|_| true, "VBD"),
        ("vifs", "VIF", &|_| true, "VIF"),
        ("pifs", "PIF", &|_| true, "PIF"),
        ("messages", "message", &|r| r["name"] != "ALARM", "message"),
        ("tasks", "task", &|_| true, "task"),
    ];
    for (coll, class, member, xo_type) in cases {
        let recs = records(&edge, class);
        let expected: Vec<(&String, &J)> = recs.iter().filter(|(_, r)| member(r)).collect();
        let objects = get_json(&edge, &format!("/rest/v0/{coll}?fields=*"));
        let objects = objects.as_array().unwrap();
        assert_eq!(objects.len(), expected.len(), "{coll}");
        for (r, rec) in expected {
            let o = objects.iter().find(|o| o["_xapiRef"] == json!(r)).unwrap_or_else(|| panic!("{coll}: {r} missing"));
            assert_eq!(o["id"], rec["uuid"], "{coll}");
            assert_eq!(o["uuid"], rec["uuid"]);
            assert_eq!(o["type"], json!(xo_type));
            assert_eq!(o["$pool"], pool_uuid);
            assert_eq!(o["href"], json!(format!("/rest/v0/{coll}/{}", rec["uuid"].as_str().unwrap())));
            if let Some(name) = rec.get("name_label") {
                assert_eq!(&o["name_label"], name, "{coll}");
            }
        }
    }
    // Type-specific fields against the records they come from.
    let vms = records(&edge, "VM");
    let vifs = records(&edge, "VIF");
    let hosts = records(&edge, "host");
    let web = get_json(&edge, "/rest/v0/vms?fields=*&filter=name_label:%22Debian%2012%20web%22");
    let web = &web[0];
    let rec = &vms[web["_xapiRef"].as_str().unwrap()];
    assert_eq!(web["CPUs"]["max"], rec["VCPUs_max"]);
    assert_eq!(web["memory"]["static"], json!([rec["memory_static_min"], rec["memory_static_max"]]));
    assert_eq!(web["power_state"], "Running");
    assert_eq!(web["$container"], hosts[rec["resident_on"].as_str().unwrap()]["uuid"]);
    let vif_uuids: Vec<J> =
        rec["VIFs"].as_array().unwrap().iter().map(|r| vifs[r.as_str().unwrap()]["uuid"].clone()).collect();
    assert_eq!(web["VIFs"], json!(vif_uuids));
    assert_eq!(web["mainIpAddress"], "192.0.2.101");
    assert_eq!(web["snapshots"].as_array().unwrap().len(), 1);
    // A halted VM whose disk is on the host-local SR lives on that host; others on the pool.
    let win = get_json(&edge, "/rest/v0/vms?fields=$container,power_state&filter=name_label:Windows");
    assert_eq!(win[0]["$container"], pool_uuid);
    let sr = get_json(&edge, "/rest/v0/srs?fields=*&filter=name_label:%22Local%20storage%22");
    assert_eq!(sr[0]["allocationStrategy"], "thick");
    assert_eq!(sr[0]["shared"], false);
    let host = get_json(&edge, "/rest/v0/hosts?fields=*&filter=name_label:xcp-host1");
    assert_eq!(host[0]["power_state"], "Running");
    assert_eq!(host[0]["productBrand"], "XCP-ng");
    assert_eq!(host[0]["memory"]["size"], json!(64u64 << 30));
}

#[test]
fn query_parameters_and_their_combinations() {
    let edge = Edge::start();
    let only_href = get_json(&edge, "/rest/v0/vms?fields=");
    assert!(only_href
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o.as_object().unwrap().keys().collect::<Vec<_>>() == ["href"]));
    let running = get_json(&edge, "/rest/v0/vms?filter=power_state:running");
    assert_eq!(running.as_array().unwrap().len(), 3);
    let limited = get_json(&edge, "/rest/v0/vms?filter=power_state:running&limit=2&fields=power_state");
    assert_eq!(limited.as_array().unwrap().len(), 2, "limit applies after filter");
    assert!(limited.as_array().unwrap().iter().all(|o| o["power_state"] == "Running"));
    assert_eq!(get_json(&edge, "/rest/v0/vms?limit=0"), json!([]));
    let tagged = get_json(&edge, "/rest/v0/vms?filter=tags:prod&fields=name_label,tags");
    assert_eq!(tagged.as_array().unwrap().len(), 2);
    let nested = get_json(&edge, "/rest/v0/vms?filter=name_label:XOA&fields=memory.size,CPUs");
    assert_eq!(nested[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["memory", "CPUs", "href"]);
    assert!(nested[0]["memory"]["size"].is_number() && nested[0]["memory"].as_object().unwrap().len() == 1);
    let (_, ct, body) = get(&edge, "/rest/v0/srs?ndjson=false&fields=name_label&filter=!content_type:iso");
    assert_eq!(ct, "application/x-ndjson", "ndjson by presence, as legacy XO");
    assert_eq!(body.lines().count(), 2);
    // XO 6's `markdown=true`: a table of the first item's fields (href left out), in the listing's order.
    let (status, ct, body) =
        get(&edge, "/rest/v0/vms?fields=name_label,power_state,tags&filter=power_state:running&markdown=true");
    assert_eq!((status, ct.as_str()), (200, "text/markdown; charset=utf-8"), "{body}");
    let json_rows = get_json(&edge, "/rest/v0/vms?fields=name_label,power_state,tags&filter=power_state:running");
    let mut expected = vec!["| name_label | power_state | tags |".to_string(), "| --- | --- | --- |".to_string()];
    for o in json_rows.as_array().unwrap() {
        let tags = serde_json::to_string(&o["tags"]).unwrap();
        expected.push(format!(
            "| {} | {} | {tags} |",
            o["name_label"].as_str().unwrap(),
            o["power_state"].as_str().unwrap()
        ));
    }
    assert_eq!(body, expected.join("\n"));
    let (_, ct, body) = get(&edge, "/rest/v0/srs?markdown&limit=2");
    assert_eq!(ct, "text/markdown; charset=utf-8");
    assert!(body.lines().count() == 2 && body.lines().all(|l| l.starts_with("/rest/v0/srs/")), "{body}");
    assert_eq!(get(&edge, "/rest/v0/vms?markdown=true&filter=name_label:nothing-is-called-this").2, "No results.");
    assert_eq!(get(&edge, "/rest/v0/vms?markdown=false").1, "application/json");
    for bad in ["markdown=maybe", "markdown=true&ndjson"] {
        let (status, ct, body) = get(&edge, &format!("/rest/v0/vms?{bad}"));
        assert_eq!((status, ct.as_str()), (400, "application/json"), "{bad}: {body}");
    }
    let vm = json_rows[0]["href"].as_str().unwrap();
    let (status, ct, _) = get(&edge, &format!("{vm}/vdis?fields=name_label&markdown=true"));
    assert_eq!((status, ct.as_str()), (200, "text/markdown; charset=utf-8"));
    let (status, _, body) = get(&edge, "/rest/v0/vms?filter=%28a");
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<J>(&body).unwrap(),
        json!({"error": "parse error: expected end of input at position 0", "data": {"stringToParse": "(a"}})
    );
    let (status, _, body) = get(&edge, "/rest/v0/vms?filter=%3Eabc");
    assert_eq!(
        (status, serde_json::from_str::<J>(&body).unwrap()["error"].clone()),
        (400, json!("value must be a number"))
    );
    assert_eq!(get(&edge, "/rest/v0/vms?limit=-1").0, 400);
    assert_eq!(get(&edge, "/rest/v0/nope").0, 404);
}

#[test]
fn single_objects_by_uuid_or_ref_and_404s() {
    let edge = Edge::start();
    let vm = &get_json(&edge, "/rest/v0/vms?fields=*&filter=name_label:Rocky")[0];
    let uuid = vm["id"].as_str().unwrap();
    let by_uuid = get_json(&edge, &format!("/rest/v0/vms/{uuid}"));
    let by_ref = get_json(&edge, &format!("/rest/v0/vms/{}", vm["_xapiRef"].as_str().unwrap()));
    assert_eq!(by_uuid, by_ref);
    let mut listed = vm.clone();
    listed.as_object_mut().unwrap().remove("href");
    assert_eq!(by_uuid, listed, "the object equals the listing's fields=*");
    // The same for every collection: an object GET (links fetched ref by ref) equals its listing entry (joins).
    for coll in [
        "vms",
        "vm-snapshots",
        "vm-templates",
        "vm-controllers",
        "hosts",
        "pools",
        "srs",
        "vdis",
        "vdi-snapshots",
        "networks",
        "vbds",
        "vifs",
        "pifs",
        "messages",
    ] {
        for mut listed in get_json(&edge, &format!("/rest/v0/{coll}?fields=*")).as_array().unwrap().clone() {
            let href = listed["href"].as_str().unwrap().to_string();
            listed.as_object_mut().unwrap().remove("href");
            assert_eq!(get_json(&edge, &href), listed, "{href}");
        }
    }
    for path in [
        format!("/rest/v0/vdis/{uuid}"),
        format!("/rest/v0/vm-templates/{uuid}"),
        "/rest/v0/vms/00000000-0000-0000-0000-000000000000".to_string(),
        "/rest/v0/vms/OpaqueRef:00000000-0000-0000-0000-000000000000".to_string(),
    ] {
        let (status, ct, body) = get(&edge, &path);
        assert_eq!((status, ct.as_str()), (404, "application/json"), "{path}");
        assert!(serde_json::from_str::<J>(&body).unwrap()["error"].as_str().unwrap().starts_with("no such"));
    }
    // Ids that cannot name an object are refused without asking XAPI.
    let token = edge.token("root", "xapi-sim");
    let before = edge.sim_calls();
    for bad in ["not-a-uuid", "OpaqueRef:a%20b", "..%2F..%2Fetc"] {
        let r = edge.get(&format!("/rest/v0/vms/{bad}")).bearer_auth(&token).send().unwrap();
        assert_eq!(r.status().as_u16(), 404, "{bad}");
    }
    assert_eq!(edge.sim_calls(), before, "no XAPI call for an impossible id");
    let tpl = &get_json(&edge, "/rest/v0/vm-templates?fields=id,name_label&filter=name_label:Bookworm")[0];
    assert_eq!(get(&edge, &format!("/rest/v0/vms/{}", tpl["id"].as_str().unwrap())).0, 404);
    assert_eq!(
        get_json(&edge, &format!("/rest/v0/vm-templates/{}", tpl["id"].as_str().unwrap()))["type"],
        "VM-template"
    );
}

#[test]
fn vm_vdis_and_task_wait() {
    let edge = Edge::start();
    let web = &get_json(&edge, "/rest/v0/vms?fields=id&filter=name_label:%22Debian%2012%20web%22")[0];
    let vdis = get_json(&edge, &format!("/rest/v0/vms/{}/vdis?fields=name_label,type", web["id"].as_str().unwrap()));
    let names: Vec<&str> = vdis.as_array().unwrap().iter().map(|v| v["name_label"].as_str().unwrap()).collect();
    assert!(names.contains(&"web root") && names.contains(&"web data"), "{names:?}");
    let snap = &get_json(&edge, "/rest/v0/vm-snapshots?fields=id&filter=name_label:upgrade")[0];
    let snap_vdis = get_json(&edge, &format!("/rest/v0/vm-snapshots/{}/vdis", snap["id"].as_str().unwrap()));
    assert!(snap_vdis
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h.as_str().unwrap().starts_with("/rest/v0/vdi-snapshots/") || h.as_str().unwrap().contains("/vdis/")));
    assert!(snap_vdis.as_array().unwrap().iter().any(|h| h.as_str().unwrap().starts_with("/rest/v0/vdi-snapshots/")));
    // wait=result returns once the task leaves `pending`.
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let task = edge.xapi("task.create", json!([sid, "long job", ""]))["result"].clone();
    let task_uuid = edge.xapi("task.get_uuid", json!([sid, task]))["result"].as_str().unwrap().to_string();
    let pending = get_json(&edge, &format!("/rest/v0/tasks/{task_uuid}"));
    assert_eq!(pending["status"], "pending");
    let url = format!("{}/rest/v0/tasks/{task_uuid}?wait=result", edge.url);
    let waiter = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        let r: J = reqwest::blocking::Client::new()
            .get(url)
            .basic_auth("root", Some("xapi-sim"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        (r, t0.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    // The task's owner ends it (a `task.cancel` would only be recorded: no operation runs under this task).
    edge.xapi("task.set_status", json!([sid, task, "cancelled"]));
    let (done, waited) = waiter.join().unwrap();
    // XO 6's task status, and XAPI's beside it.
    assert_eq!((done["status"].clone(), done["xapiStatus"].clone()), (json!("failure"), json!("cancelled")));
    assert!(waited.as_millis() >= 500, "it waited ({waited:?})");
}

#[test]
fn listings_fetch_only_what_they_need() {
    let edge = Edge::start();
    let before = edge.sim_stats()["calls"].clone();
    let token = edge.token("root", "xapi-sim");
    let r = edge
        .get("/rest/v0/vms?fields=name_label,power_state&filter=power_state:running")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.json::<J>().unwrap().as_array().unwrap().len(), 3);
    let after = edge.sim_stats()["calls"].clone();
    let delta = |m: &str| after[m].as_u64().unwrap_or(0) - before[m].as_u64().unwrap_or(0);
    assert_eq!(delta("VM.get_all_records_where"), 1);
    for m in ["VM_metrics.get_all_records", "VBD.get_all_records", "pool.get_all", "VM.get_all_records"] {
        assert_eq!(delta(m), 0, "{m} is not needed for name_label and power_state");
    }
}

#[test]
fn large_listings_stream_complete_in_both_formats() {
    let edge = Edge::start_with(&[], xapi_sim::Options { demo: false, vms: 3000, ..Default::default() });
    let (status, ct, body) = get(&edge, "/rest/v0/vms?ndjson&fields=name_label,power_state");
    assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
    let names: std::collections::HashSet<String> = body
        .lines()
        .map(|l| serde_json::from_str::<J>(l).unwrap()["name_label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 3000, "every VM once, across many chunks ({} bytes)", body.len());
    let all = get_json(&edge, "/rest/v0/vms?fields=*&limit=1500");
    assert_eq!(all.as_array().unwrap().len(), 1500);
    let running = get_json(&edge, "/rest/v0/vms?filter=power_state:running");
    assert_eq!(running.as_array().unwrap().len(), 1000);
}
