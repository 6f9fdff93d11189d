//! The admin screen's changes to accounts. Each is one change in the database followed by an
//! entry in the account audit trail (`account_audit`: the admin's id, the action, the account's
//! id, the time, and what changed in words — never a password, code, secret or phone number).
//!
//! An admin gives a new account (or a reset one) a *one-time password*: random, shown once to
//! the admin, stored only as its argon2id hash and marked so that the account must choose its
//! own at its next sign-in (`steps`). Disabling, deleting, resetting the password or the second
//! factor and changing the role end the account's sessions (on every node with shared
//! sessions; the HTTP layer also closes its open sockets through the cluster bus). An admin
//! cannot disable, delete or change the role of their own account, so the last admin cannot
//! lock everyone out by mistake.

use serde::Serialize;
use ulid::Ulid;

use crate::db::{AccountAuditRow, AccountSecurity};

use super::store::storage;
use super::{hash_password, Accounts, AuthError, Role, User};

/// An account as the admin screen lists it: no hash, no secret.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub id: Ulid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub languages: Vec<String>,
    pub capacity: Option<u32>,
    pub phone: Option<String>,
    pub disabled: bool,
    pub created_at: u64,
    pub last_login_at: Option<u64>,
    /// The password is a one-time password not yet changed.
    pub one_time_password: bool,
    pub totp: bool,
    pub pledge_at: Option<u64>,
}

fn view(u: &User, sec: &AccountSecurity) -> AccountView {
    AccountView {
        id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role,
        languages: u.languages.clone(),
        capacity: u.capacity,
        phone: u.phone.clone(),
        disabled: u.disabled,
        created_at: u.created_at,
        last_login_at: u.last_login_at,
        one_time_password: sec.one_time_password_at.is_some(),
        totp: sec.totp_secret.is_some(),
        pledge_at: sec.pledge_at,
    }
}

/// A one-time password: 16 characters of Crockford base32 in groups of four (80 bits).
fn one_time_password() -> String {
    let a = Ulid::new().to_string();
    let b = Ulid::new().to_string();
    let s = format!("{}{}", &a[16..24], &b[16..24]);
    format!("{}-{}-{}-{}", &s[0..4], &s[4..8], &s[8..12], &s[12..16])
}

/// What may be changed on someone else's account only.
fn not_self(by: Ulid, id: Ulid) -> Result<(), AuthError> {
    if by == id {
        return Err(AuthError::Invalid("not on your own account"));
    }
    Ok(())
}

impl Accounts {
    /// Every account with what the admin screen shows, oldest first.
    pub async fn account_views(&self) -> Result<Vec<AccountView>, AuthError> {
        self.refresh().await?;
        let secs = self.db.account_securities().await.map_err(storage)?;
        Ok(self
            .list()
            .iter()
            .map(|u| {
                let sec = secs
                    .iter()
                    .find(|(id, _)| *id == u.id)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                view(u, &sec)
            })
            .collect())
    }

    /// The latest `limit` entries of the account audit trail, newest first.
    pub async fn account_audit(&self, limit: u32) -> Result<Vec<AccountAuditRow>, AuthError> {
        self.db.account_audit(limit).await.map_err(storage)
    }

    /// Adds an account with a one-time password (returned, to be shown once).
    pub async fn admin_add(
        &self,
        by: Ulid,
        username: &str,
        display_name: &str,
        role: Role,
        languages: Option<Vec<String>>,
    ) -> Result<(User, String), AuthError> {
        let password = one_time_password();
        let user = self
            .new_user(username, display_name, role, &password)
            .await?;
        let mut record = super::store::record_of(&user, self.clock.now_ms());
        if let Some(langs) = languages.filter(|l| !l.is_empty()) {
            record.languages = check_languages(langs)?;
        }
        match self.db.insert_account(&record).await {
            Ok(()) => {}
            Err(crate::db::DbError::Conflict) => return Err(AuthError::Exists),
            Err(e) => return Err(storage(e)),
        }
        self.db
            .set_account_password(user.id, &user.password_hash, Some(self.clock.now_ms()))
            .await
            .map_err(storage)?;
        self.refresh_after_change().await;
        self.audit(
            Some(by),
            "account_added",
            Some(user.id),
            Some(role.as_str().into()),
        )
        .await;
        let user = self.user(user.id).unwrap_or(user);
        Ok((user, password))
    }

