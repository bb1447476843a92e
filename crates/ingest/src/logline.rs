//! One log line's parts, whatever carried it (a file, Loki, OTLP): the message of a JSON or
//! logfmt line, and the severity the line states.

use nightshift_core::Severity;

const MESSAGE_FIELDS: [&str; 3] = ["msg", "message", "log"];

/// The message of a line: a JSON object's or a logfmt line's message field, else the line.
pub fn message(line: &str) -> &str {
    let t = line.trim();
    if t.starts_with('{')
        && let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(t)
    {
        for f in MESSAGE_FIELDS {
            if let Some(serde_json::Value::String(m)) = o.get(f) {
                // Borrow the message from the line itself where it is there verbatim.
                if let Some(at) = line.find(m.as_str()) {
                    return &line[at..at + m.len()];
                }
            }
        }
    }
    for f in MESSAGE_FIELDS {
        let key = format!("{f}=");
        if let Some(at) = t
            .find(&key)
            .filter(|&a| a == 0 || t.as_bytes()[a - 1] == b' ')
        {
            let rest = &t[at + key.len()..];
            return match rest.strip_prefix('"') {
                Some(q) => q.split('"').next().unwrap_or(q),
                None => rest.split_whitespace().next().unwrap_or(rest),
            };
        }
    }
    line
}

pub fn severity_word(w: &str) -> Option<Severity> {
    match w.to_ascii_lowercase().as_str() {
        "trace" => Some(Severity::Trace),
        "debug" | "dbug" => Some(Severity::Debug),
        "info" | "information" | "notice" => Some(Severity::Info),
        "warn" | "warning" => Some(Severity::Warn),
        "error" | "err" | "eror" => Some(Severity::Error),
        "fatal" | "critical" | "crit" | "panic" | "emerg" | "alert" => Some(Severity::Fatal),
        _ => None,
    }
}

/// The severity a line states: a `level=`/`"level":` field, else the first level word among
/// its first few words.
pub fn line_severity(line: &str) -> Option<Severity> {
    let lower = line.to_ascii_lowercase();
    for key in [
        "level=",
        "\"level\":\"",
        "\"level\": \"",
        "severity=",
        "lvl=",
    ] {
        if let Some(at) = lower.find(key) {
            let word: String = lower[at + key.len()..]
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if let Some(s) = severity_word(&word) {
                return Some(s);
            }
        }
    }
    line.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .take(6)
        .find_map(|w| {
            // Only shouted level words: "ERROR" in a line is a level, "error" may be prose.
            (w.len() >= 4 && w.chars().all(|c| c.is_ascii_uppercase()))
                .then(|| severity_word(w))
                .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_out_of_json_and_logfmt() {
        assert_eq!(
            message(r#"{"level":"error","msg":"disk full on /data"}"#),
            "disk full on /data"
        );
        assert_eq!(
            message(r#"ts=1 level=warn msg="slow query" took=3s"#),
            "slow query"
        );
        assert_eq!(message("plain line here"), "plain line here");
        assert_eq!(message(r#"{"not":"a message"}"#), r#"{"not":"a message"}"#);
    }
}
