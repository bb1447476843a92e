//! The check every request passes before its handler when `serve.auth` is configured: the
//! route's scope ([`crate::auth::required_scope`]), the caller's credential, and the
//! [`Identity`] it names put into the request for the handlers (the only name they record).
//! No credential is a 401 with `WWW-Authenticate`; a credential without the scope is a 403.

use super::App;
use super::receivers::text;
use crate::auth::{Access, Authenticator, Identity, Presented};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The credentials check, when the server has any.
pub(crate) struct Guard {
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) metrics_public: bool,
}

pub(super) async fn guard(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(g) = &app.guard else {
        return next.run(request).await;
    };
    let scope =
        match crate::auth::required_scope(request.method(), request.uri().path(), g.metrics_public)
        {
            Access::Open | Access::OwnSecret => return next.run(request).await,
            Access::Scope(s) => s,
        };
    let presented = Presented::from_header(request.headers().get(header::AUTHORIZATION));
    let who: Option<Identity> = match presented {
        Presented::None => {
            return denied(
                &app,
                g,
                "unauthenticated",
                format!(
                    "send Authorization: Bearer <token> with the {} scope (serve.auth.tokens)",
                    scope.as_str()
                ),
            );
        }
        Presented::Malformed => {
            return denied(
                &app,
                g,
                "malformed",
                "the Authorization header must be `Bearer <token>` or `Basic <base64 user:password>`"
                    .into(),
            );
        }
        Presented::Bearer(token) => g.auth.token(&token),
        Presented::Basic { user, password } => {
            // bcrypt takes tens of milliseconds: off the async threads.
            let auth = g.auth.clone();
            tokio::task::spawn_blocking(move || auth.basic(&user, &password))
                .await
                .ok()
                .flatten()
        }
    };
    let Some(who) = who else {
        return denied(
            &app,
            g,
            "unknown",
            "the credential is not one this server knows (serve.auth)".into(),
        );
    };
    if !who.allows(scope) {
        app.metrics
            .denied
            .get_or_create(&vec![("reason".into(), "forbidden".into())])
            .inc();
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not do this: it needs the {} scope",
                who.name,
                scope.as_str()
            ),
        );
    }
    request.extensions_mut().insert(who);
    next.run(request).await
}

/// A 401 that says how to authenticate.
fn denied(app: &App, g: &Guard, reason: &str, message: String) -> Response {
    app.metrics
        .denied
        .get_or_create(&vec![("reason".into(), reason.into())])
        .inc();
    let mut r = text(StatusCode::UNAUTHORIZED, message);
    let h = r.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"nightshift\""),
    );
    if g.auth.offers_basic() {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"nightshift\", charset=\"UTF-8\""),
        );
    }
    r
}
