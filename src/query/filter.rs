//! XO's `filter=` syntax (npm `complex-matcher` 0.7, the version XO's REST API v0 used), parsed and evaluated on
//! JSON objects with the same results as JavaScript.
//!
//! The grammar is a backtracking PEG: terms are juxtaposed (AND), `|( … )` is OR, `!` is NOT, `( … )` groups,
//! `name:term` looks into a property, `name?` tests truthiness, `>n`/`<=n` compare numbers, and a value is a quoted
//! string, a `/regex/i`, or a raw string (a glob with `*`, a number-or-string when JavaScript's `+str` is a number,
//! else a case-insensitive substring). Values are searched recursively through arrays and objects. Property lookups
//! follow JavaScript (`length` of strings and arrays, array indices, inherited prototype members are truthy).
//! Parse errors carry XO's message (`parse error: expected end of input at position N`, positions in UTF-16 units).
//! This module knows nothing of HTTP or of which objects exist.

use serde_json::Value;
use std::fmt;

/// Why a filter was refused: the message XO gives (its REST API answers it in a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed filter.
#[derive(Debug)]
pub enum Filter {
    /// The empty filter: matches everything.
    Null,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Comparison(CmpOp, f64),
    Property(String, Box<Filter>),
    Truthy(String),
    /// Case-insensitive substring (lower-cased needle).
    Str(String),
    /// Equal to the number, or containing the text case-insensitively.
    NumberOrString(String, f64),
    /// `*` wildcards, case-insensitive, unanchored (lower-cased parts).
    Glob(Vec<String>),
    /// A JavaScript regex, run in linear time ([`super::jsregex`]).
    Regex(Box<regex::Regex>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmpOp(Op);

fn and(mut children: Vec<Filter>) -> Filter {
    if children.len() == 1 {
        children.pop().unwrap_or(Filter::Null)
    } else {
        Filter::And(children)
    }
}

fn or(mut children: Vec<Filter>) -> Filter {
    if children.len() == 1 {
        children.pop().unwrap_or(Filter::Null)
    } else {
        Filter::Or(children)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JavaScript helpers

/// JavaScript's `\s`.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// A character allowed in raw (unquoted) strings.
fn is_raw(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '$' | '-' | '.' | '_');
    }
    // JavaScript works on UTF-16 units: characters outside the BMP are surrogate pairs without case.
    c.len_utf16() == 1 && c.to_lowercase().ne(c.to_uppercase())
}

/// JavaScript's `+str` for the strings a raw string can hold; NaN when not a number.
pub fn js_to_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return 0.0;
    }
    let radix = |digits: &str, radix: u32| -> f64 {
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return f64::NAN;
        }
        digits.chars().fold(0.0, |acc, c| acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0)))
    };
    let lower = t.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        return radix(h, 16);
    }
    if let Some(o) = lower.strip_prefix("0o") {
        return radix(o, 8);
    }
    if let Some(b) = lower.strip_prefix("0b") {
        return radix(b, 2);
    }
    let (sign, body) = match t.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    // StrDecimalLiteral: digits [. digits] [e [+-] digits], or . digits [exponent]; at least one digit.
    let b = body.as_bytes();
    let mut i = 0;
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return f64::NAN;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return f64::NAN;
        }
    }
    if i != b.len() {
        return f64::NAN;
    }
    body.parse::<f64>().map(|v| sign * v).unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------------------------
// Parser: positions are char indices; a position may pass the end by one (a quoted string ending in `\`), which
// makes the following whitespace rule fail, as in the original.

type PResult<T> = Result<Option<(usize, T)>, FilterError>;

struct Parser {
    c: Vec<char>,
    /// How deep the term being parsed is nested (groups, negations, properties).
    depth: std::cell::Cell<usize>,
}

/// The deepest nesting a filter may have: a recursive-descent parser (and the evaluation after it) would
/// otherwise exhaust the guest's stack on a few kilobytes of `(((…`, and trap.
pub const MAX_DEPTH: usize = 64;

