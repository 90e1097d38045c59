//! Checks on an export body that streams through the guest, so that a broken transfer is never passed off as a
//! complete file.
//!
//! - [`Check::Vhd`]: the body must be a well-formed dynamic or differencing VHD that ends with its trailing footer
//!   (XAPI's close-delimited body gives no other way to tell a cut from an end). An `HTTP/…` error that XAPI wrote
//!   into a 200 body (xen-api#4603) fails at the first bytes, before the client gets any.
//! - [`Check::Slice`]: a byte range of the body (`Range` on `.raw`): what to forward and whether it all came.
//! - [`Check::Exact`]: a raw upload must be exactly as long as announced (after decompression).
//!
//! Imports use the same checks on what the client sends.
//!
//! This module only looks at bytes; the component reads and writes them.

use crate::formats::tar::{TarCheck, TarError};
use crate::formats::vhd::{PushError, VhdError, VhdStreamParser};
use crate::formats::zstd::{FrameCheck, ZstdError};
use std::convert::Infallible;
use std::fmt;

/// Why a body failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The body starts with `HTTP/`: XAPI wrote an error response into it (exports only).
    HttpInBody,
    /// The VHD is malformed, or ended early.
    Vhd(VhdError),
    /// More bytes than announced.
    Long {
        len: u64,
    },
    /// The body ended after `pos` bytes, `want` were needed.
    Short {
        pos: u64,
        want: u64,
    },
    Tar(TarError),
    Zstd(ZstdError),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::HttpInBody => f.write_str("XAPI wrote an HTTP error into its response body"),
            CheckError::Vhd(e) => write!(f, "invalid VHD: {e}"),
            CheckError::Long { len } => write!(f, "the body is longer than the {len} bytes announced"),
            CheckError::Short { pos, want } => write!(f, "the body ended after {pos} bytes, {want} were needed"),
            CheckError::Tar(e) => write!(f, "invalid XVA: {e}"),
            CheckError::Zstd(e) => write!(f, "invalid zstd stream: {e}"),
        }
    }
}

/// What is checked, with its progress.
#[derive(Debug)]
pub enum Check {
    /// A VHD; `from_xapi` also catches an `HTTP/` error at its start.
    Vhd {
        parser: Box<VhdStreamParser>,
        from_xapi: bool,
    },
    Slice {
        start: u64,
        end: u64,
        pos: u64,
    },
    Exact {
        len: u64,
        pos: u64,
    },
    /// An XVA (a tar whose first entry is `ova.xml`) from XAPI.
    Xva(Box<TarCheck>),
    /// Whole zstd frames from XAPI (their content is not decoded).
    ZstdFrames(Box<FrameCheck>),
    /// Nothing to check in the bytes: only XAPI's task says whether they are complete.
    Any,
}

impl Check {
    /// A whole VHD.
    pub fn vhd() -> Check {
        Check::Vhd { parser: Box::new(VhdStreamParser::new(None)), from_xapi: true }
    }

    /// A whole VHD of `total_len` bytes when known (its trailing footer is then expected at the end).
    pub fn vhd_of_length(total_len: Option<u64>) -> Check {
        Check::Vhd { parser: Box::new(VhdStreamParser::new(total_len)), from_xapi: false }
    }

    /// An XVA from XAPI.
    pub fn xva() -> Check {
        Check::Xva(Box::new(TarCheck::new(Some("ova.xml"))))
    }

    /// A zstd stream from XAPI.
    pub fn zstd_frames() -> Check {
        Check::ZstdFrames(Box::default())
    }

    /// A body of exactly `len` bytes.
    pub fn exact(len: u64) -> Check {
        Check::Exact { len, pos: 0 }
    }

    /// The VHD parser, for a VHD check.
    pub fn vhd_parser(&self) -> Option<&VhdStreamParser> {
        match self {
            Check::Vhd { parser, .. } => Some(parser),
            _ => None,
        }
    }

    /// Bytes `start..=end` of the body.
    pub fn slice(start: u64, end: u64) -> Check {
        Check::Slice { start, end, pos: 0 }
    }

