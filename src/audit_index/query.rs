//! Parser for the audit search language (`GET /audit/search?q=...`).
//!
//! The user-facing description lives in docs/audit.md ("The search language"); keep the two in step.
//! Lexing is done up front because the shape of a field's value (quoted, range,
//! comparison) depends on which field it belongs to, and resolving that early gives
//! better error positions than a generic tokenizer would.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;
const MAX_TERMS: usize = 256;
const DAY_MS: i64 = 86_400_000;

const KNOWN_FIELDS: &str =
    "action, table, object, actor, key, role, ip, request, agent, org, text, seq, time";
const TIME_FORMS: &str = "use RFC 3339 (2026-01-02T03:04:05Z), a date (2026-01-02, UTC), \
     or now, now-15m, now-2h, now-7d (units s, m, h, d)";
const RANGE_FORMS: &str = "bad range syntax: write [start TO end] (inclusive) or {start TO end} \
     (exclusive), with * for an open end, e.g. time:[2026-01-01 TO *] or seq:{100 TO 200}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    All,
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
    Text(String),
    Phrase(String),
    Term {
        field: Field,
        value: String,
    },
    Prefix {
        field: Field,
        value: String,
    },
    /// Bounds are inclusive; milliseconds since the epoch for `Time`.
    Range {
        field: RangeField,
        lo: Option<i64>,
        hi: Option<i64>,
    },
}

/// Keyword fields: matched exactly (or by prefix), never tokenised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Action,
    Table,
    Object,
    Actor,
    Key,
    Role,
    Ip,
    Request,
    Agent,
    Org,
}

