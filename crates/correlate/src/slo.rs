//! Error-budget burn rates per service, alerted on as the Google SRE workbook's "multiwindow,
//! multi-burn-rate alerts" do (chapter 5, "Alerting on SLOs"): a burn rate is the error ratio
//! over a window divided by the error budget (1 − objective). A **page** needs 14.4× over both
//! the last hour and the last 5 minutes (2% of a 30-day budget spent in an hour, and still
//! going on); a **ticket** needs 6× over both the last 6 hours and the last 30 minutes (5% of the
//! budget in 6 hours). The short window makes the alert stop soon after the burning does.
//!
//! Errors and requests are summed per minute, so a window's ratio weighs each minute by its
//! traffic, as `sum(rate(errors)) / sum(rate(requests))` over the window would.

use nightshift_core::{BurnSeverity, MINUTE, Millis, SloBurn};
use std::collections::{BTreeMap, VecDeque};

/// The longest window kept.
const HORIZON: Millis = 6 * 60 * MINUTE;

#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    start: Millis,
    requests: f64,
    errors: f64,
}

/// Per-service minute sums of requests and errors over the last 6 hours.
#[derive(Debug, Clone)]
pub struct SloTracker {
    objective: f64,
    services: BTreeMap<String, VecDeque<Minute>>,
}

impl SloTracker {
    /// `objective` is the share of requests that must succeed, in (0, 1).
    pub fn new(objective: f64) -> Self {
        Self {
            objective: objective.clamp(0.0, 0.999_999),
            services: BTreeMap::new(),
        }
    }

    pub fn objective(&self) -> f64 {
        self.objective
    }

    /// One evaluation of a service's traffic: `requests` per second and the share of them that
    /// failed. Samples are summed per minute of `ts`.
    pub fn observe(&mut self, service: &str, ts: Millis, requests: f64, error_ratio: f64) {
        if !(requests.is_finite() && error_ratio.is_finite()) || requests < 0.0 {
            return;
        }
        let minutes = match self.services.get_mut(service) {
            Some(m) => m,
            None => self.services.entry(service.to_string()).or_default(),
        };
        let start = ts - ts.rem_euclid(MINUTE);
        match minutes.back_mut() {
            Some(m) if m.start == start => {
                m.requests += requests;
                m.errors += requests * error_ratio.clamp(0.0, 1.0);
            }
            Some(m) if m.start > start => return,
            _ => minutes.push_back(Minute {
                start,
                requests,
                errors: requests * error_ratio.clamp(0.0, 1.0),
            }),
        }
        while minutes.front().is_some_and(|m| start - m.start >= HORIZON) {
            minutes.pop_front();
        }
    }

    /// The burn rate of `service` over the `window` ending at `now`, if it had traffic.
    pub fn burn(&self, service: &str, now: Millis, window: Millis) -> Option<f64> {
        let minutes = self.services.get(service)?;
        let (mut requests, mut errors) = (0.0, 0.0);
        for m in minutes.iter().rev().take_while(|m| now - m.start < window) {
            requests += m.requests;
            errors += m.errors;
        }
        (requests > 0.0).then(|| errors / requests / (1.0 - self.objective))
    }

    /// The service's burn at `now` when it crosses a page or ticket level.
    pub fn alerting(&self, service: &str, now: Millis) -> Option<SloBurn> {
        let b = |w| self.burn(service, now, w).unwrap_or(0.0);
        let (burn_5m, burn_30m, burn_1h, burn_6h) =
            (b(5 * MINUTE), b(30 * MINUTE), b(60 * MINUTE), b(HORIZON));
        let severity = if burn_1h >= 14.4 && burn_5m >= 14.4 {
            BurnSeverity::Page
        } else if burn_6h >= 6.0 && burn_30m >= 6.0 {
            BurnSeverity::Ticket
        } else {
            return None;
        };
        Some(SloBurn {
            service: service.to_string(),
            objective: self.objective,
            severity,
            burn_5m,
            burn_30m,
            burn_1h,
            burn_6h,
            ts: now,
        })
    }

    /// Bytes held, roughly.
    pub fn state_bytes(&self) -> usize {
        self.services
            .iter()
            .map(|(k, v)| k.len() + v.len() * std::mem::size_of::<Minute>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `service` 100 requests/s at `ratio` errors, every 15 s over [from, to).
    fn feed(t: &mut SloTracker, service: &str, from: Millis, to: Millis, ratio: f64) {
        let mut ts = from;
        while ts < to {
            t.observe(service, ts, 100.0, ratio);
            ts += 15_000;
        }
    }

    #[test]
    fn a_fast_burn_pages_and_stops_paging_soon_after_it_ends() {
        let mut t = SloTracker::new(0.999);
        feed(&mut t, "api", 0, 120 * MINUTE, 0.0005);
        assert_eq!(
            t.alerting("api", 120 * MINUTE),
            None,
            "half the budget rate"
        );
        // 2% errors: 20× the budget rate.
        feed(&mut t, "api", 120 * MINUTE, 125 * MINUTE, 0.02);
        let now = 125 * MINUTE - 1;
        assert!((t.burn("api", now, 5 * MINUTE).unwrap() - 20.0).abs() < 1e-9);
        // Over the hour: 5 minutes at 20× and 55 at 0.5×.
        let hour = t.burn("api", now, 60 * MINUTE).unwrap();
        assert!(
            (hour - (5.0 * 20.0 + 55.0 * 0.5) / 60.0).abs() < 1e-9,
            "{hour}"
        );
        assert_eq!(
            t.alerting("api", now),
            None,
            "the hour has not burnt enough yet"
        );
        feed(&mut t, "api", 125 * MINUTE, 170 * MINUTE, 0.02);
        let page = t.alerting("api", 170 * MINUTE - 1).expect("pages");
        assert_eq!(page.severity, BurnSeverity::Page);
        assert!(page.summary().contains("over 1h"), "{}", page.summary());
        // Burning stops: the 5-minute window clears the page within minutes.
        feed(&mut t, "api", 170 * MINUTE, 176 * MINUTE, 0.0);
        assert_ne!(
            t.alerting("api", 176 * MINUTE - 1).map(|b| b.severity),
            Some(BurnSeverity::Page)
        );
    }

    #[test]
    fn a_slow_burn_raises_a_ticket() {
        let mut t = SloTracker::new(0.999);
        // 0.8% errors for 6 hours: 8×, under the page level, over the ticket level.
        feed(&mut t, "api", 0, 360 * MINUTE, 0.008);
        let b = t.alerting("api", 360 * MINUTE - 1).expect("a ticket");
        assert_eq!(b.severity, BurnSeverity::Ticket);
        assert!((b.burn_6h - 8.0).abs() < 1e-6, "{b:?}");
    }

    #[test]
    fn bad_values_and_unknown_services_are_ignored() {
        let mut t = SloTracker::new(0.999);
        t.observe("api", 0, f64::NAN, 0.5);
        t.observe("api", 0, 10.0, f64::INFINITY);
        t.observe("api", 0, -1.0, 0.5);
        assert_eq!(t.burn("api", 0, MINUTE), None);
        assert_eq!(t.burn("nobody", 0, MINUTE), None);
        // Old minutes leave the horizon.
        feed(&mut t, "api", 0, 7 * 60 * MINUTE, 0.0);
        assert!(t.state_bytes() <= 3 + 360 * std::mem::size_of::<Minute>());
    }
}
