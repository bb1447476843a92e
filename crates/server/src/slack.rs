//! Slack: incident notifications (one message per incident, posted when it opens and edited in
//! place as its diagnosis or status changes), and the messages the slash command and buttons
//! answer with. Requests from Slack are verified in `serve` (see `nightshift_ingest::slack`).

use crate::config::SlackConfig;
use nightshift_core::{Incident, IncidentStatus};
use nightshift_diagnose::{Answer, Conclusion};
use nightshift_llm::redact;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Slack's limits: a section's text, a header's text, and blocks per message.
const SECTION_CHARS: usize = 3_000;
const HEADER_CHARS: usize = 150;
/// Evidence lines shown; the rest stay in the API and the explanation.
const SHOWN_EVIDENCE: usize = 5;
/// Incidents whose message is remembered for editing; the oldest are forgotten beyond this.
const REMEMBERED: usize = 10_000;

/// `text` cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

/// Slack mrkdwn escapes: `&`, `<` and `>` (so telemetry cannot mention @channel or fake links).
fn esc(text: &str) -> String {
    redact(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&text, SECTION_CHARS)}})
}

/// A small-print line: a note, or when and in what state.
fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&text, SECTION_CHARS)}]})
}

fn button(text: &str, action_id: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    });
    if let Some(s) = style {
        b["style"] = json!(s);
    }
    b
}

/// An incident as a Slack message (`text` and `blocks`): status, root cause with its
/// confidence, the evidence it rests on, the changes before it, what to do, and a link; with
/// `interactive`, the Acknowledge and Explain buttons too.
pub fn incident_message(
    incident: &Incident,
    conclusion: &Conclusion,
    link: &str,
    interactive: bool,
) -> Value {
    let status = match incident.status {
        IncidentStatus::Open => "open".to_string(),
        IncidentStatus::Acknowledged => format!(
            "acknowledged by {}",
            incident.acknowledged_by.as_deref().unwrap_or("someone")
        ),
        IncidentStatus::Resolved => "resolved".to_string(),
    };
    let title = format!(
        "{} {} · {}",
        incident.priority.as_str(),
        incident.id,
        redact(&incident.title)
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, HEADER_CHARS)}}),
        context(format!(
            "*{}* · opened <!date^{}^{{date_short_pretty}} {{time}}|{}>",
            status,
            incident.opened_at / 1000,
            jiff::Timestamp::from_millisecond(incident.opened_at)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        )),
    ];
    let text = if conclusion.root_cause.is_empty() {
        blocks.push(section(esc(&conclusion.summary)));
        format!("{title}: {status}")
    } else {
        blocks.push(section(format!(
            "*Root cause:* `{}` — {} ({:.0}% confidence{})\n{}",
            esc(&conclusion.root_cause),
            esc(&conclusion.cause),
            conclusion.confidence * 100.0,
            if conclusion.source == nightshift_diagnose::Source::Llm {
                ", investigated"
            } else {
                ""
            },
            esc(&conclusion.summary)
        )));
        format!(
            "{title}: {status}; root cause {} ({})",
            conclusion.root_cause, conclusion.cause
        )
    };
    let evidence: Vec<String> = incident
        .hypotheses
        .iter()
        .flat_map(|h| &h.evidence)
        .filter(|e| conclusion.evidence.contains(&e.id))
        .take(SHOWN_EVIDENCE)
        .map(|e| format!("• `{}` {}", e.id, esc(&e.summary)))
        .collect();
    if !evidence.is_empty() {
        blocks.push(section(format!("*Evidence*\n{}", evidence.join("\n"))));
    }
    if !incident.changes.is_empty() {
        let changes: Vec<String> = incident
            .changes
            .iter()
            .take(3)
            .map(|c| format!("• {}", esc(&c.summary())))
            .collect();
        blocks.push(section(format!(
            "*Changes before it*\n{}",
            changes.join("\n")
        )));
    }
    if !conclusion.action.is_empty() {
        blocks.push(section(format!(
            "*Recommended:* {} _(a proposal; nothing runs without approval)_",
            esc(&conclusion.action)
        )));
    }
    if let Some(note) = &conclusion.note {
        blocks.push(context(esc(note)));
    }
    let mut buttons = Vec::new();
    if interactive && incident.status == IncidentStatus::Open {
        buttons.push(button(
            "Acknowledge",
            "acknowledge",
            &incident.id,
            Some("primary"),
        ));
    }
    if interactive {
        buttons.push(button("Explain", "explain", &incident.id, None));
    }
    buttons.push(json!({
        "type": "button",
        "text": {"type": "plain_text", "text": "Open in Nightshift"},
        "action_id": "open",
        "url": link,
    }));
    blocks.push(json!({"type": "actions", "block_id": format!("incident:{}", incident.id), "elements": buttons}));
    json!({"text": cut(&text, SECTION_CHARS), "blocks": blocks})
}

