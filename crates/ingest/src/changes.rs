//! Changes (deploys, config changes, rollbacks) from CI/CD webhooks, so incidents can be linked
//! to the change that preceded them:
//!
//! - `POST /api/v1/changes`: Nightshift's own JSON, one change or a list.
//! - `POST /hooks/github`: `deployment` and `deployment_status` events, and `workflow_run`
//!   events of a completed, successful workflow whose name says it deploys; signed with
//!   `X-Hub-Signature-256`, the HMAC-SHA256 of the body with the hook's secret
//!   (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>).
//! - `POST /hooks/gitlab`: `Deployment Hook` events that succeeded, and `Pipeline Hook` events
//!   of a successful pipeline with a `deploy` stage; `X-Gitlab-Token` must equal the token.
//! - `POST /hooks/argocd`: an Argo CD Notifications webhook with the template documented in
//!   `docs/configuration.md`; `Authorization: Bearer <token>`.
//!
//! Secrets are compared in constant time.

use hmac::{Hmac, Mac};
use nightshift_core::{Change, ChangeKind, Millis};
use serde::Deserialize;
use sha2::Sha256;

/// Why a hook request was refused, with the status it calls for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookError {
    /// 401: missing or wrong signature or token.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: the body is not what the sender documents.
    #[error("{0}")]
    Invalid(String),
}

impl HookError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::Invalid(_) => 400,
        }
    }
}

/// What a hook delivery amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
    Changes(Vec<Change>),
    /// A valid delivery that is not a change (a ping, a failed run, another event), and why.
    Ignored(String),
}

fn invalid(what: &str, e: impl std::fmt::Display) -> HookError {
    HookError::Invalid(format!("{what}: {e}"))
}

/// Constant-time equality of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex>` against the body.
pub fn verify_github_signature(
    secret: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), HookError> {
    let sig = signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .ok_or_else(|| {
            HookError::Unauthorized(
                "X-Hub-Signature-256 is missing (set the webhook's secret in GitHub)".into(),
            )
        })?;
    verify_hmac_sha256(secret, sig, &[body], "X-Hub-Signature-256")
}

/// Checks a hex HMAC-SHA256 (from the `header` named in errors) of the concatenated `parts`.
pub(crate) fn verify_hmac_sha256(
    secret: &str,
    hex: &str,
    parts: &[&[u8]],
    header: &str,
) -> Result<(), HookError> {
    let expected =
        hex_decode(hex).ok_or_else(|| HookError::Unauthorized(format!("{header} is not hex")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| HookError::Unauthorized("the hook secret is unusable".into()))?;
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&expected).map_err(|_| {
        HookError::Unauthorized(format!(
            "{header} does not match the body and the configured secret"
        ))
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks a shared token (GitLab's `X-Gitlab-Token`, a bearer token).
pub fn verify_token(expected: &str, given: Option<&str>, header: &str) -> Result<(), HookError> {
    match given {
        Some(g) if same(g.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(HookError::Unauthorized(format!(
            "{header} does not match the configured token"
        ))),
        None => Err(HookError::Unauthorized(format!("{header} is missing"))),
    }
}

fn parse_time(s: &str) -> Option<Millis> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// A stable id for a change without one: its source and the sender's own id.
fn change_id(source: &str, id: impl std::fmt::Display) -> String {
    format!("{source}-{id}")
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// Whether a workflow or pipeline name says it deploys.
fn deploys(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["deploy", "release", "rollout", "publish"]
        .iter()
        .any(|w| n.contains(w))
}

// ---- Nightshift's own JSON -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericChange {
    kind: String,
    target: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// RFC 3339 or Unix milliseconds.
    #[serde(default)]
    ts: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<GenericChange>),
    One(GenericChange),
}

/// `POST /api/v1/changes`: `{"kind": "deploy", "target": "checkout", "version": "v2.4.1",
/// "description": "...", "ts": "2026-11-21T10:00:00Z", "id": "..."}` or a list of them; `ts`
/// defaults to `now`, `id` to one made from the rest.
///
/// Every id is namespaced by `sender` (the authenticated identity, empty when there is none)
/// as `api/<sender>/<id>`, with `/` and `%` in the sender's name percent-encoded: a sender
/// can replace its own changes by sending an id again, never another sender's or a hook's.
pub fn decode_generic(body: &[u8], now: Millis, sender: &str) -> Result<Vec<Change>, HookError> {
    let namespace = format!("api/{}/", sender.replace('%', "%25").replace('/', "%2F"));
    let parsed: OneOrMany = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "changes: not a change object or list (kind, target, version, description, ts, id)",
            e,
        )
    })?;
    let list = match parsed {
        OneOrMany::Many(v) => v,
        OneOrMany::One(c) => vec![c],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let fail = |p: String| HookError::Invalid(format!("change {i}: {p}"));
            let kind = ChangeKind::parse(c.kind.trim()).ok_or_else(|| {
                fail(format!("kind {:?} is not one of deploy, config, feature_flag, scale, rollback, infrastructure", c.kind))
            })?;
            if c.target.trim().is_empty() {
                return Err(fail("target is empty; name the service or node changed".into()));
            }
            let ts = match &c.ts {
                None => now,
                Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| fail(format!("ts {n} is not whole milliseconds")))?,
                Some(serde_json::Value::String(s)) => parse_time(s).ok_or_else(|| fail(format!("ts {s:?} is not RFC 3339")))?,
                Some(other) => return Err(fail(format!("ts {other} is neither RFC 3339 nor Unix milliseconds"))),
            };
            let id = c.id.unwrap_or_else(|| {
                format!("{}-{}-{ts}-{}", kind.as_str(), c.target, c.version.as_deref().unwrap_or(""))
            });
            let id = format!("{namespace}{id}");
            Ok(Change {
                id,
                ts,
                kind,
                description: c.description.unwrap_or_else(|| format!("{} of {}", kind.as_str(), c.target)),
                target: c.target,
                version: c.version,
            })
        })
        .collect()
}

