//! The `nightshift` command: a thin shell over the pipeline crates.

mod client;
mod config;
mod logs_parse;
mod render;
mod scenarios;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::ProgressBar;
use nightshift_core::Incident;
use nightshift_sim::Scenario;
use nightshift_store::SqliteStore;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Detects, correlates and diagnoses incidents on top of your observability stack."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulated clusters through the whole pipeline and show the incidents it finds.
    Demo(DemoArgs),
    /// Run against your stack: receive Prometheus remote-write, detect, expose /metrics.
    Serve(ServeArgs),
    /// Find anomalies in your own series: a `timestamp,value` CSV or a wide CSV with one column per series.
    Detect(DetectArgs),
    /// Rank the root-cause services of one recorded case (a wide `time,<service>_<metric>,…`
    /// CSV, or PetShop's metrics.csv).
    Rca(RcaArgs),
    /// Log tools: template mining of a file or standard input.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Measure quality against ground truth.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Ask a running server a question in plain words, e.g. "why is checkout slow?" or "what
    /// changed in payments in the last hour?".
    Ask(AskArgs),
    /// Explain an incident of a running server: what happened, why, and what to do.
    Explain(ExplainArgs),
    /// Serve the Model Context Protocol on standard input and output for an MCP client (an IDE
    /// or agent), forwarding to a running server's /mcp: its tools, and incidents as resources.
    Mcp(McpArgs),
    /// Runbook files: check them before they are used.
    #[command(subcommand)]
    Runbook(RunbookCommand),
    /// The audit log of remediation decisions and actions.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List a running server's remediation actions: proposed, waiting for approval, done.
    Actions(ActionsArgs),
    /// Approve an action waiting for approval (it runs once its preconditions hold again).
    Approve(DecideArgs),
    /// Reject an action waiting for approval.
    Reject(RejectArgs),
    /// List the incidents of a running `serve`, newest first.
    Incidents(IncidentsArgs),
    /// Stop every automatic action and cancel those waiting for approval (on), or allow them
    /// again (off).
    KillSwitch(KillSwitchArgs),
}

