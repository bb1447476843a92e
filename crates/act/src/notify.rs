//! The providers that talk to the outside world over HTTP (and SMTP): the generic
//! `http.request`, the notifications (`notify.slack`, `notify.pagerduty`, `notify.opsgenie`,
//! `notify.webhook`, `notify.email`) and the tickets (`ticket.jira`, `ticket.gitlab`).
//!
//! Where they go and with which credentials comes from the configuration file's
//! `act.endpoints` ([`Endpoints`]); a runbook only says what to send. Every call records the
//! request it sent with its secrets (routing keys, API keys, tokens, passwords, `Authorization`
//! headers, the Slack webhook's path) replaced by `"***"`, has a 30 s time limit, and reports
//! the service's own explanation when it refuses.
//!
//! The generic providers (`http.request`, `notify.webhook`) only call the hosts listed in
//! `act.endpoints.http_hosts`; none when that list is empty.

mod alerting;
mod email;
mod generic;
mod outgoing;
mod tickets;

pub(crate) use outgoing::mask_json;

use crate::provider::{StepError, StepOutcome};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// Where notifications and tickets go, and their credentials: the configuration file's
/// `act.endpoints`.
///
/// ```yaml
/// act:
///   endpoints:
///     slack_webhook: https://hooks.slack.com/services/T000/B000/XXXX
///     pagerduty: { routing_key: 0123456789abcdef0123456789abcdef }
///     opsgenie: { api_key: ..., url: https://api.eu.opsgenie.com }
///     email: { host: smtp.example.com, port: 587, from: nightshift@example.com,
///              username: nightshift, password: ..., tls: starttls }
///     jira: { url: https://acme.atlassian.net, user: ops@acme.com, token: ... }
///     gitlab: { url: https://gitlab.example.com, token: ... }
///     http_hosts: [hooks.example.com, "10.0.0.5:8080"]
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Endpoints {
    /// The Slack incoming-webhook URL `notify.slack` posts to. The URL is itself the
    /// credential: it is never shown past its host.
    pub slack_webhook: Option<String>,
    /// PagerDuty Events API v2, for `notify.pagerduty`.
    pub pagerduty: Option<PagerDuty>,
    /// Opsgenie's Alert API, for `notify.opsgenie`.
    pub opsgenie: Option<Opsgenie>,
    /// The SMTP server `notify.email` sends through.
    pub email: Option<Smtp>,
    /// Jira (Cloud or Data Center), for `ticket.jira`.
    pub jira: Option<Jira>,
    /// GitLab (gitlab.com or self-managed), for `ticket.gitlab`.
    pub gitlab: Option<GitLab>,
    /// The hosts `http.request` and `notify.webhook` may call, as `host` (any port) or
    /// `host:port`, compared exactly and without regard to case. When empty, those providers
    /// call nothing: a runbook cannot reach a host nobody listed.
    pub http_hosts: Vec<String>,
}

/// PagerDuty Events API v2.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    /// The integration key (32 characters) of the service's Events API v2 integration.
    pub routing_key: String,
    /// The events endpoint.
    #[serde(default = "PagerDuty::default_url")]
    pub url: String,
}

impl PagerDuty {
    fn default_url() -> String {
        "https://events.pagerduty.com/v2/enqueue".into()
    }
}

/// Opsgenie's Alert API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opsgenie {
    /// An API integration's key, sent as `Authorization: GenieKey KEY`.
    pub api_key: String,
    /// The API's base URL: `https://api.eu.opsgenie.com` for the EU instance.
    #[serde(default = "Opsgenie::default_url")]
    pub url: String,
}

impl Opsgenie {
    fn default_url() -> String {
        "https://api.opsgenie.com".into()
    }
}

/// The SMTP server `notify.email` sends through.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "Smtp::default_port")]
    pub port: u16,
    /// The sender, `name@example.com` or `Nightshift <name@example.com>`.
    pub from: String,
    /// For `AUTH`; with it, `tls: opportunistic` becomes `starttls`, so that the password
    /// never crosses the network in clear unless `tls: none` says so.
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub tls: SmtpTls,
}

impl Smtp {
    fn default_port() -> u16 {
        25
    }
}

/// How `notify.email` protects the SMTP connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text throughout, e.g. to a relay on the same host.
    None,
    /// STARTTLS when the server offers it, plain text otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS, or nothing is sent (usually port 587).
    Starttls,
    /// TLS from the first byte, "SMTPS" (usually port 465).
    Tls,
}

/// Jira's REST API v2.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jira {
    /// The site, e.g. `https://acme.atlassian.net`.
    pub url: String,
    /// The account's email address (Jira Cloud: HTTP Basic with `user:token`). Without it, the
    /// token is sent as `Authorization: Bearer` (a Jira Data Center personal access token).
    pub user: Option<String>,
    /// The API token (Cloud) or personal access token (Data Center).
    pub token: String,
}

/// GitLab's REST API v4.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitLab {
    #[serde(default = "GitLab::default_url")]
    pub url: String,
    /// A personal, group or project access token with the `api` scope, sent as
    /// `PRIVATE-TOKEN`.
    pub token: String,
}

impl GitLab {
    fn default_url() -> String {
        "https://gitlab.com".into()
    }
}

