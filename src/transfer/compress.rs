//! Compression at the edge, push-style: bytes in as they stream, compressed bytes out, for VM exports whose pool
//! cannot or should not compress (XenServer licences forbid zstd exports; XAPI's gzip is single-threaded gzip -1).
//!
//! Both look at the stream in 32 KiB pieces: disk images are mostly zeros, already-compressed data and text, and a
//! piece whose sampled byte histogram is flat is not worth a compressor's time.
//! - gzip: miniz_oxide's deflate at its fastest level, switched to stored blocks for incompressible pieces, with
//!   the gzip header and trailer written here.
//! - zstd: independent frames (concatenated frames are one zstd stream, and nothing waits for more than a piece or
//!   a 1 MiB run): an all-zero piece is one RLE block of a few bytes, an incompressible one a raw block, and runs of
//!   the rest go through ruzstd's block encoder with [`FastMatcher`], a greedy single-probe matcher (ruzstd's own is
//!   slower and finds less on disk data).

use crate::formats::zstd::{frame_header, raw_block, rle_block};
use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::deflate::CompressionLevel as GzLevel;
use ruzstd::encoding::{CompressionLevel, FrameCompressor, Matcher, Sequence};

/// The unit of classification: zero, incompressible or compressible.
const PIECE: usize = 32 * 1024;

/// A compressor for one stream.
pub enum Compressor {
    Gzip(Box<Gzip>),
    Zstd(Box<ZstdPieces>),
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compressor::Gzip(_) => "Compressor::Gzip",
            Compressor::Zstd(_) => "Compressor::Zstd",
        })
    }
}

impl Compressor {
    pub fn gzip() -> Compressor {
        Compressor::Gzip(Box::default())
    }

    pub fn zstd() -> Compressor {
        Compressor::Zstd(Box::default())
    }

    /// Compresses `input`, appending what is ready to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let piece = match self {
                Compressor::Gzip(g) => &mut g.piece,
                Compressor::Zstd(z) => &mut z.piece,
            };
            let take = (PIECE - piece.len()).min(input.len());
            piece.extend_from_slice(&input[..take]);
            input = &input[take..];
            if piece.len() == PIECE {
                self.flush_piece(out);
            }
        }
    }

    fn flush_piece(&mut self, out: &mut Vec<u8>) {
        match self {
            Compressor::Gzip(g) => g.piece(out, false),
            Compressor::Zstd(z) => z.flush_piece(out),
        }
    }

    /// Ends the stream, appending its last bytes to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Compressor::Gzip(g) => g.piece(out, true),
            Compressor::Zstd(z) => {
                z.flush_piece(out);
                z.flush_group(out);
            }
        }
    }
}

/// Whether a piece looks incompressible: its sampled byte histogram is nearly flat (Shannon entropy above 7.5 bits
/// per byte). Random and already-compressed data pass; text, code, zeros and structured data do not.
pub fn looks_incompressible(piece: &[u8]) -> bool {
    if piece.len() < 4096 {
        return false;
    }
    let mut hist = [0u32; 256];
    let mut n = 0u32;
    for &b in piece.iter().step_by(8) {
        hist[usize::from(b)] += 1;
        n += 1;
    }
    let n = f64::from(n);
    let entropy: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.5
}

fn all_zero(piece: &[u8]) -> bool {
    let mut words = piece.chunks_exact(8);
    words.by_ref().all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0) && words.remainder().iter().all(|&b| b == 0)
}

/// gzip through miniz_oxide's deflate, switched to stored blocks for pieces that will not compress.
pub struct Gzip {
    deflate: Box<CompressorOxide>,
    crc: crc32fast::Hasher,
    len: u32,
    started: bool,
    piece: Vec<u8>,
    stored: bool,
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip {
            deflate: Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(1, -15, 0))),
            crc: crc32fast::Hasher::new(),
            len: 0,
            started: false,
            piece: Vec::with_capacity(PIECE),
            stored: false,
        }
    }
}

