//! `llm.investigate_on_open`: each incident is investigated once it has settled after opening
//! (or reopening), one at a time, without anyone asking. The conclusion is cached under the
//! incident's diagnosis, so the explanation API, `nightshift explain` and the Slack message
//! (handed the incident again afterwards) show it without calling the model again.

use super::Metrics;
use crate::assistant::Assistant;
use nightshift_core::{Incident, IncidentStatus};
use nightshift_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Runs until the pipeline stops sending the ids of opened incidents.
pub(super) async fn run(
    assistant: Arc<Assistant>,
    settle: Duration,
    mut opened: mpsc::Receiver<String>,
    slack: Option<mpsc::Sender<Incident>>,
    metrics: Arc<Metrics>,
) {
    // Each id waits out its settling time on its own; investigations then run one at a time,
    // so that a storm of incidents cannot start a storm of model calls.
    let (due_tx, mut due) = mpsc::channel::<String>(1024);
    tokio::spawn(async move {
        while let Some(id) = opened.recv().await {
            let due_tx = due_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(settle).await;
                let _ = due_tx.send(id).await;
            });
        }
    });
    while let Some(id) = due.recv().await {
        let incident = match assistant.tools().store().incident(&id).await {
            Ok(Some(i)) if i.status != IncidentStatus::Resolved => i,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(incident = %id, "cannot read the incident to investigate it: {e}");
                continue;
            }
        };
        let explained = assistant.explain(&incident, true).await;
        let c = &explained.conclusion;
        let source = if c.source == nightshift_diagnose::Source::Llm {
            "llm"
        } else {
            "deterministic"
        };
        metrics
            .investigations
            .get_or_create(&vec![("source".to_string(), source.to_string())])
            .inc();
        tracing::info!(
            incident = %id,
            source,
            root_cause = %c.root_cause,
            tokens = explained.investigation.as_ref().map_or(0, |i| i.usage.total()),
            note = c.note.as_deref().unwrap_or(""),
            "incident investigated on opening"
        );
        if let Some(slack) = &slack {
            let _ = slack.send(incident).await;
        }
    }
}
