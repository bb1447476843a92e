//! The HTTP edge: the listener, TLS (with mutual TLS when configured, certificates read again
//! when their files change) and the limits every connection and request passes before a
//! handler sees it: a connection cap, a deadline for the TLS handshake and the request headers,
//! a deadline between pieces of a body, and a cap on requests answered at once (503 with
//! `Retry-After` beyond it).
//!
//! `axum::serve` offers none of these knobs, so the accept loop is written here over hyper's
//! own connection builder, which has them.

use super::App;
use crate::ServerError;
use crate::config::{EdgeLimits, TlsConfig};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// How often the certificate files are looked at for changes.
const TLS_RELOAD_EVERY: Duration = Duration::from_secs(5);
/// How long open connections get to finish once the server is told to stop.
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// The TLS configuration in use, swapped when the files change.
struct Reloading {
    current: RwLock<Arc<rustls::ServerConfig>>,
}

/// When each of the configuration's files last changed.
fn stamps(tls: &TlsConfig) -> Vec<Option<SystemTime>> {
    [
        Some(&tls.cert_file),
        Some(&tls.key_file),
        tls.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

/// Watches the certificate files and swaps the configuration when they change; a change that
/// does not load (a key written before its certificate, say) keeps the one in use.
fn watch_tls(tls: TlsConfig, reloading: Arc<Reloading>) {
    tokio::spawn(async move {
        let mut seen = stamps(&tls);
        loop {
            tokio::time::sleep(TLS_RELOAD_EVERY).await;
            let now = stamps(&tls);
            if now == seen {
                continue;
            }
            match crate::tls::server_config(&tls) {
                Ok(c) => {
                    *reloading.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
                    seen = now;
                    tracing::info!("serve.tls: the certificate was read again");
                }
                Err(e) => tracing::warn!("serve.tls: keeping the certificate in use: {e}"),
            }
        }
    });
}

/// Serves `router` on `listen` (over TLS when configured) until `stop` finishes, then gives
/// open connections a moment to finish their requests.
pub(super) async fn serve_http(
    router: Router,
    listen: SocketAddr,
    tls: Option<&TlsConfig>,
    limits: &EdgeLimits,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: listen,
            source,
        })?;
    let tls = match tls {
        Some(t) => {
            let reloading = Arc::new(Reloading {
                current: RwLock::new(Arc::new(
                    crate::tls::server_config(t).map_err(ServerError::Tls)?,
                )),
            });
            watch_tls(t.clone(), reloading.clone());
            Some(reloading)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%listen, scheme, "serving");
    eprintln!("nightshift serve: listening on {scheme}://{listen}");
    let header_timeout = Duration::from_millis(limits.header_timeout_ms as u64);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_in_flight as u32);
    let service = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_millis(limits.body_timeout_ms as u64),
        ))
        .service(router);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            app.metrics.count_edge("connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (builder, service, app) = (builder.clone(), service.clone(), app.clone());
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| {
            tokio_rustls::TlsAcceptor::from(
                t.current.read().unwrap_or_else(|p| p.into_inner()).clone(),
            )
        });
        tokio::spawn(async move {
            let service = TowerToHyperService::new(service);
            let served = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(s), service))
                                .await
                        }
                        Ok(Err(_)) | Err(_) => {
                            app.metrics.count_edge("tls_handshake");
                            drop(permit);
                            return;
                        }
                    }
                }
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if served.is_err() {
                app.metrics.count_edge("connection_error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_FOR, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_FOR:?} were closed");
    }
    Ok(())
}

/// Answers 503 with `Retry-After` when `serve.limits.max_in_flight` requests are being
/// answered already; the probes always get through.
pub(super) async fn limit_in_flight(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let Ok(_permit) = app.in_flight.clone().try_acquire_owned() else {
        app.metrics.count_edge("in_flight");
        return super::receivers::retry_later(
            "too many requests at once (serve.limits.max_in_flight); retry later".into(),
        );
    };
    next.run(request).await
}
