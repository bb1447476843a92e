//! Governance: what may run, when, and who decides. Every proposal becomes an action whose
//! state only moves forward (suggested; or pending → approved / rejected / refused /
//! cancelled), and every decision, refusal included, is an audit entry. Gates, checked at
//! proposal and again at approval: the kill switch, protected namespaces, change windows, the
//! approver's role, whether the incident still calls for it, and the runbook's limits (per
//! hour per runbook, per target and per namespace).

use crate::audit::{AuditError, AuditLog};
use crate::execute::{Execution, StepRecord};
use crate::plan::Proposal;
use crate::runbook::{Mode, Risk, Runbook};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const HOUR: Millis = 3_600_000;

/// When actions may run: days of the week (UTC, 0 = Monday) and minutes of the day.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeWindow {
    pub days: BTreeSet<u8>,
    pub start_minute: u16,
    pub end_minute: u16,
}

impl ChangeWindow {
    /// Reads `Mon-Fri 09:00-17:00` (or one day, `Sat 10:00-12:00`; UTC).
    pub fn parse(text: &str) -> Result<Self, String> {
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let bad = || format!("{text:?} is not a window such as \"Mon-Fri 09:00-17:00\" (UTC)");
        let (days, hours) = text.trim().split_once(' ').ok_or_else(bad)?;
        let day = |d: &str| {
            DAYS.iter()
                .position(|x| x.eq_ignore_ascii_case(d.trim()))
                .map(|p| p as u8)
                .ok_or_else(bad)
        };
        let days: BTreeSet<u8> = match days.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a <= b {
                    (a..=b).collect()
                } else {
                    (a..7).chain(0..=b).collect()
                }
            }
            None => [day(days)?].into(),
        };
        let minute = |t: &str| -> Result<u16, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (a, b) = hours.split_once('-').ok_or_else(bad)?;
        let (start_minute, end_minute) = (minute(a)?, minute(b)?);
        if start_minute >= end_minute {
            return Err(bad());
        }
        Ok(Self {
            days,
            start_minute,
            end_minute,
        })
    }

    pub fn contains(&self, ts: Millis) -> bool {
        let minutes = ts.div_euclid(60_000);
        let day = (minutes.div_euclid(1_440) + 3).rem_euclid(7) as u8; // 1970-01-01 was a Thursday
        let minute = minutes.rem_euclid(1_440) as u16;
        self.days.contains(&day) && (self.start_minute..self.end_minute).contains(&minute)
    }
}

/// The rules every action passes.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Stops every automatic action and cancels those waiting for approval.
    pub kill_switch: bool,
    /// Namespaces no action may touch.
    pub protected_namespaces: BTreeSet<String>,
    /// When actions may run; any time when empty.
    pub change_windows: Vec<ChangeWindow>,
    /// Who may approve, and up to which risk.
    pub approvers: BTreeMap<String, Risk>,
    /// While this file exists, the kill switch is on (an operator's `touch` stops everything).
    pub kill_switch_file: Option<PathBuf>,
}

impl Policy {
    /// Whether the kill switch is on: set here, or its file exists.
    pub fn killed(&self) -> bool {
        // A file that cannot be checked (no permission) counts as there: fail closed.
        self.kill_switch
            || self
                .kill_switch_file
                .as_ref()
                .is_some_and(|f| f.try_exists().unwrap_or(true))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A recommendation only (`mode: suggest`).
    Suggested,
    /// Waiting for someone with the role to approve it.
    Pending,
    /// Cleared to run (by a person, or on its own for `mode: auto`).
    Approved,
    Rejected,
    /// A gate stopped it.
    Refused,
    /// No longer called for (the incident resolved) or stopped by the kill switch.
    Cancelled,
    /// Its steps are running, or its verification is awaited.
    Running,
    /// It ran and its verification held.
    Fixed,
    /// A step failed or the verification did not hold: rolled back and escalated.
    Failed,
}

impl State {
    /// Every state, in the order an action may pass through them.
    pub const ALL: [State; 9] = [
        State::Suggested,
        State::Pending,
        State::Approved,
        State::Rejected,
        State::Refused,
        State::Cancelled,
        State::Running,
        State::Fixed,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Suggested => "suggested",
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Refused => "refused",
            State::Cancelled => "cancelled",
            State::Running => "running",
            State::Fixed => "fixed",
            State::Failed => "failed",
        }
    }
}

