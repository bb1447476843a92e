//! The command line as a user runs it: the demo, the evaluation and bad input.

mod common;

use common::{nightshift, nightshift_json};
use std::path::PathBuf;

fn scenarios_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .display()
        .to_string()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nightshift-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

const GOOD: &str = "name: tiny
seed: 3
duration: 40m
step: 15s
services:
  - {name: web, calls: [api], rps: 50}
  - {name: api, calls: [db]}
  - {name: db, kind: database}
faults:
  - {at: 20m, kind: db_saturation, target: db, duration: 10m}
";

fn expect_rejected(name: &str, yaml: &str, field: &str, problem: &str) {
    let path = temp_file(name, yaml);
    let out = nightshift(&["demo", "--scenario", path.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name} must be rejected");
    assert!(err.contains(name), "error names the file: {err}");
    assert!(err.contains(field), "error names the field {field}: {err}");
    assert!(err.contains(problem), "error says {problem}: {err}");
}

#[test]
fn bad_scenarios_are_rejected_naming_file_field_and_problem() {
    expect_rejected(
        "unknown-kind.yaml",
        &GOOD.replace("db_saturation", "meltdown"),
        "faults[0].kind",
        "meltdown",
    );
    expect_rejected(
        "undeclared-call.yaml",
        &GOOD.replace("calls: [db]", "calls: [db, cache]"),
        "calls",
        "cache",
    );
    expect_rejected(
        "bad-duration.yaml",
        &GOOD.replace("duration: 40m", "duration: forty"),
        "duration",
        "forty",
    );
}

#[test]
fn nonsense_speed_is_refused_with_a_hint() {
    let out = nightshift(&["demo", "--speed", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--speed 60"));
}

#[test]
fn demo_json_gives_incidents_with_ranked_evidence_and_records_them() {
    let path = temp_file("good.yaml", GOOD);
    let db = temp_file("demo.db", "");
    std::fs::remove_file(&db).expect("start without a database");
    let v = nightshift_json(&[
        "demo",
        "--scenario",
        path.to_str().expect("utf-8"),
        "--json",
        "--db",
        db.to_str().expect("utf-8"),
    ]);
    let incidents = v[0]["incidents"].as_array().expect("incidents array");
    assert!(!incidents.is_empty(), "the fault must open an incident");
    let h = &incidents[0]["hypotheses"][0];
    assert_eq!(
        h["entity"]["name"], "db",
        "the saturated database is the top hypothesis: {h}"
    );
    assert!(
        h["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["query"].is_string()))
    );
    assert!(
        std::fs::metadata(&db).is_ok_and(|m| m.len() > 0),
        "the database file was written"
    );
}

#[test]
fn eval_rca_meets_its_bars_on_the_built_in_scenarios() {
    let r = nightshift_json(&["eval", "rca", "--scenario", &scenarios_dir(), "--json"]);
    for key in [
        "cases",
        "ac_at_1",
        "ac_at_3",
        "avg_at_5",
        "mttd_seconds_median",
        "alerts",
        "incidents",
        "false_incidents",
        "compression",
    ] {
        assert!(r.get(key).is_some(), "report has {key}");
    }
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    assert!(f("ac_at_1") >= 0.85, "AC@1 {}", f("ac_at_1"));
    assert!(f("ac_at_3") >= 0.97, "AC@3 {}", f("ac_at_3"));
    assert!(
        f("ac_at_1")
            >= r["baselines"]["loudest_service"]["ac_at_1"]
                .as_f64()
                .unwrap_or(1.0)
                + 0.25
    );
    assert!(
        f("mttd_seconds_median") <= 120.0,
        "MTTD {}",
        f("mttd_seconds_median")
    );
    assert!(f("compression") >= 10.0, "compression {}", f("compression"));
    let g = |k: &str| r["grouping"][k].as_f64().unwrap_or(f64::NAN);
    assert!(g("purity") >= 0.95, "grouping purity {}", g("purity"));
    assert!(
        g("completeness") >= 0.9,
        "grouping completeness {}",
        g("completeness")
    );
    let quiet = r["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter(|s| s["faults"] == 0);
    for s in quiet {
        assert_eq!(
            s["false_incidents"], 0,
            "no incident in a quiet scenario: {s}"
        );
    }
}

#[test]
fn detect_finds_a_shift_in_a_csv_and_names_bad_lines() {
    let mut csv = String::from("timestamp,requests,errors\n");
    for i in 0..1200u64 {
        // Deterministic wiggle; requests jump by half at row 1000, errors stay flat.
        let wiggle = ((i * 7919) % 13) as f64 - 6.0;
        let requests = if i < 1000 { 200.0 } else { 300.0 } + wiggle;
        csv.push_str(&format!(
            "{},{requests},{}\n",
            1_700_000_000 + i * 60,
            1.0 + wiggle.abs() / 100.0
        ));
    }
    let path = temp_file("series.csv", &csv);
    let v = nightshift_json(&["detect", path.to_str().expect("utf-8"), "--json"]);
    let requests = &v.as_array().expect("one report per series")[0];
    assert_eq!(requests["series"], "requests");
    let starts: Vec<i64> = requests["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["start_ms"].as_i64())
        .collect();
    let shift = (1_700_000_000 + 1000 * 60) * 1000;
    assert!(
        starts
            .iter()
            .any(|s| (shift..shift + 10 * 60_000).contains(s)),
        "shift at {shift} found: {starts:?}"
    );
    assert!(
        requests["events"][0]["explanation"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );

    let bad = temp_file(
        "bad.csv",
        "timestamp,value\n1700000000,1\n1700000060,oops\n",
    );
    let out = nightshift(&["detect", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:3") && err.contains("oops"), "{err}");
}

#[test]
fn eval_rca_holds_on_generated_systems_nobody_tuned_for() {
    // A seed range outside the ones looked at during development.
    let r = nightshift_json(&[
        "eval",
        "rca",
        "--generated",
        "24",
        "--seed",
        "777000",
        "--json",
    ]);
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    assert!(f("cases") >= 15.0, "enough faults drawn: {}", f("cases"));
    assert!(f("ac_at_1") >= 0.75, "AC@1 {}", f("ac_at_1"));
    assert!(f("ac_at_3") >= 0.9, "AC@3 {}", f("ac_at_3"));
    assert!(
        f("mttd_seconds_median") <= 120.0,
        "MTTD {}",
        f("mttd_seconds_median")
    );
}

#[test]
fn detect_applies_per_series_rules_from_a_config_file() {
    let mut csv = String::from("timestamp,requests{job=\"web\"},requests{job=\"api\"}\n");
    for i in 0..1200u64 {
        let wiggle = ((i * 7919) % 13) as f64 - 6.0;
        let level = if i < 1000 { 200.0 } else { 300.0 } + wiggle;
        csv.push_str(&format!("{},{level},{level}\n", 1_700_000_000 + i * 60));
    }
    let path = temp_file("labelled.csv", &csv);
    // Every detector off for the web series only.
    let config = temp_file(
        "rules.yaml",
        "detect:\n  overrides:\n    - match: 'requests{job=\"web\"}'\n      off: [robust_baseline, seasonal, level_shift, volatility_shift, persist, trend, forecast_band, range_breach]\n",
    );
    let v = nightshift_json(&[
        "detect",
        path.to_str().expect("utf-8"),
        "--json",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let events = |i: usize| v[i]["events"].as_array().map_or(0, Vec::len);
    assert_eq!(v[0]["series"], "requests{job=\"web\"}");
    assert_eq!(events(0), 0, "the rule silenced the web series");
    assert!(events(1) > 0, "the api series is still watched");

    // A misspelt key is named with its line; a bad value with its rule.
    for (yaml, want) in [
        (
            "detect:\n  overrides:\n    - match: x\n      limt: 1\n",
            "rules-bad.yaml: line 4",
        ),
        (
            "detect:\n  overrides:\n    - match: x\n      off: [seasonl]\n",
            "override rule 1 (match: x): unknown detector 'seasonl'",
        ),
    ] {
        let bad = temp_file("rules-bad.yaml", yaml);
        let out = nightshift(&[
            "detect",
            path.to_str().expect("utf-8"),
            "--config",
            bad.to_str().expect("utf-8"),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn concurrent_faults_stay_apart_and_a_cascade_stays_one_incident() {
    let r = nightshift_json(&[
        "eval",
        "rca",
        "--scenario",
        "platform-concurrent-faults",
        "--scenario",
        "platform-cascading-faults",
        "--json",
    ]);
    // The cascade's crash loop is a consequence of its database fault: one case, not two.
    assert_eq!(r["cases"], 3, "two concurrent faults and one cascade");
    let g = &r["grouping"];
    assert!(g["alerts"].as_u64().is_some_and(|n| n > 0), "{g}");
    let v = |k: &str| g[k].as_f64().unwrap_or(f64::NAN);
    assert!(v("purity") >= 0.95, "grouping purity {g}");
    assert!(v("completeness") >= 0.9, "grouping completeness {g}");
    for s in r["scenarios"].as_array().expect("scenarios") {
        let c = &s["grouping"];
        let n = |k: &str| c[k].as_u64().expect(k);
        assert!(
            n("pure") <= n("grouped") && n("grouped") <= n("fault_alerts"),
            "{c}"
        );
        assert!(n("complete") <= n("fault_alerts"), "{c}");
        // One incident per fault: the concurrent pair is split, the cascade is not.
        assert_eq!(s["incidents"], s["faults"], "{s}");
    }
    let cascade = r["per_case"]
        .as_array()
        .expect("per_case")
        .iter()
        .find(|c| c["scenario"] == "platform-cascading-faults")
        .expect("the cascade's case");
    assert_eq!(
        cascade["top"], "orders-db",
        "the database, not the louder crash loop it caused: {cascade}"
    );
}
