#![doc = include_str!("../README.md")]

pub mod alert;
pub mod facts;
pub mod hash;
pub mod incident;
pub mod query;
pub mod resource;
pub mod rng;
pub mod series;
pub mod telemetry;
pub mod topology;
pub mod yaml;

pub use alert::{Alert, AlertStatus};
pub use facts::{AlertFact, EdgeFact, EntityFacts, EventFact, LogFact, SeriesFact};
pub use incident::{
    Anomaly, BlastRadius, BurnSeverity, CAUSES, Direction, Evidence, EvidenceKind, Hypothesis,
    Incident, IncidentStatus, InhibitedAlert, Priority, SignalClass, SimilarIncident, SloBurn,
    TimelineEntry, cause,
};
pub use resource::{Entity, EntityKind, Resource};
pub use rng::SplitMix64;
pub use series::{Sample, SeriesKey};
pub use telemetry::{
    Change, ChangeKind, Event, EventType, LogPattern, LogRecord, Severity, SpanEdge,
};
pub use topology::Topology;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// One minute in [`Millis`].
pub const MINUTE: Millis = 60_000;

/// Formats a duration in milliseconds the way an operator reads it: `1h05m`, `3m20s`, `45s`.
pub fn format_duration(ms: Millis) -> String {
    let neg = ms < 0;
    let s = ms.unsigned_abs() / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let body = if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        if sec > 0 {
            format!("{m}m{sec:02}s")
        } else {
            format!("{m}m")
        }
    } else {
        format!("{sec}s")
    };
    if neg { format!("-{body}") } else { body }
}

/// Formats a value compactly for one-line evidence.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Whether `name` is an identifier, `[a-zA-Z_][a-zA-Z0-9_]*`: a Prometheus label name, an
/// Ansible variable name.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// 64-bit FNV-1a: a stable hash for fingerprints that must not change between releases
/// (std's `DefaultHasher` makes no such promise).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses `90s`, `15m`, `2h`, `1h30m`, `500ms` or `1d` into milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. 90s, 15m, 2h, 1h30m)".to_string());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < bytes.len() {
        let num_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if num_start == i {
            return Err(format!(
                "bad duration {text:?}: expected a number at {:?}",
                &s[num_start..]
            ));
        }
        let value: i64 = s[num_start..i]
            .parse()
            .map_err(|_| format!("bad duration {text:?}: number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "bad duration {text:?}: missing unit (expected ms, s, m, h or d, as in 90s or 15m)"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {other:?} (expected ms, s, m, h or d)"
                ));
            }
        };
        total = value
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("bad duration {text:?}: too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        assert_eq!(format_duration(45_000), "45s");
        assert_eq!(format_duration(200_000), "3m20s");
        assert_eq!(format_duration(3_900_000), "1h05m");
        assert_eq!(format_duration(-60_000), "-1m");
    }
}
