//! XAPI's typed values, and their two wire encodings.
//!
//! XAPI fields have types that JSON alone loses: `int` is 64-bit (a JSON number, but a *decimal string* on
//! XML-RPC), `datetime` is a string on JSON-RPC but `dateTime.iso8601` on XML-RPC, `float` must stay a float.
//! [`Value`] keeps the type so that one record encodes correctly on both protocols. Refs, enums and uuids are
//! plain strings, as on the wire. This module does not parse requests (see `jsonrpc` and `xmlrpc`).

use std::fmt::Write as _;

/// A value as XAPI types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    /// A 32-bit int, which XAPI encodes as `<i4>` on XML-RPC (only `event.from`'s `valid_ref_counts`).
    Int32(i32),
    Float(f64),
    Bool(bool),
    /// An ISO 8601 basic-format datetime, e.g. `20240101T00:00:00Z`.
    DateTime(String),
    Array(Vec<Value>),
    /// A map or a struct: string keys, in order.
    Map(Vec<(String, Value)>),
    /// Only ever received (XML-RPC `<nil/>`, JSON `null`), never stored.
    Nil,
}

/// The null reference.
pub const NULL_REF: &str = "OpaqueRef:NULL";

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn null_ref() -> Value {
        Value::Str(NULL_REF.to_string())
    }

    pub fn empty_map() -> Value {
        Value::Map(Vec::new())
    }

    pub fn empty_set() -> Value {
        Value::Array(Vec::new())
    }

    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Array(items.into_iter().map(|s| Value::Str(s.into())).collect())
    }

    pub fn map<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(items: I) -> Value {
        Value::Map(items.into_iter().map(|(k, v)| (k.into(), Value::Str(v.into()))).collect())
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::DateTime(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, accepting the decimal strings XML-RPC clients send for XAPI ints.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Int32(i) => Some(i64::from(*i)),
            Value::Str(s) => s.parse().ok(),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Int32(i) => Some(f64::from(*i)),
            Value::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" => Some(true),
            Value::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A member of a map or struct.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string form XAPI's database keeps for a scalar, used by `get_all_records_where`.
    pub fn db_string(&self) -> String {
        match self {
            Value::Str(s) | Value::DateTime(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Int32(i) => i.to_string(),
            Value::Float(f) => format!("{f}"),
            Value::Bool(b) => b.to_string(),
            Value::Nil => String::new(),
            Value::Array(_) | Value::Map(_) => serde_json::to_string(&self.to_json()).unwrap_or_default(),
        }
    }

    /// JSON-RPC encoding.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Str(s) | Value::DateTime(s) => J::String(s.clone()),
            Value::Int(i) => J::from(*i),
            Value::Int32(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Nil => J::Null,
        }
    }

    /// Decodes a JSON-RPC parameter. Integral numbers become ints, others floats; objects become maps.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        }
    }

    /// XML-RPC encoding as XAPI writes it: strings bare, ints as decimal strings.
    pub fn write_xml(&self, out: &mut String) {
        out.push_str("<value>");
        match self {
            Value::Str(s) => escape_into(s, out),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Int32(i) => {
                let _ = write!(out, "<i4>{i}</i4>");
            }
            Value::Float(f) => {
                let _ = write!(out, "<double>{f:?}</double>");
            }
            Value::Bool(b) => {
                let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
            }
            Value::DateTime(s) => {
                out.push_str("<dateTime.iso8601>");
                escape_into(s, out);
                out.push_str("</dateTime.iso8601>");
            }
            Value::Array(a) => {
                out.push_str("<array><data>");
                for v in a {
                    v.write_xml(out);
                }
                out.push_str("</data></array>");
            }
            Value::Map(m) => {
                out.push_str("<struct>");
                for (k, v) in m {
                    out.push_str("<member><name>");
                    escape_into(k, out);
                    out.push_str("</name>");
                    v.write_xml(out);
                    out.push_str("</member>");
                }
                out.push_str("</struct>");
            }
            Value::Nil => out.push_str("<nil/>"),
        }
        out.push_str("</value>");
    }

    /// The XML-RPC text of this value, as XAPI stores task results.
    pub fn to_xml_string(&self) -> String {
        let mut s = String::new();
        self.write_xml(&mut s);
        s
    }
}

/// XML-escapes `s` into `out`.
pub fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_encoding_follows_xapi() {
        let v = Value::Map(vec![
            ("a".into(), Value::Int(5)),
            ("b".into(), Value::str("x<y")),
            ("c".into(), Value::Bool(true)),
            ("d".into(), Value::Float(0.5)),
            ("e".into(), Value::DateTime("20240101T00:00:00Z".into())),
        ]);
        assert_eq!(
            v.to_xml_string(),
            "<value><struct><member><name>a</name><value>5</value></member><member><name>b</name><value>x&lt;y</value></member><member><name>c</name><value><boolean>1</boolean></value></member><member><name>d</name><value><double>0.5</double></value></member><member><name>e</name><value><dateTime.iso8601>20240101T00:00:00Z</dateTime.iso8601></value></member></struct></value>"
        );
    }

    #[test]
    fn json_round_trip_keeps_ints_and_floats_apart() {
        let j = serde_json::json!({"n": 9007199254740993i64, "f": 1.5, "s": "x", "l": [true]});
        let v = Value::from_json(&j);
        assert_eq!(v.get("n"), Some(&Value::Int(9007199254740993)));
        assert_eq!(v.get("f"), Some(&Value::Float(1.5)));
        assert_eq!(v.to_json(), j);
    }

    #[test]
    fn ints_accept_decimal_strings() {
        assert_eq!(Value::str("1073741824").as_i64(), Some(1 << 30));
        assert_eq!(Value::str("x").as_i64(), None);
    }
}
