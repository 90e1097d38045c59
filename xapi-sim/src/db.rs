//! The simulator's database: every object by class and ref, uuid lookup, the event log and the disks.
//!
//! Objects keep insertion order per class (as XAPI's `get_all_records` order is stable), every change appends an
//! event for `event.from`, and VDI contents live beside their records as [`SparseDisk`]s. This module enforces no
//! API rules (power states, RBAC): that is `api`'s job; it only keeps the data consistent.

use crate::disk::SparseDisk;
use crate::schema::{self, Fields};
use crate::value::{Value, NULL_REF};
use indexmap::IndexMap;
use std::collections::{HashMap, VecDeque};

/// One entry of the event log.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: u64,
    pub timestamp: String,
    /// Lowercase class name, as XAPI reports it.
    pub class: String,
    pub operation: &'static str,
    pub reference: String,
    pub obj_uuid: String,
    /// Kept only for `del` events; others read the live record.
    pub snapshot: Option<Fields>,
}

impl Event {
    /// The event as `event.from` returns it, with `current` as the snapshot of a live object.
    pub fn to_value(&self, current: Option<&Fields>) -> Value {
        let mut m = vec![
            ("id".to_string(), Value::Int(self.id as i64)),
            ("timestamp".to_string(), Value::str(self.timestamp.clone())),
            ("class".to_string(), Value::str(self.class.clone())),
            ("operation".to_string(), Value::str(self.operation)),
            ("ref".to_string(), Value::str(self.reference.clone())),
            ("obj_uuid".to_string(), Value::str(self.obj_uuid.clone())),
        ];
        if let Some(s) = self.snapshot.as_ref().or(current) {
            m.push(("snapshot".into(), Value::Map(s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())));
        }
        Value::Map(m)
    }
}

/// How many events are kept for `event.from`; older tokens get `EVENTS_LOST`.
const EVENT_LOG_CAPACITY: usize = 100_000;

/// All objects of the simulated pool.
#[derive(Debug, Default, Clone)]
pub struct Db {
    classes: HashMap<&'static str, IndexMap<String, Fields>>,
    ref_class: HashMap<String, &'static str>,
    uuid_ref: HashMap<String, String>,
    events: VecDeque<Event>,
    next_event: u64,
    next_domid: i64,
    /// VDI ref -> content.
    pub disks: HashMap<String, SparseDisk>,
}

/// A fresh `OpaqueRef:<uuid>`.
pub fn new_ref() -> String {
    format!("OpaqueRef:{}", uuid::Uuid::new_v4())
}

/// The current time as an XAPI datetime.
pub fn now_datetime() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_else(|_| "19700101T00:00:00Z".into())
}

/// Seconds since the Unix epoch of an XAPI datetime (`20240101T12:00:00Z`).
pub fn parse_datetime(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(s, &fmt).ok().map(|t| t.assume_utc().unix_timestamp())
}

impl Db {
    pub fn new() -> Self {
        Db::default()
    }

    /// Creates an object of `class` from its defaults overlaid with `fields`; returns its ref.
    pub fn create(&mut self, class: &'static str, fields: Fields) -> String {
        let reference = new_ref();
        self.create_with_ref(class, reference.clone(), fields);
        reference
    }

    /// Like [`create`](Self::create) with a chosen ref.
    pub fn create_with_ref(&mut self, class: &'static str, reference: String, fields: Fields) {
        let mut record = schema::defaults(class);
        record.extend(fields);
        let uuid = match record.get("uuid").and_then(Value::as_str) {
            Some(u) if !u.is_empty() => u.to_string(),
            _ => {
                let u = uuid::Uuid::new_v4().to_string();
                record.insert("uuid".into(), Value::str(u.clone()));
                u
            }
        };
        self.uuid_ref.insert(uuid, reference.clone());
        self.ref_class.insert(reference.clone(), class);
        self.classes.entry(class).or_default().insert(reference.clone(), record);
        self.log(&reference, "add");
    }

    fn log(&mut self, reference: &str, operation: &'static str) {
        let Some(class) = self.ref_class.get(reference).copied() else {
            return;
        };
        let record = self.get(reference);
        let obj_uuid = record.and_then(|s| s.get("uuid")).and_then(Value::as_str).unwrap_or_default().to_string();
        // Live objects are snapshotted when events are read (the newest state, as XAPI coalesces); a deleted
        // object's last state must be kept now.
        let snapshot = if operation == "del" { record.cloned() } else { None };
        self.next_event += 1;
        self.events.push_back(Event {
            id: self.next_event,
            timestamp: now_datetime(),
            class: class.to_ascii_lowercase(),
            operation,
            reference: reference.to_string(),
            obj_uuid,
            snapshot,
        });
        if self.events.len() > EVENT_LOG_CAPACITY {
            self.events.pop_front();
        }
    }

    /// The next domain id for a starting VM.
    pub fn next_domid(&mut self) -> i64 {
        self.next_domid += 1;
        self.next_domid
    }

    /// Records a `mod` event without a change, as `event.inject` does.
    pub fn inject(&mut self, reference: &str) -> u64 {
        self.log(reference, "mod");
        self.next_event
    }

    /// The id of the newest event.
    pub fn last_event_id(&self) -> u64 {
        self.next_event
    }

