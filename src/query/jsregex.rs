//! JavaScript regular expressions (what a `/…/i` in XO's filter means) run by a linear-time engine.
//!
//! XO evaluates filter regexes with V8, a backtracking engine: a pattern such as `^[0-9a-f-]{14}(?:[0-9a-f-]+)+Z`
//! takes time exponential in the subject's length. Here the pattern, already validated with JavaScript's syntax
//! (`regress`, for V8's error messages), is translated to the `regex` crate's syntax with JavaScript's meaning
//! (non-Unicode mode with Annex B: `\d`, `\w`, `\b` are ASCII, `\s` is JavaScript's white space, `.` stops at line
//! terminators, `{` that is not a quantifier is a literal, literal characters are written as `\x{…}` so that no
//! character is special by accident) and matched by finite automata, in time linear in the subject.
//!
//! Two things JavaScript has cannot run in linear time: back-references (`\1`, `\k<name>`) and lookaround
//! (`(?=`, `(?!`, `(?<=`, `(?<!`). Patterns with them are refused with a message saying so, rather than run with
//! unbounded time. Under the `i` flag, case folding is Unicode's simple case folding; JavaScript's non-Unicode mode
//! differs for a few compatibility characters (the Kelvin sign, the Ångström sign, the Ohm sign, long s), which
//! fold here and not there.

/// JavaScript's `\s`: WhiteSpace and LineTerminator (ECMA-262 §22.2.2.9, CharacterClassEscape).
const WHITE_SPACE: &str =
    r"\t\n\x0B\x0C\r\x20\xA0\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
/// Largest compiled program and lazy-DFA cache per pattern.
const SIZE_LIMIT: usize = 1 << 20;

/// Compiles JavaScript `pattern` (valid JavaScript syntax) for matching; the error is a message for a 400.
pub fn compile(pattern: &str, ignore_case: bool) -> Result<regex::Regex, String> {
    let translated = translate(pattern)?;
    regex::RegexBuilder::new(&translated)
        .case_insensitive(ignore_case)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "too large (its repetitions expand beyond 1 MiB)".to_string(),
            _ => "not supported by xo-edge's regular expression engine".to_string(),
        })
}

/// One character as a literal that is never special, inside or outside a class.
fn lit(c: char) -> String {
    format!("\\x{{{:X}}}", c as u32)
}

struct Scanner<'a> {
    c: &'a [char],
    i: usize,
}

/// What one escape or character stands for inside a class.
enum ClassAtom {
    Char(char),
    /// A class escape, already written as class items (`0-9`, `[^0-9]`, …).
    Set(String),
}

