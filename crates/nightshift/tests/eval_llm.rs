//! `nightshift eval rca --llm`: the investigator explains each fault's incident of a replayed
//! scenario, against the real local model (llama.cpp's server with SmolLM2-135M), and the
//! report sets its root causes, tokens and time beside the deterministic ranking's. The model is
//! tiny: what is asserted is the protocol and the bookkeeping, never the answer's quality.

mod common;

use common::{json_of, nightshift, temp_dir};

const SCENARIO: &str = "shop-bad-deploy-checkout";

#[test]
fn eval_rca_llm_needs_an_llm_section() {
    let out = nightshift(&["eval", "rca", "--llm", "--scenario", SCENARIO]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config FILE with an llm section"), "{err}");
}

#[test]
fn eval_rca_llm_reports_the_investigator_beside_the_ranking() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(model) = runtime.block_on(nightshift_testkit::process::start_local_model()) else {
        return;
    };
    let dir = temp_dir("eval-llm");
    let config = dir.join("nightshift.yaml");
    // One step, which must conclude: the incident's findings go in, a conclusion comes out.
    std::fs::write(
        &config,
        format!(
            "llm:\n  provider: openai-compatible\n  base_url: {}\n  model: smollm2\n  max_steps: 1\n  answer_tokens: 96\n  timeout: 10m\n  retries: 0\n  deadline: 10m\n",
            model.base
        ),
    )
    .unwrap();
    let report = json_of(&nightshift(&[
        "eval",
        "rca",
        "--llm",
        "--config",
        config.to_str().unwrap(),
        "--scenario",
        SCENARIO,
        "--json",
    ]));
    let inv = &report["investigator"];
    assert_eq!(inv["model"], "smollm2");
    assert_eq!(inv["faults"], 1);
    assert_eq!(inv["investigated"], 1, "{inv}");
    assert_eq!(inv["deterministic_ac_at_1"], report["ac_at_1"]);
    let case = &inv["per_case"][0];
    assert_eq!(case["target"], "checkout");
    assert_eq!(case["deterministic"], report["per_case"][0]["top"]);
    assert_eq!(case["llm_calls"], 1, "{case}");
    let tokens = case["tokens"].as_u64().unwrap();
    assert!(tokens > 0 && tokens <= 40_000, "{case}");
    assert!(case["seconds"].as_f64().unwrap() > 0.0);
    if case["accepted"] == true {
        assert!(!case["investigated"].as_str().unwrap().is_empty(), "{case}");
    } else {
        // Not accepted: the deterministic answer is shown, and the report says why.
        assert_eq!(case["investigated"], case["deterministic"], "{case}");
        assert!(
            case["note"].as_str().is_some_and(|n| !n.is_empty()),
            "{case}"
        );
    }
}
