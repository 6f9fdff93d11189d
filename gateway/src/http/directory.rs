//! The referral directory, canned phrases and runtime settings over HTTP (issue 20).
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /api/directory?topic=&region=&lang=` | signed in | visible entries matching, each with `open_now` (JST) |
//! | `GET /api/phrases` | signed in | visible phrases, in order |
//! | `GET /api/helplines?lang=` | anyone (the widget) | the closing helplines in a language: `[{name, number, note}]` |
//! | `GET/POST /api/admin/directory`, `PUT /api/admin/directory/{id}` | admin | every entry; add; edit (hide, verify, mark for closing are fields) |
//! | `POST /api/admin/directory/order` | admin | `{"ids": [...]}`, every id once |
//! | `GET /api/admin/directory.csv`, `POST /api/admin/directory/import` | admin | export; import `{"csv": "..."}` (all or nothing) |
//! | the same four under `/api/admin/phrases` | admin | phrases |
//! | `GET/PUT /api/admin/settings` | admin | `{"overloaded", "min_on_duty"}` in force (and the configured defaults) |
//! | `GET /api/admin/directory/audit` | admin | the admin audit trail of these, newest first |
//!
//! Every change is audited in the database (`admin_audit`: actor, action, entry id). A change
//! takes effect on this node at once and on others within `directory.poll_ms`. Invalid input
//! is 400 `invalid` with a `detail` naming the field (or the CSV line) and what is wrong.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::api::{Admin, ApiError, CurrentUser};
use crate::auth::User;
use crate::directory::{Actor, DirectoryError, EntryView, Helpline, PhraseInput, ReferralInput};
use crate::state::AppState;

/// The routes of this module, merged into the gateway's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/directory", get(search))
        .route("/api/phrases", get(phrases))
        .route("/api/helplines", get(helplines))
        .route("/api/admin/directory", get(all_entries).post(add_entry))
        .route("/api/admin/directory/{id}", put(edit_entry))
        .route("/api/admin/directory/order", post(order_entries))
        .route("/api/admin/directory.csv", get(export_entries))
        .route("/api/admin/directory/import", post(import_entries))
        .route("/api/admin/directory/audit", get(audit))
        .route("/api/admin/phrases", get(all_phrases).post(add_phrase))
        .route("/api/admin/phrases/{id}", put(edit_phrase))
        .route("/api/admin/phrases/order", post(order_phrases))
        .route("/api/admin/phrases.csv", get(export_phrases))
        .route("/api/admin/phrases/import", post(import_phrases))
        .route("/api/admin/settings", get(settings).put(put_settings))
}

/// A failed request: the API's usual errors, or invalid input with its reason.
pub enum Error {
    Api(ApiError),
    Invalid(String),
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(e)
    }
}

impl From<DirectoryError> for Error {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid(why) => Error::Invalid(why),
            DirectoryError::NotFound => Error::Api(ApiError::NotFound),
            DirectoryError::Db(e) => {
                tracing::warn!(error = %e, "directory: database");
                Error::Api(ApiError::Unavailable)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Api(e) => e.into_response(),
            Error::Invalid(why) => (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "invalid", "detail": why })),
            )
                .into_response(),
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

fn actor(user: &User) -> Actor {
    Actor {
        id: user.id.to_string(),
        name: user.display_name.clone(),
    }
}

/// Changes must come from an allowed origin (as every mutating request of the API).
fn origin(app: &AppState, headers: &HeaderMap) -> Result<()> {
    if crate::ws::origin_allowed(headers, &app.settings.server) {
        Ok(())
    } else {
        Err(ApiError::BadOrigin.into())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SearchQuery {
    topic: String,
    region: String,
    lang: String,
}

pub async fn search(
    State(app): State<Arc<AppState>>,
    _user: CurrentUser,
    Query(q): Query<SearchQuery>,
) -> Json<Vec<EntryView>> {
    Json(app.directory.search(&q.topic, &q.region, &q.lang))
}

pub async fn phrases(
    State(app): State<Arc<AppState>>,
    _user: CurrentUser,
) -> Json<Vec<crate::db::PhraseRecord>> {
    Json(app.directory.phrases(false))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LangQuery {
    lang: String,
}

/// The helplines the widget lists when a conversation closes (and beside the queue), in the
/// person's language. Public: the same list every visitor of the widget sees.
pub async fn helplines(
    State(app): State<Arc<AppState>>,
    Query(q): Query<LangQuery>,
) -> Json<Vec<Helpline>> {
    let lang: String = q.lang.chars().take(16).collect();
    Json(app.engine.closing_helplines(&lang))
}

pub async fn all_entries(State(app): State<Arc<AppState>>, _a: Admin) -> Json<Vec<EntryView>> {
    Json(app.directory.all_referrals())
}

pub async fn add_entry(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(input): Json<ReferralInput>,
) -> Result<(StatusCode, Json<EntryView>)> {
    origin(&app, &headers)?;
    let e = app
        .directory
        .put_referral(None, input, &actor(&user))
        .await?;
    Ok((StatusCode::CREATED, Json(e)))
}

pub async fn edit_entry(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Path(id): Path<String>,
    Json(input): Json<ReferralInput>,
) -> Result<Json<EntryView>> {
    origin(&app, &headers)?;
    let e = app
        .directory
        .put_referral(Some(&id), input, &actor(&user))
        .await?;
    Ok(Json(e))
}

#[derive(Deserialize)]
pub struct OrderBody {
    ids: Vec<String>,
}

pub async fn order_entries(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<OrderBody>,
) -> Result<StatusCode> {
    origin(&app, &headers)?;
    app.directory
        .order_referrals(&body.ids, &actor(&user))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn csv_file(name: &str, text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        text,
    )
        .into_response()
}

pub async fn export_entries(State(app): State<Arc<AppState>>, _a: Admin) -> Result<Response> {
    Ok(csv_file(
        "tsunagu-directory.csv",
        app.directory.export_referrals()?,
    ))
}

#[derive(Deserialize)]
pub struct ImportBody {
    csv: String,
}

pub async fn import_entries(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<ImportBody>,
) -> Result<Json<serde_json::Value>> {
    origin(&app, &headers)?;
    let n = app
        .directory
        .import_referrals(&body.csv, &actor(&user))
        .await?;
    Ok(Json(json!({ "imported": n })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    limit: Option<u32>,
}

pub async fn audit(
    State(app): State<Arc<AppState>>,
    _a: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<crate::db::AdminAudit>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let rows = app
        .directory
        .audit_trail(limit)
        .await
        .map_err(DirectoryError::from)?;
    Ok(Json(rows))
}

pub async fn all_phrases(
    State(app): State<Arc<AppState>>,
    _a: Admin,
) -> Json<Vec<crate::db::PhraseRecord>> {
    Json(app.directory.phrases(true))
}

pub async fn add_phrase(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(input): Json<PhraseInput>,
) -> Result<(StatusCode, Json<crate::db::PhraseRecord>)> {
    origin(&app, &headers)?;
    let p = app.directory.put_phrase(None, input, &actor(&user)).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

pub async fn edit_phrase(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Path(id): Path<String>,
    Json(input): Json<PhraseInput>,
) -> Result<Json<crate::db::PhraseRecord>> {
    origin(&app, &headers)?;
    let p = app
        .directory
        .put_phrase(Some(&id), input, &actor(&user))
        .await?;
    Ok(Json(p))
}

pub async fn order_phrases(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<OrderBody>,
) -> Result<StatusCode> {
    origin(&app, &headers)?;
    app.directory
        .order_phrases(&body.ids, &actor(&user))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn export_phrases(State(app): State<Arc<AppState>>, _a: Admin) -> Result<Response> {
    Ok(csv_file(
        "tsunagu-phrases.csv",
        app.directory.export_phrases()?,
    ))
}

pub async fn import_phrases(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<ImportBody>,
) -> Result<Json<serde_json::Value>> {
    origin(&app, &headers)?;
    let n = app
        .directory
        .import_phrases(&body.csv, &actor(&user))
        .await?;
    Ok(Json(json!({ "imported": n })))
}

fn settings_json(app: &AppState) -> serde_json::Value {
    let d = app.directory.defaults();
    json!({
        "overloaded": app.engine.is_overloaded(),
        "min_on_duty": app.engine.min_on_duty(),
        "defaults": { "min_on_duty": d.min_on_duty },
        "max_min_on_duty": crate::directory::MAX_MIN_ON_DUTY,
    })
}

pub async fn settings(State(app): State<Arc<AppState>>, _a: Admin) -> Json<serde_json::Value> {
    Json(settings_json(&app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    overloaded: Option<bool>,
    min_on_duty: Option<u32>,
}

pub async fn put_settings(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<SettingsBody>,
) -> Result<Json<serde_json::Value>> {
    origin(&app, &headers)?;
    let rt = app
        .directory
        .put_runtime(body.overloaded, body.min_on_duty, &actor(&user))
        .await?;
    if let Some(on) = body.overloaded {
        // The fast path: other nodes hear it on the bus at once (and from the database at
        // their next poll).
        app.engine.set_overloaded(on, &user.id.to_string());
    }
    app.engine.apply_runtime(rt);
    Ok(Json(settings_json(&app)))
}

/// Records a coordinator's switch of overloaded mode in the database (the source of truth
/// that nodes starting later, and every node's poll, read), audited. The switch itself has
/// already taken effect; a database that cannot be written is logged, not an error for the
/// coordinator (the mode must switch even then).
pub async fn persist_overloaded(app: &AppState, user: &User, on: bool) {
    if let Err(e) = app
        .directory
        .put_runtime(Some(on), None, &actor(user))
        .await
    {
        tracing::warn!(error = %e, "overloaded mode not recorded in the database");
    }
}
