//! What the window detectors (level shift, volatility shift, persist, trend) share: a sorted
//! ring of the latest values, steadied quartiles and the evidence-to-score curve.

use crate::AlarmDirection;
use serde::{Deserialize, Serialize};

/// Largest window or reference any of the window detectors keeps: 64 values sorted and in
/// arrival order is 1 KiB, half the per-series budget.
pub(crate) const MAX_RING: usize = 64;

/// Mean absolute deviation to standard deviation under a normal law: sqrt(pi / 2).
pub(crate) const MEAN_ABS_TO_SIGMA: f64 = 1.253_314_137_315_500_1;
/// Median absolute deviation to standard deviation under a normal law: 1 / Φ⁻¹(3/4).
pub(crate) const MEDIAN_ABS_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// Absolute part of the floors under every spread, so series sitting at exactly zero still
/// divide by something.
pub(crate) const ABS_FLOOR: f64 = 1e-9;

/// Maps evidence `e` (1 = the detector's flag threshold, e.g. ADTK's Q3 + c × IQR) to a score in
/// [0, 1]: 1 − 2^(−e³). So e = 1 scores exactly 0.5, e = 1.5 scores 0.90, e = 2 scores 0.996;
/// below e = 0.5 the score stays under 0.09. The cube keeps ordinary fluctuation near zero while
/// the flag itself sits at "worth a look".
pub(crate) fn evidence_score(e: f64) -> f64 {
    if e.is_nan() || e <= 0.0 {
        return 0.0;
    }
    1.0 - (-(e * e * e)).exp2()
}

/// Whether a change of sign `delta` is in a direction the caller alarms on.
pub(crate) fn is_harmful(alarm: AlarmDirection, delta: f64) -> bool {
    match alarm {
        AlarmDirection::Up => delta > 0.0,
        AlarmDirection::Down => delta < 0.0,
        AlarmDirection::Both => delta != 0.0,
    }
}

/// Four significant digits, switching to exponent notation for very large or small magnitudes,
/// so explanations stay short whatever the unit.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || !a.is_finite() {
        return format!("{x}");
    }
    if !(1e-4..1e6).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The latest `cap` values, kept both in arrival order (to know which one leaves) and sorted
/// (medians and quartiles read in O(1)). A push slides the new value past at most `cap`
/// others, which for the ≤ 64-value windows used here is short.
///
/// Deserialisation checks the invariants, so a damaged checkpoint is refused instead of
/// misbehaving later.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "SortedRingState")]
pub(crate) struct SortedRing {
    cap: usize,
    /// Index in `values` of the oldest value once full.
    head: usize,
    values: Vec<f64>,
    sorted: Vec<f64>,
}

#[derive(Deserialize)]
struct SortedRingState {
    cap: usize,
    head: usize,
    values: Vec<f64>,
    sorted: Vec<f64>,
}

impl TryFrom<SortedRingState> for SortedRing {
    type Error = &'static str;

    fn try_from(s: SortedRingState) -> Result<Self, Self::Error> {
        if s.cap == 0 || s.cap > MAX_RING {
            return Err("window capacity out of range");
        }
        if s.values.len() > s.cap || s.sorted.len() != s.values.len() {
            return Err("window lengths do not match");
        }
        if s.head >= s.cap || (s.values.len() < s.cap && s.head != 0) {
            return Err("window head out of range");
        }
        if s.values.iter().any(|v| !v.is_finite()) {
            return Err("window holds a non-finite value");
        }
        let mut check = s.values.clone();
        check.sort_unstable_by(f64::total_cmp);
        if check != s.sorted {
            return Err("sorted window does not match its values");
        }
        // Fresh vectors of exactly `cap`: the decoded ones may have grown past it, and the
        // memory budget counts capacity.
        let mut ring = SortedRing::new(s.cap);
        ring.head = s.head;
        ring.values.extend_from_slice(&s.values);
        ring.sorted.extend_from_slice(&s.sorted);
        Ok(ring)
    }
}