impl Field {
    /// The audit entry column this field searches.
    pub fn name(&self) -> &'static str {
        match self {
            Field::Action => "action",
            Field::Table => "table_name",
            Field::Object => "object_id",
            Field::Actor => "changed_by",
            Field::Key => "changed_by_api_key",
            Field::Role => "actor_role",
            Field::Ip => "source_ip",
            Field::Request => "request_id",
            Field::Agent => "user_agent",
            Field::Org => "org",
        }
    }

    /// These columns hold lower-case identifiers, so users should not have to match case.
    fn folds_case(self) -> bool {
        matches!(self, Field::Action | Field::Table | Field::Role)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeField {
    Time,
    Seq,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the query string.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

fn err(position: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        position,
        message: message.into(),
    }
}

fn fail<T>(position: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(err(position, message))
}

/// Parses `q`; `now_ms` anchors `now`-relative times so results are reproducible.
pub fn parse(q: &str, now_ms: i64) -> Result<Query, ParseError> {
    if q.len() > MAX_LEN {
        let msg = format!(
            "query is too long: {} bytes, the limit is {MAX_LEN}",
            q.len()
        );
        return fail(MAX_LEN, msg);
    }
    let toks = Lexer {
        src: q,
        pos: 0,
        now_ms,
        leaves: 0,
    }
    .tokens()?;
    if toks.is_empty() {
        return Ok(Query::All);
    }
    let mut p = Parser {
        toks: toks.into_iter().peekable(),
        depth: 0,
    };
    let query = p.or()?;
    match p.toks.next() {
        None => Ok(query),
        // The and/or loops consume everything except a stray ')'.
        Some(t) => fail(
            t.pos,
            "unbalanced parenthesis: this ')' has no matching '('",
        ),
    }
}

enum Tok {
    LParen,
    RParen,
    And,
    Or,
    /// Carries how the user spelled it (`NOT` or `-`) for error messages.
    Not(&'static str),
    Leaf(Query),
}

struct Token {
    tok: Tok,
    pos: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Keyword(Field),
    Text,
    Range(RangeField),
}

fn resolve(name: &str) -> Option<Kind> {
    Some(match name {
        "action" => Kind::Keyword(Field::Action),
        "table" | "table_name" => Kind::Keyword(Field::Table),
        "object" | "object_id" => Kind::Keyword(Field::Object),
        "actor" | "changed_by" => Kind::Keyword(Field::Actor),
        "key" | "changed_by_api_key" => Kind::Keyword(Field::Key),
        "role" | "actor_role" => Kind::Keyword(Field::Role),
        "ip" | "source_ip" => Kind::Keyword(Field::Ip),
        "request" | "request_id" => Kind::Keyword(Field::Request),
        "agent" | "user_agent" => Kind::Keyword(Field::Agent),
        "org" | "organization" | "organization_id" => Kind::Keyword(Field::Org),
        "text" => Kind::Text,
        "seq" | "id" => Kind::Range(RangeField::Seq),
        "time" | "timestamp" | "updated_at" => Kind::Range(RangeField::Time),
        _ => return None,
    })
}

/// Characters that end an unquoted word or value.
fn is_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    now_ms: i64,
    leaves: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn run(&mut self, stop_at_colon: bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_break(c) || (stop_at_colon && c == ':') {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.src.get(start..self.pos).unwrap_or_default()
    }

    fn tokens(mut self) -> Result<Vec<Token>, ParseError> {
        let mut out = Vec::new();
        loop {
            while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            }
            let pos = self.pos;
            let Some(c) = self.peek() else { break };
            let tok = match c {
                '(' | ')' => {
                    self.pos += 1;
                    if c == '(' { Tok::LParen } else { Tok::RParen }
                }
                '-' | '+' => {
                    self.pos += 1;
                    if !self.peek().is_some_and(|n| !n.is_whitespace() && n != ')') {
                        let msg =
                            format!("'{c}' must be directly followed by a term, e.g. {c}actor:bob");
                        return fail(pos, msg);
                    }
                    if c == '+' {
                        continue;
                    }
                    Tok::Not("'-'")
                }
                '"' => {
                    let s = self.quoted()?;
                    self.leaf(pos, phrase(s, pos)?)?
                }
                _ => {
                    let head = self.run(true);
                    if self.peek() == Some(':') {
                        self.pos += 1;
                        let q = self.field_term(head, pos)?;
                        self.leaf(pos, q)?
                    } else {
                        match head {
                            "AND" => Tok::And,
                            "OR" => Tok::Or,
                            "NOT" => Tok::Not("NOT"),
                            word => self.leaf(pos, text_word(word, pos)?)?,
                        }
                    }
                }
            };
            out.push(Token { tok, pos });
        }
        Ok(out)
    }

    fn leaf(&mut self, pos: usize, q: Query) -> Result<Tok, ParseError> {
        self.leaves += 1;
        if self.leaves > MAX_TERMS {
            return fail(pos, format!("too many terms: the limit is {MAX_TERMS}"));
        }
        Ok(Tok::Leaf(q))
    }

    /// Called with `pos` on the opening quote.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => match self.peek() {
                    Some(n @ ('"' | '\\')) => {
                        self.pos += 1;
                        out.push(n);
                    }
                    // Other backslashes are kept so Windows paths and regex-looking
                    // user agents can be pasted without doubling them.
                    _ => out.push('\\'),
                },
                _ => out.push(c),
            }
        }
        fail(open, "unbalanced quote: this '\"' is never closed")
    }

    /// Called just past the `:`; `pos` is where the field name starts.
    fn field_term(&mut self, head: &str, pos: usize) -> Result<Query, ParseError> {
        if head.is_empty() {
            return fail(pos, "':' needs a field name before it, e.g. actor:alice");
        }
        let kind = resolve(&head.to_ascii_lowercase()).ok_or_else(|| {
            let msg = format!(
                "unknown field '{head}'; known fields are {KNOWN_FIELDS} \
                 (to search for text containing ':', put it in quotes)"
            );
            err(pos, msg)
        })?;
        let vpos = self.pos;
        if let Kind::Range(rf) = kind
            && matches!(self.peek(), Some('[' | '{'))
        {
            return self.bracket_range(rf, vpos);
        }
        let (value, quoted) = match self.peek() {
            Some('"') => (self.quoted()?, true),
            Some(c) if !is_break(c) => (self.run(false).to_string(), false),
            _ => {
                let msg = format!("missing value after '{head}:', e.g. {head}:something");
                return fail(vpos, msg);
            }
        };
        match kind {
            Kind::Text if quoted => phrase(value, vpos),
            Kind::Text => text_word(&value, vpos),
            Kind::Keyword(field) => keyword(field, value, quoted, vpos),
            Kind::Range(rf) => self.compare(rf, &value, vpos),
        }
    }

    fn compare(&self, rf: RangeField, s: &str, pos: usize) -> Result<Query, ParseError> {
        let (op, rest) = [">=", "<=", ">", "<"]
            .into_iter()
            .find_map(|op| s.strip_prefix(op).map(|rest| (op, rest)))
            .unwrap_or(("", s));
        if rest.is_empty() {
            return fail(pos, format!("missing value after '{op}'"));
        }
        if rest == "*" {
            let msg = "a bare '*' is not supported here; '*' only works as an open end \
                       inside a range, e.g. time:[2026-01-01 TO *]";
            return fail(pos, msg);
        }
        let (first, last) = self.bound(rf, rest, pos + op.len())?;
        let (lo, hi) = match op {
            ">=" => (Some(first), None),
            ">" => (Some(after(last, pos)?), None),
            "<=" => (None, Some(last)),
            "<" => (None, Some(before(first, pos)?)),
            _ => (Some(first), Some(last)),
        };
        range(rf, lo, hi, pos)
    }

    /// `start` is the offset of the opening bracket.
    fn bracket_range(&mut self, rf: RangeField, start: usize) -> Result<Query, ParseError> {
        let rest = self.src.get(start..).unwrap_or_default();
        let Some(close) = rest.find([']', '}']) else {
            return fail(start, format!("unclosed range: {RANGE_FORMS}"));
        };
        let inclusive_lo = rest.starts_with('[');
        let inclusive_hi = rest.get(close..).is_some_and(|r| r.starts_with(']'));
        let inner = rest.get(1..close).unwrap_or_default();
        self.pos = start + close + 1;
        if self.peek().is_some_and(|c| !is_break(c)) {
            return fail(
                self.pos,
                "unexpected text right after the range's closing bracket",
            );
        }
        let parts: Vec<&str> = inner.split_whitespace().collect();
        let [a, "TO", b] = parts.as_slice() else {
            return fail(start, RANGE_FORMS);
        };
        // a is the first word and b the last, so find/rfind locate them exactly.
        let a_pos = start + 1 + inner.find(a).unwrap_or(0);
        let b_pos = start + 1 + inner.rfind(b).unwrap_or(0);
        let lo = match *a {
            "*" => None,
            a => {
                let (first, last) = self.bound(rf, a, a_pos)?;
                Some(if inclusive_lo {
                    first
                } else {
                    after(last, a_pos)?
                })
            }
        };
        let hi = match *b {
            "*" => None,
            b => {
                let (first, last) = self.bound(rf, b, b_pos)?;
                Some(if inclusive_hi {
                    last
                } else {
                    before(first, b_pos)?
                })
            }
        };
        range(rf, lo, hi, start)
    }

    /// The inclusive span a single value covers: one instant, or a whole day for a date.
    fn bound(&self, rf: RangeField, s: &str, pos: usize) -> Result<(i64, i64), ParseError> {
        match rf {
            RangeField::Seq => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    let msg =
                        format!("seq must be a whole number (0 or more), e.g. seq:42; got '{s}'");
                    return fail(pos, msg);
                }
                let n = s
                    .parse::<i64>()
                    .map_err(|_| err(pos, format!("seq '{s}' is too large")))?;
                Ok((n, n))
            }
            RangeField::Time => parse_time(s, self.now_ms)
                .ok_or_else(|| err(pos, format!("bad time '{s}': {TIME_FORMS}"))),
        }
    }
}

