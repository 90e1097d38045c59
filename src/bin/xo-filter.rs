//! `xo-filter`: runs xo-edge's filter engine with the contract of `shared/filter-cases` (`check.py`).
//!
//! stdin: `{"filter": "...", "objects": [...]}` (or, with `--batch`, an array of those);
//! stdout: `{"ok": true, "matches": [indices]}` or `{"ok": false, "error": "..."}` (an array with `--batch`).

use serde_json::{json, Value};
use std::io::Read;
use xo_edge::query::filter;

fn run(input: &Value) -> Value {
    let Some(text) = input.get("filter").and_then(Value::as_str) else {
        return json!({"ok": false, "error": "input has no filter string"});
    };
    match filter::parse(text) {
        Err(e) => json!({"ok": false, "error": e.0}),
        Ok(f) => {
            let objects = input.get("objects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let matches: Vec<usize> =
                objects.iter().enumerate().filter(|(_, o)| f.matches(o)).map(|(i, _)| i).collect();
            json!({"ok": true, "matches": matches})
        }
    }
}

fn main() {
    let batch = std::env::args().any(|a| a == "--batch");
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("xo-filter: cannot read stdin: {e}");
        std::process::exit(2);
    }
    let input: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("xo-filter: stdin is not JSON: {e}");
            std::process::exit(2);
        }
    };
    let output = if batch {
        Value::Array(input.as_array().map(Vec::as_slice).unwrap_or_default().iter().map(run).collect())
    } else {
        run(&input)
    };
    println!("{output}");
}
