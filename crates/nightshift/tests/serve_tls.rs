//! `serve.tls`: HTTPS with a certificate read again when its files change, mutual TLS, and the
//! real senders configured as the docs say: Debian's Prometheus (2.42) remote-writing over
//! HTTPS with a bearer token, Debian's Alertmanager (0.25) sending webhooks over HTTPS with one.

mod common;

use common::{Running, free_port, start_alertmanager, start_prometheus, temp_dir, wait_for};
use nightshift_testkit::tls::{Pki, pki};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const READ: &str = "read-token-0123456789ab";
const INGEST: &str = "ingest-token-0123456789";

/// One HTTPS request to the server trusting `ca` (and presenting `identity`, a PEM file with
/// a certificate and key): the status and body, or why the connection failed.
fn https(
    port: u16,
    method: &str,
    path: &str,
    ca: &Path,
    identity: Option<&Path>,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let remote = nightshift_server::remote::Remote {
        token: token.map(str::to_string),
        ca_file: Some(ca.to_path_buf()),
        client_cert: identity.map(Path::to_path_buf),
        ..nightshift_server::remote::Remote::new(&format!("https://127.0.0.1:{port}"))
    };
    let client = remote.http_client(Duration::from_secs(10))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut req = client.request(
            method.parse().expect("a method"),
            format!("{}{path}", remote.url),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.unwrap_or_default()))
    })
}

