//! The typed shapes of XO objects: each mapper's file declares the fields it builds as a table of [`Field`]s, next
//! to the code, and the OpenAPI document turns those tables into JSON Schemas ([`json_schema`]). [`check`] holds an
//! object to its table, so unit and end-to-end tests fail when a mapper and its table drift apart.
//!
//! Objects are sent without `null`s (XO's `undefined`), so every field but the [`COMMON`] identity ones may be
//! absent; a present field must have its type, and a field outside the table is an error
//! (`additionalProperties: false`).

use serde_json::{json, Map, Value};

/// A field's JSON type.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Int,
    /// Any JSON number.
    Num,
    Bool,
    /// The uuid of a linked object.
    Uuid,
    /// The uuids of linked objects.
    Uuids,
    /// An array of strings.
    Strs,
    /// An object of strings (XAPI's `(string → string) map`).
    StrMap,
    /// An object of any members.
    Object,
    /// An array of anything.
    List,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// An object of exactly these (optional) members.
    Fields(&'static [Field]),
    /// Any JSON value.
    Any,
    /// The type, or `null` (the few fields XO 6's schema declares nullable).
    Nullable(&'static Ty),
}

/// A field: its name and type.
pub type Field = (&'static str, Ty);

/// The identity every XAPI-derived object has (`objects::common`), always present.
pub const COMMON: &[Field] = &[
    ("id", Ty::Str),
    ("type", Ty::Str),
    ("uuid", Ty::Str),
    ("$pool", Ty::Str),
    ("$poolId", Ty::Str),
    ("_xapiRef", Ty::Str),
];

/// The optional names every XAPI object with a name has (`objects::common` copies them when the record has them),
/// and `href`, which listings add.
pub const NAMED: &[Field] =
    &[("name_label", Ty::Str), ("name_description", Ty::Str), ("tags", Ty::Strs), ("href", Ty::Str)];

/// The JSON Schema of a type.
pub fn type_schema(ty: &Ty) -> Value {
    match ty {
        Ty::Str | Ty::Uuid => json!({ "type": "string" }),
        Ty::Int => json!({ "type": "integer" }),
        Ty::Num => json!({ "type": "number" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Uuids | Ty::Strs => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::StrMap => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        Ty::Object => json!({ "type": "object" }),
        Ty::List => json!({ "type": "array", "items": {} }),
        Ty::OneOf(values) => json!({ "type": "string", "enum": values }),
        Ty::Fields(fields) => {
            let properties: Map<String, Value> = fields.iter().map(|(k, t)| (k.to_string(), type_schema(t))).collect();
            json!({ "type": "object", "properties": properties, "additionalProperties": false })
        }
        Ty::Any => json!({}),
        Ty::Nullable(inner) => json!({ "anyOf": [type_schema(inner), { "type": "null" }] }),
    }
}

/// The JSON Schema of an object made of [`COMMON`], [`NAMED`] and `fields`; `partial` (a listing's chosen fields)
/// requires none of them.
///
/// XO sends some links twice, as `PIFs` and `$PIFs`, `host` and `$host`: the `$` alias of a field goes under
/// `patternProperties` (an anchored exact name), so that client generators, which name properties without the `$`,
/// do not see two properties of one name; validation is as strict either way.
pub fn json_schema(fields: &[Field], partial: bool) -> Value {
    let all: Vec<&Field> = COMMON.iter().chain(NAMED).chain(fields).collect();
    let alias =
        |k: &str| k.strip_prefix('$').is_some_and(|bare| all.iter().any(|(other, _)| other.eq_ignore_ascii_case(bare)));
    let properties: Map<String, Value> =
        all.iter().filter(|(k, _)| !alias(k)).map(|(k, t)| (k.to_string(), type_schema(t))).collect();
    let patterns: Map<String, Value> =
        all.iter().filter(|(k, _)| alias(k)).map(|(k, t)| (format!("^\\{k}$"), type_schema(t))).collect();
    let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
    if !patterns.is_empty() {
        schema["patternProperties"] = Value::Object(patterns);
    }
    if !partial {
        schema["required"] = json!(COMMON.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    }
    schema
}

/// Whether `v` has type `ty`.
fn fits(ty: &Ty, v: &Value) -> bool {
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    match ty {
        Ty::Str | Ty::Uuid => v.is_string(),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Num => v.is_number(),
        Ty::Bool => v.is_boolean(),
        Ty::Uuids | Ty::Strs => strings(v),
        Ty::StrMap => v.as_object().is_some_and(|m| m.values().all(Value::is_string)),
        Ty::Object => v.is_object(),
        Ty::List => v.is_array(),
        Ty::OneOf(values) => v.as_str().is_some_and(|s| values.contains(&s)),
        Ty::Fields(fields) => v.as_object().is_some_and(|m| check_members(fields, m).is_ok()),
        Ty::Any => true,
        Ty::Nullable(inner) => v.is_null() || fits(inner, v),
    }
}

fn check_members(fields: &[Field], object: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in object {
        let Some((_, ty)) = fields.iter().find(|(name, _)| name == k) else {
            return Err(format!("`{k}` is not in the schema"));
        };
        if !fits(ty, v) {
            return Err(format!("`{k}` is {v}, not a {ty:?}"));
        }
    }
    Ok(())
}

/// Holds a full object to its table: the identity present, every field known and of its type.
pub fn check(fields: &[Field], object: &Map<String, Value>) -> Result<(), String> {
    if let Some((k, _)) = COMMON.iter().find(|(k, _)| !object.contains_key(*k)) {
        return Err(format!("`{k}` is missing"));
    }
    let all: Vec<Field> = COMMON.iter().chain(NAMED).chain(fields).copied().collect();
    check_members(&all, object)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: &[Field] = &[
        ("size", Ty::Int),
        ("mode", Ty::OneOf(&["a", "b"])),
        ("cpus", Ty::Fields(&[("cores", Ty::Int)])),
        ("since", Ty::Nullable(&Ty::Int)),
    ];

    fn object(extra: Value) -> Map<String, Value> {
        let mut o = json!({ "id": "u", "type": "T", "uuid": "u", "$pool": "p", "$poolId": "p", "_xapiRef": "OpaqueRef:1",
            "name_label": "n", "tags": ["a"], "size": 1, "mode": "a", "cpus": { "cores": 2 }, "since": null });
        o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        o.as_object().unwrap().clone()
    }

    #[test]
    fn objects_that_fit_pass_and_deliberate_mismatches_fail() {
        assert_eq!(check(SHAPE, &object(json!({}))), Ok(()));
        // A renamed field, a changed type, a value outside the enum, a nested member, a missing identity.
        assert!(check(SHAPE, &object(json!({ "sizes": 1 }))).unwrap_err().contains("`sizes` is not in the schema"));
        assert!(check(SHAPE, &object(json!({ "size": "1" }))).unwrap_err().contains("`size`"));
        assert!(check(SHAPE, &object(json!({ "size": 1.5 }))).unwrap_err().contains("`size`"));
        assert!(check(SHAPE, &object(json!({ "mode": "c" }))).unwrap_err().contains("`mode`"));
        assert!(check(SHAPE, &object(json!({ "cpus": { "threads": 2 } }))).unwrap_err().contains("`cpus`"));
        assert!(check(SHAPE, &object(json!({ "tags": [1] }))).unwrap_err().contains("`tags`"));
        let mut o = object(json!({}));
        o.remove("uuid");
        assert_eq!(check(SHAPE, &o), Err("`uuid` is missing".into()));
    }

    #[test]
    fn the_json_schema_says_the_same() {
        let full = json_schema(SHAPE, false);
        assert_eq!(full["required"][0], "id");
        assert_eq!(full["additionalProperties"], false);
        assert_eq!(full["properties"]["since"]["anyOf"][1]["type"], "null");
        assert_eq!(full["properties"]["cpus"]["properties"]["cores"]["type"], "integer");
        assert!(json_schema(SHAPE, true).get("required").is_none());
        let aliased = json_schema(&[("PIFs", Ty::Uuids), ("$PIFs", Ty::Uuids), ("$VBDs", Ty::Uuids)], false);
        assert!(aliased["properties"].get("$PIFs").is_none() && aliased["properties"]["$VBDs"].is_object());
        assert_eq!(aliased["patternProperties"]["^\\$PIFs$"]["type"], "array");
    }
}
