//! `serve.auth`: every route checks the scope its OpenAPI operation names (401 without a
//! credential, with `WWW-Authenticate`; 403 with the wrong scope), tokens and basic-auth users
//! name who acts, a non-loopback listener without credentials refuses to start, and the CLI's
//! client commands pass a token.

mod common;

use common::{Running, free_port, http, start_nightshift_serving, temp_dir, wait_for};
use nightshift_testkit::process::http_full;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKENS: [(&str, &str); 5] = [
    ("ingester", "ingest-token-0123456789"),
    ("reader", "read-token-0123456789ab"),
    ("asker", "ask-token-0123456789abc"),
    ("acter", "act-token-0123456789abcd"),
    ("root", "admin-token-0123456789ab"),
];

fn token_of(name: &str) -> &'static str {
    TOKENS.iter().find(|(n, _)| *n == name).expect("a token").1
}

fn bearer(name: &str) -> String {
    format!("Bearer {}", token_of(name))
}

/// `serve.auth` with one token per scope and a basic-auth user (lines under `serve:`).
fn auth_keys() -> String {
    let scopes = ["ingest", "read", "ask", "act", "admin"];
    let mut c = String::from("  auth:\n    tokens:\n");
    for ((name, token), scope) in TOKENS.iter().zip(scopes) {
        c.push_str(&format!(
            "      - {{name: {name}, token: {token}, scopes: [{scope}]}}\n"
        ));
    }
    c.push_str(&format!(
        "    basic_auth_users:\n      alice: '{}'\n",
        bcrypt::hash("correct horse", 4).expect("a hash")
    ));
    c
}

/// A server with [`auth_keys`]; `acter` and `root` approve.
fn start(dir: &std::path::Path, port: u16) -> Running {
    start_nightshift_serving(
        dir,
        port,
        &auth_keys(),
        "act:\n  approvers:\n    - {name: acter, max_risk: high}\n    - {name: root, max_risk: high}\n",
    )
}