impl Parser {
    fn at(&self, pos: usize) -> Option<char> {
        self.c.get(pos).copied()
    }

    fn ws(&self, mut pos: usize) -> Option<usize> {
        if pos > self.c.len() {
            return None;
        }
        while self.at(pos).is_some_and(is_js_space) {
            pos += 1;
        }
        Some(pos)
    }

    fn text(&self, pos: usize, ch: char) -> Option<usize> {
        (self.at(pos) == Some(ch)).then_some(pos + 1)
    }

    fn raw_string(&self, mut pos: usize) -> Option<(usize, String)> {
        let start = pos;
        while self.at(pos).is_some_and(is_raw) {
            pos += 1;
        }
        (pos > start).then(|| (pos, self.c[start..pos].iter().collect()))
    }

    fn glob(&self, mut pos: usize) -> Option<(usize, String)> {
        let start = pos;
        while self.at(pos).is_some_and(|c| c == '*' || is_raw(c)) {
            pos += 1;
        }
        (pos > start).then(|| (pos, self.c[start..pos].iter().collect()))
    }

    fn quoted(&self, mut pos: usize) -> Option<(usize, String)> {
        if self.at(pos) != Some('"') {
            return None;
        }
        pos += 1;
        let end = self.c.len();
        let mut value = String::new();
        while pos < end {
            let mut ch = Some(self.c[pos]);
            pos += 1;
            if ch == Some('"') {
                break;
            }
            if ch == Some('\\') {
                ch = self.at(pos);
                pos += 1;
            }
            if let Some(c) = ch {
                value.push(c);
            }
        }
        Some((pos, value))
    }

    fn property(&self, pos: usize) -> Option<(usize, String)> {
        self.quoted(pos).or_else(|| self.raw_string(pos))
    }

    fn regex(&self, mut pos: usize) -> PResult<Filter> {
        if self.at(pos) != Some('/') {
            return Ok(None);
        }
        pos += 1;
        let end = self.c.len();
        let mut c = None;
        let mut pattern = String::new();
        let mut escaped = false;
        while pos < end {
            let ch = self.c[pos];
            pos += 1;
            c = Some(ch);
            if ch == '/' && !escaped {
                break;
            }
            escaped = ch == '\\';
            pattern.push(ch);
        }
        if c != Some('/') {
            return Ok(None);
        }
        let mut flags = "";
        if self.at(pos) == Some('i') {
            pos += 1;
            flags = "i";
        }
        // JavaScript's syntax and V8's messages first, then the linear-time engine.
        regress::Regex::with_flags(&pattern, flags).map_err(|e| {
            FilterError(format!(
                "Invalid regular expression: /{pattern}/{flags}: {}",
                v8_message(&e.to_string(), &pattern)
            ))
        })?;
        let re = super::jsregex::compile(&pattern, flags == "i")
            .map_err(|why| FilterError(format!("Unsupported regular expression: /{pattern}/{flags}: {why}")))?;
        Ok(Some((pos, Filter::Regex(Box::new(re)))))
    }

    fn value(&self, pos: usize) -> PResult<Filter> {
        if let Some((p, s)) = self.quoted(pos) {
            return Ok(Some((p, Filter::Str(s.to_lowercase()))));
        }
        if let Some(r) = self.regex(pos)? {
            return Ok(Some(r));
        }
        Ok(self.glob(pos).map(|(p, s)| {
            if s.contains('*') {
                (p, Filter::Glob(s.to_lowercase().split('*').map(str::to_string).collect()))
            } else {
                let n = js_to_number(&s);
                if n.is_nan() {
                    (p, Filter::Str(s.to_lowercase()))
                } else {
                    (p, Filter::NumberOrString(s.to_lowercase(), n))
                }
            }
        }))
    }

    fn terms(&self, mut pos: usize, min: usize) -> PResult<Vec<Filter>> {
        let mut out = Vec::new();
        while let Some((p, t)) = self.term(pos)? {
            out.push(t);
            pos = p;
        }
        Ok((out.len() >= min).then_some((pos, out)))
    }

