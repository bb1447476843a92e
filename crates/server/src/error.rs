//! Why the server could not start (or stopped), and why an offline remediation check failed:
//! each message names what to change.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of start-up, shutdown and the offline remediation commands; what goes wrong while
/// serving is answered per request, logged and counted instead.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot open the database {path}; set store.path in the configuration")]
    OpenStore {
        path: String,
        source: nightshift_store::StoreError,
    },
    #[error("cannot read {what} of earlier runs from the database")]
    History {
        what: &'static str,
        source: nightshift_store::StoreError,
    },
    #[error("the database holds action {id} in a form this version cannot read")]
    UnreadableAction {
        id: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Source(#[from] nightshift_sources::SourceError),
    #[error(transparent)]
    Pipeline(#[from] nightshift_pipeline::PipelineError),
    #[error("cannot build the HTTP client for {what}")]
    HttpClient {
        what: String,
        source: reqwest::Error,
    },
    #[error("llm")]
    Llm(#[from] nightshift_llm::LlmError),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A folder of runbooks or scenarios that cannot be listed or holds no `.yaml` file.
    #[error("{0}")]
    Folder(String),
    /// Runbook files with problems: the valid ones (one line each), then a line per problem.
    #[error("{0}")]
    Runbooks(String),
    #[error("act.audit_log: cannot open {}; `nightshift audit verify` names a broken entry", path.display())]
    OpenAudit {
        path: PathBuf,
        source: nightshift_act::audit::AuditError,
    },
    #[error("cannot write to the audit log: {0}")]
    WriteAudit(nightshift_act::audit::AuditError),
    #[error("act.audit_export.file: cannot open {path}")]
    AuditExport {
        path: String,
        source: std::io::Error,
    },
    /// `nightshift audit verify`: no log, an unreadable one, or the first broken entry.
    #[error("{0}")]
    Audit(String),
    #[error("cannot start the pipeline thread: {0}")]
    Thread(std::io::Error),
    #[error("the pipeline thread panicked")]
    PipelinePanicked,
    #[error("cannot listen on {addr}; set serve.listen in the configuration to a free address")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `serve.tls` names files that do not load.
    #[error("{0}")]
    Tls(String),
    /// A non-loopback listener without credentials.
    #[error("{0}")]
    Insecure(String),
    #[error("the HTTP server stopped: {0}")]
    Http(std::io::Error),
    /// `nightshift mcp`: the bridge to a running server's `/mcp`.
    #[error("{0}")]
    Mcp(String),
}
