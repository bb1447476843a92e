//! Questions and explanations for `serve`: answered from the store deterministically, and by
//! the LLM investigator when one is configured, with read-only tools over the store, the
//! topology, Prometheus (PromQL), Loki (LogQL) and the Kubernetes API.

mod kubernetes;
pub use kubernetes::Cluster;

use crate::ServerError;
use crate::config::Config;
use nightshift_core::{Incident, Millis, Topology};
use nightshift_diagnose::{
    Answer, AskContext, Cited, Conclusion, Source, evidence_ids, explain, known_entities,
};
use nightshift_llm::{DailyBudget, Investigation, Investigator, Task, ToolSpec, Toolbox};
use nightshift_store::{AnomalyFilter, ChangeFilter, IncidentFilter, SqliteStore, Store};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much recorded history a question is answered from.
const CONTEXT_INCIDENTS: u32 = 200;
const CONTEXT_ANOMALIES: u32 = 2_000;
const CONTEXT_CHANGES: u32 = 500;

/// Hypotheses, and evidence items of each, an incident's investigation starts from.
const PROMPT_HYPOTHESES: usize = 3;
const PROMPT_EVIDENCE: usize = 6;

/// The answer to `POST /api/v1/ask`.
#[derive(Debug, Serialize)]
pub struct AskReply {
    #[serde(flatten)]
    pub answer: Answer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub investigation: Option<Investigation>,
}

/// The answer to `GET /api/v1/incidents/{id}/explanation`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub conclusion: Conclusion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub investigation: Option<Investigation>,
}

pub struct Assistant {
    investigator: Option<Investigator>,
    tools: Tools,
}