fn after(v: i64, pos: usize) -> Result<i64, ParseError> {
    v.checked_add(1)
        .ok_or_else(|| err(pos, "value is out of range"))
}

fn before(v: i64, pos: usize) -> Result<i64, ParseError> {
    v.checked_sub(1)
        .ok_or_else(|| err(pos, "value is out of range"))
}

fn range(
    field: RangeField,
    lo: Option<i64>,
    hi: Option<i64>,
    pos: usize,
) -> Result<Query, ParseError> {
    if let (Some(l), Some(h)) = (lo, hi)
        && l > h
    {
        let msg = "reversed range: its start is after its end, so nothing could match \
                   (put the earlier value first)";
        return fail(pos, msg);
    }
    Ok(Query::Range { field, lo, hi })
}

fn phrase(s: String, pos: usize) -> Result<Query, ParseError> {
    if s.trim().is_empty() {
        return fail(pos, "empty quotes: put some text between them");
    }
    Ok(Query::Phrase(s))
}

fn text_word(w: &str, pos: usize) -> Result<Query, ParseError> {
    if w.contains('*') {
        let msg = "wildcards work on field values, e.g. object:team-*; \
                   to search for a literal '*', put it in quotes";
        return fail(pos, msg);
    }
    Ok(Query::Text(w.to_string()))
}

fn keyword(field: Field, value: String, quoted: bool, pos: usize) -> Result<Query, ParseError> {
    let fold = |v: &str| {
        if field.folds_case() {
            v.to_lowercase()
        } else {
            v.to_string()
        }
    };
    if quoted {
        if value.is_empty() {
            return fail(pos, "empty value in quotes");
        }
        return Ok(Query::Term {
            field,
            value: fold(&value),
        });
    }
    if value.starts_with(['[', '{', '<', '>']) {
        let msg = "ranges only work on seq and time; \
                   to match this text literally, put the value in quotes";
        return fail(pos, msg);
    }
    let (stem, prefix) = match value.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (value.as_str(), false),
    };
    if stem.is_empty() {
        let msg = "a bare '*' (\"any value\") is not supported; put a prefix before it, \
                   e.g. object:team-*";
        return fail(pos, msg);
    }
    if stem.contains('*') {
        let msg = "'*' only works at the end of a value (a prefix match); \
                   to match a literal '*', put the value in quotes";
        return fail(pos, msg);
    }
    let value = fold(stem);
    Ok(if prefix {
        Query::Prefix { field, value }
    } else {
        Query::Term { field, value }
    })
}

