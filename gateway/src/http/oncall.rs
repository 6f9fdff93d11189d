//! The on-call API (`/api/oncall/*`, coordinators and admins only, every change audited): who
//! is on call now, the weekly schedule, overrides, each person's channels, recent alerts and
//! the alert audit trail; acknowledging an alert from the console (`/api/alerts/{id}/ack`: one
//! acknowledgement for the coordinator view's alert and the paged alert), and from the
//! single-use link in an e-mail or a LINE message (`/api/alerts/ack/{token}`: GET shows a
//! confirmation page, so a link prefetcher acknowledges nothing; POST acknowledges; both
//! rate-limited per client address, `limits.ack_links_per_minute`), and by key press on an alert
//! call (`/api/alerts/call/{token}`: the TwiML the telephony provider fetches, signed like its
//! webhooks; `/api/alerts/call/{token}/key`: the `<Gather>` result, 1 acknowledges). A
//! coordinator links their own LINE account with a one-time code (`/api/oncall/line/code`) and
//! any coordinator can unlink one (`DELETE /api/oncall/line/{account}`).

use std::sync::Arc;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use ulid::Ulid;

use super::api::{check_origin, engine_error, ApiError, Coordinator};
use crate::auth::User;
use crate::connectors::voice::alert_call;
use crate::db::{AlertAuditRow, ChannelsRow, OverrideRow, ScheduleRow};
use crate::oncall::{rota, Acked, Oncall, WebhookFormat};
use crate::state::AppState;

/// At most this many weekly ranges, and overrides in force or to come.
const MAX_RANGES: usize = 500;
const MAX_OVERRIDES: usize = 200;
/// An override lasts at most this long.
const MAX_OVERRIDE_MS: u64 = 90 * 24 * 60 * 60_000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/oncall", get(overview))
        .route("/api/oncall/schedule", put(replace_schedule))
        .route("/api/oncall/overrides", post(add_override))
        .route("/api/oncall/overrides/{id}", delete(delete_override))
        .route("/api/oncall/channels/{account}", put(set_channels))
        .route("/api/oncall/alerts", get(alerts))
        .route("/api/oncall/audit", get(audit))
        .route("/api/alerts/{id}/ack", post(ack_alert))
        .route(
            "/api/alerts/ack/{token}",
            get(confirm_page).post(ack_by_link),
        )
        .route("/api/oncall/line/code", post(line_code))
        .route("/api/oncall/line/{account}", delete(line_unlink))
        .route("/api/alerts/call/{token}", post(call_twiml))
        .route("/api/alerts/call/{token}/key", post(call_key))
}

fn oncall(app: &AppState) -> Result<&Arc<Oncall>, ApiError> {
    app.engine.oncall.as_ref().ok_or(ApiError::NotEnabled)
}

fn db_error(e: crate::db::DbError) -> ApiError {
    tracing::error!(error = %e, "on-call database error");
    ApiError::Unavailable
}

fn audit_row(app: &Oncall, user: &User, action: &str, detail: String) -> AlertAuditRow {
    AlertAuditRow {
        actor_id: Some(user.id),
        actor_name: user.display_name.clone(),
        detail: Some(detail),
        ..AlertAuditRow::system(app.now_ms(), action, None)
    }
}

