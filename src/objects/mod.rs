//! XAPI records → XO objects: the collections of the REST API and how each object is shaped.
//!
//! A [`Collection`] names its XAPI class, the `get_all_records_where` expression that selects its members (XO splits
//! VMs into VMs, snapshots, templates and control domains; VDIs into VDIs and snapshots; messages into messages
//! and alarms), the other classes whose records its objects are built from, and its mapping function. Mapping is
//! pure: records in, `serde_json::Value` out, links turned from refs into uuids through a [`Ctx`]. Fetching is the
//! caller's job (`rest::collections`). One file per type, as XO's `xapi-object-to-xo`.

mod host;
mod misc;
pub mod schema;
mod vdi;
mod vm;
mod vm_checks;

use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Records of other objects an object links to or is built from, by ref.
#[derive(Debug, Default)]
pub struct Ctx {
    pub pool_uuid: String,
    /// The pool master's `software_version.platform_version` (XO derives VM capabilities from it).
    pub platform_version: String,
    /// Any record by ref (only the classes the collection needs are present).
    pub records: HashMap<String, Value>,
}

impl Ctx {
    /// The record behind `r`, if fetched.
    pub fn get(&self, r: &Value) -> Option<&Value> {
        r.as_str().and_then(|r| self.records.get(r))
    }

    /// The uuid of the object behind a ref, or null (XO's `link`).
    pub fn link(&self, r: &Value) -> Value {
        self.get(r).and_then(|rec| rec.get("uuid")).cloned().unwrap_or(Value::Null)
    }

    /// The uuids behind a set of refs (unknown refs dropped).
    pub fn links(&self, refs: &Value) -> Value {
        Value::Array(
            refs.as_array()
                .map(|a| a.iter().map(|r| self.link(r)).filter(|u| !u.is_null()).collect())
                .unwrap_or_default(),
        )
    }
}

/// A REST collection backed by an XAPI class.
#[derive(Debug)]
pub struct Collection {
    /// The URL segment, e.g. `vm-snapshots`.
    pub name: &'static str,
    /// The XAPI class, e.g. `VM`.
    pub class: &'static str,
    /// XO's `type` of its objects.
    pub xo_type: &'static str,
    /// `get_all_records_where` expression selecting the collection's members.
    pub selector: &'static str,
    /// Classes whose records are needed to build full objects.
    pub joins: &'static [&'static str],
    /// Builds the XO object from the record.
    pub map: fn(&str, &Value, &Ctx) -> Map<String, Value>,
    /// The fields `map` builds, beside [`schema::COMMON`] and [`schema::NAMED`].
    pub fields: &'static [schema::Field],
}

const VM_JOINS: &[&str] = &["VM_metrics", "VM_guest_metrics", "VBD", "VDI", "SR", "PBD", "host", "VIF", "VM"];