fn parse_time(s: &str, now_ms: i64) -> Option<(i64, i64)> {
    if let Some(rest) = s
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("now"))
        .and(s.get(3..))
    {
        if rest.is_empty() {
            return Some((now_ms, now_ms));
        }
        let rest = rest.strip_prefix('-')?;
        let unit_ms = match rest.as_bytes().last()? {
            b's' => 1_000,
            b'm' => 60_000,
            b'h' => 3_600_000,
            b'd' => DAY_MS,
            _ => return None,
        };
        let digits = rest.get(..rest.len() - 1)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let t = now_ms.checked_sub(digits.parse::<i64>().ok()?.checked_mul(unit_ms)?)?;
        return Some((t, t));
    }
    let b = s.as_bytes();
    let is_date = b.len() == 10
        && (b.iter().enumerate())
            .all(|(i, c)| matches!((i, c), (4 | 7, b'-') | (0..4 | 5..7 | 8..10, b'0'..=b'9')));
    if is_date {
        let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u16>().ok());
        let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
        let day = u8::try_from(num(8..10)?).ok()?;
        let date = Date::from_calendar_date(i32::from(num(0..4)?), month, day).ok()?;
        let start = date
            .midnight()
            .assume_utc()
            .unix_timestamp()
            .checked_mul(1000)?;
        return Some((start, start + DAY_MS - 1));
    }
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    // Stored timestamps are whole milliseconds, so finer digits are dropped.
    let ms = i64::try_from(dt.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
    Some((ms, ms))
}

struct Parser {
    toks: std::iter::Peekable<std::vec::IntoIter<Token>>,
    depth: usize,
}

fn starts_term(t: Option<&Tok>) -> bool {
    matches!(t, Some(Tok::LParen | Tok::Not(_) | Tok::Leaf(_)))
}

fn flatten(parts: Vec<Query>, and: bool) -> Query {
    let mut out = Vec::with_capacity(parts.len());
    for q in parts {
        match q {
            Query::And(v) if and => out.extend(v),
            Query::Or(v) if !and => out.extend(v),
            q => out.push(q),
        }
    }
    match (out.len(), and) {
        (1, _) => out.pop().unwrap_or(Query::All),
        (_, true) => Query::And(out),
        (_, false) => Query::Or(out),
    }
}

