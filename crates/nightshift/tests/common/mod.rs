//! What the integration tests share: running the binary, starting processes on free loopback
//! ports, a minimal HTTP client and polling.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Serves `app` on a free loopback port, from a thread of its own, for as long as the test
/// runs: the stand-ins for APIs that cannot run here. Gives the port.
pub fn serve_stand_in(app: axum::Router) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                axum::serve(listener, app)
                    .await
                    .expect("the stand-in serves");
            });
    });
    port
}

/// Runs the nightshift binary with `args` to its end.
pub fn nightshift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(args)
        .output()
        .expect("the nightshift binary runs")
}

/// Runs the nightshift binary, requires it to succeed, and reads its output as JSON.
pub fn nightshift_json(args: &[&str]) -> serde_json::Value {
    json_of(&nightshift(args))
}

/// A successful run's output as JSON; a failed run fails the test with its error output.
pub fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// A child process killed when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nightshift-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // A server may answer (413) and stop reading before the body is sent: read the answer even
    // when the write is cut short.
    let _ = s.write_all(req.as_bytes()).and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Posts one critical alert per name on `service` to Nightshift's Alertmanager API (v2) and
/// gives the id of the open incident they make.
pub fn post_alert_storm(port: u16, service: &str, names: &[&str]) -> String {
    for name in names {
        let body = format!(
            r#"[{{"labels": {{"alertname": "{name}", "service": "{service}", "severity": "critical"}}}}]"#
        );
        let json = [("Content-Type", "application/json")];
        assert_eq!(
            http(port, "POST", "/api/v1/alerts", &json, body.as_bytes()).0,
            200
        );
    }
    wait_for(Duration::from_secs(30), || {
        let (_, body) = get(port, "/api/v1/incidents?status=open");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v[0]["id"].as_str().map(str::to_string)
    })
    .expect("an incident opened")
}

/// Three critical alerts on checkout.
pub const CHECKOUT_ALERTS: [&str; 3] = [
    "CheckoutErrorsHigh",
    "CheckoutLatencyHigh",
    "CheckoutPodRestarting",
];

/// A deploy of checkout (v2.4.1, described by `description`), then [`CHECKOUT_ALERTS`]: the id
/// of the incident they make.
pub fn checkout_incident_after_deploy(port: u16, description: &str) -> String {
    let change = serde_json::json!({
        "kind": "deploy", "target": "checkout", "version": "v2.4.1", "description": description,
    })
    .to_string();
    let json = [("Content-Type", "application/json")];
    assert_eq!(
        http(port, "POST", "/api/v1/changes", &json, change.as_bytes()).0,
        200
    );
    post_alert_storm(port, "checkout", &CHECKOUT_ALERTS)
}

pub fn get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, &[], b"")
}

/// Polls `check` every 250 ms until it gives a value or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// The value of the first sample of `name` on a /metrics page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn start_nightshift(dir: &Path, port: u16) -> Running {
    start_nightshift_with(
        dir,
        port,
        "detect:\n  watch: ['up', 'prometheus_tsdb_head_series']\n",
    )
}

/// `nightshift serve` on `port`, its database in `dir`, with `extra` configuration sections.
pub fn start_nightshift_with(dir: &Path, port: u16, extra: &str) -> Running {
    let config = dir.join("nightshift.yaml");
    std::fs::write(
        &config,
        format!(
            "serve:\n  listen: 127.0.0.1:{port}\n  interval: 1s\nstore:\n  path: {}\n{extra}",
            dir.join("nightshift.db").display()
        ),
    )
    .expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nightshift serve starts");
    let running = Running(child);
    wait_for(Duration::from_secs(20), || {
        (get(port, "/readyz").0 == 200).then_some(())
    })
    .expect("nightshift serve becomes ready");
    running
}

/// A remote-write series with its samples, as (timestamp ms, value).
pub fn rw_series(
    labels: &[(&str, &str)],
    samples: &[(i64, f64)],
) -> nightshift_ingest::remote_write::TimeSeries {
    use nightshift_ingest::remote_write::{Label, Sample, TimeSeries};
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
    }
}

/// A remote-write body: the request as protobuf, snappy block-compressed.
pub fn rw_body(series: Vec<nightshift_ingest::remote_write::TimeSeries>) -> Vec<u8> {
    use prost::Message;
    let req = nightshift_ingest::remote_write::WriteRequest { timeseries: series };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compresses")
}

/// The headers of a remote-write 1.0 request.
pub const RW_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
];

/// Debian's Alertmanager, if installed.
pub fn alertmanager_binary() -> Option<&'static str> {
    [
        "/usr/bin/prometheus-alertmanager",
        "/usr/bin/alertmanager",
        "/usr/local/bin/alertmanager",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// A real Alertmanager on `port` with `config` (YAML), its state in `dir`, once it is ready.
pub fn start_alertmanager(binary: &str, dir: &Path, port: u16, config: &str) -> Running {
    let file = dir.join("alertmanager.yml");
    std::fs::write(&file, config).expect("write alertmanager.yml");
    let running = Running(
        Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts"),
    );
    wait_for(Duration::from_secs(30), || {
        (get(port, "/-/ready").0 == 200).then_some(())
    })
    .expect("alertmanager becomes ready");
    running
}

/// Debian's Prometheus, if installed.
pub fn prometheus_binary() -> Option<&'static str> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// A real Prometheus on `port` scraping only itself every second, once it is ready.
pub fn start_self_scraping_prometheus(binary: &str, dir: &Path, port: u16) -> Running {
    start_prometheus(
        binary,
        dir,
        port,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    )
}

/// A real Prometheus on `port` with `config` (YAML), its TSDB in `dir`, once it is ready.
pub fn start_prometheus(binary: &str, dir: &Path, port: u16, config: &str) -> Running {
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).expect("write prometheus.yml");
    let running = Running(
        Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    wait_for(Duration::from_secs(30), || {
        (get(port, "/-/ready").0 == 200).then_some(())
    })
    .expect("prometheus becomes ready");
    running
}