    /// Consumes the next chunk of the body; answers the part of it to forward to the client.
    pub fn feed<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], CheckError> {
        match self {
            Check::Vhd { parser, from_xapi } => {
                if *from_xapi && parser.position() == 0 && chunk.starts_with(b"HTTP/") {
                    return Err(CheckError::HttpInBody);
                }
                parser.push(chunk, &mut |_| Ok::<(), Infallible>(())).map_err(|e| match e {
                    PushError::Vhd(e) => CheckError::Vhd(e),
                    PushError::Sink(never) => match never {},
                })?;
                Ok(chunk)
            }
            Check::Slice { start, end, pos } => {
                let len = chunk.len() as u64;
                let from = (*start).saturating_sub(*pos).min(len);
                let to = (*end + 1).saturating_sub(*pos).min(len);
                *pos += len;
                Ok(if from < to { &chunk[from as usize..to as usize] } else { &[] })
            }
            Check::Exact { len, pos } => {
                *pos += chunk.len() as u64;
                if *pos > *len {
                    return Err(CheckError::Long { len: *len });
                }
                Ok(chunk)
            }
            Check::Xva(tar) => {
                if tar.entries() == 0 && chunk.starts_with(b"HTTP/") {
                    return Err(CheckError::HttpInBody);
                }
                tar.push(chunk).map_err(CheckError::Tar)?;
                Ok(chunk)
            }
            Check::ZstdFrames(z) => {
                if z.frames() == 0 && chunk.starts_with(b"HTTP/") {
                    return Err(CheckError::HttpInBody);
                }
                z.push(chunk).map_err(CheckError::Zstd)?;
                Ok(chunk)
            }
            Check::Any => Ok(chunk),
        }
    }

    /// Whether the start of the body has been seen and is right, so that a success status can be sent.
    pub fn started(&self) -> bool {
        match self {
            Check::Vhd { parser, .. } => parser.footer().is_some(),
            Check::Slice { .. } | Check::Exact { .. } | Check::ZstdFrames(_) | Check::Any => true,
            Check::Xva(tar) => tar.entries() > 0,
        }
    }

    /// Whether everything wanted has arrived (the rest of the body, if any, is not needed).
    pub fn complete(&self) -> bool {
        match self {
            Check::Vhd { parser, .. } => parser.is_done(),
            Check::Slice { end, pos, .. } => *pos > *end,
            Check::Exact { len, pos } => pos == len,
            Check::Xva(tar) => tar.is_done(),
            Check::ZstdFrames(_) | Check::Any => false,
        }
    }

    /// At the end of the body: an error unless everything wanted arrived.
    pub fn finish(&self) -> Result<(), CheckError> {
        match self {
            Check::Vhd { parser, .. } => parser.finish().map_err(CheckError::Vhd),
            Check::Slice { end, pos, .. } if *pos > *end => Ok(()),
            Check::Slice { end, pos, .. } => Err(CheckError::Short { pos: *pos, want: *end + 1 }),
            Check::Exact { len, pos } if pos == len => Ok(()),
            Check::Exact { len, pos } => Err(CheckError::Short { pos: *pos, want: *len }),
            Check::Xva(tar) => tar.finish().map_err(CheckError::Tar),
            Check::ZstdFrames(z) => z.finish().map_err(CheckError::Zstd),
            Check::Any => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::vhd::DynamicLayout;

    fn vhd(size: u64, blocks: Vec<u32>) -> Vec<u8> {
        let layout = DynamicLayout::new(size, blocks, [7; 16], 0);
        let mut out = layout.prefix();
        for _ in &layout.blocks {
            out.extend(layout.full_bitmap());
            out.extend(vec![0xab; layout.header.block_size as usize]);
        }
        out.extend(layout.footer.to_bytes());
        out
    }

    fn run(check: &mut Check, body: &[u8], split: usize) -> Result<Vec<u8>, CheckError> {
        let mut out = Vec::new();
        for chunk in body.chunks(split) {
            out.extend_from_slice(check.feed(chunk)?);
        }
        check.finish()?;
        Ok(out)
    }

    #[test]
    fn a_whole_vhd_passes_in_any_split() {
        let body = vhd(8 << 20, vec![0, 3]);
        for split in [1usize, 511, 4096, 1 << 20, body.len()] {
            let mut c = Check::vhd();
            assert_eq!(run(&mut c, &body, split.max(1)).as_deref(), Ok(&body[..]), "split {split}");
            assert!(c.complete() && c.started());
        }
    }

    #[test]
    fn a_cut_or_damaged_vhd_fails() {
        let body = vhd(8 << 20, vec![1]);
        for cut in [0, 100, 512, 2048, body.len() - 512, body.len() - 1] {
            let mut c = Check::vhd();
            assert!(run(&mut c, &body[..cut], 4096).is_err(), "cut at {cut}");
        }
        let mut more = body.clone();
        more.extend([0u8; 512]);
        assert!(run(&mut Check::vhd(), &more, 4096).is_err(), "data after the trailing footer");
        let mut bad = body.clone();
        bad[10] ^= 1;
        assert!(run(&mut Check::vhd(), &bad, 4096).is_err(), "footer checksum");
        let err = run(&mut Check::vhd(), b"HTTP/1.1 500 Internal Error\r\n\r\n", 4096).unwrap_err();
        assert_eq!(err, CheckError::HttpInBody);
        let err = run(&mut Check::vhd_of_length(None), b"HTTP/1.1 500 Internal Error\r\n\r\n", 4096).unwrap_err();
        assert!(matches!(err, CheckError::Vhd(_)), "an upload is just a bad VHD");
        let mut c = Check::vhd();
        assert!(c.feed(&body[..100]).is_ok() && !c.started());
        assert!(c.feed(&body[100..600]).is_ok() && c.started() && !c.complete());
    }

    #[test]
    fn exact_lengths() {
        let mut c = Check::exact(10);
        assert!(c.feed(&[0; 4]).is_ok() && !c.complete() && c.finish().is_err());
        assert!(c.feed(&[0; 6]).is_ok() && c.complete() && c.finish().is_ok());
        assert!(c.feed(&[0]).is_err());
        let body = vhd(4 << 20, vec![1]);
        let mut c = Check::vhd_of_length(Some(body.len() as u64));
        assert_eq!(run(&mut c, &body, 1000).map(|b| b.len()), Ok(body.len()));
        assert!(run(&mut Check::vhd_of_length(Some(body.len() as u64 + 512)), &body, 1000).is_err());
    }

    #[test]
    fn slices_forward_exactly_the_range() {
        let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for (start, end) in [(0u64, 0u64), (0, 9_999), (1, 1), (4095, 4097), (5_000, 9_999), (9_999, 9_999)] {
            for split in [1usize, 7, 4096, 10_000] {
                let mut c = Check::slice(start, end);
                let mut out = Vec::new();
                for chunk in body.chunks(split) {
                    out.extend_from_slice(c.feed(chunk).unwrap_or_default());
                    if c.complete() {
                        break;
                    }
                }
                assert_eq!(c.finish(), Ok(()));
                assert_eq!(out, &body[start as usize..=end as usize], "{start}-{end} split {split}");
            }
        }
        let mut c = Check::slice(100, 20_000);
        assert!(run(&mut c, &body, 4096).is_err(), "a short body fails the range");
    }
}
