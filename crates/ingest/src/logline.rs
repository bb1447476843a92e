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
