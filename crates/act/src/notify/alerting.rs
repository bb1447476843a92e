//! `notify.slack` (incoming webhook), `notify.pagerduty` (Events API v2) and `notify.opsgenie`
//! (Alert API).

use super::outgoing::{MASK, Outgoing, api_url, configured_url, host_only};
use super::{Opsgenie, PagerDuty, cut, optional};
use crate::provider::{StepError, StepOutcome, required};
use reqwest::Method;
use serde_json::{Value, json};

/// Posts `{text, channel?}` to the incoming webhook. Slack answers `200 ok`, or an error code
/// as text (`no_text`, `invalid_payload`, `action_prohibited`, `no_service`,
/// `channel_is_archived`, ...), which the error repeats. The text goes as written, so Slack's
/// `<url|label>` links work; `channel` is honoured by legacy webhooks only.
pub(super) async fn slack(
    webhook: &str,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let url = configured_url(webhook, "act.endpoints.slack_webhook")?;
    let text = required(with, "text")?;
    let mut body = json!({ "text": text });
    if let Some(channel) = optional(with, "channel") {
        body["channel"] = Value::String(channel);
    }
    let mut out = Outgoing::new(Method::POST, url.clone()).json(body.clone(), body);
    // The webhook's path is its credential.
    out.shown_url = host_only(&url);
    let (request, reply) = out.send(http).await?;
    if reply.status != 200 {
        return Err(StepError::failed(
            request,
            format!(
                "Slack refused the message (HTTP {}): {}",
                reply.status,
                reply.excerpt()
            ),
        ));
    }
    Ok(StepOutcome {
        request,
        output: json!({ "status": reply.status }),
    })
}

const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

/// Triggers an event: `{routing_key, event_action: "trigger", dedup_key?, payload: {summary,
/// source: "nightshift", severity}, client: "Nightshift"}`. PagerDuty answers 202 with the
/// event's `dedup_key` (the output, for a later step to refer to), 400 with the reasons, or
/// 429 when the routing key sends too much.
pub(super) async fn pagerduty(
    pd: &PagerDuty,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let url = configured_url(&pd.url, "act.endpoints.pagerduty.url")?;
    let summary = cut(&required(with, "summary")?, 1024);
    let severity = optional(with, "severity")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "error".into());
    if !SEVERITIES.contains(&severity.as_str()) {
        return Err(StepError::refused(format!(
            "severity {severity:?} is not one of {}",
            SEVERITIES.join(", ")
        )));
    }
    let dedup_key = optional(with, "dedup_key");
    if let Some(key) = &dedup_key
        && key.chars().count() > 255
    {
        // Cutting it could merge unrelated incidents into one.
        return Err(StepError::refused(format!(
            "dedup_key is {} characters long; PagerDuty takes at most 255",
            key.chars().count()
        )));
    }
    let mut body = json!({
        "routing_key": pd.routing_key,
        "event_action": "trigger",
        "payload": {
            "summary": summary,
            "source": "nightshift",
            "severity": severity,
        },
        "client": "Nightshift",
    });
    if let Some(key) = &dedup_key {
        body["dedup_key"] = Value::String(key.clone());
    }
    let mut shown = body.clone();
    shown["routing_key"] = Value::String(MASK.into());
    let out = Outgoing::new(Method::POST, url)
        .header("Accept", "application/json")
        .json(body, shown);
    let (request, reply) = out.send(http).await?;
    let answer = reply.json();
    match reply.status {
        _ if reply.success() => {
            let key = answer
                .as_ref()
                .and_then(|a| a.get("dedup_key"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(dedup_key);
            Ok(StepOutcome {
                request,
                output: json!({ "dedup_key": key }),
            })
        }
        429 => Err(StepError::failed(
            request,
            "PagerDuty rate-limited the event (HTTP 429): too many events for this routing key; \
             it was not recorded, retry later",
        )),
        s => {
            let why = answer
                .as_ref()
                .map(|a| {
                    let mut parts = Vec::new();
                    if let Some(m) = a.get("message").and_then(Value::as_str) {
                        parts.push(m.to_string());
                    }
                    if let Some(errors) = a.get("errors").and_then(Value::as_array) {
                        parts.extend(errors.iter().map(|e| match e {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }));
                    }
                    parts.join("; ")
                })
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| reply.excerpt());
            let what = if s == 400 {
                "PagerDuty rejected the event"
            } else {
                "PagerDuty did not take the event"
            };
            Err(StepError::failed(
                request,
                format!("{what} (HTTP {s}): {why}"),
            ))
        }
    }
}

/// Creates an alert: `POST /v2/alerts` with `Authorization: GenieKey KEY` and `{message,
/// alias?, priority?, source: "Nightshift"}`. Opsgenie answers 202 and processes the request
/// later; its `requestId` is the output. 401, 403, 422 and 429 come with a `message`.
pub(super) async fn opsgenie(
    og: &Opsgenie,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let url = api_url(&og.url, "act.endpoints.opsgenie.url", "/v2/alerts")?;
    let message = cut(required(with, "message")?.trim(), 130);
    let mut body = json!({ "message": message, "source": "Nightshift" });
    if let Some(priority) = optional(with, "priority") {
        let p = priority.trim().to_ascii_uppercase();
        if !matches!(p.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
            return Err(StepError::refused(format!(
                "priority {priority:?} is not one of P1, P2, P3, P4, P5"
            )));
        }
        body["priority"] = Value::String(p);
    }
    if let Some(alias) = optional(with, "alias") {
        if alias.chars().count() > 512 {
            return Err(StepError::refused(format!(
                "alias is {} characters long; Opsgenie takes at most 512",
                alias.chars().count()
            )));
        }
        body["alias"] = Value::String(alias);
    }
    let out = Outgoing::new(Method::POST, url)
        .secret_header("Authorization", &format!("GenieKey {}", og.api_key))
        .header("Accept", "application/json")
        .json(body.clone(), body);
    let (request, reply) = out.send(http).await?;
    let answer = reply.json();
    if reply.success() {
        let id = answer
            .as_ref()
            .and_then(|a| a.get("requestId"))
            .cloned()
            .unwrap_or(Value::Null);
        return Ok(StepOutcome {
            request,
            output: json!({ "request_id": id }),
        });
    }
    let mut why = answer
        .as_ref()
        .and_then(|a| a.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| reply.excerpt());
    if let Some(errors) = answer
        .as_ref()
        .and_then(|a| a.get("errors"))
        .and_then(Value::as_object)
    {
        for (field, e) in errors {
            let e = e.as_str().map_or_else(|| e.to_string(), str::to_string);
            why.push_str(&format!("; {field}: {e}"));
        }
    }
    let what = match reply.status {
        401 => "Opsgenie did not accept the API key (act.endpoints.opsgenie.api_key)",
        403 => "Opsgenie forbids this API key to create alerts",
        422 => "Opsgenie rejected the alert",
        429 => "Opsgenie rate-limited the alert; retry later",
        _ => "Opsgenie did not take the alert",
    };
    Err(StepError::failed(
        request,
        format!("{what} (HTTP {}): {why}", reply.status),
    ))
}
