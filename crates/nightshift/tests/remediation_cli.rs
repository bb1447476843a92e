//! `nightshift runbook validate` and `nightshift audit verify` on real files: the shipped
//! runbooks pass, a broken one is refused naming file, line and field, and a tampered audit
//! log fails at the exact entry.

mod common;

use common::{nightshift, temp_dir};
use nightshift_act::AuditLog;
use serde_json::json;

const RUNBOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../runbooks");

#[test]
fn the_shipped_runbooks_validate_and_a_broken_one_is_refused_by_line() {
    let out = nightshift(&["runbook", "validate", RUNBOOKS]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches(": ok: ").count(), 7, "{text}");

    let dir = temp_dir("runbook-validate");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: restart\ntrigger: {alerts: [ExporterDown]}\nmode: approve\nrisk: medium\nsteps:\n  - uses: kubernetes.scale\n    with: {namespace: shop, deployment: x, replicas: 3, colour: blue}\nverify: {signal: incident_resolved, within: 5m}\n",
    )
    .unwrap();
    let out = nightshift(&["runbook", "validate", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.yaml:7: steps[0].with.colour: kubernetes.scale takes no \"colour\""),
        "{err}"
    );

    // With a configuration, command.run programs must be on its allow-list.
    let cmd = dir.join("cmd.yaml");
    std::fs::write(
        &cmd,
        "name: restart\ntrigger: {alerts: [ExporterDown]}\nmode: approve\nrisk: medium\nsteps:\n  - uses: command.run\n    with: {program: /usr/bin/kubectl, args: [rollout, restart]}\nverify: {signal: incident_resolved, within: 5m}\n",
    )
    .unwrap();
    let config = dir.join("nightshift.yaml");
    std::fs::write(&config, "act:\n  commands: [/bin/echo]\n").unwrap();
    let out = nightshift(&[
        "runbook",
        "validate",
        cmd.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cmd.yaml:6: steps[0].with.program"), "{err}");
    assert!(
        nightshift(&["runbook", "validate", cmd.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn a_tampered_audit_log_fails_verification_at_the_exact_entry() {
    let dir = temp_dir("audit-verify");
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for (i, event) in ["proposed", "approved", "executed", "verified"]
        .iter()
        .enumerate()
    {
        log.append(
            1_700_000_000_000 + i as i64,
            "user:alice",
            event,
            Some("act-1"),
            "checkout OOMKilled",
            json!({"request": {"method": "PATCH"}}),
        )
        .unwrap();
    }
    drop(log);
    let file = path.to_str().unwrap();
    let out = nightshift(&["audit", "verify", "--file", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 entries, chain intact"));

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"approved\"", "\"rejected\"", 1)).unwrap();
    let out = nightshift(&["audit", "verify", "--file", file]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: entry 2 was edited"), "{err}");

    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[3])).unwrap();
    let out = nightshift(&["audit", "verify", "--file", file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: entry 4 follows entry 2"), "{err}");
}

#[test]
fn the_demo_shows_what_the_shipped_runbooks_would_do() {
    let v = common::nightshift_json(&["demo", "--json"]);
    let proposals = v[0]["proposals"].as_array().expect("proposals");
    assert!(!proposals.is_empty(), "{v}");
    let incident = v[0]["incidents"][0]["id"].as_str().unwrap();
    for p in proposals {
        assert_eq!(p["incident"], incident);
        for step in p["steps"].as_array().unwrap() {
            assert!(step.get("error").is_none(), "{p}");
            // Rendered for this incident: no template syntax left.
            assert!(!step["with"].to_string().contains("{{"), "{p}");
        }
    }
    let out = nightshift(&["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("⚙ runbook "), "{text}");
}

#[test]
fn a_keyed_audit_log_verifies_only_with_its_key() {
    let dir = temp_dir("audit-keyed");
    let path = dir.join("audit.jsonl");
    let key_file = dir.join("audit.key");
    std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut log =
        AuditLog::open_keyed(&path, Some(b"0123456789abcdef0123456789abcdef".to_vec())).unwrap();
    log.append(
        1,
        "user:alice",
        "approved",
        Some("act-1"),
        "ok",
        json!(null),
    )
    .unwrap();
    drop(log);
    let verify = |key: Option<&std::path::Path>| {
        let mut args = vec!["audit", "verify", "--file", path.to_str().unwrap()];
        if let Some(k) = key {
            args.extend(["--key-file", k.to_str().unwrap()]);
        }
        nightshift(&args)
    };
    let out = verify(Some(&key_file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("under the key"));
    let out = verify(None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("written with a key"));
    // A short key is refused, named.
    let short = dir.join("short.key");
    std::fs::write(&short, "abc").unwrap();
    let out = verify(Some(&short));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
}
