//! XAPI's published datamodel for the classes the simulator serves: every field's XenAPI type and lifecycle
//! state, and every enum's values (`datamodel.json`, written by `datamodel/extract.py` from
//! `doc/data/xenapi.json` of xapi-project/xen-api; names and types only).
//!
//! [`schema`](crate::schema) completes its records from it (every field a real XAPI returns is present, with a
//! zero value of its type unless the scenario sets one), and [`check`] tells whether a record is what XAPI would
//! send: every field of the class present, none other, each value of its declared type with enum values spelled
//! as XAPI spells them.
//!
//! Fields whose lifecycle says "Removed" are still sent: XAPI generates its records from every field of a class
//! (`ocaml/idl/datamodel_utils.ml`, `fields_of_obj`), and its code generator filters fields on `internal_only` and
//! release only (`ocaml/idl/ocaml_backend/gen_api_main.ml`, `Field.filter_of`), never on lifecycle; XO itself reads
//! one of them (`host_metrics.memory_free`). This module holds no behaviour of the API.

use crate::schema::Fields;
use crate::value::{Value, NULL_REF};
use indexmap::IndexMap;
use serde::Deserialize;
use std::sync::OnceLock;

/// A field's type as the datamodel writes it (e.g. `(string -> enum vm_operations) map`) and lifecycle state.
#[derive(Debug, Deserialize)]
pub struct Field(pub String, pub String);

impl Field {
    pub fn ty(&self) -> &str {
        &self.0
    }

    /// The lifecycle state (`Published`, `Deprecated`, `Removed`, `Prototyped`…); it does not change the records.
    pub fn state(&self) -> &str {
        &self.1
    }
}

#[derive(Debug, Deserialize)]
pub struct Datamodel {
    pub source: String,
    pub classes: IndexMap<String, IndexMap<String, Field>>,
    pub enums: IndexMap<String, Vec<String>>,
}

/// The datamodel, parsed once.
pub fn get() -> &'static Datamodel {
    static MODEL: OnceLock<Datamodel> = OnceLock::new();
    MODEL.get_or_init(|| {
        serde_json::from_str(include_str!("datamodel.json")).unwrap_or_else(|e| panic!("datamodel.json: {e}"))
    })
}

/// The fields of `class` with their types, in the datamodel's order.
pub fn fields(class: &str) -> impl Iterator<Item = (&'static str, &'static str)> {
    get().classes.get(class).into_iter().flatten().map(|(n, f)| (n.as_str(), f.ty()))
}

/// The value a field of type `ty` holds when nothing set it: empty, zero, false, the epoch, the null ref, or an
/// enum's first value.
pub fn zero(ty: &str) -> Value {
    if ty.ends_with(" set") {
        return Value::empty_set();
    }
    if ty.ends_with(" map") {
        return Value::empty_map();
    }
    if ty.ends_with(" ref") {
        return Value::null_ref();
    }
    if let Some(e) = ty.strip_prefix("enum ") {
        return Value::str(get().enums.get(e).and_then(|v| v.first()).cloned().unwrap_or_default());
    }
    match ty {
        "int" => Value::Int(0),
        "float" => Value::Float(0.0),
        "bool" => Value::Bool(false),
        "datetime" => Value::DateTime("19700101T00:00:00Z".into()),
        _ => Value::str(""),
    }
}

/// Why `v` is not a value of type `ty`, if it is not.
pub fn type_error(ty: &str, v: &Value) -> Option<String> {
    let bad = || Some(format!("{v:?} is not a {ty}"));
    if let Some(inner) = ty.strip_suffix(" set") {
        let Value::Array(items) = v else { return bad() };
        return items.iter().find_map(|x| type_error(inner, x));
    }
    if let Some(inner) = ty.strip_suffix(" map") {
        let Value::Map(members) = v else { return bad() };
        let inner = inner.trim_start_matches('(').trim_end_matches(')');
        let (key_ty, value_ty) = inner.split_once(" -> ")?;
        return members.iter().find_map(|(k, x)| {
            let key = match key_ty {
                "int" => k.parse::<i64>().map(Value::Int).unwrap_or_else(|_| Value::str(k.clone())),
                _ => Value::str(k.clone()),
            };
            type_error(key_ty, &key).or_else(|| type_error(value_ty, x))
        });
    }
    if ty.ends_with(" ref") {
        return match v {
            Value::Str(s) if s == NULL_REF || s.starts_with("OpaqueRef:") => None,
            _ => bad(),
        };
    }
    if let Some(e) = ty.strip_prefix("enum ") {
        let values = get().enums.get(e)?;
        return match v {
            Value::Str(s) if values.iter().any(|x| x == s) => None,
            _ => Some(format!("{v:?} is not one of enum {e} {values:?}")),
        };
    }
    let ok = match ty {
        "int" => matches!(v, Value::Int(_)),
        "float" => matches!(v, Value::Float(_)),
        "bool" => matches!(v, Value::Bool(_)),
        "datetime" => matches!(v, Value::DateTime(s) if is_datetime(s)),
        "string" => matches!(v, Value::Str(_)),
        _ => true,
    };
    if ok {
        None
    } else {
        bad()
    }
}

/// XAPI's datetime: ISO 8601 basic format in UTC, e.g. `20240101T12:00:00Z`.
fn is_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 18
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b'Z'
        && [9, 10, 12, 13, 15, 16].iter().all(|&i| b[i].is_ascii_digit())
}

/// Every way `record` of `class` differs from what XAPI sends: missing fields, fields XAPI does not have, values
/// of the wrong type.
pub fn check(class: &str, record: &Fields) -> Vec<String> {
    let Some(fields) = get().classes.get(class) else {
        return vec![format!("{class} is not in the datamodel")];
    };
    let mut problems = Vec::new();
    for (name, f) in fields {
        match record.get(name) {
            None => problems.push(format!("{class}.{name} missing ({})", f.state())),
            Some(v) => {
                if let Some(e) = type_error(f.ty(), v) {
                    problems.push(format!("{class}.{name}: {e}"));
                }
            }
        }
    }
    for name in record.keys().filter(|k| !fields.contains_key(*k)) {
        problems.push(format!("{class}.{name} is not in the datamodel"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_zero_values() {
        assert_eq!(zero("enum vm_power_state"), Value::str("Halted"));
        assert_eq!(zero("(string -> string) map"), Value::empty_map());
        assert_eq!(zero("VDI ref set"), Value::empty_set());
        for ty in ["int", "float", "bool", "datetime", "string", "SR ref", "enum vdi_type", "(int -> float) map"] {
            assert_eq!(type_error(ty, &zero(ty)), None, "{ty}");
        }
        assert!(type_error("int", &Value::Float(1.0)).is_some());
        assert!(type_error("float", &Value::Int(1)).is_some());
        assert!(type_error("enum vm_power_state", &Value::str("running")).is_some());
        assert!(type_error("datetime", &Value::str("20240101T00:00:00Z")).is_some(), "a datetime is typed");
        assert!(type_error("(string -> enum vm_operations) map", &Value::map([("t", "start")])).is_none());
        assert!(type_error("(string -> enum vm_operations) map", &Value::map([("t", "nope")])).is_some());
        assert!(type_error("(int -> float) map", &Value::Map(vec![("0".into(), Value::Float(0.5))])).is_none());
        assert!(get().source.contains("xenapi.json"));
    }
}
