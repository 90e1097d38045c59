//! The forward-only VHD parser, fed in random chunk splits: never panics, and the verdict and the data it yields
//! do not depend on how the stream was split (the first input byte picks the split).
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::formats::vhd::{VhdEvent, VhdStreamParser};

fn run(data: &[u8], split: usize, total: Option<u64>) -> (bool, bool, u64, u64) {
    let mut p = VhdStreamParser::new(total);
    let (mut bytes, mut sum) = (0u64, 0u64);
    let mut ok = true;
    for chunk in data.chunks(split.max(1)) {
        let r = p.push(chunk, &mut |ev| {
            if let VhdEvent::Data { offset, data } = ev {
                bytes += data.len() as u64;
                // Position-weighted, so that it does not depend on how the data was cut into events.
                for (i, &b) in data.iter().enumerate() {
                    sum = sum.wrapping_add((offset + i as u64 + 1).wrapping_mul(u64::from(b) + 1));
                }
            }
            Ok::<(), ()>(())
        });
        if r.is_err() {
            ok = false;
            break;
        }
    }
    (ok, ok && p.finish().is_ok(), bytes, sum)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let split = 1 + usize::from(seed) * 7;
    for total in [None, Some(stream.len() as u64)] {
        let whole = run(stream, stream.len(), total);
        let split = run(stream, split, total);
        assert_eq!(whole.0, split.0, "the verdict depends on the split");
        if whole.0 {
            assert_eq!(whole, split, "the data depends on the split");
        }
    }
});
