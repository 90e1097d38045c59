//! XAPI's JSON-RPC replies: any status and body decode to a value or a clean error, and errors map to HTTP errors.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::xapi::rpc;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else { return };
    let status = u16::from_le_bytes(*status) % 600;
    if let Err(e) = rpc::decode_reply(status, body) {
        let api = e.to_api_error();
        assert!((400..600).contains(&api.status));
    }
});
