//! xo-edge core: everything that decides, nothing that does IO.
//!
//! This crate is the runtime-free heart of xo-edge, the Xen Orchestra REST API v0 rebuilt as WebAssembly
//! components that talk to XAPI directly. It compiles natively (unit tests, fuzzing, the XAPI simulator) and to
//! `wasm32-wasip2` (the Spin components). It never opens a socket and never depends on spin-sdk: the components
//! feed it bytes and values and do the IO themselves.
//!
//! Modules, one concept each:
//! - [`config`]: the edge's settings, from Spin variables or environment variables.
//! - [`error`]: one error type, one status and one JSON body per failure.
//! - [`auth`]: signed tokens and the credentials a request carries.
//! - [`xapi`]: the JSON-RPC client for XAPI over a transport trait.
//! - [`objects`]: XAPI records → XO objects, one file per type, and the collections.
//! - [`query`]: XO's query parameters: the `filter` language.
//! - [`routes`]: the route table from `spin.toml` and Spin's matching rules.
//! - [`rest`]: the REST API's handlers, request in, reply out.
//! - [`formats`]: disk and archive formats (VHD structures and a push-style streaming VHD parser).
//! - [`transfer`]: exports and imports through XAPI's HTTP handlers: plans, checks on streamed bytes, tasks.

pub mod auth;
pub mod config;
pub mod docs;
pub mod error;
pub mod formats;
pub mod objects;
pub mod openapi;
pub mod query;
pub mod rest;
pub mod routes;
pub mod transfer;
pub mod xapi;