/// Every collection of the REST API backed by XAPI.
pub static COLLECTIONS: &[Collection] = &[
    Collection {
        name: "vms",
        class: "VM",
        xo_type: "VM",
        selector: r#"field "is_a_template"="false" and field "is_a_snapshot"="false" and field "is_control_domain"="false""#,
        joins: VM_JOINS,
        map: vm::map,
        fields: vm::FIELDS,
    },
    Collection {
        name: "vm-snapshots",
        class: "VM",
        xo_type: "VM-snapshot",
        selector: r#"field "is_a_snapshot"="true" and field "is_control_domain"="false""#,
        joins: VM_JOINS,
        map: vm::map,
        fields: vm::FIELDS,
    },
    Collection {
        name: "vm-templates",
        class: "VM",
        xo_type: "VM-template",
        selector: r#"field "is_a_template"="true" and field "is_a_snapshot"="false" and field "is_control_domain"="false""#,
        joins: VM_JOINS,
        map: vm::map,
        fields: vm::FIELDS,
    },
    Collection {
        name: "vm-controllers",
        class: "VM",
        xo_type: "VM-controller",
        selector: r#"field "is_control_domain"="true""#,
        joins: VM_JOINS,
        map: vm::map,
        fields: vm::FIELDS,
    },
    Collection {
        name: "hosts",
        class: "host",
        xo_type: "host",
        selector: "true",
        joins: &["host_metrics", "VM", "PIF", "PBD", "PCI", "PGPU", "Certificate"],
        map: host::map_host,
        fields: host::HOST_FIELDS,
    },
    Collection {
        name: "pools",
        class: "pool",
        xo_type: "pool",
        selector: "true",
        joins: &["host", "SR"],
        map: host::map_pool,
        fields: host::POOL_FIELDS,
    },
    Collection {
        name: "srs",
        class: "SR",
        xo_type: "SR",
        selector: "true",
        joins: &["VDI", "PBD", "host"],
        map: vdi::map_sr,
        fields: vdi::SR_FIELDS,
    },
    Collection {
        name: "vdis",
        class: "VDI",
        xo_type: "VDI",
        selector: r#"field "is_a_snapshot"="false" and field "managed"="true""#,
        joins: &["SR", "VBD", "VDI", "VM"],
        map: vdi::map_vdi,
        fields: vdi::VDI_FIELDS,
    },
    Collection {
        name: "vdi-snapshots",
        class: "VDI",
        xo_type: "VDI-snapshot",
        selector: r#"field "is_a_snapshot"="true" and field "managed"="true""#,
        joins: &["SR", "VBD", "VDI", "VM"],
        map: vdi::map_vdi,
        fields: vdi::VDI_FIELDS,
    },
    Collection {
        name: "networks",
        class: "network",
        xo_type: "network",
        selector: "true",
        joins: &["PIF", "VIF"],
        map: misc::map_network,
        fields: misc::NETWORK_FIELDS,
    },
    Collection {
        name: "pbds",
        class: "PBD",
        xo_type: "PBD",
        selector: "true",
        joins: &["host", "SR"],
        map: misc::map_pbd,
        fields: misc::PBD_FIELDS,
    },
    Collection {
        name: "vbds",
        class: "VBD",
        xo_type: "VBD",
        selector: "true",
        joins: &["VM", "VDI"],
        map: misc::map_vbd,
        fields: misc::VBD_FIELDS,
    },
    Collection {
        name: "vifs",
        class: "VIF",
        xo_type: "VIF",
        selector: "true",
        joins: &["VM", "network"],
        map: misc::map_vif,
        fields: misc::VIF_FIELDS,
    },
    Collection {
        name: "pifs",
        class: "PIF",
        xo_type: "PIF",
        selector: "true",
        joins: &["host", "network", "PIF_metrics", "Bond", "PIF"],
        map: misc::map_pif,
        fields: misc::PIF_FIELDS,
    },
    Collection {
        name: "messages",
        class: "message",
        xo_type: "message",
        selector: r#"not (field "name"="ALARM" or field "name"="BOND_STATUS_CHANGED" or field "name"="MULTIPATH_PERIODIC_ALERT")"#,
        joins: &[],
        map: misc::map_message,
        fields: misc::MESSAGE_FIELDS,
    },
    Collection {
        name: "sms",
        class: "SM",
        xo_type: "SM",
        selector: "true",
        joins: &[],
        map: misc::map_sm,
        fields: misc::SM_FIELDS,
    },
    Collection {
        name: "pcis",
        class: "PCI",
        xo_type: "PCI",
        selector: "true",
        joins: &["host"],
        map: misc::map_pci,
        fields: misc::PCI_FIELDS,
    },
    Collection {
        name: "pgpus",
        class: "PGPU",
        xo_type: "PGPU",
        selector: "true",
        joins: &["host", "PCI", "GPU_group"],
        map: misc::map_pgpu,
        fields: misc::PGPU_FIELDS,
    },
    Collection {
        name: "alarms",
        class: "message",
        xo_type: "message",
        selector: r#"field "name"="ALARM" or field "name"="BOND_STATUS_CHANGED" or field "name"="MULTIPATH_PERIODIC_ALERT""#,
        joins: &["VM", "host", "SR", "pool", "VDI"],
        map: misc::map_alarm,
        fields: misc::ALARM_FIELDS,
    },
    Collection {
        name: "tasks",
        class: "task",
        xo_type: "task",
        selector: "true",
        joins: &["host"],
        map: misc::map_task,
        fields: misc::TASK_FIELDS,
    },
];

/// Builds the XO object of `record` in `coll`: its mapping, then every `null` left out (XO never sends one for an
/// absent value: its links and optional fields are `undefined`) but where XO 6's schema declares the property
/// nullable (`Unbrand_Xo<Type>_` in its OpenAPI document).
pub fn build(coll: &Collection, reference: &str, record: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = (coll.map)(reference, record, ctx);
    let nullable: &[&str] = match coll.class {
        "VM" => &["installTime", "os_version", "startTime"],
        "host" => &["agentStartTime", "license_expiry", "startTime"],
        "VBD" => &["device"],
        _ => &[],
    };
    o.retain(|k, v| !v.is_null() || nullable.contains(&k.as_str()));
    for v in o.values_mut() {
        prune_nulls(v);
    }
    o
}