/// Every documented operation: what it answers without a credential and with each scope.
#[test]
fn every_route_checks_the_scope_its_operation_names() {
    let dir = temp_dir("serve-auth-matrix");
    let port = free_port();
    let _ns = start(&dir, port);
    let (code, doc) = http(
        port,
        "GET",
        "/openapi.json",
        &[("Authorization", &bearer("reader"))],
        b"",
    );
    assert_eq!(code, 200, "{doc}");
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let method = method.to_uppercase();
            let path = path.replace("{id}", "x1");
            let scope = op["x-nightshift-scope"].as_str().expect("a scope");
            let json = ("Content-Type", "application/json");
            // No credential.
            let (code, head, body) = http_full(port, &method, &path, &[json], b"{}");
            match scope {
                "open" => assert_eq!(code, 200, "{method} {path}: {body}"),
                // Their own secrets: none configured here, so the hook is not served.
                "own-secret" => assert_eq!(code, 404, "{method} {path}: {body}"),
                _ => {
                    assert_eq!(code, 401, "{method} {path}: {body}");
                    assert!(
                        head.to_ascii_lowercase()
                            .contains("www-authenticate: bearer realm=\"nightshift\""),
                        "{method} {path}: {head}"
                    );
                    assert!(
                        head.to_ascii_lowercase()
                            .contains("www-authenticate: basic"),
                        "{head}"
                    );
                    // A token nobody was given is as good as none.
                    let wrong = [("Authorization", "Bearer not-a-token-0123456789"), json];
                    assert_eq!(http(port, &method, &path, &wrong, b"{}").0, 401);
                }
            }
            if matches!(scope, "open" | "own-secret") {
                checked += 1;
                continue;
            }
            for (name, _) in TOKENS {
                let allowed = name == "root"
                    || (scope == "ingest" && name == "ingester")
                    || (scope == "read" && name == "reader")
                    || (scope == "ask" && name == "asker")
                    || (scope == "act" && name == "acter");
                let auth = bearer(name);
                let (code, body) = http(
                    port,
                    &method,
                    &path,
                    &[("Authorization", &auth), json],
                    b"{}",
                );
                if allowed {
                    assert!(
                        code != 401 && code != 403 && code != 0,
                        "{name} on {method} {path}: {code} {body}"
                    );
                } else {
                    assert_eq!(code, 403, "{name} on {method} {path}: {body}");
                    assert!(body.contains(scope), "{body}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked} operations");
    // What the refusals were, counted.
    let (_, page) = http(
        port,
        "GET",
        "/metrics",
        &[("Authorization", &bearer("reader"))],
        b"",
    );
    assert!(
        common::metric(&page, "nightshift_http_denied_requests_total").is_some(),
        "{page}"
    );
}

#[test]
fn scopes_decide_what_each_token_may_do() {
    let dir = temp_dir("serve-auth-scopes");
    let port = free_port();
    let _ns = start(&dir, port);
    let get_as = |name: &str, path: &str| {
        http(port, "GET", path, &[("Authorization", &bearer(name))], b"").0
    };
    assert_eq!(get_as("reader", "/api/v1/incidents"), 200);
    assert_eq!(get_as("ingester", "/api/v1/incidents"), 403);
    assert_eq!(common::get(port, "/api/v1/incidents").0, 401);
    assert_eq!(common::get(port, "/healthz").0, 200);
    assert_eq!(common::get(port, "/metrics").0, 401);
    let json = ("Content-Type", "application/json");
    assert_eq!(
        http(port, "POST", "/api/v1/alerts/alertmanager", &[json], b"{}").0,
        401
    );
    let ask = br#"{"question": "what is wrong?", "llm": false}"#;
    let (code, _) = http(
        port,
        "POST",
        "/api/v1/ask",
        &[("Authorization", &bearer("reader")), json],
        ask,
    );
    assert_eq!(code, 403);
    let (code, body) = http(
        port,
        "POST",
        "/api/v1/ask",
        &[("Authorization", &bearer("asker")), json],
        ask,
    );
    assert_eq!(code, 200, "{body}");

    // Basic auth: alice reads with her password, not with another.
    use base64::Engine;
    let basic = |p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{p}"))
        )
    };
    let alice = basic("correct horse");
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/incidents",
            &[("Authorization", &alice)],
            b""
        )
        .0,
        200
    );
    let wrong = basic("battery staple");
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/incidents",
            &[("Authorization", &wrong)],
            b""
        )
        .0,
        401
    );

    // Who acknowledges is who authenticated, whatever the body says.
    let alert = br#"[{"labels": {"alertname": "CheckoutErrorsHigh", "service": "checkout", "severity": "critical"}}]"#;
    let (code, body) = http(
        port,
        "POST",
        "/api/v1/alerts",
        &[("Authorization", &bearer("ingester")), json],
        alert,
    );
    assert_eq!(code, 200, "{body}");
    let id = wait_for(Duration::from_secs(30), || {
        let (_, body) = http(
            port,
            "GET",
            "/api/v1/incidents?status=open",
            &[("Authorization", &bearer("reader"))],
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v[0]["id"].as_str().map(str::to_string)
    })
    .expect("an incident opened");
    let (code, body) = http(
        port,
        "POST",
        &format!("/api/v1/incidents/{id}/acknowledge"),
        &[("Authorization", &bearer("acter")), json],
        br#"{"by": "mallory"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["acknowledged_by"], "acter");

    // The kill switch, turned by an approver's identity: the audit log names that identity.
    let (code, body) = http(
        port,
        "POST",
        "/api/v1/kill-switch",
        &[("Authorization", &bearer("acter")), json],
        br#"{"on": true}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(
        port,
        "GET",
        "/api/v1/audit",
        &[("Authorization", &bearer("reader"))],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"acter\""), "{body}");
    assert!(!body.contains("mallory"), "{body}");

    // The CLI passes the token; without one it says how to give it.
    let server = format!("http://127.0.0.1:{port}");
    let out = common::nightshift(&[
        "incidents",
        "--server",
        &server,
        "--token",
        token_of("reader"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["incidents", "--server", &server])
        .env_remove("NIGHTSHIFT_TOKEN")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
    let out = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["kill-switch", "off", "--server", &server])
        .env("NIGHTSHIFT_TOKEN", token_of("acter"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `serve` with `config` and gives its exit status and error output, or `None` when it
/// is still running after ten seconds (and is then killed).
fn serve_exits(dir: &std::path::Path, config: &str) -> Option<(bool, String)> {
    let file = dir.join("nightshift.yaml");
    std::fs::write(&file, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["serve", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let status = wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    Some((status.success(), err))
}

#[test]
fn a_listener_other_machines_reach_needs_credentials() {
    let dir = temp_dir("serve-auth-exposed");
    let port = free_port();
    let store = dir.join("nightshift.db");
    let (ok, err) = serve_exits(
        &dir,
        &format!(
            "serve:\n  listen: 0.0.0.0:{port}\nstore:\n  path: {}\n",
            store.display()
        ),
    )
    .expect("serve refuses to start");
    assert!(!ok);
    assert!(
        err.contains("serve.auth") && err.contains("tokens"),
        "{err}"
    );

    // Saying so explicitly serves, with a warning.
    let file = dir.join("open.yaml");
    std::fs::write(
        &file,
        format!(
            "serve:\n  listen: 0.0.0.0:{port}\n  auth: {{insecure_open: true}}\nstore:\n  path: {}\n",
            store.display()
        ),
    )
    .expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["serve", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut running = Running(child);
    wait_for(Duration::from_secs(20), || {
        (common::get(port, "/readyz").0 == 200).then_some(())
    })
    .expect("serves when told to");
    let _ = running.0.kill();
    let _ = running.0.wait();
    let mut err = String::new();
    use std::io::Read;
    let _ = running
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(
        err.contains("WARNING") && err.contains("insecure_open"),
        "{err}"
    );

    // A token that is too short is named, and the server does not start.
    let (ok, err) = serve_exits(
        &dir,
        &format!(
            "serve:\n  listen: 0.0.0.0:{port}\n  auth:\n    tokens: [{{name: p, token: short, scopes: [ingest]}}]\nstore:\n  path: {}\n",
            store.display()
        ),
    )
    .expect("refuses");
    assert!(!ok && err.contains("serve.auth.tokens[0]"), "{err}");
}
