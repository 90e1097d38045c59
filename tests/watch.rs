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
    let cpus: Vec<&(String, J, String)> = family("xcp_host_cpu_usage_ratio").2.iter().collect();
    assert!(cpus.iter().all(|s| s.1["host"] == host.as_str() && s.1["host_name"] == "xcp-host1"));
    assert!(cpus.iter().all(|s| (0.0..=1.0).contains(&s.2.parse::<f64>().unwrap())));
    let rx = &family("xcp_vm_network_receive_bytes_per_second").2;
    assert!(rx.iter().any(|s| s.1["vm"] == web.as_str() && s.1["vif"] == "0"));
    // One VM: its samples only.
    let families = scrape(&format!("/rest/v0/vms/{web}/metrics"));
    assert!(families.iter().all(|f| f.0.starts_with("xcp_vm_")));
    assert!(families.iter().flat_map(|f| &f.2).all(|s| s.1["vm"] == web.as_str()));
    // A host: its own and its VMs'.
    let families = scrape(&format!("/rest/v0/hosts/{host}/metrics"));
    let web_host =
        families.iter().flat_map(|f| &f.2).filter(|s| s.1.get("vm").is_some()).all(|s| s.1["host"] == host.as_str());
    assert!(web_host && families.iter().any(|f| f.0.starts_with("xcp_host_")));
}
