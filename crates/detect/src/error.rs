//! Why a detector refused an input point.

use nightshift_core::Millis;

/// An input the detectors cannot learn from. Derivation never fails (it drops such samples and
/// counts them); detectors report them so the caller decides whether to log or skip.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum DetectError {
    /// NaN or infinite values carry no level information (Prometheus uses NaN as a staleness marker).
    #[error("value {0} is not a finite number")]
    NonFinite(f64),
    /// Streaming state assumes time moves forward; a repeated or earlier timestamp is refused.
    #[error("point at {ts} ms is not after the previous point at {last} ms")]
    OutOfOrder { ts: Millis, last: Millis },
    /// Beyond ±[`MAX_MAGNITUDE`]: no metric is that large, and the squares and sums a detector
    /// keeps of it would overflow to infinity.
    #[error("value {0} is beyond ±1e100, the largest magnitude a detector accepts")]
    OutOfRange(f64),
    /// A vector with another number of values than the detector was built for.
    #[error("a vector of {got} values where {expected} were expected")]
    WrongDimensions { expected: usize, got: usize },
}

/// The largest magnitude a detector accepts: its square, and sums of many squares, stay finite.
pub const MAX_MAGNITUDE: f64 = 1e100;
