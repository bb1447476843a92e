//! The configuration file (`nightshift.yaml`; every key is described in
//! `nightshift.example.yaml`). Every section is optional and an unknown key is refused, so a
//! typo does not silently turn a setting off. `${NAME}` is replaced by the environment variable
//! `NAME` before the file is read (for secrets); `$$` is a literal `$`.

mod security;

use anyhow::{Context, Result, anyhow, bail};
use nightshift_core::parse_duration;
use nightshift_detect::{OverrideRule, Overrides, SeriesSelector};
use nightshift_pipeline::PipelineConfig;
pub use nightshift_server::config::{
    ActConfig, AlertmanagerConfig, Approver, AuditExport, Config, DEFAULT_LISTEN, DEFAULT_STORE,
    Hooks, LlmConfig, LokiConfig, ServeConfig, SlackConfig, audit_log_beside,
};
use nightshift_sources::files::FileSource;
use nightshift_sources::kubernetes::KubernetesConfig;
use nightshift_sources::prometheus::{PrometheusConfig, PullQuery};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    detect: RawDetect,
    #[serde(default)]
    store: RawStore,
    alertmanager: Option<RawAlertmanager>,
    prometheus: Option<RawPrometheus>,
    #[serde(default)]
    hooks: Hooks,
    kubernetes: Option<KubernetesConfig>,
    #[serde(default)]
    logs: RawLogs,
    llm: Option<RawLlm>,
    loki: Option<RawLoki>,
    slack: Option<RawSlack>,
    #[serde(default)]
    act: RawAct,
    #[serde(default)]
    correlate: RawCorrelate,
    #[serde(default)]
    diagnose: RawDiagnose,
}

/// `correlate:`: how signals are grouped into incidents (`CorrelatorConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorrelate {
    attach_window: Option<String>,
    resolve_after: Option<String>,
    pending_window: Option<String>,
    persistent_single: Option<String>,
    reopen_window: Option<String>,
    flap_window: Option<String>,
    max_hops: Option<usize>,
    max_timeline: Option<usize>,
    flap_reopens: Option<usize>,
    slo_objective: Option<f64>,
}

/// `diagnose:`: how root causes are ranked (`RankConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiagnose {
    change_lookback: Option<String>,
    onset_slack: Option<String>,
    explain_hops: Option<usize>,
    max_hypotheses: Option<usize>,
    max_evidence: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAct {
    audit_log: Option<String>,
    /// A file holding the key the audit chain is signed with (HMAC-SHA256).
    audit_key_file: Option<String>,
    runbooks: Option<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    kill_switch: bool,
    kill_switch_file: Option<String>,
    #[serde(default)]
    protected_namespaces: Vec<String>,
    #[serde(default)]
    change_windows: Vec<String>,
    #[serde(default)]
    approvers: Vec<Approver>,
    #[serde(default)]
    endpoints: nightshift_act::notify::Endpoints,
    audit_export: Option<AuditExport>,
    verify_every: Option<String>,
    #[serde(default)]
    workloads: std::collections::BTreeMap<String, RawWorkload>,
    #[serde(default)]
    auto_sources: Vec<String>,
}

/// `act.workloads.SERVICE`: where a service runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    namespace: String,
    /// The Deployment; the service's own name when not given.
    deployment: Option<String>,
    container: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    signing_secret: Option<String>,
    bot_token: Option<String>,
    channel: Option<String>,
    api_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    provider: String,
    model: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_version: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    #[serde(default)]
    stream: bool,
    max_steps: Option<u32>,
    max_tokens: Option<u64>,
    answer_tokens: Option<u32>,
    max_concurrent: Option<u32>,
    deadline: Option<String>,
    daily_tokens: Option<u64>,
    #[serde(default)]
    investigate_on_open: bool,
    settle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoki {
    url: String,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    #[serde(default)]
    files: Vec<RawFile>,
    /// The template miner's settings (`MinerConfig`).
    #[serde(default)]
    miner: nightshift_logs::MinerConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    service: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: String,
    timeout: Option<String>,
    retries: Option<u32>,
    #[serde(default)]
    queries: Vec<RawQuery>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    query: String,
    name: Option<String>,
    interval: Option<String>,
    step: Option<String>,
    lookback: Option<String>,
    #[serde(default)]
    instant: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    url: String,
    resend: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    interval: Option<String>,
    queue: Option<usize>,
    #[serde(default)]
    mcp_hosts: Vec<String>,
    auth: Option<security::RawAuth>,
    tls: Option<security::RawTls>,
    #[serde(default)]
    limits: security::RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    /// Rules applied in order to every series they select; see [`nightshift_detect::overrides`].
    #[serde(default)]
    overrides: Vec<OverrideRule>,
    /// Raw series to score as they arrive, by selector.
    #[serde(default)]
    watch: Vec<String>,
    max_series: Option<usize>,
}

