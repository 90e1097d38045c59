//! The edge's compressors (our zstd frame encoder, gzip through miniz_oxide), fed any bytes in any split: what
//! they write decodes to exactly what went in, and the zstd output is whole frames. Inputs are stretched by
//! repetition with drift, so that matches, several blocks, both literal coders and fitted tables get exercised.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::formats::zstd::FrameCheck;
use xo_edge::transfer::compress::Compressor;
use xo_edge::transfer::decode::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, body)) = data.split_first() else { return };
    let copies = 1 + usize::from(shape & 0x3f);
    let split = 1 + (usize::from(shape >> 6) * 7919) % 65536;
    let mut input = Vec::with_capacity(body.len() * copies);
    for k in 0..copies {
        input.extend(body.iter().enumerate().map(|(i, &b)| if (i + k) % 97 == 0 { b ^ k as u8 } else { b }));
    }
    for (make, decoder) in
        [(Compressor::zstd as fn() -> Compressor, Decoder::zstd as fn() -> Decoder), (Compressor::gzip, Decoder::gzip)]
    {
        let mut c = make();
        let mut out = Vec::new();
        for chunk in input.chunks(split) {
            c.push(chunk, &mut out);
        }
        c.finish(&mut out);
        let mut back = Vec::new();
        let mut d = decoder();
        d.push(&out, &mut back).expect("our own output decodes");
        d.finish(&mut back).expect("our own output ends cleanly");
        assert!(back == input, "round trip differs ({} bytes in, {} back)", input.len(), back.len());
    }
    let mut z = Compressor::zstd();
    let mut out = Vec::new();
    z.push(&input, &mut out);
    z.finish(&mut out);
    if !input.is_empty() {
        let mut check = FrameCheck::default();
        check.push(&out).expect("whole frames");
        check.finish().expect("whole frames");
    }
});
