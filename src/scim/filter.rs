//! SCIM filter expressions (RFC 7644 §3.4.2.2): parsing, and evaluation against a resource held
//! as JSON.
//!
//! Parsing is schema-free; everything that needs to know the attributes (unknown names,
//! case-exactness) goes through [`Attributes`] at evaluation time, so one parsed filter can be
//! checked once ([`check`]) and evaluated against many resources.
//!
//! Leniencies beyond the RFC's ABNF, all unambiguous:
//! - whitespace may be any run of ASCII/Unicode whitespace, and is optional next to `(`, `)`,
//!   `[`, `]` and string literals;
//! - `true`, `false` and `null` are accepted in any case, like the operators;
//! - an attribute name may start with `$` (RFC 7643 names `$ref`, which the ABNF cannot spell).
//!
//! Evaluation semantics where the RFC leaves room (see also docs/scim.md):
//! - a multi-valued attribute matches when any of its values matches, except `ne`, which is the
//!   negation of `eq` (so `emails.type ne "work"` means "no work email");
//! - a complex attribute compared without a sub-attribute (`emails co "x"`) compares its `value`
//!   sub-attribute; `emails eq "x"`, `emails.value eq "x"` and `emails[value eq "x"]` agree;
//! - `eq null` means "not present" and `ne null` means "present" (RFC 7643 §2.5 treats
//!   unassigned, null and empty as the same state);
//! - strings that both parse as RFC 3339 date-times compare chronologically, others by code point
//!   (after lower-casing when the attribute is not caseExact);
//! - a value of another JSON type than the literal never matches (`eq` false, `ne` true), but
//!   `co`/`sw`/`ew` or an ordering on a boolean, and `co`/`sw`/`ew` on a number, are errors
//!   (RFC 7644 §3.4.2.2 asks for 400 invalidFilter there).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

/// Longest filter text accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of `( )`, `not ( )` and `[ ]` accepted.
pub const MAX_DEPTH: usize = 32;

/// `[URI ":"] ATTRNAME ["." subAttr]`, spelled as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix, as written (core or extension).
    pub schema: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(Number),
    Str(String),
}

impl CompValue {
    /// The literal as a JSON value.
    pub fn to_json(&self) -> Value {
        match self {
            CompValue::Null => Value::Null,
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Str(s) => Value::String(s.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn from_keyword(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    pub fn keyword(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Co => "co",
            Op::Sw => "sw",
            Op::Ew => "ew",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    fn is_substring(self) -> bool {
        matches!(self, Op::Co | Op::Sw | Op::Ew)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: Op,
        value: CompValue,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: true when some value of the (multi-valued) attribute satisfies `filter`,
    /// whose paths are single attribute names relative to that value.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// A filter that cannot be parsed or evaluated: SCIM answers 400 with scimType `invalidFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
}

impl FilterError {
    fn new(message: impl Into<String>) -> FilterError {
        FilterError {
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilterError {}

/// What the evaluator needs to know about attributes.
pub trait Attributes {
    /// Whether string comparisons on the attribute are case-exact, resolved by (schema URN if
    /// any, attribute, sub-attribute), all as the client spelled them (so compare them
    /// case-insensitively). `None` means the attribute is unknown, which makes the filter fail.
    ///
    /// `schema` may be a core schema URN (`urn:ietf:params:scim:schemas:core:2.0:User`) for a
    /// top-level attribute. `sub` is `None` for the attribute itself, including complex ones (answer
    /// `Some(_)` for every known attribute), and must be answered `None` for a sub-attribute the
    /// attribute does not have, in particular for any `sub` of a simple attribute.
    fn case_exact(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> Option<bool>;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Parses a filter (the `filter` query parameter, already percent-decoded).
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    parse_with(text, false)
}

/// Parses the inside of `attr[...]` as written in a PATCH path: attribute paths are relative to
/// the values of the multi-valued attribute.
pub(crate) fn parse_value_filter(text: &str) -> Result<Filter, FilterError> {
    parse_with(text, true)
}

fn parse_with(text: &str, relative: bool) -> Result<Filter, FilterError> {
    if text.len() > MAX_FILTER_LEN {
        return Err(FilterError::new(format!(
            "filter is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
            text.len()
        )));
    }
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(FilterError::new("filter is empty"));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
    };
    let filter = parser.parse_or(relative)?;
    if let Some(token) = parser.peek() {
        let message = match &token.kind {
            Kind::RParen => "unbalanced ')'".to_string(),
            Kind::RBracket => "unbalanced ']'".to_string(),
            _ => format!(
                "expected 'and', 'or' or the end of the filter, found {}",
                token.describe()
            ),
        };
        return Err(FilterError::new(format!(
            "{message} at position {}",
            token.pos + 1
        )));
    }
    Ok(filter)
}

#[derive(Debug)]
enum Kind<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Word(&'a str),
    Str(String),
}

#[derive(Debug)]
struct Token<'a> {
    kind: Kind<'a>,
    /// Byte offset in the filter text.
    pos: usize,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::LParen => "'('".to_string(),
            Kind::RParen => "')'".to_string(),
            Kind::LBracket => "'['".to_string(),
            Kind::RBracket => "']'".to_string(),
            Kind::Word(w) => format!("'{}'", shorten(w)),
            Kind::Str(s) => format!("string \"{}\"", shorten(s)),
        }
    }

    fn word(&self) -> Option<&str> {
        match self.kind {
            Kind::Word(w) => Some(w),
            _ => None,
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        self.word().is_some_and(|w| w.eq_ignore_ascii_case(keyword))
    }
}

/// Keeps error messages readable when a client sends something huge.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

fn lex(text: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        let kind = match c {
            c if c.is_whitespace() => {
                chars.next();
                continue;
            }
            '(' => Kind::LParen,
            ')' => Kind::RParen,
            '[' => Kind::LBracket,
            ']' => Kind::RBracket,
            '"' => {
                let end = string_end(text, pos)?;
                while chars.peek().is_some_and(|&(p, _)| p <= end) {
                    chars.next();
                }
                let literal = text.get(pos..=end).unwrap_or_default();
                let s: String = serde_json::from_str(literal).map_err(|e| {
                    FilterError::new(format!(
                        "invalid string literal at position {}: {e}",
                        pos + 1
                    ))
                })?;
                tokens.push(Token {
                    kind: Kind::Str(s),
                    pos,
                });
                continue;
            }
            _ => {
                let mut end = text.len();
                while let Some(&(p, c)) = chars.peek() {
                    if is_delimiter(c) {
                        end = p;
                        break;
                    }
                    chars.next();
                }
                tokens.push(Token {
                    kind: Kind::Word(text.get(pos..end).unwrap_or_default()),
                    pos,
                });
                continue;
            }
        };
        chars.next();
        tokens.push(Token { kind, pos });
    }
    Ok(tokens)
}

/// Byte offset of the quote closing the string literal that opens at `start`.
fn string_end(text: &str, start: usize) -> Result<usize, FilterError> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Ok(i),
            _ => i += 1,
        }
    }
    Err(FilterError::new(format!(
        "unterminated string literal starting at position {}",
        start + 1
    )))
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.next)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Token<'a>> {
        self.tokens.get(self.next + ahead)
    }

    fn bump(&mut self) -> Option<&Token<'a>> {
        let token = self.tokens.get(self.next);
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn here(&self) -> String {
        match self.peek() {
            Some(token) => format!("position {}", token.pos + 1),
            None => "the end of the filter".to_string(),
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(token) => token.describe(),
            None => "the end of the filter".to_string(),
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(format!(
                "filter nests more than {MAX_DEPTH} levels of parentheses and brackets"
            )));
        }
        Ok(())
    }