impl Gzip {
    fn piece(&mut self, out: &mut Vec<u8>, last: bool) {
        if !self.started {
            // Magic, deflate, no flags, no time, fastest, unknown OS.
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
            self.started = true;
        }
        let stored = looks_incompressible(&self.piece);
        if stored != self.stored {
            // miniz_oxide changes level cleanly only between flushed blocks.
            compress_to_output(&mut self.deflate, &[], TDEFLFlush::Sync, |bytes| {
                out.extend_from_slice(bytes);
                true
            });
            self.deflate.set_compression_level(if stored { GzLevel::NoCompression } else { GzLevel::BestSpeed });
            self.stored = stored;
        }
        self.crc.update(&self.piece);
        self.len = self.len.wrapping_add(self.piece.len() as u32);
        let flush = if last { TDEFLFlush::Finish } else { TDEFLFlush::None };
        let mut input: &[u8] = &self.piece;
        loop {
            let (status, used) = compress_to_output(&mut self.deflate, input, flush, |bytes| {
                out.extend_from_slice(bytes);
                true
            });
            input = &input[used..];
            if input.is_empty() || !matches!(status, TDEFLStatus::Okay) {
                if last && matches!(status, TDEFLStatus::Okay) {
                    continue;
                }
                break;
            }
        }
        self.piece.clear();
        if last {
            out.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
            out.extend_from_slice(&self.len.to_le_bytes());
        }
    }
}

/// Most bytes of consecutive compressible pieces compressed as one frame (its blocks share ruzstd's tables).
const GROUP: usize = 1 << 20;

/// zstd: zero and incompressible pieces as frames of their own, runs of compressible pieces as ruzstd frames
/// (with [`FastMatcher`]).
#[derive(Default)]
pub struct ZstdPieces {
    piece: Vec<u8>,
    /// Compressible pieces waiting to be compressed together.
    group: Vec<u8>,
}

impl ZstdPieces {
    /// Classifies the buffered piece; zero and incompressible ones are written at once (after the compressible run
    /// before them), compressible ones join the run.
    fn flush_piece(&mut self, out: &mut Vec<u8>) {
        if self.piece.is_empty() {
            return;
        }
        if all_zero(&self.piece) {
            self.flush_group(out);
            frame_header(self.piece.len(), out);
            rle_block(true, 0, self.piece.len(), out);
        } else if looks_incompressible(&self.piece) {
            self.flush_group(out);
            frame_header(self.piece.len(), out);
            raw_block(true, &self.piece, out);
        } else {
            self.group.extend_from_slice(&self.piece);
            if self.group.len() >= GROUP {
                self.flush_group(out);
            }
        }
        self.piece.clear();
    }

    /// Compresses the run of compressible pieces as one frame.
    fn flush_group(&mut self, out: &mut Vec<u8>) {
        if self.group.is_empty() {
            return;
        }
        let mut c = FrameCompressor::new_with_matcher(FastMatcher::default(), CompressionLevel::Fastest);
        c.set_source(&self.group[..]);
        c.set_drain(&mut *out);
        c.compress();
        self.group.clear();
    }
}

/// Bits of [`FastMatcher`]'s hash table.
const HASH_BITS: u32 = 14;
/// Largest zstd block, the matcher's unit.
const BLOCK: usize = 128 * 1024;

/// A greedy single-probe matcher, zstd "fast"-like: one hash of the next 5 bytes per position, the candidate
/// checked, the match extended, no chains. Matches stay within one block (the window ruzstd announces is a block),
/// which loses little on disk data and keeps memory and bookkeeping trivial.
pub struct FastMatcher {
    last: Vec<u8>,
    table: Vec<u32>,
}

impl Default for FastMatcher {
    fn default() -> Self {
        FastMatcher { last: Vec::new(), table: vec![u32::MAX; 1 << HASH_BITS] }
    }
}

