//! The endpoints as configured: what is missing is named, secrets stay hidden.

use crate::http::hosts;
use crate::{assert_hidden, client, refused};
use nightshift_act::notify::{Endpoints, SmtpTls};
use serde_json::json;

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
