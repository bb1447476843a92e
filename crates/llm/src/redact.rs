//! Secrets out of text before it leaves the process: credentials in URLs, bearer tokens,
//! `password=…`-style pairs, private keys and the token formats of common providers.

use regex::Regex;
use std::sync::LazyLock;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Words that make a key's value a secret (`db_password=…`, `"api_key": "…"`).
const SECRET_WORDS: &str = "password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|account[_-]?key|private[_-]?key|client[_-]?secret|auth|credential|session[_-]?id|signature|sig";

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let quoted_pair =
        format!(r#"(?i)(["']?\b[a-z0-9_.-]*(?:{SECRET_WORDS})["']?\s*[:=]\s*)(?:"[^"]*"|'[^']*')"#);
    let bare_pair = format!(r#"(?i)(\b[a-z0-9_.-]*(?:{SECRET_WORDS})\s*[:=]\s*)([^\s&,;"'\\\[]+)"#);
    let rules: &[(&str, &str)] = &[
        // PEM private keys, whole.
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            "[REDACTED PRIVATE KEY]",
        ),
        // user:password@ in URLs.
        (
            r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@",
            "${1}[REDACTED]@",
        ),
        // Authorization headers and bearer tokens.
        (
            r"(?i)\b(authorization\s*[:=]\s*)(bearer|basic|token)?\s*[^\s,;]+",
            "${1}${2} [REDACTED]",
        ),
        (
            r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",
            "Bearer [REDACTED]",
        ),
        // key=value, key: value and "key": "value" for secret-looking keys.
        (&quoted_pair, "${1}\"[REDACTED]\""),
        (&bare_pair, "${1}[REDACTED]"),
        // Well-known token formats.
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),
        // Google API keys.
        (r"\bAIza[0-9A-Za-z_-]{35}\b", REDACTED),
        // Azure storage connection strings carry `AccountKey=`; SAS tokens `sig=` (above).
        // E-mail addresses: personal data, not evidence.
        (
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            "[REDACTED EMAIL]",
        ),
        (r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}", REDACTED),
        (r"\bxox[abposr]-[A-Za-z0-9-]{10,}", REDACTED),
        (r"\bgh[pousr]_[A-Za-z0-9]{20,}", REDACTED),
        (r"\bglpat-[A-Za-z0-9_-]{20,}", REDACTED),
        (
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            REDACTED,
        ),
        (
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
            REDACTED,
        ),
    ];
    rules
        .iter()
        .map(|(p, r)| (Regex::new(p).expect("the redaction patterns are valid"), *r))
        .collect()
});

/// Every string in a JSON value redacted, and the whole value of a secret-looking key
/// replaced: for data that is serialised after redaction.
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let r = redact(s);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_KEY.is_match(k) && !v.is_null() {
                    *v = Value::String(REDACTED.to_string());
                } else {
                    redact_json(v);
                }
            }
        }
        _ => {}
    }
}

static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("(?i)(?:{SECRET_WORDS}|authorization)$"))
        .expect("the secret key pattern is valid")
});

/// `text` with every secret it recognises replaced.
pub fn redact(text: &str) -> String {
    let mut out = std::borrow::Cow::Borrowed(text);
    for (re, replacement) in PATTERNS.iter() {
        if re.is_match(&out) {
            out = std::borrow::Cow::Owned(re.replace_all(&out, *replacement).into_owned());
        }
    }
    out.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_the_rest_kept() {
        let cases = [
            (
                "connect postgres://app:hunter2@db:5432/orders failed",
                "hunter2",
            ),
            ("GET /api?token=abc123secret&page=2", "abc123secret"),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x",
                "eyJhbGciOiJIUzI1NiJ9",
            ),
            ("login failed password=Sup3rS3cret user=bob", "Sup3rS3cret"),
            (
                r#"{"api_key": "k-123456789", "user": "bob"}"#,
                "k-123456789",
            ),
            ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
            (
                "openai sk-proj-abcdefghijklmnop1234 rejected",
                "abcdefghijklmnop1234",
            ),
            ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "MIIEow",
            ),
            (
                "posting to https://hooks.slack.com/services/T000/B000/XXXX",
                "T000/B000",
            ),
            (
                "mail to jane.doe@example.com bounced",
                "jane.doe@example.com",
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=bXlrZXk=;EndpointSuffix=core",
                "bXlrZXk=",
            ),
            (
                "maps key AIzaSyA1234567890abcdefghijklmnopqrstuv ok",
                "AIzaSyA1234567890",
            ),
            (
                "sso jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZw",
                "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            ),
        ];
        for (text, secret) in cases {
            let r = redact(text);
            assert!(!r.contains(secret), "{text:?} became {r:?}");
            assert!(r.contains("REDACTED"), "{text:?} became {r:?}");
        }
        let mut v =
            serde_json::json!({"line": "db password=abc123 refused", "db_password": "x", "n": 1});
        redact_json(&mut v);
        assert_eq!(v["db_password"], "[REDACTED]");
        assert_eq!(v["line"], "db password=[REDACTED] refused");
        let kept = redact("checkout p99 latency 2.3s, user=bob page=2");
        assert_eq!(kept, "checkout p99 latency 2.3s, user=bob page=2");
    }
}