/// Reads and checks `path`; errors name the file and the line, key or rule at fault.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// Like [`load`], on text already read; errors do not name a file.
pub fn parse(text: &str) -> Result<Config> {
    let text = substitute_env(text, |name| std::env::var(name).ok())?;
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| syntax_error(&e))?
    };
    let mut serve = ServeConfig::default();
    if let Some(listen) = raw.serve.listen {
        serve.listen = listen.trim().parse().map_err(|_| {
            anyhow!("serve.listen: {listen:?} is not an address and port such as {DEFAULT_LISTEN}")
        })?;
    }
    if let Some(interval) = raw.serve.interval {
        let ms = parse_duration(&interval).map_err(|e| anyhow!("serve.interval: {e}"))?;
        if !(100..=3_600_000).contains(&ms) {
            bail!("serve.interval: {interval} is outside 100ms to 1h");
        }
        serve.interval_ms = ms;
    }
    if let Some(queue) = raw.serve.queue {
        if !(1..=65_536).contains(&queue) {
            bail!("serve.queue: {queue} is outside 1 to 65536 requests");
        }
        serve.queue = queue;
    }
    for (i, host) in raw.serve.mcp_hosts.iter().enumerate() {
        if host.trim().is_empty() || host.contains(['/', ' ']) {
            bail!(
                "serve.mcp_hosts[{i}]: {host:?} is not a host name or host:port such as nightshift.example.com"
            );
        }
    }
    serve.mcp_hosts = raw.serve.mcp_hosts;
    if let Some(auth) = raw.serve.auth {
        serve.auth = security::check_auth(auth)?;
    }
    if let Some(tls) = raw.serve.tls {
        serve.tls = Some(security::check_tls(tls)?);
    }
    serve.limits = security::check_limits(raw.serve.limits)?;
    if let Some(path) = raw.store.path {
        if path.trim().is_empty() {
            bail!("store.path: give a file path for the SQLite database, e.g. {DEFAULT_STORE}");
        }
        serve.store = path;
    }
    let watch = raw
        .detect
        .watch
        .iter()
        .enumerate()
        .map(|(i, s)| SeriesSelector::parse(s).map_err(|e| anyhow!("detect.watch[{i}] ({s}): {e}")))
        .collect::<Result<Vec<_>>>()?;
    if raw.detect.max_series == Some(0) {
        bail!("detect.max_series: must be at least 1");
    }
    let overrides = Overrides::new(raw.detect.overrides)?;
    let pipeline = check_pipeline(raw.correlate, raw.diagnose, raw.logs.miner, overrides)?;
    let alertmanager = raw.alertmanager.map(check_alertmanager).transpose()?;
    let prometheus = raw.prometheus.map(check_prometheus).transpose()?;
    let llm = raw
        .llm
        .map(|l| check_llm(l, |name| std::env::var(name).ok()))
        .transpose()?;
    let loki = raw.loki.map(check_loki).transpose()?;
    let slack = raw.slack.map(check_slack).transpose()?;
    let act = check_act(raw.act, &serve.store)?;
    if let Some(name) = act.auto_sources.iter().find(|n| !serve.auth.may_ingest(n)) {
        bail!("act.auto_sources: {name} is not a serve.auth token or user with the ingest scope");
    }
    Ok(Config {
        serve,
        pipeline,
        watch,
        max_series: raw.detect.max_series,
        alertmanager,
        prometheus,
        hooks: check_hooks(raw.hooks)?,
        llm,
        loki,
        slack,
        act,
        kubernetes: raw.kubernetes,
        log_files: raw
            .logs
            .files
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                if f.path.trim().is_empty() {
                    bail!("logs.files[{i}].path: give the log file's path");
                }
                if f.service.trim().is_empty() {
                    bail!(
                        "logs.files[{i}].service: name the service that writes {}",
                        f.path
                    );
                }
                Ok(FileSource {
                    path: f.path.into(),
                    service: f.service,
                })
            })
            .collect::<Result<Vec<_>>>()?,
    })
}

/// `--config` if given, else the defaults.
pub fn load_or_default(path: Option<&Path>) -> Result<Config> {
    path.map_or_else(|| Ok(Config::default()), load)
}

/// An `http://` or `https://` base URL without a trailing slash; `key` names it in errors.
fn check_url(key: &str, url: &str, example: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            anyhow!("{key}: {url:?} must start with http:// or https://, e.g. {example}")
        })?;
    if rest.is_empty() {
        bail!("{key}: {url:?} names no host");
    }
    Ok(url)
}

/// A duration within `range` ms, or `default` when not given; `key` names it in errors.
/// A duration of the pipeline's sections, `default` when unset; its range is the stage's to check.
fn duration_or(key: &str, text: Option<&str>, default: i64) -> Result<i64> {
    text.map_or(Ok(default), |t| {
        parse_duration(t).map_err(|e| anyhow!("{key}: {e}"))
    })
}

