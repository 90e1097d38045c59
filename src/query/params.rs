//! XO's collection query parameters (`fields`, `filter`, `limit`, `ndjson`, `markdown`) and the three output formats.
//!
//! Legacy XO semantics: no `fields` lists hrefs; `fields=a,b` picks those (lodash `pick`, dotted paths included)
//! and adds `href`; `fields=*` is the whole object plus `href`; `fields=` is `href` alone. `limit` applies after
//! `filter`. `ndjson` is on when the key is present, whatever its value. JSON arrays are written in legacy XO's
//! streamed layout; NDJSON is one compact object per line.
//!
//! XO 6's `markdown=true` writes a Markdown table (`text/markdown`): one column per key of the first item (`href`
//! left out), `|` escaped and line breaks flattened in cells, objects and arrays as compact JSON, nothing for a
//! missing or null value; a listing of paths is one path per line; an empty listing is `No results.`. `markdown`
//! is a boolean (`true`/`1`/present, `false`/`0`); asking for both `ndjson` and `markdown` is a 400, as in XO 6.

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

/// How a listing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array (the default).
    Json,
    /// `ndjson`: one JSON value per line.
    Ndjson,
    /// `markdown=true`: a Markdown table.
    Markdown,
}

/// A parsed collection query.
#[derive(Debug)]
pub struct ListQuery {
    pub fields: Fields,
    pub filter: Option<Filter>,
    pub limit: Option<usize>,
    pub format: Format,
}

/// Longest `filter` or `fields` value accepted.
pub const MAX_PARAM_LEN: usize = 4096;

/// Decodes a query string into (key, value) pairs, `+` as space.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Parses the collection query parameters.
pub fn parse_list_query(query: &str) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { fields: Fields::Urls, filter: None, limit: None, format: Format::Json };
    let mut markdown = false;
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
            "ndjson" => q.format = Format::Ndjson,
            "markdown" => {
                markdown = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(
                            ApiError::bad_request("markdown must be true or false").with_data(json!({ "markdown": v }))
                        )
                    }
                }
            }
            _ => {}
        }
    }
    if markdown {
        if q.format == Format::Ndjson {
            return Err(ApiError::bad_request("ndjson and markdown cannot be asked for together"));
        }
        q.format = Format::Markdown;
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
    format: Format,
    count: usize,
    /// Markdown: the table's columns, from the first item.
    columns: Vec<String>,
    pub out: Vec<u8>,
}

impl ListWriter {
    pub fn new(format: Format) -> Self {
        let mut w = ListWriter { format, count: 0, columns: Vec::new(), out: Vec::new() };
        if format == Format::Json {
            w.out.push(b'[');
        }
        w
    }

    pub fn content_type(&self) -> &'static str {
        match self.format {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Markdown => "text/markdown; charset=utf-8",
        }
    }

    pub fn push(&mut self, v: &Value) {
        match self.format {
            Format::Ndjson => {
                let _ = serde_json::to_writer(&mut self.out, v);
                self.out.push(b'\n');
            }
            Format::Json => {
                self.out.extend_from_slice(if self.count == 0 { b"\n" } else { b",\n" });
                let _ = serde_json::to_writer_pretty(&mut self.out, v);
            }
            Format::Markdown => self.push_row(v),
        }
        self.count += 1;
    }

    fn push_row(&mut self, v: &Value) {
        if self.count > 0 {
            self.out.push(b'\n');
        }
        let Value::Object(o) = v else {
            // A listing of paths: one a line.
            self.out.extend_from_slice(cell(Some(v)).as_bytes());
            return;
        };
        if self.count == 0 {
            self.columns = o.keys().filter(|k| *k != "href").cloned().collect();
            let header: Vec<String> = self.columns.iter().map(|c| cell(Some(&Value::String(c.clone())))).collect();
            let line = format!("| {} |\n| {} |\n", header.join(" | "), vec!["---"; self.columns.len()].join(" | "));
            self.out.extend_from_slice(line.as_bytes());
        }
        let cells: Vec<String> = self.columns.iter().map(|c| cell(o.get(c))).collect();
        self.out.extend_from_slice(format!("| {} |", cells.join(" | ")).as_bytes());
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
        match self.format {
            Format::Json => self.out.extend_from_slice(b"\n]\n"),
            Format::Markdown if self.count == 0 => self.out.extend_from_slice(b"No results."),
            _ => {}
        }
        self.out
    }
}