/// Who is on call now, the schedule, overrides in force or to come, everyone's channels (the
/// webhook's secret only by name), and the accounts that can be put on the rota.
async fn overview(
    State(app): State<Arc<AppState>>,
    Coordinator(_): Coordinator,
) -> Result<Json<Value>, ApiError> {
    let oc = oncall(&app)?;
    let db = oc.db();
    let now = oc.now_ms();
    let on_call = oc.on_call_now().await.map_err(db_error)?;
    let schedule = db.oncall_schedule().await.map_err(db_error)?;
    let overrides = db.oncall_overrides(now).await.map_err(db_error)?;
    let channels = db.oncall_channels().await.map_err(db_error)?;
    let line_linked = db.line_linked_accounts().await.map_err(db_error)?;
    let accounts = db.accounts().await.map_err(db_error)?;
    Ok(Json(json!({
        "now": now,
        "on_call": on_call,
        "schedule": schedule.iter().map(|r| json!({
            "id": r.id.to_string(), "account": r.account_id.to_string(), "weekday": r.weekday,
            "start_minute": r.start_minute, "end_minute": r.end_minute, "position": r.position,
        })).collect::<Vec<_>>(),
        "overrides": overrides.iter().map(|o| json!({
            "id": o.id.to_string(), "account": o.account_id.to_string(),
            "starts_at": o.starts_at, "ends_at": o.ends_at,
        })).collect::<Vec<_>>(),
        "channels": channels.iter().map(|c| json!({
            "account": c.account_id.to_string(), "email": c.email, "webhook_url": c.webhook_url,
            "webhook_format": c.webhook_format, "webhook_secret_ref": c.webhook_secret_ref,
            "line_enabled": c.line_enabled, "phone": c.phone,
        })).collect::<Vec<_>>(),
        "line_linked": line_linked.iter().map(Ulid::to_string).collect::<Vec<_>>(),
        "line_available": app.line.is_some(),
        "phone_available": app.voice.is_some(),
        "accounts": accounts.iter().filter(|a| a.disabled_at.is_none()).map(|a| json!({
            "id": a.id.to_string(), "name": a.display_name, "role": a.role,
        })).collect::<Vec<_>>(),
        "webhook_secrets": oc.settings().webhook_secrets.keys().collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct RangeIn {
    account: String,
    weekday: u8,
    start_minute: u16,
    end_minute: u16,
    #[serde(default)]
    position: i64,
}

#[derive(Deserialize)]
struct ScheduleIn {
    ranges: Vec<RangeIn>,
}

/// An account that exists and is not disabled.
async fn known_account(oc: &Oncall, id: &str) -> Result<Ulid, ApiError> {
    let id = Ulid::from_string(id).map_err(|_| ApiError::Invalid("account"))?;
    match oc.db().account(id).await.map_err(db_error)? {
        Some(a) if a.disabled_at.is_none() => Ok(id),
        _ => Err(ApiError::Invalid("account")),
    }
}

/// Replaces the whole weekly schedule.
async fn replace_schedule(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Json(body): Json<ScheduleIn>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let oc = oncall(&app)?;
    if body.ranges.len() > MAX_RANGES {
        return Err(ApiError::Invalid("too many ranges"));
    }
    let mut rows = Vec::with_capacity(body.ranges.len());
    for r in &body.ranges {
        if !rota::valid_range(r.weekday, r.start_minute, r.end_minute) {
            return Err(ApiError::Invalid("range"));
        }
        rows.push(ScheduleRow {
            id: Ulid::new(),
            account_id: known_account(oc, &r.account).await?,
            weekday: r.weekday,
            start_minute: r.start_minute,
            end_minute: r.end_minute,
            position: r.position,
        });
    }
    let audit = audit_row(
        oc,
        &user,
        "rota_schedule_set",
        format!("{} ranges", rows.len()),
    );
    oc.db()
        .replace_oncall_schedule(&rows, &audit)
        .await
        .map_err(db_error)?;
    tracing::info!(by = %user.id, ranges = rows.len(), "on-call schedule replaced");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct OverrideIn {
    account: String,
    starts_at: u64,
    ends_at: u64,
}

async fn add_override(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Json(body): Json<OverrideIn>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_origin(&app, &headers)?;
    let oc = oncall(&app)?;
    if body.ends_at <= body.starts_at || body.ends_at - body.starts_at > MAX_OVERRIDE_MS {
        return Err(ApiError::Invalid("override times"));
    }
    let now = oc.now_ms();
    if body.ends_at <= now {
        return Err(ApiError::Invalid("override times"));
    }
    if oc.db().oncall_overrides(now).await.map_err(db_error)?.len() >= MAX_OVERRIDES {
        return Err(ApiError::Invalid("too many overrides"));
    }
    let row = OverrideRow {
        id: Ulid::new(),
        account_id: known_account(oc, &body.account).await?,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        created_at: now,
    };
    let audit = audit_row(
        oc,
        &user,
        "rota_override_added",
        format!("{} for {}", row.account_id, row.ends_at - row.starts_at),
    );
    oc.db()
        .insert_oncall_override(&row, &audit)
        .await
        .map_err(db_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": row.id.to_string() })),
    ))
}

async fn delete_override(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let oc = oncall(&app)?;
    let id = Ulid::from_string(&id).map_err(|_| ApiError::Invalid("override id"))?;
    let audit = audit_row(oc, &user, "rota_override_deleted", id.to_string());
    deleted(oc.db().delete_oncall_override(id, &audit).await)
}

/// 204 for a deletion done, 404 for nothing to delete.
fn deleted(done: Result<bool, crate::db::DbError>) -> Result<StatusCode, ApiError> {
    match done.map_err(db_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound),
    }
}

#[derive(Deserialize)]
struct ChannelsIn {
    email: Option<String>,
    webhook_url: Option<String>,
    webhook_format: Option<String>,
    webhook_secret_ref: Option<String>,
    /// Whether a linked LINE account is paged (default: yes).
    line: Option<bool>,
    phone: Option<String>,
}

/// `Some(trimmed)` unless empty.
fn given(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Sets one person's channels. The audit trail says which channels, not the addresses.
async fn set_channels(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Path(account): Path<String>,
    Json(body): Json<ChannelsIn>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let oc = oncall(&app)?;
    let account = known_account(oc, &account).await?;
    let email = given(body.email);
    if let Some(e) = &email {
        if e.len() > 254 || e.parse::<lettre::Address>().is_err() {
            return Err(ApiError::Invalid("email"));
        }
    }
    let webhook_url = given(body.webhook_url);
    if let Some(u) = &webhook_url {
        let ok = u.len() <= 2048
            && reqwest::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https"));
        if !ok {
            return Err(ApiError::Invalid("webhook_url"));
        }
    }
    let webhook_format = given(body.webhook_format);
    if webhook_format
        .as_deref()
        .is_some_and(|f| WebhookFormat::parse(f).is_none())
    {
        return Err(ApiError::Invalid("webhook_format"));
    }
    let webhook_secret_ref = given(body.webhook_secret_ref);
    if webhook_secret_ref
        .as_deref()
        .is_some_and(|r| !oc.settings().webhook_secrets.contains_key(r))
    {
        return Err(ApiError::Invalid("webhook_secret_ref"));
    }
    let phone = given(body.phone);
    if phone.as_deref().is_some_and(|p| {
        !matches!(
            crate::phone::Target::parse(p),
            Some(crate::phone::Target::Number(_))
        )
    }) {
        return Err(ApiError::Invalid("phone"));
    }
    let line_enabled = body.line.unwrap_or(true);
    let on = |b: bool| if b { "on" } else { "off" };
    let detail = format!(
        "{account}: email {}, line {}, phone {}, webhook {}",
        on(email.is_some()),
        on(line_enabled),
        on(phone.is_some()),
        webhook_url
            .as_ref()
            .map_or("off".to_owned(), |_| webhook_format
                .clone()
                .unwrap_or_else(|| "generic".into())),
    );
    let row = ChannelsRow {
        account_id: account,
        email,
        webhook_url,
        webhook_format,
        webhook_secret_ref,
        line_enabled,
        phone,
        updated_at: oc.now_ms(),
    };
    let audit = audit_row(oc, &user, "rota_channels_set", detail);
    oc.db()
        .set_oncall_channels(&row, &audit)
        .await
        .map_err(db_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Recent alerts with their acknowledgement and escalation state.
async fn alerts(
    State(app): State<Arc<AppState>>,
    Coordinator(_): Coordinator,
) -> Result<Json<Value>, ApiError> {
    let oc = oncall(&app)?;
    let rows = oc.db().recent_alerts(50).await.map_err(db_error)?;
    Ok(Json(json!({
        "alerts": rows.iter().map(|a| json!({
            "id": a.id.to_string(), "kind": a.kind, "severity": a.severity,
            "category": a.category, "value": a.value, "waiting": a.waiting,
            "started_at": a.started_at, "acknowledged_at": a.acknowledged_at,
            "acknowledged_by": a.acknowledged_name, "acknowledged_channel": a.acknowledged_channel,
            "level": a.level,
        })).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
struct AuditQuery {
    alert: Option<String>,
}

/// The alert audit trail (of one alert, or the latest entries).
async fn audit(
    State(app): State<Arc<AppState>>,
    Coordinator(_): Coordinator,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let oc = oncall(&app)?;
    let alert = q
        .alert
        .map(|a| Ulid::from_string(&a).map_err(|_| ApiError::Invalid("alert")))
        .transpose()?;
    let rows = oc.db().alert_audit(alert, 1000).await.map_err(db_error)?;
    Ok(Json(json!({
        "entries": rows.iter().map(|r| json!({
            "at": r.at, "actor_id": r.actor_id.map(|i| i.to_string()), "actor": r.actor_name,
            "action": r.action, "alert": r.alert_id.map(|i| i.to_string()),
            "channel": r.channel, "detail": r.detail,
        })).collect::<Vec<_>>()
    })))
}

/// Acknowledges an alert from the console: the coordinator view's help or emergency alert
/// (written to the escalation record first, as before) and the paged alert of the same id.
async fn ack_alert(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let id = Ulid::from_string(&id).map_err(|_| ApiError::Invalid("alert id"))?;
    let by = crate::escalation::Actor::account(user.id, &user.display_name);
    let shown = app.engine.ack_alert(id, &by).await.map_err(engine_error)?;
    let paged = match &app.engine.oncall {
        Some(oc) => oc
            .acknowledge(id, Some(user.id), &user.display_name, "console")
            .await
            .map_err(db_error)?,
        None => Acked::Unknown,
    };
    if shown || paged != Acked::Unknown {
        tracing::info!(alert = %id, by = %user.id, "alert acknowledged");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A page in both languages (no script, no inline style: the CSP allows neither).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    (status, Html(html)).into_response()
}

/// Only hex tokens of the length we issue are looked up.
fn token_shape(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

const GONE_TITLE: &str = "このリンクは使用済みか期限切れです / This link was used or has expired";

/// The confirmation page of an acknowledgement link: what the alert is, and a button.
async fn confirm_page(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    limit_ack(&app, peer, &headers)?;
    let oc = oncall(&app)?;
    let alert = if token_shape(&token) {
        oc.peek_link(&token).await.map_err(db_error)?
    } else {
        None
    };
    let Some(a) = alert else {
        return Ok(page(
            StatusCode::GONE,
            GONE_TITLE,
            "<p>コーディネーター画面から確認してください。 / Please acknowledge from the coordinator view.</p>",
        ));
    };
    // Kind and severity are our own words (snake_case), safe in HTML.
    let body = format!(
        "<p>アラート / Alert: {} ({})</p>\
         <form method=\"post\"><button type=\"submit\">確認しました / Acknowledge</button></form>",
        a.kind, a.severity
    );
    Ok(page(
        StatusCode::OK,
        "アラートの確認 / Acknowledge the alert",
        &body,
    ))
}

/// Uses an acknowledgement link: once, before it expires.
async fn ack_by_link(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    limit_ack(&app, peer, &headers)?;
    let oc = oncall(&app)?;
    let used = if token_shape(&token) {
        oc.use_link(&token).await.map_err(db_error)?
    } else {
        None
    };
    let Some((alert, account, channel)) = used else {
        return Ok(page(StatusCode::GONE, GONE_TITLE, ""));
    };
    let via = match channel.as_str() {
        "line" => "line_link",
        _ => "email_link",
    };
    let acked = acknowledge_as(&app, oc, alert, account, via).await?;
    let title = match acked {
        Acked::Now => "確認しました / Acknowledged",
        _ => "確認済みです / Already acknowledged",
    };
    Ok(page(StatusCode::OK, title, ""))
}

/// Acknowledges `alert` as `account` from `via` (a link or a call): the coordinator view's
/// alert and the paged one.
async fn acknowledge_as(
    app: &AppState,
    oc: &Oncall,
    alert: Ulid,
    account: Ulid,
    via: &str,
) -> Result<Acked, ApiError> {
    let name = match oc.db().account(account).await.map_err(db_error)? {
        Some(a) => a.display_name,
        None => "(deleted account)".to_owned(),
    };
    let by = crate::escalation::Actor::account(account, &name);
    if let Err(e) = app.engine.ack_alert(alert, &by).await {
        tracing::warn!(alert = %alert, via, error = %e, "the coordinator view's alert could not be acknowledged");
    }
    oc.acknowledge(alert, Some(account), &name, via)
        .await
        .map_err(db_error)
}

/// The per-address limit of the unauthenticated acknowledgement links.
fn limit_ack(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let key = app.limits.key(app.limits.client_ip(peer, headers));
    app.limits
        .ack_link(key)
        .map_err(|wait| ApiError::TooMany(wait.seconds()))
}

/// A one-time code for linking the signed-in coordinator's own LINE account: they send it to
/// the organisation's LINE official account within `alerts.line_code_ttl_ms`.
async fn line_code(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
) -> Result<Json<Value>, ApiError> {
    check_origin(&app, &headers)?;
    let oc = oncall(&app)?;
    if app.line.is_none() {
        return Err(ApiError::NotEnabled);
    }
    match oc
        .new_line_code(user.id, &user.display_name)
        .await
        .map_err(db_error)?
    {
        Some((code, expires_at)) => Ok(Json(json!({ "code": code, "expires_at": expires_at }))),
        None => Err(ApiError::TooMany(3600)),
    }
}

/// Unlinks an account's LINE account (the coordinator's own, or anyone's by a coordinator).
async fn line_unlink(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Coordinator(user): Coordinator,
    Path(account): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let oc = oncall(&app)?;
    let account = Ulid::from_string(&account).map_err(|_| ApiError::Invalid("account"))?;
    let audit = AlertAuditRow {
        channel: Some("line".into()),
        ..audit_row(oc, &user, "line_unlinked", account.to_string())
    };
    deleted(oc.db().delete_line_link(account, &audit).await)
}

/// A request from the telephony provider about an alert call, its signature checked over
/// the URL the provider was given: the form's fields, or the status to answer.
fn provider_form(
    app: &AppState,
    oc: &Oncall,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, StatusCode> {
    let Some(voice) = app.voice.as_ref() else {
        return Err(StatusCode::NOT_FOUND);
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let sig = headers.get("x-twilio-signature").map(|v| v.as_bytes());
    let url = format!("{}{path}", oc.phone_base());
    if !voice.signed_by_provider(&url, &params, sig) {
        tracing::warn!(
            bytes = body.len(),
            signed = sig.is_some(),
            "alert call request refused: signature does not match"
        );
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(params)
}

fn twiml(doc: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        doc,
    )
        .into_response()
}

/// The TwiML of an alert call: the alert spoken in Japanese, then a `<Gather>` of one key whose
/// action acknowledges it. Never a recording.
async fn call_twiml(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let oc = oncall(&app)?;
    let path = format!("/api/alerts/call/{token}");
    if let Err(status) = provider_form(&app, oc, &path, &headers, &body) {
        return Ok(status.into_response());
    }
    let alert = if token_shape(&token) {
        oc.peek_link(&token).await.map_err(db_error)?
    } else {
        None
    };
    let Some(a) = alert else {
        return Ok(twiml(alert_call::gone()));
    };
    let msg = crate::oncall::Message {
        alert: &a,
        now: oc.now_ms(),
        console_url: String::new(),
        ack_url: None,
        ack_hours: 0,
    };
    let action = format!("{}{path}/key", oc.phone_base());
    Ok(twiml(alert_call::alert(&msg.spoken(), &action)))
}

/// The key pressed on an alert call: 1 acknowledges (once); anything else hears it again.
async fn call_key(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let oc = oncall(&app)?;
    let path = format!("/api/alerts/call/{token}/key");
    let params = match provider_form(&app, oc, &path, &headers, &body) {
        Ok(p) => p,
        Err(status) => return Ok(status.into_response()),
    };
    let digits = params
        .iter()
        .find(|(k, _)| k == "Digits")
        .map(|(_, v)| v.as_str());
    if digits != Some("1") {
        let again = format!("{}/api/alerts/call/{token}", oc.phone_base());
        return Ok(twiml(alert_call::again(&again)));
    }
    let used = if token_shape(&token) {
        oc.use_link(&token).await.map_err(db_error)?
    } else {
        None
    };
    let Some((alert, account, _)) = used else {
        return Ok(twiml(alert_call::gone()));
    };
    let acked = acknowledge_as(&app, oc, alert, account, "phone").await?;
    Ok(twiml(alert_call::acknowledged(acked == Acked::Now)))
}
