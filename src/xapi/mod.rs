//! Talking to XAPI: the JSON-RPC codec, XAPI's errors, and the calls the edge makes, over a transport trait.
//!
//! [`Transport`] is the only IO: components implement it with Spin's outbound HTTP, tests with anything. The
//! codec follows XAPI's JSON-RPC 2.0 envelopes (positional params, session first); XAPI failures become
//! [`XapiError`] and then an [`ApiError`](crate::error::ApiError) with the right status. Nothing here logs a
//! session ref or a password.

pub mod pool;
pub mod rpc;

pub use rpc::{Transport, TransportError, Xapi, XapiError};