impl Parser {
    fn peek(&mut self) -> Option<&Tok> {
        self.toks.peek().map(|t| &t.tok)
    }

    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let msg = format!(
                "query is nested too deeply: the limit is {MAX_DEPTH} levels of parentheses and NOT"
            );
            return fail(pos, msg);
        }
        Ok(())
    }

    /// Consumes a binary operator and checks that a term follows it.
    fn binary(&mut self, name: &str) -> Result<(), ParseError> {
        let pos = self.toks.next().map_or(0, |t| t.pos);
        if !starts_term(self.peek()) {
            return fail(
                pos,
                format!("{name} needs a term after it, e.g. a {name} b"),
            );
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.and()?];
        while matches!(self.peek(), Some(Tok::Or)) {
            self.binary("OR")?;
            parts.push(self.and()?);
        }
        Ok(flatten(parts, false))
    }

    fn and(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Tok::And) => self.binary("AND")?,
                Some(Tok::LParen | Tok::Not(_) | Tok::Leaf(_)) => {}
                _ => break,
            }
            parts.push(self.unary()?);
        }
        Ok(flatten(parts, true))
    }

    fn unary(&mut self) -> Result<Query, ParseError> {
        let Some(Token {
            tok: Tok::Not(name),
            pos,
        }) = self.toks.peek()
        else {
            return self.primary();
        };
        let (name, pos) = (*name, *pos);
        self.toks.next();
        if !starts_term(self.peek()) {
            return fail(
                pos,
                format!("{name} needs a term after it, e.g. NOT actor:bob"),
            );
        }
        self.enter(pos)?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(match inner {
            Query::Not(q) => *q,
            q => Query::Not(Box::new(q)),
        })
    }

    fn primary(&mut self) -> Result<Query, ParseError> {
        let Some(Token { tok, pos }) = self.toks.next() else {
            return fail(0, "the query ended where a term was expected");
        };
        match tok {
            Tok::Leaf(q) => Ok(q),
            Tok::LParen => {
                if matches!(self.peek(), Some(Tok::RParen)) {
                    return fail(pos, "empty parentheses: put a term inside them");
                }
                self.enter(pos)?;
                let q = self.or()?;
                self.depth -= 1;
                match self.toks.next().map(|t| t.tok) {
                    Some(Tok::RParen) => Ok(q),
                    _ => Err(err(pos, "unbalanced parenthesis: this '(' is never closed")),
                }
            }
            Tok::RParen => fail(pos, "unbalanced parenthesis: this ')' has no matching '('"),
            Tok::And => fail(pos, "AND needs a term before it, e.g. a AND b"),
            // unary() consumes every NOT, so only OR can be left here.
            _ => fail(pos, "OR needs a term before it, e.g. a OR b"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_773_576_000_000; // 2026-03-15T12:00:00Z
    const JAN2: i64 = 1_767_312_000_000; // 2026-01-02T00:00:00Z
    const JAN3: i64 = JAN2 + DAY_MS;
    const T: i64 = 1_767_323_045_000; // 2026-01-02T03:04:05Z

    fn p(q: &str) -> Result<Query, ParseError> {
        parse(q, NOW)
    }
    fn text(s: &str) -> Query {
        Query::Text(s.into())
    }
    fn term(field: Field, v: &str) -> Query {
        Query::Term {
            field,
            value: v.into(),
        }
    }
    fn time(lo: Option<i64>, hi: Option<i64>) -> Result<Query, ParseError> {
        Ok(Query::Range {
            field: RangeField::Time,
            lo,
            hi,
        })
    }
    fn seq(lo: Option<i64>, hi: Option<i64>) -> Result<Query, ParseError> {
        Ok(Query::Range {
            field: RangeField::Seq,
            lo,
            hi,
        })
    }
    /// Asserts `q` fails at `pos` with a message containing `needle`.
    fn fails(q: &str, pos: usize, needle: &str) {
        match p(q) {
            Err(e) => {
                assert_eq!(e.position, pos, "{q:?}: {e}");
                assert!(e.message.contains(needle), "{q:?}: {e}");
            }
            Ok(v) => panic!("{q:?} parsed as {v:?}"),
        }
    }

    #[test]
    fn empty_and_free_text() {
        assert_eq!(p(""), Ok(Query::All));
        assert_eq!(p(" \t\n "), Ok(Query::All));
        assert_eq!(p("Alice"), Ok(text("Alice")));
        assert_eq!(p("text:Alice"), Ok(text("Alice")));
        assert_eq!(
            p(r#""hello World""#),
            Ok(Query::Phrase("hello World".into()))
        );
        assert_eq!(p(r#"TEXT:"a b""#), Ok(Query::Phrase("a b".into())));
        assert_eq!(
            p(r#""say \"hi\" \\ c:\d""#),
            Ok(Query::Phrase(r#"say "hi" \ c:\d"#.into()))
        );
        assert_eq!(p(r#""a*b""#), Ok(Query::Phrase("a*b".into())));
        assert_eq!(
            p("héllo wörld"),
            Ok(Query::And(vec![text("héllo"), text("wörld")]))
        );
    }

    #[test]
    fn fields_and_aliases() {
        let cases = [
            ("action:Deleted", term(Field::Action, "deleted")),
            ("table_name:KEY", term(Field::Table, "key")),
            ("Object:Team-A", term(Field::Object, "Team-A")),
            ("object_id:x", term(Field::Object, "x")),
            ("changed_by:Bob", term(Field::Actor, "Bob")),
            ("key:ab12", term(Field::Key, "ab12")),
            ("changed_by_api_key:ab12", term(Field::Key, "ab12")),
            ("ROLE:Admin", term(Field::Role, "admin")),
            ("actor_role:admin", term(Field::Role, "admin")),
            ("ip:::1", term(Field::Ip, "::1")),
            ("source_ip:10.0.0.1", term(Field::Ip, "10.0.0.1")),
            ("request_id:r-1", term(Field::Request, "r-1")),
            (
                r#"agent:"curl/8.0 (x)""#,
                term(Field::Agent, "curl/8.0 (x)"),
            ),
            ("user_agent:curl", term(Field::Agent, "curl")),
            ("organization:Acme", term(Field::Org, "Acme")),
            ("organization_id:acme", term(Field::Org, "acme")),
            (r#"actor:"Alice Smith""#, term(Field::Actor, "Alice Smith")),
            (r#"object:"sk-*""#, term(Field::Object, "sk-*")),
        ];
        for (q, want) in cases {
            assert_eq!(p(q), Ok(want), "{q}");
        }
        assert_eq!(Field::Key.name(), "changed_by_api_key");
        assert_eq!(Field::Org.name(), "org");
    }

    #[test]
    fn prefixes_and_wildcard_errors() {
        let pre = |field, v: &str| {
            Ok(Query::Prefix {
                field,
                value: v.into(),
            })
        };
        assert_eq!(p("object:sk-*"), pre(Field::Object, "sk-"));
        assert_eq!(p("action:KEY.*"), pre(Field::Action, "key."));
        assert_eq!(p("ip:10.0.*"), pre(Field::Ip, "10.0."));
        fails("object:*", 7, "bare '*'");
        fails("object:a*b", 7, "only works at the end");
        fails("object:a**", 7, "only works at the end");
        fails("team-*", 0, "wildcards work on field values");
        fails("text:foo*", 5, "wildcards");
        fails("object:[a TO b]", 7, "ranges only work on seq and time");
        fails("actor:>bob", 6, "ranges only work");
    }

    #[test]
    fn seq_values() {
        assert_eq!(p("seq:42"), seq(Some(42), Some(42)));
        assert_eq!(p("id:>=10"), seq(Some(10), None));
        assert_eq!(p("seq:>10"), seq(Some(11), None));
        assert_eq!(p("seq:<10"), seq(None, Some(9)));
        assert_eq!(p("seq:<=10"), seq(None, Some(10)));
        assert_eq!(p("seq:[1 TO 5]"), seq(Some(1), Some(5)));
        assert_eq!(p("seq:{1 TO 5}"), seq(Some(2), Some(4)));
        assert_eq!(p("seq:[1 TO 5}"), seq(Some(1), Some(4)));
        assert_eq!(p("seq:{1 TO 5]"), seq(Some(2), Some(5)));
        assert_eq!(p("seq:[100 TO *]"), seq(Some(100), None));
        assert_eq!(p("seq:{* TO 100}"), seq(None, Some(99)));
        assert_eq!(p("seq:[  3   TO 3 ]"), seq(Some(3), Some(3)));
        fails("seq:-5", 4, "whole number");
        fails("seq:>-5", 5, "whole number");
        fails("seq:abc", 4, "whole number");
        fails("seq:+5", 4, "whole number");
        fails("seq:99999999999999999999", 4, "too large");
        fails("seq:>9223372036854775807", 4, "out of range");
        fails("seq:*", 4, "bare '*'");
        fails("seq:>=*", 4, "open end");
        fails("seq:>", 4, "missing value after '>'");
        fails("seq:[5 TO 1]", 4, "reversed range");
        fails("seq:{5 TO 6}", 4, "reversed range");
        fails("seq:[1 TO x]", 10, "whole number");
    }

    #[test]
    fn time_values() {
        assert_eq!(p("time:2026-01-02"), time(Some(JAN2), Some(JAN3 - 1)));
        assert_eq!(p("time:>=2026-01-02"), time(Some(JAN2), None));
        assert_eq!(p("time:>2026-01-02"), time(Some(JAN3), None));
        assert_eq!(p("time:<=2026-01-02"), time(None, Some(JAN3 - 1)));
        assert_eq!(p("time:<2026-01-02"), time(None, Some(JAN2 - 1)));
        assert_eq!(p("timestamp:2026-01-02T03:04:05Z"), time(Some(T), Some(T)));
        assert_eq!(
            p("updated_at:>2026-01-02T03:04:05Z"),
            time(Some(T + 1), None)
        );
        assert_eq!(
            p("time:<2026-01-02T04:04:05.250+01:00"),
            time(None, Some(T + 249))
        );
        assert_eq!(
            p("time:<=2026-01-02T03:04:05.1239Z"),
            time(None, Some(T + 123))
        );
        assert_eq!(
            p("time:[2026-01-02 TO 2026-01-02]"),
            time(Some(JAN2), Some(JAN3 - 1))
        );
        assert_eq!(
            p("time:[2025-12-31 TO 2026-01-02}"),
            time(Some(JAN2 - 2 * DAY_MS), Some(JAN2 - 1))
        );
        assert_eq!(p("time:{2026-01-01 TO *]"), time(Some(JAN2), None));
        assert_eq!(p("time:[* TO 2026-01-02T03:04:05Z]"), time(None, Some(T)));
        assert_eq!(p(r#"time:"2026-01-02""#), time(Some(JAN2), Some(JAN3 - 1)));
        assert_eq!(p("time:>=now-15m"), time(Some(NOW - 900_000), None));
        assert_eq!(p("time:>=NOW-2h"), time(Some(NOW - 7_200_000), None));
        assert_eq!(
            p("time:[now-7d TO now]"),
            time(Some(NOW - 7 * DAY_MS), Some(NOW))
        );
        assert_eq!(p("time:<now-30s"), time(None, Some(NOW - 30_001)));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "yesterday",
            "now-15",
            "now-5M",
            "now+1h",
            "now-",
            "2026-1-2",
        ] {
            fails(&format!("time:>={bad}"), 7, "RFC 3339");
        }
        fails("time:now-99999999999999999d", 5, "bad time");
        fails("time:[2026-01-03 TO 2026-01-02]", 5, "reversed range");
        fails("time:{2026-01-02 TO 2026-01-03}", 5, "reversed range");
    }

    #[test]
    fn range_syntax_errors() {
        fails("time:[2026-01-01 2026-02-01]", 5, "bad range syntax");
        fails("time:[2026-01-01 to 2026-02-01]", 5, "bad range syntax");
        fails("time:[2026-01-01 TO]", 5, "bad range syntax");
        fails("time:[a TO b TO c]", 5, "bad range syntax");
        fails("time:[2026-01-01 TO 2026-02-01", 5, "unclosed range");
        fails("seq:[1 TO 2]x", 12, "after the range");
        fails("time:[nope TO *]", 6, "bad time 'nope'");
    }

    #[test]
    fn booleans_and_precedence() {
        let (a, b, c) = (text("a"), text("b"), text("c"));
        let not = |q: Query| Query::Not(Box::new(q));
        let and = |v: Vec<Query>| Query::And(v);
        let or = |v: Vec<Query>| Query::Or(v);
        assert_eq!(p("a b"), Ok(and(vec![a.clone(), b.clone()])));
        assert_eq!(p("a AND b"), Ok(and(vec![a.clone(), b.clone()])));
        assert_eq!(
            p("a and b"),
            Ok(and(vec![a.clone(), text("and"), b.clone()]))
        );
        assert_eq!(
            p("a OR b c"),
            Ok(or(vec![a.clone(), and(vec![b.clone(), c.clone()])]))
        );
        assert_eq!(
            p("a b OR c"),
            Ok(or(vec![and(vec![a.clone(), b.clone()]), c.clone()]))
        );
        assert_eq!(
            p("a OR b OR c"),
            Ok(or(vec![a.clone(), b.clone(), c.clone()]))
        );
        assert_eq!(
            p("(a OR b) c"),
            Ok(and(vec![or(vec![a.clone(), b.clone()]), c.clone()]))
        );
        assert_eq!(
            p("(a b) (c)"),
            Ok(and(vec![a.clone(), b.clone(), c.clone()]))
        );
        assert_eq!(p("((a))"), Ok(a.clone()));
        assert_eq!(p("NOT a b"), Ok(and(vec![not(a.clone()), b.clone()])));
        assert_eq!(p("NOT a OR b"), Ok(or(vec![not(a.clone()), b.clone()])));
        assert_eq!(p("a -b"), Ok(and(vec![a.clone(), not(b.clone())])));
        assert_eq!(p("-actor:bob"), Ok(not(term(Field::Actor, "bob"))));
        assert_eq!(p("NOT NOT a"), Ok(a.clone()));
        assert_eq!(
            p("+a -(b OR c)"),
            Ok(and(vec![a.clone(), not(or(vec![b.clone(), c.clone()]))]))
        );
        assert_eq!(p(r#"-"x y""#), Ok(not(Query::Phrase("x y".into()))));
        assert_eq!(p("a-b"), Ok(text("a-b")));
        let words = ["a", "or", "not", "b"].map(text).to_vec();
        assert_eq!(p("a or not b"), Ok(and(words)));
        assert_eq!(p("(seq:[1 TO 5])"), seq(Some(1), Some(5)));
        assert_eq!(p("(time:2026-01-02T03:04:05Z)"), time(Some(T), Some(T)));
        assert_eq!(
            p("actor:alice)"),
            Err(err(
                11,
                "unbalanced parenthesis: this ')' has no matching '('"
            ))
        );
        assert_eq!(
            p("(actor:alice OR actor:bob) action:deleted"),
            Ok(and(vec![
                or(vec![term(Field::Actor, "alice"), term(Field::Actor, "bob")]),
                term(Field::Action, "deleted"),
            ]))
        );
    }

    #[test]
    fn structural_errors() {
        fails("a AND", 2, "AND needs a term after it");
        fails("AND a", 0, "AND needs a term before it");
        fails("a OR", 2, "OR needs a term after it");
        fails("a OR OR b", 2, "OR needs a term after it");
        fails("a AND OR b", 2, "AND needs a term after it");
        fails("(OR a)", 1, "OR needs a term before it");
        fails("NOT", 0, "NOT needs a term after it");
        fails("a NOT", 2, "NOT needs a term after it");
        fails("a - b", 2, "'-' must be directly followed");
        fails("+", 0, "'+' must be directly followed");
        fails("(a", 0, "'(' is never closed");
        fails("((a) b", 0, "'(' is never closed");
        fails("a)", 1, "')' has no matching '('");
        fails("()", 0, "empty parentheses");
        fails(r#"actor:"bob"#, 6, "unbalanced quote");
        fails(r#"a "b"#, 2, "unbalanced quote");
        fails(r#""""#, 0, "empty quotes");
        fails(
            "color:red",
            0,
            "unknown field 'color'; known fields are action, table",
        );
        fails("http://example.com", 0, "put it in quotes");
        fails(":x", 0, "needs a field name");
        fails("actor:", 6, "missing value after 'actor:'");
        fails("actor: bob", 6, "missing value");
        fails("(actor:)", 7, "missing value");
    }

    #[test]
    fn limits() {
        let long = "a ".repeat(2049);
        fails(&long, MAX_LEN, "too long");
        let deep = format!("{}a{}", "(".repeat(33), ")".repeat(33));
        fails(&deep, 32, "nested too deeply");
        assert!(p(&format!("{}a{}", "(".repeat(32), ")".repeat(32))).is_ok());
        fails(&format!("{}a", "NOT ".repeat(33)), 128, "nested too deeply");
        let many = vec!["x"; 257].join(" ");
        fails(&many, 512, "too many terms");
        assert!(p(&vec!["x"; 256].join(" ")).is_ok());
        assert_eq!(p("-x"), Ok(Query::Not(Box::new(text("x")))));
        assert_eq!(p("NOT x"), Ok(Query::Not(Box::new(text("x")))));
        assert!(p(&"x".repeat(MAX_LEN)).is_ok());
    }

    /// The worked examples in docs/audit-query.md.
    #[test]
    fn documented_examples_parse() {
        let examples = [
            "table:key action:deleted actor:alice time:>=now-7d",
            "table:key (action:blocked OR action:unblocked) time:>=now-24h",
            "actor:master_key time:[2026-01-01 TO 2026-01-31]",
            "org:acme time:[2026-02-03T13:00:00Z TO 2026-02-03T18:00:00Z}",
            "table:user -role:proxy_admin",
            "actor:scim:* time:>=2026-03-15",
            "action:deleted (actor:system OR actor:key:*)",
            r#"table:key "gpt-4o""#,
            "agent:curl/* OR agent:python-requests/*",
            "table:budget time:2026-03-02 -action:updated",
            "actor:alice -ip:10.20.*",
        ];
        for q in examples {
            assert!(p(q).is_ok(), "{q}: {:?}", p(q));
        }
    }

    #[test]
    fn display() {
        let e = err(4, "boom");
        assert_eq!(e.to_string(), "at character 4: boom");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn never_panics() {
        let tricky = [
            r#"time:[2026-01-01T00:00:00Z TO now-7d} -(actor:"a\"b" OR object:sk-*) é"#,
            r#"seq:{1 TO *] NOT (a AND (b OR "c\\" ) ) +x -y:z ip:::1 ((("#,
            "time:>=now-15m ☃:x \"\u{1F600}\" agent:\"\\\" ) ] } ] [ { < > <= >=",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let alphabet: Vec<char> = "ab:*\"\\()[]{}<>=-+ TONRDseqtimeactor0123456789é☃"
            .chars()
            .collect();
        let mut inputs: Vec<String> = Vec::new();
        for s in tricky {
            for (i, _) in s.char_indices() {
                inputs.push(s[..i].to_string());
                inputs.push(s[i..].to_string());
            }
        }
        for _ in 0..3000 {
            let len = next() % 40;
            inputs.push(
                (0..len)
                    .map(|_| alphabet[next() % alphabet.len()])
                    .collect(),
            );
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            inputs.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        for q in &inputs {
            for now in [NOW, 0, i64::MIN, i64::MAX] {
                if let Err(e) = parse(q, now) {
                    assert!(e.position <= q.len(), "{q:?}: {e}");
                }
            }
        }
    }
}
