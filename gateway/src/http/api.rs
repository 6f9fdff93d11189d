//! JSON endpoints for the console, the coordinator view and the widget, plus health, readiness
//! and metrics. Errors are [`ApiError`]: a stable, opaque code for the client; the cause, if any,
//! goes to the log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use ulid::Ulid;

use crate::auth::{AuthError, User};
use crate::engine::EngineError;
use crate::state::AppState;

/// What a client is told when a request fails.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("bad origin")]
    BadOrigin,
    #[error("invalid: {0}")]
    Invalid(&'static str),
    #[error("not found")]
    NotFound,
    #[error("conflict")]
    Conflict,
    /// A feature this gateway does not have switched on (emergency flagging without a key).
    #[error("not enabled")]
    NotEnabled,
    #[error("unavailable")]
    Unavailable,
    /// Rate limited or locked out: retry after this many seconds.
    #[error("too many requests")]
    TooMany(u64),
    /// Too busy now (every password check taken): retry after this many seconds.
    #[error("busy")]
    Busy(u64),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadOrigin => (StatusCode::FORBIDDEN, "bad_origin"),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict => (StatusCode::CONFLICT, "conflict"),
            ApiError::NotEnabled => (StatusCode::NOT_FOUND, "not_enabled"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        };
        if let ApiError::TooMany(secs) | ApiError::Busy(secs) = self {
            return (
                status,
                [(header::RETRY_AFTER, secs.to_string())],
                Json(json!({ "error": code, "retry_after_s": secs })),
            )
                .into_response();
        }
        let detail = match self {
            ApiError::Invalid(why) => Some(why),
            _ => None,
        };
        (status, Json(json!({ "error": code, "detail": detail }))).into_response()
    }
}

/// The signed-in user, from the session cookie.
pub struct CurrentUser(pub User);

impl FromRequestParts<Arc<AppState>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar
            .get(app.session_cookie())
            .ok_or(ApiError::Unauthorized)?;
        app.accounts
            .session_user(token.value())
            .await
            .map(CurrentUser)
            .ok_or(ApiError::Unauthorized)
    }
}

/// A signed-in coordinator or admin.
pub struct Coordinator(pub User);

impl FromRequestParts<Arc<AppState>> for Coordinator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, app).await?;
        if user.role.coordinates() {
            Ok(Coordinator(user))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// A signed-in admin.
pub struct Admin(pub User);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, app).await?;
        if user.role == crate::auth::Role::Admin {
            Ok(Admin(user))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Mutating requests must come from an allowed origin (with SameSite=Strict cookies, this
/// closes cross-site request forgery).
pub(crate) fn check_origin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if crate::ws::origin_allowed(headers, &app.settings.server) {
        Ok(())
    } else {
        Err(ApiError::BadOrigin)
    }
}

pub(crate) fn session_cookie(app: &AppState, token: String) -> Cookie<'static> {
    Cookie::build((app.session_cookie(), token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.settings.auth.cookie_secure)
        .path("/")
        .max_age(time_duration(app.settings.auth.session_max_ms))
        .build()
}

fn time_duration(ms: u64) -> time::Duration {
    time::Duration::milliseconds(ms.min(i64::MAX as u64) as i64)
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.draining.is_cancelled() || app.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    match app.engine.store_ready().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "degraded", "store": "unavailable"})),
            )
                .into_response()
        }
    }
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    // A store this node cannot read still gets a scrape (`tsunagu_store_up 0`), so that
    // Prometheus tells an unreachable store from a gateway that is down.
    let mut gauges = match app.engine.dashboard().await {
        Ok(d) => crate::metrics::Gauges::from(&d),
        Err(_) => crate::metrics::Gauges {
            store_up: false,
            ..Default::default()
        },
    };
    if let Some(esc) = &app.engine.escalations {
        gauges.escalation_delivery_failures = esc.delivery_failures();
        gauges.escalation_deliveries_failing = esc.failing_deliveries();
    }
    let body = app.engine.metrics.render(gauges);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

