//! When hits become an event and when the event ends: the one rule the ensemble and the robust
//! baseline share. A point "hits" when its score reaches the detector's hit score; an event
//! starts when enough of the last few points hit (a single blip is not an event) and ends after
//! a run of points that do not.

use serde::{Deserialize, Serialize};

/// Where a series is in the event cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventPhase {
    Normal,
    /// The first point of an event.
    Onset,
    Ongoing,
}

/// The entry and exit rule: an event starts when `hits_for_event` of the last `window` points
/// hit, and ends after `quiet_to_end` points in a row that do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRule {
    pub hits_for_event: u32,
    /// Points remembered for the entry rule, 1 to 31.
    pub window: u32,
    pub quiet_to_end: u32,
}

impl EventRule {
    /// The hits remembered, as a mask of the last `window` points.
    fn mask(&self) -> u32 {
        (1u32 << self.window.clamp(1, 31)) - 1
    }
}

/// One series' place in the cycle of an [`EventRule`]: the recent hits, the quiet points since
/// the last hit and whether an event is going on. Twelve bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventTracker {
    hits: u32,
    quiet: u32,
    in_event: bool,
}

impl EventTracker {
    /// Takes one point: `hit` when it reached the hit score, `restart` when it opens an event
    /// on its own whatever the history (a record high, say), even during one.
    ///
    /// Onsets fall on hit points only: the count of hits rises only when one comes in, and
    /// an event's end forgets the history.
    pub(crate) fn step(&mut self, rule: &EventRule, hit: bool, restart: bool) -> EventPhase {
        self.hits = ((self.hits << 1) | u32::from(hit)) & rule.mask();
        if restart || (!self.in_event && self.hits.count_ones() >= rule.hits_for_event) {
            self.in_event = true;
            self.quiet = 0;
            EventPhase::Onset
        } else if self.in_event {
            self.quiet = if hit { 0 } else { self.quiet.saturating_add(1) };
            if self.quiet >= rule.quiet_to_end {
                self.end();
                EventPhase::Normal
            } else {
                EventPhase::Ongoing
            }
        } else {
            EventPhase::Normal
        }
    }

    /// Ends the event going on, if any, for a reason of the detector's own (the level became
    /// the new normal), and forgets the hits seen.
    pub(crate) fn end(&mut self) {
        self.in_event = false;
        self.hits = 0;
    }

    pub(crate) fn in_event(&self) -> bool {
        self.in_event
    }

    /// Whether the last point hit.
    pub(crate) fn last_hit(&self) -> bool {
        self.hits & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: EventRule = EventRule {
        hits_for_event: 3,
        window: 4,
        quiet_to_end: 2,
    };

    fn phases(rule: &EventRule, hits: &str) -> String {
        let mut t = EventTracker::default();
        hits.chars()
            .map(|c| match t.step(rule, c == 'x', c == '!') {
                EventPhase::Normal => '.',
                EventPhase::Onset => 'O',
                EventPhase::Ongoing => '-',
            })
            .collect()
    }

    #[test]
    fn an_event_needs_enough_recent_hits_and_ends_after_a_quiet_run() {
        assert_eq!(phases(&RULE, "x.x.x.x.x"), ".........", "never 3 of 4");
        assert_eq!(phases(&RULE, "xx.x.xx..x"), "...O----..");
        assert_eq!(phases(&RULE, "xxx..xxx"), "..O-...O");
    }

    #[test]
    fn a_restart_opens_an_event_at_once_even_during_one() {
        assert_eq!(phases(&RULE, "!..!x.."), "O-.O--.");
    }

    #[test]
    fn a_window_past_the_mask_is_clamped_and_one_point_can_be_an_event() {
        let wide = EventRule {
            hits_for_event: 31,
            window: 99,
            quiet_to_end: 1,
        };
        assert_eq!(phases(&wide, &"x".repeat(31))[30..], *"O");
        let single = EventRule {
            hits_for_event: 1,
            window: 1,
            quiet_to_end: 1,
        };
        assert_eq!(phases(&single, "x.x"), "O.O");
    }

    #[test]
    fn an_end_forgets_the_hits() {
        let mut t = EventTracker::default();
        for _ in 0..3 {
            t.step(&RULE, true, false);
        }
        assert!(t.in_event());
        t.end();
        assert!(!t.in_event() && !t.last_hit());
        assert_eq!(t.step(&RULE, true, false), EventPhase::Normal);
    }
}
