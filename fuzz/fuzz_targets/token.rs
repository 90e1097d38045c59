//! Token decoding: any bytes are refused cleanly; a token that verifies re-signs to itself (no malleability).
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::auth::token;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for now in [0, 1_795_790_000, u64::MAX] {
            if let Ok(claims) = token::verify(s, SECRET, now) {
                assert_eq!(token::sign(&claims, SECRET), s, "a verified token is the canonical one");
            }
        }
    }
});
