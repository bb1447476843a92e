//! The providers against what they talk to, one file per provider: the HTTP, notification and
//! ticket providers against the stand-ins of `nightshift_testkit::notify` (Slack, PagerDuty,
//! Opsgenie, Jira, GitLab, an echoing server) and a real SMTP server (Python's aiosmtpd);
//! Kubernetes against the stand-in API server of `nightshift_testkit::kubernetes`; Ansible with
//! a real `ansible-playbook`. Peers that are missing make their tests print why and pass,
//! unless `NIGHTSHIFT_REQUIRE_PEERS=1`.

mod ansible;
mod email;
mod endpoints;
mod gitlab;
mod http;
mod jira;
mod kubernetes;
mod opsgenie;
mod pagerduty;
mod slack;

use nightshift_act::notify::Endpoints;
use nightshift_act::{StepError, StepOutcome};
use serde_json::Value;

/// An HTTP client as the engine builds one: ring as rustls' provider, no redirects followed.
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Runs `uses` and expects success.
pub(crate) async fn ok(ep: &Endpoints, uses: &str, with: Value) -> StepOutcome {
    match ep.call(&client(), uses, &with).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{uses} failed: {} (request {:?})", e.message, e.request),
    }
}

/// Runs `uses` and expects it to fail after sending.
pub(crate) async fn failed(ep: &Endpoints, uses: &str, with: Value) -> StepError {
    let e = ep
        .call(&client(), uses, &with)
        .await
        .expect_err("expected a failure");
    assert!(e.request.is_some(), "{uses} sent nothing: {}", e.message);
    e
}

/// Runs `uses` and expects it to be refused before sending anything.
pub(crate) async fn refused(ep: &Endpoints, uses: &str, with: Value) -> String {
    let e = ep
        .call(&client(), uses, &with)
        .await
        .expect_err("expected a refusal");
    assert_eq!(e.request, None, "{uses} sent something: {}", e.message);
    e.message
}

pub(crate) fn assert_hidden(what: &str, secret: &str) {
    assert!(!what.contains(secret), "secret {secret:?} shows in {what}");
}
