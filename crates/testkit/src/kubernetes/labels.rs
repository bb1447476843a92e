//! Label selectors as the API server parses and applies them.

use serde_json::Value;

/// One requirement of a label selector.
pub(super) enum Requirement {
    Equal(String, String, bool),
    In(String, Vec<String>, bool),
    Exists(String, bool),
}

impl Requirement {
    pub(super) fn matches(&self, labels: &Value) -> bool {
        match self {
            Requirement::Equal(k, v, eq) => (labels[k].as_str() == Some(v)) == *eq,
            Requirement::In(k, vs, within) => {
                let found = labels[k]
                    .as_str()
                    .is_some_and(|l| vs.iter().any(|v| v == l));
                if *within { found } else { !found }
            }
            Requirement::Exists(k, exists) => labels.get(k).is_some() == *exists,
        }
    }
}

/// Parses a label selector as the API server does (`a=b,c!=d,e in (f,g),!h`).
pub(super) fn parse(s: &str) -> Result<Vec<Requirement>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let mut out = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let r = if let Some((k, v)) = term.split_once(" notin ") {
            Requirement::In(k.trim().into(), set(v)?, false)
        } else if let Some((k, v)) = term.split_once(" in ") {
            Requirement::In(k.trim().into(), set(v)?, true)
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement::Equal(k.trim().into(), v.trim().into(), false)
        } else if let Some((k, v)) = term.split_once("==") {
            Requirement::Equal(k.trim().into(), v.trim().into(), true)
        } else if let Some((k, v)) = term.split_once('=') {
            Requirement::Equal(k.trim().into(), v.trim().into(), true)
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::Exists(k.trim().into(), false)
        } else {
            Requirement::Exists(term.into(), true)
        };
        out.push(r);
    }
    Ok(out)
}

fn set(v: &str) -> Result<Vec<String>, String> {
    let v = v.trim();
    let inner = v
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected a set in parentheses, found {v:?}"))?;
    Ok(inner.split(',').map(|s| s.trim().to_string()).collect())
}
