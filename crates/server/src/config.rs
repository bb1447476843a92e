//! What `serve` is configured with, checked: the binary reads the file format
//! (`nightshift.yaml`) into these and refuses what is wrong, naming the key; the server trusts
//! them as given.

use nightshift_detect::SeriesSelector;
use nightshift_sources::files::FileSource;
use nightshift_sources::kubernetes::KubernetesConfig;
use nightshift_sources::prometheus::PrometheusConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where `serve` listens unless told otherwise (DESIGN's default).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9797";
/// Where `serve` keeps its database unless told otherwise (relative to the working directory).
pub const DEFAULT_STORE: &str = "nightshift.db";

/// Someone who may approve actions, up to a risk; known to the API by a bearer token and to
/// Slack by a user id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    pub name: String,
    /// `low`, `medium` or `high`: the riskiest action they may approve.
    pub max_risk: nightshift_act::Risk,
    /// `Authorization: Bearer <token>` on the approve and reject requests (and the CLI's
    /// `--token`).
    pub token: Option<String>,
    /// Their Slack user id (`U024BE7LH`), for the approve and reject buttons.
    pub slack: Option<String>,
}

/// Where each audit entry is copied as it is written, for a SIEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditExport {
    /// A file the entries are appended to (JSON lines).
    pub file: Option<String>,
    /// A URL each entry is POSTed to (one JSON entry a request).
    pub webhook: Option<String>,
}

/// Remediation: where its audit log and runbooks are, and which programs `command.run` may
/// start.
#[derive(Debug, Clone)]
pub struct ActConfig {
    /// The audit log (JSON lines, hash-chained); by default `audit.jsonl` beside the database.
    pub audit_log: PathBuf,
    /// The key audit entries are chained with (HMAC-SHA256), when set.
    pub audit_key: Option<Vec<u8>>,
    /// A directory of runbook files; none loaded when unset.
    pub runbooks: Option<PathBuf>,
    /// Absolute paths of the programs `command.run` may start.
    pub commands: Vec<PathBuf>,
    /// Gates every action passes (kill switch, protected namespaces, change windows) and who
    /// may approve what.
    pub policy: nightshift_act::Policy,
    pub approvers: Vec<Approver>,
    /// Where notifications and tickets go.
    pub endpoints: nightshift_act::notify::Endpoints,
    pub audit_export: Option<AuditExport>,
    /// How often a verification is evaluated while it waits (ms).
    pub verify_every_ms: i64,
    /// Where services run (namespace, Deployment), as the operator configured it: what places
    /// a runbook's target when the Kubernetes API does not (it takes precedence when watched).
    pub workloads: nightshift_act::plan::Workloads,
    /// Authenticated ingest identities (`serve.auth.tokens[].name`, basic-auth users) whose
    /// alerts may start an `auto` runbook; any other alert's incident waits for approval.
    pub auto_sources: std::collections::BTreeSet<String>,
}

/// The Slack app: its signing secret turns on the slash command and the buttons
/// (`/hooks/slack/commands`, `/hooks/slack/interactions`); its bot token and a channel turn on
/// incident notifications.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub signing_secret: Option<String>,
    pub bot_token: Option<String>,
    /// Where incident notifications go, e.g. `#incidents` or a channel id.
    pub channel: Option<String>,
    /// Slack's Web API, `https://slack.com/api` unless a proxy stands in between.
    pub api_url: String,
}

/// The optional LLM investigator; absent means every answer is the deterministic one.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: nightshift_llm::ProviderConfig,
    pub limits: nightshift_llm::Limits,
    pub daily_tokens: u64,
    /// Investigate each incident once it has settled after opening, without being asked.
    pub investigate_on_open: bool,
    /// How long after opening (or reopening) an incident is investigated, so that the alerts of
    /// its storm are in it first.
    pub settle_ms: i64,
}

/// A Loki the investigator may query with LogQL.
#[derive(Debug, Clone)]
pub struct LokiConfig {
    /// Base URL, e.g. `http://127.0.0.1:3100`.
    pub url: String,
    pub timeout_ms: i64,
}