    fn term(&self, pos: usize) -> PResult<Filter> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(FilterError(format!("parse error: the filter is nested more than {MAX_DEPTH} levels deep")));
        }
        self.depth.set(depth);
        let body = self.term_body(pos);
        self.depth.set(depth - 1);
        let Some((p, node)) = body? else {
            return Ok(None);
        };
        Ok(self.ws(p).map(|p| (p, node)))
    }

    fn term_body(&self, pos: usize) -> PResult<Filter> {
        // ( terms )
        if let Some(p) = self.text(pos, '(').and_then(|p| self.ws(p)) {
            if let Some((p, children)) = self.terms(p, 1)? {
                if let Some(p) = self.text(p, ')') {
                    return Ok(Some((p, and(children))));
                }
            }
        }
        // |( terms )
        if let Some(p) =
            self.text(pos, '|').and_then(|p| self.ws(p)).and_then(|p| self.text(p, '(')).and_then(|p| self.ws(p))
        {
            if let Some((p, children)) = self.terms(p, 1)? {
                if let Some(p) = self.text(p, ')') {
                    return Ok(Some((p, or(children))));
                }
            }
        }
        // ! term
        if let Some(p) = self.text(pos, '!').and_then(|p| self.ws(p)) {
            if let Some((p, child)) = self.term(p)? {
                return Ok(Some((p, Filter::Not(Box::new(child)))));
            }
        }
        // >n, >=n, <n, <=n
        if let Some(first @ ('<' | '>')) = self.at(pos) {
            let mut p = pos + 1;
            let eq = self.at(p) == Some('=');
            if eq {
                p += 1;
            }
            if let Some((p, raw)) = self.raw_string(p) {
                let n = js_to_number(&raw);
                if n.is_nan() {
                    return Err(FilterError("value must be a number".into()));
                }
                let op = match (first, eq) {
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    _ => Op::Le,
                };
                return Ok(Some((p, Filter::Comparison(CmpOp(op), n))));
            }
        }
        // name : term
        if let Some((p, name)) = self.property(pos) {
            if let Some(p) = self.ws(p).and_then(|p| self.text(p, ':')).and_then(|p| self.ws(p)) {
                if let Some((p, child)) = self.term(p)? {
                    return Ok(Some((p, Filter::Property(name, Box::new(child)))));
                }
            }
        }
        // name?
        if let Some((p, name)) = self.property(pos) {
            if let Some(p) = self.text(p, '?') {
                return Ok(Some((p, Filter::Truthy(name))));
            }
        }
        self.value(pos)
    }
}

/// V8's wording for the regular expression errors users meet most (XO runs on V8), else the engine's own.
fn v8_message(engine: &str, pattern: &str) -> String {
    let opens = pattern.matches('(').count();
    let closes = pattern.matches(')').count();
    match engine {
        "Unbalanced parenthesis" if opens > closes => "Unterminated group".into(),
        "Unbalanced parenthesis" => "Unmatched ')'".into(),
        "Unbalanced bracket" => "Unterminated character class".into(),
        "Invalid atom character" => "Nothing to repeat".into(),
        "Invalid quantifier" => "numbers out of order in {} quantifier".into(),
        e if e.starts_with("Range values reversed") => "Range out of order in character class".into(),
        e => e.to_string(),
    }
}

/// Parses a filter; the empty string is [`Filter::Null`].
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let parser = Parser { c: input.chars().collect(), depth: std::cell::Cell::new(0) };
    let start = parser.ws(0).unwrap_or(0);
    let (pos, terms) = parser.terms(start, 0)?.unwrap_or((start, Vec::new()));
    if pos < parser.c.len() {
        let utf16: usize = parser.c[..pos].iter().map(|c| c.len_utf16()).sum();
        return Err(FilterError(format!("parse error: expected end of input at position {utf16}")));
    }
    Ok(if terms.is_empty() { Filter::Null } else { and(terms) })
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation on JavaScript values

