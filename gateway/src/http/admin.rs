//! The admin screen's API for accounts (admins only; `auth::admin` has the rules and audits
//! every change) and the routes of the sign-in's later steps (`http::sign_in`), plus the page
//! itself at `/admin`.
//!
//! `GET /api/admin/accounts` lists accounts (no hashes, no secrets); `POST` adds one and
//! answers its one-time password, once. Per account (`/api/admin/accounts/{id}/…`): `disable`,
//! `enable`, `reset-password` (a new one-time password, once), `role`, `languages`, `phone`,
//! `reset-totp`, `end-sessions`, and `DELETE` on the account. `GET /api/admin/audit` reads the
//! account audit trail. Whatever ends an account's sessions also closes its open consoles on
//! every node at once: the sessions are removed from the shared store, and a close (4010) goes
//! to its sockets through the cluster bus ([`crate::engine::Engine::to_operator`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use ulid::Ulid;

use super::api::{check_origin, parse_id, Admin, ApiError};
use super::sign_in;
use crate::auth::{AuthError, Role};
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(super::assets::admin))
        .route("/admin/", get(super::assets::admin))
        .route("/api/login/step", post(sign_in::step))
        .route("/api/me/totp", get(sign_in::totp_status))
        .route("/api/me/totp/begin", post(sign_in::totp_begin))
        .route("/api/me/totp/confirm", post(sign_in::totp_confirm))
        .route("/api/admin/accounts", get(list).post(add))
        .route("/api/admin/accounts/{id}", axum::routing::delete(delete))
        .route("/api/admin/accounts/{id}/{action}", post(act))
        .route("/api/admin/audit", get(audit))
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Invalid("no such user") => ApiError::NotFound,
        AuthError::Invalid(why) => ApiError::Invalid(why),
        AuthError::Exists => ApiError::Conflict,
        AuthError::Busy => ApiError::Busy(crate::password::BUSY_RETRY_SECS),
        _ => ApiError::Unavailable,
    }
}

/// Closes the account's open consoles on every node (its sessions are gone already).
fn close_sockets(app: &AppState, id: Ulid) {
    app.engine.to_operator(
        id,
        crate::engine::Outbound::Close(crate::protocol::close::REVOKED, "session revoked"),
    );
}

async fn list(
    State(app): State<Arc<AppState>>,
    _a: Admin,
) -> Result<Json<Vec<crate::auth::AccountView>>, ApiError> {
    app.accounts
        .account_views()
        .await
        .map(Json)
        .map_err(auth_error)
}

#[derive(Deserialize)]
struct AddBody {
    username: String,
    display_name: String,
    role: Role,
    #[serde(default)]
    languages: Option<Vec<String>>,
}

async fn add(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(admin): Admin,
    Json(body): Json<AddBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_origin(&app, &headers)?;
    let (user, password) = app
        .accounts
        .admin_add(
            admin.id,
            &body.username,
            &body.display_name,
            body.role,
            body.languages,
        )
        .await
        .map_err(auth_error)?;
    tracing::info!(user = %user.id, by = %admin.id, "account added by an admin");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": user.id, "username": user.username, "one_time_password": password})),
    ))
}

async fn delete(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_origin(&app, &headers)?;
    let id = parse_id(&id)?;
    app.accounts
        .admin_delete(admin.id, id)
        .await
        .map_err(auth_error)?;
    close_sockets(&app, id);
    tracing::info!(user = %id, by = %admin.id, "account deleted by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a change; each action reads the fields it needs.
#[derive(Deserialize, Default)]
struct ActBody {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    languages: Option<Vec<String>>,
    #[serde(default)]
    capacity: Option<u32>,
    #[serde(default)]
    phone: Option<String>,
}

async fn act(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Admin(admin): Admin,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ActBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_origin(&app, &headers)?;
    let id = parse_id(&id)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let a = &app.accounts;
    let by = admin.id;
    let answer = match action.as_str() {
        "disable" => {
            a.admin_set_disabled(by, id, true)
                .await
                .map_err(auth_error)?;
            close_sockets(&app, id);
            json!({"disabled": true})
        }
        "enable" => {
            a.admin_set_disabled(by, id, false)
                .await
                .map_err(auth_error)?;
            json!({"disabled": false})
        }
        "reset-password" => {
            let password = a.admin_reset_password(by, id).await.map_err(auth_error)?;
            close_sockets(&app, id);
            json!({"one_time_password": password})
        }
        "role" => {
            let role = body.role.ok_or(ApiError::Invalid("role"))?;
            a.admin_set_role(by, id, role).await.map_err(auth_error)?;
            close_sockets(&app, id);
            json!({"role": role})
        }
        "languages" => {
            let languages = body.languages.ok_or(ApiError::Invalid("languages"))?;
            a.admin_set_routing(by, id, languages, body.capacity)
                .await
                .map_err(auth_error)?;
            json!({})
        }
        "phone" => {
            a.admin_set_phone(by, id, body.phone)
                .await
                .map_err(auth_error)?;
            json!({})
        }
        "reset-totp" => {
            a.admin_reset_totp(by, id).await.map_err(auth_error)?;
            close_sockets(&app, id);
            json!({"totp": false})
        }
        "end-sessions" => {
            let n = a.admin_end_sessions(by, id).await.map_err(auth_error)?;
            close_sockets(&app, id);
            json!({"revoked": n})
        }
        _ => return Err(ApiError::NotFound),
    };
    tracing::info!(user = %id, by = %by, action = %action, "account changed by an admin");
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<u32>,
}

async fn audit(
    State(app): State<Arc<AppState>>,
    _a: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<crate::db::AccountAuditRow>>, ApiError> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    app.accounts
        .account_audit(limit)
        .await
        .map(Json)
        .map_err(auth_error)
}