impl Scanner<'_> {
    fn peek(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    fn hex(&self, from: usize, n: usize) -> Option<u32> {
        let digits: String = (0..n).map(|k| self.peek(from + k)).collect::<Option<String>>()?;
        if digits.chars().all(|d| d.is_ascii_hexdigit()) {
            u32::from_str_radix(&digits, 16).ok()
        } else {
            None
        }
    }

    /// A character escape after `\` (at `self.i`, the character after the backslash), shared by both contexts:
    /// consumes it and answers the character, or `None` for class escapes and assertions (not consumed).
    fn char_escape(&mut self, in_class: bool) -> Result<Option<char>, String> {
        let Some(e) = self.peek(0) else { return Ok(Some('\\')) };
        let simple = match e {
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'f' => Some('\x0C'),
            'v' => Some('\x0B'),
            'b' if in_class => Some('\x08'),
            '0' if !self.peek(1).is_some_and(|d| d.is_ascii_digit()) => Some('\0'),
            _ => None,
        };
        if let Some(c) = simple {
            self.i += 1;
            return Ok(Some(c));
        }
        match e {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => Ok(None),
            'b' | 'B' => Ok(None),
            '1'..='9' | '0' => Err("uses a back-reference or an octal escape".into()),
            'k' if self.peek(1) == Some('<') => Err("uses a back-reference".into()),
            'x' => Ok(Some(match self.hex(1, 2).and_then(char::from_u32) {
                Some(c) => {
                    self.i += 3;
                    c
                }
                None => {
                    self.i += 1;
                    'x'
                }
            })),
            'u' => match self.hex(1, 4) {
                Some(n) if (0xD800..0xE000).contains(&n) => Err("uses a UTF-16 surrogate escape".into()),
                Some(n) => {
                    self.i += 5;
                    Ok(char::from_u32(n))
                }
                None => {
                    self.i += 1;
                    Ok(Some('u'))
                }
            },
            'c' => match self.peek(1) {
                Some(l) if l.is_ascii_alphabetic() => {
                    self.i += 2;
                    Ok(char::from_u32(l as u32 % 32))
                }
                _ => Err("uses a \\c escape without a control letter".into()),
            },
            other => {
                // An identity escape: the character itself.
                self.i += 1;
                Ok(Some(other))
            }
        }
    }

    /// A class escape letter (`d`, `D`, `w`, `W`, `s`, `S`) as class items.
    fn class_escape(e: char) -> Option<String> {
        let (set, negated) = match e {
            'd' => (DIGIT, false),
            'D' => (DIGIT, true),
            'w' => (WORD, false),
            'W' => (WORD, true),
            's' => (WHITE_SPACE, false),
            'S' => (WHITE_SPACE, true),
            _ => return None,
        };
        Some(if negated { format!("[^{set}]") } else { set.to_string() })
    }

    fn class_atom(&mut self) -> Result<ClassAtom, String> {
        let c = self.peek(0).ok_or("unterminated class")?;
        self.i += 1;
        if c != '\\' {
            return Ok(ClassAtom::Char(c));
        }
        if let Some(set) = self.peek(0).and_then(Self::class_escape) {
            self.i += 1;
            return Ok(ClassAtom::Set(set));
        }
        if self.peek(0) == Some('-') {
            self.i += 1;
            return Ok(ClassAtom::Char('-'));
        }
        match self.char_escape(true)? {
            Some(ch) => Ok(ClassAtom::Char(ch)),
            None => Err("uses an escape this engine does not know in a class".into()),
        }
    }

    /// A class, `[` already consumed.
    fn class(&mut self, out: &mut String) -> Result<(), String> {
        let negated = self.peek(0) == Some('^');
        if negated {
            self.i += 1;
        }
        if self.peek(0) == Some(']') {
            self.i += 1;
            // `[]` matches nothing, `[^]` any character.
            out.push_str(if negated { r"[\x{0}-\x{10FFFF}]" } else { r"[^\x{0}-\x{10FFFF}]" });
            return Ok(());
        }
        let mut items = String::new();
        loop {
            if self.peek(0) == Some(']') {
                self.i += 1;
                break;
            }
            let first = self.class_atom()?;
            let is_range = self.peek(0) == Some('-') && self.peek(1).is_some_and(|c| c != ']');
            if is_range {
                self.i += 1;
                let second = self.class_atom()?;
                match (first, second) {
                    (ClassAtom::Char(a), ClassAtom::Char(b)) => items.push_str(&format!("{}-{}", lit(a), lit(b))),
                    // Annex B: a class escape beside `-` makes the `-` a literal.
                    (a, b) => {
                        for atom in [a, ClassAtom::Char('-'), b] {
                            match atom {
                                ClassAtom::Char(c) => items.push_str(&lit(c)),
                                ClassAtom::Set(s) => items.push_str(&s),
                            }
                        }
                    }
                }
            } else {
                match first {
                    ClassAtom::Char(c) => items.push_str(&lit(c)),
                    ClassAtom::Set(s) => items.push_str(&s),
                }
            }
        }
        out.push('[');
        if negated {
            out.push('^');
        }
        out.push_str(&items);
        out.push(']');
        Ok(())
    }

    /// `{n}`, `{n,}` or `{n,m}` starting at `self.i` (on the `{`): its length, if it is a quantifier.
    fn quantifier_len(&self) -> Option<usize> {
        let mut k = 1;
        let digits = |k: &mut usize| {
            let start = *k;
            while self.peek(*k).is_some_and(|d| d.is_ascii_digit()) {
                *k += 1;
            }
            *k > start
        };
        if !digits(&mut k) {
            return None;
        }
        if self.peek(k) == Some(',') {
            k += 1;
            digits(&mut k);
        }
        (self.peek(k) == Some('}')).then_some(k + 1)
    }
}

