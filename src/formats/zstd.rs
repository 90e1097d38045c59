//! zstd framing (RFC 8878) without the entropy coding: a push-style check that a stream is whole zstd frames (frame
//! headers, block headers, block sizes, the optional content checksum; block contents are skipped, not decoded), and
//! the writer of the two block types that need no coding: RLE blocks (a run of one byte: all-zero disk regions) and
//! raw blocks (stored bytes: incompressible regions).
//!
//! The check is how an edge that passes XAPI's zstd export through tells a complete stream from one cut short at a
//! fraction of the cost of decompressing it.

use std::fmt;

/// Largest block content (128 KiB).
pub const MAX_BLOCK: usize = 128 * 1024;
const MAGIC: u32 = 0xFD2F_B528;

/// Why a stream is not whole zstd frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZstdError {
    NotZstd {
        position: u64,
    },
    ReservedBlock {
        position: u64,
    },
    /// The stream ended inside a frame (or held no frame at all).
    Truncated {
        position: u64,
    },
}

impl fmt::Display for ZstdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZstdError::NotZstd { position } => write!(f, "not a zstd frame at byte {position}"),
            ZstdError::ReservedBlock { position } => write!(f, "reserved zstd block type at byte {position}"),
            ZstdError::Truncated { position } => write!(f, "the zstd stream ends inside a frame, at byte {position}"),
        }
    }
}

impl std::error::Error for ZstdError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a frame (magic number and header).
    Frame,
    /// Expecting a block header; whether the frame has a checksum.
    Block { checksum: bool },
    /// After the last block: the 4-byte checksum.
    Checksum,
}

/// The check's progress.
#[derive(Debug)]
pub struct FrameCheck {
    state: State,
    pos: u64,
    skip: u64,
    buf: Vec<u8>,
    frames: u64,
}

impl Default for FrameCheck {
    fn default() -> Self {
        FrameCheck { state: State::Frame, pos: 0, skip: 0, buf: Vec::new(), frames: 0 }
    }
}

/// A little-endian number of up to 8 bytes.
pub fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// Whether a frame's 4-byte magic number is a skippable frame's.
pub fn is_skippable(magic: u32) -> bool {
    magic & 0xFFFF_FFF0 == 0x184D_2A50
}

/// The length of a zstd frame header (magic number included) from its frame header descriptor byte.
pub fn frame_header_len(fhd: u8) -> usize {
    let single = fhd & 0x20 != 0;
    let fcs = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    5 + usize::from(!single) + [0, 1, 2, 4][usize::from(fhd & 3)] + fcs
}

impl FrameCheck {
    /// Consumes the next bytes of the stream.
    pub fn push(&mut self, mut input: &[u8]) -> Result<(), ZstdError> {
        while !input.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len() as u64);
                self.skip -= n;
                self.pos += n;
                input = &input[n as usize..];
                continue;
            }
            let need = self.need();
            let take = need.saturating_sub(self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            self.pos += take as u64;
            input = &input[take..];
            if self.buf.len() >= need {
                self.step()?;
            }
        }
        Ok(())
    }

    /// Bytes needed in `buf` to take the next step.
    fn need(&self) -> usize {
        match self.state {
            State::Frame => match self.buf.len() {
                0..4 => 4,
                _ if is_skippable(le(&self.buf[..4]) as u32) => 8,
                4 => 5,
                _ => frame_header_len(self.buf[4]),
            },
            State::Block { .. } => 3,
            State::Checksum => 4,
        }
    }

    fn step(&mut self) -> Result<(), ZstdError> {
        let at = self.pos - self.buf.len() as u64;
        match self.state {
            State::Frame => {
                let magic = le(&self.buf[..4]) as u32;
                let skippable = is_skippable(magic);
                if !skippable && magic != MAGIC {
                    return Err(ZstdError::NotZstd { position: at });
                }
                // The header's length is only known once its first bytes are in.
                if self.buf.len() < self.need() {
                    return Ok(());
                }
                if skippable {
                    self.skip = le(&self.buf[4..8]);
                    self.buf.clear();
                    return Ok(());
                }
                self.state = State::Block { checksum: self.buf[4] & 0x04 != 0 };
            }
            State::Block { checksum } => {
                let h = le(&self.buf[..3]);
                self.skip = match (h >> 1) & 3 {
                    0 | 2 => h >> 3,
                    1 => 1,
                    _ => return Err(ZstdError::ReservedBlock { position: at }),
                };
                if h & 1 == 1 {
                    self.state = if checksum { State::Checksum } else { State::Frame };
                    if !checksum {
                        self.frames += 1;
                    }
                }
            }
            State::Checksum => {
                self.state = State::Frame;
                self.frames += 1;
            }
        }
        self.buf.clear();
        Ok(())
    }

    /// Whole frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Ends the stream: an error unless it ended between frames, after at least one.
    pub fn finish(&self) -> Result<(), ZstdError> {
        if self.state == State::Frame && self.buf.is_empty() && self.skip == 0 && self.frames > 0 {
            Ok(())
        } else {
            Err(ZstdError::Truncated { position: self.pos })
        }
    }
}

/// Appends a frame header for a frame of `content` bytes (content size recorded, no checksum, single segment).
pub fn frame_header(content: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    // Single segment (the window is the content), 4-byte content size.
    out.push(0b1010_0000);
    out.extend_from_slice(&(content as u32).to_le_bytes());
}

pub(crate) fn block_header(last: bool, kind: u32, size: usize, out: &mut Vec<u8>) {
    let h = u32::from(last) | (kind << 1) | ((size as u32) << 3);
    out.extend_from_slice(&h.to_le_bytes()[..3]);
}

/// Appends an RLE block: `size` (≤ [`MAX_BLOCK`]) copies of `byte`.
pub fn rle_block(last: bool, byte: u8, size: usize, out: &mut Vec<u8>) {
    block_header(last, 1, size, out);
    out.push(byte);
}

/// Appends a raw block holding `data` (≤ [`MAX_BLOCK`] bytes).
pub fn raw_block(last: bool, data: &[u8], out: &mut Vec<u8>) {
    block_header(last, 0, data.len(), out);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], split: usize) -> Result<u64, ZstdError> {
        let mut c = FrameCheck::default();
        for chunk in bytes.chunks(split) {
            c.push(chunk)?;
        }
        c.finish().map(|()| c.frames())
    }

    #[test]
    fn written_frames_decode_and_check() {
        let mut z = Vec::new();
        frame_header(MAX_BLOCK + 10, &mut z);
        rle_block(false, 0, MAX_BLOCK, &mut z);
        raw_block(true, b"0123456789", &mut z);
        let mut skippable = vec![0x50, 0x2A, 0x4D, 0x18, 2, 0, 0, 0, 9, 9];
        skippable.extend(ruzstd::encoding::compress_to_vec(
            &b"text text text text"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        z.extend(skippable);
        let mut out = Vec::new();
        let mut d = ruzstd::decoding::StreamingDecoder::new(&z[..]).unwrap();
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        let mut expected = vec![0u8; MAX_BLOCK];
        expected.extend_from_slice(b"0123456789");
        assert_eq!(out, expected, "the first frame decodes (ruzstd reads one frame)");
        for split in [1, 3, 7, 4096, z.len()] {
            assert_eq!(check(&z, split), Ok(2), "split {split}");
        }
        for cut in [0, 3, 9, 12, 20, z.len() - 1] {
            assert!(check(&z[..cut], 4096).is_err(), "cut at {cut}");
        }
        assert!(check(b"not zstd", 3).is_err());
    }
}
