//! PromQL's semantics where the derivation needs them: counter increases with resets,
//! `increase(...[5m])`, `histogram_quantile` and label-value quoting for the queries each signal
//! carries.

use nightshift_core::Millis;
use std::collections::VecDeque;

/// How long a sample stays current after it was scraped: Prometheus's default lookback delta.
/// A counter whose previous sample is older gives no rate (the gap hides what happened), and a
/// capacity gauge (limits, totals) older than this no longer serves as a denominator.
pub(crate) const LOOKBACK: Millis = 5 * 60_000;
/// The window of `service:restarts:increase5m`.
pub(crate) const RESTART_WINDOW: Millis = 5 * 60_000;

/// A counter's increase from `previous` to `value`: a drop means the process restarted and
/// counted from zero again (the reset handling of Prometheus's `extrapolatedRate`).
pub(crate) fn counter_increase(previous: f64, value: f64) -> f64 {
    if value < previous {
        value
    } else {
        value - previous
    }
}

/// Reset-corrected increase over the last five minutes: the running total now minus the total
/// at the last sample at or before the window start (or the first sample of a younger series).
pub(crate) fn restart_increase(window: &VecDeque<(Millis, f64)>, total: f64, now: Millis) -> f64 {
    let start = now - RESTART_WINDOW;
    let base = window
        .iter()
        .take_while(|(t, _)| *t <= start)
        .last()
        .or_else(|| window.front())
        .map_or(total, |(_, v)| *v);
    (total - base).max(0.0)
}

/// Prometheus's `histogram_quantile` over classic buckets given as `(upper bound, cumulative
/// count or rate)`, in any order. Follows `bucketQuantile` in Prometheus's
/// `promql/quantile.go`: needs a `+Inf` bucket, repairs non-monotonic counts, interpolates
/// linearly inside the bucket holding the rank, returns the last finite bound when the rank
/// falls in the `+Inf` bucket. `None` where Prometheus returns NaN (no `+Inf` bucket, fewer
/// than two buckets, no observations).
pub fn histogram_quantile(q: f64, buckets: &mut [(f64, f64)]) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = buckets.len();
    if n < 2 || buckets[n - 1].0 != f64::INFINITY {
        return None;
    }
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        max = max.max(b.1);
        b.1 = max;
    }
    let observations = buckets[n - 1].1;
    if observations.is_nan() || observations <= 0.0 {
        return None;
    }
    let mut rank = q * observations;
    let b = buckets.partition_point(|(_, c)| *c < rank);
    if b >= n - 1 {
        return Some(buckets[n - 2].0);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    if count <= 0.0 {
        return Some(start);
    }
    Some(start + (end - start) * (rank / count))
}

/// Escapes a label value for a PromQL string literal.
pub(crate) fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
