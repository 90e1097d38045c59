//! XO's `expiresIn`: milliseconds as a number, or a duration such as `"30 days"`, `"1h"`, `"90 s"`.
//!
//! Parsing only; limits are applied by the token endpoint.

use serde_json::Value;

/// Seconds described by `v`, or `None` if it is not a duration.
pub fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|ms| *ms >= 0.0).map(|ms| (ms / 1000.0) as u64),
        Value::String(s) => parse(s),
        _ => None,
    }
}

fn parse(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if n < 0.0 {
        return None;
    }
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        "w" | "week" | "weeks" => 604800.0,
        "month" | "months" => 2_592_000.0,
        "y" | "year" | "years" => 31_536_000.0,
        _ => return None,
    };
    Some((n * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_xo_durations() {
        assert_eq!(seconds(&json!(60000)), Some(60));
        assert_eq!(seconds(&json!("30 days")), Some(2_592_000));
        assert_eq!(seconds(&json!("1h")), Some(3600));
        assert_eq!(seconds(&json!("90 s")), Some(90));
        assert_eq!(seconds(&json!("0.5 year")), Some(15_768_000));
        assert_eq!(seconds(&json!("soon")), None);
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!(true)), None);
    }
}
