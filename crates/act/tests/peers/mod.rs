//! The real peers `scripts/llm-peers` sets up in `target/peers` (or `$NIGHTSHIFT_PEERS`) for the
//! provider tests: without one, a test prints why and passes, unless
//! `NIGHTSHIFT_REQUIRE_PEERS=1` (as `scripts/test` sets), when it fails.

use std::path::PathBuf;

/// `venv/bin/NAME` of the peers when `ready` says it is usable; otherwise why not is printed
/// (or panics, when peers are required) and `None`.
pub fn program(name: &str, ready: impl Fn(&PathBuf) -> bool) -> Option<PathBuf> {
    let dir = std::env::var_os("NIGHTSHIFT_PEERS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/peers"),
        PathBuf::from,
    );
    let path = dir.join("venv/bin").join(name);
    if ready(&path) {
        return Some(path);
    }
    let why = format!(
        "no usable {} (run scripts/llm-peers to set it up)",
        path.display()
    );
    if std::env::var("NIGHTSHIFT_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}