/// One Markdown table cell: strings as they are, numbers as JavaScript prints them, objects and arrays as compact
/// JSON, nothing for a missing or null value; `|` escaped and line breaks turned into spaces.
fn cell(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    };
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xo_parameters() {
        let q = parse_list_query("fields=name_label,power_state&filter=power_state:running&limit=2&ndjson").unwrap();
        assert_eq!(q.fields, Fields::Only(vec!["name_label".into(), "power_state".into()]));
        assert!(q.filter.is_some() && q.format == Format::Ndjson && q.limit == Some(2));
        assert_eq!(parse_list_query("fields=*").unwrap().fields, Fields::All);
        assert_eq!(parse_list_query("fields=").unwrap().fields, Fields::Only(vec![]));
        assert_eq!(parse_list_query("ndjson=false").unwrap().format, Format::Ndjson, "presence, as legacy XO");
        assert_eq!(parse_list_query("markdown=true").unwrap().format, Format::Markdown);
        assert_eq!(parse_list_query("markdown").unwrap().format, Format::Markdown);
        assert_eq!(parse_list_query("markdown=false").unwrap().format, Format::Json);
        assert_eq!(parse_list_query("markdown=yes").unwrap_err().status, 400);
        assert_eq!(parse_list_query("markdown=true&ndjson").unwrap_err().status, 400);
        assert_eq!(parse_list_query("ndjson&markdown=false").unwrap().format, Format::Ndjson);
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
        let mut w = ListWriter::new(Format::Json);
        w.push(&json!("/a"));
        w.push(&json!({"x": 1}));
        assert_eq!(String::from_utf8(w.finish()).unwrap(), "[\n\"/a\",\n{\n  \"x\": 1\n}\n]\n");
        let mut w = ListWriter::new(Format::Ndjson);
        w.push(&json!({"x": 1}));
        assert_eq!(w.finish(), b"{\"x\":1}\n");
        assert_eq!(ListWriter::new(Format::Json).finish(), b"[\n]\n");
    }

    #[test]
    fn markdown_tables() {
        let table = |items: &[Value]| {
            let mut w = ListWriter::new(Format::Markdown);
            assert_eq!(w.content_type(), "text/markdown; charset=utf-8");
            items.iter().for_each(|i| w.push(i));
            String::from_utf8(w.finish()).unwrap()
        };
        assert_eq!(table(&[]), "No results.");
        assert_eq!(table(&[json!("/rest/v0/vms/a"), json!("/rest/v0/vms/b")]), "/rest/v0/vms/a\n/rest/v0/vms/b");
        assert_eq!(
            table(&[
                json!({"id": "vm1", "name": "Web", "href": "/x"}),
                json!({"id": "vm2", "name": "DB", "href": "/y"})
            ]),
            "| id | name |\n| --- | --- |\n| vm1 | Web |\n| vm2 | DB |"
        );
        // Columns come from the first item; a later item's missing or extra keys are blank or left out.
        assert_eq!(
            table(&[json!({"a": 1, "b": null}), json!({"c": 3, "a": 2.0})]),
            "| a | b |\n| --- | --- |\n| 1 |  |\n| 2 |  |"
        );
        assert_eq!(
            table(&[json!({"v": "a|b\nc", "o": {"k": [1, "x"]}, "t": true, "f": 1.5})]),
            "| v | o | t | f |\n| --- | --- | --- | --- |\n| a\\|b c | {\"k\":[1,\"x\"]} | true | 1.5 |"
        );
    }
}
