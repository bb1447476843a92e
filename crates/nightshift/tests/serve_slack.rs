//! Slack, end to end through `serve`: incident notifications posted and edited through a local
//! stand-in for Slack's Web API that enforces its documented rules (bot token, channel, block
//! limits, `chat.update` by channel id and ts), and the slash command and buttons signed the way
//! Slack signs them (v0 HMAC-SHA256, five-minute window), answered in place or at the
//! `response_url`.

mod common;

use common::{
    checkout_incident_after_deploy, free_port, get, http, start_nightshift_with, temp_dir, wait_for,
};
use hmac::{Hmac, Mac};
use nightshift_testkit::notify::slack::{
    BOT_TOKEN as TOKEN, CHANNEL_ID, Shared, check_blocks, web_api_stand_in,
};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sends `body` the way Slack does, signed with `secret` at `ts`.
fn signed(ns: u16, path: &str, body: &str, secret: &str, ts: i64) -> (u16, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ts = ts.to_string();
    let sig = format!("v0={sig}");
    http(
        ns,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", &sig),
        ],
        body.as_bytes(),
    )
}

fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).expect("form fields encode")
}

fn command(text: &str, response_url: &str) -> String {
    form(&[
        ("token", "deprecated-verification-token"),
        ("team_id", "T0001"),
        ("channel_id", CHANNEL_ID),
        ("user_id", "U2147483697"),
        ("user_name", "alice"),
        ("command", "/nightshift"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
}

fn press(action_id: &str, value: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U2147483697", "username": "alice", "team_id": "T0001"},
        "team": {"id": "T0001"},
        "channel": {"id": CHANNEL_ID},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "value": value,
                     "block_id": "b", "action_ts": "1700000001.000200"}],
    });
    form(&[("payload", &payload.to_string())])
}

fn all_text(message: &Value) -> String {
    message.to_string()
}