/// Every pipeline stage's settings from its section, checked by the stage itself.
fn check_pipeline(
    c: RawCorrelate,
    d: RawDiagnose,
    miner: nightshift_logs::MinerConfig,
    overrides: Overrides,
) -> Result<PipelineConfig> {
    let dc = nightshift_correlate::CorrelatorConfig::default();
    let cd = |key: &str, v: Option<String>, default| {
        duration_or(&format!("correlate.{key}"), v.as_deref(), default)
    };
    let correlator = nightshift_correlate::CorrelatorConfig {
        attach_window: cd("attach_window", c.attach_window, dc.attach_window)?,
        resolve_after: cd("resolve_after", c.resolve_after, dc.resolve_after)?,
        pending_window: cd("pending_window", c.pending_window, dc.pending_window)?,
        persistent_single: cd(
            "persistent_single",
            c.persistent_single,
            dc.persistent_single,
        )?,
        reopen_window: cd("reopen_window", c.reopen_window, dc.reopen_window)?,
        flap_window: cd("flap_window", c.flap_window, dc.flap_window)?,
        max_hops: c.max_hops.unwrap_or(dc.max_hops),
        max_timeline: c.max_timeline.unwrap_or(dc.max_timeline),
        flap_reopens: c.flap_reopens.unwrap_or(dc.flap_reopens),
        slo_objective: c.slo_objective.unwrap_or(dc.slo_objective),
    };
    let dr = nightshift_diagnose::RankConfig::default();
    let rank = nightshift_diagnose::RankConfig {
        change_lookback: duration_or(
            "diagnose.change_lookback",
            d.change_lookback.as_deref(),
            dr.change_lookback,
        )?,
        onset_slack: duration_or(
            "diagnose.onset_slack",
            d.onset_slack.as_deref(),
            dr.onset_slack,
        )?,
        explain_hops: d.explain_hops.unwrap_or(dr.explain_hops),
        max_hypotheses: d.max_hypotheses.unwrap_or(dr.max_hypotheses),
        max_evidence: d.max_evidence.unwrap_or(dr.max_evidence),
    };
    let cfg = PipelineConfig {
        correlator,
        rank,
        miner,
        overrides,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn check_duration(
    key: &str,
    text: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64> {
    let Some(text) = text else { return Ok(default) };
    let ms = parse_duration(text).map_err(|e| anyhow!("{key}: {e}"))?;
    if !range.contains(&ms) {
        bail!(
            "{key}: {text} is outside {} to {}",
            nightshift_core::format_duration(*range.start()),
            nightshift_core::format_duration(*range.end())
        );
    }
    Ok(ms)
}

const SECOND: i64 = 1_000;
const HOUR: i64 = 3_600_000;

fn check_alertmanager(raw: RawAlertmanager) -> Result<AlertmanagerConfig> {
    Ok(AlertmanagerConfig {
        url: check_url("alertmanager.url", &raw.url, "http://127.0.0.1:9093")?,
        resend_ms: check_duration(
            "alertmanager.resend",
            raw.resend.as_deref(),
            60_000,
            SECOND..=HOUR,
        )?,
        timeout_ms: check_duration(
            "alertmanager.timeout",
            raw.timeout.as_deref(),
            10_000,
            SECOND..=HOUR,
        )?,
    })
}

fn check_loki(raw: RawLoki) -> Result<LokiConfig> {
    Ok(LokiConfig {
        url: check_url("loki.url", &raw.url, "http://127.0.0.1:3100")?,
        timeout_ms: check_duration(
            "loki.timeout",
            raw.timeout.as_deref(),
            10_000,
            SECOND..=HOUR,
        )?,
    })
}

fn check_slack(raw: RawSlack) -> Result<SlackConfig> {
    let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let slack = SlackConfig {
        signing_secret: given(raw.signing_secret),
        bot_token: given(raw.bot_token),
        channel: given(raw.channel),
        api_url: check_url(
            "slack.api_url",
            raw.api_url.as_deref().unwrap_or("https://slack.com/api"),
            "https://slack.com/api",
        )?,
    };
    match (&slack.signing_secret, &slack.bot_token, &slack.channel) {
        (_, Some(_), None) => {
            bail!(
                "slack.channel: give the channel incident notifications go to, e.g. \"#incidents\""
            )
        }
        (_, None, Some(_)) => bail!(
            "slack.bot_token: notifications to slack.channel need the app's bot token (xoxb-…), \
             e.g. bot_token: ${{SLACK_BOT_TOKEN}}"
        ),
        (None, None, None) => bail!(
            "slack: give signing_secret (for the slash command and buttons) and/or bot_token with \
             channel (for incident notifications), e.g. signing_secret: ${{SLACK_SIGNING_SECRET}}"
        ),
        _ => {}
    }
    Ok(slack)
}

/// The LLM section checked; the API key is read from the environment variable it names, so
/// the key never sits in the file.
fn check_llm(raw: RawLlm, env: impl Fn(&str) -> Option<String>) -> Result<LlmConfig> {
    use nightshift_llm::ApiKind;
    let (kind, default_url) = match raw.provider.trim() {
        "openai" => (ApiKind::OpenAi, Some("https://api.openai.com/v1")),
        "ollama" => (ApiKind::OpenAi, Some("http://127.0.0.1:11434/v1")),
        "openai-compatible" => (ApiKind::OpenAi, None),
        "azure" => (ApiKind::Azure, None),
        "anthropic" => (ApiKind::Anthropic, Some("https://api.anthropic.com")),
        other => bail!(
            "llm.provider: {other:?} is not one of openai, ollama, openai-compatible (vLLM, llama.cpp, LiteLLM), azure, anthropic"
        ),
    };
    let base_url = match (raw.base_url.as_deref(), default_url) {
        (Some(u), _) => check_url("llm.base_url", u, "http://127.0.0.1:8000/v1")?,
        (None, Some(d)) => d.to_string(),
        (None, None) => bail!(
            "llm.base_url: provider {} needs the server's URL, e.g. http://127.0.0.1:8000/v1",
            raw.provider
        ),
    };
    if raw.model.trim().is_empty() {
        bail!("llm.model: name the model, e.g. gpt-4o-mini or llama3.1");
    }
    let api_key = match &raw.api_key_env {
        Some(name) => Some(env(name).filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            anyhow!("llm.api_key_env: the environment variable {name} is not set")
        })?),
        None => None,
    };
    if api_key.is_none() && matches!(kind, ApiKind::Anthropic | ApiKind::Azure) {
        bail!(
            "llm.api_key_env: provider {} needs an API key; name the environment variable that holds it",
            raw.provider
        );
    }
    let defaults = nightshift_llm::Limits::default();
    let deadline = check_duration(
        "llm.deadline",
        raw.deadline.as_deref(),
        defaults.deadline.as_millis() as i64,
        SECOND..=HOUR,
    )?;
    let timeout = check_duration("llm.timeout", raw.timeout.as_deref(), 60_000, SECOND..=HOUR)?;
    let settle_ms = check_duration("llm.settle", raw.settle.as_deref(), 60_000, 0..=HOUR)?;
    let limits = nightshift_llm::Limits {
        max_steps: raw.max_steps.unwrap_or(defaults.max_steps),
        max_tokens: raw.max_tokens.unwrap_or(defaults.max_tokens),
        deadline: std::time::Duration::from_millis(deadline as u64),
        answer_tokens: raw.answer_tokens.unwrap_or(defaults.answer_tokens),
        max_concurrent: raw.max_concurrent.unwrap_or(defaults.max_concurrent),
        ..defaults
    };
    limits.check().map_err(anyhow::Error::msg)?;
    Ok(LlmConfig {
        provider: nightshift_llm::ProviderConfig {
            kind,
            base_url,
            model: raw.model.trim().to_string(),
            api_key,
            api_version: raw.api_version,
            timeout: std::time::Duration::from_millis(timeout as u64),
            retries: raw.retries.unwrap_or(2).min(10),
            stream: raw.stream,
        },
        limits,
        daily_tokens: raw.daily_tokens.unwrap_or(2_000_000),
        investigate_on_open: raw.investigate_on_open,
        settle_ms,
    })
}

fn check_act(raw: RawAct, store: &str) -> Result<ActConfig> {
    let audit_log = match raw.audit_log {
        Some(p) if p.trim().is_empty() => bail!("act.audit_log: give a file path"),
        Some(p) => PathBuf::from(p),
        None => audit_log_beside(store),
    };
    for (i, c) in raw.commands.iter().enumerate() {
        if !Path::new(c).is_absolute() {
            bail!(
                "act.commands[{i}]: {c:?} is not an absolute path such as /usr/local/bin/kubectl"
            );
        }
    }
    let mut change_windows = Vec::new();
    for (i, w) in raw.change_windows.iter().enumerate() {
        change_windows.push(
            nightshift_act::govern::ChangeWindow::parse(w)
                .map_err(|e| anyhow::anyhow!("act.change_windows[{i}]: {e}"))?,
        );
    }
    let mut approvers = std::collections::BTreeMap::new();
    let mut tokens = std::collections::BTreeSet::new();
    for (i, a) in raw.approvers.iter().enumerate() {
        if a.name.trim().is_empty() {
            bail!("act.approvers[{i}].name: give the approver's name");
        }
        if approvers.insert(a.name.clone(), a.max_risk).is_some() {
            bail!("act.approvers[{i}].name: {} is listed twice", a.name);
        }
        if let Some(t) = &a.token
            && (t.trim().len() < 16 || !tokens.insert(t.clone()))
        {
            bail!(
                "act.approvers[{i}].token: give each approver a token of its own, 16 characters or more"
            );
        }
    }
    if let Some(e) = &raw.audit_export
        && e.file.is_none()
        && e.webhook.is_none()
    {
        bail!("act.audit_export: give a file, a webhook URL or both");
    }
    let mut workloads = nightshift_act::plan::Workloads::new();
    for (service, w) in raw.workloads {
        let placed = nightshift_act::plan::Workload::checked(
            &service,
            w.namespace,
            w.deployment,
            w.container,
            "configuration",
        )
        .map_err(|e| anyhow!("act.workloads.{service}.{e}"))?;
        workloads.insert(service, placed);
    }
    let verify_every_ms = check_duration(
        "act.verify_every",
        raw.verify_every.as_deref(),
        15_000,
        SECOND..=HOUR,
    )?;
    Ok(ActConfig {
        audit_log,
        audit_key: raw
            .audit_key_file
            .as_deref()
            .map(read_audit_key)
            .transpose()?,
        runbooks: raw.runbooks.map(PathBuf::from),
        commands: raw.commands.into_iter().map(PathBuf::from).collect(),
        policy: nightshift_act::Policy {
            kill_switch: raw.kill_switch,
            kill_switch_file: raw.kill_switch_file.map(PathBuf::from),
            protected_namespaces: raw.protected_namespaces.into_iter().collect(),
            change_windows,
            approvers,
        },
        approvers: raw.approvers,
        endpoints: raw.endpoints,
        audit_export: raw.audit_export,
        verify_every_ms,
        workloads,
        auto_sources: raw.auto_sources.into_iter().collect(),
    })
}

/// The audit key in `path`: at least 16 bytes once trimmed.
pub fn read_audit_key(path: &str) -> Result<Vec<u8>> {
    let key =
        std::fs::read(path).map_err(|e| anyhow!("act.audit_key_file: cannot read {path}: {e}"))?;
    let key = key.trim_ascii().to_vec();
    if key.len() < 16 {
        bail!(
            "act.audit_key_file: {path} holds {} bytes; use at least 16 (e.g. `openssl rand -hex 32 > {path}`)",
            key.len()
        );
    }
    Ok(key)
}

fn check_hooks(h: Hooks) -> Result<Hooks> {
    for (key, v) in [
        ("hooks.changes_token", &h.changes_token),
        ("hooks.github_secret", &h.github_secret),
        ("hooks.gitlab_token", &h.gitlab_token),
        ("hooks.argocd_token", &h.argocd_token),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().len() < 8) {
            bail!("{key}: use at least 8 characters (e.g. ${{MY_SECRET}} from the environment)");
        }
    }
    Ok(h)
}

