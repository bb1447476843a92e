//! `nightshift eval rca --llm`: each fault's incident of a replayed scenario explained by the
//! LLM investigator, with the read-only tools over what the replay recorded and the clock
//! stopped at the incident's last update, beside the deterministic ranking.

use crate::EvalError;
use crate::error::Context;
use crate::rca_sim::{Case, InvestigatedCase};
use nightshift_diagnose::Source;
use nightshift_pipeline::Replay;
use nightshift_server::Config;
use nightshift_server::assistant::Assistant;
use nightshift_store::SqliteStore;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct Runner {
    runtime: tokio::runtime::Runtime,
}

impl Runner {
    pub fn new() -> Result<Self, EvalError> {
        // One TLS crypto provider for the process (rustls needs exactly one), for https LLMs.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?,
        })
    }

    /// Investigates the incident of every case that has one.
    pub fn investigate(
        &self,
        config: &Config,
        replay: &Replay,
        cases: &[Case],
    ) -> Result<Vec<InvestigatedCase>, EvalError> {
        self.runtime.block_on(async {
            // The scenario's own history only: one database per scenario.
            let store = SqliteStore::in_memory()
                .await
                .context("cannot open an in-memory database")?;
            nightshift_store::record_findings(
                &store,
                &replay.incidents,
                &replay.alerts,
                &replay.changes,
                &replay.anomalies,
            )
            .await
            .context("cannot record the replay's findings in the in-memory database")?;
            let topology = Arc::new(Mutex::new(replay.topology.clone()));
            let mut out = Vec::new();
            for case in cases {
                let Some(incident) = case
                    .incident
                    .as_ref()
                    .and_then(|id| replay.incidents.iter().find(|i| &i.id == id))
                else {
                    continue;
                };
                let assistant = Assistant::new(config, store.clone(), topology.clone(), None)?
                    .frozen_at(incident.updated_at);
                let started = Instant::now();
                let explained = assistant.explain(incident, true).await;
                let seconds = started.elapsed().as_secs_f64();
                let inv = explained.investigation.as_ref();
                out.push(InvestigatedCase {
                    scenario: case.scenario.clone(),
                    target: case.target.clone(),
                    incident: incident.id.clone(),
                    deterministic: case.top.clone().unwrap_or_default(),
                    investigated: explained.conclusion.root_cause.clone(),
                    accepted: explained.conclusion.source == Source::Llm,
                    note: explained.conclusion.note.clone(),
                    llm_calls: inv.map_or(0, |i| i.llm_calls),
                    tool_calls: inv.map_or(0, |i| i.steps.len()),
                    tokens: inv.map_or(0, |i| i.usage.total()),
                    seconds,
                });
            }
            Ok::<_, EvalError>(out)
        })
    }
}
