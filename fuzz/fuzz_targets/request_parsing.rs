//! What a request carries: the Authorization header and cookies, the collection query string, `Range`, and import
//! parameters. Lines of the input are the pieces; nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::auth::credentials;
use xo_edge::query::params;
use xo_edge::transfer::{import, range, vm_export};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut lines = s.splitn(3, '\n');
    let (auth, query, rest) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let cookies: Vec<&str> = rest.lines().collect();
    let _ = credentials::from_headers(Some(auth), &cookies);
    let _ = credentials::cookie(rest, "authenticationToken");
    let _ = params::parse_list_query(query);
    let _ = vm_export::compression(query);
    for size in [0, 1, 512, u64::MAX] {
        if let range::Ranged::Part { start, end } = range::parse(Some(auth), size) {
            assert!(start <= end && end < size, "a range outside the resource");
        }
    }
    let req = xo_edge::rest::Request {
        method: "POST".into(),
        path: "/rest/v0/srs/x/vdis".into(),
        query: query.into(),
        headers: vec![("content-length".into(), auth.into()), ("content-encoding".into(), rest.into())],
        body: Vec::new(),
    };
    if let Some(route) = import::import_route("POST", &req.path, query) {
        let _ = import::read_upload(&req, route);
    }
});
