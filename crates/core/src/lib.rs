//! Nightshift's data model: the plain types every stage passes to the next.
//!
//! Time is always milliseconds since the Unix epoch ([`Millis`]). Resource identity follows
//! OpenTelemetry semantic conventions; see [`resource`] for the mapping from Prometheus labels.

pub mod alert;
pub mod incident;
pub mod resource;
pub mod series;
pub mod telemetry;
pub mod topology;

pub use alert::{Alert, AlertStatus};
pub use incident::{
    Anomaly, BlastRadius, Direction, Evidence, EvidenceKind, Hypothesis, Incident, IncidentStatus,
    SignalClass, TimelineEntry,
};
pub use resource::{Entity, EntityKind, Resource};
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
