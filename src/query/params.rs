//! XO's collection query parameters (`fields`, `filter`, `limit`, `ndjson`) and the two output formats.
//!
//! Legacy XO semantics: no `fields` lists hrefs; `fields=a,b` picks those (lodash `pick`, dotted paths included)
//! and adds `href`; `fields=*` is the whole object plus `href`; `fields=` is `href` alone. `limit` applies after
//! `filter`. `ndjson` is on when the key is present, whatever its value. JSON arrays are written in legacy XO's
//! streamed layout; NDJSON is one compact object per line.

use super::filter::{self, Filter};
use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// What each item of a listing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// No `fields`: the object's URL.
    Urls,
    /// `fields=*`.
    All,
    /// `fields=a,b` (possibly empty: `href` only).
    Only(Vec<String>),
}

/// A parsed collection query.
#[derive(Debug)]
pub struct ListQuery {
    pub fields: Fields,
    pub filter: Option<Filter>,
    pub limit: Option<usize>,
    pub ndjson: bool,
}

/// Longest `filter` or `fields` value accepted.
pub const MAX_PARAM_LEN: usize = 4096;

/// Decodes a query string into (key, value) pairs, `+` as space.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Parses the collection query parameters.
pub fn parse_list_query(query: &str) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { fields: Fields::Urls, filter: None, limit: None, ndjson: false };
    for (k, v) in pairs(query) {
        match k.as_str() {
            "fields" => {
                if v.len() > MAX_PARAM_LEN {
                    return Err(ApiError::bad_request("fields is too long"));
                }
                q.fields = if v == "*" {
                    Fields::All
                } else {
                    Fields::Only(v.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect())
                };
            }
            "filter" => {
                if v.len() > MAX_PARAM_LEN {
                    return Err(ApiError::bad_request("filter is too long"));
                }
                let f = filter::parse(&v)
                    .map_err(|e| ApiError::bad_request(e.0).with_data(json!({ "stringToParse": v })))?;
                q.filter = Some(f);
            }
            "limit" => {
                let n = v.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad_request("limit must be a non-negative integer").with_data(json!({ "limit": v }))
                })?;
                q.limit = Some(n);
            }
            "ndjson" => q.ndjson = true,
            _ => {}
        }
    }
    Ok(q)
}

fn lookup<'a>(o: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = o.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = o.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn insert_path(out: &mut Map<String, Value>, path: &str, direct: bool, v: Value) {
    if direct {
        out.insert(path.to_string(), v);
        return;
    }
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut cur = out;
    for p in parts {
        let entry = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(m) => cur = m,
            _ => return,
        }
    }
    cur.insert(last.to_string(), v);
}

/// One listing item for `object` at `href`.
pub fn item(fields: &Fields, object: Map<String, Value>, href: String) -> Value {
    match fields {
        Fields::Urls => Value::String(href),
        Fields::All => {
            let mut o = object;
            o.insert("href".into(), Value::String(href));
            Value::Object(o)
        }
        Fields::Only(names) => {
            let mut out = Map::new();
            for name in names {
                if let Some(v) = lookup(&object, name) {
                    insert_path(&mut out, name, object.contains_key(name), v.clone());
                }
            }
            out.insert("href".into(), Value::String(href));
            Value::Object(out)
        }
    }
}

/// Writes a listing item by item.
#[derive(Debug)]
pub struct ListWriter {
    ndjson: bool,
    count: usize,
    pub out: Vec<u8>,
}

impl ListWriter {
    pub fn new(ndjson: bool) -> Self {
        let mut w = ListWriter { ndjson, count: 0, out: Vec::new() };
        if !ndjson {
            w.out.push(b'[');
        }
        w
    }

    pub fn content_type(&self) -> &'static str {
        if self.ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        }
    }

    pub fn push(&mut self, v: &Value) {
        if self.ndjson {
            let _ = serde_json::to_writer(&mut self.out, v);
            self.out.push(b'\n');
        } else {
            self.out.extend_from_slice(if self.count == 0 { b"\n" } else { b",\n" });
            let _ = serde_json::to_writer_pretty(&mut self.out, v);
        }
        self.count += 1;
    }

    /// Number of items written.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Takes what has been written so far (for streaming).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn finish(mut self) -> Vec<u8> {
        if !self.ndjson {
            self.out.extend_from_slice(b"\n]\n");
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xo_parameters() {
        let q = parse_list_query("fields=name_label,power_state&filter=power_state:running&limit=2&ndjson").unwrap();
        assert_eq!(q.fields, Fields::Only(vec!["name_label".into(), "power_state".into()]));
        assert!(q.filter.is_some() && q.ndjson && q.limit == Some(2));
        assert_eq!(parse_list_query("fields=*").unwrap().fields, Fields::All);
        assert_eq!(parse_list_query("fields=").unwrap().fields, Fields::Only(vec![]));
        assert!(parse_list_query("ndjson=false").unwrap().ndjson, "presence, as legacy XO");
        let e = parse_list_query("filter=(a").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body(),
            json!({"error": "parse error: expected end of input at position 0", "data": {"stringToParse": "(a"}})
        );
        assert_eq!(parse_list_query("limit=x").unwrap_err().status, 400);
        assert!(parse_list_query("filter=name_label:%22XOA%20%F0%9F%8E%B7%22").unwrap().filter.is_some());
    }

    #[test]
    fn items_and_layouts() {
        let o: Map<String, Value> =
            serde_json::from_value(json!({"a": 1, "m": {"size": 2, "x": 3}, "b.c": 4})).unwrap();
        let href = "/rest/v0/vms/x".to_string();
        assert_eq!(item(&Fields::Urls, o.clone(), href.clone()), json!(href));
        assert_eq!(item(&Fields::Only(vec![]), o.clone(), href.clone()), json!({"href": href}));
        assert_eq!(
            item(
                &Fields::Only(vec!["a".into(), "m.size".into(), "b.c".into(), "nope".into()]),
                o.clone(),
                href.clone()
            ),
            json!({"a": 1, "m": {"size": 2}, "b.c": 4, "href": href})
        );
        let mut w = ListWriter::new(false);
        w.push(&json!("/a"));
        w.push(&json!({"x": 1}));
        assert_eq!(String::from_utf8(w.finish()).unwrap(), "[\n\"/a\",\n{\n  \"x\": 1\n}\n]\n");
        let mut w = ListWriter::new(true);
        w.push(&json!({"x": 1}));
        assert_eq!(w.finish(), b"{\"x\":1}\n");
        assert_eq!(ListWriter::new(false).finish(), b"[\n]\n");
    }
}
