//! `nightshift eval logs` on Loghub's labelled samples, when they are beside the repository.

use std::process::Command;

#[test]
fn eval_logs_meets_the_grouping_bar_with_one_configuration() {
    let Some(dir) = nightshift_testkit::data::shared("loghub2k", "") else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["eval", "logs", "--json", "--raw", "--data"])
        .arg(&dir)
        .output()
        .expect("the nightshift binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let systems = v["systems"].as_object().expect("systems");
    assert_eq!(systems.len(), 8, "the eight systems of loghub2k");
    let mean_ga = v["mean_ga"].as_f64().expect("mean_ga");
    let raw = v["raw"]["mean_ga"].as_f64().expect("raw.mean_ga");
    assert!(raw > 0.8, "GA on raw lines with headers cut: {raw}");
    assert!(mean_ga >= 0.92, "mean GA {mean_ga}");
    for (name, s) in systems {
        for key in ["ga", "pa", "f1", "lines_per_s"] {
            assert!(s[key].as_f64().is_some(), "{name}.{key}");
        }
    }

    let missing = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["eval", "logs", "--data", "/nonexistent"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent"));
}