#[test]
fn slack_notifies_answers_and_acknowledges() {
    let (slack, got) = web_api_stand_in();
    let dir = temp_dir("serve-slack");
    let ns = free_port();
    // A runbook that waits for approval; alice (by her Slack user id) may approve it.
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("tune.yaml"),
        "name: tune-checkout\ntrigger: {services: [checkout]}\nmode: approve\nrisk: medium\nsteps:\n  - uses: command.run\n    with: {program: /bin/echo, args: [tuned]}\nverify: {signal: incident_resolved, within: 10m}\n",
    )
    .unwrap();
    let _nightshift = start_nightshift_with(
        &dir,
        ns,
        &format!(
            "slack:\n  signing_secret: {SECRET}\n  bot_token: {TOKEN}\n  channel: \"#incidents\"\n  api_url: http://127.0.0.1:{slack}/api\nact:\n  runbooks: {}\n  commands: [/bin/echo]\n  approvers: [{{name: alice, max_risk: medium, slack: U2147483697}}]\n",
            runbooks.display()
        ),
    );
    let id = checkout_incident_after_deploy(ns, "");

    // The incident is posted once, with its root cause, evidence, the change and buttons.
    let posted = wait_for(Duration::from_secs(30), || {
        let g = got.lock().unwrap();
        g.calls
            .iter()
            .find(|(m, b)| {
                m == "chat.postMessage" && b.to_string().contains(&format!("incident:{id}"))
            })
            .map(|(_, b)| b.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident message; refused: {:?}",
            got.lock().unwrap().refused
        )
    });
    let text = all_text(&posted);
    assert!(text.contains("Root cause:"), "{text}");
    assert!(text.contains("`checkout`"), "{text}");
    assert!(text.contains("Evidence"), "{text}");
    assert!(text.contains("deploy of checkout (v2.4.1)"), "{text}");
    assert!(text.contains("\"action_id\":\"acknowledge\""), "{text}");
    assert!(text.contains(&format!("\"value\":\"{id}\"")), "{text}");
    let posts = |got: &Shared| {
        got.lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(m, b)| {
                m == "chat.postMessage" && b.to_string().contains(&format!("incident:{id}"))
            })
            .count()
    };

    // The slash command, answered at once from the deterministic stage.
    let respond = format!("http://127.0.0.1:{slack}/response/1");
    let (code, body) = signed(
        ns,
        "/hooks/slack/commands",
        &command("why is checkout failing?", &respond),
        SECRET,
        now_s(),
    );
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["response_type"], "in_channel");
    assert!(answer["text"].as_str().unwrap().contains(&id), "{answer}");
    check_blocks(&answer).unwrap();

    let (code, body) = signed(
        ns,
        "/hooks/slack/commands",
        &command(&format!("explain {id}"), &respond),
        SECRET,
        now_s(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Root cause:"), "{body}");
    let (_, body) = signed(
        ns,
        "/hooks/slack/commands",
        &command("help", &respond),
        SECRET,
        now_s(),
    );
    assert!(body.contains("\"ephemeral\""), "{body}");

    // Refused: a wrong secret, a stale timestamp, no signature, a tampered body, garbage.
    let body = command("why is checkout failing?", &respond);
    let (code, why) = signed(
        ns,
        "/hooks/slack/commands",
        &body,
        "not-the-secret",
        now_s(),
    );
    assert_eq!(code, 401, "{why}");
    assert!(why.contains("does not match"), "{why}");
    let (code, why) = signed(ns, "/hooks/slack/commands", &body, SECRET, now_s() - 600);
    assert_eq!(code, 401, "{why}");
    assert!(why.contains("from now"), "{why}");
    let (code, why) = http(ns, "POST", "/hooks/slack/commands", &[], body.as_bytes());
    assert_eq!(code, 401, "{why}");
    let (code, why) = signed(
        ns,
        "/hooks/slack/interactions",
        "payload=%7Bnope",
        SECRET,
        now_s(),
    );
    assert_eq!(code, 400, "{why}");

    // Acknowledge, pressed in Slack: the incident is acknowledged by the presser, the message
    // is replaced, and the posted message is edited in place (no second post).
    let ack_url = format!("http://127.0.0.1:{slack}/response/2");
    let (code, why) = signed(
        ns,
        "/hooks/slack/interactions",
        &press("acknowledge", &id, &ack_url),
        SECRET,
        now_s(),
    );
    assert_eq!(code, 200, "{why}");
    let (_, stored) = get(ns, &format!("/api/v1/incidents/{id}"));
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["status"], "acknowledged");
    assert_eq!(stored["acknowledged_by"], "slack:alice");
    let replaced = wait_for(Duration::from_secs(10), || {
        got.lock()
            .unwrap()
            .responses
            .iter()
            .find(|r| r["replace_original"] == true)
            .cloned()
    })
    .expect("the message is replaced");
    let text = all_text(&replaced);
    assert!(text.contains("acknowledged by slack:alice"), "{text}");
    assert!(!text.contains("\"action_id\":\"acknowledge\""), "{text}");
    let updated = wait_for(Duration::from_secs(10), || {
        got.lock()
            .unwrap()
            .calls
            .iter()
            .find(|(m, b)| m == "chat.update" && b.to_string().contains("acknowledged by"))
            .map(|(_, b)| b.clone())
    })
    .expect("the posted message is edited");
    assert_eq!(updated["channel"], CHANNEL_ID);
    assert_eq!(posts(&got), 1);

    // The action waiting for approval is posted with Approve and Reject buttons.
    let action_post = wait_for(Duration::from_secs(30), || {
        got.lock()
            .unwrap()
            .calls
            .iter()
            .find(|(m, b)| m == "chat.postMessage" && b.to_string().contains("action:act-"))
            .map(|(_, b)| b.clone())
    })
    .expect("the pending action posted");
    let text = all_text(&action_post);
    assert!(
        text.contains("tune-checkout") && text.contains("pending"),
        "{text}"
    );
    assert!(text.contains("\"action_id\":\"approve\""), "{text}");
    assert!(text.contains("\"action_id\":\"reject\""), "{text}");
    let action_id = text
        .split("action:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();

    // Approving an action that does not exist says so, to the presser only.
    signed(
        ns,
        "/hooks/slack/interactions",
        &press("approve", "act-9999", &ack_url),
        SECRET,
        now_s(),
    );
    let said = wait_for(Duration::from_secs(10), || {
        got.lock()
            .unwrap()
            .responses
            .iter()
            .find(|r| r.to_string().contains("act-9999"))
            .cloned()
    })
    .expect("an answer to approve");
    assert_eq!(said["response_type"], "ephemeral");
    assert!(
        said["text"]
            .as_str()
            .unwrap()
            .contains("there is no action"),
        "{said}"
    );

    // Alice approves in Slack: the message is replaced by the approved action, without buttons,
    // and the API shows who decided.
    let approve_url = format!("http://127.0.0.1:{slack}/response/3");
    let (code, why) = signed(
        ns,
        "/hooks/slack/interactions",
        &press("approve", &action_id, &approve_url),
        SECRET,
        now_s(),
    );
    assert_eq!(code, 200, "{why}");
    let replaced = wait_for(Duration::from_secs(10), || {
        got.lock()
            .unwrap()
            .responses
            .iter()
            .find(|r| r["replace_original"] == true && r.to_string().contains(&action_id))
            .cloned()
    })
    .expect("the action message is replaced");
    let text = all_text(&replaced);
    assert!(text.contains("Decided by alice"), "{text}");
    assert!(!text.contains("\"action_id\":\"approve\""), "{text}");
    let (_, stored) = get(ns, &format!("/api/v1/actions/{action_id}"));
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["decided_by"], "alice");
    assert!(
        ["approved", "running"].contains(&stored["state"].as_str().unwrap()),
        "{stored}"
    );

    let refused = got.lock().unwrap().refused.clone();
    assert!(refused.is_empty(), "Slack would have refused: {refused:?}");
}