impl Assistant {
    pub fn new(
        config: &Config,
        store: SqliteStore,
        topology: Arc<Mutex<Topology>>,
        cluster: Option<Cluster>,
    ) -> Result<Self, ServerError> {
        let investigator = match &config.llm {
            Some(l) => {
                // The day's spend is kept in the store after every call.
                let store = store.clone();
                let budget = DailyBudget::new(l.daily_tokens).saving_to(move |day, tokens| {
                    // Writes may land out of order; the store keeps the highest count.
                    let store = store.clone();
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            if let Err(e) = store.record_llm_tokens(day, tokens).await {
                                tracing::warn!("the LLM tokens spent today were not stored: {e}");
                            }
                        });
                    }
                });
                Some(Investigator::new(
                    Arc::from(l.provider.build()?),
                    l.limits.clone(),
                    Arc::new(budget),
                ))
            }
            None => None,
        };
        let client = |ms: i64| {
            reqwest::Client::builder()
                .timeout(Duration::from_millis(ms as u64))
                .build()
                .map_err(|source| ServerError::HttpClient {
                    what: "the investigator's tools".into(),
                    source,
                })
        };
        let prometheus = match &config.prometheus {
            Some(p) => Some((p.url.clone(), client(p.timeout_ms)?)),
            None => None,
        };
        let loki = match &config.loki {
            Some(l) => Some((l.url.clone(), client(l.timeout_ms)?)),
            None => None,
        };
        Ok(Self {
            investigator,
            tools: Tools {
                store,
                topology,
                prometheus,
                loki,
                cluster,
                clock: None,
            },
        })
    }

    /// The same assistant with its clock stopped at `now`: for replays, whose telemetry is
    /// timed in the past, so "the last hour" means the hour before `now`.
    pub fn frozen_at(mut self, now: Millis) -> Self {
        self.tools.clock = Some(now);
        self
    }

    /// Counts the tokens already spent today, as the store kept them, against the daily budget:
    /// a restart does not grant a new day's worth.
    pub async fn restore_budget(&self) -> Result<(), nightshift_store::StoreError> {
        if let Some(investigator) = &self.investigator {
            let day = DailyBudget::day_of(self.tools.now());
            let spent = self.tools.store.llm_tokens(day).await?;
            investigator.budget().restore(day, spent);
        }
        Ok(())
    }

    /// Tokens the investigator spent today (0 without one).
    pub fn tokens_spent_today(&self) -> u64 {
        self.investigator
            .as_ref()
            .map_or(0, |i| i.budget().spent(self.tools.now()))
    }

    /// The read-only tools the investigator and MCP clients use.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Answers a question: deterministically, then with the LLM when configured and `llm`.
    pub async fn ask(
        &self,
        question: &str,
        llm: bool,
    ) -> Result<AskReply, nightshift_store::StoreError> {
        let now = self.tools.now();
        let ctx = self.tools.context(now).await?;
        let mut answer = nightshift_diagnose::answer(question, &ctx);
        let Some(investigator) = self.investigator.as_ref().filter(|_| llm) else {
            return Ok(AskReply {
                answer,
                investigation: None,
            });
        };
        let fallback = Conclusion {
            incident: answer.incidents.first().cloned().unwrap_or_default(),
            root_cause: String::new(),
            cause: String::new(),
            summary: answer.answer.clone(),
            confidence: 0.5,
            action: String::new(),
            evidence: answer.evidence.iter().map(|e| e.id.clone()).collect(),
            source: Source::Deterministic,
            note: None,
        };
        let task = Task {
            key: None,
            question: question.to_string(),
            data: vec![(
                "deterministic_answer".into(),
                serde_json::to_value(&answer).unwrap_or_default(),
            )],
            evidence_ids: answer.evidence.iter().map(|e| e.id.clone()).collect(),
            entities: entity_names(&ctx.topology, &ctx.incidents),
            needs_root_cause: false,
            fallback,
            first_tool: None,
        };
        let inv = investigator.investigate(&task, &self.tools, now).await;
        if inv.conclusion.source == Source::Llm {
            let c = &inv.conclusion;
            answer.answer = if c.action.is_empty() {
                c.summary.clone()
            } else {
                format!("{}\nRecommended: {}", c.summary, c.action)
            };
            answer.source = Source::Llm;
            for step in inv
                .steps
                .iter()
                .filter(|s| c.evidence.contains(&s.evidence_id))
            {
                answer.evidence.push(Cited {
                    id: step.evidence_id.clone(),
                    summary: format!("{} {}", step.tool, step.arguments),
                    query: step
                        .arguments
                        .get("query")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
        } else {
            answer.note = inv.conclusion.note.clone();
        }
        Ok(AskReply {
            answer,
            investigation: Some(inv),
        })
    }

    /// Explains one incident from what is already known: the LLM's conclusion of an earlier
    /// investigation of its current diagnosis, else the deterministic one. Never calls a model.
    pub fn explain_known(&self, incident: &Incident) -> Conclusion {
        let known = self.investigator.as_ref().and_then(|i| {
            let ids = evidence_ids(incident).map(str::to_string).collect();
            i.cached(&diagnosis_key(incident), &ids)
        });
        match known {
            Some(inv) if inv.conclusion.source == Source::Llm => inv.conclusion,
            _ => explain(incident),
        }
    }

    /// Explains one incident: its deterministic diagnosis, and the LLM's when configured and
    /// `llm` (cached per diagnosis: see `diagnosis_key`).
    pub async fn explain(&self, incident: &Incident, llm: bool) -> Explanation {
        let deterministic = explain(incident);
        let Some(investigator) = self.investigator.as_ref().filter(|_| llm) else {
            return Explanation {
                conclusion: deterministic,
                investigation: None,
            };
        };
        let topology = self.tools.topology();
        let task = incident_task(incident, &topology, deterministic);
        let inv = investigator
            .investigate(&task, &self.tools, self.tools.now())
            .await;
        Explanation {
            conclusion: inv.conclusion.clone(),
            investigation: Some(inv),
        }
    }
}

/// The investigation of one incident: its diagnosis as quoted data, its evidence ids citable.
pub fn incident_task(incident: &Incident, topology: &Topology, fallback: Conclusion) -> Task {
    // A compact view: the leading hypotheses with their strongest evidence. The rest is one
    // `get_incident` call away; every token here is paid for on every model call.
    let hypotheses: Vec<Value> = incident
        .hypotheses
        .iter()
        .take(PROMPT_HYPOTHESES)
        .map(|h| {
            json!({
                "rank": h.rank,
                "entity": h.entity.name,
                "cause": h.cause,
                "score": (h.score * 1000.0).round() / 1000.0,
                "summary": h.summary,
                "evidence": h.evidence.iter().take(PROMPT_EVIDENCE).map(|e| json!({
                    "id": e.id, "entity": e.entity.name, "summary": e.summary, "query": e.query,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let view = json!({
        "id": incident.id,
        "title": incident.title,
        "status": incident.status,
        "priority": incident.priority,
        "opened_at": incident.opened_at,
        "hypotheses": hypotheses,
        "entry_points": incident.blast_radius.entry_points,
        "failing_calls": incident.blast_radius.endpoints.iter().take(10).collect::<Vec<_>>(),
        "changes": incident.changes.iter().take(5).map(|c| json!({
            "id": c.id, "ts": c.ts, "what": c.summary(),
        })).collect::<Vec<_>>(),
        "slo": incident.slo.iter().take(3).collect::<Vec<_>>(),
        "similar": incident.similar.iter().take(3).collect::<Vec<_>>(),
    });
    Task {
        key: Some(diagnosis_key(incident)),
        question: format!(
            "What is the root cause of incident {}, why, and what should be done?",
            incident.id
        ),
        data: vec![("incident".into(), view)],
        evidence_ids: evidence_ids(incident).map(str::to_string).collect(),
        entities: entity_names(topology, std::slice::from_ref(incident)),
        needs_root_cause: true,
        fallback,
        first_tool: None,
    }
}

/// What an investigation of `incident` is cached under: its id, whether it is resolved, and
/// its leading hypotheses. An incident that grows (or is acknowledged) without its diagnosis
/// changing is not investigated again; one whose leading hypotheses change, or that resolves
/// or reopens, is.
fn diagnosis_key(incident: &Incident) -> String {
    let resolved = incident.status == nightshift_core::IncidentStatus::Resolved;
    let mut key = format!(
        "{}/{}",
        incident.id,
        if resolved { "resolved" } else { "open" }
    );
    for h in incident.hypotheses.iter().take(PROMPT_HYPOTHESES) {
        key.push_str(&format!("/{}:{}", h.entity.name, h.cause));
    }
    key
}

/// Every service and node a root cause may name.
fn entity_names(topology: &Topology, incidents: &[Incident]) -> BTreeSet<String> {
    known_entities(topology, incidents)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The investigator's read-only tools.
pub struct Tools {
    store: SqliteStore,
    topology: Arc<Mutex<Topology>>,
    /// Base URL and client of a Prometheus-compatible API.
    prometheus: Option<(String, reqwest::Client)>,
    loki: Option<(String, reqwest::Client)>,
    cluster: Option<Cluster>,
    /// A stopped clock (replays); the wall clock when `None`.
    clock: Option<Millis>,
}

fn arg_str<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn arg_num(args: &Value, key: &str) -> Option<f64> {
    match args.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Minutes back from `now`, `default` when not given, at most a week.
fn since(args: &Value, now: Millis, default: f64) -> Millis {
    let minutes = arg_num(args, "minutes")
        .unwrap_or(default)
        .clamp(1.0, 10_080.0);
    now - (minutes * 60_000.0) as Millis
}

fn spec(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters: json!({"type": "object", "properties": properties, "required": required}),
    }
}

impl Tools {
    fn now(&self) -> Millis {
        self.clock.unwrap_or_else(crate::now_ms)
    }

    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    pub fn topology(&self) -> Topology {
        self.topology
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    async fn context(&self, now: Millis) -> Result<AskContext, nightshift_store::StoreError> {
        Ok(AskContext {
            topology: self.topology(),
            incidents: self
                .store
                .incidents(&IncidentFilter {
                    limit: Some(CONTEXT_INCIDENTS),
                    ..Default::default()
                })
                .await?
                .items,
            anomalies: self
                .store
                .anomalies(&AnomalyFilter {
                    since: Some(now - 7 * 86_400_000),
                    limit: Some(CONTEXT_ANOMALIES),
                    ..Default::default()
                })
                .await?
                .items,
            changes: self
                .store
                .changes(&ChangeFilter {
                    since: Some(now - 7 * 86_400_000),
                    limit: Some(CONTEXT_CHANGES),
                    ..Default::default()
                })
                .await?
                .items,
            now,
        })
    }

    async fn prometheus(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let (url, client) = self
            .prometheus
            .as_ref()
            .ok_or("no Prometheus is configured (prometheus.url)")?;
        get_json(client, &format!("{url}{path}"), params).await
    }
}

/// A GET whose JSON answer is the tool's result; errors say what went wrong.
async fn get_json(
    client: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
) -> Result<Value, String> {
    let r = client
        .get(url)
        .query(params)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = r.status();
    let body: Value = r
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with no JSON ({e})"))?;
    if !status.is_success() {
        return Err(format!(
            "{url} answered {status}: {}",
            body.get("error").and_then(Value::as_str).unwrap_or("")
        ));
    }
    Ok(body.get("data").cloned().unwrap_or(body))
}

#[async_trait::async_trait]
impl Toolbox for Tools {
    fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = vec![
            spec(
                "get_incident",
                "One incident with its ranked hypotheses, evidence, blast radius and timeline.",
                json!({"id": {"type": "string", "description": "e.g. inc-0003"}}),
                &["id"],
            ),
            spec(
                "search_past_incidents",
                "Earlier incidents, newest first, optionally only those involving a service or node.",
                json!({"entity": {"type": "string"}, "limit": {"type": "integer", "maximum": 20}}),
                &[],
            ),
            spec(
                "get_topology",
                "The call graph (client -> servers), placement (service -> nodes) and databases.",
                json!({}),
                &[],
            ),
            spec(
                "get_changes",
                "Deploys, config changes, rollbacks and scaling recorded recently, newest first.",
                json!({"service": {"type": "string"}, "minutes": {"type": "number", "description": "how far back, default 60"}}),
                &[],
            ),
            spec(
                "get_anomalies",
                "Anomalies on derived signals, strongest first.",
                json!({"service": {"type": "string"}, "minutes": {"type": "number", "description": "how far back, default 60"}, "limit": {"type": "integer", "maximum": 50}}),
                &[],
            ),
        ];
        if self.prometheus.is_some() {
            specs.push(spec(
                "promql_query",
                "Evaluate a PromQL expression at one instant (now by default).",
                json!({"query": {"type": "string"}}),
                &["query"],
            ));
            specs.push(spec(
                "promql_range",
                "Evaluate a PromQL expression over the last minutes, at a step.",
                json!({"query": {"type": "string"}, "minutes": {"type": "number"}, "step_seconds": {"type": "number"}}),
                &["query"],
            ));
        }
        if self.loki.is_some() {
            specs.push(spec(
                "loki_query",
                "Log lines matching a LogQL query over the last minutes, newest first.",
                json!({"query": {"type": "string", "description": "e.g. {service=\"checkout\"} |= \"error\""}, "minutes": {"type": "number"}, "limit": {"type": "integer", "maximum": 100}}),
                &["query"],
            ));
        }
        if let Some(c) = &self.cluster {
            specs.extend(c.specs());
        }
        specs
    }

    async fn call(&self, name: &str, args: &Value) -> Result<Value, String> {
        let now = self.now();
        if let Some(c) = &self.cluster
            && let Some(result) = c.call(name, args, now).await
        {
            return result;
        }
        let db = |e: nightshift_store::StoreError| format!("cannot read the database: {e}");
        match name {
            "get_incident" => {
                let id = arg_str(args, "id").ok_or("give the incident's `id`, e.g. inc-0003")?;
                match self.store.incident(id).await.map_err(db)? {
                    Some(mut i) => {
                        i.timeline.truncate(30);
                        Ok(serde_json::to_value(i).unwrap_or_default())
                    }
                    None => Err(format!("there is no incident {id:?}")),
                }
            }
            "search_past_incidents" => {
                let limit = arg_num(args, "limit").unwrap_or(5.0).clamp(1.0, 20.0) as usize;
                let entity = arg_str(args, "entity");
                let all = self
                    .store
                    .incidents(&IncidentFilter {
                        limit: Some(CONTEXT_INCIDENTS),
                        ..Default::default()
                    })
                    .await
                    .map_err(db)?;
                let found: Vec<Value> = all
                    .items
                    .iter()
                    .filter(|i| {
                        entity.is_none_or(|e| {
                            i.hypotheses.iter().any(|h| h.entity.name == e)
                                || i.blast_radius.entities.iter().any(|x| x.name == e)
                        })
                    })
                    .take(limit)
                    .map(|i| {
                        let top = i.hypotheses.first();
                        json!({
                            "id": i.id, "title": i.title, "status": i.status,
                            "opened_at": i.opened_at, "resolved_at": i.resolved_at,
                            "root_cause": top.map(|h| h.entity.name.clone()),
                            "cause": top.map(|h| h.cause.clone()),
                            "resolution": i.resolution,
                        })
                    })
                    .collect();
                Ok(json!(found))
            }
            "get_topology" => Ok(serde_json::to_value(self.topology()).unwrap_or_default()),
            "get_changes" => {
                let service = arg_str(args, "service");
                let changes = self
                    .store
                    .changes(&ChangeFilter {
                        since: Some(since(args, now, 60.0)),
                        limit: Some(CONTEXT_CHANGES),
                        ..Default::default()
                    })
                    .await
                    .map_err(db)?;
                Ok(json!(
                    changes
                        .items
                        .iter()
                        .filter(|c| service.is_none_or(|s| c.target == s))
                        .take(50)
                        .collect::<Vec<_>>()
                ))
            }
            "get_anomalies" => {
                let limit = arg_num(args, "limit").unwrap_or(20.0).clamp(1.0, 50.0) as usize;
                let mut found = self
                    .store
                    .anomalies(&AnomalyFilter {
                        entity: arg_str(args, "service").map(str::to_string),
                        since: Some(since(args, now, 60.0)),
                        limit: Some(CONTEXT_ANOMALIES),
                        after: None,
                    })
                    .await
                    .map_err(db)?
                    .items;
                found.sort_by(|a, b| b.score.total_cmp(&a.score));
                found.truncate(limit);
                Ok(json!(found))
            }
            "promql_query" | "promql_range" => {
                let query = arg_str(args, "query").ok_or("give a PromQL `query`")?;
                promql_parser::parser::parse(query)
                    .map_err(|e| format!("not valid PromQL: {e}"))?;
                if name == "promql_query" {
                    return self
                        .prometheus("/api/v1/query", &[("query", query.to_string())])
                        .await;
                }
                let start = since(args, now, 60.0);
                let step = arg_num(args, "step_seconds")
                    .unwrap_or(60.0)
                    .clamp(((now - start) as f64 / 1000.0 / 500.0).max(1.0), 3600.0);
                self.prometheus(
                    "/api/v1/query_range",
                    &[
                        ("query", query.to_string()),
                        ("start", format!("{:.3}", start as f64 / 1000.0)),
                        ("end", format!("{:.3}", now as f64 / 1000.0)),
                        ("step", format!("{step}")),
                    ],
                )
                .await
            }
            "loki_query" => {
                let (url, client) = self
                    .loki
                    .as_ref()
                    .ok_or("no Loki is configured (loki.url)")?;
                let query = arg_str(args, "query").ok_or("give a LogQL `query`")?;
                let limit = arg_num(args, "limit").unwrap_or(50.0).clamp(1.0, 100.0) as u32;
                let start = since(args, now, 60.0);
                get_json(
                    client,
                    &format!("{url}/loki/api/v1/query_range"),
                    &[
                        ("query", query.to_string()),
                        ("start", format!("{}", start as i128 * 1_000_000)),
                        ("end", format!("{}", now as i128 * 1_000_000)),
                        ("limit", limit.to_string()),
                        ("direction", "backward".into()),
                    ],
                )
                .await
            }
            other => Err(format!("there is no tool {other:?}")),
        }
    }

    fn output_budget(&self, name: &str) -> Option<usize> {
        match name {
            "get_incident" | "loki_query" | "promql_range" | "k8s_events" => Some(6_000),
            "k8s_describe" | "k8s_logs" => Some(8_000),
            _ => None,
        }
    }
}