/// Secrets of the change webhooks; a hook without its secret is not served (404).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Bearer token `POST /api/v1/changes` requires; without it the endpoint is open.
    pub changes_token: Option<String>,
    /// The secret GitHub signs deliveries with (`X-Hub-Signature-256`).
    pub github_secret: Option<String>,
    /// The token GitLab sends as `X-Gitlab-Token`.
    pub gitlab_token: Option<String>,
    /// The bearer token Argo CD Notifications sends.
    pub argocd_token: Option<String>,
}

/// Where Nightshift posts its own alerts.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093` (`/api/v2/alerts` is added).
    pub url: String,
    pub resend_ms: i64,
    pub timeout_ms: i64,
}

/// `serve`'s own settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// How often derived signals are computed and the correlator advances.
    pub interval_ms: i64,
    /// Write requests waiting for the detectors before the server answers 503.
    pub queue: usize,
    /// The SQLite database alerts, anomalies and incidents are recorded in.
    pub store: String,
    /// `Host` names `/mcp` accepts besides loopback (a guard against DNS rebinding).
    pub mcp_hosts: Vec<String>,
    /// Who may call the server, with which scopes; none configured means open (loopback only).
    pub auth: crate::auth::AuthConfig,
    /// HTTPS instead of HTTP, when set.
    pub tls: Option<TlsConfig>,
    /// Time and size limits at the edge.
    pub limits: EdgeLimits,
}

/// `serve.tls`: the certificate the server presents and, for mutual TLS, the CA its clients'
/// certificates must chain to. The files are read again when they change.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Whether clients must present a certificate (`serve.tls.client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A client certificate is verified when one is presented.
    Optional,
    /// Every client presents a certificate that chains to `client_ca_file`.
    Require,
}

/// `serve.limits`: how long a client may take and how many may be served at once.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// From connecting to the end of the request headers (and the TLS handshake).
    pub header_timeout_ms: i64,
    /// Between two pieces of a request body.
    pub body_timeout_ms: i64,
    /// Open connections; more are closed as they arrive (and counted).
    pub max_connections: usize,
    /// Requests answered at once; more are answered 503 with `Retry-After`.
    pub max_in_flight: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
            max_in_flight: 256,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            interval_ms: 15_000,
            queue: 64,
            store: DEFAULT_STORE.to_string(),
            mcp_hosts: Vec::new(),
            auth: Default::default(),
            tls: None,
            limits: EdgeLimits::default(),
        }
    }
}

/// A checked configuration.
#[derive(Debug, Default)]
pub struct Config {
    pub serve: ServeConfig,
    /// Every pipeline stage's settings, the detection overrides among them.
    pub pipeline: nightshift_pipeline::PipelineConfig,
    pub watch: Vec<SeriesSelector>,
    pub max_series: Option<usize>,
    pub alertmanager: Option<AlertmanagerConfig>,
    pub prometheus: Option<PrometheusConfig>,
    pub hooks: Hooks,
    pub kubernetes: Option<KubernetesConfig>,
    /// Log files followed as they grow.
    pub log_files: Vec<FileSource>,
    pub llm: Option<LlmConfig>,
    pub loki: Option<LokiConfig>,
    pub slack: Option<SlackConfig>,
    pub act: ActConfig,
}

impl Default for ActConfig {
    fn default() -> Self {
        Self {
            audit_log: audit_log_beside(DEFAULT_STORE),
            audit_key: None,
            workloads: Default::default(),
            auto_sources: Default::default(),
            runbooks: None,
            commands: Vec::new(),
            policy: nightshift_act::Policy::default(),
            approvers: Vec::new(),
            endpoints: nightshift_act::notify::Endpoints::default(),
            audit_export: None,
            verify_every_ms: 15_000,
        }
    }
}

/// `audit.jsonl` in the database's directory.
pub fn audit_log_beside(store: &str) -> PathBuf {
    Path::new(store)
        .parent()
        .unwrap_or(Path::new("."))
        .join("audit.jsonl")
}