/// The `regex` crate's spelling of JavaScript `pattern`.
fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut s = Scanner { c: &chars, i: 0 };
    let mut out = String::with_capacity(pattern.len() * 4);
    while let Some(c) = s.peek(0) {
        s.i += 1;
        match c {
            '\\' => {
                match s.peek(0) {
                    Some('b') => {
                        s.i += 1;
                        out.push_str(r"(?-u:\b)");
                        continue;
                    }
                    Some('B') => {
                        s.i += 1;
                        out.push_str(r"(?-u:\B)");
                        continue;
                    }
                    _ => {}
                }
                if let Some(set) = s.peek(0).and_then(Scanner::class_escape) {
                    s.i += 1;
                    if set.starts_with('[') {
                        out.push_str(&set);
                    } else {
                        out.push_str(&format!("[{set}]"));
                    }
                    continue;
                }
                match s.char_escape(false)? {
                    Some(ch) => out.push_str(&lit(ch)),
                    None => return Err("uses an escape this engine does not know".into()),
                }
            }
            '.' => out.push_str(r"[^\n\r\x{2028}\x{2029}]"),
            '[' => s.class(&mut out)?,
            '(' => {
                if s.peek(0) == Some('?') {
                    match (s.peek(1), s.peek(2)) {
                        (Some(':'), _) => {
                            s.i += 2;
                            out.push_str("(?:");
                        }
                        (Some('=' | '!'), _) | (Some('<'), Some('=' | '!')) => {
                            return Err("uses lookaround ((?=, (?!, (?<=, (?<!)".into())
                        }
                        (Some('<'), _) => {
                            // A named group: its name does not change what matches.
                            while s.peek(0).is_some_and(|c| c != '>') {
                                s.i += 1;
                            }
                            s.i += 1;
                            out.push('(');
                        }
                        _ => return Err("uses a group this engine does not know".into()),
                    }
                } else {
                    out.push('(');
                }
            }
            ')' | '|' | '^' | '$' | '*' | '+' | '?' => out.push(c),
            '{' => {
                s.i -= 1;
                match s.quantifier_len() {
                    Some(n) => {
                        out.extend(&chars[s.i..s.i + n]);
                        s.i += n;
                    }
                    None => {
                        s.i += 1;
                        out.push_str(&lit('{'));
                    }
                }
            }
            other => out.push_str(&lit(other)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, i: bool, subject: &str) -> bool {
        compile(pattern, i).unwrap_or_else(|e| panic!("/{pattern}/: {e}")).is_match(subject)
    }

    /// What V8 answers for each (checked with node: `new RegExp(p, f).test(s)`).
    #[test]
    fn javascript_meaning() {
        let cases: &[(&str, bool, &str, bool)] = &[
            (r"^Running$", false, "Running", true),
            (r"^running$", false, "Running", false),
            (r"^running$", true, "Running", true),
            (r"^DNS server \d+$", false, "DNS server 12", true),
            (r"\d", false, "٣", false),
            (r"\w", false, "é", false),
            (r"\s", false, "\u{a0}", true),
            (r"\s", false, "\u{85}", false),
            (r"^.$", false, "\n", false),
            (r"^.$", false, "\u{2028}", false),
            (r"^.$", false, "é", true),
            (r"^foo\/bar\.", true, "FOO/BAR.x", true),
            (r"a{", false, "a{", true),
            (r"a{2}", false, "aa", true),
            (r"a{2,}", false, "a", false),
            (r"x{1,2}y", false, "xxy", true),
            (r"{}", false, "{}", true),
            (r"]", false, "]", true),
            (r"[a-c]+", false, "xbz", true),
            (r"[^a-c]", false, "abc", false),
            (r"[\d-z]", false, "-", true),
            (r"[\w-]", false, "-", true),
            (r"[-a]", false, "-", true),
            (r"[a-]", false, "-", true),
            (r"[\]]", false, "]", true),
            (r"[[]", false, "[", true),
            (r"[&&]", false, "&", true),
            (r"[a~~b]", false, "~", true),
            (r"[]", false, "a", false),
            (r"[^]", false, "\n", true),
            (r"[\b]", false, "\x08", true),
            (r"\bfoo\b", false, "a foo b", true),
            (r"\bfoo\b", false, "afoo", false),
            (r"\x41\u0042", false, "AB", true),
            (r"\xZZ", false, "xZZ", true),
            (r"\cJ", false, "\n", true),
            (r"(?:ab)+c", false, "ababc", true),
            (r"(?<year>\d{4})", false, "2026", true),
            (r"a|", false, "zzz", true),
            (r"#", false, "#", true),
            (r"a b", false, "a b", true),
            (r"^$", false, "", true),
            (r"^İ", true, "i", false),
            (r"^İ", true, "İx", true),
            (r"\.", false, "a", false),
            (r"\/", false, "/", true),
            (r"\-", false, "-", true),
        ];
        for (p, i, s, want) in cases {
            assert_eq!(m(p, *i, s), *want, "/{p}/{} on {s:?}", if *i { "i" } else { "" });
        }
    }

    #[test]
    fn exponential_patterns_run_in_linear_time() {
        let re = compile(r"^[0-9a-f-]{14}(?:[0-9a-f-]+)+Z", false).unwrap();
        let subject = "0123456789abcdef-".repeat(2000);
        let t = std::time::Instant::now();
        assert!(!re.is_match(&subject));
        assert!(!compile(r"^(a+)+$", false).unwrap().is_match(&format!("{}b", "a".repeat(100_000))));
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn what_cannot_be_linear_is_refused_with_a_reason() {
        for (p, why) in [
            (r"(a)\1", "back-reference"),
            (r"(?<n>a)\k<n>", "back-reference"),
            (r"a(?=b)", "lookaround"),
            (r"a(?!b)", "lookaround"),
            (r"(?<=a)b", "lookaround"),
            (r"(?<!a)b", "lookaround"),
        ] {
            assert!(compile(p, false).unwrap_err().contains(why), "{p}");
        }
        assert!(compile("(?:a{1000}){1000}", false).unwrap_err().contains("too large"));
    }
}