impl Matcher for FastMatcher {
    fn get_next_space(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.last);
        v.clear();
        v.resize(BLOCK, 0);
        v
    }

    fn get_last_space(&mut self) -> &[u8] {
        &self.last
    }

    fn commit_space(&mut self, space: Vec<u8>) {
        self.last = space;
    }

    fn skip_matching(&mut self) {}

    fn start_matching(&mut self, mut handle_sequence: impl for<'a> FnMut(Sequence<'a>)) {
        const MIN_MATCH: usize = 5;
        let d = &self.last;
        let n = d.len();
        self.table.fill(u32::MAX);
        let (mut anchor, mut i) = (0, 0);
        while i + 8 <= n {
            let mut word = [0u8; 8];
            word.copy_from_slice(&d[i..i + 8]);
            let v = u64::from_le_bytes(word);
            let key = ((v << 24).wrapping_mul(0xCF1B_BCDC_B7A5_6463) >> (64 - HASH_BITS)) as usize;
            let candidate = self.table[key];
            self.table[key] = i as u32;
            if candidate != u32::MAX {
                let c = candidate as usize;
                if d[c..c + MIN_MATCH] == d[i..i + MIN_MATCH] {
                    let mut len = MIN_MATCH;
                    while i + len < n && d[c + len] == d[i + len] {
                        len += 1;
                    }
                    handle_sequence(Sequence::Triple { literals: &d[anchor..i], offset: i - c, match_len: len });
                    i += len;
                    anchor = i;
                    continue;
                }
            }
            i += 1;
        }
        if anchor < n {
            handle_sequence(Sequence::Literals { literals: &d[anchor..] });
        }
    }

    fn reset(&mut self, _level: CompressionLevel) {
        self.last.clear();
    }

    fn window_size(&self) -> u64 {
        BLOCK as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data() -> Vec<u8> {
        let mut d = Vec::new();
        let mut x = 0x1234_5678u32;
        for i in 0..40u32 {
            match i % 4 {
                0 => d.extend(vec![0u8; 100_000]),
                1 => (0..30_000).for_each(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    d.extend_from_slice(&x.to_le_bytes())
                }),
                _ => (0..3_000).for_each(|j| d.extend_from_slice(format!("row {j} of part {i}: ok\n").as_bytes())),
            }
        }
        d
    }

    fn compress(mut c: Compressor, input: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in input.chunks(split) {
            c.push(chunk, &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn gzip_round_trips() {
        let d = data();
        for split in [1000, 1 << 20] {
            let z = compress(Compressor::gzip(), &d, split);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..]).read_to_end(&mut back).unwrap();
            assert!(back == d, "split {split}");
            assert!(z.len() < d.len() / 2);
        }
    }

    #[test]
    fn zstd_round_trips_through_the_decoder_and_is_whole_frames() {
        let d = data();
        for split in [777, 1 << 20] {
            let z = compress(Compressor::zstd(), &d, split);
            let mut back = Vec::new();
            let mut dec = crate::transfer::decode::Decoder::zstd();
            dec.push(&z, &mut back).unwrap();
            dec.finish(&mut back).unwrap();
            assert!(back == d, "split {split}");
            assert!(z.len() < d.len() * 6 / 10, "{} of {}", z.len(), d.len());
            let mut check = crate::formats::zstd::FrameCheck::default();
            check.push(&z).unwrap();
            assert_eq!(check.finish(), Ok(()));
        }
        assert!(compress(Compressor::zstd(), &[], 10).is_empty());
    }

    #[test]
    fn block_classes() {
        assert!(all_zero(&[0; 1000]) && !all_zero(&[0, 0, 1]));
        let text: Vec<u8> = (0..10_000).flat_map(|i: u32| format!("line {i}\n").into_bytes()).collect();
        assert!(!looks_incompressible(&text));
        let mut x = 7u32;
        let random: Vec<u8> = (0..PIECE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
    }
}
