//! XO's collection query parameters: the `filter` language ([`filter`], XO's 0.7 semantics) and `fields`,
//! `limit`, `ndjson` with the JSON / NDJSON writers ([`params`]).

pub mod filter;
pub mod params;