/// `serve` over TLS with `tls` (YAML lines under `tls:`), a read and an ingest token, once
/// `/readyz` answers over HTTPS.
fn start_tls(dir: &Path, port: u16, tls: &str, pki: &Pki, client: Option<&Path>) -> Running {
    let config = dir.join("nightshift.yaml");
    std::fs::write(
        &config,
        format!(
            "serve:\n  listen: 127.0.0.1:{port}\n  interval: 1s\n  tls:\n{tls}  auth:\n    tokens:\n      - {{name: reader, token: {READ}, scopes: [read]}}\n      - {{name: prometheus, token: {INGEST}, scopes: [ingest]}}\nstore:\n  path: {}\ndetect:\n  watch: ['up', 'prometheus_tsdb_head_series']\n",
            dir.join("nightshift.db").display()
        ),
    )
    .expect("write config");
    let running = Running(
        Command::new(env!("CARGO_BIN_EXE_nightshift"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts"),
    );
    wait_for(Duration::from_secs(20), || {
        https(port, "GET", "/readyz", &pki.ca, client, None, None)
            .ok()
            .filter(|(c, _)| *c == 200)
    })
    .expect("serve answers over HTTPS");
    running
}

fn files(p: &Pki) -> String {
    format!(
        "    cert_file: {}\n    key_file: {}\n",
        p.cert.display(),
        p.key.display()
    )
}

#[test]
fn https_with_a_certificate_read_again_when_it_changes() {
    let dir = temp_dir("serve-tls");
    let port = free_port();
    let first = pki(&dir, "");
    let _ns = start_tls(&dir, port, &files(&first), &first, None);
    let (code, body) = https(
        port,
        "GET",
        "/api/v1/incidents",
        &first.ca,
        None,
        Some(READ),
        None,
    )
    .expect("HTTPS");
    assert_eq!(code, 200, "{body}");
    // Plain HTTP on the TLS port gets no answer.
    assert_eq!(common::get(port, "/healthz").0, 0);
    // The CLI over HTTPS with the CA and the token.
    let out = common::nightshift(&[
        "incidents",
        "--server",
        &format!("https://127.0.0.1:{port}"),
        "--ca-file",
        first.ca.to_str().expect("utf-8"),
        "--token",
        READ,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no incidents"));

    // A new certificate from another CA, written over the files: served within seconds,
    // without a restart; the old CA no longer verifies it.
    let next_dir = dir.join("next");
    std::fs::create_dir_all(&next_dir).expect("dir");
    let second = pki(&next_dir, "");
    std::fs::copy(&second.key, &first.key).expect("copy the key");
    std::fs::copy(&second.cert, &first.cert).expect("copy the certificate");
    wait_for(Duration::from_secs(20), || {
        https(port, "GET", "/healthz", &second.ca, None, None, None)
            .ok()
            .filter(|(c, _)| *c == 200)
    })
    .expect("the new certificate is served");
    assert!(https(port, "GET", "/healthz", &first.ca, None, None, None).is_err());
}

#[test]
fn mutual_tls_turns_away_clients_without_a_certificate() {
    let dir = temp_dir("serve-mtls");
    let port = free_port();
    let p = pki(&dir, "");
    let identity = dir.join("client-identity.pem");
    std::fs::write(
        &identity,
        format!(
            "{}{}",
            std::fs::read_to_string(&p.client_cert).expect("cert"),
            std::fs::read_to_string(&p.client_key).expect("key")
        ),
    )
    .expect("write");
    let tls = format!(
        "{}    client_ca_file: {}\n    client_auth: require\n",
        files(&p),
        p.ca.display()
    );
    let _ns = start_tls(&dir, port, &tls, &p, Some(&identity));
    assert!(https(port, "GET", "/healthz", &p.ca, None, None, None).is_err());
    let (code, _) = https(
        port,
        "GET",
        "/api/v1/incidents",
        &p.ca,
        Some(&identity),
        Some(READ),
        None,
    )
    .expect("with a client certificate");
    assert_eq!(code, 200);
    // A certificate does not stand in for a token.
    let (code, _) = https(
        port,
        "GET",
        "/api/v1/incidents",
        &p.ca,
        Some(&identity),
        None,
        None,
    )
    .expect("connects");
    assert_eq!(code, 401);
}

#[test]
fn a_real_prometheus_remote_writes_over_https_with_a_bearer_token() {
    let Some(prometheus) = nightshift_testkit::peers::prometheus() else {
        return;
    };
    let dir = temp_dir("serve-tls-prom");
    let (ns, prom) = (free_port(), free_port());
    let p = pki(&dir, "");
    let _ns = start_tls(&dir, ns, &files(&p), &p, None);
    // The snippet docs/security.md gives.
    let _prom = start_prometheus(
        prometheus,
        &dir,
        prom,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prom}']}}]\nremote_write:\n  - url: https://127.0.0.1:{ns}/api/v1/write\n    authorization:\n      credentials: {INGEST}\n    tls_config:\n      ca_file: {}\n    queue_config: {{batch_send_deadline: 1s}}\n",
            p.ca.display()
        ),
    );
    let samples = wait_for(Duration::from_secs(60), || {
        let (_, page) = https(ns, "GET", "/metrics", &p.ca, None, Some(READ), None).ok()?;
        common::metric(&page, "nightshift_ingest_samples_total").filter(|n| *n > 0.0)
    });
    assert!(samples.is_some(), "no sample arrived over HTTPS");
}

#[test]
fn a_real_alertmanager_sends_webhooks_over_https_with_a_bearer_token() {
    let Some(alertmanager) = nightshift_testkit::peers::alertmanager() else {
        return;
    };
    let dir = temp_dir("serve-tls-am");
    let (ns, am) = (free_port(), free_port());
    let p = pki(&dir, "");
    let _ns = start_tls(&dir, ns, &files(&p), &p, None);
    let _am = start_alertmanager(
        alertmanager,
        &dir,
        am,
        &format!(
            "route:\n  receiver: nightshift\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: nightshift\n    webhook_configs:\n      - url: https://127.0.0.1:{ns}/api/v1/alerts/alertmanager\n        http_config:\n          authorization:\n            credentials: {INGEST}\n          tls_config:\n            ca_file: {}\n",
            p.ca.display()
        ),
    );
    let alert = r#"[{"labels": {"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "page"}}]"#;
    let (code, body) = common::http(
        am,
        "POST",
        "/api/v2/alerts",
        &[("Content-Type", "application/json")],
        alert.as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let stored = wait_for(Duration::from_secs(60), || {
        let (_, body) = https(ns, "GET", "/api/v1/alerts", &p.ca, None, Some(READ), None).ok()?;
        body.contains("CheckoutLatencyHigh").then_some(())
    });
    assert!(stored.is_some(), "the alert did not arrive over HTTPS");
}
