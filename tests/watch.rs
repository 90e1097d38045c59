//! Issue 19, watching the pool: alarms (XO 6's shape: the body parsed, the object named), the messages and alarms
//! about one object, and the collections of storage drivers, PCI devices and physical GPUs, end to end through the
//! runtime against the simulator's demo pool.

mod common;
use common::Edge;
use serde_json::{json, Value as J};

fn get(edge: &Edge, token: &str, path: &str) -> (u16, J) {
    let r = edge.get(path).bearer_auth(token).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| J::String(text)))
}

#[test]
fn alarms_and_the_messages_about_an_object() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let host = edge.uuid_of(&t, "hosts", "xcp-host1");
    let web = edge.uuid_of(&t, "vms", "Debian 12 web");
    // The demo's alarm: the master's CPU above its threshold (`value: 0.95`, `cpu_usage`).
    let (status, alarms) = get(&edge, &t, "/rest/v0/alarms?fields=*");
    assert_eq!(status, 200);
    let alarms = alarms.as_array().unwrap().clone();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let a = &alarms[0];
    assert_eq!(a["name"], "ALARM");
    assert_eq!(a["body"], json!({"value": "95.0", "name": "cpu_usage"}));
    assert_eq!(a["object"], json!({"type": "host", "uuid": host, "href": format!("/rest/v0/hosts/{host}")}));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let time = a["time"].as_i64().unwrap();
    assert!((now_ms - time).abs() < 3_600_000, "time in milliseconds: {time}");
    // One alarm, by id, the same (its object fetched by uuid, not with the whole class).
    let (status, one) = get(&edge, &t, &format!("/rest/v0/alarms/{}", a["id"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert_eq!((one["body"].clone(), one["object"].clone()), (a["body"].clone(), a["object"].clone()));
    // A message is not an alarm, and an alarm not a message.
    let (_, messages) = get(&edge, &t, "/rest/v0/messages?fields=name");
    assert!(messages.as_array().unwrap().iter().all(|m| m["name"] != "ALARM"));
    let (status, _) = get(&edge, &t, &format!("/rest/v0/messages/{}", a["id"].as_str().unwrap()));
    assert_eq!(status, 404);
    // Per object.
    let (status, host_alarms) = get(&edge, &t, &format!("/rest/v0/hosts/{host}/alarms?fields=name,body"));
    assert_eq!(status, 200);
    assert_eq!(
        host_alarms,
        json!([{"name": "ALARM", "body": {"value": "95.0", "name": "cpu_usage"}, "href": format!("/rest/v0/alarms/{}", a["id"].as_str().unwrap())}])
    );
    let (_, host_messages) = get(&edge, &t, &format!("/rest/v0/hosts/{host}/messages"));
    assert_eq!(host_messages, json!([]));
    let (_, vm_messages) = get(&edge, &t, &format!("/rest/v0/vms/{web}/messages?fields=name,body,$object"));
    assert_eq!(vm_messages[0]["name"], "VM_STARTED");
    assert_eq!(vm_messages[0]["$object"], web.as_str());
    assert_eq!(vm_messages.as_array().unwrap().len(), 1);
    let (_, vm_alarms) = get(&edge, &t, &format!("/rest/v0/vms/{web}/alarms"));
    assert_eq!(vm_alarms, json!([]));
    // The listing's parameters work there too.
    let r = edge.get(&format!("/rest/v0/vms/{web}/messages?ndjson&fields=name")).bearer_auth(&t).send().unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<J> = r.text().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["name"], "VM_STARTED");
    let (_, none) = get(&edge, &t, &format!("/rest/v0/vms/{web}/messages?filter=name:VM_SHUTDOWN"));
    assert_eq!(none, json!([]));
    // A new message about the VM shows up; an unknown object is a 404.
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    edge.xapi("message.create", json!([sid, "VM_REBOOTED", 3, "VM", web, "rebooted"]));
    let (_, vm_messages) = get(&edge, &t, &format!("/rest/v0/vms/{web}/messages?fields=name&limit=5"));
    assert_eq!(vm_messages.as_array().unwrap().len(), 2);
    let (status, _) = get(&edge, &t, "/rest/v0/vms/00000000-0000-0000-0000-000000000000/messages");
    assert_eq!(status, 404);
    let (status, _) = get(&edge, &t, &format!("/rest/v0/tasks/{web}/alarms"));
    assert_eq!(status, 404, "tasks have no alarms");
}

#[test]
fn storage_drivers_pci_devices_and_gpus() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let (status, sms) = get(&edge, &t, "/rest/v0/sms?fields=SM_type,name_label,supported_image_formats");
    assert_eq!(status, 200);
    let types: Vec<&str> = sms.as_array().unwrap().iter().map(|s| s["SM_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["nfs", "ext", "iso", "lvm"]);
    assert_eq!(sms[0]["supported_image_formats"], json!(["vhd", "raw"]));
    let (_, nfs) = get(&edge, &t, "/rest/v0/sms?filter=SM_type:nfs&fields=features,driver_filename");
    assert_eq!(nfs[0]["driver_filename"], "/opt/xensource/sm/NFSSR");
    assert_eq!(nfs[0]["features"]["VDI_SNAPSHOT"], 1);
    let host1 = edge.uuid_of(&t, "hosts", "xcp-host1");
    let (_, pcis) = get(&edge, &t, &format!("/rest/v0/pcis?filter=%24host:{host1}&fields=class_name,pci_id,$host"));
    let pcis = pcis.as_array().unwrap();
    assert_eq!(pcis.len(), 2, "{pcis:?}");
    assert!(pcis.iter().all(|p| p["$host"] == host1.as_str()));
    let vga = pcis.iter().find(|p| p["class_name"] == "VGA compatible controller").unwrap();
    let (_, pgpus) = get(&edge, &t, "/rest/v0/pgpus?fields=*");
    let pgpus = pgpus.as_array().unwrap();
    assert_eq!(pgpus.len(), 2, "one per host");
    let mine = pgpus.iter().find(|g| g["host"] == host1.as_str()).unwrap();
    assert_eq!(mine["pci"], vga["href"].as_str().unwrap().rsplit('/').next().unwrap());
    assert_eq!((mine["isSystemDisplayDevice"].clone(), mine["dom0Access"].clone()), (json!(true), json!("enabled")));
    assert!(mine["gpuGroup"].is_string());
    // One by one: links resolved ref by ref.
    let (status, one) = get(&edge, &t, &format!("/rest/v0/pgpus/{}", mine["id"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert_eq!(
        (one["pci"].clone(), one["gpuGroup"].clone(), one["$host"].clone()),
        (mine["pci"].clone(), mine["gpuGroup"].clone(), json!(host1))
    );
    // The host lists them.
    let (_, h) = get(&edge, &t, &format!("/rest/v0/hosts/{host1}"));
    assert_eq!(h["PGPUs"].as_array().map(Vec::len), Some(1));
    assert_eq!(h["PCIs"].as_array().map(Vec::len), Some(2));
}

/// XO 6's `GET /rest/v0/ping`: no credentials needed, no XAPI call made.
#[test]
fn ping_answers_without_credentials_or_xapi() {
    let edge = Edge::start();
    let calls = edge.sim_calls();
    let r = edge.get("/rest/v0/ping").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: J = r.json().unwrap();
    assert_eq!(body["result"], "pong");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64;
    assert!((now_ms - body["timestamp"].as_f64().unwrap()).abs() < 5_000.0, "{body}");
    assert_eq!(edge.sim_calls(), calls, "XAPI was not asked");
    assert_eq!(edge.http.post(format!("{}/rest/v0/ping", edge.url)).send().unwrap().status().as_u16(), 401);
}

/// Statistics from XAPI's `/rrd_updates`, in XO's shape: series oldest first, CPUs in percent, memory in bytes, VIFs
/// and disks by device; the granularities; a halted VM has none (409); a bad granularity is a 400.
#[test]
fn vm_and_host_statistics() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let web = edge.uuid_of(&t, "vms", "Debian 12 web");
    let (status, s) = get(&edge, &t, &format!("/rest/v0/vms/{web}/stats"));
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["interval"], 5);
    let end = s["endTimestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - end).abs() <= 10 && end % 5 == 0, "{end}");
    let stats = &s["stats"];
    // Two VCPUs, in percent; 10 minutes of 5-second points, one step short (as XO asks).
    let cpus = stats["cpus"].as_object().unwrap();
    assert_eq!(cpus.keys().collect::<Vec<_>>(), ["0", "1"]);
    let cpu0 = cpus["0"].as_array().unwrap();
    assert!((118..=120).contains(&cpu0.len()), "{}", cpu0.len());
    assert!(cpu0.iter().all(|v| (0.0..=100.0).contains(&v.as_f64().unwrap())));
    assert!(cpu0.iter().any(|v| v.as_f64().unwrap() > 1.0), "percent, not a fraction");
    assert_eq!(stats["memory"][0], json!((2u64 << 30) as f64));
    assert!(stats["memoryFree"][0].as_f64().unwrap() > 1e6, "KiB turned into bytes");
    assert_eq!(stats["vifs"]["rx"]["0"].as_array().map(Vec::len), Some(cpu0.len()));
    assert!(stats["xvds"]["r"]["a"].is_array() && stats["xvds"]["w"]["b"].is_array());
    // Coarser granularities.
    let (_, m) = get(&edge, &t, &format!("/rest/v0/vms/{web}/stats?granularity=minutes"));
    assert_eq!(m["interval"], 60);
    assert!(m["stats"]["cpus"]["0"].as_array().unwrap().len() >= 100);
    let (_, d) = get(&edge, &t, &format!("/rest/v0/vms/{web}/stats?granularity=days"));
    assert_eq!(d["interval"], 86400);
    let (status, e) = get(&edge, &t, &format!("/rest/v0/vms/{web}/stats?granularity=weeks"));
    assert_eq!(status, 400, "{e}");
    // A halted VM.
    let rocky = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let (status, e) = get(&edge, &t, &format!("/rest/v0/vms/{rocky}/stats"));
    assert_eq!(status, 409, "{e}");
    // A host: CPUs, memory, load, PIFs.
    let host = edge.uuid_of(&t, "hosts", "xcp-host1");
    let (status, h) = get(&edge, &t, &format!("/rest/v0/hosts/{host}/stats"));
    assert_eq!(status, 200, "{h}");
    let hs = &h["stats"];
    for k in ["cpus", "memory", "memoryFree", "load"] {
        assert!(!hs[k].is_null(), "{k}: {h}");
    }
    assert!(hs["pifs"]["rx"]["0"].is_array() && hs["pifs"]["tx"]["1"].is_array(), "{hs}");
    assert!(hs.get("vifs").is_none(), "the VMs' sources are not the host's");
    let (status, _) = get(&edge, &t, &format!("/rest/v0/srs/{host}/stats"));
    assert_eq!(status, 404);
}

/// A venv with Prometheus's own Python client (its text parser), made once.
fn prometheus_python() -> std::path::PathBuf {
    use std::process::Command;
    let venv = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prometheus-venv");
    let python = venv.join("bin").join("python");
    let check = "import importlib.metadata as m; assert m.version('prometheus_client') == '0.23.1'";
    if !Command::new(&python).args(["-c", check]).status().is_ok_and(|s| s.success()) {
        assert!(Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap().success());
        let pip = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "prometheus_client==0.23.1"];
        assert!(Command::new(&python).args(pip).status().unwrap().success(), "pip install prometheus_client");
    }
    python
}

/// A parsed metric family: name, type, samples (name, labels, value as Python writes it).
type Family = (String, String, Vec<(String, J, String)>);

/// Parses a text exposition with `prometheus_client.parser`.
fn parse_exposition(text: &str) -> Vec<Family> {
    use std::io::Write;
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = [[f.name, f.type, [[s.name, s.labels, repr(s.value)] for s in f.samples]]\n\
               for f in text_string_to_metric_families(sys.stdin.read())]\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new(prometheus_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused it: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `GET …/metrics`: a Prometheus text exposition that Prometheus's own parser reads, per pool, host or VM.
#[test]
fn prometheus_metrics_parse_with_prometheus_client() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let pool = edge.uuid_of(&t, "pools", "Demo pool");
    let web = edge.uuid_of(&t, "vms", "Debian 12 web");
    let host = edge.uuid_of(&t, "hosts", "xcp-host1");
    let scrape = |path: &str| {
        let r = edge.get(path).bearer_auth(&t).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        parse_exposition(&r.text().unwrap())
    };
    let families = scrape(&format!("/rest/v0/pools/{pool}/metrics"));
    let family = |name: &str| families.iter().find(|f| f.0 == name).unwrap_or_else(|| panic!("no {name}"));
    for name in
        ["xcp_host_cpu_usage_ratio", "xcp_host_memory_free_bytes", "xcp_vm_cpu_usage_ratio", "xcp_vm_memory_bytes"]
    {
        assert_eq!(family(name).1, "gauge", "{name}");
    }
    let memory = &family("xcp_vm_memory_bytes").2;
    let web_memory = memory.iter().find(|s| s.1["vm"] == web.as_str()).expect("the web VM's memory");
    assert_eq!(web_memory.1["vm_name"], "Debian 12 web");
    assert_eq!(web_memory.1["pool"], pool.as_str());
    assert_eq!(web_memory.2.parse::<f64>().unwrap(), (2u64 << 30) as f64);
    // Every host's, each read on its host: the second host's CPUs, and the VM it runs (labelled with it).
    let host2 = edge.uuid_of(&t, "hosts", "xcp-host2");
    let db = edge.uuid_of(&t, "vms", "Ubuntu 22.04 db");
    let cpus: Vec<&(String, J, String)> = family("xcp_host_cpu_usage_ratio").2.iter().collect();
    for (uuid, name) in [(&host, "xcp-host1"), (&host2, "xcp-host2")] {
        assert!(cpus.iter().any(|s| s.1["host"] == uuid.as_str() && s.1["host_name"] == name), "{name}");
    }
    assert!(cpus.iter().all(|s| (0.0..=1.0).contains(&s.2.parse::<f64>().unwrap())));
    let db_memory = memory.iter().find(|s| s.1["vm"] == db.as_str()).expect("the db VM's memory, from the second host");
    assert_eq!(db_memory.1["host"], host2.as_str());
    let rx = &family("xcp_vm_network_receive_bytes_per_second").2;
    assert!(rx.iter().any(|s| s.1["vm"] == web.as_str() && s.1["vif"] == "0"));
    // One VM: its samples only.
    let families = scrape(&format!("/rest/v0/vms/{web}/metrics"));
    assert!(families.iter().all(|f| f.0.starts_with("xcp_vm_")));
    assert!(families.iter().flat_map(|f| &f.2).all(|s| s.1["vm"] == web.as_str()));
    // A VM on the second host: read there.
    let families = scrape(&format!("/rest/v0/vms/{db}/metrics"));
    assert!(families.iter().any(|f| f.0 == "xcp_vm_memory_bytes"), "the db VM's samples");
    // A halted VM runs on no host: no samples, and still a 200 (an idle scrape target, not an error).
    let halted = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    assert!(scrape(&format!("/rest/v0/vms/{halted}/metrics")).is_empty());
    // A host: its own and its VMs'.
    for h in [&host, &host2] {
        let families = scrape(&format!("/rest/v0/hosts/{h}/metrics"));
        let own =
            families.iter().flat_map(|f| &f.2).filter(|s| s.1.get("vm").is_some()).all(|s| s.1["host"] == h.as_str());
        assert!(own && families.iter().any(|f| f.0.starts_with("xcp_host_")));
        let hosts: std::collections::BTreeSet<&str> =
            families.iter().flat_map(|f| &f.2).filter_map(|s| s.1.get("host").and_then(J::as_str)).collect();
        assert_eq!(hosts, [h.as_str()].into(), "only that host's");
    }
}

fn num(v: &J) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Whether `items` go by `key` from the largest down, five at most.
fn top_five(items: &J, key: &str) -> bool {
    let a = items.as_array().unwrap();
    a.len() <= 5 && a.windows(2).all(|w| num(&w[0][key]) >= num(&w[1][key]))
}

#[test]
fn dashboards_add_up_to_the_pool() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let (status, d) = get(&edge, &t, "/rest/v0/dashboard");
    assert_eq!(status, 200, "{d}");
    let (_, hosts) = get(&edge, &t, "/rest/v0/hosts?fields=uuid,cpus,memory");
    let (_, vms) = get(&edge, &t, "/rest/v0/vms?fields=uuid,power_state,CPUs");
    let (_, srs) = get(&edge, &t, "/rest/v0/srs?fields=uuid,size,physical_usage");
    let hosts = hosts.as_array().unwrap().clone();
    let vms = vms.as_array().unwrap().clone();
    let running = vms.iter().filter(|v| v["power_state"] == "Running").count();
    assert_eq!((d["nPools"].clone(), d["nHosts"].clone()), (json!(1), json!(hosts.len())));
    assert_eq!(d["vmsStatus"]["total"], json!(vms.len()));
    assert_eq!(d["vmsStatus"]["running"], json!(running));
    assert_eq!(num(&d["vmsStatus"]["active"]) + num(&d["vmsStatus"]["inactive"]), vms.len() as f64);
    assert_eq!(
        d["hostsStatus"],
        json!({"running": hosts.len(), "disabled": 0, "halted": 0, "unknown": 0, "total": hosts.len()})
    );
    let cores: f64 = hosts.iter().map(|h| num(&h["cpus"]["cores"])).sum();
    let memory: f64 = hosts.iter().map(|h| num(&h["memory"]["size"])).sum();
    let sr_total: f64 = srs.as_array().unwrap().iter().map(|s| num(&s["size"])).filter(|s| *s > 0.0).sum();
    assert_eq!(d["resourcesOverview"], json!({"nCpus": cores, "memorySize": memory, "srSize": sr_total}));
    let size = &d["storageRepositories"]["size"];
    assert_eq!(num(&size["total"]), sr_total);
    assert_eq!(num(&size["available"]) + num(&size["used"]), sr_total);
    // The simulator's updater plugin finds two packages missing on every host.
    assert_eq!(d["missingPatches"]["hasAuthorization"], true);
    assert_eq!(d["missingPatches"]["nHostsWithMissingPatches"], json!(hosts.len()));
    assert_eq!(d["missingPatches"]["nPoolsWithMissingPatches"], 1);
    // A change shows at once: a VM started, a host disabled.
    let rocky = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    let r =
        edge.http.post(format!("{}/rest/v0/vms/{rocky}/actions/start?sync", edge.url)).bearer_auth(&t).send().unwrap();
    assert!(r.status().is_success());
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let second = edge.uuid_of(&t, "hosts", "xcp-host2");
    let host_ref = edge.xapi("host.get_by_uuid", json!([sid, second]))["result"].clone();
    edge.xapi("host.disable", json!([sid, host_ref]));
    let (_, d) = get(&edge, &t, "/rest/v0/dashboard");
    assert_eq!(d["vmsStatus"]["running"], json!(running + 1));
    assert_eq!(d["hostsStatus"]["disabled"], 1);
    assert_eq!(d["hostsStatus"]["running"], json!(hosts.len() - 1));

    // The pool's dashboard.
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    let (status, p) = get(&edge, &t, &format!("/rest/v0/pools/{pool}/dashboard"));
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["hosts"]["status"],
        json!({"running": hosts.len() - 1, "disabled": 1, "halted": 0, "total": hosts.len()})
    );
    assert_eq!(p["vms"]["status"]["running"], json!(running + 1));
    for (part, key) in [
        (&p["hosts"]["topFiveUsage"]["cpu"], "percent"),
        (&p["hosts"]["topFiveUsage"]["ram"], "percent"),
        (&p["vms"]["topFiveUsage"]["cpu"], "percent"),
        (&p["vms"]["topFiveUsage"]["ram"], "percent"),
        (&p["srs"]["topFiveUsage"], "percent"),
    ] {
        assert!(!part.as_array().unwrap().is_empty() && top_five(part, key), "{part}");
        assert!(part.as_array().unwrap().iter().all(|i| (0.0..=100.0).contains(&num(&i["percent"]))), "{part}");
    }
    // Every live host's usage (the disabled one runs), each read on its own host: both hosts' CPUs rank, and the
    // VMs' usage is known.
    assert_eq!(p["hosts"]["topFiveUsage"]["cpu"].as_array().unwrap().len(), hosts.len(), "{p}");
    assert!(p["vms"]["topFiveUsage"].get("isExpired").is_none(), "{p}");
    // The running (and paused) VMs are what the top fives rank (from the RRDs), and the CPU provisioning is their
    // VCPUs.
    let (_, vms) = get(&edge, &t, "/rest/v0/vms?fields=uuid,power_state,CPUs");
    let live: Vec<&J> = vms
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["power_state"] == "Running" || v["power_state"] == "Paused")
        .collect();
    let live_ids: Vec<&str> = live.iter().map(|v| v["uuid"].as_str().unwrap()).collect();
    assert!(p["vms"]["topFiveUsage"]["cpu"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| live_ids.contains(&v["id"].as_str().unwrap())));
    let vcpus: f64 = live.iter().map(|v| num(&v["CPUs"]["number"])).sum();
    assert_eq!(p["cpuProvisioning"]["assigned"], json!(vcpus));
    assert_eq!(p["cpuProvisioning"]["total"], json!(cores));
    let fullest = &p["srs"]["topFiveUsage"][0];
    assert!((num(&fullest["percent"]) - num(&fullest["physical_usage"]) / num(&fullest["size"]) * 100.0).abs() < 1e-9);
    let (_, alarms) = get(&edge, &t, "/rest/v0/alarms");
    assert_eq!(p["alarms"], alarms, "the pool's alarms, as hrefs");
    assert_eq!(p["hosts"]["missingPatches"]["missingPatches"].as_array().unwrap().len(), 2);

    // A VM's dashboard.
    let (status, v) = get(&edge, &t, &format!("/rest/v0/vms/{rocky}/dashboard"));
    assert_eq!(status, 200, "{v}");
    let (_, object) = get(&edge, &t, &format!("/rest/v0/vms/{rocky}"));
    let q = &v["quickInfo"];
    assert_eq!((q["id"].clone(), q["power_state"].clone()), (json!(rocky), json!("Running")));
    assert_eq!(q["CPUs"], json!({"number": object["CPUs"]["number"]}));
    assert_eq!(q["memory"], json!({"size": object["memory"]["size"]}));
    assert_eq!(q["host"], object["$container"]);
    assert_eq!(v["alarms"], json!([]));
    assert_eq!(v["backupsInfo"]["vmProtection"], "not-in-active-job");
    let master = edge.uuid_of(&t, "hosts", "xcp-host1");
    let (_, host_alarms) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/alarms"));
    assert_eq!(host_alarms.as_array().unwrap().len(), 1);
    // Errors: an unknown VM, a collection without dashboards.
    assert_eq!(get(&edge, &t, "/rest/v0/vms/00000000-0000-0000-0000-000000000000/dashboard").0, 404);
    assert_eq!(get(&edge, &t, &format!("/rest/v0/hosts/{master}/dashboard")).0, 404);
}

#[test]
fn missing_patches_and_smt_come_from_the_hosts_plugins() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let master = edge.uuid_of(&t, "hosts", "xcp-host1");
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    // XCP-ng's updater plugin (xapi-sim/src/infra.rs, UPDATES): XO's XcpPatches, each package once per pool.
    let (status, patches) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/missing_patches"));
    assert_eq!(status, 200, "{patches}");
    let names: Vec<&str> = patches.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["xapi-core", "openssh"]);
    assert_eq!(patches[1]["changelog"]["date"], 1_763_942_400);
    let (status, pool_patches) = get(&edge, &t, &format!("/rest/v0/pools/{pool}/missing_patches"));
    assert_eq!((status, pool_patches), (200, patches));
    assert_eq!(edge.sim_calls_of("host.call_plugin"), 3, "one call per host for the pool");
    // The plugin failing is XAPI's error, not an empty list.
    edge.faults(json!({"fail": [{"method": "host.call_plugin", "nth": 1, "error": ["XENAPI_PLUGIN_FAILURE", "check_update", "yum", "busy"]}]}),
    );
    let (status, e) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/missing_patches"));
    assert_eq!((status, e["data"]["code"].as_str()), (502, Some("XENAPI_PLUGIN_FAILURE")), "{e}");
    // SMT: the hyperthreading plugin where XAPI's cpu_info has no threads_per_core (as on 8.2); null when the host
    // has no such plugin (XO's answer).
    let (status, smt) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/smt"));
    assert_eq!((status, smt), (200, json!({"enabled": true})));
    edge.faults(json!({"fail": [{"method": "host.call_plugin", "nth": 1, "error": ["XENAPI_MISSING_PLUGIN", "hyperthreading.py"]}]}),
    );
    let (status, smt) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/smt"));
    assert_eq!((status, smt), (200, json!({"enabled": null})));
    assert_eq!(get(&edge, &t, &format!("/rest/v0/pools/{pool}/smt")).0, 404, "hosts only");
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    common::cli("gzip", &["-dc"], data)
}

