//! What a sign-in does between its password and its session. After the password, the steps
//! still to do are read from the account each time (so a step done is never asked twice, and
//! a change made meanwhile by an admin counts), in this order:
//! 1. the second factor, if the account has TOTP: a code (RFC 6238; a step already used is
//!    refused, so a code is never accepted twice) or a recovery code (each works once);
//! 2. a new password, if the password is a one-time password an admin gave;
//! 3. TOTP enrolment, if the account's role requires a second factor and it has none
//!    (`auth.require_totp_for`): a secret shown once (otpauth URI and base32), confirmed with
//!    a code, and ten recovery codes shown once;
//! 4. the confidentiality pledge, if its text's hash differs from the one acknowledged.
//!
//! Until the last step there is no session: the password's success opens a *pending sign-in*
//! instead, a random token (stored only as its SHA-256, in the database, so any node continues
//! it) that expires after `auth.sign_in_step_ms`. Wrong codes count against a lockout per
//! (username, address), as wrong passwords do. Every step done is audited.

use serde::Serialize;
use ulid::Ulid;

use crate::db::{AccountAuditRow, AccountSecurity, ChallengeRow};
use crate::limits::AddrKey;
use crate::lockout::Locked;
use crate::token::hash_token;

use super::totp;
use super::{hash_password, store::storage, Accounts, AuthError, User, MIN_PASSWORD_CHARS};

/// A step of a sign-in after its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A TOTP code or a recovery code.
    Totp,
    /// A new password in place of an admin's one-time password.
    ChangePassword,
    /// Enrol an authenticator (the role requires a second factor).
    TotpEnrol,
    /// Acknowledge the confidentiality pledge.
    Pledge,
}

/// A secret to enrol, as an authenticator app takes it.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
}

/// A sign-in waiting for `step`.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub step: Step,
    /// The pending sign-in's token, for the next call (never a session).
    pub pending: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolment: Option<Enrolment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pledge_text: Option<String>,
}

/// Where a sign-in stands.
#[derive(Debug, Clone)]
pub enum SignIn {
    /// Done: a session for `user`, its token for the cookie.
    Session { user: User, token: String },
    /// A step to go.
    Pending { user: User, pending: Pending },
}

/// What a step answered: where the sign-in stands, and recovery codes to show once (after an
/// enrolment).
#[derive(Debug, Clone)]
pub struct Progress {
    pub sign_in: SignIn,
    pub recovery_codes: Vec<String>,
}

/// What the person gave for the step they were asked.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct StepInput {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
    #[serde(default)]
    pub new_password: Option<String>,
    #[serde(default)]
    pub accept_pledge: bool,
}

fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Accounts {
    /// The step `user` (with `sec`) still has, `second_factor` telling whether this sign-in
    /// gave one already.
    fn next_step(&self, user: &User, sec: &AccountSecurity, second_factor: bool) -> Option<Step> {
        if sec.totp_secret.is_some() && !second_factor {
            return Some(Step::Totp);
        }
        if sec.one_time_password_at.is_some() {
            return Some(Step::ChangePassword);
        }
        if self.cfg.totp_required(user.role) && sec.totp_secret.is_none() {
            return Some(Step::TotpEnrol);
        }
        match &self.pledge {
            Some((_, hash)) if sec.pledge_hash.as_deref() != Some(hash) => Some(Step::Pledge),
            _ => None,
        }
    }

    async fn security(&self, id: Ulid) -> Result<AccountSecurity, AuthError> {
        self.db
            .account_security(id)
            .await
            .map_err(storage)?
            .ok_or(AuthError::BadCredentials)
    }

    /// After the right password: a session if nothing else is asked, else a pending sign-in.
    pub(super) async fn after_password(&self, user: User) -> Result<SignIn, AuthError> {
        let sec = self.security(user.id).await?;
        let Some(step) = self.next_step(&user, &sec, false) else {
            return self.finish(user).await;
        };
        let token = random_token();
        let now = self.clock.now_ms();
        let mut ch = ChallengeRow {
            token_hash: hash_token(&token),
            account_id: user.id,
            created_at: now,
            expires_at: now + self.cfg.sign_in_step_ms,
            second_factor_at: None,
            enrol_secret: None,
        };
        if step == Step::TotpEnrol {
            ch.enrol_secret = Some(totp::new_secret());
        }
        self.db.insert_challenge(&ch).await.map_err(storage)?;
        let pending = self.describe(&user, step, token, &ch);
        Ok(SignIn::Pending { user, pending })
    }

    fn describe(&self, user: &User, step: Step, token: String, ch: &ChallengeRow) -> Pending {
        let enrolment = match (step, &ch.enrol_secret) {
            (Step::TotpEnrol, Some(secret)) => Some(Enrolment {
                secret: secret.clone(),
                uri: totp::uri(secret, &self.cfg.totp_issuer, &user.username).unwrap_or_default(),
            }),
            _ => None,
        };
        Pending {
            step,
            pending: token,
            enrolment,
            pledge_text: (step == Step::Pledge)
                .then(|| self.pledge.as_ref().map(|(t, _)| t.clone()))
                .flatten(),
        }
    }

    /// Opens the session a finished sign-in gets.
    async fn finish(&self, user: User) -> Result<SignIn, AuthError> {
        let token = self.open_session(user.id).await?;
        self.record_login(user.id).await;
        tracing::info!(user = %user.id, "login");
        Ok(SignIn::Session { user, token })
    }

    /// Appends to the account audit trail; a failure is logged (the change stands).
    pub(super) async fn audit(
        &self,
        actor: Option<Ulid>,
        action: &str,
        target: Option<Ulid>,
        detail: Option<String>,
    ) {
        let row = AccountAuditRow {
            at: self.clock.now_ms(),
            actor_id: actor,
            action: action.to_owned(),
            target_id: target,
            detail,
        };
        if let Err(e) = self.db.append_account_audit(&row).await {
            tracing::error!(error = %e, action, "could not write the account audit trail");
        }
    }

    /// Checks a code (TOTP or recovery) for `user`, counted against the code lockout.
    async fn check_code(
        &self,
        addr: AddrKey,
        user: &User,
        secret: &str,
        input: &StepInput,
    ) -> Result<Option<u64>, AuthError> {
        let now = self.clock.now_ms();
        let attempt = self
            .code_lockout
            .begin(&user.username, addr, now)
            .map_err(|Locked(ms)| AuthError::Locked(ms))?;
        let ok = match (&input.code, &input.recovery_code) {
            (Some(code), _) => match totp::matching_step(secret, code, now) {
                Some(step) => self
                    .db
                    .use_totp_step(user.id, step)
                    .await
                    .map_err(storage)?
                    .then_some(Some(step)),
                None => None,
            },
            (None, Some(code)) => {
                let hash = totp::recovery_hash(user.id, code);
                let used = self
                    .db
                    .use_recovery_code(user.id, &hash, now)
                    .await
                    .map_err(storage)?;
                if used {
                    self.audit(Some(user.id), "recovery_code_used", Some(user.id), None)
                        .await;
                }
                used.then_some(None)
            }
            (None, None) => return Err(AuthError::Invalid("a code is required")),
        };
        match ok {
            Some(step) => {
                attempt.succeeded();
                Ok(step)
            }
            None => {
                let locked = attempt.failed(self.clock.now_ms());
                tracing::info!(user = %user.id, locked = locked.is_some(), "second factor refused");
                Err(locked.map_or(AuthError::BadCode, AuthError::Locked))
            }
        }
    }

    /// Does the step a pending sign-in (`token`) is at with `input`, from the address with
    /// key `addr`; answers where the sign-in stands now.
    pub async fn continue_sign_in(
        &self,
        addr: AddrKey,
        token: &str,
        input: StepInput,
    ) -> Result<Progress, AuthError> {
        let hash = hash_token(token);
        let now = self.clock.now_ms();
        let mut ch = self
            .db
            .challenge(&hash, now)
            .await
            .map_err(storage)?
            .ok_or(AuthError::SignInExpired)?;
        let user = self
            .current_user(ch.account_id)
            .await
            .filter(|u| !u.disabled)
            .ok_or(AuthError::SignInExpired)?;
        let sec = self.security(user.id).await?;
        let mut recovery_codes = Vec::new();
        match self.next_step(&user, &sec, ch.second_factor_at.is_some()) {
            None => {}
            Some(Step::Totp) => {
                let secret = sec.totp_secret.as_deref().unwrap_or_default();
                self.check_code(addr, &user, secret, &input).await?;
                ch.second_factor_at = Some(now);
            }
            Some(Step::ChangePassword) => self.change_password(&user, &input).await?,
            Some(Step::TotpEnrol) => {
                let secret = ch.enrol_secret.clone().ok_or(AuthError::SignInExpired)?;
                let code = input.code.as_deref().unwrap_or_default();
                recovery_codes = self.enrol(addr, &user, &secret, code).await?;
                ch.second_factor_at = Some(now);
                ch.enrol_secret = None;
            }
            Some(Step::Pledge) => {
                if !input.accept_pledge {
                    return Err(AuthError::Invalid("the pledge must be acknowledged"));
                }
                let Some((_, pledge_hash)) = &self.pledge else {
                    return Err(AuthError::Invalid("no pledge"));
                };
                self.db
                    .set_pledge(user.id, pledge_hash, now)
                    .await
                    .map_err(storage)?;
                self.audit(Some(user.id), "pledge_acknowledged", Some(user.id), None)
                    .await;
            }
        }
        let sec = self.security(user.id).await?;
        let sign_in = match self.next_step(&user, &sec, ch.second_factor_at.is_some()) {
            None => {
                // Used once: a second call with the same token finds nothing.
                if !self.db.delete_challenge(&hash).await.map_err(storage)? {
                    return Err(AuthError::SignInExpired);
                }
                self.finish(user).await?
            }
            Some(step) => {
                if step == Step::TotpEnrol && ch.enrol_secret.is_none() {
                    ch.enrol_secret = Some(totp::new_secret());
                }
                self.db
                    .update_challenge(&hash, ch.second_factor_at, ch.enrol_secret.as_deref())
                    .await
                    .map_err(storage)?;
                let pending = self.describe(&user, step, token.to_owned(), &ch);
                SignIn::Pending { user, pending }
            }
        };
        Ok(Progress {
            sign_in,
            recovery_codes,
        })
    }

    /// Turns TOTP on for `user` with `secret` once `code` proves the authenticator has it
    /// (wrong codes count against the code lockout); returns the new recovery codes, to be
    /// shown once. Any earlier secret and recovery codes are replaced.
    pub async fn enrol(
        &self,
        addr: AddrKey,
        user: &User,
        secret: &str,
        code: &str,
    ) -> Result<Vec<String>, AuthError> {
        if !totp::valid_secret(secret) {
            return Err(AuthError::Invalid("secret"));
        }
        let now = self.clock.now_ms();
        let attempt = self
            .code_lockout
            .begin(&user.username, addr, now)
            .map_err(|Locked(ms)| AuthError::Locked(ms))?;
        let Some(step) = totp::matching_step(secret, code, now) else {
            let locked = attempt.failed(self.clock.now_ms());
            return Err(locked.map_or(AuthError::BadCode, AuthError::Locked));
        };
        attempt.succeeded();
        let codes = totp::new_recovery_codes(totp::RECOVERY_CODES);
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| totp::recovery_hash(user.id, c))
            .collect();
        let found = self
            .db
            .enable_totp(user.id, secret, now, step, &hashes)
            .await
            .map_err(storage)?;
        if !found {
            return Err(AuthError::Invalid("no such user"));
        }
        self.audit(Some(user.id), "totp_enrolled", Some(user.id), None)
            .await;
        Ok(codes)
    }

    /// Replaces a one-time password by the account's own.
    async fn change_password(&self, user: &User, input: &StepInput) -> Result<(), AuthError> {
        let new = input
            .new_password
            .clone()
            .ok_or(AuthError::Invalid("a new password is required"))?;
        if new.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AuthError::Invalid("password: at least 12 characters"));
        }
        let same = self
            .checker
            .verify(new.clone(), user.password_hash.clone())
            .await
            .map_err(|_| AuthError::Busy)?;
        if same {
            return Err(AuthError::Invalid(
                "the new password must differ from the one-time password",
            ));
        }
        let hash = tokio::task::spawn_blocking(move || hash_password(&new))
            .await
            .map_err(|_| AuthError::Invalid("password could not be hashed"))??;
        self.db
            .set_account_password(user.id, &hash, None)
            .await
            .map_err(storage)?;
        self.refresh_after_change().await;
        self.audit(Some(user.id), "password_changed", Some(user.id), None)
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{AuthSettings, Role};
    use super::*;
    use crate::clock::Clock;
    use crate::db::{DatabaseSettings, Db};

    fn pledged(text: &str) -> AuthSettings {
        AuthSettings {
            require_totp_for: Vec::new(),
            require_pledge: true,
            pledge_text: text.into(),
            ..AuthSettings::default()
        }
    }

    /// Signs `name` in, acknowledging the pledge if asked; whether it was asked.
    async fn sign_in(a: &Arc<Accounts>, name: &str) -> bool {
        match a.login_from(1, name, "long enough password").await.unwrap() {
            SignIn::Session { .. } => false,
            SignIn::Pending { pending, .. } => {
                assert_eq!(pending.step, Step::Pledge);
                let text = pending.pledge_text.clone().unwrap();
                assert!(!text.is_empty());
                let done = a
                    .continue_sign_in(
                        1,
                        &pending.pending,
                        StepInput {
                            accept_pledge: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert!(matches!(done.sign_in, SignIn::Session { .. }));
                true
            }
        }
    }

    #[tokio::test]
    async fn the_pledge_is_acknowledged_once_and_again_when_its_text_changes() {
        let dir = std::env::temp_dir().join(format!("tsunagu-pledge-{}", Ulid::new()));
        let settings = DatabaseSettings {
            sqlite_path: dir.join("tsunagu.db").display().to_string(),
            ..Default::default()
        };
        let clock = Clock::manual(1_000_000);
        let db = Db::open(&settings).await.unwrap();
        let a = Arc::new(
            Accounts::open(&pledged("Keep it here."), db.clone(), clock.clone())
                .await
                .unwrap(),
        );
        let u = a
            .add_user("sakura", "Sakura", Role::Operator, "long enough password")
            .await
            .unwrap();
        assert!(sign_in(&a, "sakura").await, "asked at the first sign-in");
        assert!(!sign_in(&a, "sakura").await, "not asked twice");
        let sec = db.account_security(u.id).await.unwrap().unwrap();
        assert_eq!(sec.pledge_at, Some(1_000_000));
        // The organisation changes the text: asked again.
        let b = Arc::new(
            Accounts::open(&pledged("Keep it here, always."), db.clone(), clock)
                .await
                .unwrap(),
        );
        assert!(sign_in(&b, "sakura").await, "asked again for the new text");
        assert!(!sign_in(&b, "sakura").await);
        db.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
