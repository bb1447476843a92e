//! One log line's parts, whatever carried it (a file, Loki, OTLP): the message of a JSON or
//! logfmt line, its other fields (kept as labels of the record), and the severity the line
//! states.

use nightshift_core::Severity;
use std::borrow::Cow;
use std::collections::BTreeMap;

const MESSAGE_FIELDS: [&str; 3] = ["msg", "message", "log"];

/// The message of a line: a JSON object's or a logfmt line's message field (unescaped), else
/// the line. Borrowed from the line where it stands there verbatim.
pub fn message(line: &str) -> Cow<'_, str> {
    let t = line.trim();
    if t.starts_with('{')
        && let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(t)
        && let Some(m) = json_message(line, &o)
    {
        return m;
    }
    logfmt_message(line, t)
}

/// A line's message (as [`message`]) and its structured fields (the other fields of a JSON or
/// logfmt line with a message field: scalars by name, nested JSON objects flattened into dotted
/// names, arrays as JSON text; a plain line has none), reading a JSON line once.
pub fn parts(line: &str) -> (Cow<'_, str>, BTreeMap<String, String>) {
    let t = line.trim();
    if !t.starts_with('{') {
        return (logfmt_message(line, t), logfmt_fields(t));
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Object(o)) => (
            json_message(line, &o).unwrap_or_else(|| logfmt_message(line, t)),
            json_fields(&o),
        ),
        _ => (logfmt_message(line, t), BTreeMap::new()),
    }
}

/// A JSON object's message field, borrowed from the line where it is there verbatim (no
/// escapes in it).
fn json_message<'a>(
    line: &'a str,
    o: &serde_json::Map<String, serde_json::Value>,
) -> Option<Cow<'a, str>> {
    MESSAGE_FIELDS.iter().find_map(|f| match o.get(*f) {
        Some(serde_json::Value::String(m)) => Some(match line.find(m.as_str()) {
            Some(at) => Cow::Borrowed(&line[at..at + m.len()]),
            None => Cow::Owned(m.clone()),
        }),
        _ => None,
    })
}

/// The value of a logfmt line's message field (`t` is the trimmed line), else the line.
fn logfmt_message<'a>(line: &'a str, t: &'a str) -> Cow<'a, str> {
    // logfmt: the first message field by MESSAGE_FIELDS' order, found from the `=` signs (most
    // lines have none, and then cost one byte search).
    let b = t.as_bytes();
    let mut best: Option<(usize, usize)> = None;
    for eq in b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'=')
        .map(|(i, _)| i)
    {
        let key_start = b[..eq]
            .iter()
            .rposition(|c| *c == b' ')
            .map_or(0, |s| s + 1);
        if let Some(rank) = MESSAGE_FIELDS
            .iter()
            .position(|f| f.as_bytes() == &b[key_start..eq])
            && best.is_none_or(|(r, _)| rank < r)
        {
            best = Some((rank, eq + 1));
        }
    }
    match best {
        Some((_, at)) => {
            let rest = &t[at..];
            match rest.strip_prefix('"') {
                // Up to the closing quote; a value with escapes is unescaped.
                Some(q) => match q.find(['"', '\\']) {
                    Some(end) if q.as_bytes()[end] == b'"' => Cow::Borrowed(&q[..end]),
                    Some(_) => Cow::Owned(quoted(q).0),
                    None => Cow::Borrowed(q),
                },
                None => Cow::Borrowed(rest.split_whitespace().next().unwrap_or(rest)),
            }
        }
        None => Cow::Borrowed(line),
    }
}

/// Nesting depth of JSON objects flattened into dotted field names (`http.status`).
const MAX_DEPTH: usize = 3;

/// A JSON object's fields other than its message, when it has a message field.
fn json_fields(o: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(msg) = MESSAGE_FIELDS
        .iter()
        .find(|f| o.get(**f).is_some_and(|v| v.is_string()))
    {
        flatten("", o, 0, &mut out);
        out.remove(*msg);
    }
    out
}

