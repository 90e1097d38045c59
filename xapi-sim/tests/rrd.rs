//! `GET /rrd_updates`, checked against xcp-rrdd's handler and exporter (`ocaml/xcp-rrdd/bin/rrdd/
//! rrdd_http_handler.ml`, `get_rrd_updates_handler`, `client_prefers_json`; `ocaml/libs/xapi-rrd/lib/rrd_updates.ml`,
//! `create_multi`, `xml_of`, `json_of_t`; `ocaml/xapi/rrdd_proxy.ml`, `get_rrd_updates_forwarder`) and the format
//! documented in `doc/content/xen-api/topics/metrics.md`.

mod common;
use common::Sim;
use serde_json::Value as J;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn updates(sim: &Sim, sid: &str, query: &str) -> J {
    let r = sim.get(&format!("/rrd_updates?session_id={sid}&json&{query}"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().unwrap()
}

fn uuid(sim: &Sim, sid: &str, class: &str, name: &str) -> String {
    let r = sim.by_name(sid, class, name);
    sim.call(&format!("{class}.get_uuid"), serde_json::json!([sid, r])).unwrap().as_str().unwrap().to_string()
}

#[test]
fn updates_of_the_running_vms_in_xport_form() {
    let sim = Sim::start();
    let sid = sim.root();
    // `rrdd_proxy.ml`: no `start`, 400; no session, 401.
    assert_eq!(sim.get(&format!("/rrd_updates?session_id={sid}")).status().as_u16(), 400);
    assert_eq!(sim.get(&format!("/rrd_updates?start={}", now() - 60)).status().as_u16(), 401);

    // The last 5 minutes: the 5-second archive (`create_multi`: the finest archive reaching back to `start`).
    let u = updates(&sim, &sid, &format!("start={}", now() - 300));
    let meta = &u["meta"];
    assert_eq!(meta["step"], 5);
    let rows = u["data"].as_array().unwrap();
    assert_eq!(meta["rows"].as_u64().unwrap() as usize, rows.len());
    assert!((59..=61).contains(&rows.len()), "{}", rows.len());
    // Newest first (`create`: from the last CDP backwards), every `t` on a step, `end` the newest.
    let ts: Vec<i64> = rows.iter().map(|r| r["t"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] - w[1] == 5) && ts.iter().all(|t| t % 5 == 0));
    assert_eq!(meta["end"], ts[0]);
    // Legends: `<CF>:vm:<uuid>:<ds>`, AVERAGE by default, running VMs only.
    let legend: Vec<String> =
        meta["legend"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    assert_eq!(meta["columns"].as_u64().unwrap() as usize, legend.len());
    let web = uuid(&sim, &sid, "VM", "Debian 12 web");
    let rocky = uuid(&sim, &sid, "VM", "Rocky Linux 8");
    for ds in
        ["cpu0", "cpu1", "memory", "memory_internal_free", "vif_0_rx", "vif_0_tx", "vbd_xvda_read", "vbd_xvdb_write"]
    {
        assert!(legend.contains(&format!("AVERAGE:vm:{web}:{ds}")), "{ds}: {legend:?}");
    }
    assert!(!legend.iter().any(|l| l.contains(&rocky)), "a halted VM has no live RRD");
    assert!(legend.iter().all(|l| l.starts_with("AVERAGE:vm:")));
    // Values: strings (`f_to_s`), one per legend entry, moving over time.
    let column = legend.iter().position(|l| *l == format!("AVERAGE:vm:{web}:cpu0")).unwrap();
    let cpu: Vec<f64> = rows.iter().map(|r| r["values"][column].as_str().unwrap().parse().unwrap()).collect();
    assert!(rows.iter().all(|r| r["values"].as_array().unwrap().len() == legend.len()));
    assert!(cpu.iter().all(|c| (0.0..=1.0).contains(c)));
    assert!(cpu.windows(2).any(|w| w[0] != w[1]), "the values move");
    let memory = legend.iter().position(|l| *l == format!("AVERAGE:vm:{web}:memory")).unwrap();
    assert_eq!(rows[0]["values"][memory].as_str().unwrap().parse::<f64>().unwrap(), (2u64 << 30) as f64);

    // Coarser archives as `start` goes back, or as `interval` asks.
    assert_eq!(updates(&sim, &sid, &format!("start={}", now() - 3600))["meta"]["step"], 60);
    assert_eq!(updates(&sim, &sid, &format!("start={}", now() - 86400))["meta"]["step"], 3600);
    assert_eq!(updates(&sim, &sid, &format!("start={}", now() - 30 * 86400))["meta"]["step"], 86400);
    // (How many steps fit depends on where `now` falls within a step.)
    let u = updates(&sim, &sid, &format!("start={}&interval=60", now() - 300));
    assert_eq!(u["meta"]["step"], 60);
    assert!((5..=6).contains(&u["data"].as_array().unwrap().len()));
    // A negative start is relative to the last update.
    assert!((12..=13).contains(&updates(&sim, &sid, "start=-60")["data"].as_array().unwrap().len()));

    // `host=true`: the host's data sources first; `vm_uuid` (repeatable) keeps those VMs; `cf` picks the function.
    let master = uuid(&sim, &sid, "host", "xcp-host1");
    let u = updates(&sim, &sid, &format!("start={}&host=true&vm_uuid={web}&cf=MAX", now() - 60));
    let legend: Vec<&str> = u["meta"]["legend"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(legend[0].starts_with(&format!("MAX:host:{master}:")), "{legend:?}");
    for ds in ["cpu0", "cpu_avg", "memory_total_kib", "memory_free_kib", "loadavg", "pif_eth0_rx"] {
        assert!(legend.contains(&format!("MAX:host:{master}:{ds}").as_str()), "{ds}");
    }
    assert!(legend.iter().all(|l| l.contains(&master) || l.contains(&web)));
}

#[test]
fn xml_unless_json_is_preferred() {
    let sim = Sim::start();
    let sid = sim.root();
    let start = now() - 30;
    // `client_prefers_json`: the Accept header decides when it names either type, else the `json` parameter.
    let get = |query: &str, accept: Option<&str>| {
        let mut r = sim.http.get(format!("{}/rrd_updates?session_id={sid}&start={start}{query}", sim.url));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        let r = r.send().unwrap();
        (r.headers()["content-type"].to_str().unwrap().to_string(), r.text().unwrap())
    };
    let (ty, xml) = get("", None);
    assert_eq!(ty, "text/xml");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><xport><meta><start>"), "{xml}");
    let count = |tag: &str| xml.matches(&format!("<{tag}>")).count();
    let rows: usize = xml.split("<rows>").nth(1).unwrap().split('<').next().unwrap().parse().unwrap();
    let columns: usize = xml.split("<columns>").nth(1).unwrap().split('<').next().unwrap().parse().unwrap();
    assert_eq!((count("row"), count("entry")), (rows, columns));
    assert_eq!(count("v"), rows * columns);
    assert!(xml.ends_with("</data></xport>"));
    assert_eq!(get("&json", None).0, "application/json");
    assert_eq!(get("", Some("application/json")).0, "application/json");
    assert_eq!(get("&json", Some("text/xml")).0, "text/xml");
}