fn check_prometheus(raw: RawPrometheus) -> Result<PrometheusConfig> {
    let url = check_url("prometheus.url", &raw.url, "http://127.0.0.1:9090")?;
    let timeout_ms = check_duration(
        "prometheus.timeout",
        raw.timeout.as_deref(),
        10_000,
        SECOND..=HOUR,
    )?;
    let retries = raw.retries.unwrap_or(2);
    if retries > 10 {
        bail!("prometheus.retries: {retries} is more than 10");
    }
    let queries = raw
        .queries
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let key = format!("prometheus.queries[{i}]");
            let expr = promql_parser::parser::parse(&q.query)
                .map_err(|e| anyhow!("{key}.query ({}): not valid PromQL: {e}", q.query))?;
            // A plain selector's results keep their names; an expression's need one.
            let selector_name = match &expr {
                promql_parser::parser::Expr::VectorSelector(v) => v.name.clone(),
                _ => None,
            };
            let name = match (q.name, selector_name) {
                (Some(n), _) => n,
                (None, Some(n)) => n,
                (None, None) => bail!(
                    "{key}.name: the results of {:?} have no metric name; give one, e.g. name: job:requests:rate5m",
                    q.query
                ),
            };
            if !nightshift_ingest::remote_write::valid_metric_name(&name) {
                bail!("{key}.name: {name:?} is not a valid metric name");
            }
            let interval_ms = check_duration(&format!("{key}.interval"), q.interval.as_deref(), 30_000, SECOND..=HOUR)?;
            let step_ms = check_duration(&format!("{key}.step"), q.step.as_deref(), 15_000, SECOND..=HOUR)?;
            let lookback_ms = check_duration(&format!("{key}.lookback"), q.lookback.as_deref(), HOUR, 0..=7 * 24 * HOUR)?;
            if lookback_ms / step_ms > 11_000 {
                bail!("{key}.lookback: {} at a step of {} is more than Prometheus' 11,000 points per series", nightshift_core::format_duration(lookback_ms), nightshift_core::format_duration(step_ms));
            }
            Ok(PullQuery {
                query: q.query,
                name,
                interval_ms,
                step_ms,
                lookback_ms,
                instant: q.instant,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if queries.is_empty() {
        bail!("prometheus.queries: list at least one query, e.g. - query: up");
    }
    Ok(PrometheusConfig {
        url,
        timeout_ms,
        retries,
        queries,
    })
}

/// `text` with every `${NAME}` replaced by `lookup(NAME)` and `$$` by `$`, comment lines
/// aside; a variable that is not set is an error naming it and its line.
fn substitute_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        // A comment line is left as written: it may well mention `${NAME}`.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    bail!("line {}: `${{` without a closing `}}`", i + 1);
                };
                let name = &body[..end];
                let value = lookup(name).ok_or_else(|| {
                    anyhow!("line {}: the environment variable {name} is not set", i + 1)
                })?;
                out.push_str(&value);
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    Ok(out)
}