    /// Gives an account a new one-time password (returned, to be shown once) and ends its
    /// sessions and pending sign-ins.
    pub async fn admin_reset_password(&self, by: Ulid, id: Ulid) -> Result<String, AuthError> {
        let password = one_time_password();
        let pw = password.clone();
        let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|_| AuthError::Invalid("password could not be hashed"))??;
        let found = self
            .db
            .set_account_password(id, &hash, Some(self.clock.now_ms()))
            .await
            .map_err(storage)?;
        self.changed(found).await?;
        self.end_everything(id).await;
        self.audit(Some(by), "password_reset", Some(id), None).await;
        Ok(password)
    }

    /// Disables (ending every session) or re-enables an account.
    pub async fn admin_set_disabled(
        &self,
        by: Ulid,
        id: Ulid,
        disabled: bool,
    ) -> Result<(), AuthError> {
        if disabled {
            not_self(by, id)?;
        }
        self.set_disabled(id, disabled).await?;
        if disabled {
            self.end_everything(id).await;
        }
        let action = if disabled {
            "account_disabled"
        } else {
            "account_enabled"
        };
        self.audit(Some(by), action, Some(id), None).await;
        Ok(())
    }

    /// Deletes an account and ends its sessions. Escalation records and audit trails keep its
    /// id.
    pub async fn admin_delete(&self, by: Ulid, id: Ulid) -> Result<(), AuthError> {
        not_self(by, id)?;
        let found = self.db.delete_account(id).await.map_err(storage)?;
        self.changed(found).await?;
        self.revoke_user(id).await;
        self.audit(Some(by), "account_deleted", Some(id), None)
            .await;
        Ok(())
    }

    /// Changes an account's role and ends its sessions (the next sign-in meets the new role's
    /// requirements, such as a second factor).
    pub async fn admin_set_role(&self, by: Ulid, id: Ulid, role: Role) -> Result<(), AuthError> {
        not_self(by, id)?;
        let found = self
            .db
            .set_account_role(id, role.as_str())
            .await
            .map_err(storage)?;
        self.changed(found).await?;
        self.end_everything(id).await;
        self.audit(Some(by), "role_set", Some(id), Some(role.as_str().into()))
            .await;
        Ok(())
    }

    /// Sets an account's languages and capacity.
    pub async fn admin_set_routing(
        &self,
        by: Ulid,
        id: Ulid,
        languages: Vec<String>,
        capacity: Option<u32>,
    ) -> Result<(), AuthError> {
        let languages = check_languages(languages)?;
        if capacity.is_some_and(|c| c == 0 || c > 20) {
            return Err(AuthError::Invalid("capacity: 1-20"));
        }
        self.set_routing(id, languages.clone(), capacity).await?;
        let detail = match capacity {
            Some(c) => format!("{} / capacity {c}", languages.join(",")),
            None => languages.join(","),
        };
        self.audit(Some(by), "languages_set", Some(id), Some(detail))
            .await;
        Ok(())
    }

    /// Sets or clears an account's phone identity (the audit says which, not the number).
    pub async fn admin_set_phone(
        &self,
        by: Ulid,
        id: Ulid,
        phone: Option<String>,
    ) -> Result<(), AuthError> {
        let set = phone.as_deref().is_some_and(|p| !p.trim().is_empty());
        self.set_phone(id, phone).await?;
        let detail = if set { "set" } else { "cleared" };
        self.audit(Some(by), "phone_set", Some(id), Some(detail.into()))
            .await;
        Ok(())
    }

    /// Removes an account's second factor (a lost phone): it enrols again at its next
    /// sign-in if its role requires one. Its sessions end.
    pub async fn admin_reset_totp(&self, by: Ulid, id: Ulid) -> Result<(), AuthError> {
        let found = self.db.clear_totp(id).await.map_err(storage)?;
        self.changed(found).await?;
        self.end_everything(id).await;
        self.audit(Some(by), "totp_reset", Some(id), None).await;
        Ok(())
    }

    /// Ends an account's sessions (on every node with shared sessions); returns how many.
    pub async fn admin_end_sessions(&self, by: Ulid, id: Ulid) -> Result<usize, AuthError> {
        self.user(id).ok_or(AuthError::Invalid("no such user"))?;
        let n = self.end_everything(id).await;
        self.audit(Some(by), "sessions_ended", Some(id), Some(n.to_string()))
            .await;
        Ok(n)
    }

    /// Ends an account's sessions and pending sign-ins; returns how many sessions.
    async fn end_everything(&self, id: Ulid) -> usize {
        if let Err(e) = self.db.delete_challenges_of(id).await {
            tracing::warn!(error = %e, "could not end pending sign-ins");
        }
        self.revoke_user(id).await
    }

    /// A new secret for a signed-in account to enrol (operators may turn TOTP on): the secret
    /// and its otpauth URI. Nothing is stored until [`Accounts::enrol`] confirms it.
    pub fn new_enrolment(&self, user: &User) -> super::Enrolment {
        let secret = super::totp::new_secret();
        let uri =
            super::totp::uri(&secret, &self.cfg.totp_issuer, &user.username).unwrap_or_default();
        super::Enrolment { secret, uri }
    }

    /// Whether `user` has a second factor, and recovery codes left.
    pub async fn second_factor(&self, user: Ulid) -> Result<(bool, u64), AuthError> {
        let sec = self
            .db
            .account_security(user)
            .await
            .map_err(storage)?
            .unwrap_or_default();
        let left = self.db.recovery_codes_left(user).await.map_err(storage)?;
        Ok((sec.totp_secret.is_some(), left))
    }
}