// ---- GitHub ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct GhRepo {
    name: String,
}

#[derive(Deserialize)]
struct GhDeployment {
    id: u64,
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    environment: String,
    created_at: String,
    #[serde(default)]
    description: Option<String>,
}

impl GhDeployment {
    /// The deploy this deployment is, of `repo` at `ts`.
    fn change(&self, repo: String, ts: Millis, outcome: &str) -> Change {
        Change {
            id: change_id("github-deployment", self.id),
            ts,
            kind: ChangeKind::Deploy,
            target: repo,
            version: Some(short(&self.sha)),
            description: format!(
                "GitHub deployment of {} ({}) to {}{outcome}",
                self.git_ref,
                short(&self.sha),
                self.environment
            ),
        }
    }
}

#[derive(Deserialize)]
struct GhDeploymentEvent {
    deployment: GhDeployment,
    repository: GhRepo,
}

#[derive(Deserialize)]
struct GhDeploymentStatus {
    state: String,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct GhDeploymentStatusEvent {
    deployment_status: GhDeploymentStatus,
    deployment: GhDeployment,
    repository: GhRepo,
}

#[derive(Deserialize)]
struct GhWorkflowRun {
    id: u64,
    name: String,
    head_sha: String,
    #[serde(default)]
    conclusion: Option<String>,
    updated_at: String,
}

#[derive(Deserialize)]
struct GhWorkflowRunEvent {
    action: String,
    workflow_run: GhWorkflowRun,
    repository: GhRepo,
}

/// A GitHub delivery (`event` is `X-GitHub-Event`), after its signature was verified.
pub fn decode_github(event: Option<&str>, body: &[u8]) -> Result<HookOutcome, HookError> {
    let event = event.ok_or_else(|| HookError::Invalid("X-GitHub-Event is missing".into()))?;
    match event {
        "ping" => Ok(HookOutcome::Ignored("ping".into())),
        "deployment" => {
            let e: GhDeploymentEvent =
                serde_json::from_slice(body).map_err(|e| invalid("github deployment event", e))?;
            let d = e.deployment;
            let ts = parse_time(&d.created_at)
                .ok_or_else(|| invalid("github deployment event", "created_at is not RFC 3339"))?;
            let described = d.description.clone().filter(|s| !s.is_empty());
            let mut change = d.change(e.repository.name, ts, "");
            if let Some(text) = described {
                change.description = text;
            }
            Ok(HookOutcome::Changes(vec![change]))
        }
        "deployment_status" => {
            let e: GhDeploymentStatusEvent = serde_json::from_slice(body)
                .map_err(|e| invalid("github deployment_status event", e))?;
            if e.deployment_status.state != "success" {
                return Ok(HookOutcome::Ignored(format!(
                    "deployment state {}",
                    e.deployment_status.state
                )));
            }
            let d = e.deployment;
            let ts = e
                .deployment_status
                .updated_at
                .as_deref()
                .and_then(parse_time)
                .or_else(|| parse_time(&d.created_at))
                .ok_or_else(|| invalid("github deployment_status event", "no RFC 3339 time"))?;
            // The same id as the deployment event: the store keeps one change.
            Ok(HookOutcome::Changes(vec![d.change(
                e.repository.name,
                ts,
                " succeeded",
            )]))
        }
        "workflow_run" => {
            let e: GhWorkflowRunEvent = serde_json::from_slice(body)
                .map_err(|e| invalid("github workflow_run event", e))?;
            let r = e.workflow_run;
            if e.action != "completed" || r.conclusion.as_deref() != Some("success") {
                return Ok(HookOutcome::Ignored(format!(
                    "workflow run {} ({})",
                    e.action,
                    r.conclusion.unwrap_or_default()
                )));
            }
            if !deploys(&r.name) {
                return Ok(HookOutcome::Ignored(format!(
                    "workflow {:?} does not deploy",
                    r.name
                )));
            }
            let ts = parse_time(&r.updated_at).ok_or_else(|| {
                invalid("github workflow_run event", "updated_at is not RFC 3339")
            })?;
            Ok(HookOutcome::Changes(vec![Change {
                id: change_id("github-run", r.id),
                ts,
                kind: ChangeKind::Deploy,
                target: e.repository.name,
                version: Some(short(&r.head_sha)),
                description: format!(
                    "GitHub workflow {:?} succeeded at {}",
                    r.name,
                    short(&r.head_sha)
                ),
            }]))
        }
        other => Ok(HookOutcome::Ignored(format!("event {other}"))),
    }
}

// ---- GitLab ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct GlProject {
    name: String,
}

