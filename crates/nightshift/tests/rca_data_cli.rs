//! `nightshift rca` and `nightshift eval rca-data`: recorded cases ranked by the live ranking.

mod common;

use common::{nightshift, nightshift_json};

#[test]
fn petshop_all_68_issues_meet_the_top3_bar() {
    let Some(dir) = nightshift_testkit::data::shared("rca/petshop", "") else {
        return;
    };
    let v = nightshift_json(&[
        "eval",
        "rca-data",
        "--format",
        "petshop",
        "--json",
        dir.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(v["cases"], 68, "all 68 issues");
    let regimes = v["per_fault"].as_object().expect("per regime");
    assert_eq!(regimes.len(), 4, "{regimes:?}");
    let ac3 = v["ac_at_3"].as_f64().expect("ac_at_3");
    assert!(ac3 >= 0.6, "AC@3 {ac3}");
    assert!(
        v["reference"]["ac_at_3"].as_f64().is_some(),
        "the reference ran too"
    );
}

#[test]
fn a_wide_csv_case_is_ranked_and_bad_input_is_named() {
    let dir = std::env::temp_dir().join(format!("nightshift-rca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // front-end → carts → carts-db; carts-db's CPU saturates at t=1000, the latency follows.
    let mut csv =
        String::from("time,front-end_latency,carts_latency,carts-db_cpu,orders_latency\n");
    for t in 0..1200u32 {
        let wobble = f64::from(t % 7) * 0.001;
        let (fe, ca, db) = if t < 1000 {
            (0.1, 0.05, 0.2)
        } else {
            (0.6, 0.5, 0.95)
        };
        csv.push_str(&format!(
            "{t},{},{},{},{}\n",
            fe + wobble,
            ca + wobble,
            db + wobble,
            0.07 + wobble
        ));
    }
    let metrics = dir.join("data.csv");
    std::fs::write(&metrics, csv).expect("written");
    let graph = dir.join("graph.csv");
    std::fs::write(
        &graph,
        "caller,callee\nfront-end,carts\ncarts,carts-db\nfront-end,orders\n",
    )
    .expect("written");
    let v = nightshift_json(&[
        "rca",
        "--metrics",
        metrics.to_str().expect("UTF-8"),
        "--anomaly-start",
        "1000",
        "--graph",
        graph.to_str().expect("UTF-8"),
        "--json",
    ]);
    assert_eq!(v[0]["entity"]["name"], "carts-db", "{v:#}");
    assert!(
        v.as_array()
            .expect("ranking")
            .iter()
            .all(|h| h["entity"]["name"] != "orders"),
        "a healthy service is not ranked"
    );

    std::fs::write(&metrics, "time,a_cpu\n1,0.5\nnoon,0.7\n").expect("written");
    let bad = nightshift(&[
        "rca",
        "--metrics",
        metrics.to_str().expect("UTF-8"),
        "--anomaly-start",
        "1",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("line 3"), "names the line: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulated_scenarios_export_to_the_rcaeval_layout_and_rank() {
    let dir = std::env::temp_dir().join(format!("nightshift-rcaeval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.to_str().expect("UTF-8");
    let out = nightshift(&["demo", "--scenario", "all", "--export-rcaeval", dir_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let case = dir.join("postgres_dbsaturation/shop-db-saturation");
    assert!(case.join("data.csv").is_file() && case.join("inject_time.txt").is_file());
    let v = nightshift_json(&["eval", "rca-data", "--format", "rcaeval", "--json", dir_s]);
    let cases = v["cases"].as_u64().expect("cases");
    assert!(cases >= 10, "single-fault service scenarios: {cases}");
    assert!(
        v["per_fault"]["dbsaturation"]["ac_at_1"].as_f64() == Some(1.0),
        "{v:#}"
    );
    let ac3 = v["ac_at_3"].as_f64().expect("ac_at_3");
    assert!(ac3 >= 0.7, "AC@3 {ac3} on metrics alone");
    let _ = std::fs::remove_dir_all(&dir);
}
