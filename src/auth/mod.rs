//! Authentication at the edge: sealed tokens, the credentials a request carries, and login throttling.
//!
//! - [`token`]: the token format (seal, open, refresh): claims encrypted and authenticated under a key derived from
//!   `token_secret`.
//! - [`credentials`]: finding credentials in a request (cookie, Bearer, Basic) and the `Set-Cookie` we send.
//! - [`throttle`]: failed password logins counted per user name and per client in a shared store.
//!
//! Nothing here calls XAPI: a token is accepted or refused from its bytes and the clock alone.

pub mod credentials;
pub mod throttle;
pub mod token;