#[derive(Args)]
struct IncidentsArgs {
    /// Only incidents in this state (open, acknowledged, resolved).
    #[arg(long)]
    status: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct ActionsArgs {
    /// Only this incident's actions.
    #[arg(long)]
    incident: Option<String>,
    /// Only actions in this state (suggested, pending, approved, rejected, refused, cancelled,
    /// running, fixed, failed).
    #[arg(long)]
    state: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DecideArgs {
    /// The action, e.g. act-0004.
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct RejectArgs {
    /// The action, e.g. act-0004.
    id: String,
    /// Why, for the audit log.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct KillSwitchArgs {
    #[arg(value_parser = ["on", "off"])]
    state: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum RunbookCommand {
    /// Check runbook files (or directories of them): every problem by file, line and field.
    Validate {
        /// Files or directories; by default the configuration's `act.runbooks`.
        paths: Vec<std::path::PathBuf>,
        /// The configuration: its `act.runbooks`, and its `act.commands`, on which every
        /// `command.run` program must then be.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Rehearse the runbooks of a running `serve` for one of its incidents: each step as it
    /// would be sent (nothing is sent), the verification as it stands now, and the gate that
    /// would refuse it.
    DryRun {
        /// The incident, e.g. inc-0003.
        incident: String,
        /// Rehearse this runbook (by name) even if its trigger does not match the incident;
        /// by default every runbook that answers it.
        #[arg(long)]
        runbook: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-compute the audit log's SHA-256 chain; name the first entry edited, deleted, inserted
    /// or moved.
    Verify {
        /// The audit log; by default the configuration's `act.audit_log`.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The configuration file naming the audit log (and its `act.audit_key_file`).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The file holding the key the log was written with (`act.audit_key_file`).
        #[arg(long, value_name = "FILE")]
        key_file: Option<String>,
    },
}

#[derive(Args)]
struct McpArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Where the running `nightshift serve` is and how to authenticate to it.
#[derive(Args)]
struct RemoteArgs {
    /// The running `nightshift serve`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9797")]
    server: String,
    /// Bearer token for a server with `serve.auth` (approvers: their token); by default
    /// $NIGHTSHIFT_TOKEN.
    #[arg(long, env = "NIGHTSHIFT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA an https server's certificate chains to; by default
    /// $NIGHTSHIFT_CA_FILE.
    #[arg(long, value_name = "FILE", env = "NIGHTSHIFT_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// PEM file with a client certificate and its key, for a server that asks for one
    /// (serve.tls.client_auth).
    #[arg(long, value_name = "FILE", env = "NIGHTSHIFT_CLIENT_CERT")]
    client_cert: Option<std::path::PathBuf>,
}

impl RemoteArgs {
    fn remote(&self) -> nightshift_server::remote::Remote {
        nightshift_server::remote::Remote {
            token: self.token.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            ..nightshift_server::remote::Remote::new(&self.server)
        }
    }

    /// [`RemoteArgs::remote`], for a command that decides and so needs a token.
    fn with_token(&self, what: &str) -> Result<nightshift_server::remote::Remote> {
        if self.token.is_none() {
            anyhow::bail!("{what} needs your token: pass --token or set $NIGHTSHIFT_TOKEN");
        }
        Ok(self.remote())
    }
}

#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Only the deterministic answer, even when the server has an LLM configured.
    #[arg(long)]
    no_llm: bool,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AskArgs {
    question: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct ExplainArgs {
    /// The incident, e.g. inc-0003.
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct DemoArgs {
    /// A built-in scenario name, a scenario file or folder, or `all`.
    #[arg(long, default_value = DEFAULT_SCENARIO)]
    scenario: String,
    /// Simulated seconds per wall-clock second (e.g. 60); default: as fast as possible.
    #[arg(long, value_name = "X")]
    speed: Option<f64>,
    /// Print the incidents as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// SQLite database to record incidents, alerts and anomalies in (default: in memory).
    #[arg(long, value_name = "PATH")]
    db: Option<String>,
    /// Configuration file with per-series detection rules (`detect.overrides`).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Instead of running the pipeline, write the scenarios' derived service metrics in
    /// RCAEval's layout (`<service>_<fault>/<scenario>/data.csv`, `inject_time.txt`) under DIR,
    /// for `nightshift eval rca-data --format rcaeval DIR`.
    #[arg(long, value_name = "DIR")]
    export_rcaeval: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (see nightshift.example.yaml); without one, the defaults: listen on
    /// 127.0.0.1:9797, derived golden signals only.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct DetectArgs {
    /// The CSV file: a timestamp column (Unix seconds or ms, RFC 3339, or `YYYY-MM-DD HH:MM:SS` UTC) and value columns.
    file: std::path::PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Configuration file with per-series detection rules (`detect.overrides`); a column's
    /// header is its series (`name` or `name{label="value"}`).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct RcaArgs {
    /// The metrics: a `time` column (Unix seconds) and one `<service>_<metric>` column per
    /// series, or PetShop's layout (four header rows).
    #[arg(long, value_name = "FILE.csv")]
    metrics: std::path::PathBuf,
    /// When the fault started, in Unix seconds: the rows before it are normal operation.
    #[arg(long, value_name = "TS")]
    anomaly_start: f64,
    /// The call graph: `caller,callee` lines, or an adjacency matrix as PetShop's graph.csv.
    #[arg(long, value_name = "FILE")]
    graph: Option<std::path::PathBuf>,
    /// A separate recording of normal operation in the same layout (PetShop's
    /// `noissue/metrics.csv`): the series' usual spread when the rows before the fault are few.
    #[arg(long, value_name = "FILE")]
    normal: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum LogsCommand {
    /// The templates of a log (a file, or standard input without one or with `-`), with counts
    /// and examples.
    Parse(LogsParseArgs),
}

#[derive(Args)]
struct LogsParseArgs {
    file: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Replay scenarios and score incidents and root causes against their ground truth.
    Rca(EvalRcaArgs),
    /// Score anomaly detection on the Numenta Anomaly Benchmark with NAB's v1.0 rules.
    Nab(EvalNabArgs),
    /// Score log template mining on Loghub's labelled samples (GA, PA, F1, lines/s).
    Logs(EvalLogsArgs),
    /// Rank every recorded case of a data set and score against its root causes (AC@1, AC@3,
    /// Avg@5). Layouts: rcaeval, `<service>_<fault>/<run>/data.csv` with `inject_time.txt`, or
    /// `<run>/{normal,anomalous}.csv`; petshop, `<regime>/{train,test}/issue_<k>/` with
    /// `metrics.csv` and `target.json`, and the regime's `graph.csv` and `noissue/`.
    RcaData(EvalRcaDataArgs),
}

#[derive(Args)]
struct EvalRcaDataArgs {
    /// The layout: rcaeval or petshop.
    #[arg(long, value_name = "FORMAT")]
    format: String,
    /// The data set's folder.
    dir: std::path::PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalLogsArgs {
    /// The Loghub folder, holding `<System>/<System>_2k.log_structured.csv` (and `corrected/`).
    #[arg(long, value_name = "DIR")]
    data: std::path::PathBuf,
    /// Also score the raw `.log` lines, their headers cut automatically (no format strings).
    #[arg(long)]
    raw: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalRcaArgs {
    /// Scenario files or folders (default: every built-in scenario). Repeatable.
    #[arg(long = "scenario", value_name = "FILE|DIR")]
    scenarios: Vec<String>,
    /// Also score this many randomly generated scenarios (topology, fault, timing drawn from --seed).
    #[arg(long, value_name = "N", default_value_t = 0)]
    generated: u64,
    /// First seed for --generated.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also have the LLM investigator (the configuration's `llm` section) explain each fault's
    /// incident, and report its accuracy beside the deterministic ranking's, with tokens and
    /// time per incident.
    #[arg(long)]
    llm: bool,
    /// Configuration file; `--llm` needs its `llm` section.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalNabArgs {
    /// The NAB folder, holding `data/` and `labels/combined_windows.json`.
    #[arg(long, value_name = "DIR")]
    data: std::path::PathBuf,
    /// Score another detector's results instead of Nightshift's: NAB's results layout,
    /// `DIR/<category>/[<detector>_]<file>.csv` with `timestamp` and `anomaly_score` columns.
    #[arg(long, value_name = "DIR")]
    results: Option<std::path::PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// The ingest path allocates a string per label of every series it decodes, on many threads
/// and freed on another: mimalloc's thread-local free lists took `serve`'s remote-write
/// throughput from 0.32 to 1.55 M samples/s over glibc's malloc on the load
/// benchmark (`bench/remote_write`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_SCENARIO: &str = "shop-db-saturation";

fn main() {
    if let Err(e) = run() {
        // A reader that went away (`nightshift demo | head`) is not an error worth reporting.
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return;
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("NIGHTSHIFT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo(args),
        Command::Ask(a) => emit(&client::ask(
            &a.client.remote.remote(),
            &a.question,
            !a.client.no_llm,
            a.client.json,
        )?),
        Command::Explain(a) => emit(&client::explain(
            &a.client.remote.remote(),
            &a.id,
            !a.client.no_llm,
            a.client.json,
        )?),
        Command::Mcp(a) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(nightshift_server::mcp::stdio(&a.remote.remote()))
            .map_err(Into::into),
        Command::Runbook(RunbookCommand::Validate { mut paths, config }) => {
            let loaded = config
                .as_deref()
                .map(config::load)
                .transpose()?
                .map(|c| c.act);
            if paths.is_empty() {
                match loaded.as_ref().and_then(|a| a.runbooks.clone()) {
                    Some(dir) => paths.push(dir),
                    None => anyhow::bail!(
                        "name runbook files or directories, or a --config whose act.runbooks names one"
                    ),
                }
            }
            emit(&nightshift_server::remediation::validate(
                &paths,
                loaded.as_ref().map(|a| a.commands.as_slice()),
            )?)
        }
        Command::Runbook(RunbookCommand::DryRun {
            incident,
            runbook,
            server,
        }) => emit(&client::dry_run(
            &server.remote.remote(),
            &incident,
            runbook.as_deref(),
            server.json,
        )?),
        Command::Audit(AuditCommand::Verify {
            file,
            config,
            key_file,
        }) => {
            let act = config
                .as_deref()
                .map(config::load)
                .transpose()?
                .map(|c| c.act)
                .unwrap_or_default();
            let path = file.unwrap_or(act.audit_log);
            let key = match key_file {
                Some(k) => Some(config::read_audit_key(&k)?),
                None => act.audit_key,
            };
            emit(&nightshift_server::remediation::verify_audit(
                &path,
                key.as_deref(),
            )?)
        }
        Command::Incidents(a) => emit(&client::incidents(
            &a.server.remote.remote(),
            a.status.as_deref(),
            a.server.json,
        )?),
        Command::Actions(a) => emit(&client::actions(
            &a.server.remote.remote(),
            a.incident.as_deref(),
            a.state.as_deref(),
            a.server.json,
        )?),
        Command::Approve(a) => emit(&client::decide(
            &a.server.remote.with_token("approve")?,
            &a.id,
            true,
            None,
            a.server.json,
        )?),
        Command::Reject(a) => emit(&client::decide(
            &a.server.remote.with_token("reject")?,
            &a.id,
            false,
            a.reason.as_deref(),
            a.server.json,
        )?),
        Command::KillSwitch(a) => emit(&client::kill_switch(
            &a.server.remote.with_token("kill-switch")?,
            a.state == "on",
        )?),
        Command::Serve(args) => Ok(nightshift_server::serve(config::load_or_default(
            args.config.as_deref(),
        )?)?),
        Command::Detect(args) => {
            let config = config::load_or_default(args.config.as_deref())?;
            let reports =
                nightshift_eval::offline::detect_file(&args.file, &config.pipeline.overrides)?;
            if args.json {
                emit_json(&reports)
            } else {
                emit(&nightshift_eval::offline::render(&reports))
            }
        }
        Command::Eval(EvalCommand::Rca(args)) => eval_rca(args),
        Command::Eval(EvalCommand::Nab(args)) => eval_nab(args),
        Command::Logs(LogsCommand::Parse(args)) => {
            let report = logs_parse::parse(args.file.as_deref(), args.json)?;
            if args.json {
                emit_json(&report)
            } else {
                emit(&logs_parse::render(&report))
            }
        }
        Command::Rca(args) => {
            let start = (args.anomaly_start * 1000.0).round() as nightshift_core::Millis;
            let ranked = nightshift_eval::rca_data::rca(
                &args.metrics,
                start,
                args.graph.as_deref(),
                args.normal.as_deref(),
            )?;
            if args.json {
                emit_json(&ranked)
            } else {
                emit(&nightshift_eval::rca_data::render_ranking(&ranked))
            }
        }
        Command::Eval(EvalCommand::RcaData(args)) => {
            let report = nightshift_eval::rca_data::evaluate(&args.format, &args.dir, args.json)?;
            if args.json {
                emit_json(&report)
            } else {
                emit(&nightshift_eval::rca_data::render_eval(&report))
            }
        }
        Command::Eval(EvalCommand::Logs(args)) => {
            let report = nightshift_eval::loghub::run(&args.data, args.raw)?;
            if args.json {
                emit_json(&report)
            } else {
                emit(&nightshift_eval::loghub::render(&report))
            }
        }
    }
}

fn progress(scenarios: &[Scenario], quiet: bool) -> ProgressBar {
    let total: usize = scenarios.iter().map(Scenario::total_ticks).sum();
    progress_bar(total as u64, "ticks", quiet)
}

/// The wall-clock time now, in Unix milliseconds.
/// Replays `scenario`, counting its steps on `bar`. With `speed`, simulated time runs that
/// many times faster than the wall clock (warm-up history is replayed at full speed, as a
/// back-fill would be); without it, as fast as it can.
fn replay_shown(
    scenario: &Scenario,
    bar: &ProgressBar,
    speed: Option<f64>,
    pipeline: &nightshift_pipeline::PipelineConfig,
) -> Result<nightshift_pipeline::Replay> {
    let pace = speed
        .filter(|s| *s > 0.0)
        .map(|s| std::time::Duration::from_secs_f64(scenario.step_ms() as f64 / 1000.0 / s));
    let mut next_due = Instant::now();
    let pipeline = nightshift_pipeline::Pipeline::from_config(pipeline.clone())?;
    Ok(nightshift_pipeline::replay(
        scenario,
        pipeline,
        |_, warmup| {
            if let (Some(pace), false) = (pace, warmup) {
                next_due += pace;
                std::thread::sleep(next_due.saturating_duration_since(Instant::now()));
            } else {
                next_due = Instant::now();
            }
            bar.inc(1);
        },
    ))
}

pub(crate) use nightshift_eval::text::progress_bar;

#[derive(serde::Serialize)]
struct DemoScenario<'a> {
    scenario: &'a str,
    alerts_fired: u64,
    incidents: &'a [Incident],
    /// What the shipped runbooks would do about each incident (nothing runs in the demo).
    proposals: Vec<nightshift_act::Proposal>,
    /// For proposals of `auto`, low-risk runbooks: the dry run, with its verification
    /// evaluated against the replay.
    dry_runs: Vec<DemoDryRun>,
    stats: nightshift_pipeline::PipelineStats,
}

#[derive(serde::Serialize)]
struct DemoDryRun {
    incident: String,
    runbook: String,
    execution: nightshift_act::execute::Execution,
}

fn demo(args: DemoArgs) -> Result<()> {
    if let Some(speed) = args.speed
        && !(speed.is_finite() && speed > 0.0)
    {
        anyhow::bail!(
            "--speed {speed}: give a positive number of simulated seconds per wall-clock second, e.g. --speed 60"
        );
    }
    let config = config::load_or_default(args.config.as_deref())?;
    let scenarios = scenarios::resolve(&args.scenario)?;
    if let Some(dir) = &args.export_rcaeval {
        let bar = progress(&scenarios, args.json);
        let done = nightshift_eval::export_rcaeval::export(&scenarios, dir, &bar)?;
        let mut msg = format!("wrote {} case(s) under {}\n", done.cases, dir.display());
        if !done.skipped.is_empty() {
            msg.push_str(&format!(
                "left out (several faults, or a fault on a node): {}\n",
                done.skipped.join(", ")
            ));
        }
        return emit(&msg);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let store = runtime.block_on(async {
        match &args.db {
            Some(path) => SqliteStore::open(path)
                .await
                .with_context(|| format!("cannot open the database {path}")),
            None => SqliteStore::in_memory()
                .await
                .context("cannot open an in-memory database"),
        }
    })?;
    let bar = progress(&scenarios, args.json);
    let mut json_out = Vec::new();
    let started = Instant::now();
    let runbooks = nightshift_act::runbook::shipped();
    use nightshift_act::plan::Workload;
    for scenario in &scenarios {
        bar.set_message(scenario.name().to_string());
        let r = replay_shown(scenario, &bar, args.speed, &config.pipeline)?;
        // Where the simulated cluster runs each service, as its Kubernetes API would say.
        let ns = scenario.namespace();
        let workloads: nightshift_act::plan::Workloads = (scenario.services().iter())
            .filter_map(|s| {
                let w = Workload::checked(&s.name, ns.into(), None, Some("app".into()), "scenario");
                Some((s.name.clone(), w.ok()?))
            })
            .collect();
        runtime
            .block_on(nightshift_store::record_findings(
                &store,
                &r.incidents,
                &r.alerts,
                &r.changes,
                &r.anomalies,
            ))
            .context("cannot record the results in the database")?;
        let proposals: Vec<Vec<nightshift_act::Proposal>> = r
            .incidents
            .iter()
            .map(|inc| {
                let alerts: Vec<nightshift_core::Alert> = r
                    .alerts
                    .iter()
                    .filter(|a| inc.alerts.contains(&a.fingerprint))
                    .cloned()
                    .collect();
                nightshift_act::propose(&runbooks, inc, &alerts, &workloads)
            })
            .collect();
        let dry_runs: Vec<Vec<DemoDryRun>> = r
            .incidents
            .iter()
            .zip(&proposals)
            .map(|(inc, list)| {
                list.iter()
                    .filter(|p| p.mode == nightshift_act::Mode::Auto)
                    .filter_map(|p| {
                        let rb = runbooks.iter().find(|rb| rb.name == p.runbook)?;
                        Some(DemoDryRun {
                            incident: inc.id.clone(),
                            runbook: p.runbook.clone(),
                            execution: nightshift_server::remediation::dry_run(
                                &runtime, rb, p, inc,
                            ),
                        })
                    })
                    .collect()
            })
            .collect();
        if args.json {
            json_out.push(serde_json::to_value(DemoScenario {
                scenario: scenario.name(),
                alerts_fired: r.stats.alerts_fired,
                incidents: &r.incidents,
                proposals: proposals.into_iter().flatten().collect(),
                dry_runs: dry_runs.into_iter().flatten().collect(),
                stats: r.stats,
            })?);
            continue;
        }
        bar.suspend(|| {
            let mut text = format!(
                "▶ {} — {} services, {} alerts fired → {} incident(s); {} samples, {} log lines, {} anomaly reports; {} series under detection ({} KiB of state)\n",
                scenario.name(),
                r.topology.services.len(),
                r.stats.alerts_fired,
                r.incidents.len(),
                r.stats.samples,
                r.stats.logs,
                r.stats.anomalies,
                r.stats.detected_series,
                r.stats.detector_state_bytes.div_ceil(1024)
            );
            for ((inc, proposed), dry) in r.incidents.iter().zip(&proposals).zip(&dry_runs) {
                text.push_str(&render::incident(inc, r.start_ms));
                text.push_str(&render::proposals(proposed));
                for d in dry {
                    text.push_str(&render::dry_run(&d.runbook, &d.execution));
                }
                text.push('\n');
            }
            emit(&text)
        })?;
    }
    bar.finish_and_clear();
    if args.json {
        emit_json(&json_out)
    } else {
        emit(&format!(
            "{} scenario(s) replayed in {:.1}s.\n",
            scenarios.len(),
            started.elapsed().as_secs_f64()
        ))
    }
}

/// Writes to stdout, returning the error (a closed pipe, say) instead of panicking as `print!` does.
/// Prints `value` as pretty JSON on stdout.
fn emit_json(value: &impl serde::Serialize) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn eval_rca(args: EvalRcaArgs) -> Result<()> {
    let mut scenarios = if args.scenarios.is_empty() && args.generated > 0 {
        Vec::new()
    } else {
        scenarios::resolve_all(&args.scenarios)?
    };
    scenarios.extend(scenarios::generated(args.seed, args.generated)?);
    let config = config::load_or_default(args.config.as_deref())?;
    let investigator = if args.llm {
        if config.llm.is_none() {
            bail!(
                "eval rca --llm: give --config FILE with an llm section (see nightshift.example.yaml)"
            );
        }
        Some(nightshift_eval::llm::Runner::new()?)
    } else {
        None
    };
    let bar = progress(&scenarios, args.json);
    let mut scores = Vec::new();
    let mut cases = Vec::new();
    let mut investigated = Vec::new();
    for scenario in &scenarios {
        bar.set_message(scenario.name().to_string());
        let r = replay_shown(scenario, &bar, None, &config.pipeline)?;
        let (s, c) = nightshift_eval::rca_sim::score_scenario(scenario, &r);
        if let Some(runner) = &investigator {
            bar.set_message(format!("{}: investigating", scenario.name()));
            investigated.extend(runner.investigate(&config, &r, &c)?);
        }
        scores.push(s);
        cases.extend(c);
    }
    bar.finish_and_clear();
    let faults = cases.len();
    let mut report = nightshift_eval::rca_sim::report(scores, cases);
    if investigator.is_some() {
        let model = config.llm.as_ref().map(|l| l.provider.model.clone());
        report.investigator = Some(nightshift_eval::rca_sim::investigator_report(
            model.unwrap_or_default(),
            faults,
            investigated,
        ));
    }
    if args.json {
        emit_json(&report)
    } else {
        emit(&nightshift_eval::text::report(&report))
    }
}

fn eval_nab(args: EvalNabArgs) -> Result<()> {
    let report = nightshift_eval::nab::run(&args.data, args.results.as_deref(), args.json)?;
    if args.json {
        emit_json(&report)
    } else {
        emit(&nightshift_eval::nab::render(&report))
    }
}