/// A proposal and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub state: State,
    pub proposal: Proposal,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Millis>,
    /// Why it was refused or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What running it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
}

#[derive(Debug, thiserror::Error)]
pub enum GovernError {
    #[error("there is no action {0}")]
    NotFound(String),
    #[error("action {id} is {}, not waiting for a decision", state.as_str())]
    NotPending { id: String, state: State },
    /// Who asked may not decide this (their role); the refusal is in the audit log.
    #[error("{0}")]
    Refused(String),
    /// The action may not run now (a gate, the kill switch, the incident resolved); it is
    /// refused or cancelled, and that is in the audit log.
    #[error("{0}")]
    Gate(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What the audit log keeps with a decision: the proposal, and why (the leading hypothesis with
/// its evidence, and the LLM's reasoning when one was used).
fn decision_detail(p: &Proposal) -> serde_json::Value {
    json!({"incident": p.incident, "runbook": p.runbook, "target": p.target, "steps": p.steps,
        "verify": p.verify, "why": p.context["incident"]["hypothesis"], "reasoning": p.reasoning})
}

/// What one approved action counted against the limits.
struct Done {
    ts: Millis,
    runbook: String,
    target: String,
    namespace: Option<String>,
}

/// Holds the actions, decides on them under the policy, and writes every decision to the
/// audit log.
pub struct Governor {
    pub policy: Policy,
    actions: BTreeMap<String, Action>,
    /// (incident, runbook) → the live action for it, so that updates do not propose it again.
    live: BTreeMap<(String, String), String>,
    done: Vec<Done>,
    next: u64,
    audit: AuditLog,
}

impl Governor {
    pub fn new(policy: Policy, audit: AuditLog) -> Self {
        Self {
            policy,
            actions: BTreeMap::new(),
            live: BTreeMap::new(),
            done: Vec::new(),
            next: 1,
            audit,
        }
    }

    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.actions.values()
    }

    pub fn action(&self, id: &str) -> Option<&Action> {
        self.actions.get(id)
    }

    /// Whether `incident` already has an action of `runbook` (so an offer gives that one).
    pub fn knows(&self, incident: &str, runbook: &str) -> bool {
        self.action_for(incident, runbook).is_some()
    }

    /// The action `incident` has of `runbook`, if any.
    pub fn action_for(&self, incident: &str, runbook: &str) -> Option<&Action> {
        self.live
            .get(&(incident.to_string(), runbook.to_string()))
            .and_then(|id| self.actions.get(id))
    }

    /// Writes a decision on action `id` to the audit log, before the action changes: when the
    /// log cannot be written, nothing is decided.
    fn write(
        &mut self,
        now: Millis,
        actor: &str,
        event: &str,
        id: &str,
        reason: &str,
    ) -> Result<(), AuditError> {
        let detail = self
            .actions
            .get(id)
            .map(|a| decision_detail(&a.proposal))
            .unwrap_or_default();
        self.audit
            .append(now, actor, event, Some(id), reason, detail)
            .map(|_| ())
    }

    /// The first gate `proposal` of `runbook` fails at `now`, if any. Only asks: nothing is
    /// decided or audited (a dry run shows it).
    pub fn gate(&self, runbook: &Runbook, proposal: &Proposal, now: Millis) -> Option<String> {
        let p = &self.policy;
        if p.killed() {
            return Some("the kill switch is on".into());
        }
        if let Some(why) = runbook.target.refuses(&proposal.target) {
            return Some(why);
        }
        // The target's namespace, and any a step names itself.
        let step_namespaces = proposal
            .steps
            .iter()
            .chain(&proposal.rollback)
            .filter_map(|s| s.with.get("namespace").and_then(|v| v.as_str()));
        if let Some(ns) = proposal
            .target
            .namespace
            .as_deref()
            .into_iter()
            .chain(step_namespaces)
            .find(|ns| p.protected_namespaces.contains(*ns))
        {
            return Some(format!("namespace {ns} is protected"));
        }
        if !p.change_windows.is_empty() && !p.change_windows.iter().any(|w| w.contains(now)) {
            return Some("outside every change window".into());
        }
        let recent: Vec<&Done> = self.done.iter().filter(|d| now - d.ts < HOUR).collect();
        let l = &runbook.limits;
        let over = |limit: Option<u32>, n: usize, what: &str| {
            limit
                .filter(|max| n >= *max as usize)
                .map(|max| format!("{what}: {n} of at most {max} in the last hour"))
        };
        let target = proposal.target.key();
        over(
            l.per_hour,
            recent.iter().filter(|d| d.runbook == runbook.name).count(),
            &format!("limit of runbook {}", runbook.name),
        )
        .or_else(|| {
            over(
                l.per_target_per_hour,
                recent
                    .iter()
                    .filter(|d| d.runbook == runbook.name && d.target == target)
                    .count(),
                &format!("limit per target ({target})"),
            )
        })
        .or_else(|| {
            let ns = proposal.target.namespace.as_ref()?;
            over(
                l.per_namespace_per_hour,
                recent
                    .iter()
                    .filter(|d| d.runbook == runbook.name && d.namespace.as_ref() == Some(ns))
                    .count(),
                &format!("limit per namespace ({ns})"),
            )
        })
        .or_else(|| {
            let max = l.max_replicas?;
            proposal
                .steps
                .iter()
                .filter(|s| s.uses == "kubernetes.scale")
                // A count, or the most a change may reach.
                .flat_map(|s| ["replicas", "max"].map(|k| (k, &s.with[k])))
                .filter_map(|(k, v)| {
                    v.as_str()
                        .and_then(|r| r.parse::<u32>().ok())
                        .or(v.as_u64().map(|r| r as u32))
                        .map(|r| (k, r))
                })
                .find(|(_, r)| *r > max)
                .map(|(k, r)| {
                    let what = if k == "max" { "a max of " } else { "" };
                    format!("{what}{r} replicas is over the runbook's max_replicas of {max}")
                })
        })
    }

    /// Takes a proposal: a suggestion, an action waiting for approval, or (for `mode: auto`)
    /// one approved on its own when every gate passes. A proposal whose (incident, runbook)
    /// already has a live action gives that action.
    pub fn offer(
        &mut self,
        runbook: &Runbook,
        proposal: Proposal,
        now: Millis,
    ) -> Result<&Action, GovernError> {
        let key = (proposal.incident.clone(), proposal.runbook.clone());
        if let Some(id) = self.live.get(&key) {
            return Ok(&self.actions[id]);
        }
        let id = format!("act-{:04}", self.next);
        let actor = format!("runbook:{}", runbook.name);
        let (state, note) = match runbook.mode {
            Mode::Suggest => (State::Suggested, None),
            Mode::Approve => (State::Pending, None),
            Mode::Auto if runbook.risk != Risk::Low => (State::Pending, None),
            // Started by telemetry nobody vouched for: a person decides.
            Mode::Auto if proposal.untrusted.is_some() => {
                (State::Pending, proposal.untrusted.clone())
            }
            Mode::Auto => match self.gate(runbook, &proposal, now) {
                Some(why) => (State::Refused, Some(why)),
                None => (State::Approved, None),
            },
        };
        let reason = format!(
            "incident {}: {} on {} ({})",
            proposal.incident, proposal.target.cause, proposal.target.name, runbook.description
        );
        let action = Action {
            id: id.clone(),
            state,
            created_at: now,
            decided_by: (state == State::Approved).then(|| "nightshift".to_string()),
            decided_at: (state == State::Approved).then_some(now),
            note: note.clone(),
            execution: None,
            proposal,
        };
        let event = match state {
            State::Suggested => "suggested",
            State::Pending => "proposed",
            State::Approved => "approved",
            _ => "refused",
        };
        let why = match (&note, state) {
            (None, _) => reason.clone(),
            (Some(n), State::Refused) => format!("{reason}; refused: {n}"),
            (Some(n), _) => format!("{reason}; waits for approval: {n}"),
        };
        self.audit.append(
            now,
            &actor,
            event,
            Some(&id),
            &why,
            decision_detail(&action.proposal),
        )?;
        self.actions.insert(id.clone(), action);
        self.next += 1;
        // One action per incident and runbook, whatever became of it: a refusal is not
        // retried (nor audited again) on every update of the incident.
        self.live.insert(key, id.clone());
        if state == State::Approved {
            self.count(&id, now);
        }
        Ok(&self.actions[&id])
    }

    fn count(&mut self, id: &str, now: Millis) {
        let a = &self.actions[id];
        self.done.push(Done {
            ts: now,
            runbook: a.proposal.runbook.clone(),
            target: a.proposal.target.key(),
            namespace: a.proposal.target.namespace.clone(),
        });
        self.done.retain(|d| now - d.ts < HOUR);
    }

    fn pending(&self, id: &str) -> Result<&Action, GovernError> {
        let a = self
            .actions
            .get(id)
            .ok_or_else(|| GovernError::NotFound(id.into()))?;
        if a.state != State::Pending {
            return Err(GovernError::NotPending {
                id: id.into(),
                state: a.state,
            });
        }
        Ok(a)
    }

    fn decide(&mut self, id: &str, state: State, who: &str, note: Option<String>, now: Millis) {
        if let Some(a) = self.actions.get_mut(id) {
            a.state = state;
            a.decided_by = Some(who.to_string());
            a.decided_at = Some(now);
            a.note = note;
        }
    }

    /// `who` approves action `id`. Refused (and audited) when `who` may not approve its risk, a
    /// gate fails, or `still_called_for` is false (the incident resolved meanwhile: the action
    /// is then cancelled).
    pub fn approve(
        &mut self,
        runbook: &Runbook,
        id: &str,
        who: &str,
        still_called_for: bool,
        now: Millis,
    ) -> Result<&Action, GovernError> {
        let a = self.pending(id)?;
        let risk = a.proposal.risk;
        let may = self
            .policy
            .approvers
            .get(who)
            .is_some_and(|max| *max >= risk);
        if !may {
            let why = format!("{who} may not approve a {} risk action", risk.as_str());
            // Not the action's refusal: it still waits for someone who may.
            self.write(now, who, "not_allowed", id, &why)?;
            return Err(GovernError::Refused(why));
        }
        if !still_called_for {
            let why = "the incident no longer calls for it (resolved)".to_string();
            self.write(now, who, "cancelled", id, &why)?;
            self.decide(id, State::Cancelled, who, Some(why.clone()), now);
            return Err(GovernError::Gate(why));
        }
        if let Some(why) = self.gate(runbook, &self.actions[id].proposal, now) {
            self.write(now, who, "refused", id, &why)?;
            self.decide(id, State::Refused, who, Some(why.clone()), now);
            return Err(GovernError::Gate(why));
        }
        self.write(now, who, "approved", id, "approved")?;
        self.decide(id, State::Approved, who, None, now);
        self.count(id, now);
        Ok(&self.actions[id])
    }

    /// `who` rejects action `id`.
    pub fn reject(
        &mut self,
        id: &str,
        who: &str,
        reason: &str,
        now: Millis,
    ) -> Result<&Action, GovernError> {
        self.pending(id)?;
        self.write(now, who, "rejected", id, reason)?;
        self.decide(id, State::Rejected, who, Some(reason.to_string()), now);
        Ok(&self.actions[id])
    }

    /// Turns the kill switch on or off; turning it on cancels every action waiting for approval.
    pub fn kill_switch(
        &mut self,
        on: bool,
        who: &str,
        now: Millis,
    ) -> Result<Vec<String>, GovernError> {
        self.audit.append(
            now,
            who,
            if on {
                "kill_switch_on"
            } else {
                "kill_switch_off"
            },
            None,
            "",
            serde_json::Value::Null,
        )?;
        self.policy.kill_switch = on;
        let mut cancelled = Vec::new();
        if on {
            let waiting: Vec<String> = self
                .actions
                .values()
                .filter(|a| a.state == State::Pending)
                .map(|a| a.id.clone())
                .collect();
            for id in waiting {
                self.write(now, who, "cancelled", &id, "the kill switch is on")?;
                self.decide(
                    &id,
                    State::Cancelled,
                    who,
                    Some("the kill switch is on".into()),
                    now,
                );
                cancelled.push(id);
            }
        }
        Ok(cancelled)
    }

    /// Action `id`, approved, starts running.
    pub fn start(&mut self, id: &str, now: Millis) -> Result<&Action, GovernError> {
        let a = self
            .actions
            .get(id)
            .ok_or_else(|| GovernError::NotFound(id.into()))?;
        if a.state != State::Approved {
            return Err(GovernError::NotPending {
                id: id.into(),
                state: a.state,
            });
        }
        if self.policy.killed() {
            let why = "the kill switch is on".to_string();
            self.write(now, "nightshift", "cancelled", id, &why)?;
            self.decide(id, State::Cancelled, "nightshift", Some(why.clone()), now);
            return Err(GovernError::Gate(why));
        }
        self.write(
            now,
            "nightshift",
            "started",
            id,
            "approved; running its steps",
        )?;
        let a = self.actions.get_mut(id).expect("looked up above");
        a.state = State::Running;
        Ok(a)
    }

    /// Writes what one step of running action `id` sent and got to the audit log.
    pub fn step(
        &mut self,
        id: &str,
        record: &StepRecord,
        rollback: bool,
        now: Millis,
    ) -> Result<(), GovernError> {
        let event = match (rollback, record.error.is_some(), record.ran) {
            (_, true, false) => "step_not_run",
            (_, false, false) => "step_skipped",
            (false, false, true) => "step",
            (false, true, true) => "step_failed",
            (true, false, true) => "rollback_step",
            (true, true, true) => "rollback_step_failed",
        };
        let why = record.error.clone().unwrap_or_else(|| record.uses.clone());
        self.audit.append(
            now,
            "nightshift",
            event,
            Some(id),
            &why,
            json!({"step": record.id, "uses": record.uses, "request": record.request,
                "output": record.output, "error": record.error}),
        )?;
        Ok(())
    }

    /// Running action `id` is done: fixed, or not (then rolled back and escalated).
    pub fn finish(
        &mut self,
        id: &str,
        execution: Execution,
        now: Millis,
    ) -> Result<&Action, GovernError> {
        // What ran is a fact, not a decision: it is kept with the action even when the audit
        // log cannot take it (the error says so).
        let a = self
            .actions
            .get_mut(id)
            .ok_or_else(|| GovernError::NotFound(id.into()))?;
        a.state = if execution.fixed {
            State::Fixed
        } else {
            State::Failed
        };
        let summary = execution.summary.clone();
        let detail = json!({"check": execution.check, "verified": execution.verified});
        a.execution = Some(execution);
        let fixed = a.state == State::Fixed;
        self.audit.append(
            now,
            "nightshift",
            if fixed { "fixed" } else { "not_fixed" },
            Some(id),
            &summary,
            detail,
        )?;
        if !fixed {
            self.audit.append(
                now,
                "nightshift",
                "escalated",
                Some(id),
                "the action did not fix the incident; a person must take over",
                serde_json::Value::Null,
            )?;
        }
        Ok(&self.actions[id])
    }

    /// Takes back actions kept from an earlier run (the store's), so that ids go on, limits
    /// count what ran in the last hour and an incident is not offered the same runbook twice.
    /// An action cut off while running is marked failed and escalated; one approved but not
    /// started is cancelled. Gives the ids of the actions so changed.
    pub fn restore(
        &mut self,
        actions: Vec<Action>,
        now: Millis,
    ) -> Result<Vec<String>, AuditError> {
        let mut changed = Vec::new();
        for mut a in actions {
            if let Some(n) =
                a.id.strip_prefix("act-")
                    .and_then(|n| n.parse::<u64>().ok())
            {
                self.next = self.next.max(n + 1);
            }
            if a.state == State::Running {
                a.state = State::Failed;
                a.note = Some("Nightshift stopped while it ran; check the target by hand".into());
                changed.push(a.id.clone());
            }
            // Approved but never started: the moment has passed; it is not started unasked.
            if a.state == State::Approved && a.execution.is_none() {
                a.state = State::Cancelled;
                a.note = Some("Nightshift stopped before it started; propose it again".into());
                changed.push(a.id.clone());
            }
            let ran = matches!(
                a.state,
                State::Approved | State::Fixed | State::Failed | State::Running
            );
            if let Some(ts) = a.decided_at.filter(|ts| ran && now - ts < HOUR) {
                self.done.push(Done {
                    ts,
                    runbook: a.proposal.runbook.clone(),
                    target: a.proposal.target.key(),
                    namespace: a.proposal.target.namespace.clone(),
                });
            }
            self.live.insert(
                (a.proposal.incident.clone(), a.proposal.runbook.clone()),
                a.id.clone(),
            );
            self.actions.insert(a.id.clone(), a);
        }
        for id in &changed {
            let a = &self.actions[id];
            let why = a.note.clone().unwrap_or_default();
            let event = if a.state == State::Failed {
                "escalated"
            } else {
                "cancelled"
            };
            self.write(now, "nightshift", event, id, &why)?;
        }
        Ok(changed)
    }
}
