//! `ticket.jira` (REST API v2) and `ticket.gitlab` (REST API v4).

use super::outgoing::{Outgoing, api_url, base64, encode_component};
use super::{GitLab, Jira, cut, optional};
use crate::provider::{StepError, StepOutcome, required};
use reqwest::Method;
use serde_json::{Value, json};

/// Creates an issue: `POST /rest/api/2/issue` with `{"fields": {project: {key}, summary,
/// description?, issuetype: {name}}}`. Jira answers 201 with the issue's `id` and `key`
/// (output with its browse URL), or 400 with `errorMessages` and per-field `errors`.
pub(super) async fn jira(
    jira: &Jira,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let url = api_url(&jira.url, "act.endpoints.jira.url", "/rest/api/2/issue")?;
    let project = required(with, "project")?.trim().to_string();
    // Jira refuses summaries of 255 characters or more, and line breaks in them.
    let summary = required(with, "summary")?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let summary = cut(&summary, 254);
    let issue_type = optional(with, "issue_type").unwrap_or_else(|| "Task".into());
    let mut fields = json!({
        "project": { "key": project },
        "summary": summary,
        "issuetype": { "name": issue_type.trim() },
    });
    if let Some(description) = optional(with, "description") {
        fields["description"] = Value::String(description);
    }
    let body = json!({ "fields": fields });
    let auth = match jira.user.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(user) => format!(
            "Basic {}",
            base64(format!("{}:{}", user.trim(), jira.token).as_bytes())
        ),
        None => format!("Bearer {}", jira.token),
    };
    let out = Outgoing::new(Method::POST, url)
        .secret_header("Authorization", &auth)
        .header("Accept", "application/json")
        .json(body.clone(), body);
    let (request, reply) = out.send(http).await?;
    let answer = reply.json();
    if reply.success() {
        let key = answer
            .as_ref()
            .and_then(|a| a.get("key"))
            .and_then(Value::as_str);
        let Some(key) = key else {
            return Err(StepError::failed(
                request,
                format!(
                    "Jira answered HTTP {} without an issue key: {}",
                    reply.status,
                    reply.excerpt()
                ),
            ));
        };
        let id = answer
            .as_ref()
            .and_then(|a| a.get("id"))
            .cloned()
            .unwrap_or(Value::Null);
        let browse = format!("{}/browse/{key}", jira.url.trim().trim_end_matches('/'));
        return Ok(StepOutcome {
            request,
            output: json!({ "key": key, "id": id, "url": browse }),
        });
    }
    let mut reasons: Vec<String> = Vec::new();
    if let Some(a) = &answer {
        if let Some(messages) = a.get("errorMessages").and_then(Value::as_array) {
            reasons.extend(
                messages
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
        }
        if let Some(errors) = a.get("errors").and_then(Value::as_object) {
            reasons.extend(errors.iter().map(|(field, e)| {
                let e = e.as_str().map_or_else(|| e.to_string(), str::to_string);
                format!("{field}: {e}")
            }));
        }
    }
    let why = if reasons.is_empty() {
        reply.excerpt()
    } else {
        reasons.join("; ")
    };
    let what = match reply.status {
        400 => "Jira rejected the issue",
        401 => {
            "Jira did not accept the credentials (act.endpoints.jira.user and act.endpoints.jira.token)"
        }
        403 => "Jira forbids these credentials to create issues in this project",
        404 => "Jira has no issue API at act.endpoints.jira.url",
        429 => "Jira rate-limited the request; retry later",
        _ => "Jira did not create the issue",
    };
    Err(StepError::failed(
        request,
        format!("{what} (HTTP {}): {why}", reply.status),
    ))
}

/// Creates an issue: `POST /api/v4/projects/ID/issues` with `PRIVATE-TOKEN` and `{title,
/// description?, labels?}`, the project given by numeric id or by path (`group/project`,
/// URL-encoded). GitLab answers 201 with the issue (output: its `iid` and `web_url`), 400 with
/// a `message` or `error`, 401 for a bad token, 404 for a project the token cannot see.
pub(super) async fn gitlab(
    gitlab: &GitLab,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let project = required(with, "project")?
        .trim()
        .trim_matches('/')
        .to_string();
    let id = if project.bytes().all(|b| b.is_ascii_digit()) {
        project.clone()
    } else {
        encode_component(&project)
    };
    let url = api_url(
        &gitlab.url,
        "act.endpoints.gitlab.url",
        &format!("/api/v4/projects/{id}/issues"),
    )?;
    let title = required(with, "title")?;
    let mut body = json!({ "title": title });
    if let Some(description) = optional(with, "description") {
        body["description"] = Value::String(description);
    }
    let labels: Vec<String> = match with.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(Value::Array(items)) => {
            let mut labels = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => labels.push(s.clone()),
                    Value::Number(n) => labels.push(n.to_string()),
                    _ => return Err(StepError::refused("labels must be text")),
                }
            }
            labels
        }
        Some(_) => {
            return Err(StepError::refused(
                "labels must be a comma-separated text or a list of texts",
            ));
        }
    };
    let labels: Vec<String> = labels
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.iter().any(|l| l.contains(',')) {
        return Err(StepError::refused("a label may not contain a comma"));
    }
    if !labels.is_empty() {
        body["labels"] = Value::String(labels.join(","));
    }
    let out = Outgoing::new(Method::POST, url)
        .secret_header("PRIVATE-TOKEN", &gitlab.token)
        .header("Accept", "application/json")
        .json(body.clone(), body);
    let (request, reply) = out.send(http).await?;
    let answer = reply.json();
    if reply.success() {
        let field = |k: &str| {
            answer
                .as_ref()
                .and_then(|a| a.get(k))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let iid = field("iid");
        if iid.is_null() {
            return Err(StepError::failed(
                request,
                format!(
                    "GitLab answered HTTP {} without an issue: {}",
                    reply.status,
                    reply.excerpt()
                ),
            ));
        }
        return Ok(StepOutcome {
            request,
            output: json!({ "iid": iid, "url": field("web_url") }),
        });
    }
    // GitLab explains in `message` (text, or per-field lists) or `error`.
    let why = answer
        .as_ref()
        .and_then(|a| a.get("message").or_else(|| a.get("error")))
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Object(fields) => fields
                .iter()
                .map(|(f, e)| match e {
                    Value::Array(list) => format!(
                        "{f} {}",
                        list.iter()
                            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    other => format!("{f} {other}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
        .unwrap_or_else(|| reply.excerpt());
    let what = match reply.status {
        400 => "GitLab rejected the issue".to_string(),
        401 => "GitLab did not accept the token (act.endpoints.gitlab.token)".to_string(),
        403 => "GitLab forbids this token to create issues in the project".to_string(),
        404 => format!("GitLab has no project {project:?} that this token can see"),
        429 => "GitLab rate-limited the request; retry later".to_string(),
        _ => "GitLab did not create the issue".to_string(),
    };
    Err(StepError::failed(
        request,
        format!("{what} (HTTP {}): {why}", reply.status),
    ))
}