    fn expect_close(&mut self, close: &str, opened_at: usize) -> Result<(), FilterError> {
        let ok = match self.peek().map(|t| &t.kind) {
            Some(Kind::RParen) => close == ")",
            Some(Kind::RBracket) => close == "]",
            _ => false,
        };
        if !ok {
            return Err(FilterError::new(format!(
                "expected '{close}' closing the one at position {}, found {} at {}",
                opened_at + 1,
                self.found(),
                self.here()
            )));
        }
        self.next += 1;
        self.depth -= 1;
        Ok(())
    }

    fn parse_or(&mut self, relative: bool) -> Result<Filter, FilterError> {
        let mut left = self.parse_and(relative)?;
        while self.peek().is_some_and(|t| t.is_keyword("or")) {
            self.next += 1;
            let right = self.parse_and(relative)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self, relative: bool) -> Result<Filter, FilterError> {
        let mut left = self.parse_unary(relative)?;
        while self.peek().is_some_and(|t| t.is_keyword("and")) {
            self.next += 1;
            let right = self.parse_unary(relative)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self, relative: bool) -> Result<Filter, FilterError> {
        let Some(token) = self.peek() else {
            return Err(FilterError::new(
                "filter ends where an expression was expected",
            ));
        };
        let pos = token.pos;
        match &token.kind {
            Kind::LParen => {
                self.next += 1;
                self.enter()?;
                let inner = self.parse_or(relative)?;
                self.expect_close(")", pos)?;
                Ok(inner)
            }
            // "not" is only an operator in front of "(": an attribute may be called "not".
            Kind::Word(w)
                if w.eq_ignore_ascii_case("not")
                    && matches!(self.peek_at(1).map(|t| &t.kind), Some(Kind::LParen)) =>
            {
                let open = self.peek_at(1).map_or(pos, |t| t.pos);
                self.next += 2;
                self.enter()?;
                let inner = self.parse_or(relative)?;
                self.expect_close(")", open)?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Kind::Word(w) => {
                let word = *w;
                self.next += 1;
                self.parse_attr_expr(word, pos, relative)
            }
            _ => Err(FilterError::new(format!(
                "expected an attribute, '(' or 'not (', found {} at position {}",
                token.describe(),
                pos + 1
            ))),
        }
    }

    fn parse_attr_expr(
        &mut self,
        word: &str,
        pos: usize,
        relative: bool,
    ) -> Result<Filter, FilterError> {
        let path = parse_attr_path(word).map_err(|m| {
            FilterError::new(format!("{m} (attribute path at position {})", pos + 1))
        })?;
        if relative && (path.schema.is_some() || path.sub.is_some()) {
            return Err(FilterError::new(format!(
                "inside '[ ]' name a sub-attribute of the filtered attribute alone (like 'type'), \
                 not '{}' (position {})",
                shorten(word),
                pos + 1
            )));
        }
        let Some(token) = self.bump() else {
            return Err(FilterError::new(format!(
                "expected an operator after '{}', found the end of the filter",
                shorten(word)
            )));
        };
        let op_pos = token.pos;
        match &token.kind {
            Kind::LBracket => {
                if relative {
                    return Err(FilterError::new(format!(
                        "value filters cannot be nested ('[' at position {})",
                        op_pos + 1
                    )));
                }
                if path.sub.is_some() {
                    return Err(FilterError::new(format!(
                        "'[' at position {} must follow a multi-valued attribute, not the \
                         sub-attribute '{}'",
                        op_pos + 1,
                        shorten(word)
                    )));
                }
                self.enter()?;
                let inner = self.parse_or(true)?;
                self.expect_close("]", op_pos)?;
                if let Some(next) = self.peek()
                    && next.word().is_some_and(|w| w.starts_with('.'))
                {
                    return Err(FilterError::new(format!(
                        "a sub-attribute after ']' (position {}) is only allowed in PATCH paths, \
                         not in filters; write the condition inside the brackets",
                        next.pos + 1
                    )));
                }
                Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(inner),
                })
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("pr") => Ok(Filter::Present(path)),
            Kind::Word(w) => {
                let keyword = *w;
                let Some(op) = Op::from_keyword(keyword) else {
                    let hint = if word.eq_ignore_ascii_case("not") {
                        "; 'not' must be followed by '('"
                    } else {
                        ""
                    };
                    return Err(FilterError::new(format!(
                        "unknown operator '{}' at position {} (expected eq, ne, co, sw, ew, gt, \
                         ge, lt, le or pr){hint}",
                        shorten(keyword),
                        op_pos + 1
                    )));
                };
                let value = self.parse_comp_value(op)?;
                Ok(Filter::Compare { path, op, value })
            }
            _ => Err(FilterError::new(format!(
                "expected an operator after '{}', found {} at position {}",
                shorten(word),
                token.describe(),
                op_pos + 1
            ))),
        }
    }

    fn parse_comp_value(&mut self, op: Op) -> Result<CompValue, FilterError> {
        let keyword = op.keyword();
        let Some(token) = self.bump() else {
            return Err(FilterError::new(format!(
                "expected a value after '{keyword}', found the end of the filter"
            )));
        };
        let pos = token.pos + 1;
        let value = match &token.kind {
            Kind::Str(s) => CompValue::Str(s.clone()),
            Kind::Word(w) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Kind::Word(w) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Kind::Word(w) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            Kind::Word(w) => match w.parse::<Number>() {
                Ok(n) => CompValue::Number(n),
                Err(_) => {
                    return Err(FilterError::new(format!(
                        "expected a value after '{keyword}' (a \"quoted string\", number, true, \
                         false or null), found '{}' at position {pos}",
                        shorten(w)
                    )));
                }
            },
            _ => {
                return Err(FilterError::new(format!(
                    "expected a value after '{keyword}', found {} at position {pos}",
                    token.describe()
                )));
            }
        };
        match (&value, op) {
            (CompValue::Str(_), _) => {}
            (_, op) if op.is_substring() => {
                return Err(FilterError::new(format!(
                    "'{keyword}' needs a string value (position {pos})"
                )));
            }
            (CompValue::Null, Op::Eq | Op::Ne) => {}
            (CompValue::Null, _) => {
                return Err(FilterError::new(format!(
                    "null can only be compared with eq or ne (position {pos})"
                )));
            }
            (CompValue::Bool(_), op) if op.is_ordering() => {
                return Err(FilterError::new(format!(
                    "booleans cannot be ordered with '{keyword}' (position {pos})"
                )));
            }
            _ => {}
        }
        Ok(value)
    }
}

/// Parses `[URI ":"] ATTRNAME ["." subAttr]`. The URN is everything up to the last `:`.
pub(crate) fn parse_attr_path(word: &str) -> Result<AttrPath, String> {
    if word.is_empty() {
        return Err("empty attribute path".to_string());
    }
    if let Some(c) = word.chars().find(|&c| is_delimiter(c)) {
        return Err(format!("attribute path '{}' contains {c:?}", shorten(word)));
    }
    let (schema, rest) = match word.rfind(':') {
        Some(colon) => {
            let urn = word.get(..colon).unwrap_or_default();
            let is_urn =
                urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && urn.len() > 4;
            if !is_urn {
                return Err(format!(
                    "'{}' is not an attribute path: only a schema URN (urn:...) may precede ':'",
                    shorten(word)
                ));
            }
            (
                Some(urn.to_string()),
                word.get(colon + 1..).unwrap_or_default(),
            )
        }
        None => (None, word),
    };
    let mut parts = rest.split('.');
    let attr = parts.next().unwrap_or_default();
    let sub = parts.next();
    if parts.next().is_some() {
        return Err(format!(
            "'{}' has more than one '.': SCIM attributes have at most one sub-attribute level",
            shorten(word)
        ));
    }
    check_name(attr, word)?;
    if let Some(sub) = sub {
        check_name(sub, word)?;
    }
    Ok(AttrPath {
        schema,
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

fn check_name(name: &str, word: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!(
            "'{}' is not a valid attribute name in '{}' (a letter, then letters, digits, '-' or \
             '_')",
            shorten(name),
            shorten(word)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Index hint

/// Recognises an equality on a string that an index can answer, so a caller can narrow the
/// candidates before running [`evaluate`] on them (it must still evaluate: the other parts of the
/// filter are not reflected here). Returns the path and the string:
///
/// - `userName eq "x"` → (`userName`, "x"); any attribute, sub-attribute or URN prefix is
///   returned as written (`name.familyName`, `urn:…:User:employeeNumber`, `emails.value`);
/// - `emails[value eq "x"]` → (`emails` with `sub: None`, "x"): a multi-valued complex attribute
///   named without a sub-attribute stands for its `value`, exactly as `emails eq "x"` does, so
///   treat (`emails`, None) like (`emails`, Some("value"));
/// - `A and B` (any nesting of `and`, also inside `[ ]` for the `value` form) → the first
///   conjunct, left to right, that has one of the shapes above;
/// - anything else (`or`, `not`, other operators, non-string values, `emails[type eq "work"]`)
///   → `None`.
///
/// The string is returned as written: an index over a case-insensitive attribute must fold case.
pub fn simple_eq(f: &Filter) -> Option<(&AttrPath, &str)> {
    match f {
        Filter::Compare {
            path,
            op: Op::Eq,
            value: CompValue::Str(s),
        } => Some((path, s.as_str())),
        Filter::And(a, b) => simple_eq(a).or_else(|| simple_eq(b)),
        Filter::ValuePath { path, filter } => value_eq(filter).map(|s| (path, s)),
        _ => None,
    }
}

fn value_eq(f: &Filter) -> Option<&str> {
    match f {
        Filter::Compare {
            path,
            op: Op::Eq,
            value: CompValue::Str(s),
        } if path.schema.is_none()
            && path.sub.is_none()
            && path.attr.eq_ignore_ascii_case("value") =>
        {
            Some(s.as_str())
        }
        Filter::And(a, b) => value_eq(a).or_else(|| value_eq(b)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// Checks every attribute the filter names against `attrs`, without a resource. Run it before a
/// search so that an unknown attribute fails the request even when there is nothing to match.
pub fn check(f: &Filter, attrs: &dyn Attributes) -> Result<(), FilterError> {
    match f {
        Filter::Compare { path, .. } | Filter::Present(path) => check_path(path, attrs),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check(a, attrs)?;
            check(b, attrs)
        }
        Filter::Not(inner) => check(inner, attrs),
        Filter::ValuePath { path, filter } => {
            if path.sub.is_some() {
                return Err(FilterError::new(format!(
                    "a value filter must follow a multi-valued attribute, not the sub-attribute \
                     '{path}'"
                )));
            }
            check_path(path, attrs)?;
            check_relative(filter, path, attrs)
        }
    }
}

fn check_path(path: &AttrPath, attrs: &dyn Attributes) -> Result<(), FilterError> {
    let schema = path.schema.as_deref();
    if attrs.case_exact(schema, &path.attr, None).is_none() {
        return Err(FilterError::new(format!("unknown attribute '{path}'")));
    }
    if let Some(sub) = &path.sub
        && attrs.case_exact(schema, &path.attr, Some(sub)).is_none()
    {
        return Err(FilterError::new(format!(
            "unknown attribute '{path}': '{}' has no sub-attribute '{sub}'",
            path.attr
        )));
    }
    Ok(())
}

/// Checks a filter whose paths are relative to the values of `parent`.
pub(crate) fn check_relative(
    f: &Filter,
    parent: &AttrPath,
    attrs: &dyn Attributes,
) -> Result<(), FilterError> {
    match f {
        Filter::Compare { path, .. } | Filter::Present(path) => {
            if path.schema.is_some() || path.sub.is_some() {
                return Err(FilterError::new(format!(
                    "inside '{}[ ]' name a sub-attribute alone, not '{path}'",
                    parent.attr
                )));
            }
            let schema = parent.schema.as_deref();
            let known = attrs
                .case_exact(schema, &parent.attr, Some(&path.attr))
                .is_some()
                // For a multi-valued simple attribute, "value" is the value itself.
                || path.attr.eq_ignore_ascii_case("value");
            if !known {
                return Err(FilterError::new(format!(
                    "unknown attribute '{}.{}'",
                    parent.attr, path.attr
                )));
            }
            Ok(())
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_relative(a, parent, attrs)?;
            check_relative(b, parent, attrs)
        }
        Filter::Not(inner) => check_relative(inner, parent, attrs),
        Filter::ValuePath { .. } => Err(FilterError::new("value filters cannot be nested")),
    }
}

/// Whether `resource` matches `f`. Fails on attributes `attrs` does not know and on comparisons
/// the RFC calls invalid (ordering booleans, substring operators on non-strings).
pub fn evaluate(f: &Filter, resource: &Value, attrs: &dyn Attributes) -> Result<bool, FilterError> {
    check(f, attrs)?;
    eval(f, Scope::Resource(resource), attrs)
}

/// Whether one value of the multi-valued attribute `parent` matches the relative filter `f`.
pub(crate) fn evaluate_value(
    f: &Filter,
    parent: &AttrPath,
    value: &Value,
    attrs: &dyn Attributes,
) -> Result<bool, FilterError> {
    check_relative(f, parent, attrs)?;
    eval(f, Scope::Value { parent, value }, attrs)
}

#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(&'a Value),
    /// One value of a multi-valued attribute, inside `parent[...]`.
    Value {
        parent: &'a AttrPath,
        value: &'a Value,
    },
}

fn eval(f: &Filter, scope: Scope<'_>, attrs: &dyn Attributes) -> Result<bool, FilterError> {
    match f {
        Filter::And(a, b) => Ok(eval(a, scope, attrs)? && eval(b, scope, attrs)?),
        Filter::Or(a, b) => Ok(eval(a, scope, attrs)? || eval(b, scope, attrs)?),
        Filter::Not(inner) => Ok(!eval(inner, scope, attrs)?),
        Filter::Present(path) => Ok(resolve(scope, path).present(path)),
        Filter::Compare { path, op, value } => {
            let target = resolve(scope, path);
            if let CompValue::Null = value {
                let present = target.present(path);
                return Ok(if *op == Op::Ne { present } else { !present });
            }
            let case_exact = case_exact_for(scope, path, attrs);
            let (test, negate) = match op {
                Op::Ne => (Op::Eq, true),
                other => (*other, false),
            };
            let mut matched = false;
            for leaf in &target.leaves {
                if compare(test, leaf, value, case_exact, path)? {
                    matched = true;
                    break;
                }
            }
            Ok(matched != negate)
        }
        Filter::ValuePath { path, filter } => {
            let Scope::Resource(resource) = scope else {
                return Err(FilterError::new("value filters cannot be nested"));
            };
            let Some(raw) = attribute(resource, path) else {
                return Ok(false);
            };
            let values: &[Value] = match raw {
                Value::Array(items) => items,
                other => std::slice::from_ref(other),
            };
            for value in values {
                if eval(
                    filter,
                    Scope::Value {
                        parent: path,
                        value,
                    },
                    attrs,
                )? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

fn case_exact_for(scope: Scope<'_>, path: &AttrPath, attrs: &dyn Attributes) -> bool {
    match scope {
        Scope::Resource(_) => {
            let schema = path.schema.as_deref();
            match &path.sub {
                Some(sub) => attrs.case_exact(schema, &path.attr, Some(sub)),
                // A complex attribute without a sub-attribute compares its "value".
                None => attrs
                    .case_exact(schema, &path.attr, Some("value"))
                    .or_else(|| attrs.case_exact(schema, &path.attr, None)),
            }
        }
        Scope::Value { parent, .. } => {
            let schema = parent.schema.as_deref();
            attrs
                .case_exact(schema, &parent.attr, Some(&path.attr))
                .or_else(|| attrs.case_exact(schema, &parent.attr, None))
        }
    }
    .unwrap_or(false)
}

struct Target<'a> {
    /// The attribute as stored (before expanding multi-valued and complex values).
    raw: Option<&'a Value>,
    /// The simple values the comparison applies to.
    leaves: Vec<&'a Value>,
}

impl Target<'_> {
    fn present(&self, path: &AttrPath) -> bool {
        match (self.raw, &path.sub) {
            (Some(raw), None) => is_present(raw),
            _ => self.leaves.iter().any(|v| is_present(v)),
        }
    }
}

fn resolve<'a>(scope: Scope<'a>, path: &AttrPath) -> Target<'a> {
    match scope {
        Scope::Resource(resource) => {
            let raw = attribute(resource, path);
            let mut leaves = Vec::new();
            if let Some(raw) = raw {
                let sub = path.sub.as_deref().unwrap_or("value");
                let items: &[Value] = match raw {
                    Value::Array(items) => items,
                    other => std::slice::from_ref(other),
                };
                for item in items {
                    match item {
                        Value::Object(map) => {
                            if let Some(v) = get_ci(map, sub) {
                                push_leaves(v, &mut leaves);
                            }
                        }
                        // A sub-attribute of a simple value does not exist.
                        other if path.sub.is_none() => leaves.push(other),
                        _ => {}
                    }
                }
            }
            Target { raw, leaves }
        }
        Scope::Value { value, .. } => {
            let raw = match value {
                Value::Object(map) => get_ci(map, &path.attr),
                other if path.attr.eq_ignore_ascii_case("value") => Some(other),
                _ => None,
            };
            let mut leaves = Vec::new();
            if let Some(raw) = raw {
                push_leaves(raw, &mut leaves);
            }
            Target { raw, leaves }
        }
    }
}

fn push_leaves<'a>(v: &'a Value, leaves: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => leaves.extend(items.iter()),
        other => leaves.push(other),
    }
}

/// Whether `urn` names a core schema, whose attributes live at the top level of a resource.
pub fn is_core_schema(urn: &str) -> bool {
    const CORE: &str = "urn:ietf:params:scim:schemas:core:";
    urn.get(..CORE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(CORE))
}

/// The attribute `path` names (ignoring its sub-attribute) in `resource`, if set.
fn attribute<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let top = resource.as_object()?;
    let container = match path.schema.as_deref() {
        None => top,
        Some(urn) => match get_ci(top, urn) {
            Some(Value::Object(ext)) => ext,
            Some(_) => return None,
            None if is_core_schema(urn) => top,
            None => return None,
        },
    };
    get_ci(container, &path.attr).filter(|v| !v.is_null())
}

/// Looks a key up the way SCIM names attributes: exact spelling first, then ignoring case.
pub(crate) fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// RFC 7644 `pr`: set, and neither null, "", an empty array nor a complex value without any
/// present sub-attribute.
pub(crate) fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => map.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare(
    op: Op,
    leaf: &Value,
    value: &CompValue,
    case_exact: bool,
    path: &AttrPath,
) -> Result<bool, FilterError> {
    match (leaf, value) {
        (Value::String(have), CompValue::Str(want)) => Ok(compare_str(op, have, want, case_exact)),
        (Value::Number(have), CompValue::Number(want)) => {
            Ok(cmp_numbers(have, want).is_some_and(|ord| ordering_matches(op, ord)))
        }
        (Value::Bool(have), CompValue::Bool(want)) => Ok(op == Op::Eq && have == want),
        (Value::Bool(_), _) if op.is_ordering() || op.is_substring() => {
            Err(FilterError::new(format!(
                "'{path}' is a boolean: only eq, ne and pr apply to it, not '{}'",
                op.keyword()
            )))
        }
        (Value::Number(_), _) if op.is_substring() => Err(FilterError::new(format!(
            "'{path}' is a number: '{}' applies to strings only",
            op.keyword()
        ))),
        _ => Ok(false),
    }
}

fn compare_str(op: Op, have: &str, want: &str, case_exact: bool) -> bool {
    if matches!(op, Op::Eq | Op::Gt | Op::Ge | Op::Lt | Op::Le)
        && let Some(ord) = cmp_datetimes(have, want)
    {
        return ordering_matches(op, ord);
    }
    let (have, want) = if case_exact {
        (have.to_string(), want.to_string())
    } else {
        (have.to_lowercase(), want.to_lowercase())
    };
    match op {
        Op::Co => have.contains(&want),
        Op::Sw => have.starts_with(&want),
        Op::Ew => have.ends_with(&want),
        _ => ordering_matches(op, have.cmp(&want)),
    }
}

fn ordering_matches(op: Op, ord: Ordering) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

/// Chronological order when both strings are RFC 3339 date-times: "…34Z" and "…34.882Z" are
/// out of order as text.
fn cmp_datetimes(a: &str, b: &str) -> Option<Ordering> {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    fn looks_like_date(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() >= 20
            && b.get(..4).is_some_and(|y| y.iter().all(u8::is_ascii_digit))
            && b.get(4) == Some(&b'-')
    }
    if !looks_like_date(a) || !looks_like_date(b) {
        return None;
    }
    let a = OffsetDateTime::parse(a, &Rfc3339).ok()?;
    let b = OffsetDateTime::parse(b, &Rfc3339).ok()?;
    Some(a.cmp(&b))
}

fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::patch::test_schema::{ENTERPRISE, TEST_EXT, USER, USERS, bjensen};
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Filter {
        match parse(text) {
            Ok(f) => f,
            Err(e) => panic!("{text}: {}", e.message),
        }
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(f) => panic!("{text} parsed as {f:?}"),
            Err(e) => e.message,
        }
    }

    fn eval_on(text: &str, resource: &Value) -> bool {
        match evaluate(&p(text), resource, &USERS) {
            Ok(b) => b,
            Err(e) => panic!("{text}: {}", e.message),
        }
    }

    fn eval(text: &str) -> bool {
        eval_on(text, &bjensen())
    }

    fn eval_err(text: &str) -> String {
        match evaluate(&p(text), &bjensen(), &USERS) {
            Ok(b) => panic!("{text} evaluated to {b}"),
            Err(e) => e.message,
        }
    }

    fn path(attr: &str) -> AttrPath {
        AttrPath {
            schema: None,
            attr: attr.to_string(),
            sub: None,
        }
    }

    fn sub_path(attr: &str, sub: &str) -> AttrPath {
        AttrPath {
            schema: None,
            attr: attr.to_string(),
            sub: Some(sub.to_string()),
        }
    }

    fn cmp(path: AttrPath, op: Op, value: CompValue) -> Filter {
        Filter::Compare { path, op, value }
    }

    fn s(v: &str) -> CompValue {
        CompValue::Str(v.to_string())
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    // RFC 7644 §3.4.2.2, the examples after Table 3, each against RFC 7643 §8.2's bjensen.
    #[test]
    fn rfc_examples_parse_and_evaluate() {
        let cases: &[(&str, bool)] = &[
            (r#"userName eq "bjensen""#, true),
            (r#"name.familyName co "O'Malley""#, false),
            (r#"userName sw "J""#, false),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
                false,
            ),
            ("title pr", true),
            (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
            (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true),
            (r#"title pr and userType eq "Employee""#, true),
            (r#"title pr or userType eq "Intern""#, true),
            (
                r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
                true,
            ),
            (
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
                true,
            ),
            (
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
                false,
            ),
            (
                r#"userType eq "Employee" and (emails.type eq "work")"#,
                true,
            ),
            (
                r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
                true,
            ),
            // §3.4.2.2: "the following two expressions will evaluate to the same logical value".
            (r#"userName Eq "john""#, false),
            (r#"Username eq "john""#, false),
            (r#"userName Eq "BJensen""#, true),
            (r#"Username eq "BJENSEN""#, true),
        ];
        for (text, expected) in cases {
            assert_eq!(eval(text), *expected, "{text}");
        }
    }

    #[test]
    fn rfc_examples_have_the_expected_shape() {
        assert_eq!(
            p(r#"userName eq "bjensen""#),
            cmp(path("userName"), Op::Eq, s("bjensen"))
        );
        assert_eq!(
            p(r#"name.familyName co "O'Malley""#),
            cmp(sub_path("name", "familyName"), Op::Co, s("O'Malley"))
        );
        assert_eq!(
            p(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#),
            cmp(
                AttrPath {
                    schema: Some(USER.to_string()),
                    attr: "userName".into(),
                    sub: None
                },
                Op::Sw,
                s("J")
            )
        );
        assert_eq!(p("title pr"), Filter::Present(path("title")));
        assert_eq!(
            p(r#"emails[type eq "work" and value co "@example.com"]"#),
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(and(
                    cmp(path("type"), Op::Eq, s("work")),
                    cmp(path("value"), Op::Co, s("@example.com"))
                )),
            }
        );
        assert_eq!(
            p(
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#
            ),
            and(
                cmp(path("userType"), Op::Ne, s("Employee")),
                Filter::Not(Box::new(or(
                    cmp(path("emails"), Op::Co, s("example.com")),
                    cmp(sub_path("emails", "value"), Op::Co, s("example.org"))
                )))
            )
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let (a, b, c) = (
            Filter::Present(path("a")),
            Filter::Present(path("b")),
            Filter::Present(path("c")),
        );
        assert_eq!(
            p("a pr or b pr and c pr"),
            or(a.clone(), and(b.clone(), c.clone()))
        );
        assert_eq!(
            p("a pr and b pr or c pr"),
            or(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            p("(a pr or b pr) and c pr"),
            and(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            p("not (a pr) and b pr"),
            and(Filter::Not(Box::new(a.clone())), b.clone())
        );
        assert_eq!(
            p("a pr and b pr and c pr"),
            and(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(p("a pr OR b pr AND c pr"), or(a, and(b, c)));
    }

    #[test]
    fn keywords_literals_and_names_ignore_case() {
        assert_eq!(
            p(r#"userName EQ "x" AND title PR"#),
            and(
                cmp(path("userName"), Op::Eq, s("x")),
                Filter::Present(path("title"))
            )
        );
        assert_eq!(
            p("active eq TRUE"),
            cmp(path("active"), Op::Eq, CompValue::Bool(true))
        );
        assert_eq!(
            p("active eq False"),
            cmp(path("active"), Op::Eq, CompValue::Bool(false))
        );
        assert_eq!(
            p("title eq NULL"),
            cmp(path("title"), Op::Eq, CompValue::Null)
        );
        assert_eq!(
            p("NOT (title pr)"),
            Filter::Not(Box::new(Filter::Present(path("title"))))
        );
        assert!(eval("ACTIVE eq true"));
        assert!(eval(r#"NAME.GIVENNAME eq "barbara""#));
        assert!(eval(r#"EMAILS[TYPE eq "WORK"]"#));
        assert!(eval(
            r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:EMPLOYEENUMBER eq "701984""#
        ));
    }

    #[test]
    fn words_that_are_keywords_elsewhere_can_be_attribute_names() {
        assert_eq!(p("not pr"), Filter::Present(path("not")));
        assert_eq!(
            p("and pr and or pr"),
            and(Filter::Present(path("and")), Filter::Present(path("or")))
        );
        assert_eq!(p(r#"pr eq "x""#), cmp(path("pr"), Op::Eq, s("x")));
    }

    #[test]
    fn literals() {
        assert_eq!(
            p(r#"userName eq "a\"b\\c\u00e9\n""#),
            cmp(path("userName"), Op::Eq, s("a\"b\\cé\n"))
        );
        assert_eq!(
            p(r#"userName eq "日本""#),
            cmp(path("userName"), Op::Eq, s("日本"))
        );
        assert_eq!(p(r#"userName eq """#), cmp(path("userName"), Op::Eq, s("")));
        let number = |text: &str| match p(text) {
            Filter::Compare {
                value: CompValue::Number(n),
                ..
            } => n.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(number("x gt 10"), "10");
        assert_eq!(number("x gt -1.5e2"), "-150.0");
        assert_eq!(number("x gt 18446744073709551615"), "18446744073709551615");
        assert!(err("x gt 01").contains("expected a value"));
        assert!(err("x gt +1").contains("expected a value"));
        assert!(err("x gt 1e999").contains("expected a value"));
        assert!(err(r#"x eq "\x""#).contains("invalid string literal"));
        assert!(err("x eq \"tab\there\"").contains("invalid string literal"));
        assert!(err(r#"x eq 'single'"#).contains("expected a value"));
    }

    #[test]
    fn whitespace_is_lenient() {
        let expected = and(
            cmp(path("userName"), Op::Eq, s("x")),
            Filter::Present(path("title")),
        );
        assert_eq!(p("  userName   eq\t\"x\"\nand title pr  "), expected);
        assert_eq!(p(r#"userName eq"x"and title pr"#), expected);
        assert_eq!(p("(title pr)"), Filter::Present(path("title")));
        assert_eq!(
            p("not(title pr)"),
            Filter::Not(Box::new(Filter::Present(path("title"))))
        );
        assert_eq!(
            p(r#"emails[ type eq "work" ]"#),
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(cmp(path("type"), Op::Eq, s("work")))
            }
        );
    }

    #[test]
    fn attribute_paths() {
        assert_eq!(
            p(
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
            ),
            cmp(
                AttrPath {
                    schema: Some(ENTERPRISE.into()),
                    attr: "employeeNumber".into(),
                    sub: None
                },
                Op::Eq,
                s("701984")
            )
        );
        assert_eq!(
            p(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#),
            cmp(
                AttrPath {
                    schema: Some(ENTERPRISE.into()),
                    attr: "manager".into(),
                    sub: Some("value".into())
                },
                Op::Eq,
                s("x")
            )
        );
        assert_eq!(
            p("members.$ref pr"),
            Filter::Present(sub_path("members", "$ref"))
        );
        assert_eq!(p("x-y_z1 pr"), Filter::Present(path("x-y_z1")));
        assert!(err("a.b.c pr").contains("more than one '.'"));
        assert!(err("1abc pr").contains("not a valid attribute name"));
        assert!(err("a..b pr").contains("more than one '.'"));
        assert!(err("name. pr").contains("not a valid attribute name"));
        assert!(err("foo:bar pr").contains("only a schema URN"));
        assert!(err("urn:x: pr").contains("not a valid attribute name"));
        assert!(err(":x pr").contains("only a schema URN"));
        assert!(err("na%me pr").contains("not a valid attribute name"));
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("userName", "expected an operator after 'userName'"),
            ("userName eq", "expected a value after 'eq'"),
            (r#"userName xx "a""#, "unknown operator 'xx' at position 10"),
            (
                r#"userName eq "a" title pr"#,
                "expected 'and', 'or' or the end of the filter",
            ),
            (r#"userName eq "a" and"#, "expected"),
            (
                r#"userName eq "abc"#,
                "unterminated string literal starting at position 13",
            ),
            (
                r#"(userName eq "a""#,
                "expected ')' closing the one at position 1",
            ),
            (r#"userName eq "a")"#, "unbalanced ')'"),
            (
                r#"emails[type eq "work""#,
                "expected ']' closing the one at position 7",
            ),
            (r#"emails[type eq "work"]]"#, "unbalanced ']'"),
            ("not title pr", "'not' must be followed by '('"),
            ("()", "expected an attribute"),
            ("[type eq 1]", "expected an attribute"),
            (r#"userName eq ("a")"#, "expected a value after 'eq'"),
            ("title co 1", "'co' needs a string value"),
            ("title sw true", "'sw' needs a string value"),
            ("title ew null", "'ew' needs a string value"),
            ("active gt true", "booleans cannot be ordered"),
            ("title lt null", "null can only be compared with eq or ne"),
            (
                r#"emails[type eq "work"].value eq "x""#,
                "only allowed in PATCH paths",
            ),
            (r#"emails[type[value eq "x"]]"#, "cannot be nested"),
            (
                r#"emails[emails.type eq "work"]"#,
                "name a sub-attribute of the filtered attribute alone",
            ),
            (
                r#"emails[urn:ietf:params:scim:schemas:core:2.0:User:type eq "work"]"#,
                "name a sub-attribute of the filtered attribute alone",
            ),
            (
                r#"name.givenName[value eq "x"]"#,
                "must follow a multi-valued attribute",
            ),
        ];
        for (text, expected) in cases {
            let message = err(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn limits() {
        let long = format!(r#"userName eq "{}""#, "x".repeat(MAX_FILTER_LEN));
        assert!(err(&long).contains("at most 4096"));
        let nested = |n: usize| format!("{}title pr{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(p(&nested(MAX_DEPTH)), Filter::Present(path("title")));
        assert!(err(&nested(MAX_DEPTH + 1)).contains("more than 32 levels"));
        let nots = |n: usize| format!("{}title pr{}", "not (".repeat(n), ")".repeat(n));
        assert!(p(&nots(MAX_DEPTH)) != Filter::Present(path("title")));
        assert!(err(&nots(MAX_DEPTH + 1)).contains("more than 32 levels"));
        // Far past the limit must fail cleanly, not overflow the stack.
        assert!(err(&"(".repeat(4000)).contains("more than 32 levels"));
        assert!(err(&"not (".repeat(800)).contains("more than 32 levels"));
        // Long flat chains are not nesting; they evaluate too.
        let chain = vec!["title pr"; 300].join(" and ");
        assert!(chain.len() < MAX_FILTER_LEN);
        assert!(eval(&chain));
        let chain = vec![r#"userName eq "nobody""#; 150].join(" or ");
        assert!(!eval(&chain));
    }

    #[test]
    fn strings_respect_case_exactness() {
        // userName is caseExact false, id and externalId are caseExact true.
        assert!(eval(r#"userName eq "BJENSEN""#));
        assert!(eval(r#"userName sw "BJ""#));
        assert!(eval(r#"userName ew "SEN""#));
        assert!(eval(r#"userName co "JEN""#));
        assert!(eval(r#"id eq "2819c223-7f76-453a-919d-413861904646""#));
        assert!(!eval(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
        assert!(eval(r#"externalId sw "7019""#));
        assert!(!eval(r#"profileUrl co "BJENSEN""#));
        assert!(eval(r#"profileUrl co "bjensen""#));
        // Ordering folds case too, for non-caseExact attributes.
        assert!(eval(r#"userName gt "BA""#));
        assert!(eval(r#"userName lt "BZ""#));
        assert!(eval(r#"userName ge "BJENSEN" and userName le "BJENSEN""#));
        // Sub-attributes take their own caseExact: manager.value is caseExact.
        assert!(eval(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        ));
        assert!(!eval(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87E4-49D8CA9F808D""#
        ));
    }

    #[test]
    fn multi_valued_attributes_match_any_value() {
        assert!(eval(r#"emails eq "babs@jensen.org""#));
        assert!(eval(r#"emails.value eq "BABS@jensen.org""#));
        assert!(eval(r#"emails[value eq "babs@jensen.org"]"#));
        assert!(eval(r#"emails.type eq "home""#));
        assert!(!eval(r#"emails.type eq "other""#));
        assert!(eval(r#"emails[type eq "home" and value ew "jensen.org"]"#));
        // Conditions in brackets hold for the same value, dotted ones for any values each.
        assert!(!eval(
            r#"emails[type eq "home" and value co "example.com"]"#
        ));
        assert!(eval(
            r#"emails.type eq "home" and emails.value co "example.com""#
        ));
        assert!(eval(r#"emails[primary eq true and type eq "work"]"#));
        assert!(eval(r#"emails[not (primary pr)]"#));
        assert!(eval("emails pr"));
        assert!(eval("emails.primary pr"));
        assert!(!eval("photos pr"));
        assert!(eval(r#"groups.display eq "tour guides""#));
        // "ne" is the negation of "eq" over all values.
        assert!(!eval(r#"emails.type ne "home""#));
        assert!(eval(r#"emails.type ne "other""#));
        assert!(eval(
            r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:User""#
        ));
        assert!(!eval(
            r#"schemas eq "URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER""#
        ));
    }

    #[test]
    fn simple_multi_valued_attributes_filter_on_value() {
        let mut user = bjensen();
        user[TEST_EXT] = json!({"tags": ["alpha", "beta"], "level": 7, "vip": false});
        let t = |text: &str| eval_on(&format!("{TEST_EXT}:{text}"), &user);
        assert!(t(r#"tags eq "ALPHA""#));
        assert!(t(r#"tags[value eq "beta"]"#));
        assert!(t(r#"tags[value sw "al" and not (value eq "beta")]"#));
        assert!(!t(r#"tags[value eq "gamma"]"#));
        assert!(t("tags pr"));
        assert!(t("level eq 7"));
        assert!(t("level eq 7.0"));
        assert!(t("level gt 6.5"));
        assert!(t(&format!("level ge 7 and {TEST_EXT}:level le 7")));
        assert!(!t("level lt -3"));
        assert!(t("level ne 8"));
        assert!(t(r#"level ne "7""#));
        assert!(!t(r#"level eq "7""#));
        assert!(t("vip eq false"));
        assert!(t("vip pr"));
        assert!(!t("vip ne false"));
    }

    #[test]
    fn presence_and_null() {
        let mut user = bjensen();
        user["nickName"] = json!("");
        user["title"] = Value::Null;
        user["ims"] = json!([]);
        user["name"] = json!({"givenName": null, "familyName": ""});
        user["phoneNumbers"] = json!([{"value": null}]);
        for attr in [
            "nickName",
            "title",
            "ims",
            "name",
            "phoneNumbers",
            "photos",
            "name.givenName",
        ] {
            assert!(!eval_on(&format!("{attr} pr"), &user), "{attr}");
            assert!(eval_on(&format!("{attr} eq null"), &user), "{attr}");
            assert!(!eval_on(&format!("{attr} ne null"), &user), "{attr}");
            assert!(eval_on(&format!("not ({attr} pr)"), &user), "{attr}");
        }
        let user = bjensen();
        for attr in [
            "userName",
            "name",
            "name.givenName",
            "emails",
            "emails.type",
            "active",
        ] {
            assert!(eval_on(&format!("{attr} pr"), &user), "{attr}");
            assert!(!eval_on(&format!("{attr} eq null"), &user), "{attr}");
            assert!(eval_on(&format!("{attr} ne null"), &user), "{attr}");
        }
        // Absent attributes are not equal to anything, so "ne" matches.
        assert!(!eval(r#"photos eq "x""#));
        assert!(eval(r#"photos ne "x""#));
        assert!(!eval(r#"photos.value co "x""#));
    }

    #[test]
    fn extension_and_core_urn_paths() {
        let ent = |rest: &str| format!("{ENTERPRISE}:{rest}");
        assert!(eval(&ent(r#"employeeNumber eq "701984""#)));
        assert!(eval(&ent(
            r#"manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        )));
        assert!(eval(&ent(
            r#"manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        )));
        assert!(eval(&ent(r#"manager.displayName co "smith""#)));
        assert!(eval(&ent("department pr")));
        assert!(eval(&format!(r#"{USER}:name.givenName eq "Barbara""#)));
        assert!(eval(&format!(r#"{USER}:emails[type eq "work"]"#)));
        // Without the extension object, extension attributes are absent (not top-level ones).
        let mut user = bjensen();
        if let Some(top) = user.as_object_mut() {
            top.remove(ENTERPRISE);
            top.insert("employeeNumber".into(), json!("701984"));
        }
        assert!(!eval_on(&ent("employeeNumber pr"), &user));
        // The extension object's key matches in any case.
        let mut user = bjensen();
        if let Some(top) = user.as_object_mut() {
            let ext = top.remove(ENTERPRISE).unwrap_or_default();
            top.insert(ENTERPRISE.to_uppercase(), ext);
        }
        assert!(eval_on(&ent(r#"costCenter eq "4130""#), &user));
    }

    #[test]
    fn resource_keys_match_in_any_case() {
        let user = json!({"USERNAME": "Alice", "Emails": [{"Value": "a@x.org", "TYPE": "work"}]});
        assert!(eval_on(r#"userName eq "alice""#, &user));
        assert!(eval_on(r#"emails[type eq "work"]"#, &user));
        assert!(eval_on(r#"emails.value eq "a@x.org""#, &user));
    }

    #[test]
    fn dates_compare_chronologically() {
        let mut user = bjensen();
        user["meta"]["lastModified"] = json!("2011-05-13T04:42:34.882Z");
        // As text, ".882Z" sorts before "Z"; as time it is later.
        assert!(eval_on(
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            &user
        ));
        assert!(eval_on(
            r#"meta.lastModified lt "2011-05-13T05:00:00-00:30""#,
            &user
        ));
        assert!(eval_on(
            r#"meta.lastModified eq "2011-05-13T06:42:34.882+02:00""#,
            &user
        ));
        assert!(eval_on(r#"meta.created lt "2011-01-01T00:00:00Z""#, &user));
        // Strings that are not both date-times compare as text.
        assert!(eval_on(r#"meta.lastModified gt "2011""#, &user));
        assert!(eval_on(r#"meta.lastModified lt "2011-13""#, &user));
    }

    #[test]
    fn invalid_comparisons_fail() {
        assert!(eval_err(r#"active gt "a""#).contains("'active' is a boolean"));
        assert!(eval_err(r#"active co "t""#).contains("'active' is a boolean"));
        assert!(eval_err(r#"emails[primary sw "t"]"#).contains("'primary' is a boolean"));
        let mut user = bjensen();
        user[TEST_EXT] = json!({"level": 7});
        let message = match evaluate(&p(&format!(r#"{TEST_EXT}:level co "7""#)), &user, &USERS) {
            Err(e) => e.message,
            Ok(b) => panic!("{b}"),
        };
        assert!(message.contains("is a number"), "{message}");
        // Type mismatches that are not errors simply do not match.
        assert!(!eval("active eq 1"));
        assert!(!eval(r#"active eq "true""#));
        assert!(!eval("userName eq 1"));
        assert!(!eval(r#"name eq "x""#));
    }

    #[test]
    fn unknown_attributes_fail_even_where_not_evaluated() {
        let cases: &[(&str, &str)] = &[
            (r#"nosuch eq "x""#, "unknown attribute 'nosuch'"),
            ("name.nosuch pr", "unknown attribute 'name.nosuch'"),
            ("userName.sub pr", "unknown attribute 'userName.sub'"),
            (
                r#"userName pr or nosuch eq "x""#,
                "unknown attribute 'nosuch'",
            ),
            (
                r#"emails[nosuch eq "x"]"#,
                "unknown attribute 'emails.nosuch'",
            ),
            (r#"nosuch[type eq "x"]"#, "unknown attribute 'nosuch'"),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:userName pr",
                "unknown attribute",
            ),
            ("urn:example:other:2.0:User:title pr", "unknown attribute"),
            ("employeeNumber pr", "unknown attribute 'employeeNumber'"),
        ];
        for (text, expected) in cases {
            let message = eval_err(text);
            assert!(message.contains(expected), "{text}: {message}");
            let checked = check(&p(text), &USERS);
            assert!(checked.is_err(), "{text}");
        }
        assert_eq!(
            check(&p(r#"userName eq "x" and emails[type eq "work"]"#), &USERS),
            Ok(())
        );
    }

    #[test]
    fn hand_built_filters_are_checked_too() {
        let nested = Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(Filter::ValuePath {
                path: path("type"),
                filter: Box::new(Filter::Present(path("value"))),
            }),
        };
        assert!(evaluate(&nested, &bjensen(), &USERS).is_err());
        let qualified_inside = Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(Filter::Present(sub_path("emails", "type"))),
        };
        assert!(evaluate(&qualified_inside, &bjensen(), &USERS).is_err());
        let sub_outside = Filter::ValuePath {
            path: sub_path("emails", "type"),
            filter: Box::new(Filter::Present(path("value"))),
        };
        assert!(evaluate(&sub_outside, &bjensen(), &USERS).is_err());
    }

    #[test]
    fn simple_eq_shapes() {
        let hint = |text: &str| {
            let f = p(text);
            simple_eq(&f).map(|(path, s)| (path.to_string(), s.to_string()))
        };
        let some = |path: &str, s: &str| Some((path.to_string(), s.to_string()));
        assert_eq!(
            hint(r#"userName eq "bjensen""#),
            some("userName", "bjensen")
        );
        assert_eq!(
            hint(r#"externalId eq "701984""#),
            some("externalId", "701984")
        );
        assert_eq!(
            hint(r#"emails.value eq "a@x.org""#),
            some("emails.value", "a@x.org")
        );
        assert_eq!(
            hint(r#"emails[value eq "a@x.org"]"#),
            some("emails", "a@x.org")
        );
        assert_eq!(
            hint(r#"emails[type eq "work" and value eq "a@x.org"]"#),
            some("emails", "a@x.org")
        );
        assert_eq!(hint(r#"emails eq "a@x.org""#), some("emails", "a@x.org"));
        assert_eq!(
            hint(&format!(r#"{USER}:userName eq "b""#)),
            some(&format!("{USER}:userName"), "b")
        );
        assert_eq!(
            hint(r#"title pr and userName eq "b""#),
            some("userName", "b")
        );
        assert_eq!(
            hint(r#"(userName eq "a" and title pr) and externalId eq "b""#),
            some("userName", "a")
        );
        assert_eq!(hint(r#"id eq "g1" and members eq "u1""#), some("id", "g1"));
        for text in [
            r#"userName eq "a" or userName eq "b""#,
            r#"not (userName eq "a")"#,
            r#"userName ne "a""#,
            r#"userName co "a""#,
            "active eq true",
            r#"emails[type eq "work"]"#,
            r#"emails[value eq "a" or type eq "work"]"#,
            "title pr",
        ] {
            assert_eq!(hint(text), None, "{text}");
        }
        let f = p(r#"userName eq "Mixed""#);
        if let Some((path, value)) = simple_eq(&f) {
            assert_eq!(path.attr, "userName");
            assert_eq!(value, "Mixed");
        }
    }

    #[test]
    fn idp_filters() {
        // Entra ID, Okta, OneLogin and JumpCloud look users and groups up like this.
        let group = json!({
            "schemas": [super::super::patch::test_schema::GROUP],
            "id": "40734ae655284ad3abcc",
            "displayName": "Group1DisplayName",
            "members": [{"value": "a1"}, {"value": "b2"}]
        });
        let groups = &super::super::patch::test_schema::GROUPS;
        let g = |text: &str| evaluate(&p(text), &group, groups);
        assert_eq!(g(r#"displayName eq "Group1DisplayName""#), Ok(true));
        assert_eq!(
            g(r#"id eq "40734ae655284ad3abcc" and members eq "b2""#),
            Ok(true)
        );
        assert_eq!(
            g(r#"id eq "40734ae655284ad3abcc" and members.value eq "c3""#),
            Ok(false)
        );
        assert_eq!(g(r#"members[value eq "a1"]"#), Ok(true));
        assert!(eval(r#"userName eq "bjensen" and active eq true"#));
        let mut okta = bjensen();
        okta["userName"] = json!("test.user@okta.local");
        assert!(eval_on(r#"userName eq "test.user@okta.local""#, &okta));
        assert!(!eval_on(r#"userName eq "test.user@okta.loca""#, &okta));
        // RFC 7644 §3.4.3's search body.
        assert!(!eval(r#"displayName sw "smith""#));
        assert!(eval(r#"displayName sw "BABS""#));
        assert!(eval(r#"externalId eq "701984""#));
        assert!(eval(
            r#"emails[type eq "work" and value eq "bjensen@example.com"]"#
        ));
        assert!(eval(
            r#"emails[type eq "work"] and emails[primary eq true]"#
        ));
    }

    /// A fixed-seed linear congruential generator, so failures reproduce.
    pub(crate) struct Lcg(pub u64);

    impl Lcg {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const TRICKY: &[&str] = &[
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x\"y\\z\u00e9""#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z" and not (title pr) or userName sw "é日本""#,
        r#"emails[type eq "work"].value eq "x" and ((((a pr))))"#,
        r#"x gt -1.5e-3 or y le 18446744073709551616 and z eq true and w ne null"#,
        "((not (a pr) and [b] or ) ] [ \" \\ urn: . : $ref",
    ];

    #[test]
    fn fuzz_parse_and_evaluate_do_not_panic() {
        let resource = bjensen();
        let attempt = |text: &str| {
            if let Ok(f) = parse(text) {
                let _ = evaluate(&f, &resource, &USERS);
                let _ = simple_eq(&f);
            }
            let _ = parse_value_filter(text);
        };
        for text in TRICKY {
            for (i, _) in text.char_indices() {
                attempt(text.get(..i).unwrap_or_default());
                attempt(text.get(i..).unwrap_or_default());
            }
        }
        let pieces = [
            "userName",
            "emails",
            "emails.value",
            "name.givenName",
            "title",
            "active",
            "meta.lastModified",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "type",
            "value",
            "primary",
            " eq ",
            " ne ",
            " co ",
            " sw ",
            " gt ",
            " le ",
            " pr",
            " and ",
            " or ",
            "not ",
            "(",
            ")",
            "[",
            "]",
            "\"",
            "\"x\"",
            "\"2011-05-13T04:42:34Z\"",
            "true",
            "null",
            "1",
            "-2.5",
            "\\",
            ".",
            ":",
            " ",
            "é",
            "\u{0}",
            "\u{2028}",
            "$",
        ];
        let mut rng = Lcg(0x5c13_f11e);
        for _ in 0..20_000 {
            let n = 1 + rng.below(14);
            let text: String = (0..n).map(|_| pieces[rng.below(pieces.len())]).collect();
            attempt(&text);
        }
        for _ in 0..5_000 {
            let n = rng.below(40);
            let text: String = (0..n)
                .map(|_| char::from_u32((rng.next() % 0x3000) as u32).unwrap_or('?'))
                .collect();
            attempt(&text);
        }
    }
}