/// Removes `null` members of objects at any depth (array items stay).
fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// The collection named `name`.
pub fn collection(name: &str) -> Option<&'static Collection> {
    COLLECTIONS.iter().find(|c| c.name == name)
}

/// A number as JavaScript's `+"…"` gives it: an integer when it has no fraction.
pub fn int_or_float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

/// XAPI datetime (`20240101T00:00:00Z`) or a number of seconds (some `other_config` entries, e.g. a host's
/// `boot_time`) → seconds since the epoch; 0 or nothing → null (XO's `parseDateTime`).
pub fn timestamp(v: Option<&Value>) -> Value {
    let Some(s) = v.and_then(Value::as_str) else {
        return Value::Null;
    };
    if let Ok(n) = s.trim().parse::<f64>() {
        return if n == 0.0 || !n.is_finite() { Value::Null } else { int_or_float(n) };
    }
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() < 14 {
        return Value::Null;
    }
    let n = |a: usize, b: usize| digits[a..b].parse::<i64>().unwrap_or(0);
    let (y, mo, d, h, mi, se) = (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    if secs == 0 {
        Value::Null
    } else {
        json!(secs)
    }
}

/// An XAPI int field as a number (XO's `+value`).
pub fn num(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Number(n)) => Value::Number(n.clone()),
        Some(Value::String(s)) => s.parse::<i64>().map(|i| json!(i)).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The fields every XAPI-derived XO object has.
pub fn common(reference: &str, record: &Value, xo_type: &str, ctx: &Ctx) -> Map<String, Value> {
    let uuid = record.get("uuid").cloned().unwrap_or(Value::Null);
    let mut o = Map::new();
    o.insert("id".into(), uuid.clone());
    o.insert("type".into(), json!(xo_type));
    o.insert("uuid".into(), uuid);
    o.insert("$pool".into(), json!(ctx.pool_uuid));
    o.insert("$poolId".into(), json!(ctx.pool_uuid));
    o.insert("_xapiRef".into(), json!(reference));
    for k in ["name_label", "name_description", "tags"] {
        if let Some(v) = record.get(k) {
            o.insert(k.into(), v.clone());
        }
    }
    o
}

/// The XAPI `current_operations` map re-keyed from task refs to task uuids.
pub fn current_operations(record: &Value, ctx: &Ctx) -> Value {
    let mut out = Map::new();
    if let Some(m) = record.get("current_operations").and_then(Value::as_object) {
        for (k, v) in m {
            let key = ctx.records.get(k).and_then(|t| t.get("uuid")).and_then(Value::as_str).unwrap_or(k);
            out.insert(key.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_numbers() {
        assert_eq!(timestamp(Some(&json!("19700101T00:00:00Z"))), Value::Null);
        assert_eq!(timestamp(Some(&json!("20240101T00:00:00Z"))), json!(1_704_067_200));
        assert_eq!(timestamp(Some(&json!("2024-01-01T00:00:01Z"))), json!(1_704_067_201));
        assert_eq!(timestamp(Some(&json!("1764000000"))), json!(1_764_000_000));
        assert_eq!(timestamp(Some(&json!("1764000000.5"))), json!(1_764_000_000.5));
        assert_eq!(timestamp(Some(&json!("0"))), Value::Null);
        assert_eq!(timestamp(None), Value::Null);
        assert_eq!(num(Some(&json!("42"))), json!(42));
        assert_eq!(num(Some(&json!(42))), json!(42));
        assert!(collection("vms").is_some() && collection("nope").is_none());
        assert_eq!(COLLECTIONS.len(), 20);
    }

    /// Each mapper builds what its table says from a record with the usual fields set (the
    /// end-to-end check, `tests/openapi.rs`, holds the simulator's pools to the published schemas).
    #[test]
    fn every_mapper_builds_what_its_table_says() {
        // XAPI sends every field of a record; these are the ones the shapes depend on.
        let records =
            [json!({ "uuid": "u", "name_label": "n", "name_description": "", "tags": ["t"], "power_state": "Halted",
                "other_config": { "a": "b" }, "current_operations": {}, "virtual_size": "1024", "MTU": "1500",
                "status": "success", "created": "20240101T00:00:00Z", "finished": "20240101T00:00:01Z",
                "error_info": [], "is_a_snapshot": true, "snapshot_time": "20240101T00:00:00Z" })];
        let ctx = Ctx { pool_uuid: "p".into(), ..Ctx::default() };
        for coll in COLLECTIONS {
            for record in &records {
                let o = build(coll, "OpaqueRef:1", record, &ctx);
                assert_eq!(schema::check(coll.fields, &o), Ok(()), "{}: {o:?}", coll.name);
            }
        }
    }
}
