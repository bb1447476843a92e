//! A throwaway certificate authority for tests of TLS: a CA, a server certificate for
//! `127.0.0.1` and `localhost`, and a client certificate, written as PEM files into a folder.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

/// The PEM files of a test PKI.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA and the certificates it signs, written into `dir` (names prefixed with `prefix`, so
/// that a second set can replace the first for a reload test).
pub fn pki(dir: &Path, prefix: &str) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("nightshift test CA {prefix}"));
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(names).expect("leaf parameters");
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("a leaf key");
        let cert = p.signed_by(&key, &issuer).expect("a leaf certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "nightshift");
    let (client_cert, client_key) = leaf(Vec::new(), "test client");
    let write = |name: &str, pem: &str| {
        let path = dir.join(format!("{prefix}{name}"));
        std::fs::write(&path, pem).expect("write a PEM file");
        path
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        cert: write("cert.pem", &cert),
        key: write("key.pem", &key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}
