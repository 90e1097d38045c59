//! XML-RPC, XAPI's original protocol: request decoding and XAPI's `Status`/`Value`/`ErrorDescription` replies.
//!
//! Requests are parsed into a small element tree with `quick-xml` and then into [`Value`]s; every XML-RPC type
//! a client may send is accepted (`string`, bare text, `int`/`i4`/`i8`, `boolean`, `double`,
//! `dateTime.iso8601`, `base64`, `array`, `struct`, `nil`). Replies are written the way XAPI writes them. This
//! module does not dispatch calls.

use crate::value::Value;
use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Default)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
}

fn parse_tree(body: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(body);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => stack
                .push(Element { name: String::from_utf8_lossy(e.name().as_ref()).into_owned(), ..Element::default() }),
            Event::Empty(e) => {
                let el =
                    Element { name: String::from_utf8_lossy(e.name().as_ref()).into_owned(), ..Element::default() };
                stack.last_mut().ok_or("unbalanced")?.children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced")?;
                stack.last_mut().ok_or("unbalanced end tag")?.children.push(el);
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| e.to_string())?;
                stack.last_mut().ok_or("unbalanced")?.text.push_str(&s);
            }
            Event::CData(t) => {
                let s = String::from_utf8_lossy(&t.into_inner()).into_owned();
                stack.last_mut().ok_or("unbalanced")?.text.push_str(&s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("unterminated element".into());
    }
    let mut root = stack.pop().ok_or("empty")?;
    root.children.pop().ok_or_else(|| "no root element".to_string())
}

fn parse_value(v: &Element) -> Result<Value, String> {
    if v.name != "value" {
        return Err(format!("expected <value>, found <{}>", v.name));
    }
    let Some(inner) = v.children.first() else {
        return Ok(Value::Str(v.text.clone()));
    };
    let text = inner.text.trim();
    Ok(match inner.name.as_str() {
        "string" => Value::Str(inner.text.clone()),
        "int" | "i4" | "i8" => Value::Int(text.parse().map_err(|_| format!("bad int {text:?}"))?),
        "boolean" => Value::Bool(match text {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(format!("bad boolean {text:?}")),
        }),
        "double" => Value::Float(text.parse().map_err(|_| format!("bad double {text:?}"))?),
        "dateTime.iso8601" => Value::DateTime(text.to_string()),
        "base64" => Value::Str(text.to_string()),
        "nil" => Value::Nil,
        "array" => {
            let data = inner.children.iter().find(|c| c.name == "data").ok_or("array without data")?;
            Value::Array(data.children.iter().map(parse_value).collect::<Result<_, _>>()?)
        }
        "struct" => {
            let mut members = Vec::new();
            for m in &inner.children {
                let name = m.children.iter().find(|c| c.name == "name").ok_or("member without name")?;
                let value = m.children.iter().find(|c| c.name == "value").ok_or("member without value")?;
                members.push((name.text.clone(), parse_value(value)?));
            }
            Value::Map(members)
        }
        other => return Err(format!("unknown XML-RPC type <{other}>")),
    })
}

/// Decodes a `<methodCall>` into its method name and positional parameters.
pub fn parse_call(body: &str) -> Result<(String, Vec<Value>), String> {
    let root = parse_tree(body)?;
    if root.name != "methodCall" {
        return Err(format!("expected <methodCall>, found <{}>", root.name));
    }
    let name =
        root.children.iter().find(|c| c.name == "methodName").ok_or("missing methodName")?.text.trim().to_string();
    let mut params = Vec::new();
    if let Some(ps) = root.children.iter().find(|c| c.name == "params") {
        for p in &ps.children {
            let v = p.children.iter().find(|c| c.name == "value").ok_or("param without value")?;
            params.push(parse_value(v)?);
        }
    }
    Ok((name, params))
}

/// Decodes one XML-RPC `<value>` document, such as a task result.
pub fn parse_value_str(s: &str) -> Result<Value, String> {
    parse_value(&parse_tree(s)?)
}

fn response(members: Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><methodResponse><params><param>");
    members.write_xml(&mut out);
    out.push_str("</param></params></methodResponse>");
    out
}

/// A reply of one bare value, as XAPI answers `system.listMethods`.
pub fn bare(value: &Value) -> String {
    response(value.clone())
}

/// A successful reply.
pub fn success(value: &Value) -> String {
    response(Value::Map(vec![("Status".into(), Value::str("Success")), ("Value".into(), value.clone())]))
}

/// A failed reply carrying `[code, params…]`.
pub fn failure(description: &[String]) -> String {
    response(Value::Map(vec![
        ("Status".into(), Value::str("Failure")),
        ("ErrorDescription".into(), Value::strs(description.iter().cloned())),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_style_call() {
        let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>VDI.create</methodName>\n<params>\n\
            <param>\n<value><string>OpaqueRef:s</string></value>\n</param>\n\
            <param>\n<value><struct>\n<member>\n<name>virtual_size</name>\n<value><int>1048576</int></value>\n</member>\n\
            <member>\n<name>tags</name>\n<value><array><data>\n<value><string>a&amp;b</string></value>\n</data></array></value>\n</member>\n\
            <member>\n<name>sharable</name>\n<value><boolean>0</boolean></value>\n</member>\n</struct></value>\n</param>\n\
            <param>\n<value><nil/></value></param>\n<param><value>bare</value></param>\n</params>\n</methodCall>\n";
        let (name, params) = parse_call(body).unwrap();
        assert_eq!(name, "VDI.create");
        assert_eq!(params[0], Value::str("OpaqueRef:s"));
        assert_eq!(params[1].get("virtual_size"), Some(&Value::Int(1048576)));
        assert_eq!(params[1].get("tags"), Some(&Value::strs(["a&b"])));
        assert_eq!(params[1].get("sharable"), Some(&Value::Bool(false)));
        assert_eq!(params[2], Value::Nil);
        assert_eq!(params[3], Value::str("bare"));
    }

    #[test]
    fn replies_round_trip() {
        let ok = success(&Value::Int(3));
        assert!(ok.contains("<name>Status</name><value>Success</value>"));
        let (_, _) = ("", ());
        let fail = failure(&["SESSION_INVALID".into(), "OpaqueRef:x".into()]);
        assert!(fail.contains("<value>SESSION_INVALID</value>"));
        assert!(parse_call("<methodCall><params>").is_err());
    }
}
