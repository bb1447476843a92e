//! `notify.email` against a real SMTP server (Python's aiosmtpd).

use crate::{assert_hidden, failed, ok, refused};
use nightshift_act::notify::{Endpoints, Smtp, SmtpTls};
use serde_json::{Value, json};

fn smtp_config(port: u16) -> Smtp {
    Smtp {
        host: "127.0.0.1".into(),
        port,
        from: "Nightshift <nightshift@example.com>".into(),
        username: None,
        password: None,
        tls: SmtpTls::Opportunistic,
    }
}

fn email(smtp: Smtp) -> Endpoints {
    Endpoints {
        email: Some(smtp),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn email_arguments_that_could_forge_headers_are_refused() {
    // Nothing listens on port 1: a refusal must come before any connection.
    let ep = email(smtp_config(1));
    let cases = [
        (
            json!({"to": "a@example.com", "subject": "Hi\r\nBcc: victim@example.com", "body": "b"}),
            "line break",
        ),
        (
            json!({"to": "a@example.com", "subject": "Hi\nX-Evil: 1", "body": "b"}),
            "line break",
        ),
        (
            json!({"to": "a@example.com\r\nBcc: victim@example.com", "subject": "s", "body": "b"}),
            "line break",
        ),
        (
            json!({"to": "a@example.com, not an address", "subject": "s", "body": "b"}),
            "not an email address",
        ),
        (
            json!({"to": " , ", "subject": "s", "body": "b"}),
            "no address",
        ),
        (json!({"to": "a@example.com", "subject": "s"}), "body"),
    ];
    for (with, why) in cases {
        let message = refused(&ep, "notify.email", with.clone()).await;
        assert!(message.contains(why), "{with}: {message}");
    }
    let bad_from = email(Smtp {
        from: "nightshift".into(),
        ..smtp_config(1)
    });
    let message = refused(
        &bad_from,
        "notify.email",
        json!({"to": "a@example.com", "subject": "s", "body": "b"}),
    )
    .await;
    assert!(message.contains("act.endpoints.email.from"), "{message}");
}

/// aiosmtpd on a free port, storing each message as JSON in a folder.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// The messages received, in order.
    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

const SMTP_SERVER: &str = r#"
import asyncio, json, logging, os, sys, warnings
from aiosmtpd.smtp import SMTP, AuthResult

# Quiet about AUTH without TLS: the tests ask for it.
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)

outdir, users = sys.argv[1], json.loads(sys.argv[2])

class Store:
    def __init__(self):
        self.n = 0
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "authenticated": bool(session.authenticated),
        }
        path = os.path.join(outdir, "%04d.json" % self.n)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = users.get(auth_data.login.decode()) == auth_data.password.decode()
    return AuthResult(success=ok, handled=False)

async def main():
    store = Store()
    options = {}
    if users:
        options = dict(authenticator=authenticate, auth_required=True, auth_require_tls=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(store, hostname="stand-in.example", **options), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// The peers' Python when it has aiosmtpd.
fn python_with_aiosmtpd() -> Option<std::path::PathBuf> {
    nightshift_testkit::peers::program("python", |python| {
        std::process::Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Starts aiosmtpd, with AUTH required for `users` (login → password) when there are any.
fn smtp_server(users: Value) -> Option<SmtpServer> {
    use std::io::BufRead;
    let python = python_with_aiosmtpd()?;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(python)
        .args(["-c", SMTP_SERVER])
        .arg(dir.path())
        .arg(users.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start aiosmtpd");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("aiosmtpd did not print its port: {line:?}"));
    Some(SmtpServer { child, port, dir })
}

#[tokio::test]
async fn email_goes_through_a_real_smtp_server() {
    let Some(server) = smtp_server(json!({})) else {
        return;
    };
    // The server offers no STARTTLS: opportunistic TLS goes on in plain text.
    let ep = email(smtp_config(server.port));
    let body = "Rolled back checkout.\n.a line starting with a dot\n.\nend";
    let out = ok(
        &ep,
        "notify.email",
        json!({"to": "oncall@example.com, Lead@Example.org", "subject": "INC-7: checkout 5xx", "body": body}),
    )
    .await;
    assert_eq!(
        out.output,
        json!({"to": ["oncall@example.com", "Lead@Example.org"]})
    );
    assert_eq!(out.request["method"], "SMTP");
    assert_eq!(
        out.request["url"],
        json!(format!("smtp://127.0.0.1:{}", server.port))
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["mail_from"], "nightshift@example.com");
    assert_eq!(
        m["rcpt_tos"],
        json!(["oncall@example.com", "Lead@Example.org"])
    );
    let data = m["data"].as_str().unwrap().replace("\r\n", "\n");
    let (head, sent_body) = data.split_once("\n\n").expect("headers, then the body");
    let lines: Vec<&str> = head.lines().collect();
    assert!(lines.contains(&"Subject: INC-7: checkout 5xx"), "{head}");
    assert!(
        lines.contains(&"From: Nightshift <nightshift@example.com>"),
        "{head}"
    );
    assert!(
        lines.contains(&"To: oncall@example.com, Lead@Example.org"),
        "{head}"
    );
    assert!(
        lines.contains(&"Content-Type: text/plain; charset=utf-8"),
        "{head}"
    );
    // Dot-stuffed on the wire, restored by the server: the body arrives as written.
    assert_eq!(sent_body.trim_end_matches('\n'), body);
    assert_eq!(m["authenticated"], false);
}

#[tokio::test]
async fn email_authenticates_and_never_sends_the_password_in_clear_unasked() {
    let Some(server) = smtp_server(json!({"nightshift": "MAILSECRET"})) else {
        return;
    };
    let with = json!({"to": "oncall@example.com", "subject": "s", "body": "b"});
    let login = |password: &str, tls| Smtp {
        username: Some("nightshift".into()),
        password: Some(password.into()),
        tls,
        ..smtp_config(server.port)
    };
    // With credentials, opportunistic becomes STARTTLS, which this server lacks: nothing goes.
    let e = failed(
        &email(login("MAILSECRET", SmtpTls::Opportunistic)),
        "notify.email",
        with.clone(),
    )
    .await;
    assert!(e.message.contains("STARTTLS"), "{}", e.message);
    assert!(server.messages().is_empty());
    // Plain text when the configuration says so.
    let out = ok(
        &email(login("MAILSECRET", SmtpTls::None)),
        "notify.email",
        with.clone(),
    )
    .await;
    assert_hidden(&out.request.to_string(), "MAILSECRET");
    assert_eq!(out.request["headers"]["AUTH"], "nightshift ***");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["authenticated"], true);
    // A wrong password: the server's refusal, without the password.
    let e = failed(
        &email(login("WRONGPASS", SmtpTls::None)),
        "notify.email",
        with,
    )
    .await;
    assert!(e.message.contains("535"), "{}", e.message);
    assert_hidden(&e.message, "WRONGPASS");
    assert_hidden(&e.request.unwrap().to_string(), "WRONGPASS");
    assert_eq!(server.messages().len(), 1);
}
