//! Adding and changing accounts, in the database ([`crate::db`]), and this node's copy of them.
//!
//! Each change is one statement (or transaction) in the database, which serialises writers:
//! the running gateway, the `gateway user` CLI and other nodes never overwrite each other's
//! accounts. After a change, and before each sign-in and setup, the copy in memory is re-read
//! (`Accounts::refresh`), so accounts added elsewhere are seen at the next sign-in. A database
//! that cannot be read or written is [`AuthError::Storage`], never taken as "no accounts".
//!
//! Also here: the one-way import of the accounts file earlier versions kept (`users.json`,
//! [`Accounts::import_file`]).

use ulid::Ulid;

use crate::db::{AccountRecord, Db, DbError, ImportOutcome};
use crate::protocol::Millis;

use super::MIN_PASSWORD_CHARS;
use super::{default_languages, hash_password, Accounts, AuthError, Role, User};

pub(super) fn storage(e: DbError) -> AuthError {
    tracing::error!(error = %e, "accounts: database operation failed");
    AuthError::Storage
}

/// The account a row holds.
fn user_of(r: AccountRecord) -> Result<User, DbError> {
    let role = Role::parse(&r.role)
        .ok_or_else(|| DbError::Corrupt(format!("unknown role {:?}", r.role)))?;
    Ok(User {
        id: r.id,
        username: r.username,
        display_name: r.display_name,
        role,
        password_hash: r.password_hash,
        languages: r.languages,
        capacity: r.capacity,
        disabled: r.disabled_at.is_some(),
        phone: r.phone,
        created_at: r.created_at,
        last_login_at: r.last_login_at,
    })
}

/// The row for `u`; `now` stands for the time it was disabled, if it is.
pub(super) fn record_of(u: &User, now: Millis) -> AccountRecord {
    AccountRecord {
        id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role.as_str().to_owned(),
        password_hash: u.password_hash.clone(),
        languages: u.languages.clone(),
        capacity: u.capacity,
        phone: u.phone.clone(),
        disabled_at: u.disabled.then_some(now),
        created_at: u.created_at,
        last_login_at: u.last_login_at,
    }
}

/// Every account in `db`.
pub(super) async fn read_all(db: &Db) -> Result<Vec<User>, DbError> {
    db.accounts().await?.into_iter().map(user_of).collect()
}

/// Checks a phone identity: `+` and 8-15 digits, or `client:` and a voice client identity.
fn check_phone(phone: Option<String>) -> Result<Option<String>, AuthError> {
    let phone = phone.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
    if let Some(p) = &phone {
        if crate::phone::Target::parse(p).is_none() {
            return Err(AuthError::Invalid(
                "phone: +<country code and number, digits only> or client:<identity>",
            ));
        }
    }
    Ok(phone)
}