impl SortedRing {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, MAX_RING);
        Self {
            cap,
            head: 0,
            values: Vec::with_capacity(cap),
            sorted: Vec::with_capacity(cap),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.values.len() == self.cap
    }

    /// Adds a finite value; returns the value it pushed out once full.
    pub(crate) fn push(&mut self, x: f64) -> Option<f64> {
        if self.values.len() < self.cap {
            self.values.push(x);
            let j = self.sorted.partition_point(|v| *v < x);
            self.sorted.insert(j, x);
            return None;
        }
        let old = std::mem::replace(&mut self.values[self.head], x);
        // A compare instead of `%`: an integer division costs more than the rest of a push.
        self.head += 1;
        if self.head == self.cap {
            self.head = 0;
        }
        // The new value takes the leaving value's slot and slides to its place, insertion-sort
        // style: the values it passes move one slot back. Cheaper than a remove and an insert,
        // each of which moves the whole tail.
        let sorted = &mut self.sorted[..];
        let n = sorted.len();
        let mut k = sorted.partition_point(|v| *v < old).min(n - 1);
        if x > old {
            while k + 1 < n && sorted[k + 1] < x {
                sorted[k] = sorted[k + 1];
                k += 1;
            }
        } else {
            while k > 0 && sorted[k - 1] > x {
                sorted[k] = sorted[k - 1];
                k -= 1;
            }
        }
        sorted[k] = x;
        Some(old)
    }

    /// The values in ascending order.
    pub(crate) fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// The `q` quantile with linear interpolation between order statistics (the pandas and
    /// NumPy default, which ADTK's quartiles use); 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0.0;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        // Truncation is the floor here (pos ≥ 0), without a call to `floor`.
        let lo = (pos as usize).min(n - 1);
        let hi = (lo + 1).min(n - 1);
        let frac = pos - lo as f64;
        self.sorted[lo] + frac * (self.sorted[hi] - self.sorted[lo])
    }

    pub(crate) fn median(&self) -> f64 {
        let n = self.sorted.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => self.sorted[n / 2],
            _ => 0.5 * (self.sorted[n / 2 - 1] + self.sorted[n / 2]),
        }
    }

    /// Heap bytes held (both vectors at full capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.values.capacity() + self.sorted.capacity()) * std::mem::size_of::<f64>()
    }
}

/// How many reference spans the quartile averages of [`SteadyQuartiles`] reach back over:
/// the averaging memory is this many times the reference's length, in updates of it.
pub(crate) const QUARTILE_SPANS: usize = 4;

/// Exponentially weighted averages (over [`QUARTILE_SPANS`] times the span of the reference) of
/// a reference's first and third quartiles. Quartiles of 64 values wander enough that
/// Q3 + c × IQR, which multiplies that wander by c + 1, would flag several times ADTK's share
/// of plain noise; averaging gives them the steadiness of a few hundred values without holding
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SteadyQuartiles {
    q1: f64,
    q3: f64,
    n: u32,
}

impl SteadyQuartiles {
    /// The averaged (Q1, Q3).
    pub(crate) fn current(&self) -> (f64, f64) {
        (self.q1, self.q3)
    }

    /// Folds in the reference's quartiles, averaging over about `memory` calls. Called when
    /// the reference changes (the quartiles cannot move in between), once it holds at least
    /// `min` values.
    pub(crate) fn learn(&mut self, reference: &SortedRing, min: usize, memory: usize) {
        if reference.len() < min {
            return;
        }
        self.n = self.n.saturating_add(1);
        let a = if (self.n as usize) < memory {
            1.0 / f64::from(self.n)
        } else {
            1.0 / memory.max(1) as f64
        };
        self.q1 += a * (reference.quantile(0.25) - self.q1);
        self.q3 += a * (reference.quantile(0.75) - self.q3);
    }
}

/// The robust reference that the level-shift, volatility-shift, persist and trend detectors
/// judge a magnitude by (a |difference| of medians, a |log ratio| of spreads, a |change|, a
/// |slope|): the magnitudes seen, a ring of the detector's `history`, one learned every
/// `every` offers, and ADTK's `InterQuartileRangeAD` rule over their quartiles: a magnitude
/// beyond Q3 + c × IQR is unusual. `Q` says which quartiles: averaged over time
/// ([`SteadyQuartiles`], the default) or those of the magnitudes held now ([`HeldQuartiles`]).
/// The detector keeps its settings and passes them in, so the reference holds only what it
/// learned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct IqrReference<Q = SteadyQuartiles> {
    values: SortedRing,
    quartiles: Q,
    since: usize,
}

/// Which (Q1, Q3) an [`IqrReference`] judges by.
pub(crate) trait Quartiles: Default {
    /// Takes in the reference after it changed (`memory`: how many changes to average over).
    fn learn(&mut self, values: &SortedRing, min: usize, memory: usize);
    fn current(&self, values: &SortedRing) -> (f64, f64);
}

impl Quartiles for SteadyQuartiles {
    fn learn(&mut self, values: &SortedRing, min: usize, memory: usize) {
        SteadyQuartiles::learn(self, values, min, memory);
    }
    fn current(&self, _: &SortedRing) -> (f64, f64) {
        SteadyQuartiles::current(self)
    }
}

/// The quartiles of the magnitudes held now, not averaged: for a reference whose spread drifts
/// within a day (a daily curve's slopes), where an average would lag. Holds nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HeldQuartiles;

impl Quartiles for HeldQuartiles {
    fn learn(&mut self, _: &SortedRing, _: usize, _: usize) {}
    fn current(&self, values: &SortedRing) -> (f64, f64) {
        (values.quantile(0.25), values.quantile(0.75))
    }
}

