//! Any body as an Alertmanager webhook, API v2 alerts, and every change hook: no panic, and
//! every alert kept has labels.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nightshift_ingest::{changes, decode_postable, decode_webhook};

fuzz_target!(|body: &[u8]| {
    for alerts in [
        decode_webhook(body),
        decode_postable(body, 1_700_000_000_000),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            alerts
                .iter()
                .all(|a| !a.labels.is_empty() && a.fingerprint.len() == 16)
        );
    }
    let _ = changes::decode_generic(body, 0);
    for event in ["deployment", "deployment_status", "workflow_run", "push"] {
        let _ = changes::decode_github(Some(event), body);
    }
    for event in ["Deployment Hook", "Pipeline Hook"] {
        let _ = changes::decode_gitlab(Some(event), body, 0);
    }
    let _ = changes::decode_argocd(body, 0);
    let _ = changes::verify_github_signature("secret-value", std::str::from_utf8(body).ok(), body);
});