/// A logfmt line's pairs other than its message, when it has a message field.
fn logfmt_fields(t: &str) -> BTreeMap<String, String> {
    let pairs = logfmt(t);
    match MESSAGE_FIELDS
        .iter()
        .find(|f| pairs.iter().any(|(k, _)| k == *f))
    {
        Some(msg) => pairs.into_iter().filter(|(k, _)| k != msg).collect(),
        None => BTreeMap::new(),
    }
}

fn flatten(
    prefix: &str,
    o: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
    out: &mut BTreeMap<String, String>,
) {
    for (k, v) in o {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => {
                out.insert(name, s.clone());
            }
            serde_json::Value::Object(inner) if depth + 1 < MAX_DEPTH => {
                flatten(&name, inner, depth + 1, out);
            }
            other => {
                out.insert(name, other.to_string());
            }
        }
    }
}

/// The `key=value` pairs of a logfmt line (values may be double-quoted, with `\"` and `\\`
/// escapes); words that are not pairs are skipped.
fn logfmt(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = &rest[key_end..];
        if let Some(after) = rest.strip_prefix('=') {
            let (value, tail) = match after.strip_prefix('"') {
                Some(q) => quoted(q),
                None => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (after[..end].to_string(), &after[end..])
                }
            };
            if !key.is_empty() {
                out.push((key.to_string(), value));
            }
            rest = tail;
        }
        rest = rest.trim_start();
    }
    out
}

/// A double-quoted logfmt value (after its opening quote) and the text after its closing one.
fn quoted(q: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = q.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &q[i + 1..]),
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    value.push(e);
                }
            }
            c => value.push(c),
        }
    }
    (value, "")
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

/// Level words a header states.
const LEVELS: [&str; 11] = [
    "trace", "debug", "info", "notice", "warn", "warning", "error", "severe", "critical", "fatal",
    "alert",
];

fn is_level(tok: &str) -> bool {
    let t = tok.trim_matches(|c| c == '[' || c == ']' || c == ':');
    LEVELS.iter().any(|l| t.eq_ignore_ascii_case(l))
}

/// Date, time and number-like tokens of a header: `2015-10-18`, `18:01:47,978`, `081109`,
/// `Dec`, `[Sun`.
fn is_time_like(tok: &str) -> bool {
    const NAMES: [&str; 19] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "mon",
        "tue", "wed", "thu", "fri", "sat", "sun",
    ];
    let t = tok.trim_matches(|c| c == '[' || c == ']');
    NAMES.iter().any(|n| t.eq_ignore_ascii_case(n))
        || (!t.is_empty()
            && t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_digit() || b"-:/.,T+Z".contains(&b)))
}