/// Where a magnitude stands against an [`IqrReference`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct IqrJudgement {
    pub(crate) q1: f64,
    pub(crate) q3: f64,
    /// c × IQR, floored at the caller's floor.
    pub(crate) spread: f64,
}

impl IqrJudgement {
    /// How far `magnitude` lies beyond Q3, in spreads: 1 at Q3 + c × IQR.
    pub(crate) fn evidence(&self, magnitude: f64) -> f64 {
        (magnitude - self.q3) / self.spread
    }
}

impl<Q: Quartiles> IqrReference<Q> {
    /// An empty reference of `history` magnitudes.
    pub(crate) fn new(history: usize) -> Self {
        Self {
            values: SortedRing::new(history),
            quartiles: Q::default(),
            since: 0,
        }
    }

    /// Magnitudes held.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it holds at least `min` magnitudes, enough to judge by.
    pub(crate) fn ready(&self, min: usize) -> bool {
        self.values.len() >= min
    }

    /// Q3 + c × IQR, the spread c × IQR floored at `floor`.
    pub(crate) fn judge(&self, c: f64, floor: f64) -> IqrJudgement {
        let (q1, q3) = self.quartiles.current(&self.values);
        IqrJudgement {
            q1,
            q3,
            spread: (c * (q3 - q1)).max(floor),
        }
    }

    /// Counts one offer of `magnitude`; every `every`-th offer with `learn` enters the
    /// reference (and, once it holds `min`, the quartiles). An offer without `learn` (a flagged
    /// stretch, a frozen series) counts toward the stride but is not learned, so the reference
    /// never teaches itself an anomaly.
    pub(crate) fn offer(&mut self, magnitude: f64, learn: bool, every: usize, min: usize) {
        self.since += 1;
        if learn && self.since >= every {
            self.since = 0;
            self.values.push(magnitude);
            let memory = QUARTILE_SPANS * self.values.cap;
            self.quartiles.learn(&self.values, min, memory);
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Noise;

    #[test]
    fn sorted_ring_keeps_order_and_quartiles() {
        let mut r = SortedRing::new(5);
        let mut noise = Noise::new(1);
        let mut all = Vec::new();
        for _ in 0..200 {
            let x = (noise.uniform() * 10.0).round();
            let out = r.push(x);
            all.push(x);
            if all.len() > 5 {
                assert_eq!(out, Some(all[all.len() - 6]));
            }
            let mut want: Vec<f64> = all.iter().rev().take(5).copied().collect();
            want.sort_by(f64::total_cmp);
            assert_eq!(r.sorted(), &want[..]);
        }
        let mut q = SortedRing::new(4);
        for x in [4.0, 1.0, 3.0, 2.0] {
            q.push(x);
        }
        // NumPy: np.quantile([1, 2, 3, 4], [0.25, 0.5, 0.75]) = [1.75, 2.5, 3.25].
        assert_eq!(q.quantile(0.25), 1.75);
        assert_eq!(q.median(), 2.5);
        assert_eq!(q.quantile(0.75), 3.25);
    }

    #[test]
    fn damaged_ring_checkpoints_are_refused() {
        let bad = r#"{"cap":3,"head":0,"values":[1.0,2.0],"sorted":[2.0,1.0]}"#;
        assert!(serde_json::from_str::<SortedRing>(bad).is_err());
        let bad = r#"{"cap":2,"head":5,"values":[1.0,2.0],"sorted":[1.0,2.0]}"#;
        assert!(serde_json::from_str::<SortedRing>(bad).is_err());
        let bad = r#"{"cap":0,"head":0,"values":[],"sorted":[]}"#;
        assert!(serde_json::from_str::<SortedRing>(bad).is_err());
        let good = r#"{"cap":3,"head":0,"values":[2.0,1.0],"sorted":[1.0,2.0]}"#;
        let ring: SortedRing = serde_json::from_str(good).expect("valid ring");
        assert_eq!(ring.heap_bytes(), 2 * 3 * 8);
    }

    #[test]
    fn evidence_score_has_its_anchor_points() {
        assert_eq!(evidence_score(0.0), 0.0);
        assert_eq!(evidence_score(-3.0), 0.0);
        assert_eq!(evidence_score(f64::NAN), 0.0);
        assert_eq!(evidence_score(1.0), 0.5);
        assert!(evidence_score(0.5) < 0.09);
        assert!((evidence_score(1.5) - 0.904).abs() < 0.001);
        assert!(evidence_score(2.0) > 0.99);
    }

    #[test]
    fn numbers_read_short() {
        assert_eq!(fmt_num(100.94321), "100.9");
        assert_eq!(fmt_num(0.012345), "0.01235");
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(-2.5), "-2.5");
        assert_eq!(fmt_num(1.5e9), "1.500e9");
    }
}
