//! Disk and VM transfers between a client and XAPI's HTTP handlers: what to ask XAPI, what to answer the client,
//! how to check bytes on their way, and how to end the XAPI task whatever happens.
//!
//! The components move the bytes (zero-copy when nothing needs inspecting); this module decides everything else
//! and stays runtime-free so that every decision is unit-tested natively.
//! - [`range`]: `Range: bytes=…` for `.raw` exports.
//! - [`check`]: checks on bytes streamed through the guest (VHD structure, exact byte slices).
//! - [`compress`]: gzip and zstd at the edge for VM exports.
//! - [`decode`]: gzip and zstd uploads, decompressed as they arrive.
//! - [`export`]: plans a VDI export (route, object, task, headers, how to stream) and turns a failed start into
//!   the right JSON error.
//! - [`import`]: plans a VDI import (length, VDI, task) and decides its answer and cleanup.
//! - [`vm_export`]: plans a VM export (compression, snapshot of a running VM and its cleanup).
//! - [`vm_import`]: plans a VM import (XVA sniffing and checks, SR, task) and decides its answer and cleanup.
//! - [`host_logs`]: plans a host's `audit.txt` and `logs.tgz` downloads.
//! - [`task`]: waiting for an XAPI task to end, then destroying it.

pub mod check;
pub mod compress;
pub mod decode;
pub mod export;
pub mod host_logs;
pub mod import;
pub mod range;
pub mod task;
pub mod vm_export;
pub mod vm_import;
