//! Requests Slack sends an app: slash commands (`application/x-www-form-urlencoded` fields) and
//! interactions (a form field `payload` holding JSON), both signed with the app's signing
//! secret (<https://api.slack.com/authentication/verifying-requests-from-slack>):
//! `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">`, and
//! `X-Slack-Request-Timestamp` within five minutes of now, so a captured request cannot be
//! replayed later.

use crate::changes::{HookError, verify_hmac_sha256};
use serde::Deserialize;

/// How far `X-Slack-Request-Timestamp` may be from now, in seconds.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Checks a request's signature and age; `now` in Unix seconds.
pub fn verify_signature(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), HookError> {
    let ts = timestamp
        .ok_or_else(|| HookError::Unauthorized("X-Slack-Request-Timestamp is missing".into()))?;
    let at: i64 = ts.trim().parse().map_err(|_| {
        HookError::Unauthorized(format!(
            "X-Slack-Request-Timestamp {ts:?} is not Unix seconds"
        ))
    })?;
    if (now - at).abs() > MAX_SKEW_SECONDS {
        return Err(HookError::Unauthorized(format!(
            "X-Slack-Request-Timestamp is {}s from now, more than the {MAX_SKEW_SECONDS}s allowed \
             (a replayed request, or this host's clock is wrong)",
            now - at
        )));
    }
    let sig = signature
        .and_then(|s| s.trim().strip_prefix("v0="))
        .ok_or_else(|| {
            HookError::Unauthorized("X-Slack-Signature is missing or not a v0= signature".into())
        })?;
    verify_hmac_sha256(
        secret,
        sig,
        &[b"v0:", ts.trim().as_bytes(), b":", body],
        "X-Slack-Signature",
    )
}

/// A slash command invocation, e.g. `/nightshift why is checkout slow?`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    /// Everything after the command.
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub team_id: String,
    /// Where later answers to this command may be posted (for 30 minutes, 5 times).
    #[serde(default)]
    pub response_url: String,
}

pub fn decode_slash_command(body: &[u8]) -> Result<SlashCommand, HookError> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        HookError::Invalid(format!(
            "not a Slack slash command (form fields command, text, user_id, …): {e}"
        ))
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SlackUser {
    pub id: String,
    #[serde(default, alias = "name")]
    pub username: String,
}

/// A button pressed in one of Nightshift's messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub value: String,
}

/// An interaction payload; Nightshift acts on `block_actions` only.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Interaction {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: SlackUser,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub response_url: Option<String>,
}

pub fn decode_interaction(body: &[u8]) -> Result<Interaction, HookError> {
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form = serde_urlencoded::from_bytes(body).map_err(|e| {
        HookError::Invalid(format!(
            "not a Slack interaction (a form field `payload`): {e}"
        ))
    })?;
    serde_json::from_str(&form.payload)
        .map_err(|e| HookError::Invalid(format!("the interaction payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Slack's documentation on verifying requests.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const TS: &str = "1531420618";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_documented_example_verifies() {
        verify_signature(SECRET, Some(TS), Some(SIG), BODY, 1531420618 + 10).unwrap();
        let c = decode_slash_command(BODY).unwrap();
        assert_eq!(c.command, "/webhook-collect");
        assert_eq!(c.user_name, "roadrunner");
        assert!(
            c.response_url
                .starts_with("https://hooks.slack.com/commands/")
        );
    }

    #[test]
    fn a_changed_body_a_wrong_secret_or_an_old_timestamp_is_refused() {
        let mut body = BODY.to_vec();
        body[0] = b'T';
        let now = 1531420618;
        for (secret, ts, sig, body, now, says) in [
            (
                SECRET,
                Some(TS),
                Some(SIG),
                &body[..],
                now,
                "does not match",
            ),
            ("another", Some(TS), Some(SIG), BODY, now, "does not match"),
            (
                SECRET,
                Some(TS),
                Some(SIG),
                BODY,
                now + 301,
                "301s from now",
            ),
            (
                SECRET,
                Some(TS),
                Some(SIG),
                BODY,
                now - 400,
                "-400s from now",
            ),
            (SECRET, None, Some(SIG), BODY, now, "Timestamp is missing"),
            (
                SECRET,
                Some("soon"),
                Some(SIG),
                BODY,
                now,
                "not Unix seconds",
            ),
            (SECRET, Some(TS), None, BODY, now, "Signature is missing"),
            (SECRET, Some(TS), Some("v0=zz"), BODY, now, "not hex"),
        ] {
            let e = verify_signature(secret, ts, sig, body, now).unwrap_err();
            assert_eq!(e.status(), 401);
            assert!(e.to_string().contains(says), "{e} lacks {says:?}");
        }
    }

    #[test]
    fn interactions_decode_and_garbage_is_a_400() {
        let payload = r#"{"type":"block_actions","user":{"id":"U1","username":"alice"},
            "response_url":"https://hooks.slack.com/actions/T1/1/x",
            "actions":[{"action_id":"acknowledge","value":"inc-0003","type":"button"}]}"#;
        let body = serde_urlencoded::to_string([("payload", payload)]).unwrap();
        let i = decode_interaction(body.as_bytes()).unwrap();
        assert_eq!(i.kind, "block_actions");
        assert_eq!(i.user.username, "alice");
        assert_eq!(i.actions[0].action_id, "acknowledge");
        assert_eq!(i.actions[0].value, "inc-0003");
        for bad in [&b"payload=%7Bnot json"[..], b"nothing=here", b"\xff\xfe"] {
            assert_eq!(decode_interaction(bad).unwrap_err().status(), 400);
        }
        assert_eq!(decode_slash_command(b"text=hi").unwrap_err().status(), 400);
    }
}