pub async fn widget_config(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let w = &app.settings.widget;
    Json(json!({
        "quick_exit_url": w.quick_exit_url,
        "phone": w.phone_number.as_ref().map(|n| json!({"number": n, "hours": w.phone_hours})),
        "languages": w.languages,
    }))
}

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(
    State(app): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Json(body): Json<LoginBody>,
) -> Result<(CookieJar, Json<serde_json::Value>), super::sign_in::StepError> {
    check_origin(&app, &headers)?;
    let key = app.limits.key(app.limits.client_ip(peer, &headers));
    app.limits
        .login(key)
        .map_err(|wait| ApiError::TooMany(wait.seconds()))?;
    // A new session on every login; the previous one from this browser is revoked.
    if let Some(old) = jar.get(app.session_cookie()) {
        app.accounts.revoke(old.value()).await;
    }
    // The user with the session cookie, or the sign-in's next step (`http::sign_in`).
    let sign_in = app
        .accounts
        .login_from(key, &body.username, &body.password)
        .await
        .map_err(|e| match e {
            AuthError::Invalid(_) | AuthError::BadCode => ApiError::Unauthorized.into(),
            e => super::sign_in::auth_error(e),
        })?;
    Ok(super::sign_in::answer(&app, jar, sign_in, Vec::new()))
}

