//! `notify.email`: a plain-text message through the configured SMTP server.

use super::outgoing::{MASK, TIMEOUT};
use super::{Smtp, SmtpTls};
use crate::provider::{StepError, StepOutcome, required, text_arg};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

/// Sends `{to, subject, body}`: `to` is one address or several separated by commas, each
/// checked; a subject or recipient holding a line break is refused, since it could add
/// headers of its own. Output: the recipients.
pub(super) async fn send(smtp: &Smtp, with: &Value) -> Result<StepOutcome, StepError> {
    let to_text = required(with, "to")?;
    let subject = required(with, "subject")?;
    let body =
        text_arg(with, "body").ok_or_else(|| StepError::refused("argument body is missing"))?;
    for (name, value) in [("to", &to_text), ("subject", &subject)] {
        if value.contains(['\r', '\n', '\0']) {
            return Err(StepError::refused(format!(
                "{name} holds a line break, which could forge mail headers"
            )));
        }
    }
    let mut to = Vec::new();
    for part in to_text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let address: Address = part
            .parse()
            .map_err(|e| StepError::refused(format!("{part:?} is not an email address ({e})")))?;
        to.push(address);
    }
    if to.is_empty() {
        return Err(StepError::refused("argument to names no address"));
    }
    let from: Mailbox = smtp.from.trim().parse().map_err(|e| {
        StepError::refused(format!(
            "act.endpoints.email.from ({:?}) is not an email address ({e})",
            smtp.from
        ))
    })?;
    if smtp.host.trim().is_empty() {
        return Err(StepError::refused("act.endpoints.email.host is empty"));
    }
    let host = smtp.host.trim();
    let tls = match (smtp.tls, &smtp.username) {
        (SmtpTls::Opportunistic, Some(_)) => SmtpTls::Starttls,
        (tls, _) => tls,
    };
    let scheme = if tls == SmtpTls::Tls { "smtps" } else { "smtp" };
    let mut headers = json!({
        "From": from.to_string(),
        "To": to.iter().map(Address::to_string).collect::<Vec<_>>().join(", "),
        "Subject": subject,
    });
    if let Some(user) = &smtp.username {
        headers["AUTH"] = Value::String(format!("{user} {MASK}"));
    }
    let request = json!({
        "method": "SMTP",
        "url": format!("{scheme}://{host}:{}", smtp.port),
        "headers": headers,
        "body": body,
    });
    let mut message = Message::builder()
        .from(from)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for address in &to {
        message = message.to(Mailbox::new(None, address.clone()));
    }
    let message = message
        .body(body)
        .map_err(|e| StepError::refused(format!("the message cannot be built: {e}")))?;
    let params = || {
        TlsParameters::new(host.to_string())
            .map_err(|e| StepError::failed(request.clone(), format!("TLS setup failed: {e}")))
    };
    let tls = match tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
        SmtpTls::Starttls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(smtp.port)
        .timeout(Some(TIMEOUT))
        .tls(tls);
    if let Some(user) = &smtp.username {
        transport = transport.credentials(Credentials::new(
            user.clone(),
            smtp.password.clone().unwrap_or_default(),
        ));
    }
    let transport = transport.build();
    let sent = tokio::time::timeout(TIMEOUT, transport.send(message)).await;
    match sent {
        Ok(Ok(_)) => Ok(StepOutcome {
            request,
            output: json!({ "to": to.iter().map(Address::to_string).collect::<Vec<_>>() }),
        }),
        Ok(Err(e)) => Err(StepError::failed(
            request,
            format!(
                "the mail server {host}:{} did not take the message: {e}",
                smtp.port
            ),
        )),
        Err(_) => Err(StepError::failed(
            request,
            format!(
                "the mail server {host}:{} did not finish within {} s",
                smtp.port,
                TIMEOUT.as_secs()
            ),
        )),
    }
}
