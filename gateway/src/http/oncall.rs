//! The on-call API (`/api/oncall/*`, coordinators and admins only, every change audited): who
//! is on call now, the weekly schedule, overrides, each person's channels, recent alerts and
//! the alert audit trail; acknowledging an alert from the console (`/api/alerts/{id}/ack`: one
//! acknowledgement for the coordinator view's alert and the paged alert), and from the
//! single-use link in an e-mail (`/api/alerts/ack/{token}`: GET shows a confirmation page, so a
//! link prefetcher acknowledges nothing; POST acknowledges).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use ulid::Ulid;

use super::api::{check_origin, engine_error, ApiError, Coordinator};
use crate::auth::User;
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
        })).collect::<Vec<_>>(),
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
    if oc
        .db()
        .delete_oncall_override(id, &audit)
        .await
        .map_err(db_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Deserialize)]
struct ChannelsIn {
    email: Option<String>,
    webhook_url: Option<String>,
    webhook_format: Option<String>,
    webhook_secret_ref: Option<String>,
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
    let detail = format!(
        "{account}: email {}, webhook {}",
        if email.is_some() { "on" } else { "off" },
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
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
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
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let oc = oncall(&app)?;
    let used = if token_shape(&token) {
        oc.use_link(&token).await.map_err(db_error)?
    } else {
        None
    };
    let Some((alert, account)) = used else {
        return Ok(page(StatusCode::GONE, GONE_TITLE, ""));
    };
    let name = match oc.db().account(account).await.map_err(db_error)? {
        Some(a) => a.display_name,
        None => "(deleted account)".to_owned(),
    };
    let by = crate::escalation::Actor::account(account, &name);
    if let Err(e) = app.engine.ack_alert(alert, &by).await {
        tracing::warn!(alert = %alert, error = %e, "the coordinator view's alert could not be acknowledged by link");
    }
    let acked = oc
        .acknowledge(alert, Some(account), &name, "email_link")
        .await
        .map_err(db_error)?;
    let title = match acked {
        Acked::Now => "確認しました / Acknowledged",
        _ => "確認済みです / Already acknowledged",
    };
    Ok(page(StatusCode::OK, title, ""))
}