    /// Events newer than `after`, or `None` if some were dropped from the log.
    pub fn events_since(&self, after: u64) -> Option<Vec<&Event>> {
        if let Some(first) = self.events.front() {
            if after + 1 < first.id {
                return None;
            }
        }
        Some(self.events.iter().filter(|e| e.id > after).collect())
    }

    pub fn class_of(&self, reference: &str) -> Option<&'static str> {
        self.ref_class.get(reference).copied()
    }

    pub fn get(&self, reference: &str) -> Option<&Fields> {
        let class = self.ref_class.get(reference)?;
        self.classes.get(class)?.get(reference)
    }

    /// The record if `reference` is an object of `class`.
    pub fn get_of(&self, class: &str, reference: &str) -> Option<&Fields> {
        self.classes.get(class)?.get(reference)
    }

    /// A field as a string ("" when missing).
    pub fn field_str(&self, reference: &str, field: &str) -> String {
        self.get(reference).and_then(|r| r.get(field)).and_then(Value::as_str).unwrap_or_default().to_string()
    }

    pub fn field(&self, reference: &str, field: &str) -> Option<&Value> {
        self.get(reference)?.get(field)
    }

    pub fn ref_by_uuid(&self, uuid: &str) -> Option<&String> {
        self.uuid_ref.get(uuid)
    }

    /// All objects of a class in insertion order.
    pub fn all(&self, class: &str) -> impl Iterator<Item = (&String, &Fields)> {
        self.classes.get(class).into_iter().flat_map(|m| m.iter())
    }

    pub fn count(&self, class: &str) -> usize {
        self.classes.get(class).map_or(0, IndexMap::len)
    }

    /// Changes one object and logs a `mod` event. Returns false if the object does not exist.
    pub fn update(&mut self, reference: &str, f: impl FnOnce(&mut Fields)) -> bool {
        let Some(class) = self.ref_class.get(reference).copied() else {
            return false;
        };
        let Some(rec) = self.classes.get_mut(class).and_then(|m| m.get_mut(reference)) else {
            return false;
        };
        f(rec);
        self.log(reference, "mod");
        true
    }

    pub fn set(&mut self, reference: &str, field: &str, value: Value) -> bool {
        self.update(reference, |r| {
            r.insert(field.to_string(), value);
        })
    }

    /// Adds `item` to the set field `field` of `reference` (no-op for `OpaqueRef:NULL`).
    pub fn set_add(&mut self, reference: &str, field: &str, item: &str) {
        if reference == NULL_REF {
            return;
        }
        self.update(reference, |r| {
            if let Some(Value::Array(a)) = r.get_mut(field) {
                if !a.iter().any(|v| v.as_str() == Some(item)) {
                    a.push(Value::str(item));
                }
            }
        });
    }

    /// Appends `item`, known not to be there yet (a new object), to the set field `field` of `reference`.
    pub fn set_push(&mut self, reference: &str, field: &str, item: &str) {
        if reference == NULL_REF {
            return;
        }
        self.update(reference, |r| {
            if let Some(Value::Array(a)) = r.get_mut(field) {
                a.push(Value::str(item));
            }
        });
    }

    /// Removes `item` from the set field `field` of `reference`.
    pub fn set_remove(&mut self, reference: &str, field: &str, item: &str) {
        if reference == NULL_REF || self.get(reference).is_none() {
            return;
        }
        self.update(reference, |r| {
            if let Some(Value::Array(a)) = r.get_mut(field) {
                a.retain(|v| v.as_str() != Some(item));
            }
        });
    }

    /// Deletes an object (and its disk, for a VDI) and logs a `del` event.
    pub fn destroy(&mut self, reference: &str) -> bool {
        let Some(class) = self.ref_class.get(reference).copied() else {
            return false;
        };
        self.log(reference, "del");
        let removed = self.classes.get_mut(class).and_then(|m| m.shift_remove(reference));
        if let Some(rec) = removed {
            if let Some(u) = rec.get("uuid").and_then(Value::as_str) {
                self.uuid_ref.remove(u);
            }
        }
        self.ref_class.remove(reference);
        self.disks.remove(reference);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_update_destroy_log_events() {
        let mut db = Db::new();
        let start = db.last_event_id();
        let r = db.create("VM", Fields::from([("name_label".into(), Value::str("a"))]));
        let uuid = db.field_str(&r, "uuid");
        assert_eq!(db.ref_by_uuid(&uuid), Some(&r));
        assert_eq!(db.field_str(&r, "power_state"), "Halted");
        db.set(&r, "name_label", Value::str("b"));
        db.set_add(&r, "tags", "t");
        db.set_add(&r, "tags", "t");
        assert_eq!(db.field(&r, "tags"), Some(&Value::strs(["t"])));
        assert!(db.destroy(&r));
        let ev = db.events_since(start).unwrap();
        let ops: Vec<_> = ev.iter().map(|e| e.operation).collect();
        assert_eq!(ops, ["add", "mod", "mod", "mod", "del"]);
        assert_eq!(ev[0].class, "vm");
        assert!(db.get(&r).is_none());
        assert!(db.ref_by_uuid(&uuid).is_none());
    }
}