/// The message of a raw log line, its header (time, level, process, thread, component) cut off
/// without a format string: after a level word among the first ten tokens, the bracketed
/// groups, dashes and component names that follow it; with no level, after the leading times,
/// a host name and a `process[pid]:` token. A line whose header is not recognised is kept whole.
pub fn strip_header(line: &str) -> &str {
    let toks: Vec<(usize, &str)> = line
        .split_whitespace()
        .map(|t| (t.as_ptr() as usize - line.as_ptr() as usize, t))
        .collect();
    let rest = |i: usize| toks.get(i).map_or("", |(at, _)| &line[*at..]);
    if let Some(level) = toks.iter().take(10).position(|(_, t)| is_level(t)) {
        let mut i = level + 1;
        let mut skipped = 0;
        while i < toks.len() && skipped < 4 {
            let t = toks[i].1;
            if t.starts_with('[') {
                // A bracketed group, over as many tokens as it spans.
                while i < toks.len() && !toks[i].1.ends_with(']') {
                    i += 1;
                }
                i += 1;
            } else if t == "-" {
                i += 1;
            } else if t.ends_with(':') && t.len() > 1 && !t.contains('/') {
                i += 1;
                break;
            } else if (t.contains('.') || t.contains('$'))
                && !t.contains('/')
                && toks.get(i + 1).is_some_and(|(_, n)| n.starts_with('['))
            {
                i += 1;
            } else {
                break;
            }
            skipped += 1;
        }
        return rest(i.min(toks.len()));
    }
    let mut i = toks.iter().take_while(|(_, t)| is_time_like(t)).count();
    if i == 0 {
        return line;
    }
    // host process[pid]: message
    if toks.get(i + 1).is_some_and(|(_, t)| t.ends_with(':')) {
        i += 2;
    } else if toks.get(i).is_some_and(|(_, t)| t.ends_with(':')) {
        i += 1;
    }
    rest(i.min(toks.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> BTreeMap<String, String> {
        let (msg, fields) = parts(line);
        assert_eq!(msg, message(line), "one message either way");
        fields
    }

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
        assert_eq!(
            message(r#"ts=1 msg="slow \"big\" query" took=3s"#),
            r#"slow "big" query"#,
            "escaped quotes stay in the message"
        );
        assert_eq!(
            message(r#"{"level":"warn","msg":"say \"hi\"\tnow"}"#),
            "say \"hi\"\tnow",
            "a JSON message with escapes is its decoded text, not the whole line"
        );
        assert_eq!(message("xmsg=1 msg=2"), "2", "a key is a whole word");
        assert_eq!(
            message("log=a message=b msg=c"),
            "c",
            "msg first, then message, then log"
        );
        assert_eq!(message("a=1 b=2"), "a=1 b=2");
        assert_eq!(message(r#"{"not":"a message"}"#), r#"{"not":"a message"}"#);
    }

    #[test]
    fn structured_fields_are_kept_beside_the_message() {
        let f = fields(
            r#"{"level":"error","msg":"payment failed","order":1234,"ok":false,"http":{"status":502,"path":"/pay"},"tags":["a"],"none":null}"#,
        );
        let want: Vec<(&str, &str)> = vec![
            ("http.path", "/pay"),
            ("http.status", "502"),
            ("level", "error"),
            ("ok", "false"),
            ("order", "1234"),
            ("tags", "[\"a\"]"),
        ];
        assert_eq!(
            f.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            want
        );
        let f = fields(r#"ts=1 level=warn msg="slow \"big\" query" took=3s path="/a b" bare"#);
        assert_eq!(f.get("took").map(String::as_str), Some("3s"));
        assert_eq!(f.get("path").map(String::as_str), Some("/a b"));
        assert_eq!(f.get("level").map(String::as_str), Some("warn"));
        assert!(!f.contains_key("msg") && !f.contains_key("bare"));
        assert!(
            fields("plain line here, a=b").is_empty(),
            "no message field: not logfmt"
        );
        assert!(fields(r#"{"not":"a message"}"#).is_empty());
        assert!(fields(r#"{"broken": "#).is_empty());
        assert!(fields(r#"msg="unterminated"#).is_empty());
    }

    #[test]
    fn headers_are_cut_without_a_format() {
        let cases = [
            (
                "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
                "mod_jk child workerEnv in error state 6",
            ),
            (
                "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating",
                "PacketResponder 1 for block blk_3 terminating",
            ),
            (
                "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster",
                "Created MRAppMaster",
            ),
            (
                "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
                "Invalid user webmaster from 173.234.31.186",
            ),
            (
                "17/06/09 20:10:40 INFO spark.SecurityManager: Changing view acls to: yarn,curi",
                "Changing view acls to: yarn,curi",
            ),
            (
                "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
                "Notification time out: 3200",
            ),
            (
                "nova-api.log.1 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38 113d - - -] 10.11.10.1 \"GET /v2\"",
                "10.11.10.1 \"GET /v2\"",
            ),
            ("no header at all here", "no header at all here"),
        ];
        for (line, want) in cases {
            assert_eq!(strip_header(line), want, "{line}");
        }
    }
}