/// The parser's message on one line, led by the line and column it points at.
fn syntax_error(e: &serde_saphyr::Error) -> anyhow::Error {
    let e = nightshift_core::yaml::YamlError::of(e);
    match e.line {
        Some(line) => anyhow!(
            "line {line}, column {}: {}",
            e.column.unwrap_or(0),
            e.message
        ),
        None => anyhow!("{}", e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::SeriesKey;
    use nightshift_detect::{AlarmDirection, EnsembleConfig};

    fn llm(yaml: &str) -> Result<LlmConfig> {
        let raw: RawLlm = serde_saphyr::from_str(yaml).expect("YAML");
        check_llm(raw, |name| {
            (name == "KEY").then(|| "sk-secret-1".to_string())
        })
    }

    #[test]
    fn the_llm_section_is_checked_and_the_key_read_from_the_environment() {
        let ok = llm("provider: ollama\nmodel: llama3.1\n").unwrap();
        assert_eq!(ok.provider.base_url, "http://127.0.0.1:11434/v1");
        assert!(ok.provider.api_key.is_none());
        let ok =
            llm("provider: anthropic\nmodel: claude\napi_key_env: KEY\nmax_steps: 3\n").unwrap();
        assert_eq!(ok.provider.api_key.as_deref(), Some("sk-secret-1"));
        assert_eq!(ok.limits.max_steps, 3);
        for (yaml, needle) in [
            ("provider: gpt\nmodel: m\n", "llm.provider"),
            ("provider: openai-compatible\nmodel: m\n", "llm.base_url"),
            (
                "provider: openai\nmodel: m\napi_key_env: NOPE\n",
                "NOPE is not set",
            ),
            ("provider: anthropic\nmodel: m\n", "needs an API key"),
            ("provider: ollama\nmodel: \" \"\n", "llm.model"),
            (
                "provider: ollama\nmodel: m\nmax_steps: 0\n",
                "llm.max_steps",
            ),
            (
                "provider: ollama\nmodel: m\ndeadline: 2 weeks\n",
                "llm.deadline",
            ),
            (
                "provider: ollama\nmodel: m\nanswer_tokens: 5\n",
                "llm.answer_tokens",
            ),
            (
                "provider: ollama\nmodel: m\ninvestigate_on_open: true\nsettle: 2 days\n",
                "llm.settle",
            ),
        ] {
            let e = llm(yaml).unwrap_err().to_string();
            assert!(e.contains(needle), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn rules_are_read_and_applied() {
        let cfg = parse(
            r#"
detect:
  overrides:
    - match: 'disk_used_ratio{mountpoint="/data"}'
      limit: 1
      alarm: up
      off: [seasonal]
"#,
        )
        .expect("valid");
        assert_eq!(cfg.pipeline.overrides.len(), 1);
        let key = SeriesKey::new("disk_used_ratio", &[("mountpoint", "/data")]);
        let c = cfg
            .pipeline
            .overrides
            .config_for(&key, EnsembleConfig::default());
        assert_eq!(
            (c.limit, c.alarm, c.weights[1]),
            (Some(1.0), AlarmDirection::Up, 0.0)
        );
    }

    #[test]
    fn serve_settings_are_read() {
        let cfg = parse(
            "serve:\n  listen: 127.0.0.1:19797\n  interval: 1s\n  queue: 8\ndetect:\n  watch: ['up', '{job=\"api\"}']\n",
        )
        .expect("valid");
        assert_eq!(cfg.serve.listen.port(), 19797);
        assert_eq!((cfg.serve.interval_ms, cfg.serve.queue), (1000, 8));
        assert_eq!(cfg.watch.len(), 2);
    }

    #[test]
    fn act_reads_approvers_gates_and_endpoints_and_names_what_is_wrong() {
        let cfg = parse(
            "act:\n  approvers:\n    - {name: alice, max_risk: high, token: aaaaaaaaaaaaaaaa1, slack: U1}\n    - {name: bob, max_risk: low}\n  kill_switch_file: /tmp/stop\n  protected_namespaces: [kube-system]\n  change_windows: ['Mon-Fri 09:00-17:00']\n  verify_every: 5s\n  endpoints: {http_hosts: [hooks.example.com]}\n",
        )
        .expect("valid");
        let p = &cfg.act.policy;
        assert_eq!(p.approvers["alice"], nightshift_act::Risk::High);
        assert_eq!(p.approvers["bob"], nightshift_act::Risk::Low);
        assert!(p.protected_namespaces.contains("kube-system"));
        assert_eq!(p.change_windows.len(), 1);
        assert_eq!(cfg.act.verify_every_ms, 5_000);
        assert_eq!(cfg.act.endpoints.http_hosts, ["hooks.example.com"]);
        for (text, names) in [
            (
                "act:\n  change_windows: ['weekdays']\n",
                "act.change_windows[0]",
            ),
            (
                "act:\n  approvers: [{name: a, max_risk: high, token: short}]\n",
                "act.approvers[0].token",
            ),
            (
                "act:\n  approvers: [{name: a, max_risk: low}, {name: a, max_risk: high}]\n",
                "listed twice",
            ),
            (
                "act:\n  approvers: [{name: a, max_risk: extreme}]\n",
                "expected one of low, medium, high",
            ),
            ("act:\n  audit_export: {}\n", "act.audit_export"),
            ("act:\n  verify_every: 10ms\n", "act.verify_every"),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(names), "{text}: {e}");
        }
    }

    #[test]
    fn the_example_file_is_valid_and_says_the_defaults() {
        let text = include_str!("../../../nightshift.example.yaml");
        let cfg = parse(text).expect("the example parses");
        let d = ServeConfig::default();
        assert_eq!(cfg.serve.listen, d.listen);
        // The pipeline sections say each stage's defaults.
        assert_eq!(
            format!("{:?}", cfg.pipeline.correlator),
            format!("{:?}", nightshift_correlate::CorrelatorConfig::default())
        );
        assert_eq!(
            format!("{:?}", cfg.pipeline.rank),
            format!("{:?}", nightshift_diagnose::RankConfig::default())
        );
        assert_eq!(
            (cfg.serve.interval_ms, cfg.serve.queue),
            (d.interval_ms, d.queue)
        );
        assert_eq!(format!("{:?}", cfg.serve.limits), format!("{:?}", d.limits));
        assert_eq!(
            cfg.max_series,
            Some(nightshift_detect::watch::DEFAULT_MAX_SERIES)
        );
        // The commented rules are valid too.
        // Commented examples: `  #  key` inside a list; a whole section from `#name:` down to
        // the next uncommented line.
        let mut in_section = false;
        let mut uncomment = |l: &str| -> String {
            if let Some(r) = l.strip_prefix("  #  ") {
                return format!("    {r}");
            }
            in_section =
                if l.starts_with('#') && l[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                    true
                } else {
                    in_section && l.starts_with('#')
                };
            if in_section {
                l[1..].to_string()
            } else {
                l.to_string()
            }
        };
        let uncommented: String = text
            .lines()
            .map(&mut uncomment)
            .map(|l| {
                // Secrets come from the environment: stand-ins here.
                l.replace("overrides: []", "overrides:")
                    .replace("watch: []", "watch:")
                    .replace("${", "env-")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let all = parse(&uncommented).expect("the commented examples parse");
        assert_eq!((all.watch.len(), all.pipeline.overrides.len()), (2, 2));
        let prom = all.prometheus.expect("the prometheus section");
        assert_eq!((prom.queries.len(), prom.retries), (2, 2));
        assert_eq!(prom.queries[1].name, "service:http_errors:rate5m");
        assert!(all.hooks.github_secret.is_some() && all.hooks.changes_token.is_some());
        assert_eq!(
            all.kubernetes.and_then(|k| k.namespace).as_deref(),
            Some("shop")
        );
        assert_eq!(all.log_files.len(), 1);
        let am = all.alertmanager.expect("the alertmanager section");
        assert_eq!(
            (am.url.as_str(), am.resend_ms, am.timeout_ms),
            ("http://127.0.0.1:9093", 60_000, 10_000)
        );
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let cfg = parse("").expect("empty");
        assert!(cfg.pipeline.overrides.is_empty() && cfg.watch.is_empty());
        assert_eq!(cfg.serve.listen.to_string(), DEFAULT_LISTEN);
        assert!(
            parse("detect: {}\n")
                .expect("no rules")
                .pipeline
                .overrides
                .is_empty()
        );
    }

    #[test]
    fn environment_variables_are_substituted() {
        let env = |name: &str| (name == "PORT").then(|| "9999".to_string());
        let text = substitute_env("listen: 127.0.0.1:${PORT}\ncost: $$5\n  # ${NOPE}\n", env)
            .expect("set");
        assert_eq!(text, "listen: 127.0.0.1:9999\ncost: $5\n  # ${NOPE}\n");
        let err = substitute_env("a: 1\nb: ${NOPE}\n", env).expect_err("unset");
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("NOPE"),
            "{err}"
        );
    }

    #[test]
    fn slack_and_mcp_settings_are_read() {
        let cfg =
            parse("serve:\n  mcp_hosts: [nightshift.example.com]\nslack:\n  signing_secret: s\n")
                .unwrap();
        assert_eq!(cfg.serve.mcp_hosts, ["nightshift.example.com"]);
        let slack = cfg.slack.unwrap();
        assert_eq!(slack.api_url, "https://slack.com/api");
        assert!(slack.bot_token.is_none() && slack.channel.is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            // A misspelt key, with its line.
            (
                "detect:\n  overrides:\n    - match: x\n      limt: 1\n",
                "line 4",
            ),
            ("detect:\n  overide: []\n", "line 2"),
            ("serve:\n  listn: x\n", "line 2"),
            // Not a number, with its line.
            (
                "detect:\n  overrides:\n    - match: x\n      hit: high\n",
                "line 4",
            ),
            // A value out of range, with the rule or key.
            (
                "detect:\n  overrides:\n    - match: x\n      hit: 2\n",
                "override rule 1 (match: x): hit",
            ),
            (
                "detect:\n  overrides:\n    - match: 'rate(x[5m])'\n",
                "override rule 1",
            ),
            ("serve:\n  listen: nowhere\n", "serve.listen"),
            ("serve:\n  interval: 5x\n", "serve.interval"),
            ("serve:\n  queue: 0\n", "serve.queue"),
            ("detect:\n  watch: ['sum(x)']\n", "detect.watch[0]"),
            ("alertmanager:\n  url: am:9093\n", "alertmanager.url"),
            (
                "alertmanager:\n  url: http://am:9093\n  resend: 1ms\n",
                "alertmanager.resend",
            ),
            ("alertmanager: {}\n", "url"),
            ("hooks:\n  github_secret: abc\n", "hooks.github_secret"),
            (
                "logs:\n  files:\n    - {path: /var/log/a.log, service: ''}\n",
                "logs.files[0].service",
            ),
            ("hooks:\n  jenkins_token: abcdefghij\n", "line 2"),
            ("prometheus:\n  url: http://p:9090\n", "prometheus.queries"),
            (
                "prometheus:\n  url: http://p:9090\n  queries:\n    - query: 'rate(x[5m]'\n",
                "prometheus.queries[0].query",
            ),
            (
                "prometheus:\n  url: http://p:9090\n  queries:\n    - query: 'rate(x[5m])'\n",
                "prometheus.queries[0].name",
            ),
            (
                "prometheus:\n  url: http://p:9090\n  queries:\n    - query: up\n      step: 0s\n",
                "prometheus.queries[0].step",
            ),
            (
                "prometheus:\n  url: http://p:9090\n  queries:\n    - query: up\n      step: 1s\n      lookback: 7d\n",
                "11,000 points",
            ),
            ("slack: {}\n", "slack: give signing_secret"),
            ("slack:\n  bot_token: xoxb-1\n", "slack.channel"),
            ("slack:\n  channel: '#ops'\n", "slack.bot_token"),
            (
                "slack:\n  signing_secret: s\n  api_url: slack.com\n",
                "slack.api_url",
            ),
            ("slack:\n  signing_secrt: s\n", "line 2"),
            ("serve:\n  mcp_hosts: ['a b']\n", "serve.mcp_hosts[0]"),
            (
                "act:\n  auto_sources: [am]\n",
                "act.auto_sources: am is not",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text).expect_err(text));
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_pipeline_sections_reach_their_stages() {
        let cfg = parse(
            "correlate:\n  slo_objective: 0.99\n  resolve_after: 20m\ndiagnose:\n  max_hypotheses: 3\nlogs:\n  miner:\n    similarity: 0.7\n",
        )
        .expect("valid");
        assert_eq!(cfg.pipeline.rank.max_hypotheses, 3);
        let pipeline =
            nightshift_pipeline::Pipeline::from_config(cfg.pipeline).expect("checked already");
        let correlator = pipeline.correlator();
        assert_eq!(correlator.config().slo_objective, 0.99);
        assert_eq!(correlator.slo().objective(), 0.99);
        assert_eq!(correlator.config().resolve_after, 20 * 60_000);
        assert_eq!(pipeline.templates().miner_config().similarity, 0.7);
        // Unset keys keep the stage's defaults.
        assert_eq!(correlator.config().max_hops, 3);
        for (text, names) in [
            (
                "correlate:\n  slo_objective: 1.5\n",
                "correlate.slo_objective",
            ),
            (
                "correlate:\n  attach_window: 1s\n",
                "correlate.attach_window",
            ),
            (
                "correlate:\n  resolve_after: soon\n",
                "correlate.resolve_after",
            ),
            (
                "diagnose:\n  max_hypotheses: 0\n",
                "diagnose.max_hypotheses",
            ),
            (
                "logs:\n  miner:\n    similarity: 0\n",
                "logs.miner.similarity",
            ),
            ("correlate:\n  slo: 0.99\n", "slo"),
        ] {
            let err = format!("{:#}", parse(text).expect_err(text));
            assert!(err.contains(names), "{text}: {err}");
        }
    }
}
