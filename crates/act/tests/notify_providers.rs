//! The HTTP, notification and ticket providers against local stand-ins for Slack, PagerDuty,
//! Opsgenie, Jira and GitLab, each enforcing its real API's documented request format and
//! answering with its documented status codes and bodies, and against a real SMTP server
//! (Python's aiosmtpd, from the peers `scripts/llm-peers` sets up; without it the mail tests
//! print why and pass, unless `NIGHTSHIFT_REQUIRE_PEERS=1`).
//!
//! Every stand-in records what it received, so the tests check the exact method, path, headers
//! and body sent, that the recorded `request` masks secrets, and that nothing at all is sent
//! when a call is refused.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use nightshift_act::notify::{Endpoints, GitLab, Jira, Opsgenie, PagerDuty, Smtp, SmtpTls};
use nightshift_act::{StepError, StepOutcome};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SLACK_PATH: &str = "/services/T0001/B0001/slackSECRETpath";
const PD_KEY: &str = "R0UT1NGKEY0123456789abcdef012345"; // 32 characters, as PagerDuty wants
const OG_KEY: &str = "og-api-key-7e1d2c";
const OG_READ_ONLY_KEY: &str = "og-read-only-key-55aa";
const JIRA_USER: &str = "ops@acme.example";
const JIRA_TOKEN: &str = "jira-api-token-93b1";
const JIRA_PAT: &str = "jira-dc-pat-41f0";
const GL_TOKEN: &str = "glpat-secret-0f9e";

// ---------------------------------------------------------------------------------------
// Recording and serving

#[derive(Clone, Debug)]
struct Hit {
    method: Method,
    /// The path and query exactly as received (still percent-encoded).
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<Vec<Hit>>>);

impl Hits {
    fn push(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Hit {
        let hit = Hit {
            method: method.clone(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            headers: headers.clone(),
            body: body.to_vec(),
        };
        self.0.lock().unwrap().push(hit.clone());
        hit
    }

    fn all(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }

    fn only(&self) -> Hit {
        let all = self.all();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:?}");
        all[0].clone()
    }
}

async fn start(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// An HTTP client as the engine builds one: ring as rustls' provider, no redirects followed.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html")],
        body.to_string(),
    )
        .into_response()
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A field as text, `None` when absent, not text or blank.
fn field<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Runs `uses` and expects success.
async fn ok(ep: &Endpoints, uses: &str, with: Value) -> StepOutcome {
    match ep.call(&client(), uses, &with).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{uses} failed: {} (request {:?})", e.message, e.request),
    }
}

/// Runs `uses` and expects it to fail after sending.
async fn failed(ep: &Endpoints, uses: &str, with: Value) -> StepError {
    let e = ep
        .call(&client(), uses, &with)
        .await
        .expect_err("expected a failure");
    assert!(e.request.is_some(), "{uses} sent nothing: {}", e.message);
    e
}

/// Runs `uses` and expects it to be refused before sending anything.
async fn refused(ep: &Endpoints, uses: &str, with: Value) -> String {
    let e = ep
        .call(&client(), uses, &with)
        .await
        .expect_err("expected a refusal");
    assert_eq!(e.request, None, "{uses} sent something: {}", e.message);
    e.message
}

fn assert_hidden(what: &str, secret: &str) {
    assert!(!what.contains(secret), "secret {secret:?} shows in {what}");
}

// ---------------------------------------------------------------------------------------
// Slack incoming webhooks: POST JSON with `text`; 200 `ok` or an error code as text.

#[derive(Clone, Default)]
struct Slack {
    hits: Hits,
}