impl Accounts {
    /// Checks an account's fields and hashes its password (slow: off the async runtime).
    pub(super) async fn new_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        password: &str,
    ) -> Result<User, AuthError> {
        let username = username.trim();
        let display_name = display_name.trim();
        if username.is_empty()
            || username.len() > 64
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(AuthError::Invalid(
                "username: 1-64 characters of a-z, 0-9, '.', '_' or '-'",
            ));
        }
        if display_name.is_empty() || display_name.chars().count() > 40 {
            return Err(AuthError::Invalid("display name: 1-40 characters"));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AuthError::Invalid("password: at least 12 characters"));
        }
        let password = password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|_| AuthError::Invalid("password could not be hashed"))??;
        Ok(User {
            id: Ulid::new(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            role,
            password_hash,
            languages: default_languages(),
            capacity: None,
            disabled: false,
            phone: None,
            created_at: self.clock.now_ms(),
            last_login_at: None,
        })
    }

    /// Creates an account.
    pub async fn add_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        password: &str,
    ) -> Result<User, AuthError> {
        let user = self
            .new_user(username, display_name, role, password)
            .await?;
        match self
            .db
            .insert_account(&record_of(&user, self.clock.now_ms()))
            .await
        {
            Ok(()) => {}
            Err(DbError::Conflict) => return Err(AuthError::Exists),
            Err(e) => return Err(storage(e)),
        }
        self.refresh_after_change().await;
        Ok(user)
    }

    /// Sets an account's languages (for routing) and capacity.
    pub async fn set_routing(
        &self,
        id: Ulid,
        languages: Vec<String>,
        capacity: Option<u32>,
    ) -> Result<(), AuthError> {
        let found = self
            .db
            .update_account_routing(id, &languages, capacity)
            .await
            .map_err(storage)?;
        self.changed(found).await
    }

    /// Sets (or clears) where phone calls are bridged for this operator: `+` and 8-15 digits,
    /// or `client:` and a voice client identity.
    pub async fn set_phone(&self, id: Ulid, phone: Option<String>) -> Result<(), AuthError> {
        let phone = check_phone(phone)?;
        let found = self
            .db
            .update_account_phone(id, phone.as_deref())
            .await
            .map_err(storage)?;
        self.changed(found).await
    }

    /// Disables (or re-enables) an account. A disabled account cannot sign in, and disabling
    /// ends its sessions (on every node with shared sessions).
    pub async fn set_disabled(&self, id: Ulid, disabled: bool) -> Result<(), AuthError> {
        let at = disabled.then(|| self.clock.now_ms());
        let found = self
            .db
            .set_account_disabled(id, at)
            .await
            .map_err(storage)?;
        self.changed(found).await?;
        if disabled {
            self.revoke_user(id).await;
        }
        Ok(())
    }

    /// After a change of one account: refused if there was none, else the copy re-read.
    pub(super) async fn changed(&self, found: bool) -> Result<(), AuthError> {
        if !found {
            return Err(AuthError::Invalid("no such user"));
        }
        self.refresh_after_change().await;
        Ok(())
    }

    /// Re-reads the accounts after a change this node made; the change itself is done, so a
    /// failure here only leaves the copy behind until the next sign-in.
    pub(super) async fn refresh_after_change(&self) {
        if self.refresh().await.is_err() {
            tracing::warn!("accounts changed but could not be re-read; the copy is behind");
        }
    }

    /// Re-reads every account from the database into this node's copy (a helpline has tens
    /// or hundreds: one small query).
    pub async fn refresh(&self) -> Result<(), AuthError> {
        let users = read_all(&self.db).await.map_err(storage)?;
        self.end_setup_once_an_admin_exists(&users);
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        Ok(())
    }

    /// The account `id` as the database has it now, updated in the copy. If the database
    /// cannot be read, the copy's (right as of the last sign-in on this node): a console
    /// should not stop working during a database outage.
    pub(super) async fn current_user(&self, id: Ulid) -> Option<User> {
        let fresh = match self.db.account(id).await {
            Ok(row) => row.map(user_of).transpose(),
            Err(e) => Err(e),
        };
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        match fresh {
            Ok(Some(u)) => {
                match users.iter_mut().find(|c| c.id == id) {
                    Some(c) => *c = u.clone(),
                    None => users.push(u.clone()),
                }
                Some(u)
            }
            Ok(None) => {
                users.retain(|c| c.id != id);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "accounts: database unreadable, using the copy");
                users.iter().find(|c| c.id == id).cloned()
            }
        }
    }

    /// Records a successful sign-in (best effort: a failure is logged, the sign-in stands).
    pub(super) async fn record_login(&self, id: Ulid) {
        let now = self.clock.now_ms();
        if let Err(e) = self.db.record_login(id, now).await {
            tracing::warn!(error = %e, "could not record a sign-in time");
            return;
        }
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = users.iter_mut().find(|u| u.id == id) {
            u.last_login_at = Some(now);
        }
    }

    /// Imports the accounts of an accounts file of earlier versions (`users.json`: a JSON list
    /// of accounts), adding those the database lacks (see [`Db::import_accounts`]): running it
    /// twice adds nothing the second time. Their password hashes are kept as they are.
    pub async fn import_file(&self, path: &std::path::Path) -> anyhow::Result<ImportOutcome> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading accounts file {}", path.display()))?;
        let users: Vec<User> = serde_json::from_str(&text)
            .with_context(|| format!("parsing accounts file {}", path.display()))?;
        let now = self.clock.now_ms();
        let records: Vec<AccountRecord> = users
            .iter()
            .map(|u| {
                let mut r = record_of(u, now);
                // Earlier files have no creation time: the import is when it began here.
                if r.created_at == 0 {
                    r.created_at = now;
                }
                r
            })
            .collect();
        let outcome = self.db.import_accounts(&records).await?;
        self.refresh_after_change().await;
        Ok(outcome)
    }

    /// Adds `user` as the first admin unless an admin exists (setup).
    pub(super) async fn insert_first_admin(&self, user: &User) -> Result<bool, AuthError> {
        match self
            .db
            .insert_first_admin(&record_of(user, self.clock.now_ms()))
            .await
        {
            Ok(added) => Ok(added),
            Err(DbError::Conflict) => Err(AuthError::Exists),
            Err(e) => Err(storage(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{in_memory, AuthSettings};
    use super::*;
    use crate::clock::Clock;

    async fn accounts() -> Arc<Accounts> {
        in_memory(AuthSettings::password_only(), Clock::manual(1_000_000)).await
    }

    #[tokio::test]
    async fn passwords_are_stored_as_argon2id_hashes() {
        let a = accounts().await;
        let u = a
            .add_user("kai", "Kai", Role::Coordinator, "another long password")
            .await
            .unwrap();
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(!u.password_hash.contains("another long password"));
    }

    #[tokio::test]
    async fn weak_or_duplicate_accounts_are_refused() {
        let a = accounts().await;
        assert!(a.add_user("x", "X", Role::Operator, "short").await.is_err());
        assert!(a
            .add_user("bad name", "X", Role::Operator, "long enough password")
            .await
            .is_err());
        a.add_user("x", "X", Role::Operator, "long enough password")
            .await
            .unwrap();
        assert_eq!(
            a.add_user("x", "Y", Role::Operator, "long enough password")
                .await
                .unwrap_err(),
            AuthError::Exists
        );
    }

    #[tokio::test]
    async fn accounts_survive_a_restart_through_the_database() {
        let dir = std::env::temp_dir().join(format!("tsunagu-acc-{}", Ulid::new()));
        let settings = crate::db::DatabaseSettings {
            sqlite_path: dir.join("tsunagu.db").display().to_string(),
            ..Default::default()
        };
        let cfg = AuthSettings::password_only();
        let clock = Clock::manual(1_000_000);
        let db_a = Db::open(&settings).await.unwrap();
        let a = Accounts::open(&cfg, db_a.clone(), clock.clone())
            .await
            .unwrap();
        a.add_user("sakura", "Sakura", Role::Operator, "long enough password")
            .await
            .unwrap();
        // Another process on the same file (a restarted gateway beside the CLI).
        let db = Db::open(&settings).await.unwrap();
        let b = Arc::new(Accounts::open(&cfg, db.clone(), clock).await.unwrap());
        assert_eq!(b.list().len(), 1);
        assert!(b.pending_setup_code().is_none());
        // An account added by another process is seen at the next login.
        a.add_user("kai", "Kai", Role::Operator, "long enough password")
            .await
            .unwrap();
        assert!(b.login("kai", "long enough password").await.is_ok());
        db.close().await;
        db_a.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_disabled_account_cannot_sign_in_and_loses_its_sessions() {
        let a = accounts().await;
        let u = a
            .add_user("sakura", "Sakura", Role::Operator, "long enough password")
            .await
            .unwrap();
        let (_, token) = a.login("sakura", "long enough password").await.unwrap();
        a.set_disabled(u.id, true).await.unwrap();
        assert!(a.session_user(&token).await.is_none());
        assert_eq!(
            a.login("sakura", "long enough password").await.unwrap_err(),
            AuthError::BadCredentials
        );
        a.set_disabled(u.id, false).await.unwrap();
        assert!(a.login("sakura", "long enough password").await.is_ok());
        assert!(a.user(u.id).unwrap().last_login_at.is_some());
    }

    #[tokio::test]
    async fn importing_an_accounts_file_twice_adds_its_accounts_once() {
        let a = accounts().await;
        let dir = std::env::temp_dir().join(format!("tsunagu-import-{}", Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.json");
        // The format earlier versions wrote (no creation time, languages and phone optional).
        let hash = crate::password::hash("long enough password").unwrap();
        let json = serde_json::json!([
            {"id": Ulid::new(), "username": "sakura", "display_name": "Sakura", "role": "admin",
             "password_hash": hash, "languages": ["ja", "en"], "capacity": 3},
            {"id": Ulid::new(), "username": "kai", "display_name": "Kai", "role": "operator",
             "password_hash": hash, "disabled": true, "phone": "+819012345678"},
        ]);
        std::fs::write(&file, json.to_string()).unwrap();
        let first = a.import_file(&file).await.unwrap();
        assert_eq!((first.imported, first.present), (2, 0));
        let rows = a.db.accounts().await.unwrap();
        let second = a.import_file(&file).await.unwrap();
        assert_eq!((second.imported, second.present), (0, 2));
        assert_eq!(a.db.accounts().await.unwrap(), rows, "the same rows");
        // The imported hash signs in; the disabled account does not.
        assert!(a.login("sakura", "long enough password").await.is_ok());
        assert!(a.login("kai", "long enough password").await.is_err());
        assert!(a.pending_setup_code().is_none(), "an admin was imported");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
