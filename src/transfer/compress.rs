//! Compression at the edge, push-style: bytes in as they stream, compressed bytes out, for VM exports whose pool
//! cannot or should not compress (XenServer licences forbid zstd exports; XAPI's gzip is single-threaded gzip -1).
//!
//! - gzip: `flate2` (miniz_oxide) at its fastest level.
//! - zstd: every 128 KiB block is an independent frame (concatenated frames are one zstd stream, and nothing waits
//!   for more input than a block): an all-zero block is an RLE block of a few bytes, a block whose byte histogram
//!   says it will not compress is stored raw, and only the rest goes through ruzstd's compressor. Disk images are
//!   mostly zeros, already-compressed data and text, so most blocks never reach the matcher.

use crate::formats::zstd::{frame_header, raw_block, rle_block, MAX_BLOCK};
use flate2::write::GzEncoder;
use ruzstd::encoding::{CompressionLevel, FrameCompressor};
use std::io::Write;

/// A compressor for one stream.
pub enum Compressor {
    Gzip(Box<GzEncoder<Vec<u8>>>),
    Zstd(Box<ZstdBlocks>),
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
        Compressor::Gzip(Box::new(GzEncoder::new(Vec::new(), flate2::Compression::fast())))
    }

    pub fn zstd() -> Compressor {
        Compressor::Zstd(Box::default())
    }

    /// Compresses `input`, appending what is ready to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Compressor::Gzip(e) => {
                // Writing into a Vec cannot fail.
                let _ = e.write_all(input);
                out.append(e.get_mut());
            }
            Compressor::Zstd(z) => z.push(input, out),
        }
    }

    /// Ends the stream, appending its last bytes to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Compressor::Gzip(e) => {
                let _ = e.try_finish();
                out.append(e.get_mut());
            }
            Compressor::Zstd(z) => z.flush(out),
        }
    }
}

/// Most bytes of consecutive compressible blocks compressed as one frame (so that matches reach across blocks).
const GROUP: usize = 1 << 20;

/// zstd: zero and incompressible blocks as frames of their own, runs of compressible blocks as ruzstd frames.
#[derive(Default)]
pub struct ZstdBlocks {
    block: Vec<u8>,
    /// Compressible blocks waiting to be compressed together.
    group: Vec<u8>,
}

/// Whether a block looks incompressible: its sampled byte histogram is nearly flat (Shannon entropy above 7.5 bits
/// per byte). Random and already-compressed data pass; text, code, zeros and structured data do not.
pub fn looks_incompressible(block: &[u8]) -> bool {
    if block.len() < 4096 {
        return false;
    }
    let mut hist = [0u32; 256];
    let mut n = 0u32;
    for &b in block.iter().step_by(16) {
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

fn all_zero(block: &[u8]) -> bool {
    let mut words = block.chunks_exact(8);
    words.by_ref().all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0) && words.remainder().iter().all(|&b| b == 0)
}

impl ZstdBlocks {
    fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let take = (MAX_BLOCK - self.block.len()).min(input.len());
            self.block.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.block.len() == MAX_BLOCK {
                self.flush_block(out);
            }
        }
    }

    /// Classifies the buffered block; zero and incompressible ones are written at once (after the compressible run
    /// before them), compressible ones join the run.
    fn flush_block(&mut self, out: &mut Vec<u8>) {
        if self.block.is_empty() {
            return;
        }
        if all_zero(&self.block) {
            self.flush_group(out);
            frame_header(self.block.len(), out);
            rle_block(true, 0, self.block.len(), out);
        } else if looks_incompressible(&self.block) {
            self.flush_group(out);
            frame_header(self.block.len(), out);
            raw_block(true, &self.block, out);
        } else {
            self.group.extend_from_slice(&self.block);
            if self.group.len() >= GROUP {
                self.flush_group(out);
            }
        }
        self.block.clear();
    }

    /// Compresses the run of compressible blocks as one frame.
    fn flush_group(&mut self, out: &mut Vec<u8>) {
        if self.group.is_empty() {
            return;
        }
        let mut c = FrameCompressor::new(CompressionLevel::Fastest);
        c.set_source(&self.group[..]);
        c.set_drain(&mut *out);
        c.compress();
        self.group.clear();
    }

    /// Writes everything buffered.
    fn flush(&mut self, out: &mut Vec<u8>) {
        self.flush_block(out);
        self.flush_group(out);
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
        let random: Vec<u8> = (0..MAX_BLOCK)
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
