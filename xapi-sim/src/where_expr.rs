//! XAPI's `get_all_records_where` expression language.
//!
//! Grammar (XAPI `ocaml/database/db_filter_lex.mll`, `db_filter_parse.mly`):
//! `expr := value "=" value | expr "and" expr | expr "or" expr | "not" expr | "true" | "false" | "(" expr ")"`,
//! `value := "field" "<name>" | "<literal>"` with double-quoted literals and no escapes. Equality compares the
//! database string forms of fields. This module only parses and evaluates; it does not fetch records.

use crate::schema::Fields;
use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field(String),
    Literal(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    True,
    False,
    Eq(Operand, Operand),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    Eq,
    LParen,
    RParen,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '=' => {
                it.next();
                out.push(Tok::Eq);
            }
            '(' => {
                it.next();
                out.push(Tok::LParen);
            }
            ')' => {
                it.next();
                out.push(Tok::RParen);
            }
            '"' => {
                it.next();
                let mut lit = String::new();
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some(c) => lit.push(c),
                        None => return Err("unterminated string literal".into()),
                    }
                }
                out.push(Tok::Str(lit));
            }
            c if c.is_ascii_alphabetic() => {
                let mut w = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        w.push(c);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(w.to_ascii_lowercase()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.is_word("or") {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.is_word("and") {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Tok::Word(w)) if w == "field" => match self.next() {
                Some(Tok::Str(s)) => Ok(Operand::Field(s)),
                t => Err(format!("expected field name, found {t:?}")),
            },
            Some(Tok::Str(s)) => Ok(Operand::Literal(s)),
            t => Err(format!("expected a value, found {t:?}")),
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Word(w)) if w == "not" => {
                self.next();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Word(w)) if w == "true" => {
                self.next();
                Ok(Expr::True)
            }
            Some(Tok::Word(w)) if w == "false" => {
                self.next();
                Ok(Expr::False)
            }
            Some(Tok::LParen) => {
                self.next();
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    t => Err(format!("expected ')', found {t:?}")),
                }
            }
            _ => {
                let a = self.operand()?;
                match self.next() {
                    Some(Tok::Eq) => {}
                    t => return Err(format!("expected '=', found {t:?}")),
                }
                let b = self.operand()?;
                Ok(Expr::Eq(a, b))
            }
        }
    }
}

/// Parses an expression.
pub fn parse(s: &str) -> Result<Expr, String> {
    let mut p = Parser { toks: lex(s)?, pos: 0 };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected trailing input at token {}", p.pos));
    }
    Ok(e)
}

fn operand_value(o: &Operand, record: &Fields) -> String {
    match o {
        Operand::Literal(s) => s.clone(),
        Operand::Field(f) => record.get(f).map(Value::db_string).unwrap_or_default(),
    }
}

/// Whether `record` satisfies `e`.
pub fn eval(e: &Expr, record: &Fields) -> bool {
    match e {
        Expr::True => true,
        Expr::False => false,
        Expr::Eq(a, b) => operand_value(a, record) == operand_value(b, record),
        Expr::Not(x) => !eval(x, record),
        Expr::And(x, y) => eval(x, record) && eval(y, record),
        Expr::Or(x, y) => eval(x, record) || eval(y, record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Fields {
        Fields::from([
            ("is_a_template".into(), Value::Bool(false)),
            ("power_state".into(), Value::str("Running")),
            ("VCPUs_max".into(), Value::Int(4)),
        ])
    }

    #[test]
    fn evaluates_xo_style_queries() {
        let r = rec();
        let t = |s: &str| eval(&parse(s).unwrap(), &r);
        assert!(t(r#"field "is_a_template"="false" and field "power_state"="Running""#));
        assert!(!t(r#"field "power_state"="running""#));
        assert!(t(r#"field "VCPUs_max" = "4""#));
        assert!(t(r#"not (field "power_state"="Halted") or false"#));
        assert!(t("true"));
        assert!(t(r#"false or field "power_state" = "Running" and true"#));
        assert!(parse(r#"field "x" ="#).is_err());
        assert!(parse(r#"field "x" = "y" )"#).is_err());
    }
}