#[derive(Deserialize)]
struct GlDeployment {
    status: String,
    deployment_id: u64,
    environment: String,
    #[serde(default)]
    short_sha: Option<String>,
    #[serde(default)]
    status_changed_at: Option<String>,
    project: GlProject,
}

#[derive(Deserialize)]
struct GlPipelineAttrs {
    id: u64,
    status: String,
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    finished_at: Option<String>,
    #[serde(default)]
    stages: Vec<String>,
}

#[derive(Deserialize)]
struct GlPipeline {
    object_attributes: GlPipelineAttrs,
    project: GlProject,
}

/// GitLab writes times as `2026-11-21 10:00:00 UTC` as well as RFC 3339.
fn gitlab_time(s: &str) -> Option<Millis> {
    parse_time(s).or_else(|| {
        let civil: jiff::civil::DateTime = s.trim().trim_end_matches(" UTC").parse().ok()?;
        jiff::tz::TimeZone::UTC
            .to_timestamp(civil)
            .ok()
            .map(|t| t.as_millisecond())
    })
}

/// A GitLab delivery (`event` is `X-Gitlab-Event`), after its token was verified.
pub fn decode_gitlab(
    event: Option<&str>,
    body: &[u8],
    now: Millis,
) -> Result<HookOutcome, HookError> {
    match event.unwrap_or("") {
        "Deployment Hook" => {
            let d: GlDeployment =
                serde_json::from_slice(body).map_err(|e| invalid("gitlab deployment event", e))?;
            if d.status != "success" {
                return Ok(HookOutcome::Ignored(format!(
                    "deployment status {}",
                    d.status
                )));
            }
            Ok(HookOutcome::Changes(vec![Change {
                id: change_id("gitlab-deployment", d.deployment_id),
                ts: d
                    .status_changed_at
                    .as_deref()
                    .and_then(gitlab_time)
                    .unwrap_or(now),
                kind: ChangeKind::Deploy,
                target: d.project.name,
                description: format!(
                    "GitLab deployment to {} ({})",
                    d.environment,
                    d.short_sha.as_deref().unwrap_or("?")
                ),
                version: d.short_sha,
            }]))
        }
        "Pipeline Hook" => {
            let p: GlPipeline =
                serde_json::from_slice(body).map_err(|e| invalid("gitlab pipeline event", e))?;
            let a = p.object_attributes;
            if a.status != "success" {
                return Ok(HookOutcome::Ignored(format!(
                    "pipeline status {}",
                    a.status
                )));
            }
            if !a.stages.iter().any(|s| deploys(s)) {
                return Ok(HookOutcome::Ignored(
                    "pipeline without a deploy stage".into(),
                ));
            }
            Ok(HookOutcome::Changes(vec![Change {
                id: change_id("gitlab-pipeline", a.id),
                ts: a
                    .finished_at
                    .as_deref()
                    .and_then(gitlab_time)
                    .unwrap_or(now),
                kind: ChangeKind::Deploy,
                target: p.project.name,
                version: Some(short(&a.sha)),
                description: format!(
                    "GitLab pipeline on {} deployed {}",
                    a.git_ref,
                    short(&a.sha)
                ),
            }]))
        }
        "" => Err(HookError::Invalid("X-Gitlab-Event is missing".into())),
        other => Ok(HookOutcome::Ignored(format!("event {other}"))),
    }
}

