//! `POST /hooks/slack/commands` (the `/nightshift` slash command) and
//! `POST /hooks/slack/interactions` (the buttons of Nightshift's messages). Both verify Slack's
//! request signature first; Slack wants an answer within 3 s, so anything slower (an LLM
//! investigation) is posted later to the request's `response_url`.

use super::api::acknowledge_incident;
use super::receivers::header_str;
use super::{App, text};
use crate::slack::{SlackApi, answer_message, ephemeral, incident_message};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nightshift_core::Incident;
use nightshift_diagnose::Conclusion;
use nightshift_ingest::changes::HookError;
use nightshift_ingest::slack::{decode_interaction, decode_slash_command, verify_signature};
use nightshift_store::Store;
use serde_json::Value;
use std::sync::Arc;

/// What `serve` keeps for Slack's requests.
pub(crate) struct SlackHooks {
    pub(crate) signing_secret: Option<String>,
    pub(crate) api: SlackApi,
    /// `http://HOST/api/v1/incidents`, for the links in messages.
    pub(crate) link_base: String,
    /// Whether an LLM is configured, so slow investigations follow the quick answer.
    pub(crate) llm: bool,
}

const USAGE: &str = "Ask Nightshift in plain words, e.g. `/nightshift why is checkout slow?` or \
`/nightshift what changed in payments in the last hour?`; `/nightshift explain inc-0003` explains \
an incident.";

impl SlackHooks {
    /// An incident as a message, linked to its page.
    fn incident_message(
        &self,
        incident: &Incident,
        conclusion: &Conclusion,
        interactive: bool,
    ) -> Value {
        let link = format!("{}/{}", self.link_base, incident.id);
        incident_message(incident, conclusion, &link, interactive)
    }
}

/// The signature checked against the body, then the body decoded; or the answer to give
/// instead (404 when Slack is off, 401 for a bad signature, 400 for a bad body).
fn accepted<'a, T>(
    app: &'a App,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    decode: fn(&[u8]) -> Result<T, HookError>,
) -> Result<(&'a SlackHooks, T), Box<Response>> {
    let hooks = app
        .slack
        .as_ref()
        .filter(|s| s.signing_secret.is_some())
        .ok_or_else(|| {
            Box::new(text(
                StatusCode::NOT_FOUND,
                format!("{what}: Slack is off; set slack.signing_secret in the configuration"),
            ))
        })?;
    let secret = hooks.signing_secret.as_deref().unwrap_or_default();
    verify_signature(
        secret,
        header_str(headers, "x-slack-request-timestamp"),
        header_str(headers, "x-slack-signature"),
        body,
        crate::now_ms() / 1000,
    )
    .and_then(|()| decode(body))
    .map(|decoded| (hooks, decoded))
    .map_err(|e| Box::new(refuse(app, what, e)))
}

fn refuse(app: &App, what: &str, e: HookError) -> Response {
    app.metrics.reject("invalid_slack_request");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    text(status, format!("{what}: {e}"))
}

/// An incident id the text names alone or after `explain`, e.g. `explain inc-0003`.
fn incident_named(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("explain").map_or(text, str::trim);
    let id = rest.trim();
    (id.starts_with("inc-") && !id.contains(char::is_whitespace)).then_some(id)
}

/// Posts `message` to `response_url` in the background, logging a failure.
fn respond_later(api: &SlackApi, response_url: String, message: Value) {
    let api = api.clone();
    tokio::spawn(async move {
        if let Err(e) = api.respond(&response_url, &message).await {
            tracing::warn!("Slack: {e}");
        }
    });
}

