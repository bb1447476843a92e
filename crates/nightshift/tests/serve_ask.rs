//! `POST /api/v1/ask`, `GET /api/v1/incidents/{id}/explanation` and the `ask` and `explain`
//! commands: answered from the store without an LLM, citing evidence that exists; and with the
//! real local model (llama.cpp's server) as the investigator, end to end through `serve`.

mod common;

use common::{
    checkout_incident_after_deploy, free_port, get, http, nightshift, nightshift_json,
    start_nightshift_with, temp_dir,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// Every evidence id the stored incident carries.
fn incident_evidence(ns: u16, id: &str) -> BTreeSet<String> {
    let (_, body) = get(ns, &format!("/api/v1/incidents/{id}"));
    let v: Value = serde_json::from_str(&body).expect("JSON");
    v["hypotheses"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|h| h["evidence"].as_array().into_iter().flatten())
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

fn ask(ns: u16, question: &str) -> Value {
    let body = serde_json::json!({ "question": question }).to_string();
    let (code, answer) = http(ns, "POST", "/api/v1/ask", &JSON, body.as_bytes());
    assert_eq!(code, 200, "{answer}");
    serde_json::from_str(&answer).expect("JSON")
}

#[test]
fn questions_and_explanations_without_an_llm_cite_evidence_that_exists() {
    let dir = temp_dir("serve-ask");
    let ns = free_port();
    let _nightshift = start_nightshift_with(&dir, ns, "");
    let id = checkout_incident_after_deploy(ns, "");
    let known = incident_evidence(ns, &id);
    assert!(!known.is_empty());

    let why = ask(ns, "Why is checkout failing?");
    assert_eq!(why["source"], "deterministic");
    assert_eq!(why["entities"], serde_json::json!(["checkout"]));
    assert_eq!(why["incidents"][0], id.as_str());
    let answer = why["answer"].as_str().unwrap();
    assert!(answer.contains(&id), "{answer}");
    for e in why["evidence"].as_array().unwrap() {
        let cited = e["id"].as_str().unwrap();
        if let Some(ev) = cited.strip_prefix(&format!("{id}/")) {
            assert!(known.contains(ev), "{cited} is not in the incident");
        }
    }
    assert!(answer.contains("deploy of checkout (v2.4.1)"), "{answer}");

    let changed = ask(ns, "what changed in checkout in the last hour?");
    let answer = changed["answer"].as_str().unwrap();
    assert!(answer.contains("deploy of checkout (v2.4.1)"), "{answer}");
    assert!(
        changed["evidence"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("change-")
    );
    let nothing = ask(ns, "what changed in payments in the last 5 minutes?");
    assert!(
        nothing["answer"]
            .as_str()
            .unwrap()
            .contains("names no known service")
    );

    let (code, body) = get(ns, &format!("/api/v1/incidents/{id}/explanation"));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let c = &v["conclusion"];
    assert_eq!(c["source"], "deterministic");
    assert_eq!(c["root_cause"], "checkout");
    assert!(v.get("investigation").is_none());
    let cited: Vec<&str> = c["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!cited.is_empty());
    assert!(
        cited.iter().all(|e| known.contains(*e)),
        "{cited:?} vs {known:?}"
    );

    // Bad requests are named.
    for (body, needle) in [
        (&b"{}"[..], "question"),
        (&b"{\"question\": \"  \"}"[..], "1 to 2000 bytes"),
        (&b"not json"[..], "the body must be"),
    ] {
        let (code, answer) = http(ns, "POST", "/api/v1/ask", &JSON, body);
        assert_eq!(code, 400, "{answer}");
        assert!(answer.contains(needle), "{answer}");
    }
    assert_eq!(get(ns, "/api/v1/incidents/inc-none/explanation").0, 404);
    assert_eq!(
        get(ns, &format!("/api/v1/incidents/{id}/explanation?llm=maybe")).0,
        400
    );

    // The client commands.
    let server = format!("http://127.0.0.1:{ns}");
    let out = nightshift(&["ask", "why is checkout failing?", "--server", &server]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id) && text.contains("evidence:"), "{text}");
    assert!(text.contains("deterministic"), "{text}");
    let out = nightshift(&["explain", &id, "--server", &server]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("root cause checkout"));
    let out = nightshift(&["explain", "inc-none", "--server", &server]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = nightshift(&["ask", "why?", "--server", "http://127.0.0.1:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `nightshift serve` running"));
}

#[test]
fn the_real_local_model_investigates_through_serve_within_its_budget() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(model) = runtime.block_on(nightshift_testkit::process::start_local_model()) else {
        return;
    };
    let dir = temp_dir("serve-ask-llm");
    let ns = free_port();
    let _nightshift = start_nightshift_with(
        &dir,
        ns,
        &format!(
            // One step, which must conclude, and short answers: llama.cpp's server is slow to
            // let a model choose between tools, and to constrain long answers, on a loaded
            // 2-core machine. The deadline only bounds the test.
            "llm:\n  provider: openai-compatible\n  base_url: {}\n  model: smollm2\n  max_steps: 1\n  max_tokens: 6000\n  answer_tokens: 96\n  deadline: 10m\n",
            model.base
        ),
    );
    let id = checkout_incident_after_deploy(ns, "");
    let known = incident_evidence(ns, &id);

    // Through the client command: an investigation may take longer than a plain request.
    let server = format!("http://127.0.0.1:{ns}");
    let explain = || nightshift_json(&["explain", &id, "--server", &server, "--json"]);
    let v = explain();
    let inv = &v["investigation"];
    assert_eq!(inv["llm_calls"], 1, "{v}");
    let usage = &inv["usage"];
    let tokens =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert!(tokens <= 6000, "{tokens}");
    let c = &v["conclusion"];
    let tool_ids: BTreeSet<String> = inv["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["evidence_id"].as_str().map(str::to_string))
        .collect();
    // Whatever the tiny model said: its conclusion cites only what exists, or the
    // deterministic one is shown with the reason.
    match c["source"].as_str() {
        Some("llm") => {
            for e in c["evidence"].as_array().unwrap() {
                let e = e.as_str().unwrap();
                assert!(
                    known.contains(e) || tool_ids.contains(e),
                    "{e} was invented: {v}"
                );
            }
        }
        _ => {
            assert_eq!(c["root_cause"], "checkout");
            assert!(c["note"].as_str().is_some(), "{v}");
        }
    }
    // Asking again is served from the cache of this incident revision.
    let again = explain();
    assert_eq!(again["investigation"]["cached"], true);
    assert_eq!(again["conclusion"], v["conclusion"]);

    let a = nightshift_json(&[
        "ask",
        "why is checkout failing?",
        "--server",
        &server,
        "--json",
    ]);
    assert_eq!(a["investigation"]["llm_calls"], 1, "{a}");
    assert!(!a["answer"].as_str().unwrap().is_empty());
}

/// The first evidence id (`ev-N`) in `text`.
fn first_evidence_id(text: &str) -> Option<String> {
    text.match_indices("ev-").find_map(|(at, _)| {
        let digits: String = text[at + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (!digits.is_empty()).then(|| format!("ev-{digits}"))
    })
}

/// An OpenAI-compatible stand-in that concludes at once (`root_cause`, `action`), citing the
/// first evidence id of what it was shown, and keeps every request in `requests`; its port.
fn concluding_model(requests: Arc<Mutex<Vec<Value>>>, root_cause: &str, action: &str) -> u16 {
    use axum::routing::post;
    let (root_cause, action) = (root_cause.to_string(), action.to_string());
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |axum::Json(body): axum::Json<Value>| {
            let (seen, root_cause, action) = (requests.clone(), root_cause.clone(), action.clone());
            async move {
                let text = body["messages"].to_string();
                seen.lock().unwrap().push(body);
                let evidence = first_evidence_id(&text).unwrap_or_default();
                let args = serde_json::json!({"root_cause": root_cause, "cause": "bad deploy",
                    "summary": "the deploy broke checkout", "confidence": 0.8,
                    "action": action, "evidence": [evidence]});
                axum::Json(serde_json::json!({
                    "choices": [{"message": {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "conclude", "arguments": args.to_string()}}]},
                        "finish_reason": "tool_calls"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20}
                }))
            }
        }),
    );
    common::serve_stand_in(router)
}

#[test]
fn an_incident_is_investigated_once_when_it_opens_and_the_explanation_reuses_it() {
    let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
    let llm_port = concluding_model(calls.clone(), "checkout", "roll back checkout");

    let dir = temp_dir("serve-on-open");
    let ns = free_port();
    let llm = format!(
        "llm:\n  provider: openai-compatible\n  base_url: http://127.0.0.1:{llm_port}/v1\n  model: scripted\n  investigate_on_open: true\n  settle: 1s\n"
    );
    let nightshift = start_nightshift_with(&dir, ns, &llm);
    let id = checkout_incident_after_deploy(ns, "");
    let investigated = common::wait_for(std::time::Duration::from_secs(30), || {
        let page = get(ns, "/metrics").1;
        common::metric(&page, r#"nightshift_investigations_total{source="llm"}"#)
            .filter(|n| *n >= 1.0)
    });
    assert_eq!(
        investigated,
        Some(1.0),
        "{}",
        get(ns, &format!("/api/v1/incidents/{id}/explanation")).1
    );
    assert_eq!(calls.lock().unwrap().len(), 1, "one model call, unasked");

    // The explanation shows that conclusion without calling the model again.
    let (code, body) = get(ns, &format!("/api/v1/incidents/{id}/explanation"));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["conclusion"]["source"], "llm", "{v}");
    assert_eq!(v["conclusion"]["action"], "roll back checkout");
    assert_eq!(v["investigation"]["cached"], true, "{v}");
    assert_eq!(calls.lock().unwrap().len(), 1, "the explanation reused it");
    let cited = v["conclusion"]["evidence"][0].as_str().unwrap_or_default();
    assert!(incident_evidence(ns, &id).contains(cited), "{v}");

    // The day's spend (the stand-in counts 120 tokens a call) is kept across a restart: a
    // restart does not grant a fresh daily budget.
    let spent = |ns| common::metric(&get(ns, "/metrics").1, "nightshift_llm_tokens_today");
    assert_eq!(spent(ns), Some(120.0));
    drop(nightshift);
    let ns = free_port();
    let _nightshift = start_nightshift_with(&dir, ns, &llm);
    assert_eq!(spent(ns), Some(120.0), "restored from the store");
}

#[test]
fn a_secret_in_a_log_line_is_redacted_in_the_store_and_in_the_prompt() {
    let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
    let llm_port = concluding_model(requests.clone(), "checkout", "look at the database");
    let dir = temp_dir("serve-redact");
    let ns = free_port();
    let _nightshift = start_nightshift_with(
        &dir,
        ns,
        &format!(
            "llm:\n  provider: openai-compatible\n  base_url: http://127.0.0.1:{llm_port}/v1\n  model: scripted\n"
        ),
    );
    let id = checkout_incident_after_deploy(ns, "");

    // The checkout service logs its database's password, a connection string with
    // credentials, a JWT and a cloud key.
    let secrets = [
        "hunter2pw",
        "s3cr3tDbPass",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaGVja291dCJ9.c2lnbmF0dXJlLXNpZ24",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    let now = jiff::Timestamp::now().as_nanosecond();
    let lines: Vec<Value> = (0..6)
        .map(|i| {
            serde_json::json!([
                (now + i).to_string(),
                format!(
                    "ERROR cannot reach the database (password={} dsn=postgres://shop:{}@db:5432/orders Authorization: Bearer {} aws {}) attempt {i}",
                    secrets[0], secrets[1], secrets[2], secrets[3]
                )
            ])
        })
        .collect();
    let push = serde_json::json!({"streams": [{"stream": {"app": "checkout"}, "values": lines}]})
        .to_string();
    assert_eq!(
        http(ns, "POST", "/loki/api/v1/push", &JSON, push.as_bytes()).0,
        204
    );
    // The log pattern reaches the incident as evidence, its secrets replaced.
    let incident = common::wait_for(std::time::Duration::from_secs(30), || {
        let (_, body) = get(ns, &format!("/api/v1/incidents/{id}"));
        body.contains("cannot reach the database").then_some(body)
    })
    .expect("the log pattern joins the checkout incident");
    assert!(incident.contains("REDACTED"), "{incident}");

    let (code, explained) = get(ns, &format!("/api/v1/incidents/{id}/explanation"));
    assert_eq!(code, 200, "{explained}");
    let prompts: Vec<String> = requests
        .lock()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert!(!prompts.is_empty(), "the model was asked");
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("cannot reach the database")),
        "the log evidence was in the prompt"
    );
    // Nothing that was kept or sent holds a secret: the API, the prompt, the database files.
    let mut kept = vec![incident, explained];
    kept.extend(prompts);
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("nightshift.db") {
            kept.push(String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).to_string());
        }
    }
    for text in &kept {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} was kept or sent");
        }
    }
}
