//! Disk and archive formats, as byte-level codecs and push-style streaming parsers.
//!
//! Nothing here reads from a socket or a file: callers feed bytes and receive values or events.

pub mod config_drive;
pub mod ova;
pub mod tar;
pub mod vhd;
pub mod zstd;
pub mod zstd_encode;
