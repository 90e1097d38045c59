//! Token decoding: any bytes are refused cleanly; a token that opens gives the same claims every time, and its
//! claims sealed again open to themselves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::auth::token;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for now in [0, 1_795_790_000, u64::MAX] {
            let _ = token::verify(s, &[SECRET], now);
        }
        if let Ok((claims, _)) = token::open(s, &[SECRET]) {
            assert_eq!(token::open(s, &[SECRET]).ok().map(|c| c.0), Some(claims.clone()));
            let again = token::seal(&claims, SECRET);
            assert_eq!(token::open(&again, &[SECRET]).ok().map(|c| c.0), Some(claims));
        }
    }
});
