//! Push-style decompression of uploads sent with `Content-Encoding: gzip` or `zstd`: bytes in as they arrive,
//! decompressed bytes out, with an error for corrupt input and, at the end, for a stream that stopped early.
//!
//! Output is budgeted: one [`Decoder::push`] yields at most [`OUT_BUDGET`] bytes (plus one zstd block or one gzip
//! buffer), keeping the input it has not decoded yet; [`Decoder::has_pending`] says more can come without new input,
//! and the caller writes what it got before asking again. A 16 KiB body that expands to 512 MiB is therefore
//! decoded 1 MiB at a time, and its length check fails after the first few MiB instead of after the whole bomb.
//!
//! gzip goes through `flate2` (miniz_oxide inside; several members allowed, as `gzip -c a b` makes), fed through
//! its writer a call at a time (each call yields at most 32 KiB). ruzstd decodes from a reader, so [`Zstd`] buffers
//! input until a whole zstd block is there (at most 128 KiB + 3 bytes), hands that block to ruzstd, and keeps only
//! the window zstd needs (at most [`MAX_WINDOW`]); frames may follow each other, skippable frames are skipped, and a
//! frame's content checksum is verified when present.

use crate::formats::zstd::{frame_header_len, is_skippable, le};
use flate2::write::MultiGzDecoder;
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use std::io::Write;

/// Largest zstd window accepted: 8 MiB, what `zstd -19` uses on big files. Windows of `--ultra` levels and `--long`
/// (up to 128 MiB) are refused: the decoder keeps a window's worth of output per upload.
pub const MAX_WINDOW: u64 = 8 << 20;

/// Most decompressed bytes one [`Decoder::push`] adds, before its last zstd block or gzip buffer.
pub const OUT_BUDGET: usize = 256 << 10;

/// A decompressor for one upload.
pub enum Decoder {
    Gzip(Box<Gzip>),
    Zstd(Box<Zstd>),
}

impl Decoder {
    pub fn gzip() -> Decoder {
        Decoder::Gzip(Box::new(Gzip { decoder: MultiGzDecoder::new(Vec::new()), input: Vec::new(), more: false }))
    }

    pub fn zstd() -> Decoder {
        Decoder::Zstd(Box::default())
    }

    /// Takes `input` and decompresses up to [`OUT_BUDGET`] bytes of what is buffered, appending them to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Decoder::Gzip(g) => g.push(input, out),
            Decoder::Zstd(z) => z.push(input, out),
        }
    }

    /// Whether the last [`push`](Self::push) stopped at the budget: call it again (with no input) before feeding
    /// more, and before [`finish`](Self::finish).
    pub fn has_pending(&self) -> bool {
        match self {
            Decoder::Gzip(g) => g.more,
            Decoder::Zstd(z) => z.more,
        }
    }

    /// Ends the input: an error if the compressed stream is incomplete. Whatever is still pending is decoded
    /// first, whatever its size (callers that care drain [`has_pending`](Self::has_pending) before).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        while self.has_pending() {
            self.push(&[], out)?;
        }
        match self {
            Decoder::Gzip(g) => g.finish(out),
            Decoder::Zstd(z) => z.finish(out),
        }
    }
}

/// flate2's writer fed a call at a time.
pub struct Gzip {
    decoder: MultiGzDecoder<Vec<u8>>,
    /// Input not decoded yet (the budget stopped the last push).
    input: Vec<u8>,
    more: bool,
}

impl Gzip {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.input.extend_from_slice(input);
        let start = out.len();
        let mut used = 0;
        self.more = false;
        while used < self.input.len() {
            if out.len() - start >= OUT_BUDGET {
                self.more = true;
                break;
            }
            let n = self.decoder.write(&self.input[used..]).map_err(|e| format!("invalid gzip data: {e}"))?;
            out.append(self.decoder.get_mut());
            if n == 0 {
                return Err("invalid gzip data: bytes after the end of the stream".into());
            }
            used += n;
        }
        self.input.drain(..used);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.decoder.try_finish().map_err(|e| format!("invalid gzip data: {e}"))?;
        out.append(self.decoder.get_mut());
        // flate2 accepts a stream cut inside a member's header or body at finish; the CRC trailer is what proves a
        // member complete, and a cut stream never reaches it.
        Ok(())
    }
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// ruzstd fed block by block.
#[derive(Default)]
pub struct Zstd {
    input: Vec<u8>,
    decoder: Option<FrameDecoder>,
    /// Inside a frame: whether it carries a content checksum.
    frame: Option<bool>,
    /// The budget stopped the last push with whole blocks still buffered.
    more: bool,
}

