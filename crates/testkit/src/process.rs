//! Peers as child processes on free loopback ports, killed when the test ends however it ends,
//! and the small tools every such test needs: polling, temporary folders, a minimal HTTP client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    let (status, _, body) = http_full(port, method, path, headers, body);
    (status, body)
}

/// [`http`] with the answer's header block too: (status, headers as sent, body).
pub fn http_full(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
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
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

/// `GET path` on a fresh connection: (status, body).
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

/// Waits up to 30 s for `GET path` on `port` to answer 200.
pub fn ready(what: &'static str, port: u16, path: &str) -> Result<(), crate::TestkitError> {
    let seconds = 30;
    wait_for(Duration::from_secs(seconds), || {
        (get(port, path).0 == 200).then_some(())
    })
    .ok_or(crate::TestkitError::NotReady {
        what,
        port,
        seconds,
    })
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
    ready("alertmanager", port, "/-/ready").unwrap_or_else(|e| panic!("{e}"));
    running
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
    ready("prometheus", port, "/-/ready").unwrap_or_else(|e| panic!("{e}"));
    running
}

/// llama.cpp's OpenAI-compatible server with the peers' local model, killed on drop.
pub struct LocalModel {
    _child: Running,
    /// The OpenAI-compatible base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub base: String,
}

/// Starts llama.cpp's server on a free port and waits until it answers; `None` (or a panic,
/// when peers are required) without the peers of `scripts/llm-peers`.
pub async fn start_local_model() -> Option<LocalModel> {
    let (python, model) = crate::peers::local_model()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args([
            "--chat_format",
            "chatml-function-calling",
            "--n_ctx",
            "8192",
        ])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama_cpp.server");
    let local = LocalModel {
        _child: Running(child),
        base: format!("http://127.0.0.1:{port}/v1"),
    };
    let http = reqwest::Client::new();
    for _ in 0..240 {
        if let Ok(r) = http.get(format!("{}/models", local.base)).send().await
            && r.status().is_success()
        {
            return Some(local);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("llama_cpp.server did not answer within a minute");
}
