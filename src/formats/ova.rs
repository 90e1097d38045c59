//! The `ova.xml` at the head of an XVA, checked as XAPI writes it: one XML-RPC struct holding `version` and
//! `objects`, encoded by rpclib's `Xmlrpc.to_string` (`ocaml/xapi/export.ml`). The version struct
//! (`ocaml/xapi/importexport.ml`, `rpc_of_version`) has five strings and three `Rpc.Int`s (`xapi_major`,
//! `xapi_minor`, `export_vsn`), which rpclib writes as untyped `<value>N</value>`; every object is a struct of a
//! `class` and an `id` (strings) and a `snapshot` struct. The check returns the ids of the VDIs it declares, the
//! only disk folders the rest of the archive may hold.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::collections::HashSet;
use std::fmt;

/// Why an `ova.xml` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaError(pub String);

impl fmt::Display for OvaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ova.xml: {}", self.0)
    }
}

impl std::error::Error for OvaError {}

/// An XML-RPC value as written: untyped text, a typed scalar, an array or a struct.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Text(String),
    Typed(String, String),
    Array(Vec<V>),
    Struct(Vec<(String, V)>),
}

impl V {
    fn member(&self, name: &str) -> Option<&V> {
        match self {
            V::Struct(m) => m.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A string as rpclib writes one: untyped, or (from other writers) `<string>`.
    fn as_str(&self) -> Option<&str> {
        match self {
            V::Text(s) => Some(s),
            V::Typed(t, s) if t == "string" => Some(s),
            _ => None,
        }
    }
}

fn err(msg: impl Into<String>) -> OvaError {
    OvaError(msg.into())
}

/// A minimal element tree of the document: (name, text, children).
struct El {
    name: String,
    text: String,
    children: Vec<El>,
}

fn tree(xml: &str) -> Result<El, OvaError> {
    let mut reader = Reader::from_str(xml);
    let mut stack = vec![El { name: String::new(), text: String::new(), children: Vec::new() }];
    loop {
        match reader.read_event().map_err(|e| err(format!("not XML: {e}")))? {
            Event::Start(e) => stack.push(El {
                name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                text: String::new(),
                children: Vec::new(),
            }),
            Event::Empty(e) => {
                let el = El {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    text: String::new(),
                    children: Vec::new(),
                };
                stack.last_mut().ok_or_else(|| err("unbalanced"))?.children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| err("unbalanced"))?;
                stack.last_mut().ok_or_else(|| err("unbalanced end tag"))?.children.push(el);
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| err(format!("bad text: {e}")))?;
                stack.last_mut().ok_or_else(|| err("unbalanced"))?.text.push_str(&s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().filter(|_| stack.is_empty()).ok_or_else(|| err("unterminated element"))?;
    root.children.pop().ok_or_else(|| err("empty document"))
}

fn value(el: &El) -> Result<V, OvaError> {
    if el.name != "value" {
        return Err(err(format!("<{}> where a <value> was expected", el.name)));
    }
    let Some(inner) = el.children.first() else {
        return Ok(V::Text(el.text.clone()));
    };
    Ok(match inner.name.as_str() {
        "array" => {
            let data = inner.children.iter().find(|c| c.name == "data").ok_or_else(|| err("array without data"))?;
            V::Array(data.children.iter().map(value).collect::<Result<_, _>>()?)
        }
        "struct" => {
            let mut members = Vec::new();
            for m in &inner.children {
                let name = m.children.iter().find(|c| c.name == "name").ok_or_else(|| err("member without name"))?;
                let v = m.children.iter().find(|c| c.name == "value").ok_or_else(|| err("member without value"))?;
                members.push((name.text.clone(), value(v)?));
            }
            V::Struct(members)
        }
        "string" | "int" | "i4" | "i8" | "double" | "boolean" | "dateTime.iso8601" | "base64" | "nil" => {
            V::Typed(inner.name.clone(), inner.text.clone())
        }
        other => return Err(err(format!("unknown XML-RPC type <{other}>"))),
    })
}

/// What an `ova.xml` declares of the disks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// The ids (`Ref:N`) of every VDI.
    pub vdis: HashSet<String>,
    /// The VDIs whose data the archive carries, with their `virtual_size`: those of VBDs that are not CDs, on SRs
    /// that are not ISO libraries (`ocaml/xapi/import.ml`, `non_cdrom_vdis`).
    pub data: Vec<(String, u64)>,
}

/// Checks `xml` and returns the VDIs it declares.
pub fn check(xml: &str) -> Result<Declared, OvaError> {
    let root = value(&tree(xml)?)?;
    let version = root.member("version").ok_or_else(|| err("no version struct"))?;
    for k in ["hostname", "date", "product_version", "product_brand", "build_number"] {
        version.member(k).and_then(V::as_str).ok_or_else(|| err(format!("version.{k} is not a string")))?;
    }
    for k in ["xapi_major", "xapi_minor", "export_vsn"] {
        // rpclib writes an Rpc.Int as untyped text; anything else is not XAPI's writing.
        match version.member(k) {
            Some(V::Text(t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {}
            other => return Err(err(format!("version.{k} is {other:?}, not XAPI's untyped integer"))),
        }
    }
    let Some(V::Array(objects)) = root.member("objects") else {
        return Err(err("no objects array"));
    };
    let mut vdis = HashSet::new();
    let (mut disk_vbds, mut vdi_of, mut iso_srs) = (Vec::new(), Vec::new(), HashSet::new());
    for o in objects {
        let class = o.member("class").and_then(V::as_str).ok_or_else(|| err("an object without a class"))?;
        let id = o.member("id").and_then(V::as_str).ok_or_else(|| err("an object without an id"))?;
        let snapshot = o.member("snapshot").filter(|s| matches!(s, V::Struct(_)));
        let snapshot = snapshot.ok_or_else(|| err(format!("object {id} has no snapshot struct")))?;
        let field = |k: &str| snapshot.member(k).and_then(V::as_str).unwrap_or_default().to_string();
        match class {
            "VDI" => {
                vdis.insert(id.to_string());
                let size = field("virtual_size").parse::<u64>().unwrap_or(0);
                vdi_of.push((id.to_string(), size, field("SR")));
            }
            "VBD" if field("type") != "CD" => disk_vbds.push(field("VDI")),
            "SR" if field("content_type") == "iso" => {
                iso_srs.insert(id.to_string());
            }
            _ => {}
        }
    }
    let mut data: Vec<(String, u64)> = vdi_of
        .into_iter()
        .filter(|(id, _, sr)| disk_vbds.contains(id) && !iso_srs.contains(sr))
        .map(|(id, size, _)| (id, size))
        .collect();
    data.sort();
    data.dedup();
    Ok(Declared { vdis, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(major: &str, objects: &str) -> String {
        format!(
            "<value><struct><member><name>version</name><value><struct>\
             <member><name>hostname</name><value>h</value></member>\
             <member><name>date</name><value>d</value></member>\
             <member><name>product_version</name><value>8.3.0</value></member>\
             <member><name>product_brand</name><value>XCP-ng</value></member>\
             <member><name>build_number</name><value>b</value></member>\
             <member><name>xapi_major</name>{major}</member>\
             <member><name>xapi_minor</name><value>20</value></member>\
             <member><name>export_vsn</name><value>2</value></member>\
             </struct></value></member><member><name>objects</name><value><array><data>{objects}</data></array></value>\
             </member></struct></value>"
        )
    }

    fn obj(class: &str, id: &str) -> String {
        format!(
            "<value><struct><member><name>class</name><value>{class}</value></member>\
             <member><name>id</name><value>{id}</value></member>\
             <member><name>snapshot</name><value><struct><member><name>uuid</name><value>u</value></member>\
             </struct></value></member></struct></value>"
        )
    }

    fn obj_with(class: &str, id: &str, fields: &[(&str, &str)]) -> String {
        let members: String =
            fields.iter().map(|(k, v)| format!("<member><name>{k}</name><value>{v}</value></member>")).collect();
        format!(
            "<value><struct><member><name>class</name><value>{class}</value></member>\
             <member><name>id</name><value>{id}</value></member>\
             <member><name>snapshot</name><value><struct>{members}</struct></value></member></struct></value>"
        )
    }

    #[test]
    fn the_disks_with_data_are_those_import_ml_streams() {
        let objects = [
            obj_with("SR", "Ref:1", &[("content_type", "user")]),
            obj_with("SR", "Ref:2", &[("content_type", "iso")]),
            obj_with("VDI", "Ref:3", &[("SR", "Ref:1"), ("virtual_size", "1048577")]),
            obj_with("VDI", "Ref:4", &[("SR", "Ref:2"), ("virtual_size", "99")]),
            obj_with("VDI", "Ref:5", &[("SR", "Ref:1"), ("virtual_size", "7")]),
            obj_with("VDI", "Ref:6", &[("SR", "Ref:1"), ("virtual_size", "8")]),
            obj_with("VBD", "Ref:7", &[("type", "Disk"), ("VDI", "Ref:3")]),
            obj_with("VBD", "Ref:8", &[("type", "Disk"), ("VDI", "Ref:4")]),
            obj_with("VBD", "Ref:9", &[("type", "CD"), ("VDI", "Ref:5")]),
        ]
        .concat();
        let d = check(&doc("<value>1</value>", &objects)).unwrap();
        assert_eq!(d.vdis.len(), 4);
        // Ref:4 is on an ISO SR, Ref:5 in a CD drive, Ref:6 in no VBD.
        assert_eq!(d.data, vec![("Ref:3".to_string(), 1_048_577)]);
    }

    #[test]
    fn accepts_xapis_writing_and_lists_vdis() {
        let vdis = check(&doc("<value>1</value>", &(obj("VM", "Ref:0") + &obj("VDI", "Ref:3")))).unwrap().vdis;
        assert_eq!(vdis, HashSet::from(["Ref:3".to_string()]));
    }

    #[test]
    fn refuses_what_xapi_does_not_write() {
        assert!(check(&doc("<value><i4>1</i4></value>", "")).is_err(), "a typed int is not rpclib's Int");
        assert!(check(&doc("<value>one</value>", "")).is_err());
        assert!(check(&doc("<value>1</value>", "<value>x</value>")).is_err(), "an object is a struct");
        assert!(check("<value><struct></struct></value>").is_err());
        assert!(check("<value><struct>").is_err());
        assert!(check("not xml <").is_err());
    }
}