impl Zstd {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.input.extend_from_slice(input);
        let mut used = 0;
        self.more = false;
        let result = self.consume(&mut used, out);
        self.input.drain(..used);
        result
    }

    /// Decodes what the buffered input allows, advancing `used`.
    fn consume(&mut self, used: &mut usize, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        loop {
            if out.len() - start >= OUT_BUDGET {
                self.more = true;
                return Ok(());
            }
            let buf = &self.input[*used..];
            match self.frame {
                None => {
                    if buf.len() < 4 {
                        return Ok(());
                    }
                    let magic = le(&buf[..4]) as u32;
                    if is_skippable(magic) {
                        if buf.len() < 8 {
                            return Ok(());
                        }
                        let skip = 8 + le(&buf[4..8]) as usize;
                        if buf.len() < skip {
                            return Ok(());
                        }
                        *used += skip;
                        continue;
                    }
                    if magic != ZSTD_MAGIC {
                        return Err("invalid zstd data: not a zstd frame".into());
                    }
                    let Some(&fhd) = buf.get(4) else { return Ok(()) };
                    let header = frame_header_len(fhd);
                    if buf.len() < header {
                        return Ok(());
                    }
                    let decoder = self.decoder.get_or_insert_with(|| {
                        let mut d = FrameDecoder::new();
                        d.set_max_window_size(MAX_WINDOW);
                        d
                    });
                    decoder.reset(&buf[..header]).map_err(|e| format!("invalid zstd data: {e}"))?;
                    *used += header;
                    self.frame = Some(fhd & 0x04 != 0);
                }
                Some(checksum) => {
                    if buf.len() < 3 {
                        return Ok(());
                    }
                    let header = le(&buf[..3]);
                    let size = (header >> 3) as usize;
                    let wire = match (header >> 1) & 3 {
                        0 | 2 => size,
                        1 => 1,
                        _ => return Err("invalid zstd data: reserved block type".into()),
                    };
                    let last = header & 1 == 1;
                    // ruzstd reads the frame's checksum right after its last block.
                    let len = 3 + wire + if last && checksum { 4 } else { 0 };
                    if buf.len() < len {
                        return Ok(());
                    }
                    let decoder = self.decoder.as_mut().ok_or("zstd decoder missing")?;
                    decoder
                        .decode_blocks(&buf[..len], BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|e| format!("invalid zstd data: {e}"))?;
                    *used += len;
                    if let Some(bytes) = decoder.collect() {
                        out.extend_from_slice(&bytes);
                    }
                    if last {
                        // The checksum covers what was collected: all of it once the frame is finished.
                        let (sent, computed) = (decoder.get_checksum_from_data(), decoder.get_calculated_checksum());
                        if let (Some(a), Some(b)) = (sent, computed) {
                            if a != b {
                                return Err("invalid zstd data: content checksum mismatch".into());
                            }
                        }
                        self.frame = None;
                    }
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.push(&[], out)?;
        if self.frame.is_some() || !self.input.is_empty() {
            return Err("the zstd stream ended in the middle of a frame".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::zstd::MAX_BLOCK;

    fn data() -> Vec<u8> {
        let mut d = Vec::new();
        for i in 0..300_000u32 {
            d.extend_from_slice(format!("line {i} of a disk-like text {}\n", i % 7).as_bytes());
        }
        d.extend(std::iter::repeat_n(0u8, 1 << 20));
        d.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        d
    }

    /// Decodes as the import does: each push's output taken away before the next, the budget checked on each.
    fn decode(mut d: Decoder, input: &[u8], split: usize) -> Result<Vec<u8>, String> {
        let mut all = Vec::new();
        let mut take = |out: &mut Vec<u8>| {
            assert!(out.len() <= OUT_BUDGET + MAX_BLOCK, "a push yielded {} bytes", out.len());
            all.append(out);
        };
        let mut out = Vec::new();
        for chunk in input.chunks(split) {
            d.push(chunk, &mut out)?;
            take(&mut out);
            while d.has_pending() {
                d.push(&[], &mut out)?;
                take(&mut out);
            }
        }
        d.finish(&mut out)?;
        take(&mut out);
        Ok(all)
    }

    /// 16 KiB that expand to 512 MiB (RLE blocks of zeros; deflate's best ratio for gzip) come out a budget at a
    /// time: each push yields at most [`OUT_BUDGET`] and one block.
    #[test]
    fn bombs_are_decoded_a_budget_at_a_time() {
        let mut bomb = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38];
        for i in 0..4096 {
            crate::formats::zstd::rle_block(i == 4095, 0, MAX_BLOCK, &mut bomb);
        }
        assert!(bomb.len() < 17 << 10);
        let mut d = Decoder::zstd();
        let (mut out, mut pushes, mut total) = (Vec::new(), 0, 0usize);
        d.push(&bomb, &mut out).unwrap();
        loop {
            assert!(out.len() <= OUT_BUDGET + MAX_BLOCK, "{}", out.len());
            total += out.len();
            out.clear();
            pushes += 1;
            if !d.has_pending() {
                break;
            }
            d.push(&[], &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        assert_eq!(total + out.len(), 512 << 20);
        assert!(pushes >= 512, "{pushes}");
        let zeros = vec![0u8; 64 << 20];
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&zeros).unwrap();
        let g = e.finish().unwrap();
        assert!(g.len() < 128 << 10);
        assert!(decode(Decoder::gzip(), &g, g.len()).unwrap() == zeros);
    }

    /// Windows beyond 8 MiB (`--ultra` levels, `--long`) are refused before any output.
    #[test]
    fn zstd_windows_are_bounded() {
        // Window descriptor: exponent 14 → 2^24 = 16 MiB.
        let mut big = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 14 << 3];
        crate::formats::zstd::rle_block(true, 0, 16, &mut big);
        assert!(decode(Decoder::zstd(), &big, 4096).unwrap_err().contains("window"));
        let mut ok = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 13 << 3];
        crate::formats::zstd::rle_block(true, 7, 16, &mut ok);
        assert_eq!(decode(Decoder::zstd(), &ok, 4096).unwrap(), [7; 16]);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn gzip_round_trips_in_any_split_and_members_concatenate() {
        let d = data();
        let z = gzip(&d);
        for split in [1usize, 7, 4096, 1 << 20] {
            assert!(decode(Decoder::gzip(), &z, split).unwrap() == d, "split {split}");
        }
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        assert_eq!(decode(Decoder::gzip(), &two, 3).unwrap(), b"hello world");
        assert!(decode(Decoder::gzip(), &z[..z.len() - 5], 4096).is_err(), "cut before the trailer");
        assert!(decode(Decoder::gzip(), &z[..z.len() / 2], 4096).is_err(), "cut in the middle");
        assert!(decode(Decoder::gzip(), b"not gzip at all", 4).is_err());
    }

    #[test]
    fn zstd_round_trips_in_any_split_and_frames_concatenate() {
        let d = data();
        let z = zstd(&d);
        for split in [1usize, 5, 4096, 1 << 20] {
            assert!(decode(Decoder::zstd(), &z, split).unwrap() == d, "split {split}");
        }
        let mut two = zstd(b"hello ");
        two.extend([0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3]); // a skippable frame
        two.extend(zstd(b"world"));
        assert_eq!(decode(Decoder::zstd(), &two, 2).unwrap(), b"hello world");
        assert!(decode(Decoder::zstd(), &z[..z.len() - 1], 4096).is_err(), "cut at the end");
        assert!(decode(Decoder::zstd(), &z[..z.len() / 2], 4096).is_err(), "cut in the middle");
        assert!(decode(Decoder::zstd(), b"not zstd at all", 4).is_err());
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(!decode(Decoder::zstd(), &bad, 4096).map(|o| o == d).unwrap_or(false), "corruption is seen");
    }
}
