//! A request's query as the API server reads it: form decoding and field selectors.

use serde_json::Value;
use std::collections::BTreeMap;

/// `application/x-www-form-urlencoded` decoding of one query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query's parameters, decoded.
pub(super) fn parse(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// One term of a field selector: `path=value`, `path==value` or `path!=value`.
pub(super) struct FieldTerm {
    path: String,
    want: String,
    equal: bool,
}

impl FieldTerm {
    pub(super) fn matches(&self, o: &Value) -> bool {
        let v = self.path.split('.').fold(o, |v, part| &v[part]);
        let got = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (got == self.want) == self.equal
    }
}

/// Parses a field selector over the fields a resource indexes, refusing others as the API
/// server does (`field label not supported: …`).
pub(super) fn field_selector(s: &str, indexed: &[&str]) -> Result<Vec<FieldTerm>, String> {
    let mut terms = Vec::new();
    for term in s.split(',').filter(|t| !t.is_empty()) {
        let (path, want, equal) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, v, true)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            ));
        };
        if !indexed.contains(&path) {
            return Err(format!("field label not supported: {path}"));
        }
        terms.push(FieldTerm {
            path: path.to_string(),
            want: want.to_string(),
            equal,
        });
    }
    Ok(terms)
}
