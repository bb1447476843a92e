//! Remediation in `serve`: each incident update is matched against the runbooks; what they
//! propose becomes an action under the governor (suggested, waiting for approval, or approved
//! on its own for `auto` runbooks within their limits). Approved actions run in the background:
//! their steps, then the verification, then the rollback and an escalation when it fails.
//! Every action is kept in the store as it changes, and every decision in the audit log.

use crate::ServerError;
use crate::config::{Approver, Config};
use crate::now_ms;
use axum::http::StatusCode;
use nightshift_act::execute::{self, Check, Executor, Polling, Verifier};
use nightshift_act::govern::GovernError;
use nightshift_act::plan::{Workload, Workloads};
use nightshift_act::{Action, AuditLog, Governor, Runbook, State};
use nightshift_core::{Alert, Change, ChangeKind, Incident, IncidentStatus};
use nightshift_store::{AlertFilter, SqliteStore, Store, StoredAction};
use sha2::Digest;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A refusal to answer with: its status and message.
pub(crate) type Refusal = (StatusCode, String);

/// Feeds a fix back to the pipeline as a change, so that the incident's resolution (and later
/// incidents' "what fixed it last time") names it.
pub(crate) type FeedChange = Box<dyn Fn(Change) + Send + Sync>;

/// The most services' workloads remembered from the Kubernetes API.
const MAX_WATCHED_WORKLOADS: usize = 50_000;

