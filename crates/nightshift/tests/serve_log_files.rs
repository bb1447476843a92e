//! `nightshift serve` following a log file as `tail -F` does: new lines only, through a rotation
//! (the rest of the old file, then the new one from its start), with each line's message and
//! level.

mod common;

use common::{free_port, get, metric, start_nightshift_with, temp_dir, wait_for};
use std::io::Write;
use std::time::Duration;

fn append(path: &std::path::Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the log");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

fn followed(ns: u16) -> Option<f64> {
    metric(
        &get(ns, "/metrics").1,
        r#"nightshift_ingest_otlp_items_total{signal="file_logs"}"#,
    )
}

#[test]
fn a_log_file_is_followed_across_rotation() {
    let dir = temp_dir("serve-tail");
    let log = dir.join("app.log");
    append(&log, &["old line one", "old line two"]);
    let ns = free_port();
    let _nightshift = start_nightshift_with(
        &dir,
        ns,
        &format!(
            "logs:\n  files:\n    - {{path: {}, service: checkout}}\n",
            log.display()
        ),
    );
    std::thread::sleep(Duration::from_millis(600));
    append(
        &log,
        &[
            r#"{"level":"error","msg":"payment declined for order 17"}"#,
            "level=warn msg=\"slow query\" took=3s",
            "INFO request served in 12ms",
        ],
    );
    assert_eq!(
        wait_for(Duration::from_secs(10), || followed(ns)
            .filter(|n| *n >= 3.0)),
        Some(3.0),
        "the lines written before start are skipped, the three new ones read"
    );
    // Rotation: the old file moves away (and gets one last line), a new one takes its place.
    std::fs::rename(&log, dir.join("app.log.1")).expect("rotate");
    append(&dir.join("app.log.1"), &["last line of the old file"]);
    append(
        &log,
        &["first line of the new file", "second line of the new file"],
    );
    assert_eq!(
        wait_for(Duration::from_secs(10), || followed(ns)
            .filter(|n| *n >= 6.0)),
        Some(6.0)
    );
}
