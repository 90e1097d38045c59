//! xo-edge core: everything that decides, nothing that does IO.
//!
//! This crate is the runtime-free heart of xo-edge, the Xen Orchestra REST API v0 rebuilt as WebAssembly
//! components that talk to XAPI directly. It compiles natively (unit tests, fuzzing, the XAPI simulator) and to
//! `wasm32-wasip2` (the Spin components). It never opens a socket and never depends on spin-sdk: the components
//! feed it bytes and values and do the IO themselves.
//!
//! Modules, one concept each:
//! - [`formats`]: disk and archive formats (VHD structures and a push-style streaming VHD parser).

pub mod formats;
