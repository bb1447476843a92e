//! `nightshift eval nab` as a user runs it: on the NAB corpus, on another detector's results and
//! on broken input.

mod common;

use common::{json_of, nightshift};
use std::path::{Path, PathBuf};

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn eval_nab_json_reports_every_profile_file_and_the_throughput() {
    let Some(dir) = nightshift_testkit::data::nab() else {
        return;
    };
    let r = json_of(&nightshift(&[
        "eval",
        "nab",
        "--data",
        utf8(&dir),
        "--json",
    ]));
    for key in [
        "standard",
        "reward_low_FP_rate",
        "reward_low_FN_rate",
        "files",
        "thresholds",
        "points",
        "points_per_second",
    ] {
        assert!(r.get(key).is_some(), "report has {key}: {r}");
    }
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        let score = r[profile].as_f64().unwrap_or(f64::NAN);
        assert!(score.is_finite(), "{profile}: {score}");
        assert!(
            r["thresholds"][profile]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{profile} threshold"
        );
    }
    let files = r["files"].as_array().expect("files array");
    assert_eq!(files.len(), 34);
    let rows: u64 = files.iter().filter_map(|f| f["rows"].as_u64()).sum();
    assert_eq!(r["points"].as_u64(), Some(rows));
    assert!(files.iter().all(|f| f["standard"]["raw"].is_f64()));
    assert!(
        r["points_per_second"]
            .as_f64()
            .is_some_and(|p| p.is_finite() && p > 0.0)
    );
    // The bars: NAB standard 65 and low-FP 60 (the published best detectors score 70–75 on the whole corpus).
    for (profile, bar) in [("standard", 65.0), ("reward_low_FP_rate", 60.0)] {
        let score = r[profile].as_f64().unwrap_or(f64::NAN);
        assert!(score >= bar, "{profile}: {score} is under the bar of {bar}");
    }
    println!(
        "nightshift on NAB: standard {}, low FP {}, low FN {}; {} points/s",
        r["standard"], r["reward_low_FP_rate"], r["reward_low_FN_rate"], r["points_per_second"]
    );
}

#[test]
fn numenta_results_score_their_published_figure() {
    let Some(dir) = nightshift_testkit::data::nab() else {
        return;
    };
    let results = dir.join("reference_results/numenta");
    let r = json_of(&nightshift(&[
        "eval",
        "nab",
        "--data",
        utf8(&dir),
        "--results",
        utf8(&results),
        "--json",
    ]));
    let standard = r["standard"].as_f64().unwrap_or(f64::NAN);
    println!(
        "Numenta HTM via --results: standard {standard}, low FP {}, low FN {}, thresholds {}",
        r["reward_low_FP_rate"], r["reward_low_FN_rate"], r["thresholds"]
    );
    assert!(
        (standard - 73.6).abs() <= 0.1,
        "NAB publishes 73.6 for Numenta HTM on this subset; got {standard}"
    );
    assert!(r["points_per_second"].is_null(), "no detector ran");
}

/// A two-file NAB folder; `edit` may break it.
fn tiny_nab(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nightshift-nab-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data/cat")).expect("temp dir");
    std::fs::create_dir_all(dir.join("labels")).expect("temp dir");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..200 {
        let v = if (120..125).contains(&i) { 50.0 } else { 10.0 };
        csv.push_str(&format!("2020-01-01 {:02}:{:02}:00,{v}\n", i / 60, i % 60));
    }
    std::fs::write(dir.join("data/cat/a.csv"), &csv).expect("write");
    std::fs::write(dir.join("data/cat/b.csv"), &csv).expect("write");
    std::fs::write(
        dir.join("labels/combined_windows.json"),
        r#"{
    "cat/a.csv": [["2020-01-01 01:55:00.000000", "2020-01-01 02:10:00.000000"]],
    "cat/b.csv": []
}"#,
    )
    .expect("write");
    edit(&dir);
    dir
}

fn expect_error(dir: &Path, extra: &[&str], needles: &[&str]) {
    let mut args = vec!["eval", "nab", "--data", utf8(dir)];
    args.extend_from_slice(extra);
    let out = nightshift(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    for n in needles {
        assert!(err.contains(n), "error mentions {n}: {err}");
    }
}

#[test]
fn a_tiny_corpus_scores_and_broken_input_is_named_by_file_and_line() {
    let good = tiny_nab("good", |_| {});
    let r = json_of(&nightshift(&[
        "eval",
        "nab",
        "--data",
        utf8(&good),
        "--json",
    ]));
    assert!(r["standard"].as_f64().is_some_and(f64::is_finite));
    let text = nightshift(&["eval", "nab", "--data", utf8(&good)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("reward_low_FN_rate"));

    let bad_number = tiny_nab("number", |d| {
        let p = d.join("data/cat/b.csv");
        let csv = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, csv.replacen(",10\n", ",ten\n", 3)).expect("write");
    });
    expect_error(&bad_number, &[], &["cat/b.csv:2:", "ten", "not a number"]);

    let no_column = tiny_nab("column", |d| {
        let p = d.join("data/cat/a.csv");
        let csv = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, csv.replacen("timestamp,value", "time,value", 1)).expect("write");
    });
    expect_error(&no_column, &[], &["cat/a.csv:1:", "`timestamp`"]);

    let unknown = tiny_nab("unknown", |d| {
        std::fs::write(
            d.join("labels/combined_windows.json"),
            "{\n  \"cat/a.csv\": [],\n  \"cat/zz.csv\": []\n}",
        )
        .expect("write");
    });
    expect_error(&unknown, &[], &["combined_windows.json:3:", "cat/zz.csv"]);

    let off_grid = tiny_nab("window", |d| {
        std::fs::write(
            d.join("labels/combined_windows.json"),
            r#"{"cat/a.csv": [["2020-01-01 01:55:30", "2020-01-01 02:10:00"]]}"#,
        )
        .expect("write");
    });
    expect_error(
        &off_grid,
        &[],
        &["combined_windows.json:1:", "no row's timestamp"],
    );

    // Another detector's results: a missing file, then one with an unreadable score.
    let results = good.join("results");
    std::fs::create_dir_all(results.join("cat")).expect("dir");
    let mut scores = String::from("timestamp,value,anomaly_score\n");
    for i in 0..200 {
        let s = if i == 121 { 0.9 } else { 0.1 };
        scores.push_str(&format!(
            "2020-01-01 {:02}:{:02}:00,1,{s}\n",
            i / 60,
            i % 60
        ));
    }
    std::fs::write(results.join("cat/peer_a.csv"), &scores).expect("write");
    expect_error(
        &good,
        &["--results", utf8(&results)],
        &["no results for cat/b.csv"],
    );
    std::fs::write(
        results.join("cat/peer_b.csv"),
        scores.replace(",1,0.9", ",1,"),
    )
    .expect("write");
    expect_error(
        &good,
        &["--results", utf8(&results)],
        &["peer_b.csv:123:", "anomaly_score"],
    );
    std::fs::write(results.join("cat/peer_b.csv"), &scores).expect("write");
    let r = json_of(&nightshift(&[
        "eval",
        "nab",
        "--data",
        utf8(&good),
        "--results",
        utf8(&results),
        "--json",
    ]));
    // a's only window is caught early; b's lone alarm, before any window, costs A_FP.
    assert!(r["standard"].as_f64().is_some_and(|s| s > 50.0), "{r}");

    for d in [good, bad_number, no_column, unknown, off_grid] {
        let _ = std::fs::remove_dir_all(d);
    }
}