/// A JavaScript value as a property lookup can yield it.
#[derive(Debug, Clone)]
enum Js<'a> {
    Undefined,
    Json(&'a Value),
    Str(String),
    Num(f64),
    /// A built-in method inherited from a prototype (always truthy, never equal to anything).
    Func(String),
}

const OBJECT_PROTO: &[&str] = &[
    "constructor",
    "__defineGetter__",
    "__defineSetter__",
    "hasOwnProperty",
    "__lookupGetter__",
    "__lookupSetter__",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toString",
    "valueOf",
    "__proto__",
    "toLocaleString",
];
const ARRAY_PROTO: &[&str] = &[
    "at",
    "concat",
    "copyWithin",
    "entries",
    "every",
    "fill",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "flat",
    "flatMap",
    "forEach",
    "includes",
    "indexOf",
    "join",
    "keys",
    "lastIndexOf",
    "map",
    "pop",
    "push",
    "reduce",
    "reduceRight",
    "reverse",
    "shift",
    "slice",
    "some",
    "sort",
    "splice",
    "toReversed",
    "toSorted",
    "toSpliced",
    "unshift",
    "values",
    "with",
];
const STRING_PROTO: &[&str] = &[
    "at",
    "charAt",
    "charCodeAt",
    "codePointAt",
    "concat",
    "endsWith",
    "includes",
    "indexOf",
    "lastIndexOf",
    "localeCompare",
    "match",
    "matchAll",
    "normalize",
    "padEnd",
    "padStart",
    "repeat",
    "replace",
    "replaceAll",
    "search",
    "slice",
    "split",
    "startsWith",
    "substr",
    "substring",
    "toLocaleLowerCase",
    "toLocaleUpperCase",
    "toLowerCase",
    "toUpperCase",
    "trim",
    "trimEnd",
    "trimStart",
    "trimLeft",
    "trimRight",
    "isWellFormed",
    "toWellFormed",
    "anchor",
    "big",
    "blink",
    "bold",
    "fixed",
    "fontcolor",
    "fontsize",
    "italics",
    "link",
    "small",
    "strike",
    "sub",
    "sup",
];
const NUMBER_PROTO: &[&str] = &["toExponential", "toFixed", "toPrecision"];

fn inherited(name: &str, own: &[&str]) -> Js<'static> {
    if own.contains(&name) || OBJECT_PROTO.contains(&name) {
        Js::Func(name.to_string())
    } else {
        Js::Undefined
    }
}

/// A canonical array index (`"0"`, `"12"`, not `"01"`).
fn index(name: &str) -> Option<usize> {
    if name == "0" || (!name.starts_with('0') && !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())) {
        name.parse().ok()
    } else {
        None
    }
}

fn string_get(s: &str, name: &str) -> Js<'static> {
    if name == "length" {
        return Js::Num(s.encode_utf16().count() as f64);
    }
    if let Some(i) = index(name) {
        let units: Vec<u16> = s.encode_utf16().collect();
        return match units.get(i) {
            Some(&u) => Js::Str(String::from_utf16_lossy(&[u])),
            None => Js::Undefined,
        };
    }
    inherited(name, STRING_PROTO)
}

fn get<'a>(v: &Js<'a>, name: &str) -> Js<'a> {
    match v {
        Js::Json(Value::Object(m)) => match m.get(name) {
            Some(x) => Js::Json(x),
            None => inherited(name, &[]),
        },
        Js::Json(Value::Array(a)) => {
            if name == "length" {
                return Js::Num(a.len() as f64);
            }
            match index(name) {
                Some(i) => a.get(i).map_or(Js::Undefined, Js::Json),
                None => inherited(name, ARRAY_PROTO),
            }
        }
        Js::Json(Value::String(s)) => string_get(s, name),
        Js::Str(s) => string_get(s, name),
        Js::Json(Value::Number(_)) | Js::Num(_) => inherited(name, NUMBER_PROTO),
        Js::Json(Value::Bool(_)) => inherited(name, &[]),
        Js::Func(f) => match name {
            "name" => Js::Str(f.clone()),
            _ => inherited(name, &[]),
        },
        Js::Json(Value::Null) | Js::Undefined => Js::Undefined,
    }
}