/// Language tags: 1-5 of 2-16 characters of letters, digits and '-'.
fn check_languages(langs: Vec<String>) -> Result<Vec<String>, AuthError> {
    let langs: Vec<String> = langs
        .into_iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let ok = !langs.is_empty()
        && langs.len() <= 8
        && langs.iter().all(|l| {
            (2..=16).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(langs)
    } else {
        Err(AuthError::Invalid(
            "languages: 1-8 language tags such as ja, en, zh-Hans",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{in_memory, AuthSettings, SignIn, StepInput};
    use super::*;
    use crate::clock::Clock;

    #[tokio::test]
    async fn an_account_added_by_an_admin_must_change_its_one_time_password() {
        let a = in_memory(
            AuthSettings {
                require_pledge: false,
                ..AuthSettings::default()
            },
            Clock::manual(1_000_000),
        )
        .await;
        let admin = Ulid::new();
        let (u, otp) = a
            .admin_add(admin, "sakura", "Sakura", Role::Operator, None)
            .await
            .unwrap();
        let SignIn::Pending { pending, .. } = a.login_from(1, "sakura", &otp).await.unwrap() else {
            panic!("a one-time password opens no session");
        };
        assert_eq!(pending.step, super::super::Step::ChangePassword);
        let done = a
            .continue_sign_in(
                1,
                &pending.pending,
                StepInput {
                    new_password: Some("my own long password".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(matches!(done.sign_in, SignIn::Session { .. }));
        assert!(a.login("sakura", "my own long password").await.is_ok());
        let trail = a.account_audit(10).await.unwrap();
        assert_eq!(trail[0].action, "password_changed");
        assert_eq!(trail[1].action, "account_added");
        assert_eq!(trail[1].target_id, Some(u.id));
    }
}
