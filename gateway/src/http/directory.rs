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
//! Every change must come from an allowed origin (`check_origin`, as every mutating request of
//! the API) and is audited in the database (`admin_audit`: actor, action, entry id). A change
//! takes effect on this node at once and on others within `directory.poll_ms`. Invalid input
//! is 400 `invalid` with a `detail` naming the field (or the CSV line) and what is wrong.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{check_origin, Admin, ApiError, CurrentUser};
use crate::auth::User;
use crate::db::PhraseRecord;
use crate::directory::{
    Actor, Directory, DirectoryError, EntryView, Helpline, PhraseInput, ReferralInput,
};
use crate::state::AppState;

/// The routes of this module, merged into the gateway's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/directory", get(search))
        .route("/api/phrases", get(phrases))
        .route("/api/helplines", get(helplines))
        .route(
            "/api/admin/directory",
            get(all::<Entries>).post(add::<Entries>),
        )
        .route("/api/admin/directory/{id}", put(edit::<Entries>))
        .route("/api/admin/directory/order", post(order::<Entries>))
        .route("/api/admin/directory.csv", get(export::<Entries>))
        .route("/api/admin/directory/import", post(import::<Entries>))
        .route("/api/admin/directory/audit", get(audit))
        .route(
            "/api/admin/phrases",
            get(all::<Phrases>).post(add::<Phrases>),
        )
        .route("/api/admin/phrases/{id}", put(edit::<Phrases>))
        .route("/api/admin/phrases/order", post(order::<Phrases>))
        .route("/api/admin/phrases.csv", get(export::<Phrases>))
        .route("/api/admin/phrases/import", post(import::<Phrases>))
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
) -> Json<Vec<PhraseRecord>> {
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

/// A list the admin screen edits the same way: every item (hidden ones too), add, edit, order,
/// CSV export and import. The referral directory's entries and the phrases are the two.
pub trait AdminList: Send + Sync + 'static {
    /// What the admin screen sends to add or edit one (a form, checked by the directory).
    type Input: DeserializeOwned + Send + 'static;
    /// One as the admin screen sees it.
    type Item: Serialize + Send + 'static;
    /// The file name of the CSV export.
    const CSV_FILE: &'static str;

    fn all(d: &Directory) -> Vec<Self::Item>;
    /// Adds one (`id: None`) or replaces one; returns it as stored.
    fn put(
        d: &Directory,
        id: Option<&str>,
        input: Self::Input,
        by: &Actor,
    ) -> impl Future<Output = DirResult<Self::Item>> + Send;
    /// Puts them in the order of `ids`, which must name every one once.
    fn order(
        d: &Directory,
        ids: &[String],
        by: &Actor,
    ) -> impl Future<Output = DirResult<()>> + Send;
    fn export(d: &Directory) -> DirResult<String>;
    /// Imports rows from CSV, all or nothing; returns how many were written.
    fn import(
        d: &Directory,
        csv: &str,
        by: &Actor,
    ) -> impl Future<Output = DirResult<usize>> + Send;
}

type DirResult<T> = std::result::Result<T, DirectoryError>;

/// The referral directory's entries (`/api/admin/directory…`).
pub struct Entries;

impl AdminList for Entries {
    type Input = ReferralInput;
    type Item = EntryView;
    const CSV_FILE: &'static str = "tsunagu-directory.csv";

    fn all(d: &Directory) -> Vec<EntryView> {
        d.all_referrals()
    }
    fn put(
        d: &Directory,
        id: Option<&str>,
        input: ReferralInput,
        by: &Actor,
    ) -> impl Future<Output = DirResult<EntryView>> + Send {
        d.put_referral(id, input, by)
    }
    fn order(
        d: &Directory,
        ids: &[String],
        by: &Actor,
    ) -> impl Future<Output = DirResult<()>> + Send {
        d.order_referrals(ids, by)
    }
    fn export(d: &Directory) -> DirResult<String> {
        d.export_referrals()
    }
    fn import(
        d: &Directory,
        csv: &str,
        by: &Actor,
    ) -> impl Future<Output = DirResult<usize>> + Send {
        d.import_referrals(csv, by)
    }
}

/// The canned phrases (`/api/admin/phrases…`).
pub struct Phrases;

impl AdminList for Phrases {
    type Input = PhraseInput;
    type Item = PhraseRecord;
    const CSV_FILE: &'static str = "tsunagu-phrases.csv";

    fn all(d: &Directory) -> Vec<PhraseRecord> {
        d.phrases(true)
    }
    fn put(
        d: &Directory,
        id: Option<&str>,
        input: PhraseInput,
        by: &Actor,
    ) -> impl Future<Output = DirResult<PhraseRecord>> + Send {
        d.put_phrase(id, input, by)
    }
    fn order(
        d: &Directory,
        ids: &[String],
        by: &Actor,
    ) -> impl Future<Output = DirResult<()>> + Send {
        d.order_phrases(ids, by)
    }
    fn export(d: &Directory) -> DirResult<String> {
        d.export_phrases()
    }
    fn import(
        d: &Directory,
        csv: &str,
        by: &Actor,
    ) -> impl Future<Output = DirResult<usize>> + Send {
        d.import_phrases(csv, by)
    }
}

pub async fn all<L: AdminList>(State(app): State<Arc<AppState>>, _a: Admin) -> Json<Vec<L::Item>> {
    Json(L::all(&app.directory))
}

pub async fn add<L: AdminList>(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(input): Json<L::Input>,
) -> Result<(StatusCode, Json<L::Item>)> {
    check_origin(&app, &headers)?;
    let item = L::put(&app.directory, None, input, &actor(&user)).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

pub async fn edit<L: AdminList>(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Path(id): Path<String>,
    Json(input): Json<L::Input>,
) -> Result<Json<L::Item>> {
    check_origin(&app, &headers)?;
    let item = L::put(&app.directory, Some(&id), input, &actor(&user)).await?;
    Ok(Json(item))
}

#[derive(Deserialize)]
pub struct OrderBody {
    ids: Vec<String>,
}

pub async fn order<L: AdminList>(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<OrderBody>,
) -> Result<StatusCode> {
    check_origin(&app, &headers)?;
    L::order(&app.directory, &body.ids, &actor(&user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn export<L: AdminList>(State(app): State<Arc<AppState>>, _a: Admin) -> Result<Response> {
    let text = L::export(&app.directory)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", L::CSV_FILE),
            ),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ImportBody {
    csv: String,
}

pub async fn import<L: AdminList>(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(user): Admin,
    Json(body): Json<ImportBody>,
) -> Result<Json<serde_json::Value>> {
    check_origin(&app, &headers)?;
    let n = L::import(&app.directory, &body.csv, &actor(&user)).await?;
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
    check_origin(&app, &headers)?;
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