// ---- Argo CD --------------------------------------------------------------------------------

/// The fields of the documented Argo CD Notifications template.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgoSync {
    application: String,
    #[serde(default)]
    revision: Option<String>,
    phase: String,
    #[serde(default)]
    finished_at: Option<String>,
    #[serde(default)]
    rollback: Option<bool>,
}

/// An Argo CD Notifications delivery with the documented template: `application`,
/// `revision`, `phase` (`Succeeded` records a deploy), `finishedAt`, `rollback`.
pub fn decode_argocd(body: &[u8], now: Millis) -> Result<HookOutcome, HookError> {
    let s: ArgoSync = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "argocd notification (application, revision, phase, finishedAt)",
            e,
        )
    })?;
    if s.phase != "Succeeded" {
        return Ok(HookOutcome::Ignored(format!("sync phase {}", s.phase)));
    }
    let ts = s.finished_at.as_deref().and_then(parse_time).unwrap_or(now);
    let version = s.revision.as_deref().map(short);
    Ok(HookOutcome::Changes(vec![Change {
        id: change_id(
            "argocd",
            format!(
                "{}-{}-{ts}",
                s.application,
                version.as_deref().unwrap_or("")
            ),
        ),
        ts,
        kind: if s.rollback.unwrap_or(false) {
            ChangeKind::Rollback
        } else {
            ChangeKind::Deploy
        },
        description: format!(
            "Argo CD synced {} to {}",
            s.application,
            version.as_deref().unwrap_or("its target revision")
        ),
        target: s.application,
        version,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_signature_example_verifies() {
        // The example of GitHub's "Validating webhook deliveries" page.
        let secret = "It's a Secret to Everybody";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_github_signature(secret, Some(sig), b"Hello, World!").is_ok());
        let bad =
            verify_github_signature(secret, Some(sig), b"Hello, World?").expect_err("tampered");
        assert_eq!(bad.status(), 401);
        assert!(verify_github_signature("other", Some(sig), b"Hello, World!").is_err());
        assert!(verify_github_signature(secret, None, b"Hello, World!").is_err());
        assert!(verify_github_signature(secret, Some("sha256=zz"), b"x").is_err());
    }

    #[test]
    fn github_deployments_and_deploy_workflows_become_changes() {
        let deployment = br#"{"action":"created","deployment":{"id":42,"sha":"a1b2c3d4e5f6a7b8","ref":"main","environment":"production","created_at":"2026-11-21T10:00:00Z","description":""},"repository":{"name":"checkout"}}"#;
        let HookOutcome::Changes(c) = decode_github(Some("deployment"), deployment).expect("valid")
        else {
            panic!("a change")
        };
        assert_eq!(
            (c[0].target.as_str(), c[0].kind, c[0].version.as_deref()),
            ("checkout", ChangeKind::Deploy, Some("a1b2c3d4e5f6"))
        );
        assert_eq!(c[0].id, "github-deployment-42");
        let run = |name: &str, conclusion: &str| {
            format!(
                r#"{{"action":"completed","workflow_run":{{"id":7,"name":"{name}","head_sha":"ffff0000ffff0000","conclusion":"{conclusion}","updated_at":"2026-11-21T10:05:00Z"}},"repository":{{"name":"cart"}}}}"#
            )
        };
        assert!(matches!(
            decode_github(
                Some("workflow_run"),
                run("Deploy to prod", "success").as_bytes()
            ),
            Ok(HookOutcome::Changes(_))
        ));
        assert!(matches!(
            decode_github(
                Some("workflow_run"),
                run("Unit tests", "success").as_bytes()
            ),
            Ok(HookOutcome::Ignored(_))
        ));
        assert!(matches!(
            decode_github(Some("workflow_run"), run("Deploy", "failure").as_bytes()),
            Ok(HookOutcome::Ignored(_))
        ));
        assert!(matches!(
            decode_github(Some("ping"), b"{}"),
            Ok(HookOutcome::Ignored(_))
        ));
        assert_eq!(
            decode_github(Some("deployment"), b"{}")
                .expect_err("bad")
                .status(),
            400
        );
    }

    #[test]
    fn gitlab_and_argocd_deliveries_become_changes() {
        let d = br#"{"object_kind":"deployment","status":"success","deployment_id":15,"environment":"production","short_sha":"279484c0","status_changed_at":"2026-11-21 10:00:00 UTC","project":{"name":"payments"}}"#;
        let HookOutcome::Changes(c) = decode_gitlab(Some("Deployment Hook"), d, 0).expect("valid")
        else {
            panic!("a change")
        };
        assert_eq!(
            (c[0].target.as_str(), c[0].ts),
            ("payments", 1_795_255_200_000)
        );
        let p = br#"{"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","sha":"bcbb5ec396a2c0f828686f14fac9b80b780504f2","ref":"main","stages":["build","test","deploy"]},"project":{"name":"payments"}}"#;
        assert!(matches!(
            decode_gitlab(Some("Pipeline Hook"), p, 5),
            Ok(HookOutcome::Changes(_))
        ));
        assert!(decode_gitlab(None, p, 5).is_err());
        let a = br#"{"application":"frontend","revision":"9f8e7d6c5b4a","phase":"Succeeded","finishedAt":"2026-11-21T10:00:00Z","rollback":true}"#;
        let HookOutcome::Changes(c) = decode_argocd(a, 0).expect("valid") else {
            panic!("a change")
        };
        assert_eq!(
            (c[0].kind, c[0].target.as_str()),
            (ChangeKind::Rollback, "frontend")
        );
        assert!(matches!(
            decode_argocd(br#"{"application":"x","phase":"Running"}"#, 0),
            Ok(HookOutcome::Ignored(_))
        ));
    }

    #[test]
    fn generic_changes_are_checked() {
        let one = br#"{"kind":"deploy","target":"checkout","version":"v2.4.1","ts":"2026-11-21T10:00:00Z"}"#;
        let c = decode_generic(one, 0, "").expect("valid");
        assert_eq!(
            (c[0].ts, c[0].description.as_str()),
            (1_795_255_200_000, "deploy of checkout")
        );
        let many = br#"[{"kind":"config","target":"cart","ts":1700000000000},{"kind":"flag","target":"cart"}]"#;
        let c = decode_generic(many, 9, "").expect("valid");
        assert_eq!(
            (c.len(), c[0].ts, c[1].ts, c[1].kind),
            (2, 1_700_000_000_000, 9, ChangeKind::FeatureFlag)
        );
        for (body, says) in [
            (
                &br#"{"kind":"explode","target":"x"}"#[..],
                "kind \"explode\"",
            ),
            (br#"{"kind":"deploy","target":" "}"#, "target is empty"),
            (
                br#"{"kind":"deploy","target":"x","ts":"yesterday"}"#,
                "RFC 3339",
            ),
            (
                br#"{"kind":"deploy","target":"x","colour":"red"}"#,
                "not a change",
            ),
        ] {
            let e = decode_generic(body, 0, "").expect_err(says).to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn generic_change_ids_are_namespaced_by_their_sender() {
        let body = br#"{"kind":"deploy","target":"checkout","id":"github-deployment-7"}"#;
        let id = |sender| decode_generic(body, 0, sender).unwrap()[0].id.clone();
        assert_eq!(id("ci"), "api/ci/github-deployment-7");
        assert_eq!(id(""), "api//github-deployment-7", "unauthenticated");
        // A name with a slash cannot pose as another sender's namespace.
        assert_eq!(id("ci/x"), "api/ci%2Fx/github-deployment-7");
        let generated = decode_generic(br#"{"kind":"deploy","target":"cart"}"#, 5, "ci").unwrap();
        assert_eq!(generated[0].id, "api/ci/deploy-cart-5-");
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(verify_token("s3cret", Some("s3cret"), "X-Gitlab-Token").is_ok());
        assert!(verify_token("s3cret", Some("s3cre"), "X-Gitlab-Token").is_err());
        assert!(verify_token("s3cret", None, "X-Gitlab-Token").is_err());
    }
}