pub(super) async fn slack_command(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (hooks, cmd) = match accepted(&app, &headers, &body, "slack command", decode_slash_command)
    {
        Ok(ok) => ok,
        Err(refused) => return *refused,
    };
    let question = cmd.text.trim();
    if question.is_empty() || question.eq_ignore_ascii_case("help") {
        return Json(ephemeral(USAGE)).into_response();
    }
    let followup = hooks.llm && !cmd.response_url.is_empty();
    if let Some(id) = incident_named(question) {
        let incident = match app.store.incident(id).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Json(ephemeral(&format!("There is no incident {id}."))).into_response();
            }
            Err(e) => {
                return Json(ephemeral(&format!("Cannot read the database: {e}"))).into_response();
            }
        };
        let mut message =
            hooks.incident_message(&incident, &nightshift_diagnose::explain(&incident), true);
        message["response_type"] = "in_channel".into();
        if followup {
            let (app, url) = (app.clone(), cmd.response_url.clone());
            tokio::spawn(async move {
                let explained = app.assistant.explain(&incident, true).await;
                if explained.conclusion.source == nightshift_diagnose::Source::Llm
                    && let Some(hooks) = &app.slack
                {
                    let mut m = hooks.incident_message(&incident, &explained.conclusion, true);
                    m["response_type"] = "in_channel".into();
                    respond_later(&hooks.api, url, m);
                }
            });
        }
        return Json(message).into_response();
    }
    let reply = match app.assistant.ask(question, false).await {
        Ok(r) => r,
        Err(e) => {
            return Json(ephemeral(&format!("Cannot read the database: {e}"))).into_response();
        }
    };
    if followup {
        let (app, url, q) = (app.clone(), cmd.response_url.clone(), question.to_string());
        tokio::spawn(async move {
            if let Ok(r) = app.assistant.ask(&q, true).await
                && r.answer.source == nightshift_diagnose::Source::Llm
                && let Some(hooks) = &app.slack
            {
                respond_later(&hooks.api, url, answer_message(&q, &r.answer));
            }
        });
    }
    Json(answer_message(question, &reply.answer)).into_response()
}

pub(super) async fn slack_interaction(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (hooks, interaction) = match accepted(
        &app,
        &headers,
        &body,
        "slack interaction",
        decode_interaction,
    ) {
        Ok(ok) => ok,
        Err(refused) => return *refused,
    };
    if interaction.kind != "block_actions" {
        return StatusCode::OK.into_response();
    }
    let who = if interaction.user.username.is_empty() {
        format!("slack:{}", interaction.user.id)
    } else {
        format!("slack:{}", interaction.user.username)
    };
    for action in &interaction.actions {
        let id = action.value.clone();
        let reply = match action.action_id.as_str() {
            "acknowledge" => {
                match acknowledge_incident(
                    &app,
                    id.clone(),
                    who.clone(),
                    &format!("acknowledge {id}"),
                )
                .await
                {
                    Ok(incident) => {
                        let mut m = hooks.incident_message(
                            &incident,
                            &nightshift_diagnose::explain(&incident),
                            true,
                        );
                        m["replace_original"] = true.into();
                        m
                    }
                    Err(refused) => {
                        let status = refused.status();
                        let body = axum::body::to_bytes(refused.into_body(), 4096)
                            .await
                            .unwrap_or_default();
                        tracing::info!(%status, "Slack acknowledge refused");
                        ephemeral(String::from_utf8_lossy(&body).trim())
                    }
                }
            }
            "explain" => match app.store.incident(&id).await {
                Ok(Some(incident)) => {
                    let (app, url) = (app.clone(), interaction.response_url.clone());
                    tokio::spawn(async move {
                        let explained = app.assistant.explain(&incident, true).await;
                        if let (Some(hooks), Some(url)) = (&app.slack, url) {
                            let mut m =
                                hooks.incident_message(&incident, &explained.conclusion, false);
                            m["response_type"] = "ephemeral".into();
                            m["replace_original"] = false.into();
                            respond_later(&hooks.api, url, m);
                        }
                    });
                    continue;
                }
                Ok(None) => ephemeral(&format!("There is no incident {id}.")),
                Err(e) => ephemeral(&format!("Cannot read the database: {e}")),
            },
            "approve" | "reject" => {
                let approve = action.action_id == "approve";
                match app.remediation.approver(None, Some(&interaction.user.id)) {
                    None => ephemeral(&format!(
                        "You are not an approver: ask for your Slack user id ({}) to be added to act.approvers.",
                        interaction.user.id
                    )),
                    Some(name) => {
                        let decided = if approve {
                            app.remediation.approve(&id, &name).await
                        } else {
                            app.remediation
                                .reject(&id, &name, "rejected in Slack")
                                .await
                        };
                        match decided {
                            Ok(a) => {
                                let mut m = crate::slack::action_message(&a, true);
                                m["replace_original"] = true.into();
                                m
                            }
                            Err((_, message)) => ephemeral(&message),
                        }
                    }
                }
            }
            // The "Open in Nightshift" link button: Slack opens the link itself.
            _ => continue,
        };
        if let Some(url) = &interaction.response_url {
            respond_later(&hooks.api, url.clone(), reply);
        }
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::incident_named;

    #[test]
    fn incidents_are_named_alone_or_after_explain() {
        assert_eq!(incident_named("explain inc-0003"), Some("inc-0003"));
        assert_eq!(incident_named("inc-0012"), Some("inc-0012"));
        assert_eq!(incident_named("why is inc-0003 open?"), None);
        assert_eq!(incident_named("why is checkout slow?"), None);
    }
}
