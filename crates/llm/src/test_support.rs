//! For tests of this crate and the binary: the real peers `scripts/llm-peers` sets up — the
//! local model (llama.cpp's OpenAI-compatible server with SmolLM2-135M) and a Python with the
//! MCP SDK. Without them, callers print why and skip, unless `NIGHTSHIFT_REQUIRE_PEERS=1` makes
//! that a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct LocalModel {
    child: Child,
    /// The OpenAI-compatible base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub base: String,
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peers' folder when it holds the Python and, if `model`, the model.
fn peers(model: bool) -> Option<PathBuf> {
    let dir = std::env::var_os("NIGHTSHIFT_PEERS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/peers"),
        PathBuf::from,
    );
    let has_model = || {
        std::fs::read_dir(dir.join("model"))
            .map(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "gguf")))
            })
            .unwrap_or(false)
    };
    let ok = dir.join("venv/bin/python").exists() && (!model || has_model());
    if ok {
        return Some(dir);
    }
    let why = format!(
        "no {} under {}: run scripts/llm-peers to set it up",
        if model {
            "local LLM"
        } else {
            "Python with the MCP SDK"
        },
        dir.display()
    );
    if std::env::var("NIGHTSHIFT_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// The Python that has the official MCP SDK (PyPI's `mcp`).
pub fn python() -> Option<PathBuf> {
    peers(false).map(|d| d.join("venv/bin/python"))
}

/// Starts llama.cpp's server on a free port and waits until it answers.
pub async fn start_local_model() -> Option<LocalModel> {
    let dir = peers(true)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let model = std::fs::read_dir(dir.join("model"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(dir.join("venv/bin/python"))
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
        child,
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
