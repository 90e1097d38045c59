//! XO's collection query parameters: the `filter` language ([`filter`], XO's 0.7 semantics) and `fields`,
//! `limit`, `ndjson` with the JSON / NDJSON writers ([`params`]); JavaScript regexes in linear time ([`jsregex`]).

pub mod filter;
pub mod jsregex;
pub mod params;
