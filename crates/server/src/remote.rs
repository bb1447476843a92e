//! How a client reaches a running `nightshift serve`: its URL, the bearer token to send, and for
//! HTTPS the CA to trust and (for mutual TLS) the client's own certificate. The CLI's client
//! commands and the MCP bridge use it.

use std::path::PathBuf;
use std::time::Duration;

/// A running server and the credentials to call it with.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// Base URL, e.g. `https://nightshift.example.com:9797`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// A PEM file of the CA the server's certificate chains to (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// A PEM file with the client's certificate and key, for a server that asks for one.
    pub client_cert: Option<PathBuf>,
}

impl Remote {
    pub fn new(url: &str) -> Remote {
        Remote {
            url: url.trim_end_matches('/').to_string(),
            ..Default::default()
        }
    }

    /// An HTTP client that trusts `ca_file` and presents `client_cert`; errors name the file.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        // One TLS crypto provider for the process (rustls needs exactly one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
        };
        let mut b = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &self.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca, "CA file")?)
                .map_err(|e| format!("{}: not PEM certificates: {e}", ca.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(cert) = &self.client_cert {
            let id =
                reqwest::Identity::from_pem(&read(cert, "client certificate")?).map_err(|e| {
                    format!(
                        "{}: a PEM certificate and its private key are expected: {e}",
                        cert.display()
                    )
                })?;
            b = b.identity(id);
        }
        b.build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }
}
