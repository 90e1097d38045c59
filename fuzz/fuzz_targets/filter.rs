//! XO's filter language: any string parses or fails cleanly, and a parsed filter matches any object without panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use xo_edge::query::filter;

fn object() -> &'static serde_json::Value {
    static OBJECT: OnceLock<serde_json::Value> = OnceLock::new();
    OBJECT.get_or_init(|| {
        serde_json::json!({
            "name_label": "Debian 12 web", "power_state": "Running", "tags": ["prod", "web"],
            "memory": {"size": 4294967296u64, "static": [1, 2]}, "CPUs": {"number": 2}, "boot": {},
            "other": {"xo:1": "x"}, "nested": [[{"a": null, "b": true, "c": -1.5e300}]]
        })
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(f) = filter::parse(s) {
            let _ = f.matches(object());
            let _ = f.properties();
        }
    }
});