pub async fn logout(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<(CookieJar, StatusCode), ApiError> {
    check_origin(&app, &headers)?;
    if let Some(c) = jar.get(app.session_cookie()) {
        app.accounts.revoke(c.value()).await;
    }
    let jar = jar.remove(Cookie::build(app.session_cookie()).path("/"));
    Ok((jar, StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
pub struct SetupBody {
    code: String,
    username: String,
    display_name: String,
    password: String,
}

pub async fn setup(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(body): Json<SetupBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_origin(&app, &headers)?;
    match app
        .accounts
        .setup(
            &body.code,
            &body.username,
            &body.display_name,
            &body.password,
        )
        .await
    {
        Ok(user) => {
            tracing::info!(user = %user.id, "first admin created by setup");
            Ok(Json(me_json(&user)))
        }
        Err(AuthError::SetupUnavailable) => Err(ApiError::Forbidden),
        Err(AuthError::Invalid(why)) => Err(ApiError::Invalid(why)),
        Err(AuthError::Exists) => Err(ApiError::Conflict),
        Err(_) => Err(ApiError::Unavailable),
    }
}

pub(crate) fn me_json(user: &User) -> serde_json::Value {
    json!({"id": user.id, "name": user.display_name, "username": user.username, "role": user.role})
}

/// The signed-in user, and what this gateway offers them: `flagging` says whether emergency
/// flagging is on (an escalation key is set), so that the coordinator view says it is off
/// instead of asking for records that cannot exist.
pub async fn me(
    State(app): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Json<serde_json::Value> {
    let mut me = me_json(&user);
    me["flagging"] = json!(app.engine.escalations.is_some());
    Json(me)
}

pub async fn colleagues(
    State(app): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    app.engine
        .colleagues(user.id)
        .await
        .map(Json)
        .map_err(|_| ApiError::Unavailable)
}

pub async fn dashboard(
    State(app): State<Arc<AppState>>,
    _c: Coordinator,
) -> Result<Json<crate::engine::stats::Dashboard>, ApiError> {
    app.engine
        .dashboard()
        .await
        .map(Json)
        .map_err(|_| ApiError::Unavailable)
}

/// How often the coordinator view is refreshed.
const DASHBOARD_INTERVAL: Duration = Duration::from_secs(1);

pub async fn dashboard_stream(
    State(app): State<Arc<AppState>>,
    jar: CookieJar,
    _c: Coordinator,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let token = jar
        .get(app.session_cookie())
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let stream =
        futures_util::stream::unfold((app, token, true), |(app, token, first)| async move {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(DASHBOARD_INTERVAL) => {}
                    _ = app.shutdown.cancelled() => return None,
                }
            }
            if !app.accounts.session_live(&token).await {
                return None;
            }
            let event = match app.engine.dashboard().await {
                Ok(d) => Event::default()
                    .event("stats")
                    .json_data(&d)
                    .unwrap_or_else(|_| Event::default().event("error")),
                Err(_) => Event::default().event("unavailable").data("{}"),
            };
            Some((Ok(event), (app, token, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Who did something, as recorded in escalation records and the audit trail: the account's id,
/// and its name and role as shown.
fn actor(user: &User) -> crate::escalation::Actor {
    crate::escalation::Actor::account(
        user.id,
        format!("{} ({})", user.display_name, user.role.as_str()),
    )
}

pub(crate) fn parse_id(id: &str) -> Result<Ulid, ApiError> {
    Ulid::from_string(id).map_err(|_| ApiError::Invalid("id"))
}

/// The response for an action the engine refused.
pub(super) fn engine_error(err: EngineError) -> ApiError {
    match err {
        EngineError::NotFound | EngineError::NotYours => ApiError::NotFound,
        EngineError::UnknownCategory | EngineError::NoReason | EngineError::ReasonTooLong => {
            ApiError::Invalid("category or reason")
        }
        EngineError::WrongState(_) => ApiError::Conflict,
        EngineError::FlaggingDisabled => ApiError::NotEnabled,
        EngineError::AtCapacity | EngineError::RecordUnavailable | EngineError::Store(_) => {
            ApiError::Unavailable
        }
    }
}

/// Live conversations without content, for coordinators.
pub async fn conversations(
    State(app): State<Arc<AppState>>,
    _c: Coordinator,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let mut convs = app
        .engine
        .conversations()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    convs.sort_by_key(|c| c.created_at);
    Ok(Json(
        convs
            .iter()
            .map(|c| {
                let emergency = c.emergency.as_ref().map(|e| {
                    json!({"open": e.open, "categories": e.categories, "raised_at": e.raised_at,
                           "raised_by": e.raised_by,
                           "acknowledged_by": app.engine.emergency_acknowledged_by(c.id)})
                });
                json!({
                    "id": c.id, "state": c.state.kind(), "channel": c.channel,
                    "language": c.language, "operator": c.operator_name,
                    "started_at": c.created_at, "emergency": emergency,
                })
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
pub struct FlagBody {
    category: String,
    reason: String,
}

pub async fn raise_flag(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Path(id): Path<String>,
    Json(body): Json<FlagBody>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let id = parse_id(&id)?;
    app.engine
        .flag(None, &actor(&user), id, body.category, body.reason, None)
        .await
        .map_err(engine_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ClearBody {
    reason: String,
}

pub async fn clear_flag(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Path(id): Path<String>,
    Json(body): Json<ClearBody>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let id = parse_id(&id)?;
    app.engine
        .clear_flag(&actor(&user), id, body.reason)
        .await
        .map_err(engine_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct OverloadedBody {
    on: bool,
}

/// Switches overloaded mode (coordinators and admins): waiting people are told about other
/// helplines, new phone calls are turned away politely.
pub async fn set_overloaded(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Json(body): Json<OverloadedBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_origin(&app, &headers)?;
    app.engine.set_overloaded(body.on, &user.id.to_string());
    super::directory::persist_overloaded(&app, &user, body.on).await;
    Ok(Json(json!({ "overloaded": app.engine.is_overloaded() })))
}

/// The escalation records; with flagging off, 404 `not_enabled` (there are none, and asking
/// again will not change that: `GET /api/me` says so up front).
fn escalations(app: &AppState) -> Result<&crate::escalation::Escalations, ApiError> {
    app.engine
        .escalations
        .as_deref()
        .ok_or(ApiError::NotEnabled)
}

pub async fn list_escalations(
    State(app): State<Arc<AppState>>,
    Coordinator(user): Coordinator,
) -> Result<Json<Vec<crate::escalation::RecordSummary>>, ApiError> {
    escalations(&app)?
        .list(&actor(&user))
        .await
        .map(Json)
        .map_err(|_| ApiError::Unavailable)
}

pub async fn read_escalation(
    State(app): State<Arc<AppState>>,
    Coordinator(user): Coordinator,
    Path(id): Path<String>,
) -> Result<Json<crate::escalation::Record>, ApiError> {
    let id = parse_id(&id)?;
    escalations(&app)?
        .read(id, &actor(&user))
        .await
        .map(Json)
        .map_err(|e| match e {
            crate::escalation::EscalationError::NotFound => ApiError::NotFound,
            _ => ApiError::Unavailable,
        })
}

pub async fn audit(
    State(app): State<Arc<AppState>>,
    _a: Admin,
) -> Result<Json<Vec<crate::escalation::AuditEntry>>, ApiError> {
    escalations(&app)?
        .audit_trail()
        .await
        .map(Json)
        .map_err(|_| ApiError::Unavailable)
}

/// An admin ends every session of a user; their open console closes at once (4010).
pub async fn revoke_user(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_origin(&app, &headers)?;
    let id = parse_id(&id)?;
    app.accounts.user(id).ok_or(ApiError::NotFound)?;
    let revoked = app.accounts.revoke_user(id).await;
    app.engine.to_operator(
        id,
        crate::engine::Outbound::Close(crate::protocol::close::REVOKED, "session revoked"),
    );
    tracing::info!(user = %id, by = %admin.id, sessions = revoked, "sessions revoked by an admin");
    Ok(Json(json!({ "revoked": revoked })))
}

/// Webhook requests per source address (LINE, telephony): 429 with `Retry-After` over it.
pub async fn limit_webhooks(
    State(app): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path().starts_with("/connectors/") {
        let key = app.limits.key(app.limits.client_ip(peer, req.headers()));
        if let Err(wait) = app.limits.webhook(key) {
            return ApiError::TooMany(wait.seconds()).into_response();
        }
    }
    next.run(req).await
}