async fn slack_api(
    State(s): State<Slack>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.hits.push(&method, &uri, &headers, &body);
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "invalid_method");
    }
    if uri.path() != SLACK_PATH {
        return text(StatusCode::NOT_FOUND, "no_service");
    }
    if !is_json(&headers) {
        return text(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    if !payload.is_object() {
        return text(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    let has_blocks = payload.get("blocks").is_some() || payload.get("attachments").is_some();
    if field(&payload, "/text").is_none() && !has_blocks {
        return text(StatusCode::BAD_REQUEST, "no_text");
    }
    match field(&payload, "/channel") {
        Some("#archived") => text(StatusCode::GONE, "channel_is_archived"),
        Some("#announcements") => text(StatusCode::FORBIDDEN, "action_prohibited"),
        Some("#nowhere") => text(StatusCode::NOT_FOUND, "channel_not_found"),
        _ => text(StatusCode::OK, "ok"),
    }
}

async fn slack_stand_in() -> (Slack, String) {
    let s = Slack::default();
    let base = start(Router::new().fallback(slack_api).with_state(s.clone())).await;
    (s, base)
}

fn slack_endpoints(base: &str) -> Endpoints {
    Endpoints {
        slack_webhook: Some(format!("{base}{SLACK_PATH}")),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn slack_posts_text_and_channel_as_json_and_hides_the_webhook_path() {
    let (s, base) = slack_stand_in().await;
    let ep = slack_endpoints(&base);
    let out = ok(
        &ep,
        "notify.slack",
        json!({"text": "Rolled back checkout for INC-7", "channel": "#ops"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.uri, SLACK_PATH);
    assert!(is_json(&hit.headers));
    assert_eq!(
        hit.json(),
        json!({"text": "Rolled back checkout for INC-7", "channel": "#ops"})
    );
    assert_eq!(out.output, json!({"status": 200}));
    assert_eq!(out.request["url"], json!(format!("{base}/***")));
    assert_eq!(out.request["method"], "POST");
    assert_hidden(&out.request.to_string(), "slackSECRETpath");
}

#[tokio::test]
async fn slack_errors_carry_slacks_code() {
    let (s, base) = slack_stand_in().await;
    let ep = slack_endpoints(&base);
    for (channel, status, code) in [
        ("#archived", 410, "channel_is_archived"),
        ("#announcements", 403, "action_prohibited"),
        ("#nowhere", 404, "channel_not_found"),
    ] {
        let e = failed(
            &ep,
            "notify.slack",
            json!({"text": "hello", "channel": channel}),
        )
        .await;
        assert!(
            e.message.contains(&format!("HTTP {status}")) && e.message.contains(code),
            "{}",
            e.message
        );
        assert_hidden(&e.message, "slackSECRETpath");
    }
    // A revoked or mistyped webhook.
    let revoked = Endpoints {
        slack_webhook: Some(format!("{base}/services/T0001/B0001/revoked")),
        ..Endpoints::default()
    };
    let e = failed(&revoked, "notify.slack", json!({"text": "hello"})).await;
    assert!(e.message.contains("HTTP 404") && e.message.contains("no_service"));
    assert_hidden(&e.request.unwrap().to_string(), "revoked");
    // Blank text is refused here rather than sent for Slack to answer `no_text`.
    let before = s.hits.all().len();
    let why = refused(&ep, "notify.slack", json!({"text": "  "})).await;
    assert!(why.contains("text"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}

// ---------------------------------------------------------------------------------------
// PagerDuty Events API v2: POST /v2/enqueue; 202 with the dedup key, 400 with the reasons,
// 429 when a routing key sends too much.

#[derive(Clone, Default)]
struct PagerDutyApi {
    hits: Hits,
    /// Events accepted per routing key before answering 429.
    limit: Option<usize>,
    accepted: Arc<Mutex<HashMap<String, usize>>>,
}

async fn pagerduty_api(
    State(s): State<PagerDutyApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.hits.push(&method, &uri, &headers, &body);
    let invalid = |errors: Vec<String>| {
        json_reply(
            StatusCode::BAD_REQUEST,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        )
    };
    if method != Method::POST || uri.path() != "/v2/enqueue" {
        return json_reply(StatusCode::NOT_FOUND, json!({"status": "not found"}));
    }
    if !is_json(&headers) {
        return invalid(vec!["Content-Type must be application/json".into()]);
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid(vec!["Invalid JSON".into()]);
    };
    let mut errors = Vec::new();
    match field(&event, "/routing_key") {
        None => errors.push("'routing_key' is missing or blank".to_string()),
        Some(k) if k.len() != 32 => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        Some(_) => {}
    }
    let action = field(&event, "/event_action");
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push(
            "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"
                .into(),
        );
    }
    if let Some(key) = event.get("dedup_key")
        && key.as_str().is_none_or(|k| k.chars().count() > 255)
    {
        errors.push("'dedup_key' must be a string of at most 255 characters".into());
    }
    if action == Some("trigger") {
        match field(&event, "/payload/summary") {
            None => errors.push("'payload.summary' is missing or blank".into()),
            Some(summary) if summary.chars().count() > 1024 => {
                errors.push("'payload.summary' must be at most 1024 characters".into())
            }
            Some(_) => {}
        }
        if field(&event, "/payload/source").is_none() {
            errors.push("'payload.source' is missing or blank".into());
        }
        if !matches!(
            field(&event, "/payload/severity"),
            Some("critical" | "error" | "warning" | "info")
        ) {
            errors.push(
                "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
                    .into(),
            );
        }
    }
    if !errors.is_empty() {
        return invalid(errors);
    }
    let key = field(&event, "/routing_key").unwrap().to_string();
    {
        let mut accepted = s.accepted.lock().unwrap();
        let n = accepted.entry(key).or_default();
        if s.limit.is_some_and(|limit| *n >= limit) {
            return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        }
        *n += 1;
    }
    let dedup = field(&event, "/dedup_key").map_or_else(
        || "5ac64822c9d04b0f8e5d1c4bc4a3b2a1".to_string(),
        str::to_string,
    );
    json_reply(
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup}),
    )
}

async fn pagerduty_stand_in(limit: Option<usize>) -> (PagerDutyApi, String) {
    let s = PagerDutyApi {
        limit,
        ..PagerDutyApi::default()
    };
    let base = start(Router::new().fallback(pagerduty_api).with_state(s.clone())).await;
    (s, base)
}

fn pagerduty_endpoints(base: &str, key: &str) -> Endpoints {
    Endpoints {
        pagerduty: Some(PagerDuty {
            routing_key: key.into(),
            url: format!("{base}/v2/enqueue"),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn pagerduty_triggers_an_event_and_returns_its_dedup_key() {
    let (s, base) = pagerduty_stand_in(None).await;
    let ep = pagerduty_endpoints(&base, PD_KEY);
    let out = ok(
        &ep,
        "notify.pagerduty",
        json!({"summary": "checkout 5xx at 12%", "severity": "Critical", "dedup_key": "INC-7"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(
        (hit.method.clone(), hit.uri.as_str()),
        (Method::POST, "/v2/enqueue")
    );
    assert!(is_json(&hit.headers));
    assert_eq!(
        hit.json(),
        json!({
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": "INC-7",
            "payload": {"summary": "checkout 5xx at 12%", "source": "nightshift", "severity": "critical"},
            "client": "Nightshift",
        })
    );
    assert_eq!(out.output, json!({"dedup_key": "INC-7"}));
    assert_eq!(out.request["body"]["routing_key"], "***");
    assert_eq!(out.request["url"], json!(format!("{base}/v2/enqueue")));
    assert_hidden(&out.request.to_string(), PD_KEY);

    // Without a dedup key PagerDuty makes one; severity defaults to error; a long summary is
    // cut to PagerDuty's 1024 characters.
    let long = "x".repeat(3000);
    let out = ok(&ep, "notify.pagerduty", json!({"summary": long})).await;
    assert_eq!(
        out.output,
        json!({"dedup_key": "5ac64822c9d04b0f8e5d1c4bc4a3b2a1"})
    );
    let sent = s.hits.all()[1].json();
    assert_eq!(sent["payload"]["severity"], "error");
    assert_eq!(
        sent["payload"]["summary"].as_str().unwrap().chars().count(),
        1024
    );
    assert!(sent.get("dedup_key").is_none());
}

#[tokio::test]
async fn pagerduty_invalid_events_and_rate_limits_are_reported() {
    let (s, base) = pagerduty_stand_in(Some(1)).await;
    // A key of the wrong length: PagerDuty's 400 and its reasons, without the key.
    let short_key = "shortKEY12345";
    let e = failed(
        &pagerduty_endpoints(&base, short_key),
        "notify.pagerduty",
        json!({"summary": "x"}),
    )
    .await;
    assert!(e.message.contains("HTTP 400"), "{}", e.message);
    assert!(
        e.message.contains("Event object is invalid"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("Length of 'routing_key' is incorrect (should be 32 characters)"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, short_key);
    assert_hidden(&e.request.unwrap().to_string(), short_key);

    // One event per key: the second is rate-limited.
    let ep = pagerduty_endpoints(&base, PD_KEY);
    ok(&ep, "notify.pagerduty", json!({"summary": "first"})).await;
    let e = failed(&ep, "notify.pagerduty", json!({"summary": "second"})).await;
    assert!(
        e.message.contains("HTTP 429") && e.message.contains("rate-limited"),
        "{}",
        e.message
    );

    // Refused before sending: an unknown severity, an over-long dedup key.
    let before = s.hits.all().len();
    let why = refused(
        &ep,
        "notify.pagerduty",
        json!({"summary": "x", "severity": "sev1"}),
    )
    .await;
    assert!(
        why.contains("severity") && why.contains("critical"),
        "{why}"
    );
    let why = refused(
        &ep,
        "notify.pagerduty",
        json!({"summary": "x", "dedup_key": "k".repeat(256)}),
    )
    .await;
    assert!(why.contains("255"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}

// ---------------------------------------------------------------------------------------
// Opsgenie Alert API: POST /v2/alerts with `Authorization: GenieKey KEY`; 202 with a
// requestId; 401, 403, 422 with a message.

#[derive(Clone, Default)]
struct OpsgenieApi {
    hits: Hits,
}

const OG_REQUEST_ID: &str = "43a29c5c-3dbf-4fa4-9c26-f4f71023e120";

async fn opsgenie_api(
    State(s): State<OpsgenieApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.hits.push(&method, &uri, &headers, &body);
    let answer = |status: StatusCode, message: &str, errors: Option<Value>| {
        let mut b = json!({"message": message, "took": 0.001, "requestId": OG_REQUEST_ID});
        if let Some(errors) = errors {
            b["errors"] = errors;
        }
        json_reply(status, b)
    };
    if method != Method::POST || uri.path() != "/v2/alerts" {
        return answer(StatusCode::NOT_FOUND, "Not Found", None);
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match auth.strip_prefix("GenieKey ") {
        Some(OG_KEY) => {}
        Some(OG_READ_ONLY_KEY) => {
            return answer(
                StatusCode::FORBIDDEN,
                "You do not have the required permission to do this action",
                None,
            );
        }
        _ => return answer(StatusCode::UNAUTHORIZED, "Could not authenticate", None),
    }
    let unprocessable = |field: &str, why: &str| {
        answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Request body is not processable. Please check the errors.",
            Some(json!({ field: why })),
        )
    };
    if !is_json(&headers) {
        return unprocessable("body", "Content type must be application/json");
    }
    let Ok(alert) = serde_json::from_slice::<Value>(&body) else {
        return unprocessable("body", "Could not parse the request body");
    };
    match field(&alert, "/message") {
        None => return unprocessable("message", "Message can not be empty."),
        Some(m) if m.chars().count() > 130 => {
            return unprocessable("message", "Message can not be longer than 130 characters.");
        }
        Some(_) => {}
    }
    if let Some(p) = alert.get("priority")
        && !matches!(p.as_str(), Some("P1" | "P2" | "P3" | "P4" | "P5"))
    {
        return unprocessable("priority", "Priority should be one of [P1, P2, P3, P4, P5]");
    }
    if let Some(a) = alert.get("alias")
        && a.as_str().is_none_or(|a| a.chars().count() > 512)
    {
        return unprocessable("alias", "Alias can not be longer than 512 characters.");
    }
    if let Some(src) = alert.get("source")
        && src.as_str().is_none_or(|s| s.chars().count() > 100)
    {
        return unprocessable("source", "Source can not be longer than 100 characters.");
    }
    json_reply(
        StatusCode::ACCEPTED,
        json!({"result": "Request will be processed", "took": 0.302, "requestId": OG_REQUEST_ID}),
    )
}

async fn opsgenie_stand_in() -> (OpsgenieApi, String) {
    let s = OpsgenieApi::default();
    let base = start(Router::new().fallback(opsgenie_api).with_state(s.clone())).await;
    (s, base)
}

fn opsgenie_endpoints(base: &str, key: &str) -> Endpoints {
    Endpoints {
        opsgenie: Some(Opsgenie {
            api_key: key.into(),
            url: format!("{base}/"),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn opsgenie_creates_an_alert_with_a_genie_key() {
    let (s, base) = opsgenie_stand_in().await;
    let ep = opsgenie_endpoints(&base, OG_KEY);
    let long = format!("checkout is down {}", "!".repeat(200));
    let out = ok(
        &ep,
        "notify.opsgenie",
        json!({"message": long, "priority": "p2", "alias": "INC-7"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(
        (hit.method.clone(), hit.uri.as_str()),
        (Method::POST, "/v2/alerts")
    );
    assert_eq!(
        hit.header("authorization"),
        Some(format!("GenieKey {OG_KEY}").as_str())
    );
    assert!(is_json(&hit.headers));
    let sent = hit.json();
    let message = sent["message"].as_str().unwrap();
    assert_eq!(message.chars().count(), 130);
    assert!(message.starts_with("checkout is down !") && message.ends_with('…'));
    assert_eq!(
        sent,
        json!({"message": message, "alias": "INC-7", "priority": "P2", "source": "Nightshift"})
    );
    assert_eq!(out.output, json!({"request_id": OG_REQUEST_ID}));
    assert_eq!(out.request["headers"]["Authorization"], "***");
    assert_hidden(&out.request.to_string(), OG_KEY);
}

#[tokio::test]
async fn opsgenie_refusals_carry_its_message() {
    let (s, base) = opsgenie_stand_in().await;
    let e = failed(
        &opsgenie_endpoints(&base, "not-a-key"),
        "notify.opsgenie",
        json!({"message": "x"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 401") && e.message.contains("Could not authenticate"),
        "{}",
        e.message
    );
    assert!(e.message.contains("act.endpoints.opsgenie.api_key"));
    assert_hidden(&e.message, "not-a-key");
    let e = failed(
        &opsgenie_endpoints(&base, OG_READ_ONLY_KEY),
        "notify.opsgenie",
        json!({"message": "x"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 403") && e.message.contains("required permission"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, OG_READ_ONLY_KEY);

    let ep = opsgenie_endpoints(&base, OG_KEY);
    let before = s.hits.all().len();
    let why = refused(
        &ep,
        "notify.opsgenie",
        json!({"message": "x", "priority": "urgent"}),
    )
    .await;
    assert!(why.contains("P1"), "{why}");
    let why = refused(&ep, "notify.opsgenie", json!({"message": ""})).await;
    assert!(why.contains("message"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}

// ---------------------------------------------------------------------------------------
// Jira REST API v2: POST /rest/api/2/issue with Basic (Cloud) or Bearer (Data Center);
// 201 {id, key, self}; 400 {errorMessages, errors}; 401 when not authenticated.

#[derive(Clone, Default)]
struct JiraApi {
    hits: Hits,
    base: Arc<Mutex<String>>,
}

async fn jira_api(
    State(s): State<JiraApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.hits.push(&method, &uri, &headers, &body);
    if method != Method::POST || uri.path() != "/rest/api/2/issue" {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({"errorMessages": ["Not found"], "errors": {}}),
        );
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let basic = format!(
        "Basic {}",
        b64(format!("{JIRA_USER}:{JIRA_TOKEN}").as_bytes())
    );
    if auth != basic && auth != format!("Bearer {JIRA_PAT}") {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain")],
            "Client must be authenticated to access this resource.",
        )
            .into_response();
    }
    if !is_json(&headers) {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(issue) = serde_json::from_slice::<Value>(&body) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": ["Unexpected character in the request body"], "errors": {}}),
        );
    };
    let mut errors = serde_json::Map::new();
    if field(&issue, "/fields/project/key") != Some("OPS") {
        errors.insert("project".into(), json!("Specify a valid project ID or key"));
    }
    match field(&issue, "/fields/summary") {
        None => {
            errors.insert(
                "summary".into(),
                json!("You must specify a summary of the issue."),
            );
        }
        Some(s) if s.chars().count() >= 255 => {
            errors.insert(
                "summary".into(),
                json!("Summary must be less than 255 characters."),
            );
        }
        Some(s) if s.contains(['\r', '\n']) => {
            errors.insert(
                "summary".into(),
                json!("The summary is invalid because it contains newline characters."),
            );
        }
        Some(_) => {}
    }
    if !matches!(
        field(&issue, "/fields/issuetype/name"),
        Some("Task" | "Bug")
    ) {
        errors.insert("issuetype".into(), json!("Specify a valid issue type"));
    }
    if let Some(d) = issue.pointer("/fields/description")
        && d.as_str().is_none_or(|d| d.chars().count() > 32767)
    {
        errors.insert(
            "description".into(),
            json!(
                "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
            ),
        );
    }
    if !errors.is_empty() {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": [], "errors": errors}),
        );
    }
    let base = s.base.lock().unwrap().clone();
    json_reply(
        StatusCode::CREATED,
        json!({"id": "10042", "key": "OPS-42", "self": format!("{base}/rest/api/2/issue/10042")}),
    )
}

async fn jira_stand_in() -> (JiraApi, String) {
    let s = JiraApi::default();
    let base = start(Router::new().fallback(jira_api).with_state(s.clone())).await;
    *s.base.lock().unwrap() = base.clone();
    (s, base)
}

fn jira_endpoints(base: &str, user: Option<&str>, token: &str) -> Endpoints {
    Endpoints {
        jira: Some(Jira {
            url: format!("{base}/"),
            user: user.map(str::to_string),
            token: token.into(),
        }),
        ..Endpoints::default()
    }
}

/// Base64 written independently of the provider's, to check its `Authorization` header.
fn b64(bytes: &[u8]) -> String {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".as_bytes();
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    let whole = bits.len().next_multiple_of(6);
    while bits.len() < whole {
        bits.push('0');
    }
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|c| {
            alphabet[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char
        })
        .collect();
    let padded = out.len().next_multiple_of(4);
    while out.len() < padded {
        out.push('=');
    }
    out
}

#[tokio::test]
async fn jira_creates_an_issue_with_basic_auth() {
    let (s, base) = jira_stand_in().await;
    let ep = jira_endpoints(&base, Some(JIRA_USER), JIRA_TOKEN);
    let out = ok(
        &ep,
        "ticket.jira",
        json!({"project": "OPS", "summary": "INC-7: checkout\n5xx", "description": "Suspected: payments"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(
        (hit.method.clone(), hit.uri.as_str()),
        (Method::POST, "/rest/api/2/issue")
    );
    assert_eq!(
        hit.header("authorization"),
        Some(
            format!(
                "Basic {}",
                b64(format!("{JIRA_USER}:{JIRA_TOKEN}").as_bytes())
            )
            .as_str()
        )
    );
    assert_eq!(
        hit.json(),
        json!({"fields": {
            "project": {"key": "OPS"},
            "summary": "INC-7: checkout 5xx",
            "description": "Suspected: payments",
            "issuetype": {"name": "Task"},
        }})
    );
    assert_eq!(
        out.output,
        json!({"key": "OPS-42", "id": "10042", "url": format!("{base}/browse/OPS-42")})
    );
    assert_eq!(out.request["headers"]["Authorization"], "***");
    assert_hidden(&out.request.to_string(), JIRA_TOKEN);

    // Data Center: no user, the token as a bearer; a long summary cut under Jira's limit.
    let ep = jira_endpoints(&base, None, JIRA_PAT);
    ok(
        &ep,
        "ticket.jira",
        json!({"project": "OPS", "summary": "s".repeat(400), "issue_type": "Bug"}),
    )
    .await;
    let hit = s.hits.all()[1].clone();
    assert_eq!(
        hit.header("authorization"),
        Some(format!("Bearer {JIRA_PAT}").as_str())
    );
    assert_eq!(hit.json()["fields"]["issuetype"]["name"], "Bug");
    assert_eq!(
        hit.json()["fields"]["summary"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        254
    );
}

#[tokio::test]
async fn jira_errors_list_its_field_messages() {
    let (_s, base) = jira_stand_in().await;
    let ep = jira_endpoints(&base, Some(JIRA_USER), JIRA_TOKEN);
    let e = failed(
        &ep,
        "ticket.jira",
        json!({"project": "NOPE", "summary": "x", "issue_type": "Epic"}),
    )
    .await;
    assert!(e.message.contains("HTTP 400"), "{}", e.message);
    assert!(
        e.message
            .contains("project: Specify a valid project ID or key"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("issuetype: Specify a valid issue type"),
        "{}",
        e.message
    );
    let e = failed(
        &ep,
        "ticket.jira",
        json!({"project": "OPS", "summary": "x", "description": "d".repeat(40_000)}),
    )
    .await;
    assert!(
        e.message
            .contains("description: The entered text is too long"),
        "{}",
        e.message
    );

    let wrong = jira_endpoints(&base, Some(JIRA_USER), "wrong-token-xyz");
    let e = failed(
        &wrong,
        "ticket.jira",
        json!({"project": "OPS", "summary": "x"}),
    )
    .await;
    assert!(e.message.contains("HTTP 401"), "{}", e.message);
    assert!(
        e.message.contains("Client must be authenticated")
            && e.message.contains("act.endpoints.jira"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, "wrong-token-xyz");
    assert_hidden(&e.request.unwrap().to_string(), "wrong-token-xyz");
}

// ---------------------------------------------------------------------------------------
// GitLab REST API v4: POST /api/v4/projects/:id/issues with PRIVATE-TOKEN; 201 with the
// issue; 400 {message|error}; 401 {"message": "401 Unauthorized"}; 404 project not found.

#[derive(Clone, Default)]
struct GitLabApi {
    hits: Hits,
    base: Arc<Mutex<String>>,
}

async fn gitlab_api(
    State(s): State<GitLabApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.hits.push(&method, &uri, &headers, &body);
    let not_found = || json_reply(StatusCode::NOT_FOUND, json!({"message": "404 Not Found"}));
    // Matched on the raw path, as GitLab does: a project path must come URL-encoded, as one
    // segment.
    let Some(id) = uri
        .path()
        .strip_prefix("/api/v4/projects/")
        .and_then(|rest| rest.strip_suffix("/issues"))
    else {
        return not_found();
    };
    if method != Method::POST || id.contains('/') {
        return not_found();
    }
    if headers.get("private-token").and_then(|v| v.to_str().ok()) != Some(GL_TOKEN) {
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"message": "401 Unauthorized"}),
        );
    }
    let path = match id {
        "42" | "ops%2Fcheckout" => "ops/checkout",
        _ => {
            return json_reply(
                StatusCode::NOT_FOUND,
                json!({"message": "404 Project Not Found"}),
            );
        }
    };
    let issue: Value = if is_json(&headers) {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return json_reply(StatusCode::BAD_REQUEST, json!({"error": "400 Bad request"}));
            }
        }
    } else {
        json!({})
    };
    let Some(title) = issue.get("title") else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "title is missing"}),
        );
    };
    let title = title.as_str().unwrap_or_default();
    if title.trim().is_empty() {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"message": {"title": ["can't be blank"]}}),
        );
    }
    if title.chars().count() > 255 {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"message": {"title": ["is too long (maximum is 255 characters)"]}}),
        );
    }
    let description = issue.get("description").and_then(Value::as_str);
    if description.is_some_and(|d| d.chars().count() > 1_048_576) {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"message": {"description": ["is too long (maximum is 1048576 characters)"]}}),
        );
    }
    let labels: Vec<&str> = match issue.get("labels") {
        None => vec![],
        Some(Value::String(l)) => l.split(',').collect(),
        Some(_) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "labels is invalid"}),
            );
        }
    };
    let base = s.base.lock().unwrap().clone();
    json_reply(
        StatusCode::CREATED,
        json!({
            "id": 9001, "iid": 7, "project_id": 42, "title": title,
            "description": description, "state": "opened", "labels": labels,
            "web_url": format!("{base}/{path}/-/issues/7"),
        }),
    )
}

async fn gitlab_stand_in() -> (GitLabApi, String) {
    let s = GitLabApi::default();
    let base = start(Router::new().fallback(gitlab_api).with_state(s.clone())).await;
    *s.base.lock().unwrap() = base.clone();
    (s, base)
}

fn gitlab_endpoints(base: &str, token: &str) -> Endpoints {
    Endpoints {
        gitlab: Some(GitLab {
            url: base.into(),
            token: token.into(),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn gitlab_creates_an_issue_by_project_path_or_id() {
    let (s, base) = gitlab_stand_in().await;
    let ep = gitlab_endpoints(&base, GL_TOKEN);
    let out = ok(
        &ep,
        "ticket.gitlab",
        json!({"project": "ops/checkout", "title": "INC-7: checkout 5xx",
               "description": "Suspected: payments", "labels": ["incident", " sev2 "]}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.uri, "/api/v4/projects/ops%2Fcheckout/issues");
    assert_eq!(hit.header("private-token"), Some(GL_TOKEN));
    assert!(is_json(&hit.headers));
    assert_eq!(
        hit.json(),
        json!({"title": "INC-7: checkout 5xx", "description": "Suspected: payments", "labels": "incident,sev2"})
    );
    assert_eq!(
        out.output,
        json!({"iid": 7, "url": format!("{base}/ops/checkout/-/issues/7")})
    );
    assert_eq!(out.request["headers"]["PRIVATE-TOKEN"], "***");
    assert_hidden(&out.request.to_string(), GL_TOKEN);

    ok(
        &ep,
        "ticket.gitlab",
        json!({"project": 42, "title": "t", "labels": "a, b,,c"}),
    )
    .await;
    let hit = s.hits.all()[1].clone();
    assert_eq!(hit.uri, "/api/v4/projects/42/issues");
    assert_eq!(hit.json(), json!({"title": "t", "labels": "a,b,c"}));
}

#[tokio::test]
async fn gitlab_errors_carry_its_message() {
    let (s, base) = gitlab_stand_in().await;
    let ep = gitlab_endpoints(&base, GL_TOKEN);
    let e = failed(
        &ep,
        "ticket.gitlab",
        json!({"project": "ops/nope", "title": "t"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 404") && e.message.contains("404 Project Not Found"),
        "{}",
        e.message
    );
    assert!(e.message.contains("ops/nope"), "{}", e.message);
    let e = failed(
        &ep,
        "ticket.gitlab",
        json!({"project": "42", "title": "t".repeat(300)}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 400")
            && e.message
                .contains("title is too long (maximum is 255 characters)"),
        "{}",
        e.message
    );
    let e = failed(
        &gitlab_endpoints(&base, "glpat-wrong-1234"),
        "ticket.gitlab",
        json!({"project": "42", "title": "t"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 401")
            && e.message.contains("401 Unauthorized")
            && e.message.contains("act.endpoints.gitlab.token"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, "glpat-wrong-1234");
    assert_hidden(&e.request.unwrap().to_string(), "glpat-wrong-1234");

    let before = s.hits.all().len();
    let why = refused(
        &ep,
        "ticket.gitlab",
        json!({"project": "42", "title": "t", "labels": {"a": 1}}),
    )
    .await;
    assert!(why.contains("labels"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}

/// The stand-ins are only as good as the rules they hold a client to: each refuses a request
/// that breaks its API's documented rules, the way the API does.
#[tokio::test]
async fn stand_ins_enforce_the_documented_rules() {
    let http = client();
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };

    let (_, slack) = slack_stand_in().await;
    let url = format!("{slack}{SLACK_PATH}");
    assert_eq!(
        send(http.post(&url).json(&json!({"channel": "#ops"}))).await,
        (400, "no_text".to_string())
    );
    assert_eq!(
        send(
            http.post(&url)
                .body("{not json")
                .header("content-type", "application/json")
        )
        .await,
        (400, "invalid_payload".to_string())
    );

    let (_, pd) = pagerduty_stand_in(None).await;
    let url = format!("{pd}/v2/enqueue");
    let (status, body) = send(http.post(&url).json(&json!({
        "event_action": "trigger",
        "payload": {"source": "s", "severity": "fatal"},
    })))
    .await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "invalid event");
    let errors = body["errors"].to_string();
    for e in [
        "'routing_key' is missing",
        "'payload.summary' is missing",
        "'payload.severity' is invalid",
    ] {
        assert!(errors.contains(e), "{errors}");
    }

    let (_, og) = opsgenie_stand_in().await;
    let url = format!("{og}/v2/alerts");
    let (status, _) = send(http.post(&url).json(&json!({"message": "x"}))).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.post(&url)
            .header("authorization", format!("Bearer {OG_KEY}"))
            .json(&json!({"message": "x"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = send(
        http.post(&url)
            .header("authorization", format!("GenieKey {OG_KEY}"))
            .json(&json!({"alias": "a"})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("Message can not be empty."), "{body}");

    let (_, jira) = jira_stand_in().await;
    let url = format!("{jira}/rest/api/2/issue");
    let issue = json!({"fields": {"project": {"key": "OPS"}, "summary": "s", "issuetype": {"name": "Task"}}});
    let (status, _) = send(http.post(&url).json(&issue)).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.post(&url)
            .basic_auth(JIRA_USER, Some(JIRA_TOKEN))
            .json(&issue),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = send(
        http.post(&url)
            .basic_auth(JIRA_USER, Some(JIRA_TOKEN))
            .json(&json!({"fields": {"project": {"key": "X"}, "issuetype": {"name": "Task"}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Specify a valid project ID or key")
            && body.contains("You must specify a summary"),
        "{body}"
    );

    let (_, gl) = gitlab_stand_in().await;
    let url = format!("{gl}/api/v4/projects/42/issues");
    let (status, body) = send(http.post(&url).json(&json!({"title": "t"}))).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"401 Unauthorized"}"#)
    );
    let (status, body) = send(
        http.post(&url)
            .header("PRIVATE-TOKEN", GL_TOKEN)
            .json(&json!({"description": "d"})),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"title is missing"}"#)
    );
    let (status, _) = send(
        http.post(format!("{gl}/api/v4/projects/ops/checkout/issues"))
            .header("PRIVATE-TOKEN", GL_TOKEN)
            .json(&json!({"title": "t"})),
    )
    .await;
    assert_eq!(status, 404, "an unencoded project path matches no route");
    let (status, _) = send(
        http.post(format!("{gl}/api/v4/projects/7/issues"))
            .header("PRIVATE-TOKEN", GL_TOKEN)
            .json(&json!({"title": "t"})),
    )
    .await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------------
// http.request and notify.webhook against an echoing server.

#[derive(Clone, Default)]
struct Echo {
    hits: Hits,
    /// Where `/redirect` sends the client.
    elsewhere: Arc<Mutex<String>>,
}

async fn echo(
    State(s): State<Echo>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.hits.push(&method, &uri, &headers, &body);
    let path = uri.path();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return (status, format!("status {code}\n  with   details")).into_response();
    }
    match path {
        "/json" => json_reply(
            StatusCode::OK,
            json!({"ok": true, "received": String::from_utf8_lossy(&body)}),
        ),
        "/text" => (StatusCode::OK, "plain words").into_response(),
        // About 100 KiB, two-byte characters after one ASCII one: 64 KiB ends inside one.
        "/big" => (StatusCode::OK, format!("a{}", "é".repeat(50 * 1024))).into_response(),
        "/created" => (StatusCode::CREATED, "").into_response(),
        "/redirect" => {
            let to = format!("{}/json", s.elsewhere.lock().unwrap());
            (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response()
        }
        _ => (StatusCode::OK, "").into_response(),
    }
}

async fn echo_stand_in() -> (Echo, String, String) {
    let s = Echo::default();
    let base = start(Router::new().fallback(echo).with_state(s.clone())).await;
    let host_port = base.trim_start_matches("http://").to_string();
    (s, base, host_port)
}

fn hosts(entries: &[&str]) -> Endpoints {
    Endpoints {
        http_hosts: entries.iter().map(|e| e.to_string()).collect(),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn http_request_sends_method_headers_and_json_and_masks_secrets() {
    let (s, base, host_port) = echo_stand_in().await;
    let ep = hosts(&[&host_port]);
    let out = ok(
        &ep,
        "http.request",
        json!({
            "url": format!("{base}/json?api_key=QUERYSECRET&page=2"),
            "method": "put",
            "headers": {"X-Trace": "abc", "Authorization": "Bearer HEADERSECRET"},
            "body": {"replicas": 3, "password": "BODYSECRET"},
        }),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::PUT);
    assert_eq!(hit.uri, "/json?api_key=QUERYSECRET&page=2");
    assert_eq!(hit.header("x-trace"), Some("abc"));
    assert_eq!(hit.header("authorization"), Some("Bearer HEADERSECRET"));
    assert!(is_json(&hit.headers));
    assert_eq!(hit.json(), json!({"replicas": 3, "password": "BODYSECRET"}));
    assert_eq!(out.output["status"], 200);
    assert_eq!(out.output["body"]["ok"], true);
    assert_eq!(out.request["method"], "PUT");
    assert_eq!(out.request["headers"]["Authorization"], "***");
    assert_eq!(out.request["headers"]["X-Trace"], "abc");
    assert_eq!(
        out.request["body"],
        json!({"replicas": 3, "password": "***"})
    );
    let recorded = out.request.to_string();
    for secret in ["QUERYSECRET", "HEADERSECRET", "BODYSECRET"] {
        assert_hidden(&recorded, secret);
    }
    assert!(out.request["url"].as_str().unwrap().contains("page=2"));
}

#[tokio::test]
async fn http_request_defaults_statuses_and_long_answers() {
    let (s, base, host_port) = echo_stand_in().await;
    // The host alone allows any port.
    let ep = hosts(&["127.0.0.1"]);
    // POST by default; text goes as text.
    let out = ok(
        &ep,
        "http.request",
        json!({"url": format!("{base}/text"), "body": "restart please"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.body, b"restart please");
    assert_eq!(
        hit.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(out.output, json!({"status": 200, "body": "plain words"}));

    // expect_status: an exact status, given as a number or as text; otherwise any 2xx.
    let out = ok(
        &ep,
        "http.request",
        json!({"url": format!("{base}/status/404"), "method": "GET", "expect_status": 404}),
    )
    .await;
    assert_eq!(out.output["status"], 404);
    let e = failed(
        &ep,
        "http.request",
        json!({"url": format!("{base}/status/503"), "method": "GET"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 503 (expected 2xx)")
            && e.message.contains("status 503 with details"),
        "{}",
        e.message
    );
    let e = failed(
        &ep,
        "http.request",
        json!({"url": format!("{base}/created"), "expect_status": "200"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 201 (expected 200)"),
        "{}",
        e.message
    );

    // A long answer is cut at 64 KiB, on a character boundary.
    let out = ok(
        &ep,
        "http.request",
        json!({"url": format!("{base}/big"), "method": "GET"}),
    )
    .await;
    let body = out.output["body"].as_str().unwrap();
    assert_eq!(body.len(), 64 * 1024 - 1);
    assert!(body.starts_with('a') && body.chars().skip(1).all(|c| c == 'é'));

    // A port-specific entry allows only that port.
    let only_other_port = hosts(&["127.0.0.1:1"]);
    let why = refused(
        &only_other_port,
        "http.request",
        json!({"url": format!("{base}/json")}),
    )
    .await;
    assert!(why.contains(&host_port), "{why}");
}

#[tokio::test]
async fn http_request_refuses_unlisted_hosts_and_bad_arguments_sending_nothing() {
    let (s, base, host_port) = echo_stand_in().await;
    let port = host_port.rsplit(':').next().unwrap();
    let ep = hosts(&[&host_port]);
    let cases = [
        (
            json!({"url": format!("http://localhost:{port}/json")}),
            "may not call localhost",
        ),
        (
            json!({"url": format!("ftp://{host_port}/x")}),
            "http:// or https://",
        ),
        (json!({"url": "not a url"}), "not a valid URL"),
        (
            json!({"url": format!("{base}/json"), "method": "TRACE"}),
            "TRACE",
        ),
        (
            json!({"url": format!("{base}/json"), "headers": {"X-A": "1\r\nX-Injected: 1"}}),
            "line breaks",
        ),
        (
            json!({"url": format!("{base}/json"), "headers": {"Host": "example.com"}}),
            "may not be set",
        ),
        (
            json!({"url": format!("{base}/json"), "headers": ["X-A: 1"]}),
            "headers must be a mapping",
        ),
        (
            json!({"url": format!("{base}/json"), "expect_status": 42}),
            "expect_status",
        ),
    ];
    for (with, why) in cases {
        let message = refused(&ep, "http.request", with.clone()).await;
        assert!(message.contains(why), "{with}: {message}");
    }
    let message = refused(
        &ep,
        "notify.webhook",
        json!({"url": "https://hooks.example.com/x"}),
    )
    .await;
    assert!(
        message.contains("hooks.example.com") && message.contains("act.endpoints.http_hosts"),
        "{message}"
    );
    // With no hosts listed, nothing may be called.
    let none = Endpoints::default();
    for uses in ["http.request", "notify.webhook"] {
        let message = refused(&none, uses, json!({"url": format!("{base}/json")})).await;
        assert!(message.contains("act.endpoints.http_hosts"), "{message}");
    }
    assert!(s.hits.all().is_empty(), "sent: {:?}", s.hits.all());
}

#[tokio::test]
async fn redirects_off_the_listed_hosts_are_not_followed_or_fail() {
    let (s, base, host_port) = echo_stand_in().await;
    let (other, other_base, _) = echo_stand_in().await;
    *s.elsewhere.lock().unwrap() = other_base;
    let ep = hosts(&[&host_port]);
    let with = json!({"url": format!("{base}/redirect"), "method": "GET"});
    // The engine's client does not follow: the 302 is the answer.
    let e = failed(&ep, "http.request", with.clone()).await;
    assert!(e.message.contains("HTTP 302"), "{}", e.message);
    assert!(other.hits.all().is_empty());
    // A client that follows redirects: the call fails, naming where it landed.
    let following = reqwest::Client::new();
    let e = ep
        .call(&following, "http.request", &with)
        .await
        .expect_err("landed on an unlisted host");
    assert!(
        e.message.contains("after a redirect") && e.message.contains("http_hosts"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn webhook_posts_json() {
    let (s, base, host_port) = echo_stand_in().await;
    let ep = hosts(&[&host_port]);
    let out = ok(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/hook"), "body": {"incident": "INC-7", "token": "T0KEN"}}),
    )
    .await;
    assert_eq!(out.output, json!({"status": 200}));
    assert_eq!(
        out.request["body"],
        json!({"incident": "INC-7", "token": "***"})
    );
    // Text that is JSON is sent as that JSON; no body sends {}.
    ok(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/hook"), "body": "{\"a\": [1, 2]}"}),
    )
    .await;
    ok(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/hook")}),
    )
    .await;
    let hits = s.hits.all();
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter()
            .all(|h| h.method == Method::POST && h.uri == "/hook" && is_json(&h.headers))
    );
    assert_eq!(
        hits[0].json(),
        json!({"incident": "INC-7", "token": "T0KEN"})
    );
    assert_eq!(hits[1].json(), json!({"a": [1, 2]}));
    assert_eq!(hits[2].json(), json!({}));
    let e = failed(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/status/500")}),
    )
    .await;
    assert!(e.message.contains("HTTP 500"), "{}", e.message);
}

// ---------------------------------------------------------------------------------------
// Configuration

#[tokio::test]
async fn unconfigured_endpoints_are_refused_naming_the_key_to_set() {
    let none = Endpoints::default();
    let cases = [
        (
            "notify.slack",
            json!({"text": "x"}),
            "act.endpoints.slack_webhook",
        ),
        (
            "notify.pagerduty",
            json!({"summary": "x"}),
            "act.endpoints.pagerduty",
        ),
        (
            "notify.opsgenie",
            json!({"message": "x"}),
            "act.endpoints.opsgenie",
        ),
        (
            "notify.email",
            json!({"to": "a@example.com", "subject": "s", "body": "b"}),
            "act.endpoints.email",
        ),
        (
            "ticket.jira",
            json!({"project": "OPS", "summary": "x"}),
            "act.endpoints.jira",
        ),
        (
            "ticket.gitlab",
            json!({"project": "1", "title": "x"}),
            "act.endpoints.gitlab",
        ),
        (
            "http.request",
            json!({"url": "http://127.0.0.1/"}),
            "act.endpoints.http_hosts",
        ),
        (
            "notify.webhook",
            json!({"url": "http://127.0.0.1/"}),
            "act.endpoints.http_hosts",
        ),
    ];
    for (uses, with, key) in cases {
        assert_eq!(none.missing(uses), Some(key), "{uses}");
        let message = refused(&none, uses, with).await;
        assert!(message.contains(key), "{uses}: {message}");
    }
    assert_eq!(none.missing("kubernetes.scale"), None);
    let message = refused(&none, "kubernetes.scale", json!({})).await;
    assert!(message.contains("not one of"), "{message}");
    let blank = Endpoints {
        slack_webhook: Some(" ".into()),
        ..Endpoints::default()
    };
    assert_eq!(
        blank.missing("notify.slack"),
        Some("act.endpoints.slack_webhook")
    );
    let listed = hosts(&["example.com"]);
    assert_eq!(listed.missing("http.request"), None);
}

/// The engine runs calls on its worker threads: the future must be `Send`.
#[test]
fn calls_can_run_on_any_thread() {
    fn is_send<T: Send>(_: &T) {}
    let (ep, http, with) = (Endpoints::default(), client(), json!({}));
    for uses in ["http.request", "notify.email", "ticket.gitlab"] {
        is_send(&ep.call(&http, uses, &with));
    }
}

#[test]
fn endpoints_read_from_yaml_with_defaults_and_hide_secrets_when_printed() {
    let yaml = r#"
slack_webhook: https://hooks.slack.com/services/T0/B0/SLACKSECRET
pagerduty: { routing_key: PDSECRET }
opsgenie: { api_key: OGSECRET }
email: { host: smtp.example.com, from: nightshift@example.com, username: ns, password: MAILSECRET }
jira: { url: https://acme.atlassian.net, user: ops@acme.example, token: JIRASECRET }
gitlab: { token: GLSECRET }
http_hosts: [hooks.example.com]
"#;
    let ep: Endpoints = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(
        ep.pagerduty.as_ref().unwrap().url,
        "https://events.pagerduty.com/v2/enqueue"
    );
    assert_eq!(
        ep.opsgenie.as_ref().unwrap().url,
        "https://api.opsgenie.com"
    );
    assert_eq!(ep.gitlab.as_ref().unwrap().url, "https://gitlab.com");
    let smtp = ep.email.as_ref().unwrap();
    assert_eq!((smtp.port, smtp.tls), (25, SmtpTls::Opportunistic));
    let printed = format!("{ep:?}");
    for secret in [
        "SLACKSECRET",
        "PDSECRET",
        "OGSECRET",
        "MAILSECRET",
        "JIRASECRET",
        "GLSECRET",
    ] {
        assert_hidden(&printed, secret);
    }
    assert!(serde_saphyr::from_str::<Endpoints>("webhook: https://x.example/").is_err());
    assert!(serde_saphyr::from_str::<Endpoints>("jira: { url: u, token: t, pass: p }").is_err());
    let empty: Endpoints = serde_saphyr::from_str("{}").unwrap();
    assert!(empty.http_hosts.is_empty());
}

// ---------------------------------------------------------------------------------------
// notify.email against a real SMTP server (aiosmtpd)

fn smtp_config(port: u16) -> Smtp {
    Smtp {
        host: "127.0.0.1".into(),
        port,
        from: "Nightshift <nightshift@example.com>".into(),
        username: None,
        password: None,
        tls: SmtpTls::Opportunistic,
    }
}

fn email(smtp: Smtp) -> Endpoints {
    Endpoints {
        email: Some(smtp),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn email_arguments_that_could_forge_headers_are_refused() {
    // Nothing listens on port 1: a refusal must come before any connection.
    let ep = email(smtp_config(1));
    let cases = [
        (
            json!({"to": "a@example.com", "subject": "Hi\r\nBcc: victim@example.com", "body": "b"}),
            "line break",
        ),
        (
            json!({"to": "a@example.com", "subject": "Hi\nX-Evil: 1", "body": "b"}),
            "line break",
        ),
        (
            json!({"to": "a@example.com\r\nBcc: victim@example.com", "subject": "s", "body": "b"}),
            "line break",
        ),
        (
            json!({"to": "a@example.com, not an address", "subject": "s", "body": "b"}),
            "not an email address",
        ),
        (
            json!({"to": " , ", "subject": "s", "body": "b"}),
            "no address",
        ),
        (json!({"to": "a@example.com", "subject": "s"}), "body"),
    ];
    for (with, why) in cases {
        let message = refused(&ep, "notify.email", with.clone()).await;
        assert!(message.contains(why), "{with}: {message}");
    }
    let bad_from = email(Smtp {
        from: "nightshift".into(),
        ..smtp_config(1)
    });
    let message = refused(
        &bad_from,
        "notify.email",
        json!({"to": "a@example.com", "subject": "s", "body": "b"}),
    )
    .await;
    assert!(message.contains("act.endpoints.email.from"), "{message}");
}

/// aiosmtpd on a free port, storing each message as JSON in a folder.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// The messages received, in order.
    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

const SMTP_SERVER: &str = r#"
import asyncio, json, logging, os, sys, warnings
from aiosmtpd.smtp import SMTP, AuthResult

# Quiet about AUTH without TLS: the tests ask for it.
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)

outdir, users = sys.argv[1], json.loads(sys.argv[2])

class Store:
    def __init__(self):
        self.n = 0
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "authenticated": bool(session.authenticated),
        }
        path = os.path.join(outdir, "%04d.json" % self.n)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = users.get(auth_data.login.decode()) == auth_data.password.decode()
    return AuthResult(success=ok, handled=False)

async def main():
    store = Store()
    options = {}
    if users:
        options = dict(authenticator=authenticate, auth_required=True, auth_require_tls=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(store, hostname="stand-in.example", **options), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// The peers' Python when it has aiosmtpd.
fn python_with_aiosmtpd() -> Option<std::path::PathBuf> {
    nightshift_testkit::peers::program("python", |python| {
        std::process::Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Starts aiosmtpd, with AUTH required for `users` (login → password) when there are any.
fn smtp_server(users: Value) -> Option<SmtpServer> {
    use std::io::BufRead;
    let python = python_with_aiosmtpd()?;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(python)
        .args(["-c", SMTP_SERVER])
        .arg(dir.path())
        .arg(users.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start aiosmtpd");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("aiosmtpd did not print its port: {line:?}"));
    Some(SmtpServer { child, port, dir })
}

#[tokio::test]
async fn email_goes_through_a_real_smtp_server() {
    let Some(server) = smtp_server(json!({})) else {
        return;
    };
    // The server offers no STARTTLS: opportunistic TLS goes on in plain text.
    let ep = email(smtp_config(server.port));
    let body = "Rolled back checkout.\n.a line starting with a dot\n.\nend";
    let out = ok(
        &ep,
        "notify.email",
        json!({"to": "oncall@example.com, Lead@Example.org", "subject": "INC-7: checkout 5xx", "body": body}),
    )
    .await;
    assert_eq!(
        out.output,
        json!({"to": ["oncall@example.com", "Lead@Example.org"]})
    );
    assert_eq!(out.request["method"], "SMTP");
    assert_eq!(
        out.request["url"],
        json!(format!("smtp://127.0.0.1:{}", server.port))
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["mail_from"], "nightshift@example.com");
    assert_eq!(
        m["rcpt_tos"],
        json!(["oncall@example.com", "Lead@Example.org"])
    );
    let data = m["data"].as_str().unwrap().replace("\r\n", "\n");
    let (head, sent_body) = data.split_once("\n\n").expect("headers, then the body");
    let lines: Vec<&str> = head.lines().collect();
    assert!(lines.contains(&"Subject: INC-7: checkout 5xx"), "{head}");
    assert!(
        lines.contains(&"From: Nightshift <nightshift@example.com>"),
        "{head}"
    );
    assert!(
        lines.contains(&"To: oncall@example.com, Lead@Example.org"),
        "{head}"
    );
    assert!(
        lines.contains(&"Content-Type: text/plain; charset=utf-8"),
        "{head}"
    );
    // Dot-stuffed on the wire, restored by the server: the body arrives as written.
    assert_eq!(sent_body.trim_end_matches('\n'), body);
    assert_eq!(m["authenticated"], false);
}

#[tokio::test]
async fn email_authenticates_and_never_sends_the_password_in_clear_unasked() {
    let Some(server) = smtp_server(json!({"nightshift": "MAILSECRET"})) else {
        return;
    };
    let with = json!({"to": "oncall@example.com", "subject": "s", "body": "b"});
    let login = |password: &str, tls| Smtp {
        username: Some("nightshift".into()),
        password: Some(password.into()),
        tls,
        ..smtp_config(server.port)
    };
    // With credentials, opportunistic becomes STARTTLS, which this server lacks: nothing goes.
    let e = failed(
        &email(login("MAILSECRET", SmtpTls::Opportunistic)),
        "notify.email",
        with.clone(),
    )
    .await;
    assert!(e.message.contains("STARTTLS"), "{}", e.message);
    assert!(server.messages().is_empty());
    // Plain text when the configuration says so.
    let out = ok(
        &email(login("MAILSECRET", SmtpTls::None)),
        "notify.email",
        with.clone(),
    )
    .await;
    assert_hidden(&out.request.to_string(), "MAILSECRET");
    assert_eq!(out.request["headers"]["AUTH"], "nightshift ***");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["authenticated"], true);
    // A wrong password: the server's refusal, without the password.
    let e = failed(
        &email(login("WRONGPASS", SmtpTls::None)),
        "notify.email",
        with,
    )
    .await;
    assert!(e.message.contains("535"), "{}", e.message);
    assert_hidden(&e.message, "WRONGPASS");
    assert_hidden(&e.request.unwrap().to_string(), "WRONGPASS");
    assert_eq!(server.messages().len(), 1);
}
