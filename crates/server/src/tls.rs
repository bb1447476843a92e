//! `serve.tls` read into a rustls server configuration: the certificate chain and key the
//! server presents and, for mutual TLS, the CA its clients' certificates must chain to.

use crate::config::{ClientAuth, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// The rustls configuration of `serve.tls`, read from its files; errors name the key and file.
pub fn server_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let read_certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: holds no PEM certificate", path.display()));
        }
        Ok(certs)
    };
    let certs = read_certs(&tls.cert_file).map_err(|e| format!("serve.tls.cert_file: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| {
        format!(
            "serve.tls.key_file: {}: {e} (a PEM private key is expected)",
            tls.key_file.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("serve.tls: {e}"))?;
    let builder = match (&tls.client_ca_file, tls.client_auth) {
        (Some(ca), auth) if auth != ClientAuth::None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca).map_err(|e| format!("serve.tls.client_ca_file: {e}"))? {
                roots
                    .add(c)
                    .map_err(|e| format!("serve.tls.client_ca_file: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            );
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("serve.tls.client_ca_file: {e}"))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("serve.tls: the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
