//! The MCP server, driven by a real MCP client (the official Python SDK, PyPI's `mcp`): over
//! streamable HTTP at `/mcp`, on both the 2026-07-28 protocol and the older initialize
//! handshake, and over standard input and output through `nightshift mcp`.

mod common;

use common::{checkout_incident_after_deploy, free_port, start_nightshift_with, temp_dir};
use serde_json::Value;
use std::process::Command;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");

/// Runs the Python client; its printed JSON.
fn client(python: &std::path::Path, mode: &str, incident: &str, target: &[&str]) -> Value {
    let out = Command::new(python)
        .arg(CLIENT)
        .args([mode, incident])
        .args(target)
        .output()
        .expect("the MCP client runs");
    assert!(
        out.status.success(),
        "the MCP client failed ({mode} {target:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the MCP client printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What every transport and protocol version must answer alike.
fn check(answer: &Value, incident: &str) {
    assert_eq!(answer["server_name"], "nightshift", "{answer}");
    assert!(
        answer["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("read-only")),
        "{answer}"
    );
    let tools: Vec<&str> = answer["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in [
        "ask",
        "get_anomalies",
        "get_changes",
        "get_incident",
        "get_topology",
        "search_past_incidents",
    ] {
        assert!(tools.contains(&tool), "{tool} missing from {tools:?}");
    }
    // Neither Prometheus nor Loki is configured: their tools are not offered.
    assert!(
        !tools
            .iter()
            .any(|t| t.starts_with("promql") || t.starts_with("loki"))
    );
    assert_eq!(answer["read_only"], true);
    assert_eq!(answer["schemas"]["get_incident"]["required"][0], "id");

    assert!(answer["topology"].is_object(), "{answer}");
    assert_eq!(answer["incident"]["is_error"], false);
    assert_eq!(answer["incident"]["value"]["id"], incident);
    assert!(
        !answer["incident"]["value"]["hypotheses"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(answer["ask"]["is_error"], false);
    assert_eq!(answer["ask"]["value"]["source"], "deterministic");
    assert_eq!(answer["ask"]["value"]["incidents"][0], incident);

    // The change's secret never leaves the process; the change itself does.
    let changes = answer["changes"].as_str().unwrap();
    assert!(changes.contains("v2.4.1"), "{changes}");
    assert!(!changes.contains("hunter2"), "{changes}");

    assert_eq!(answer["missing_incident"]["is_error"], true);
    assert!(
        answer["missing_incident"]["text"]
            .as_str()
            .unwrap()
            .contains("no incident \"inc-9999\""),
        "{answer}"
    );
    assert_eq!(answer["ask_without_question"]["is_error"], true);
    assert!(
        answer["unknown_tool"]
            .as_str()
            .unwrap()
            .contains("no tool \"rm_rf\""),
        "{answer}"
    );

    let resources: Vec<&str> = answer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        resources.contains(&"nightshift://topology"),
        "{resources:?}"
    );
    let uri = format!("nightshift://incidents/{incident}");
    assert!(resources.contains(&uri.as_str()), "{resources:?}");
    assert_eq!(answer["templates"][0], "nightshift://incidents/{id}");
    assert_eq!(answer["resource"]["id"], incident);
    assert_eq!(answer["resource_mime"], "application/json");
    assert!(
        answer["missing_resource"]
            .as_str()
            .unwrap()
            .contains("no incident \"inc-9999\""),
        "{answer}"
    );
}

#[test]
fn a_real_mcp_client_investigates_over_http_and_stdio() {
    let Some(python) = nightshift_testkit::peers::python() else {
        return;
    };
    let dir = temp_dir("serve-mcp");
    let ns = free_port();
    let _nightshift = start_nightshift_with(&dir, ns, "");
    let incident = checkout_incident_after_deploy(
        ns,
        "rolled out with DB_PASSWORD=hunter2 in the environment",
    );

    let url = format!("http://127.0.0.1:{ns}/mcp");
    let modern = client(&python, "auto", &incident, &["http", &url]);
    check(&modern, &incident);
    let legacy = client(&python, "legacy", &incident, &["http", &url]);
    check(&legacy, &incident);
    assert_ne!(
        modern["protocol_version"], legacy["protocol_version"],
        "both protocol generations are exercised"
    );

    let server = format!("http://127.0.0.1:{ns}");
    let stdio = client(
        &python,
        "auto",
        &incident,
        &[
            "stdio",
            env!("CARGO_BIN_EXE_nightshift"),
            "mcp",
            "--server",
            &server,
        ],
    );
    check(&stdio, &incident);
}

#[test]
fn nightshift_mcp_says_when_no_server_answers() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["mcp", "--server", &format!("http://127.0.0.1:{port}")])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("nightshift mcp runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is `nightshift serve` running there?"),
        "{err}"
    );
}