/// An action as a Slack message: what it would do, where, and why; while it waits for
/// approval (and the app takes interactions), the Approve and Reject buttons.
pub fn action_message(action: &nightshift_act::Action, interactive: bool) -> Value {
    let p = &action.proposal;
    let target = match &p.target.namespace {
        Some(ns) => format!("{ns}/{}", p.target.name),
        None => p.target.name.clone(),
    };
    let text = format!(
        "{} {}: runbook {} ({}, {} risk) for {} on {target}",
        action.id,
        action.state.as_str(),
        p.runbook,
        p.mode.as_str(),
        p.risk.as_str(),
        p.incident
    );
    let steps: Vec<String> = p
        .steps
        .iter()
        .filter(|s| s.runs)
        .map(|s| format!("• `{}` {}", esc(&s.uses), esc(&s.with.to_string())))
        .collect();
    let mut blocks = vec![
        section(format!("*{}*\n{}", esc(&text), esc(&p.description))),
        section(format!("*Steps*\n{}", steps.join("\n"))),
    ];
    if let Some(v) = &p.verify {
        blocks.push(context(format!("Verified by {}", esc(v))));
    }
    let outcome = action
        .execution
        .as_ref()
        .map(|e| e.summary.clone())
        .or_else(|| action.note.clone());
    if let Some(o) = outcome {
        blocks.push(context(esc(&o)));
    }
    if let Some(by) = &action.decided_by {
        blocks.push(context(format!("Decided by {}", esc(by))));
    }
    if interactive && action.state == nightshift_act::State::Pending {
        blocks.push(
            json!({"type": "actions", "block_id": format!("action:{}", action.id), "elements": [
                button("Approve", "approve", &action.id, Some("primary")),
                button("Reject", "reject", &action.id, Some("danger")),
            ]}),
        );
    }
    json!({"text": cut(&text, SECTION_CHARS), "blocks": blocks})
}

/// The answer to a question as a message visible to the channel.
pub fn answer_message(question: &str, answer: &Answer) -> Value {
    let mut blocks = vec![
        section(format!("*{}*", esc(question))),
        section(esc(&answer.answer)),
    ];
    let cited: Vec<String> = answer
        .evidence
        .iter()
        .take(SHOWN_EVIDENCE)
        .map(|e| match &e.query {
            Some(q) => format!("• `{}` {} — `{}`", e.id, esc(&e.summary), esc(q)),
            None => format!("• `{}` {}", e.id, esc(&e.summary)),
        })
        .collect();
    if !cited.is_empty() {
        blocks.push(section(format!("*Evidence*\n{}", cited.join("\n"))));
    }
    if let Some(note) = &answer.note {
        blocks.push(context(esc(note)));
    }
    json!({
        "response_type": "in_channel",
        "text": cut(&redact(&answer.answer), SECTION_CHARS),
        "blocks": blocks,
    })
}

/// A short reply only the person who asked sees.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": cut(&redact(text), SECTION_CHARS)})
}

