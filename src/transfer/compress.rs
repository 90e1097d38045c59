//! Compression at the edge, push-style: bytes in as they stream, compressed bytes out, for VM exports whose pool
//! cannot or should not compress (XenServer licences forbid zstd exports; XAPI's gzip is single-threaded gzip -1).
//!
//! Both look at the stream in 32 KiB pieces: disk images are mostly zeros, already-compressed data and text, and a
//! piece whose sampled byte histogram is flat is not worth a compressor's time.
//! - gzip: miniz_oxide's deflate at its fastest level, switched to stored blocks for incompressible pieces, with
//!   the gzip header and trailer written here.
//! - zstd: independent frames (concatenated frames are one zstd stream, and nothing waits for more than a piece or
//!   a 1 MiB run): an all-zero piece is one RLE block of a few bytes, an incompressible one a raw block, and runs of
//!   the rest go through [`Encoder`], our own fast zstd block encoder.

use crate::formats::zstd::{frame_header, raw_block, rle_block};
use crate::formats::zstd_encode::Encoder;
use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::deflate::CompressionLevel as GzLevel;

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
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.input().extend_from_slice(input);
        self.absorb(out);
    }

    /// A buffer to append input to directly, sparing a copy (a read from XAPI lands in it); then call
    /// [`absorb`](Self::absorb).
    pub fn input(&mut self) -> &mut Vec<u8> {
        match self {
            Compressor::Gzip(g) => &mut g.input,
            Compressor::Zstd(z) => &mut z.buf,
        }
    }

    /// Takes in what was appended to [`input`](Self::input), appending what is ready to `out`.
    pub fn absorb(&mut self, out: &mut Vec<u8>) {
        match self {
            Compressor::Gzip(g) => g.absorb(out),
            Compressor::Zstd(z) => z.absorb(out),
        }
    }

    /// Ends the stream, appending its last bytes to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.absorb(out);
        match self {
            Compressor::Gzip(g) => g.piece(out, true),
            Compressor::Zstd(z) => {
                z.classify(z.buf.len(), out);
                z.flush_run(out);
                z.buf.clear();
                (z.start, z.classified) = (0, 0);
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
    for &b in piece.iter().step_by(16) {
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
    /// Input not yet cut into pieces.
    input: Vec<u8>,
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
            input: Vec::new(),
            piece: Vec::with_capacity(PIECE),
            stored: false,
        }
    }
}

impl Gzip {
    fn absorb(&mut self, out: &mut Vec<u8>) {
        let mut input = std::mem::take(&mut self.input);
        let mut rest = &input[..];
        while !rest.is_empty() {
            let take = (PIECE - self.piece.len()).min(rest.len());
            self.piece.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.piece.len() == PIECE {
                self.piece(out, false);
            }
        }
        input.clear();
        self.input = input;
    }

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

/// Most bytes of consecutive compressible pieces compressed as one frame (its matches reach back to its start).
const GROUP: usize = 1 << 20;

/// zstd: zero and incompressible pieces as frames of their own, runs of compressible pieces as frames of our
/// encoder's. Input is classified where it lands, so compressible bytes are never copied before compression.
#[derive(Default)]
pub struct ZstdPieces {
    /// Written out (`..start`), the run of compressible pieces (`start..classified`), input not yet classified.
    buf: Vec<u8>,
    start: usize,
    classified: usize,
    encoder: Encoder,
}

impl ZstdPieces {
    fn absorb(&mut self, out: &mut Vec<u8>) {
        while self.buf.len() - self.classified >= PIECE {
            self.classify(self.classified + PIECE, out);
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.classified -= self.start;
            self.start = 0;
        }
    }

    /// Classifies `buf[classified..end]`; a zero or incompressible piece is written at once (after the run before
    /// it), a compressible one joins the run.
    fn classify(&mut self, end: usize, out: &mut Vec<u8>) {
        let piece = &self.buf[self.classified..end];
        if piece.is_empty() {
            return;
        }
        let zero = all_zero(piece);
        if zero || looks_incompressible(piece) {
            self.flush_run(out);
            let piece = &self.buf[self.classified..end];
            frame_header(piece.len(), out);
            if zero {
                rle_block(true, 0, piece.len(), out);
            } else {
                raw_block(true, piece, out);
            }
            self.start = end;
        } else if end - self.start >= GROUP {
            self.classified = end;
            self.flush_run(out);
        }
        self.classified = end;
    }

    /// Compresses the run as one frame.
    fn flush_run(&mut self, out: &mut Vec<u8>) {
        if self.classified > self.start {
            self.encoder.frame(&self.buf[self.start..self.classified], out);
            self.start = self.classified;
        }
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
