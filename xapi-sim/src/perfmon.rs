//! Alarms raised by thresholds, as XAPI's `perfmon` daemon raises them (`python3/bin/perfmon` in xen-api): a VM's or
//! host's `other_config:perfmon` holds `<config><variable>…</variable></config>`; each variable names what to
//! watch (`cpu_usage`, `network_usage`, `disk_usage`, `memory_internal_free` on VMs; `cpu_usage`, `network_usage`,
//! `memory_free_kib` on hosts), `alarm_trigger_level`, and optionally `alarm_trigger_sense` (`high`, or `low` by
//! default for free memory), `alarm_trigger_period` (60 s), `alarm_auto_inhibit_period` (3600 s) and
//! `alarm_priority` (3). When the value (the average of the CPUs, the sum of the others, taken from the same RRD
//! data sources `/rrd_updates` serves) has been past the level for the whole trigger period, an `ALARM` message is
//! created about the object, with perfmon's body (`value: %f\nconfig:\n<the variable, pretty-printed>`), and no
//! other for that variable during the inhibit period.
//!
//! [`run`] evaluates every configuration once; the simulator runs it every [`STEP`] seconds (xcp-rrdd's step), and
//! tests through `POST /_sim/perfmon`. A custom `rrd_regex` or `consolidation_fn` is not supported: such a variable
//! is skipped.

use crate::db::Db;
use crate::sim::Sim;
use crate::value::Value;
use std::collections::BTreeSet;

/// Seconds between two evaluations (and between two RRD samples).
pub const STEP: i64 = 5;

/// One `<variable>` of a perfmon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// The variable's children, `(tag, value)`, in order (for the alarm's body).
    pub tags: Vec<(String, String)>,
    pub name: String,
    pub level: f64,
    pub high: bool,
    pub period: i64,
    pub inhibit: i64,
    pub priority: i64,
}

