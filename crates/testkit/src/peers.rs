//! The one rule for tests against real peers: missing means skipped with a printed reason,
//! unless `NIGHTSHIFT_REQUIRE_PEERS=1` (which `scripts/test` sets), when missing fails the test.
//! So a CI run without the peers cannot pass silently.

use std::path::{Path, PathBuf};

/// Whether this run requires every peer (`NIGHTSHIFT_REQUIRE_PEERS=1`).
pub fn required() -> bool {
    std::env::var("NIGHTSHIFT_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// `found`, or — when it is `None` — a printed `skipped: why` and `None`; a panic naming `why`
/// when peers are required.
pub fn require<T>(found: Option<T>, why: impl FnOnce() -> String) -> Option<T> {
    if found.is_some() {
        return found;
    }
    let why = why();
    assert!(!required(), "{why} (NIGHTSHIFT_REQUIRE_PEERS=1)");
    eprintln!("skipped: {why}");
    None
}

fn first_existing(paths: &[&'static str]) -> Option<&'static str> {
    paths.iter().copied().find(|p| Path::new(p).exists())
}

/// Debian's Prometheus (`scripts/test` installs it).
pub fn prometheus() -> Option<&'static str> {
    require(
        first_existing(&["/usr/bin/prometheus", "/usr/local/bin/prometheus"]),
        || "no prometheus binary (scripts/test installs Debian's `prometheus`)".into(),
    )
}

/// Debian's Alertmanager (`scripts/test` installs it).
pub fn alertmanager() -> Option<&'static str> {
    require(
        first_existing(&[
            "/usr/bin/prometheus-alertmanager",
            "/usr/bin/alertmanager",
            "/usr/local/bin/alertmanager",
        ]),
        || {
            "no alertmanager binary (scripts/test installs Debian's `prometheus-alertmanager`)"
                .into()
        },
    )
}

/// The folder `scripts/llm-peers` fills: `$NIGHTSHIFT_PEERS`, else `target/peers`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("NIGHTSHIFT_PEERS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/peers"),
        PathBuf::from,
    )
}

/// `venv/bin/NAME` of the peers' virtualenv when `ready` says it is usable (a provider's
/// program: ansible-playbook, a notification SDK's CLI).
pub fn program(name: &str, ready: impl Fn(&PathBuf) -> bool) -> Option<PathBuf> {
    let path = peers_dir().join("venv/bin").join(name);
    let usable = ready(&path);
    require(usable.then_some(path.clone()), || {
        format!(
            "no usable {} (run scripts/llm-peers to set it up)",
            path.display()
        )
    })
}

/// The Python that has the official MCP SDK (PyPI's `mcp`).
pub fn python() -> Option<PathBuf> {
    let path = peers_dir().join("venv/bin/python");
    require(path.exists().then_some(path.clone()), || {
        format!(
            "no Python with the MCP SDK at {}: run scripts/llm-peers to set it up",
            path.display()
        )
    })
}

/// The local model's file (a `.gguf` under the peers' `model/`).
pub fn local_model() -> Option<(PathBuf, PathBuf)> {
    let dir = peers_dir();
    let python = dir.join("venv/bin/python");
    let model = std::fs::read_dir(dir.join("model")).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "gguf"))
    });
    let found = model.filter(|_| python.exists()).map(|m| (python, m));
    require(found, || {
        format!(
            "no local LLM under {}: run scripts/llm-peers to set it up",
            dir.display()
        )
    })
}
