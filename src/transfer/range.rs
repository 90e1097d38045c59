//! `Range` requests on raw disk exports (RFC 9110 §14): one byte range, `a-b`, `a-` or `-n`.
//!
//! Only a single range is served; a header with several ranges, another unit or bad syntax is ignored (the whole
//! file is sent with 200, which RFC 9110 allows), so a client never gets less than it asked for by accident.

/// What to send for a request on a resource of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole resource (no usable `Range`).
    Full,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// Nothing of the resource matches (416).
    Unsatisfiable,
}

impl Ranged {
    /// The `Content-Range` value of a 206 or 416 answer.
    pub fn content_range(&self, size: u64) -> Option<String> {
        match self {
            Ranged::Full => None,
            Ranged::Part { start, end } => Some(format!("bytes {start}-{end}/{size}")),
            Ranged::Unsatisfiable => Some(format!("bytes */{size}")),
        }
    }
}

/// Reads a `Range` header against a resource of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return Ranged::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(n) if size > 0 => Ranged::Part { start: size.saturating_sub(n), end: size - 1 },
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Full,
        },
        // `a-`: from a to the end.
        (false, true) => match number(first) {
            Some(a) if a < size => Ranged::Part { start: a, end: size - 1 },
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Full,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= size {
                    Ranged::Unsatisfiable
                } else {
                    Ranged::Part { start: a, end: b.min(size - 1) }
                }
            }
            _ => Ranged::Full,
        },
        (true, true) => Ranged::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None, 100), Ranged::Full);
        assert_eq!(parse(Some("bytes=0-9"), 100), Ranged::Part { start: 0, end: 9 });
        assert_eq!(parse(Some("bytes=90-"), 100), Ranged::Part { start: 90, end: 99 });
        assert_eq!(parse(Some("bytes=-10"), 100), Ranged::Part { start: 90, end: 99 });
        assert_eq!(parse(Some("bytes=-1000"), 100), Ranged::Part { start: 0, end: 99 });
        assert_eq!(parse(Some("bytes=50-1000"), 100), Ranged::Part { start: 50, end: 99 });
        assert_eq!(parse(Some(" bytes= 5 - 6 "), 100), Ranged::Part { start: 5, end: 6 });
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse(Some("bytes=100-"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=100-200"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Ranged::Unsatisfiable);
        for ignored in ["items=0-1", "bytes=0-1,4-5", "bytes=5-4", "bytes=a-b", "bytes=-", "bytes=1", "bytes=+1-2"] {
            assert_eq!(parse(Some(ignored), 100), Ranged::Full, "{ignored}");
        }
        assert_eq!(Ranged::Part { start: 1, end: 2 }.content_range(10).as_deref(), Some("bytes 1-2/10"));
        assert_eq!(Ranged::Unsatisfiable.content_range(10).as_deref(), Some("bytes */10"));
    }
}
