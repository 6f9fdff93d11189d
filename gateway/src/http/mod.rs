//! HTTP surface: the router, security headers on every response, and the embedded pages
//! ([`assets`]) and JSON API ([`api`]).

pub mod admin;
pub mod api;
pub mod assets;
pub mod directory;
pub mod oncall;
pub mod sign_in;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(assets::landing))
        .route("/static/{*path}", get(assets::gateway_file))
        .route("/widget", get(assets::redirect_widget))
        .route("/widget/", get(assets::widget_index))
        .route("/widget/{*path}", get(assets::widget_file))
        .route("/console", get(assets::redirect_console))
        .route("/console/", get(assets::console_index))
        .route("/console/{*path}", get(assets::console_file))
        .route("/coordinator", get(assets::coordinator))
        .route("/coordinator/", get(assets::coordinator))
        .route("/setup", get(assets::setup))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/ws/visitor", get(crate::ws::visitor::upgrade))
        .route("/ws/operator", get(crate::ws::operator::upgrade))
        .route("/api/widget-config", get(api::widget_config))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/setup", post(api::setup))
        .route("/api/me", get(api::me))
        .route("/api/colleagues", get(api::colleagues))
        .route("/api/dashboard", get(api::dashboard))
        .route("/api/dashboard/stream", get(api::dashboard_stream))
        .route("/api/service/overloaded", post(api::set_overloaded))
        .route("/api/conversations", get(api::conversations))
        .route("/api/conversations/{id}/flag", post(api::raise_flag))
        .route("/api/conversations/{id}/flag/clear", post(api::clear_flag))
        .route("/api/escalations", get(api::list_escalations))
        .route("/api/escalations/{id}", get(api::read_escalation))
        .route("/api/audit", get(api::audit))
        .route("/api/users/{id}/revoke", post(api::revoke_user))
        .merge(admin::routes())
        .merge(directory::routes())
        .merge(oncall::router())
        .merge(crate::connectors::line::router(
            app.line.clone(),
            app.settings.line.max_body_bytes,
        ))
        .merge(crate::connectors::voice::router(
            crate::connectors::voice::Hooks {
                voice: app.voice.clone(),
                public_url: (app.settings.voice.public_url.clone())
                    .or_else(|| app.settings.server.public_url.clone()),
            },
            app.settings.voice.max_body_bytes,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            api::limit_webhooks,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            security_headers,
        ))
        .with_state(app)
}

/// Adds a strict Content-Security-Policy and the usual hardening headers to every response.
/// Widget pages may be framed by the configured embedding origins; nothing else may be framed.
async fn security_headers(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let framable = req.uri().path().starts_with("/widget/");
    let is_api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let ancestors = if framable {
        let mut a = String::from("'self'");
        for o in &app.settings.server.allowed_origins {
            a.push(' ');
            a.push_str(o);
        }
        a
    } else {
        "'none'".to_owned()
    };
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; media-src 'self' data:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    );
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if is_api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if app.settings.auth.cookie_secure {
        // Served over HTTPS (here or at the proxy): browsers must not fall back to HTTP.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    res
}
