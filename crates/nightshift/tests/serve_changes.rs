//! `nightshift serve`'s change webhooks: GitHub's signature, GitLab's and Argo CD's tokens are
//! enforced as the senders' documentation says (the services themselves cannot be reached from
//! here), and recorded changes are stored and readable.

mod common;

use common::{free_port, get, http, http_full, start_nightshift_with, temp_dir};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "It's a Secret to Everybody";

fn github_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key size");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn recorded(ns: u16) -> Vec<String> {
    let (code, body) = get(ns, "/api/v1/changes");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn change_hooks_enforce_their_secrets_and_record_changes() {
    let dir = temp_dir("serve-changes");
    let ns = free_port();
    let _nightshift = start_nightshift_with(
        &dir,
        ns,
        &format!("hooks:\n  github_secret: \"{SECRET}\"\n  gitlab_token: gitlab-token-1\n"),
    );
    let json = ("Content-Type", "application/json");

    // GitHub: a signed deployment is recorded; a bad or missing signature is 401.
    let deployment = br#"{"action":"created","deployment":{"id":42,"sha":"a1b2c3d4e5f6a7b8","ref":"main","environment":"production","created_at":"2026-11-21T10:00:00Z"},"repository":{"name":"checkout"}}"#;
    let sig = github_signature(deployment);
    let signed = [
        json,
        ("X-GitHub-Event", "deployment"),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    let (code, answer) = http(ns, "POST", "/hooks/github", &signed, deployment);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("github-deployment-42"), "{answer}");
    let forged = [
        json,
        ("X-GitHub-Event", "deployment"),
        ("X-Hub-Signature-256", "sha256=00ff"),
    ];
    assert_eq!(
        http(ns, "POST", "/hooks/github", &forged, deployment).0,
        401
    );
    let unsigned = [json, ("X-GitHub-Event", "deployment")];
    assert_eq!(
        http(ns, "POST", "/hooks/github", &unsigned, deployment).0,
        401
    );
    let ping_sig = github_signature(b"{}");
    let ping = [
        json,
        ("X-GitHub-Event", "ping"),
        ("X-Hub-Signature-256", ping_sig.as_str()),
    ];
    assert_eq!(http(ns, "POST", "/hooks/github", &ping, b"{}").0, 202);

    // GitLab: the token decides.
    let gl = br#"{"object_kind":"deployment","status":"success","deployment_id":15,"environment":"production","short_sha":"279484c0","status_changed_at":"2026-11-21 10:00:00 UTC","project":{"name":"payments"}}"#;
    let good = [
        json,
        ("X-Gitlab-Event", "Deployment Hook"),
        ("X-Gitlab-Token", "gitlab-token-1"),
    ];
    assert_eq!(http(ns, "POST", "/hooks/gitlab", &good, gl).0, 200);
    let wrong = [
        json,
        ("X-Gitlab-Event", "Deployment Hook"),
        ("X-Gitlab-Token", "guess"),
    ];
    assert_eq!(http(ns, "POST", "/hooks/gitlab", &wrong, gl).0, 401);

    // Argo CD is not configured here: 404 saying how to turn it on.
    let (code, answer) = http(ns, "POST", "/hooks/argocd", &[json], b"{}");
    assert_eq!(code, 404);
    assert!(answer.contains("hooks.argocd_token"), "{answer}");

    // Nightshift's own JSON, and a bad one.
    let mine = br#"{"kind":"config","target":"cart","description":"raised the pool size","ts":"2026-11-21T10:01:00Z","id":"cfg-1"}"#;
    assert_eq!(http(ns, "POST", "/api/v1/changes", &[json], mine).0, 200);
    let (code, answer) = http(
        ns,
        "POST",
        "/api/v1/changes",
        &[json],
        br#"{"kind":"explode","target":"x"}"#,
    );
    assert_eq!(code, 400);
    assert!(answer.contains("kind \"explode\""), "{answer}");

    // An id that names a hook's change lands in the sender's own namespace, beside it.
    let posing = br#"{"kind":"rollback","target":"checkout","id":"github-deployment-42"}"#;
    assert_eq!(http(ns, "POST", "/api/v1/changes", &[json], posing).0, 200);

    let mut ids = recorded(ns);
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "api//cfg-1",
            "api//github-deployment-42",
            "github-deployment-42",
            "gitlab-deployment-15"
        ]
    );
    assert_eq!(get(ns, "/healthz").0, 200);

    // Pages of 2, two changes sharing a time, followed by their `Link: rel="next"`: each change
    // comes once, in the order of the whole list.
    for (i, ts) in ["10:02", "10:03", "10:03"].iter().enumerate() {
        let body = format!(
            r#"{{"kind":"config","target":"cart","description":"step {i}","ts":"2026-11-21T{ts}:00Z","id":"page-{i}"}}"#
        );
        assert_eq!(
            http(ns, "POST", "/api/v1/changes", &[json], body.as_bytes()).0,
            200
        );
    }
    let whole = recorded(ns);
    assert_eq!(whole.len(), 7);
    let (mut paged, mut next, mut pages) =
        (Vec::new(), Some("/api/v1/changes?limit=2".to_string()), 0);
    while let Some(path) = next.take() {
        let (code, head, body) = http_full(ns, "GET", &path, &[], b"");
        assert_eq!(code, 200, "{body}");
        let page: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON");
        assert!(page.len() <= 2);
        paged.extend(page.iter().map(|c| c["id"].as_str().unwrap().to_string()));
        pages += 1;
        next = head
            .lines()
            .find_map(|l| l.strip_prefix("link: <").or(l.strip_prefix("Link: <")))
            .map(|l| l.split('>').next().unwrap().to_string());
        if let Some(n) = &next {
            assert!(n.starts_with("/api/v1/changes?limit=2&cursor="), "{n}");
        }
    }
    assert_eq!(paged, whole);
    assert_eq!(
        pages, 4,
        "7 changes in pages of 2; the last page has no next link"
    );
    let (code, answer) = get(ns, "/api/v1/changes?cursor=bm90LWEtY3Vyc29y");
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("`cursor`"), "{answer}");
}
