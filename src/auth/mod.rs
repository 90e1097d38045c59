//! Authentication at the edge: stateless signed tokens and the credentials a request carries.
//!
//! - [`token`]: the token format (sign, verify, refresh), HMAC-SHA256 under `token_secret`.
//! - [`credentials`]: finding credentials in a request (cookie, Bearer, Basic) and the `Set-Cookie` we send.
//!
//! Nothing here calls XAPI: a token is accepted or refused from its bytes and the clock alone.

pub mod credentials;
pub mod token;