#[test]
fn a_hosts_audit_log_and_logs_archive_download() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let master = edge.uuid_of(&t, "hosts", "xcp-host1");
    let web = edge.uuid_of(&t, "vms", "Debian 12 web");
    // A write through the edge is in XAPI's audit log (xapi-sim/src/hostlogs.rs, after ocaml/xapi/rbac_audit.ml).
    let r = edge
        .http
        .patch(format!("{}/rest/v0/vms/{web}", edge.url))
        .bearer_auth(&t)
        .json(&json!({"name_description": "audited"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let tasks = edge.sim_stats()["tasks"].clone();
    let client = reqwest::blocking::Client::builder().build().unwrap();
    let r = client.get(format!("{}/rest/v0/hosts/{master}/audit.txt", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(r.headers().get("content-encoding").is_none());
    let plain = r.text().unwrap();
    let line = plain.lines().find(|l| l.contains("'VM.set_name_description'")).unwrap_or_else(|| panic!("{plain}"));
    assert!(line.contains("'ALLOWED' 'OK' 'API'") && line.contains("|audit|"), "{line}");
    // gzip'd at the edge when accepted: the same text.
    let r = client
        .get(format!("{}/rest/v0/hosts/{master}/audit.txt", edge.url))
        .bearer_auth(&t)
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let text = String::from_utf8(gunzip(&r.bytes().unwrap())).unwrap();
    assert!(text.starts_with(&plain), "the gzip'd log holds what the plain one did");
    // since: XAPI's filter on the lines' timestamps.
    let r = client
        .get(format!("{}/rest/v0/hosts/{master}/audit.txt?since=2099-01-01T00:00:00Z", edge.url))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!((r.status().as_u16(), r.text().unwrap()), (200, String::new()));
    // The logs archive: XAPI's tar.gz as it comes, streamed.
    let r = client.get(format!("{}/rest/v0/hosts/{master}/logs.tgz", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains(&format!("{master}-logs.tgz")));
    let tar = gunzip(&r.bytes().unwrap());
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
    let files: Vec<(String, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.size())
        })
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(files[0].0, "var/log/xensource.log");
    assert!(files[0].1 >= xapi_sim::hostlogs::XENSOURCE_LOG_BYTES as u64);
    // Each download ran under a task of the edge's, gone afterwards.
    assert_eq!(edge.settled(&tasks, |e| e.sim_stats()["tasks"].clone()), tasks);
    assert_eq!(edge.sim_calls_of("task.create"), 4);
    // Another host's logs are read on that host (`pool_hosts` covers it): its own, not the master's.
    let other = edge.uuid_of(&t, "hosts", "xcp-host2");
    let before = edge.sim_stats()["handler_requests"].clone();
    let r = client.get(format!("{}/rest/v0/hosts/{other}/audit.txt", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().unwrap(), "", "a member's audit lines are on the master");
    let r = client.get(format!("{}/rest/v0/hosts/{other}/logs.tgz", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains(&format!("{other}-logs.tgz")));
    assert!(!gunzip(&r.bytes().unwrap()).is_empty());
    let after = edge.sim_stats()["handler_requests"].clone();
    assert_eq!(after["/audit_log"].as_u64(), before["/audit_log"].as_u64().map(|n| n + 1));
    assert_eq!(edge.settled(&tasks, |e| e.sim_stats()["tasks"].clone()), tasks);
    assert_eq!(get(&edge, &t, "/rest/v0/hosts/00000000-0000-0000-0000-000000000000/audit.txt").0, 404);
    // XAPI failing mid-way: the body is cut, never ended as if whole, and the task still goes.
    edge.faults(json!({"cut_after": {"/host_logs_download": 100000}}));
    let r = client.get(format!("{}/rest/v0/hosts/{master}/logs.tgz", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().is_err(), "a cut archive must not look complete");
    assert_eq!(edge.settled(&tasks, |e| e.sim_stats()["tasks"].clone()), tasks);
}

#[test]
fn pool_stats_and_data_sources() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let pool = get(&edge, &t, "/rest/v0/pools?fields=uuid").1[0]["uuid"].as_str().unwrap().to_string();
    let master = edge.uuid_of(&t, "hosts", "xcp-host1");
    let other = edge.uuid_of(&t, "hosts", "xcp-host2");
    // Each host by uuid, each read on the host itself (its own xcp-rrdd): the master's as its own route answers
    // them, the other host's too.
    let (status, stats) = get(&edge, &t, &format!("/rest/v0/pools/{pool}/stats?granularity=minutes"));
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats[&master]["interval"], 60);
    assert!(stats[&master]["stats"]["cpus"]["0"].as_array().unwrap().len() > 100);
    let (_, alone) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/stats?granularity=minutes"));
    assert_eq!(
        stats[&master]["stats"].as_object().unwrap().keys().collect::<Vec<_>>(),
        alone["stats"].as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert_eq!(stats[&other]["interval"], 60, "{}", stats[&other]);
    assert!(stats[&other]["stats"]["cpus"]["0"].as_array().unwrap().len() > 100);
    let (_, alone) = get(&edge, &t, &format!("/rest/v0/hosts/{other}/stats?granularity=minutes"));
    assert_eq!(alone["interval"], 60, "{alone}");
    // A VM's statistics come from the host it runs on: the db VM runs on the second host, whose xcp-rrdd alone has
    // its RRD.
    let db = edge.uuid_of(&t, "vms", "Ubuntu 22.04 db");
    let (status, vm) = get(&edge, &t, &format!("/rest/v0/vms/{db}/stats?granularity=minutes"));
    assert_eq!(status, 200, "{vm}");
    assert!(vm["stats"]["cpus"]["0"].as_array().is_some_and(|a| a.len() > 100), "{vm}");
    // Data sources: an optional one is recorded, then in the VM's RRD; forgotten, it is gone again.
    let web = edge.uuid_of(&t, "vms", "Debian 12 web");
    let has = |edge: &Edge| {
        let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
        let vm = edge.xapi("VM.get_by_uuid", json!([sid, web]))["result"].clone();
        let ds = edge.xapi("VM.get_data_sources", json!([sid, vm]))["result"].clone();
        ds.as_array().unwrap().iter().any(|d| d["name_label"] == "memory_target" && d["enabled"] == true)
    };
    assert!(!has(&edge));
    let put = |path: &str| edge.http.put(format!("{}{path}", edge.url)).bearer_auth(&t).send().unwrap();
    let path = format!("/rest/v0/vms/{web}/stats/data_source/memory_target");
    assert_eq!(put(&path).status().as_u16(), 204);
    assert!(has(&edge));
    let r = edge.get(&format!("/rest/v0/vms/{web}/metrics")).bearer_auth(&t).send().unwrap();
    assert!(r.text().unwrap().contains("ds=\"memory_target\""), "the recorded source is in the RRD");
    assert_eq!(put(&path).status().as_u16(), 204, "idempotent");
    let r = edge.http.delete(format!("{}{path}", edge.url)).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(!has(&edge));
    // Unknown source: 404 naming those there are; a halted VM: 409; hosts have no such route.
    let r = put(&format!("/rest/v0/vms/{web}/stats/data_source/nope"));
    assert_eq!(r.status().as_u16(), 404);
    let e: J = r.json().unwrap();
    assert!(e["data"]["data_sources"].as_array().unwrap().iter().any(|n| n == "memory_target"), "{e}");
    let rocky = edge.uuid_of(&t, "vms", "Rocky Linux 8");
    assert_eq!(put(&format!("/rest/v0/vms/{rocky}/stats/data_source/memory_target")).status().as_u16(), 409);
    assert_eq!(put(&format!("/rest/v0/hosts/{master}/stats/data_source/cpu0")).status().as_u16(), 404);
}

/// The simulator raises alarms by thresholds as XAPI's perfmon does (xen-api `python3/bin/perfmon`: a variable of
/// `other_config:perfmon` past its level for its whole trigger period, then quiet for its inhibit period); the
/// edge shows them as XO's alarms.
#[test]
fn thresholds_raise_alarms() {
    let edge = Edge::start();
    let t = edge.token("root", "xapi-sim");
    let web = edge.uuid_of(&t, "vms", "Debian 12 web");
    let sid = edge.xapi("session.login_with_password", json!(["root", "xapi-sim"]))["result"].clone();
    let vm = edge.xapi("VM.get_by_uuid", json!([sid, web]))["result"].clone();
    let perfmon =
        |edge: &Edge| -> J { edge.http.post(format!("{}/_sim/perfmon", edge.sim_url)).send().unwrap().json().unwrap() };
    // A level the VM's CPUs are always above (their usage moves between 0.1 and 0.5), one they never reach.
    let config = r#"<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.01"/><alarm_trigger_period value="10"/></variable><variable><name value="network_usage"/><alarm_trigger_level value="1e12"/></variable></config>"#;
    edge.xapi("VM.add_to_other_config", json!([sid, vm, "perfmon", config]));
    let raised = perfmon(&edge);
    assert_eq!(raised, json!([{"object": web, "variable": "cpu_usage"}]));
    let (status, alarms) = get(&edge, &t, &format!("/rest/v0/vms/{web}/alarms?fields=name,body,object"));
    assert_eq!(status, 200);
    let alarms = alarms.as_array().unwrap().clone();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["body"]["name"], "cpu_usage");
    let percent: f64 = alarms[0]["body"]["value"].as_str().unwrap().parse().unwrap();
    assert!((1.0..=100.0).contains(&percent), "XO's percent of the CPU: {percent}");
    assert_eq!(alarms[0]["object"]["uuid"], web.as_str());
    // Inhibited for an hour: no second alarm.
    assert_eq!(perfmon(&edge), json!([]));
    // A host's free memory below a level (the low sense is free memory's default).
    let master = edge.uuid_of(&t, "hosts", "xcp-host1");
    let host = edge.xapi("host.get_by_uuid", json!([sid, master]))["result"].clone();
    let config =
        r#"<config><variable><name value="memory_free_kib"/><alarm_trigger_level value="1e15"/></variable></config>"#;
    edge.xapi("host.add_to_other_config", json!([sid, host, "perfmon", config]));
    assert_eq!(perfmon(&edge), json!([{"object": master, "variable": "memory_free_kib"}]));
    let (_, host_alarms) = get(&edge, &t, &format!("/rest/v0/hosts/{master}/alarms?fields=body"));
    assert!(host_alarms.as_array().unwrap().iter().any(|a| a["body"]["name"] == "memory_free_kib"), "{host_alarms}");
}