/// Parses `other_config:perfmon`; variables without a name or a level are skipped (perfmon logs and skips them).
pub fn parse(xml: &str, host: bool) -> Vec<Variable> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.name().as_ref() == b"variable" => current = Some(Vec::new()),
            Ok(Event::End(e)) if e.name().as_ref() == b"variable" => {
                if let Some(tags) = current.take() {
                    out.extend(variable(tags, host));
                }
            }
            Ok(Event::Empty(e)) => {
                if let Some(tags) = current.as_mut() {
                    let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let value = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"value")
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                        .unwrap_or_default();
                    tags.push((tag, value));
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn variable(tags: Vec<(String, String)>, host: bool) -> Option<Variable> {
    let get = |t: &str| tags.iter().find(|(k, _)| k == t).map(|(_, v)| v.clone());
    let name = get("name")?;
    if get("rrd_regex").is_some() || get("consolidation_fn").is_some() {
        return None;
    }
    let known: &[&str] = if host {
        &["cpu_usage", "network_usage", "memory_free_kib"]
    } else {
        &["cpu_usage", "network_usage", "disk_usage", "memory_internal_free"]
    };
    if !known.contains(&name.as_str()) {
        return None;
    }
    let level = get("alarm_trigger_level")?.parse().ok()?;
    let low_default = name.starts_with("memory_");
    let high = get("alarm_trigger_sense").map_or(!low_default, |s| s != "low");
    let int = |t: &str, d: i64| get(t).and_then(|v| v.parse().ok()).unwrap_or(d);
    Some(Variable {
        period: int("alarm_trigger_period", 60),
        inhibit: int("alarm_auto_inhibit_period", 3600),
        priority: int("alarm_priority", 3),
        tags,
        name,
        level,
        high,
    })
}

/// Whether data source `ds` feeds variable `name` (perfmon's default `rrd_regex`es).
fn feeds(name: &str, ds: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name {
        "cpu_usage" => ds.strip_prefix("cpu").is_some_and(digits),
        "network_usage" => {
            (ds.starts_with("vif_") || ds.starts_with("pif_")) && (ds.ends_with("_rx") || ds.ends_with("_tx"))
        }
        "disk_usage" => ds.starts_with("vbd_") && (ds.ends_with("_read") || ds.ends_with("_write")),
        other => ds == other,
    }
}

/// The variable's value at `t`: the average of the CPUs, the sum of anything else.
fn value_at(sources: &[crate::rrd::Source], name: &str, t: i64) -> Option<f64> {
    let values: Vec<f64> = sources.iter().filter(|(ds, _)| feeds(name, ds)).map(|(_, f)| f(t)).collect();
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    Some(if name == "cpu_usage" { sum / values.len() as f64 } else { sum })
}

/// perfmon's body: `value: %f` and the variable as `toprettyxml` writes it.
pub fn body(v: &Variable, value: f64) -> String {
    let mut xml = String::from("<variable>\n");
    for (tag, val) in &v.tags {
        let escaped = val.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
        xml.push_str(&format!("\t<{tag} value=\"{escaped}\"/>\n"));
    }
    xml.push_str("</variable>\n");
    format!("value: {value:.6}\nconfig:\n{xml}")
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Evaluates every configured object at `now` (Unix seconds); answers the alarms created, `(object uuid, name)`.
pub fn run(sim: &Sim, now: i64) -> Vec<(String, String)> {
    let recorded = sim.data_sources.lock().clone();
    let mut raised = Vec::new();
    let mut alarms: Vec<(String, &'static str, String, i64, String)> = Vec::new();
    {
        let db = sim.db.lock();
        let mut last = sim.perfmon_last.lock();
        for (class, cls) in [("VM", "VM"), ("host", "Host")] {
            for (r, rec) in db.all(class) {
                let Some(xml) = rec.get("other_config").and_then(|m| m.get("perfmon")).and_then(Value::as_str) else {
                    continue;
                };
                let uuid = rec.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string();
                let none = BTreeSet::new();
                let Some(sources) = crate::rrd::sources_of(&db, recorded.get(&uuid).unwrap_or(&none), r) else {
                    continue;
                };
                for v in parse(xml, class == "host") {
                    let samples: Vec<f64> = (0..=(v.period / STEP).max(1))
                        .filter_map(|i| value_at(&sources, &v.name, now - i * STEP))
                        .collect();
                    let bad = |x: &f64| if v.high { *x > v.level } else { *x < v.level };
                    if samples.is_empty() || !samples.iter().all(bad) {
                        continue;
                    }
                    let key = format!("{uuid}/{}", v.name);
                    if last.get(&key).is_some_and(|t| now - t < v.inhibit) {
                        continue;
                    }
                    last.insert(key, now);
                    alarms.push((uuid.clone(), cls, body(&v, samples[0]), v.priority, v.name.clone()));
                }
            }
        }
    }
    for (uuid, cls, text, priority, name) in alarms {
        sim.write(|db: &mut Db| {
            let f = crate::schema::Fields::from([
                ("name".into(), Value::str("ALARM")),
                ("priority".into(), Value::Int(priority)),
                ("cls".into(), Value::str(cls)),
                ("obj_uuid".into(), Value::str(uuid.clone())),
                ("body".into(), Value::str(text)),
                ("timestamp".into(), Value::DateTime(crate::db::now_datetime())),
            ]);
            db.create("message", f)
        });
        raised.push((uuid, name));
    }
    raised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_as_perfmon_reads_them() {
        let xml = r#"<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.5"/></variable>
            <variable><name value="memory_internal_free"/><alarm_trigger_level value="1024"/>
            <alarm_trigger_period value="10"/></variable>
            <variable><name value="fs_usage"/><alarm_trigger_level value="0.9"/></variable>
            <variable><name value="network_usage"/><rrd_regex value="vif_0_rx"/><alarm_trigger_level value="1"/></variable>
            <variable><name value="disk_usage"/></variable></config>"#;
        let vars = parse(xml, false);
        assert_eq!(vars.len(), 2, "{vars:?}");
        assert_eq!((vars[0].name.as_str(), vars[0].level, vars[0].high, vars[0].period), ("cpu_usage", 0.5, true, 60));
        assert_eq!((vars[1].high, vars[1].period, vars[1].inhibit), (false, 10, 3600));
        assert_eq!(
            body(&vars[0], 0.95),
            "value: 0.950000\nconfig:\n<variable>\n\t<name value=\"cpu_usage\"/>\n\t<alarm_trigger_level value=\"0.5\"/>\n</variable>\n"
        );
        assert!(feeds("cpu_usage", "cpu12") && !feeds("cpu_usage", "cpu_avg"));
        assert!(feeds("network_usage", "vif_0_tx") && feeds("disk_usage", "vbd_xvda_read"));
    }
}