fn is_nullish(v: &Js<'_>) -> bool {
    matches!(v, Js::Undefined | Js::Json(Value::Null))
}

fn truthy(v: &Js<'_>) -> bool {
    match v {
        Js::Undefined | Js::Json(Value::Null) => false,
        Js::Json(Value::Bool(b)) => *b,
        Js::Json(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Js::Json(Value::String(s)) | Js::Str(s) => !s.is_empty(),
        Js::Num(n) => *n != 0.0 && !n.is_nan(),
        Js::Json(Value::Array(_) | Value::Object(_)) | Js::Func(_) => true,
    }
}

fn number(v: &Js<'_>) -> Option<f64> {
    match v {
        Js::Json(Value::Number(n)) => n.as_f64(),
        Js::Num(n) => Some(*n),
        _ => None,
    }
}

fn string<'b>(v: &'b Js<'_>) -> Option<&'b str> {
    match v {
        Js::Json(Value::String(s)) => Some(s),
        Js::Str(s) => Some(s),
        _ => None,
    }
}

/// `lodash.some` over an array's elements or an object's values. Like lodash, an object whose `length` is a
/// valid array length is array-like: only its index keys below `length` are visited (the others are `undefined`,
/// which no value node matches).
fn some(v: &Js<'_>, f: &dyn Fn(&Js<'_>) -> bool) -> bool {
    match v {
        Js::Json(Value::Array(a)) => a.iter().any(|x| f(&Js::Json(x))),
        Js::Json(Value::Object(m)) => {
            let array_like = m
                .get("length")
                .and_then(Value::as_f64)
                .filter(|l| *l >= 0.0 && l.fract() == 0.0 && *l <= 9_007_199_254_740_991.0);
            match array_like {
                Some(len) => {
                    m.iter().filter(|(k, _)| index(k).is_some_and(|i| (i as f64) < len)).any(|(_, x)| f(&Js::Json(x)))
                }
                None => m.values().any(|x| f(&Js::Json(x))),
            }
        }
        _ => false,
    }
}

