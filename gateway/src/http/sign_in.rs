//! The sign-in's steps after its password, over HTTP (`auth::steps` has the rules).
//!
//! `POST /api/login` answers either the signed-in user (with the session cookie, as before) or
//! `{"step": "totp" | "change_password" | "totp_enrol" | "pledge", "pending": <token>, …}` with
//! no cookie: the console then calls `POST /api/login/step` with `{"pending", …}` and what the
//! step asks (`code` or `recovery_code`, `new_password`, `code` for an enrolment,
//! `accept_pledge: true`) until the answer carries the user and the cookie. An enrolment's
//! answer carries `recovery_codes` once. Errors: 401 `bad_code` (a wrong or used code),
//! 401 `sign_in_expired` (start again), 400 `invalid`, 429 when locked.
//!
//! Also here: a signed-in account turning TOTP on itself (`POST /api/me/totp/begin`, then
//! `/confirm` with the secret and a code).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde_json::json;

use super::api::{check_origin, me_json, session_cookie, ApiError, CurrentUser};
use crate::auth::{AuthError, SignIn, StepInput};
use crate::state::AppState;

/// A refusal of a step: the API's errors, and the two the console tells apart.
pub enum StepError {
    Api(ApiError),
    BadCode,
    Expired,
}

impl From<ApiError> for StepError {
    fn from(e: ApiError) -> Self {
        StepError::Api(e)
    }
}

impl IntoResponse for StepError {
    fn into_response(self) -> Response {
        match self {
            StepError::Api(e) => e.into_response(),
            StepError::BadCode => {
                (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad_code"}))).into_response()
            }
            StepError::Expired => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "sign_in_expired"})),
            )
                .into_response(),
        }
    }
}

/// The response for a sign-in refused by `auth`.
pub fn auth_error(e: AuthError) -> StepError {
    match e {
        AuthError::Locked(ms) => ApiError::TooMany(ms.div_ceil(1000).max(1)).into(),
        AuthError::Busy => ApiError::Busy(crate::password::BUSY_RETRY_SECS).into(),
        AuthError::Storage => ApiError::Unavailable.into(),
        AuthError::Invalid(why) => ApiError::Invalid(why).into(),
        AuthError::BadCode => StepError::BadCode,
        AuthError::SignInExpired => StepError::Expired,
        _ => ApiError::Unauthorized.into(),
    }
}

/// The answer for where a sign-in stands: the user with the session cookie, or the next step.
pub fn answer(
    app: &AppState,
    jar: CookieJar,
    sign_in: SignIn,
    recovery_codes: Vec<String>,
) -> (CookieJar, Json<serde_json::Value>) {
    let codes = (!recovery_codes.is_empty()).then_some(recovery_codes);
    match sign_in {
        SignIn::Session { user, token } => {
            let mut me = me_json(&user);
            if let Some(c) = codes {
                me["recovery_codes"] = json!(c);
            }
            (jar.add(session_cookie(app, token)), Json(me))
        }
        SignIn::Pending { pending, .. } => {
            let mut body = json!(pending);
            if let Some(c) = codes {
                body["recovery_codes"] = json!(c);
            }
            (jar, Json(body))
        }
    }
}

#[derive(Deserialize)]
pub struct StepBody {
    pending: String,
    #[serde(flatten)]
    input: StepInput,
}

/// `POST /api/login/step`: does the step a pending sign-in is at.
pub async fn step(
    State(app): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Json(body): Json<StepBody>,
) -> Result<(CookieJar, Json<serde_json::Value>), StepError> {
    check_origin(&app, &headers)?;
    let key = app.limits.key(app.limits.client_ip(peer, &headers));
    app.limits
        .login(key)
        .map_err(|wait| ApiError::TooMany(wait.seconds()))?;
    let progress = app
        .accounts
        .continue_sign_in(key, &body.pending, body.input)
        .await
        .map_err(auth_error)?;
    Ok(answer(&app, jar, progress.sign_in, progress.recovery_codes))
}

/// `GET /api/me/totp`: whether the signed-in account has a second factor, and recovery codes
/// left.
pub async fn totp_status(
    State(app): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<serde_json::Value>, StepError> {
    let (on, left) = app
        .accounts
        .second_factor(user.id)
        .await
        .map_err(auth_error)?;
    Ok(Json(json!({"enabled": on, "recovery_codes_left": left})))
}

/// `POST /api/me/totp/begin`: a new secret to add to an authenticator (nothing stored yet).
pub async fn totp_begin(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    CurrentUser(user): CurrentUser,
) -> Result<Json<crate::auth::Enrolment>, StepError> {
    check_origin(&app, &headers)?;
    Ok(Json(app.accounts.new_enrolment(&user)))
}

#[derive(Deserialize)]
pub struct ConfirmBody {
    secret: String,
    code: String,
}

/// `POST /api/me/totp/confirm`: turns TOTP on with the secret once a code proves it; answers
/// the recovery codes, once.
pub async fn totp_confirm(
    State(app): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    CurrentUser(user): CurrentUser,
    Json(body): Json<ConfirmBody>,
) -> Result<Json<serde_json::Value>, StepError> {
    check_origin(&app, &headers)?;
    let key = app.limits.key(app.limits.client_ip(peer, &headers));
    let codes = app
        .accounts
        .enrol(key, &user, body.secret.trim(), &body.code)
        .await
        .map_err(auth_error)?;
    Ok(Json(json!({"recovery_codes": codes})))
}
