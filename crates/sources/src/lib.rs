#![doc = include_str!("../README.md")]

pub mod files;
pub mod kubernetes;
pub mod prometheus;

use std::sync::Arc;

/// How a source hands what it found to the pipeline: the future waits while the pipeline is
/// behind and gives `false` once it is gone, when the source stops.
pub type Deliver<T> =
    Arc<dyn Fn(T) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// What a source cannot start without.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kubernetes.kubeconfig: cannot read {path}")]
    KubeconfigUnreadable {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kubernetes.kubeconfig: {path} has no usable context")]
    KubeconfigContext {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "kubernetes: no in-cluster service account and no $KUBECONFIG; set kubernetes.kubeconfig"
    )]
    NoCluster(#[source] kube::config::InferConfigError),
    #[error("kubernetes: cannot build the API client")]
    Client(#[source] kube::Error),
}

/// The wall clock in milliseconds, the time stamp of what a source (or the server) observes now.
pub fn now_ms() -> nightshift_core::Millis {
    jiff::Timestamp::now().as_millisecond()
}
