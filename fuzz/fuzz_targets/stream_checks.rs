//! The checks and decoders that bytes of transfers go through (tar/XVA, an XVA upload's checks, zstd frames, gzip and
//! zstd decoding), fed in random splits: never a panic, and the verdict does not depend on the split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xo_edge::formats::zstd::MAX_BLOCK;
use xo_edge::formats::{tar::TarCheck, zstd::FrameCheck};
use xo_edge::transfer::decode::{Decoder, MAX_WINDOW, OUT_BUDGET};
use xo_edge::transfer::import::Encoding;
use xo_edge::transfer::vm_import::XvaCheck;

fn tar(data: &[u8], split: usize) -> bool {
    let mut c = TarCheck::new(Some("ova.xml"));
    data.chunks(split).all(|ch| c.push(ch).is_ok()) && c.finish().is_ok()
}

/// An XVA upload's check (sniffing, decompression, tar, ova.xml, chunks and their checksums, length): its verdict, its
/// status when it fails, and whether XAPI's importer would have all it reads.
fn xva_upload(data: &[u8], split: usize) -> (Option<u16>, bool) {
    let mut c = XvaCheck::new(Encoding::Identity, data.len() as u64);
    let fed = data.chunks(split).try_for_each(|ch| c.feed(ch)).and_then(|()| c.finish());
    let status = fed.err().map(|f| match f {
        xo_edge::transfer::import::BodyFailure::Invalid(e) => e.status,
        xo_edge::transfer::import::BodyFailure::Short(_) => 400,
    });
    (status, c.importer_has_all())
}

fn frames(data: &[u8], split: usize) -> bool {
    let mut c = FrameCheck::default();
    data.chunks(split).all(|ch| c.push(ch).is_ok()) && c.finish().is_ok()
}

/// Decodes as the import does: each push's output taken before the next, pending output drained before more input;
/// no push yields more than the budget plus one block and a finished frame's window.
fn decode(mut d: Decoder, data: &[u8], split: usize) -> Result<Vec<u8>, String> {
    let most = OUT_BUDGET + MAX_BLOCK + MAX_WINDOW as usize;
    let (mut out, mut piece) = (Vec::new(), Vec::new());
    for ch in data.chunks(split) {
        d.push(ch, &mut piece)?;
        loop {
            assert!(piece.len() <= most, "a push yielded {} bytes", piece.len());
            out.append(&mut piece);
            if out.len() > 64 << 20 {
                return Err("too big for a fuzz run".into());
            }
            if !d.has_pending() {
                break;
            }
            d.push(&[], &mut piece)?;
        }
    }
    d.finish(&mut piece)?;
    out.append(&mut piece);
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let split = 1 + usize::from(seed) * 3;
    let whole = stream.len().max(1);
    assert_eq!(tar(stream, whole), tar(stream, split));
    // (Whether a failure is a 415 or a 422 may depend on how much decoded before it: only the verdict is compared.)
    let (a, b) = (xva_upload(stream, whole), xva_upload(stream, split));
    assert_eq!(a.0.is_some(), b.0.is_some(), "the XVA verdict depends on the split: {a:?} {b:?}");
    if a.0.is_none() {
        assert_eq!(a, b);
    }
    assert_eq!(frames(stream, whole), frames(stream, split));
    for make in [Decoder::gzip as fn() -> Decoder, Decoder::zstd] {
        let a = decode(make(), stream, whole);
        let b = decode(make(), stream, split);
        assert_eq!(a.is_ok(), b.is_ok(), "the verdict depends on the split");
        if let (Ok(a), Ok(b)) = (&a, &b) {
            assert_eq!(a, b, "decoded bytes depend on the split");
        }
    }
});