/// Where services run, from what Nightshift trusts: the configuration (`act.workloads`) and the
/// Kubernetes API's pods, which win where both say. What places a runbook's target; alert
/// labels never do.
pub(crate) struct Placed {
    configured: Workloads,
    watched: Mutex<Workloads>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl Placed {
    pub(crate) fn new(
        configured: Workloads,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Arc<Self> {
        Arc::new(Self {
            configured,
            watched: Mutex::new(Workloads::new()),
            dropped,
        })
    }

    /// Takes what the pods say; a new service over the bound is counted, not remembered.
    pub(crate) fn observe(&self, found: &[nightshift_ingest::kubernetes::PodWorkload]) {
        if found.is_empty() {
            return;
        }
        let mut watched = self
            .watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for w in found {
            if watched.len() >= MAX_WATCHED_WORKLOADS && !watched.contains_key(&w.service) {
                self.dropped.inc();
                continue;
            }
            watched.insert(
                w.service.clone(),
                Workload {
                    namespace: w.namespace.clone(),
                    deployment: w.deployment.clone(),
                    container: w.container.clone(),
                    placed_by: "kubernetes".into(),
                },
            );
        }
    }

    /// Every service's workload as known now.
    pub(crate) fn all(&self) -> Workloads {
        let mut all = self.configured.clone();
        let watched = self
            .watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.extend(watched.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }
}

pub(crate) struct Remediation {
    runbooks: Vec<Runbook>,
    /// Where services run.
    placed: Arc<Placed>,
    /// Ingest identities whose alerts may start an automatic action.
    auto_sources: std::collections::BTreeSet<String>,
    governor: Mutex<Governor>,
    /// Reads the governor's audit log through its index (`GET /api/v1/audit`).
    audit: nightshift_act::audit::AuditReader,
    executor: Executor,
    verifier: Arc<dyn Verifier>,
    store: SqliteStore,
    polling: Polling,
    approvers: Vec<Approver>,
    feed: FeedChange,
    /// Where actions waiting for approval are posted, with their buttons: the Slack API, the
    /// channel, and whether the app takes interactions.
    slack: Option<(crate::slack::SlackApi, String, bool)>,
    /// Where escalations are raised as alerts (the notifier of `alertmanager.url`), and the
    /// server's base URL their links point into.
    alertmanager: Option<Escalations>,
}

/// The notifier's queue and the base URL (`http://LISTEN`) of the links in its alerts.
pub(crate) type Escalations = (tokio::sync::mpsc::Sender<crate::alerts_out::Notice>, String);

/// A dry run of one runbook for an incident.
#[derive(serde::Serialize)]
pub(crate) struct RunbookDryRun {
    /// Whether the runbook answers the incident (its trigger and `when`); a runbook named
    /// for a dry run is rehearsed either way.
    pub answers: bool,
    /// The gate that would refuse it now (kill switch, protected namespace, change window,
    /// limit), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The action the incident already has of this runbook (one per incident and runbook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub proposal: nightshift_act::Proposal,
    pub rehearsal: execute::Rehearsal,
}

/// Verifications against the configured Prometheus (PromQL: holds when the query returns a
/// sample) and the store (`incident_resolved`).
struct Signals {
    store: SqliteStore,
    prometheus: Option<(reqwest::Client, String)>,
}

impl Verifier for Signals {
    fn holds<'a>(
        &'a self,
        check: &'a Check,
        incident: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move {
            match check {
                Check::Signal(s) if s == "incident_resolved" => {
                    let i = self
                        .store
                        .incident(incident)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(i.is_some_and(|i| i.status == IncidentStatus::Resolved))
                }
                Check::Signal(s) => Err(format!("unknown signal {s}")),
                Check::Promql(q) => {
                    let (client, url) = self
                        .prometheus
                        .as_ref()
                        .ok_or("a PromQL verification needs prometheus.url in the configuration")?;
                    let r = client
                        .get(format!("{}/api/v1/query", url.trim_end_matches('/')))
                        .query(&[("query", q.as_str())])
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = r.status();
                    let body = r.bytes().await.map_err(|e| e.to_string())?;
                    nightshift_ingest::decode_query_response(&body, "verify")
                        .map(|samples| !samples.is_empty())
                        .map_err(|e| format!("{status}: {e}"))
                }
            }
        })
    }
}

/// The kind of change a fix by `runbook` is, by its first step.
fn change_kind(runbook: &Runbook) -> ChangeKind {
    match runbook.steps.first().map(|s| s.uses.as_str()) {
        Some("kubernetes.scale") => ChangeKind::Scale,
        Some("kubernetes.rollback") => ChangeKind::Rollback,
        Some(u) if u.starts_with("kubernetes.") => ChangeKind::Config,
        _ => ChangeKind::Infrastructure,
    }
}

impl Remediation {
    /// Loads the runbooks, opens the audit log (with its export), and takes back the actions of
    /// earlier runs from the store.
    pub(crate) async fn new(
        config: &Config,
        store: SqliteStore,
        kube: Option<kube::Client>,
        feed: FeedChange,
        slack: Option<(crate::slack::SlackApi, String, bool)>,
        alertmanager: Option<Escalations>,
        placed: Arc<Placed>,
    ) -> Result<Arc<Self>, ServerError> {
        let act = &config.act;
        let runbooks = match &act.runbooks {
            Some(dir) => crate::remediation::load(dir, &act.commands)?,
            None => Vec::new(),
        };
        let mut audit =
            AuditLog::open_keyed(&act.audit_log, act.audit_key.clone()).map_err(|source| {
                ServerError::OpenAudit {
                    path: act.audit_log.clone(),
                    source,
                }
            })?;
        if let Some(bytes) = audit.repaired() {
            let message = format!(
                "the audit log's last line was torn (a write cut short); its {bytes} bytes were moved to {}.torn and the log goes on from the last whole entry",
                act.audit_log.display()
            );
            tracing::warn!("{message}");
            eprintln!("nightshift serve: {message}");
            audit
                .append(
                    crate::now_ms(),
                    "nightshift",
                    "repaired",
                    None,
                    &message,
                    serde_json::Value::Null,
                )
                .map_err(ServerError::WriteAudit)?;
        }
        if let Some(export) = &act.audit_export {
            audit.export_to(audit_export(export)?);
        }
        let mut policy = act.policy.clone();
        // A kill switch turned on by request stays on across restarts: the audit log says.
        let reader = audit.reader();
        policy.kill_switch |= reader.last_of("kill_switch_on") > reader.last_of("kill_switch_off");
        let mut governor = Governor::new(policy, audit);
        let kept = store
            .actions(None)
            .await
            .map_err(|source| ServerError::History {
                what: "the actions",
                source,
            })?;
        let mut actions = Vec::new();
        for a in kept {
            // An action this version cannot read is a fault to fix, not to overwrite.
            let action = serde_json::from_value::<Action>(a.document).map_err(|source| {
                ServerError::UnreadableAction {
                    id: a.id.clone(),
                    source,
                }
            })?;
            actions.push(action);
        }
        let changed = governor
            .restore(actions, now_ms())
            .map_err(ServerError::WriteAudit)?;
        // No redirects: `http_hosts` is checked before sending, and a redirect would leave it.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| ServerError::HttpClient {
                what: "remediation".into(),
                source,
            })?;
        let mut executor = Executor {
            commands: act.commands.clone(),
            ..Executor::default()
        };
        let endpoints: Arc<dyn execute::Provider> = Arc::new(execute::Http {
            endpoints: act.endpoints.clone(),
            client: http.clone(),
        });
        for family in ["http", "notify", "ticket"] {
            executor = executor.with(family, endpoints.clone());
        }
        if let Some(client) = kube {
            executor = executor.with(
                "kubernetes",
                Arc::new(nightshift_act::kubernetes::Kubernetes::new(
                    client,
                    "nightshift",
                )),
            );
        }
        let verifier = Arc::new(Signals {
            store: store.clone(),
            prometheus: config.prometheus.as_ref().map(|p| (http, p.url.clone())),
        });
        let me = Arc::new(Self {
            runbooks,
            placed,
            auto_sources: act.auto_sources.clone(),
            governor: Mutex::new(governor),
            audit: reader,
            executor,
            verifier,
            store,
            polling: Polling {
                every: Duration::from_millis(act.verify_every_ms as u64),
                within: None,
            },
            approvers: act.approvers.clone(),
            feed,
            slack,
            alertmanager,
        });
        for id in &changed {
            me.keep_id(id).await;
            // Cut off while it ran: a person must look at the target.
            if let Some(a) = me.action(id).filter(|a| a.state == State::Failed) {
                me.escalate(&a).await;
            }
        }
        // Escalations of earlier runs whose incidents are still open are raised again: the
        // alerts lapse in Alertmanager when not posted again.
        for a in me.actions(None) {
            if a.state == State::Failed && !changed.contains(&a.id) {
                me.raise_alert(&a).await;
            }
        }
        Ok(me)
    }

    fn governor(&self) -> std::sync::MutexGuard<'_, Governor> {
        self.governor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn runbook(&self, name: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.name == name)
    }

    /// Keeps `action` in the store.
    async fn keep(&self, action: Action) {
        let stored = StoredAction {
            id: action.id.clone(),
            incident: action.proposal.incident.clone(),
            state: action.state.as_str().to_string(),
            updated_at: action.decided_at.unwrap_or(action.created_at).max(now_ms()),
            document: serde_json::to_value(&action).unwrap_or_default(),
        };
        if let Err(e) = self.store.upsert_action(&stored).await {
            tracing::error!(action = %action.id, "cannot keep the action in the database: {e}");
        }
    }

    /// Keeps action `id` as the governor has it now.
    async fn keep_id(&self, id: &str) {
        if let Some(a) = self.action(id) {
            self.keep(a).await;
        }
    }

    /// Every action, or those of one incident, oldest first.
    pub(crate) fn actions(&self, incident: Option<&str>) -> Vec<Action> {
        let mut list: Vec<Action> = self
            .governor()
            .actions()
            .filter(|a| incident.is_none_or(|i| a.proposal.incident == i))
            .cloned()
            .collect();
        // Ids are act-NNNN: by their number, which may outgrow four digits.
        list.sort_by_key(|a| (a.id.len(), a.id.clone()));
        list
    }

    pub(crate) fn audit(&self) -> &nightshift_act::audit::AuditReader {
        &self.audit
    }

    pub(crate) fn action(&self, id: &str) -> Option<Action> {
        self.governor().action(id).cloned()
    }

    /// Whether the kill switch is on (by configuration, API or its file).
    pub(crate) fn killed(&self) -> bool {
        self.governor().policy.killed()
    }

    /// The alerts of `incident`, as stored.
    async fn alerts_of(&self, incident: &Incident) -> Vec<Alert> {
        let filter = AlertFilter {
            since: Some(incident.opened_at - 6 * 3_600_000),
            limit: Some(5_000),
            ..AlertFilter::default()
        };
        match self.store.alerts(&filter).await {
            Ok(all) => all
                .items
                .into_iter()
                .filter(|a| incident.alerts.contains(&a.fingerprint))
                .collect(),
            Err(e) => {
                tracing::warn!(incident = %incident.id, "cannot read the incident's alerts: {e}");
                Vec::new()
            }
        }
    }

    /// Why `incident` may not start an automatic action, if it may not: one of its alerts came
    /// in unauthenticated, or from an identity `act.auto_sources` does not list. An incident
    /// of Nightshift's own detections (no alerts) may.
    fn untrusted(&self, incident: &Incident, alerts: &[Alert]) -> Option<String> {
        if alerts.len() < incident.alerts.len() {
            return Some("not every alert of the incident could be read back".into());
        }
        alerts.iter().find_map(|a| match &a.source {
            None => Some(format!("alert {} came in unauthenticated", a.name())),
            Some(who) if !self.auto_sources.contains(who) => Some(format!(
                "alert {} came from {who}, whom act.auto_sources does not list",
                a.name()
            )),
            Some(_) => None,
        })
    }

    /// The runbooks' proposals for `incident`, each marked with why it may not run on its own.
    fn proposals(&self, incident: &Incident, alerts: &[Alert]) -> Vec<nightshift_act::Proposal> {
        let untrusted = self.untrusted(incident, alerts);
        let mut list =
            nightshift_act::propose(&self.runbooks, incident, alerts, &self.placed.all());
        for p in &mut list {
            p.untrusted = untrusted.clone();
        }
        list
    }

    /// Offers what the runbooks propose for `incident`; runs what is approved on its own.
    pub(crate) async fn on_incident(self: &Arc<Self>, incident: Incident) {
        if incident.status == IncidentStatus::Resolved {
            self.settle(&incident).await;
            return;
        }
        if self.runbooks.is_empty() {
            return;
        }
        let alerts = self.alerts_of(&incident).await;
        for proposal in self.proposals(&incident, &alerts) {
            let Some(runbook) = self.runbook(&proposal.runbook) else {
                continue;
            };
            let offered = {
                let mut g = self.governor();
                let known = g.knows(&proposal.incident, &proposal.runbook);
                g.offer(runbook, proposal, now_ms())
                    .map(|a| (a.clone(), !known))
            };
            match offered {
                Ok((a, fresh)) => {
                    let id = a.id.clone();
                    let state = a.state;
                    // An action already known is not kept again: this copy may be older than
                    // one an approval or a run keeps meanwhile.
                    if !fresh {
                        continue;
                    }
                    if state == State::Pending {
                        self.post_to_slack(&a).await;
                    }
                    self.keep(a).await;
                    if state == State::Approved {
                        self.spawn_run(id);
                    }
                }
                Err(e) => tracing::error!(incident = %incident.id, "cannot offer an action: {e}"),
            }
        }
    }

    /// Dry runs for `incident`: of every runbook that answers it, or of `runbook` by name
    /// (whether it answers or not). Each step as it would be sent, nothing sent, and the
    /// verification evaluated now. Nothing is decided, so nothing is audited.
    pub(crate) async fn dry_run(
        &self,
        incident: &str,
        runbook: Option<&str>,
    ) -> Result<Vec<RunbookDryRun>, Refusal> {
        let inc = match self.store.incident(incident).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("there is no incident {incident}"),
                ));
            }
            Err(e) => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the incident: {e}"),
                ));
            }
        };
        let alerts = self.alerts_of(&inc).await;
        let planned: Vec<(nightshift_act::Proposal, bool)> = match runbook {
            None => self
                .proposals(&inc, &alerts)
                .into_iter()
                .map(|p| (p, true))
                .collect(),
            Some(name) => {
                let r = self.runbook(name).ok_or_else(|| {
                    let names: Vec<&str> = self.runbooks.iter().map(|r| r.name.as_str()).collect();
                    (
                        StatusCode::NOT_FOUND,
                        format!(
                            "no runbook is named {name}; loaded: {}",
                            if names.is_empty() {
                                "none (act.runbooks)".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    )
                })?;
                let (mut p, answers) =
                    nightshift_act::plan::plan(r, &inc, &alerts, &self.placed.all()).ok_or_else(
                        || {
                            (
                                StatusCode::CONFLICT,
                                format!("incident {incident} names no service or node to act on"),
                            )
                        },
                    )?;
                p.untrusted = self.untrusted(&inc, &alerts);
                vec![(p, answers)]
            }
        };
        let mut out = Vec::new();
        for (proposal, answers) in planned {
            let Some(r) = self.runbook(&proposal.runbook) else {
                continue;
            };
            let rehearsal = execute::rehearse(
                &self.executor,
                self.verifier.as_ref(),
                r,
                incident,
                &proposal.context,
            )
            .await;
            let (gate, action) = {
                let g = self.governor();
                let gate = if inc.status == IncidentStatus::Resolved {
                    Some("the incident is resolved".to_string())
                } else {
                    g.gate(r, &proposal, now_ms())
                };
                let action = g
                    .action_for(incident, &proposal.runbook)
                    .map(|a| a.id.clone());
                (gate, action)
            };
            out.push(RunbookDryRun {
                answers,
                gate,
                action,
                proposal,
                rehearsal,
            });
        }
        Ok(out)
    }

    /// An action did not fix its incident: posted to Slack, and raised as an alert in
    /// Alertmanager (which pages whoever its routes say) until the incident resolves.
    async fn escalate(&self, action: &Action) {
        self.post_to_slack(action).await;
        self.raise_alert(action).await;
    }

    /// Raises the escalation of `action` in Alertmanager, unless its incident has resolved
    /// meanwhile (then nobody needs paging for it).
    async fn raise_alert(&self, action: &Action) {
        let Some((tx, base)) = &self.alertmanager else {
            return;
        };
        let resolved = matches!(
            self.store.incident(&action.proposal.incident).await,
            Ok(Some(i)) if i.status == IncidentStatus::Resolved
        );
        if resolved {
            return;
        }
        let link = format!("{base}/api/v1/actions/{}", action.id);
        let alert = crate::alerts_out::action_failed_alert(action, link, now_ms());
        if tx
            .send(crate::alerts_out::Notice::Firing(alert))
            .await
            .is_err()
        {
            tracing::warn!(action = %action.id, "the Alertmanager notifier has stopped; the escalation is in the audit log only");
        }
    }

    /// A resolved incident's escalations are over: their alerts resolve.
    async fn settle(&self, incident: &Incident) {
        let Some((tx, _)) = &self.alertmanager else {
            return;
        };
        let at = incident.resolved_at.unwrap_or_else(now_ms);
        for a in self.actions(Some(&incident.id)) {
            if a.state == State::Failed {
                let _ = tx
                    .send(crate::alerts_out::action_failed_resolved(&a.id, at))
                    .await;
            }
        }
    }

    /// Posts an action waiting for approval to the Slack channel, with its buttons.
    async fn post_to_slack(&self, action: &Action) {
        let Some((api, channel, interactive)) = &self.slack else {
            return;
        };
        let mut body = crate::slack::action_message(action, *interactive);
        body["channel"] = serde_json::json!(channel);
        if let Err(e) = api.call("chat.postMessage", &body).await {
            tracing::warn!(action = %action.id, "cannot post the action to Slack: {e}");
        }
    }

    /// The approver a bearer token or Slack user id names.
    /// The approver of this name, when there is one (the server authenticated the name).
    pub(crate) fn approver_named(&self, name: &str) -> Option<String> {
        self.approvers
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.name.clone())
    }

    pub(crate) fn approver(&self, token: Option<&str>, slack: Option<&str>) -> Option<String> {
        // Tokens are compared by digest, whole, for every approver: no early exit to time.
        let digest = |t: &str| -> [u8; 32] { sha2::Sha256::digest(t.as_bytes()).into() };
        let given = token.map(digest);
        let mut found = None;
        for a in &self.approvers {
            let by_token = match (&given, a.token.as_deref()) {
                (Some(g), Some(t)) => {
                    g.iter()
                        .zip(digest(t))
                        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                        == 0
                }
                _ => false,
            };
            let by_slack = slack.is_some() && a.slack.as_deref() == slack;
            if (by_token || by_slack) && found.is_none() {
                found = Some(a.name.clone());
            }
        }
        found
    }

    /// `who` approves action `id`: re-checked (the incident may have resolved, a limit may have
    /// been reached), then run in the background.
    pub(crate) async fn approve(self: &Arc<Self>, id: &str, who: &str) -> Result<Action, Refusal> {
        let action = self.action(id).ok_or_else(|| not_found(id))?;
        let runbook = self.runbook(&action.proposal.runbook).ok_or_else(|| {
            (
                StatusCode::CONFLICT,
                format!(
                    "runbook {} is no longer loaded; the action cannot run",
                    action.proposal.runbook
                ),
            )
        })?;
        let still_called_for = match self.store.incident(&action.proposal.incident).await {
            Ok(Some(i)) => i.status != IncidentStatus::Resolved,
            Ok(None) => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "incident {} is not in the database yet; retry in a moment",
                        action.proposal.incident
                    ),
                ));
            }
            Err(e) => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the incident: {e}"),
                ));
            }
        };
        let decided = self
            .governor()
            .approve(runbook, id, who, still_called_for, now_ms())
            .cloned();
        // A refusal may have changed the action (refused, cancelled): keep it either way.
        self.keep_id(id).await;
        let a = decided.map_err(refusal)?;
        self.spawn_run(a.id.clone());
        Ok(a)
    }

    /// `who` rejects action `id`.
    pub(crate) async fn reject(
        &self,
        id: &str,
        who: &str,
        reason: &str,
    ) -> Result<Action, Refusal> {
        let a = self
            .governor()
            .reject(id, who, reason, now_ms())
            .cloned()
            .map_err(refusal)?;
        self.keep(a.clone()).await;
        Ok(a)
    }

    /// Turns the kill switch on or off; on, it cancels every action waiting for approval.
    pub(crate) async fn kill_switch(&self, on: bool, who: &str) -> Result<Vec<String>, Refusal> {
        // Anyone who may approve may stop everything; only who may approve high risk may undo it.
        let may_undo =
            self.governor().policy.approvers.get(who) == Some(&nightshift_act::Risk::High);
        if !on && !may_undo {
            return Err((
                StatusCode::FORBIDDEN,
                format!("{who} may not turn the kill switch off (it takes max_risk: high)"),
            ));
        }
        let result = self.governor().kill_switch(on, who, now_ms());
        match result {
            Ok(cancelled) => {
                for id in &cancelled {
                    self.keep_id(id).await;
                }
                Ok(cancelled)
            }
            Err(e) => {
                // The audit log failed part of the way: what was cancelled before is kept.
                for a in self.actions(None) {
                    if a.state == State::Cancelled {
                        self.keep(a).await;
                    }
                }
                Err(refusal(e))
            }
        }
    }

    fn spawn_run(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move { me.run(&id).await });
    }

    /// Runs approved action `id`: its steps, its verification, and when either fails its
    /// rollback; a fix is fed back as a change.
    async fn run(&self, id: &str) {
        let started = self.governor().start(id, now_ms()).cloned();
        let action = match started {
            Ok(a) => a,
            Err(e) => {
                self.keep_id(id).await;
                tracing::warn!(action = %id, "the action does not run: {e}");
                return;
            }
        };
        self.keep(action.clone()).await;
        let Some(runbook) = self.runbook(&action.proposal.runbook) else {
            return;
        };
        let mut report = |record: &execute::StepRecord, rollback: bool| {
            if let Err(e) = self.governor().step(id, record, rollback, now_ms()) {
                tracing::error!(action = %id, "cannot write a step to the audit log: {e}");
            }
        };
        let stop = || self.killed();
        let execution = execute::execute(
            &self.executor,
            self.verifier.as_ref(),
            runbook,
            &action.proposal.incident,
            &action.proposal.context,
            self.polling,
            &mut report,
            &stop,
        )
        .await;
        let fixed = execution.fixed;
        let summary = execution.summary.clone();
        // What ran is kept, escalated and fed back even when the audit log cannot take it.
        let unaudited = self.governor().finish(id, execution, now_ms()).err();
        if let Some(e) = unaudited {
            tracing::error!(action = %id, "cannot write the action's outcome to the audit log: {e}");
        }
        let Some(a) = self.action(id) else {
            return;
        };
        tracing::info!(action = %id, runbook = %runbook.name, fixed, %summary, "action done");
        if fixed {
            (self.feed)(Change {
                id: format!("nightshift-{id}"),
                ts: now_ms(),
                kind: change_kind(runbook),
                target: a.proposal.target.name.clone(),
                version: Some(format!("runbook {}, {id}", runbook.name)),
                description: summary,
            });
        } else {
            // Escalated: a person must take over; tell them where they look.
            self.escalate(&a).await;
        }
        self.keep(a).await;
    }
}