/// A client of Slack's Web API (`chat.postMessage`, `chat.update`) with the bot token.
#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl SlackApi {
    pub fn new(base: &str, token: &str) -> Result<Self, crate::ServerError> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|source| crate::ServerError::HttpClient {
                    what: "Slack".into(),
                    source,
                })?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// Calls a Web API method; Slack answers errors as 200 `{"ok": false, "error": "…"}`.
    /// A 429 is retried after its `Retry-After` (at most 30 s), up to three times.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}/{method}", self.base);
        for _ in 0..3 {
            let r = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .header("Content-Type", "application/json; charset=utf-8")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {e}"))?;
            if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(30);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let status = r.status();
            let v: Value = r
                .json()
                .await
                .map_err(|e| format!("{method} answered {status} without JSON: {e}"))?;
            if v["ok"] == true {
                return Ok(v);
            }
            return Err(format!(
                "{method} failed: {}",
                v["error"].as_str().unwrap_or("no error given")
            ));
        }
        Err(format!("{method}: still rate-limited after three tries"))
    }

    /// Posts to a `response_url` Slack gave with a command or an interaction.
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), String> {
        let r = self
            .http
            .post(response_url)
            .json(message)
            .send()
            .await
            .map_err(|e| format!("cannot reach the response URL: {e}"))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("the response URL answered {}", r.status()))
        }
    }
}

/// Posts each incident when it opens and edits that message as it changes; an incident whose
/// message would not change is not sent again. The message explains the incident with the
/// LLM's conclusion when an investigation of its current diagnosis has one (never calling the
/// model itself), else deterministically.
pub async fn notify(
    api: SlackApi,
    config: SlackConfig,
    link_base: String,
    assistant: std::sync::Arc<crate::assistant::Assistant>,
    mut incidents: mpsc::Receiver<Incident>,
) {
    let Some(channel) = config.channel.clone() else {
        return;
    };
    // Incident id → (channel id, message ts, the message last sent).
    let mut posted: HashMap<String, (String, String, String)> = HashMap::new();
    let mut order: std::collections::VecDeque<String> = Default::default();
    while let Some(incident) = incidents.recv().await {
        let link = format!("{link_base}/{}", incident.id);
        let message = incident_message(
            &incident,
            &assistant.explain_known(&incident),
            &link,
            config.signing_secret.is_some(),
        );
        let rendered = message.to_string();
        let result = match posted.get(&incident.id) {
            Some((_, _, last)) if *last == rendered => continue,
            Some((ch, ts, _)) => {
                let mut body = message.clone();
                body["channel"] = json!(ch);
                body["ts"] = json!(ts);
                api.call("chat.update", &body)
                    .await
                    .map(|_| (ch.clone(), ts.clone()))
            }
            None => {
                let mut body = message.clone();
                body["channel"] = json!(channel);
                body["unfurl_links"] = json!(false);
                api.call("chat.postMessage", &body).await.map(|v| {
                    (
                        v["channel"].as_str().unwrap_or(&channel).to_string(),
                        v["ts"].as_str().unwrap_or_default().to_string(),
                    )
                })
            }
        };
        match result {
            Ok((ch, ts)) => {
                if posted
                    .insert(incident.id.clone(), (ch, ts, rendered))
                    .is_none()
                {
                    order.push_back(incident.id.clone());
                }
                while order.len() > REMEMBERED {
                    if let Some(old) = order.pop_front() {
                        posted.remove(&old);
                    }
                }
            }
            Err(e) => tracing::warn!(incident = %incident.id, "Slack: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_cannot_ping_the_channel_or_leak_a_secret() {
        let text = esc("<!channel> ignore this & see <http://evil|here> password=hunter2");
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(!text.contains("<http"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("&amp;"), "{text}");
    }

    #[test]
    fn long_text_is_cut_to_slacks_limits() {
        let long = "é".repeat(5_000);
        assert_eq!(cut(&long, SECTION_CHARS).chars().count(), SECTION_CHARS);
        assert_eq!(cut("short", 10), "short");
    }
}
