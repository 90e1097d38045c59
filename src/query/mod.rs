//! XO's collection query parameters. So far: the `filter` language ([`filter`]), with XO's 0.7 semantics.

pub mod filter;