fn not_found(id: &str) -> Refusal {
    (StatusCode::NOT_FOUND, format!("there is no action {id}"))
}

fn refusal(e: GovernError) -> Refusal {
    let status = match &e {
        GovernError::NotFound(_) => StatusCode::NOT_FOUND,
        GovernError::NotPending { .. } => StatusCode::CONFLICT,
        GovernError::Refused(_) => StatusCode::FORBIDDEN,
        GovernError::Gate(_) => StatusCode::CONFLICT,
        GovernError::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, e.to_string())
}

/// Copies each audit line to the export's file and/or webhook (POSTed in the background, in
/// order; a failing webhook is logged, never blocking the audit log).
fn audit_export(
    export: &crate::config::AuditExport,
) -> Result<nightshift_act::audit::Export, ServerError> {
    use std::io::Write;
    let mut file = match &export.file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ServerError::AuditExport {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let webhook = export.webhook.clone().map(|url| {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Some(line) = rx.recv().await {
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(line)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(status = %r.status(), "the audit export webhook refused an entry"),
                    Err(e) => tracing::warn!("cannot send an audit entry to the export webhook: {e}"),
                }
            }
        });
        tx
    });
    Ok(Box::new(move |line: &str| {
        if let Some(f) = &mut file
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::warn!("cannot copy an audit entry to the export file: {e}");
        }
        if let Some(tx) = &webhook {
            let _ = tx.send(line.to_string());
        }
    }))
}