// Debug by hand: the configuration gets logged, its secrets must not.
impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("slack_webhook", &self.slack_webhook.as_ref().map(|_| "***"))
            .field("pagerduty", &self.pagerduty)
            .field("opsgenie", &self.opsgenie)
            .field("email", &self.email)
            .field("jira", &self.jira)
            .field("gitlab", &self.gitlab)
            .field("http_hosts", &self.http_hosts)
            .finish()
    }
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty")
            .field("routing_key", &"***")
            .field("url", &self.url)
            .finish()
    }
}

impl fmt::Debug for Opsgenie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opsgenie")
            .field("api_key", &"***")
            .field("url", &self.url)
            .finish()
    }
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for Jira {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jira")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("token", &"***")
            .finish()
    }
}

impl fmt::Debug for GitLab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLab")
            .field("url", &self.url)
            .field("token", &"***")
            .finish()
    }
}

/// The providers [`Endpoints::call`] runs.
pub const HANDLED: &[&str] = &[
    "http.request",
    "notify.slack",
    "notify.pagerduty",
    "notify.opsgenie",
    "notify.webhook",
    "notify.email",
    "ticket.jira",
    "ticket.gitlab",
];

impl Endpoints {
    /// Runs provider `uses` (one of [`HANDLED`]) with its rendered arguments `with` (a JSON
    /// object of mostly strings).
    ///
    /// Build `http` with a request timeout of your choosing (each call sets 30 s anyway) and
    /// without following redirects (`reqwest::redirect::Policy::none()`): hosts are checked
    /// before sending, and a followed redirect could land elsewhere. Should a client follow
    /// one to a host `http_hosts` does not list, the call fails saying so.
    pub async fn call(
        &self,
        http: &reqwest::Client,
        uses: &str,
        with: &Value,
    ) -> Result<StepOutcome, StepError> {
        if !HANDLED.contains(&uses) {
            return Err(StepError::refused(format!(
                "{uses} is not one of the HTTP, notification and ticket providers ({})",
                HANDLED.join(", ")
            )));
        }
        let not_set = || {
            StepError::refused(format!(
                "{uses} needs {} in the configuration, which is not set",
                self.missing(uses).unwrap_or("act.endpoints")
            ))
        };
        if self.missing(uses).is_some() {
            return Err(not_set());
        }
        match uses {
            "http.request" => generic::request(self, http, with).await,
            "notify.webhook" => generic::webhook(self, http, with).await,
            "notify.slack" => {
                let url = self.slack_webhook.as_deref().ok_or_else(not_set)?;
                alerting::slack(url, http, with).await
            }
            "notify.pagerduty" => {
                let pd = self.pagerduty.as_ref().ok_or_else(not_set)?;
                alerting::pagerduty(pd, http, with).await
            }
            "notify.opsgenie" => {
                let og = self.opsgenie.as_ref().ok_or_else(not_set)?;
                alerting::opsgenie(og, http, with).await
            }
            "notify.email" => email::send(self.email.as_ref().ok_or_else(not_set)?, with).await,
            "ticket.jira" => {
                tickets::jira(self.jira.as_ref().ok_or_else(not_set)?, http, with).await
            }
            _ => {
                let gitlab = self.gitlab.as_ref().ok_or_else(not_set)?;
                tickets::gitlab(gitlab, http, with).await
            }
        }
    }

    /// What a dry run can check of step `uses` without sending: that it is one of these
    /// providers, that what it needs is configured, and that a URL it would call is on
    /// `http_hosts`.
    pub fn check(&self, uses: &str, with: &Value) -> Result<(), StepError> {
        if !HANDLED.contains(&uses) {
            return Err(StepError::refused(format!(
                "{uses} is not one of the HTTP, notification and ticket providers ({})",
                HANDLED.join(", ")
            )));
        }
        if let Some(what) = self.missing(uses) {
            return Err(StepError::refused(format!(
                "{uses} needs {what} in the configuration, which is not set"
            )));
        }
        if matches!(uses, "http.request" | "notify.webhook") {
            let url = crate::provider::required(with, "url")?;
            generic::allowed_url(self, uses, &url)?;
        }
        Ok(())
    }

    /// What `uses` needs configured and is missing, if anything (e.g.
    /// `"act.endpoints.jira"`), so that a runbook can be checked against the configuration
    /// before an incident needs it. `None` for providers configured elsewhere or not at all.
    pub fn missing(&self, uses: &str) -> Option<&'static str> {
        let unset = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
        match uses {
            "http.request" | "notify.webhook" => self
                .http_hosts
                .iter()
                .all(|h| h.trim().is_empty())
                .then_some("act.endpoints.http_hosts"),
            "notify.slack" => unset(&self.slack_webhook).then_some("act.endpoints.slack_webhook"),
            "notify.pagerduty" => self
                .pagerduty
                .is_none()
                .then_some("act.endpoints.pagerduty"),
            "notify.opsgenie" => self.opsgenie.is_none().then_some("act.endpoints.opsgenie"),
            "notify.email" => self.email.is_none().then_some("act.endpoints.email"),
            "ticket.jira" => self.jira.is_none().then_some("act.endpoints.jira"),
            "ticket.gitlab" => self.gitlab.is_none().then_some("act.endpoints.gitlab"),
            _ => None,
        }
    }
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The optional text argument `key`, `None` when absent or blank.
fn optional(with: &Value, key: &str) -> Option<String> {
    crate::provider::text_arg(with, key).filter(|s| !s.trim().is_empty())
}