/// `.*` between the parts: JavaScript's `.` does not cross line terminators.
fn glob_match(parts: &[String], s: &str) -> bool {
    let lower = s.to_lowercase();
    lower.split(['\n', '\r', '\u{2028}', '\u{2029}']).any(|line| {
        let mut rest = line;
        for part in parts {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    })
}

impl Filter {
    /// The object properties this filter reads, when it reads nothing else (no bare term searching every value);
    /// `None` when it may look anywhere.
    pub fn properties(&self) -> Option<Vec<&str>> {
        match self {
            Filter::Null => Some(Vec::new()),
            Filter::Property(name, _) | Filter::Truthy(name) => Some(vec![name.as_str()]),
            Filter::Not(f) => f.properties(),
            Filter::And(c) | Filter::Or(c) => {
                let mut out = Vec::new();
                for f in c {
                    out.extend(f.properties()?);
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// Whether `value` (an XO object, or any JSON value) matches.
    pub fn matches(&self, value: &Value) -> bool {
        self.eval(&Js::Json(value))
    }

    fn eval(&self, v: &Js<'_>) -> bool {
        match self {
            Filter::Null => true,
            Filter::And(c) => c.iter().all(|f| f.eval(v)),
            Filter::Or(c) => c.iter().any(|f| f.eval(v)),
            Filter::Not(f) => !f.eval(v),
            Filter::Comparison(CmpOp(op), n) => number(v).is_some_and(|x| match op {
                Op::Gt => x > *n,
                Op::Ge => x >= *n,
                Op::Lt => x < *n,
                Op::Le => x <= *n,
            }),
            Filter::Property(name, child) => !is_nullish(v) && child.eval(&get(v, name)),
            Filter::Truthy(name) => !is_nullish(v) && truthy(&get(v, name)),
            Filter::Str(needle) => match string(v) {
                Some(s) => s.to_lowercase().contains(needle.as_str()),
                None => some(v, &|x| self.eval(x)),
            },
            Filter::NumberOrString(text, n) => {
                number(v) == Some(*n)
                    || match string(v) {
                        Some(s) => s.to_lowercase().contains(text.as_str()),
                        None => some(v, &|x| self.eval(x)),
                    }
            }
            Filter::Glob(parts) => match string(v) {
                Some(s) => glob_match(parts, s),
                None => some(v, &|x| self.eval(x)),
            },
            Filter::Regex(re) => match string(v) {
                Some(s) => re.is_match(s),
                None => some(v, &|x| self.eval(x)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, v: Value) -> bool {
        parse(filter).unwrap().matches(&v)
    }

    #[test]
    fn basics() {
        assert!(m("", json!(null)));
        assert!(m("32", json!(32)) && m("32", json!("a32b")) && !m("32", json!(320)));
        assert!(m("\"32\"", json!("32")) && !m("\"32\"", json!(32)));
        assert!(m("power_state:running", json!({"power_state": "Running"})));
        assert!(m("tags:|(prod dev)", json!({"tags": ["dev"]})));
        assert!(m("snapshots:length:>2", json!({"snapshots": [1, 2, 3]})));
        assert!(m("chi*go", json!("Chicago")) && !m("chi*go", json!("chi\ngo")));
        assert!(m("/^foo\\/bar\\./i", json!("FOO/bar.x")));
        assert!(m("åäöé:ÅÄÖÉ", json!({"åäöé": "xåäöéx"})));
        assert!(m("a?", json!({"a": []})) && !m("a?", json!({"a": 0})));
        assert!(m("constructor?", json!({})));
        assert!(m("memory:size:>=0x200000000", json!({"memory": {"size": 8589934592u64}})));
        assert!(!m(">10", json!("20")));
        assert!(!m("3", json!({"length": 3})), "lodash treats it as an empty array-like");
        assert!(m("x", json!({"length": 1, "0": "x"})));
    }

    #[test]
    fn errors() {
        assert_eq!(parse("(a b").unwrap_err().0, "parse error: expected end of input at position 0");
        assert_eq!(parse("foo !").unwrap_err().0, "parse error: expected end of input at position 4");
        assert_eq!(parse(">abc").unwrap_err().0, "value must be a number");
        assert!(parse("/(/").unwrap_err().0.starts_with("Invalid regular expression: /(/"));
        assert_eq!(parse("\"foo\\").unwrap_err().0, "parse error: expected end of input at position 0");
        assert_eq!(parse("🎷 x").unwrap_err().0, "parse error: expected end of input at position 0");
        assert_eq!(parse("a 🎷").unwrap_err().0, "parse error: expected end of input at position 2");
    }

    /// Deep nesting is refused with an error instead of exhausting the stack (a trap in the guest).
    #[test]
    fn nesting_is_bounded() {
        let nested = |n: usize, open: &str| format!("{}a{}", open.repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_DEPTH - 1, "(")).unwrap().matches(&json!("a")));
        for open in ["(", "|(", "!(", "x:("] {
            let e = parse(&nested(1000, open)).unwrap_err().0;
            assert!(e.contains("nested more than 64 levels"), "{open}: {e}");
        }
        assert!(parse(&format!("{}a", "!".repeat(10_000))).is_err());
        assert!(parse(&format!("{}a", "x:".repeat(10_000))).is_err());
    }

    #[test]
    fn numbers_like_javascript() {
        for (s, n) in [("1e3", 1000.0), ("-1", -1.0), (".5", 0.5), ("1.", 1.0), ("0x1F", 31.0), ("0b11", 3.0)] {
            assert_eq!(js_to_number(s), n, "{s}");
        }
        for s in [".", "-", "1e", "-0x1", "1_0", "$", "e5", "Infinityx"] {
            assert!(js_to_number(s).is_nan(), "{s}");
        }
        assert_eq!(js_to_number("-Infinity"), f64::NEG_INFINITY);
    }
}
