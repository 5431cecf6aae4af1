//! Turning a parsed search, or `/audit`'s filter parameters, into a tantivy query — with the
//! reader's scope as a clause of the same query, so an entry outside it is never even a hit.

use super::query::{Field, Query as Ast, RangeField};
use super::schema::Fields;
use crate::store::AuditFilter;
use std::ops::Bound;
use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

pub struct Compiler<'a> {
    pub fields: &'a Fields,
    pub analyzer: TextAnalyzer,
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

impl Compiler<'_> {
    pub fn ast(&mut self, q: &Ast) -> Result<Box<dyn Query>, CompileError> {
        Ok(match q {
            Ast::All => Box::new(AllQuery),
            Ast::And(parts) => {
                let mut clauses = Vec::new();
                let mut positive = false;
                for p in parts {
                    match p {
                        Ast::Not(inner) => clauses.push((Occur::MustNot, self.ast(inner)?)),
                        other => {
                            positive = true;
                            clauses.push((Occur::Must, self.ast(other)?));
                        }
                    }
                }
                if !positive {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Ast::Or(parts) => {
                let clauses = parts
                    .iter()
                    .map(|p| Ok((Occur::Should, self.ast(p)?)))
                    .collect::<Result<Vec<_>, CompileError>>()?;
                Box::new(BooleanQuery::new(clauses))
            }
            // A lone negation matches everything but its operand.
            Ast::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, self.ast(inner)?),
            ])),
            Ast::Text(words) | Ast::Phrase(words) => self.text(words)?,
            Ast::Term { field, value } => {
                let value = match field {
                    Field::Table => table_alias(value),
                    _ => value,
                };
                term_query(Term::from_field_text(self.fields.keyword(*field), value))
            }
            Ast::Prefix { field, value } => prefix(self.fields.keyword(*field), value),
            // Both ends open: every entry has a sequence number and a time.
            Ast::Range {
                lo: None, hi: None, ..
            } => Box::new(AllQuery),
            Ast::Range { field, lo, hi } => {
                let bound = |v: Option<i64>, make: &dyn Fn(i64) -> Term| match v {
                    Some(v) => Bound::Included(make(v)),
                    None => Bound::Unbounded,
                };
                match field {
                    RangeField::Time => {
                        let f = self.fields.time;
                        let make = |v: i64| Term::from_field_i64(f, v);
                        Box::new(RangeQuery::new(bound(*lo, &make), bound(*hi, &make)))
                    }
                    RangeField::Seq => {
                        let f = self.fields.seq;
                        let make = |v: i64| Term::from_field_u64(f, v.max(0) as u64);
                        Box::new(RangeQuery::new(bound(*lo, &make), bound(*hi, &make)))
                    }
                }
            }
        })
    }

    /// Free text: the words as the index tokenised them, in order (a phrase when several).
    fn text(&mut self, words: &str) -> Result<Box<dyn Query>, CompileError> {
        let mut stream = self.analyzer.token_stream(words);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(Term::from_field_text(
                self.fields.text,
                &stream.token().text,
            ));
        }
        match terms.len() {
            0 => Err(CompileError(format!(
                "`{words}` holds no searchable word (letters or digits)"
            ))),
            1 => Ok(terms
                .pop()
                .map(term_query)
                .unwrap_or_else(|| Box::new(EmptyQuery))),
            _ => Ok(Box::new(PhraseQuery::new(terms))),
        }
    }
}

/// Short names for LiteLLM's table names (which entries carry, lower-cased in the index).
fn table_alias(short: &str) -> &str {
    match short {
        "key" | "keys" => "litellm_verificationtoken",
        "user" | "users" => "litellm_usertable",
        "team" | "teams" => "litellm_teamtable",
        "organization" | "organizations" | "org" => "litellm_organizationtable",
        "customer" | "customers" | "end_user" => "litellm_endusertable",
        other => other,
    }
}

/// Keyword values starting with `value`: the range [value, value + 1) over the term bytes.
fn prefix(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
    let lo = Term::from_field_text(field, value);
    let mut upper = value.as_bytes().to_vec();
    // The smallest string greater than every string with this prefix: drop trailing 0xff bytes
    // and increment the last one; a prefix of only 0xff bytes has no upper bound.
    while upper.last() == Some(&0xff) {
        upper.pop();
    }
    let hi = match upper.last_mut() {
        Some(b) => {
            *b += 1;
            let mut t = Term::from_field_text(field, "");
            t.append_bytes(&upper);
            Bound::Excluded(t)
        }
        None => Bound::Unbounded,
    };
    Box::new(RangeQuery::new(Bound::Included(lo), hi))
}

/// `/audit`'s parameters (LiteLLM's), as one conjunction.
pub fn filter(fields: &Fields, f: &AuditFilter) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut exact = |field, value: &Option<String>, lower: bool| {
        if let Some(v) = value {
            let v = if lower { v.to_lowercase() } else { v.clone() };
            clauses.push((Occur::Must, term_query(Term::from_field_text(field, &v))));
        }
    };
    exact(fields.action, &f.action, true);
    exact(fields.table, &f.table_name, true);
    exact(fields.object, &f.object_id, false);
    exact(fields.actor, &f.changed_by, false);
    exact(fields.key, &f.changed_by_api_key, false);
    if f.start_ms.is_some() || f.end_ms.is_some() {
        let b = |v: Option<i64>| match v {
            Some(v) => Bound::Included(Term::from_field_i64(fields.time, v)),
            None => Bound::Unbounded,
        };
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(b(f.start_ms), b(f.end_ms))),
        ));
    }
    if clauses.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(clauses))
}

/// `query`, limited to entries whose scope names one of `orgs` (`None`: no limit), and to
/// sequence numbers before `before_seq` (cursor pagination).
pub fn restrict(
    fields: &Fields,
    query: Box<dyn Query>,
    orgs: Option<&[String]>,
    before_seq: Option<u64>,
    after_seq: Option<u64>,
) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, query)];
    if let Some(orgs) = orgs {
        let any: Vec<(Occur, Box<dyn Query>)> = orgs
            .iter()
            .map(|o| {
                (
                    Occur::Should,
                    term_query(Term::from_field_text(fields.org, o)),
                )
            })
            .collect();
        // No organisation at all: nothing is visible (an empty disjunction would match all).
        let scope: Box<dyn Query> = if any.is_empty() {
            Box::new(EmptyQuery)
        } else {
            Box::new(BooleanQuery::new(any))
        };
        clauses.push((Occur::Must, scope));
    }
    if before_seq.is_some() || after_seq.is_some() {
        let lo = match after_seq {
            Some(s) => Bound::Excluded(Term::from_field_u64(fields.seq, s)),
            None => Bound::Unbounded,
        };
        let hi = match before_seq {
            Some(s) => Bound::Excluded(Term::from_field_u64(fields.seq, s)),
            None => Bound::Unbounded,
        };
        clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
    }
    if clauses.len() == 1 {
        return clauses.remove(0).1;
    }
    Box::new(BooleanQuery::new(clauses))
}
