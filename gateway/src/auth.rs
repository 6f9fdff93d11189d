//! Operator accounts and sessions.
//!
//! Accounts (username, display name, role, argon2id hash, languages, capacity) live in a JSON file
//! written atomically (`auth.users_file`); they are the only thing the gateway writes to disk and
//! hold nothing about the people who reach out. Sessions live in memory: a random 256-bit token
//! in an HttpOnly cookie, stored here only as its SHA-256, with an idle timeout and an absolute
//! lifetime, revocable. On first run with no accounts a one-time setup code is generated and
//! printed, so nobody ever has a default password.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use ulid::Ulid;

use crate::store::redis::RedisSessions;

use crate::config::AuthSettings;
use crate::engine::{hash_token, now_ms};
use crate::protocol::Millis;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; volunteers' accounts guard
/// conversations with people in crisis, so more).
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Coordinator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Coordinator => "coordinator",
            Role::Admin => "admin",
        }
    }

    /// Coordinators and admins see the coordinator view and acknowledge alerts.
    pub fn coordinates(self) -> bool {
        matches!(self, Role::Coordinator | Role::Admin)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Ulid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// Overrides `conversation.default_capacity` for this operator.
    #[serde(default)]
    pub capacity: Option<u32>,
    #[serde(default)]
    pub disabled: bool,
    /// Where phone calls are bridged when this operator accepts one: an E.164 number
    /// (`+8190…`) or a browser voice client (`client:<identity>`). Never shown to callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

fn default_languages() -> Vec<String> {
    vec!["ja".into()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Ulid,
    pub created_at: Millis,
    pub last_seen: Millis,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("invalid account data: {0}")]
    Invalid(&'static str),
    #[error("username already exists")]
    Exists,
    #[error("setup is not available")]
    SetupUnavailable,
    #[error("could not save accounts")]
    Storage,
    #[error("too many failed attempts; locked for {0} ms")]
    Locked(u64),
}

/// Failed logins before an account locks, and the first lock's length; each further failure
/// while locked out doubles it, up to [`LOCK_MAX_MS`].
pub const LOCK_AFTER: u32 = 5;
pub const LOCK_FIRST_MS: u64 = 30_000;
pub const LOCK_MAX_MS: u64 = 60 * 60_000;
/// Failure records kept at most (one per username tried), so a spray of names cannot grow
/// memory without bound.
const MAX_FAILURE_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    locked_until: Millis,
    last: Millis,
}

pub struct Accounts {
    cfg: AuthSettings,
    /// `None` keeps accounts in memory only (tests).
    path: Option<PathBuf>,
    users: RwLock<Vec<User>>,
    /// SHA-256 of the session token → session.
    sessions: Mutex<HashMap<String, Session>>,
    /// The first-run setup code while no account exists.
    setup_code: Mutex<Option<String>>,
    /// A real hash to verify against when the username is unknown, so timing does not tell
    /// which usernames exist.
    dummy_hash: String,
    /// Modification time of the accounts file when last read, so accounts added with
    /// `gateway user add` while the gateway runs are picked up at the next login.
    loaded_mtime: Mutex<Option<std::time::SystemTime>>,
    /// Failed logins per username (known or not, so lockout reveals nothing), for lockout.
    failures: Mutex<HashMap<String, Failures>>,
    /// With the Redis store: sessions live there (shared by every node) instead of `sessions`.
    shared: Option<RedisSessions>,
}

fn mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AuthError::Invalid("password could not be hashed"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn setup_code() -> String {
    // 10 characters of Crockford base32: 50 bits, typed once by the person who installs.
    let u = Ulid::new().to_string();
    format!("{}-{}", &u[16..21], &u[21..26])
}

impl Accounts {
    /// Loads accounts from `cfg.users_file` (empty string: in memory only).
    pub fn load(cfg: &AuthSettings) -> anyhow::Result<Self> {
        let path = (!cfg.users_file.is_empty()).then(|| PathBuf::from(&cfg.users_file));
        let users: Vec<User> = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading accounts file {}", p.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing accounts file {}", p.display()))?
            }
            _ => Vec::new(),
        };
        let code = users.is_empty().then(setup_code);
        let loaded_mtime = Mutex::new(path.as_deref().and_then(mtime));
        Ok(Accounts {
            loaded_mtime,
            failures: Mutex::new(HashMap::new()),
            cfg: cfg.clone(),
            path,
            users: RwLock::new(users),
            sessions: Mutex::new(HashMap::new()),
            setup_code: Mutex::new(code),
            dummy_hash: hash_password("not a real password, for timing only")
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            shared: None,
        })
    }

    /// Keeps sessions in Redis, shared by every gateway node.
    pub fn with_shared_sessions(mut self, sessions: RedisSessions) -> Self {
        self.shared = Some(sessions);
        self
    }

    fn users(&self) -> std::sync::RwLockReadGuard<'_, Vec<User>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one-time setup code, while no account exists.
    pub fn pending_setup_code(&self) -> Option<String> {
        self.setup_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn user(&self, id: Ulid) -> Option<User> {
        self.users().iter().find(|u| u.id == id).cloned()
    }

    pub fn list(&self) -> Vec<User> {
        self.users().clone()
    }

    /// Creates an account and saves the file.
    pub fn add_user(
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
        let user = User {
            id: Ulid::new(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            role,
            password_hash: hash_password(password)?,
            languages: default_languages(),
            capacity: None,
            disabled: false,
            phone: None,
        };
        let snapshot = {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            if users.iter().any(|u| u.username == user.username) {
                return Err(AuthError::Exists);
            }
            users.push(user.clone());
            users.clone()
        };
        self.save(&snapshot)?;
        *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(user)
    }

    /// Sets an account's languages (for routing) and capacity.
    pub fn set_routing(
        &self,
        id: Ulid,
        languages: Vec<String>,
        capacity: Option<u32>,
    ) -> Result<(), AuthError> {
        let snapshot = {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            let u = users
                .iter_mut()
                .find(|u| u.id == id)
                .ok_or(AuthError::Invalid("no such user"))?;
            u.languages = languages;
            u.capacity = capacity;
            users.clone()
        };
        self.save(&snapshot)
    }

    /// Sets (or clears) where phone calls are bridged for this operator: `+` and 8-15 digits,
    /// or `client:` and a voice client identity.
    pub fn set_phone(&self, id: Ulid, phone: Option<String>) -> Result<(), AuthError> {
        let phone = phone.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        if let Some(p) = &phone {
            if crate::connectors::voice::twiml::Target::parse(p).is_none() {
                return Err(AuthError::Invalid(
                    "phone: +<country code and number, digits only> or client:<identity>",
                ));
            }
        }
        let snapshot = {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            let u = users
                .iter_mut()
                .find(|u| u.id == id)
                .ok_or(AuthError::Invalid("no such user"))?;
            u.phone = phone;
            users.clone()
        };
        self.save(&snapshot)
    }

    /// Re-reads the accounts file if another process (the CLI) changed it.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let now = mtime(path);
        let mut loaded = self.loaded_mtime.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_none() || *loaded == now {
            return;
        }
        let parsed: Option<Vec<User>> = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        match parsed {
            Some(users) => {
                if !users.is_empty() {
                    *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
                *loaded = now;
                tracing::info!("accounts file changed: reloaded");
            }
            None => tracing::warn!(
                "accounts file changed but could not be read; keeping the accounts in memory"
            ),
        }
    }

    fn save(&self, users: &[User]) -> Result<(), AuthError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            let json = serde_json::to_vec_pretty(users).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, json)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, path)?;
            *self.loaded_mtime.lock().unwrap_or_else(|e| e.into_inner()) = mtime(path);
            Ok(())
        };
        write().map_err(|e| {
            tracing::error!(error = %e, "could not save accounts file");
            AuthError::Storage
        })
    }

    /// Creates the first admin with the setup code printed at start.
    pub fn setup(
        &self,
        code: &str,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<User, AuthError> {
        let expected = self
            .pending_setup_code()
            .ok_or(AuthError::SetupUnavailable)?;
        let given = code.trim().to_ascii_uppercase();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AuthError::SetupUnavailable);
        }
        self.add_user(username, display_name, Role::Admin, password)
    }

    /// Checks a password (off the async runtime: argon2 is deliberately slow) and opens a
    /// session. Returns the user and the session token for the cookie.
    pub async fn login(
        self: &std::sync::Arc<Self>,
        username: &str,
        password: &str,
    ) -> Result<(User, String), AuthError> {
        self.refresh();
        let name = username.trim().to_owned();
        let now = now_ms();
        if let Some(f) = self.failures_lock().get(&name) {
            if f.locked_until > now {
                return Err(AuthError::Locked(f.locked_until - now));
            }
        }
        let user = self
            .users()
            .iter()
            .find(|u| u.username == username.trim() && !u.disabled)
            .cloned();
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        match (ok, user) {
            (true, Some(user)) => {
                self.failures_lock().remove(&name);
                let token = random_token();
                let now = now_ms();
                let session = Session {
                    user_id: user.id,
                    created_at: now,
                    last_seen: now,
                };
                match &self.shared {
                    Some(shared) => shared
                        .put(
                            &hash_token(&token),
                            &session,
                            self.cfg.session_idle_ms,
                            self.cfg.session_max_ms,
                        )
                        .await
                        .map_err(|_| AuthError::Storage)?,
                    None => {
                        self.sessions().insert(hash_token(&token), session);
                    }
                }
                tracing::info!(user = %user.id, "login");
                Ok((user, token))
            }
            _ => {
                let locked = self.record_failure(&name, now);
                tracing::info!(locked = locked.is_some(), "login refused");
                match locked {
                    Some(ms) => Err(AuthError::Locked(ms)),
                    None => Err(AuthError::BadCredentials),
                }
            }
        }
    }

    fn failures_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a failed login; returns the lock length if the account is now locked.
    fn record_failure(&self, name: &str, now: Millis) -> Option<u64> {
        let mut all = self.failures_lock();
        if all.len() >= MAX_FAILURE_RECORDS && !all.contains_key(name) {
            // Forget the record unused longest.
            if let Some(oldest) = all
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            {
                all.remove(&oldest);
            }
        }
        let f = all.entry(name.to_owned()).or_default();
        f.count += 1;
        f.last = now;
        if f.count < LOCK_AFTER {
            return None;
        }
        let doublings = (f.count - LOCK_AFTER).min(16);
        let ms = (LOCK_FIRST_MS << doublings).min(LOCK_MAX_MS);
        f.locked_until = now + ms;
        Some(ms)
    }

    fn expired(&self, s: &Session, now: Millis) -> bool {
        now.saturating_sub(s.last_seen) > self.cfg.session_idle_ms
            || now.saturating_sub(s.created_at) > self.cfg.session_max_ms
    }

    /// The user of a live session, refreshing its idle timer. Expired sessions are removed.
    /// With shared sessions and Redis unreachable, nobody new is let in.
    pub async fn session_user(&self, token: &str) -> Option<User> {
        let key = hash_token(token);
        let now = now_ms();
        let user_id = match &self.shared {
            Some(shared) => {
                let mut s = shared.get(&key).await.ok()??;
                if self.expired(&s, now) {
                    let _ = shared.remove(&key).await;
                    return None;
                }
                s.last_seen = now;
                let _ = shared
                    .put(&key, &s, self.cfg.session_idle_ms, self.cfg.session_max_ms)
                    .await;
                s.user_id
            }
            None => {
                let mut sessions = self.sessions();
                let s = sessions.get_mut(&key)?;
                if self.expired(s, now) {
                    sessions.remove(&key);
                    return None;
                }
                s.last_seen = now;
                s.user_id
            }
        };
        self.user(user_id).filter(|u| !u.disabled)
    }

    /// Whether a session token is still live, without refreshing it (for open sockets). With
    /// shared sessions and Redis unreachable, open sockets stay open: nobody could have revoked
    /// them meanwhile, and closing every console during an outage would help nobody.
    pub async fn session_live(&self, token: &str) -> bool {
        let now = now_ms();
        let key = hash_token(token);
        match &self.shared {
            Some(shared) => match shared.get(&key).await {
                Ok(s) => s.is_some_and(|s| !self.expired(&s, now)),
                Err(_) => true,
            },
            None => self
                .sessions()
                .get(&key)
                .is_some_and(|s| !self.expired(s, now)),
        }
    }

    /// Keeps a session alive while its socket is in use.
    pub async fn touch(&self, token: &str) {
        let key = hash_token(token);
        match &self.shared {
            Some(shared) => {
                if let Ok(Some(mut s)) = shared.get(&key).await {
                    s.last_seen = now_ms();
                    let _ = shared
                        .put(&key, &s, self.cfg.session_idle_ms, self.cfg.session_max_ms)
                        .await;
                }
            }
            None => {
                if let Some(s) = self.sessions().get_mut(&key) {
                    s.last_seen = now_ms();
                }
            }
        }
    }

    pub async fn revoke(&self, token: &str) {
        let key = hash_token(token);
        match &self.shared {
            Some(shared) => {
                if let Err(e) = shared.remove(&key).await {
                    tracing::warn!(error = %e, "could not remove a shared session");
                }
            }
            None => {
                self.sessions().remove(&key);
            }
        }
    }

    /// Revokes every session of a user; returns how many.
    pub async fn revoke_user(&self, user: Ulid) -> usize {
        match &self.shared {
            Some(shared) => match shared.remove_user(user).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not revoke shared sessions");
                    0
                }
            },
            None => {
                let mut sessions = self.sessions();
                let before = sessions.len();
                sessions.retain(|_, s| s.user_id != user);
                before - sessions.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn accounts() -> Arc<Accounts> {
        Arc::new(
            Accounts::load(&AuthSettings {
                users_file: String::new(),
                ..AuthSettings::default()
            })
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_user_can_log_in_with_the_right_password_only() {
        let a = accounts();
        a.add_user("sakura", "Sakura", Role::Operator, "correct horse battery")
            .unwrap();
        assert!(a.login("sakura", "wrong password!!").await.is_err());
        assert!(a.login("nobody", "correct horse battery").await.is_err());
        let (user, token) = a.login("sakura", "correct horse battery").await.unwrap();
        assert_eq!(a.session_user(&token).await.unwrap().id, user.id);
        a.revoke(&token).await;
        assert!(
            a.session_user(&token).await.is_none(),
            "revoked sessions are gone"
        );
    }

    #[tokio::test]
    async fn repeated_failures_lock_the_account_with_growing_delays() {
        let a = accounts();
        a.add_user("sakura", "Sakura", Role::Operator, "correct horse battery")
            .unwrap();
        for _ in 0..LOCK_AFTER - 1 {
            assert_eq!(
                a.login("sakura", "wrong password!!").await.unwrap_err(),
                AuthError::BadCredentials
            );
        }
        let first = a.login("sakura", "wrong password!!").await.unwrap_err();
        assert_eq!(first, AuthError::Locked(LOCK_FIRST_MS));
        // Locked: even the right password is refused, without being checked.
        assert!(matches!(
            a.login("sakura", "correct horse battery").await,
            Err(AuthError::Locked(_))
        ));
        // Past the lock, another failure locks twice as long.
        a.failures_lock().get_mut("sakura").unwrap().locked_until = 0;
        assert_eq!(
            a.login("sakura", "wrong password!!").await.unwrap_err(),
            AuthError::Locked(2 * LOCK_FIRST_MS)
        );
        a.failures_lock().get_mut("sakura").unwrap().locked_until = 0;
        assert!(a.login("sakura", "correct horse battery").await.is_ok());
        assert!(a.failures_lock().get("sakura").is_none(), "success resets");
        // Unknown names lock the same way, so a lock says nothing about who exists.
        for _ in 0..LOCK_AFTER {
            let _ = a.login("nobody", "whatever password").await;
        }
        assert!(matches!(
            a.login("nobody", "whatever password").await,
            Err(AuthError::Locked(_))
        ));
    }

    #[test]
    fn passwords_are_stored_as_argon2id_hashes() {
        let a = accounts();
        let u = a
            .add_user("kai", "Kai", Role::Coordinator, "another long password")
            .unwrap();
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(!u.password_hash.contains("another long password"));
    }

    #[test]
    fn weak_or_duplicate_accounts_are_refused() {
        let a = accounts();
        assert!(a.add_user("x", "X", Role::Operator, "short").is_err());
        assert!(a
            .add_user("bad name", "X", Role::Operator, "long enough password")
            .is_err());
        a.add_user("x", "X", Role::Operator, "long enough password")
            .unwrap();
        assert_eq!(
            a.add_user("x", "Y", Role::Operator, "long enough password")
                .unwrap_err(),
            AuthError::Exists
        );
    }

    #[test]
    fn the_setup_code_creates_one_admin_and_then_is_gone() {
        let a = accounts();
        let code = a.pending_setup_code().expect("no accounts yet");
        assert!(a
            .setup("WRONG-CODE", "admin", "Admin", "long enough password")
            .is_err());
        let admin = a
            .setup(
                &code.to_lowercase(),
                "admin",
                "Admin",
                "long enough password",
            )
            .unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert!(a.pending_setup_code().is_none());
        assert!(a
            .setup(&code, "admin2", "Admin", "long enough password")
            .is_err());
    }

    #[tokio::test]
    async fn sessions_expire_when_idle() {
        let a = Arc::new(
            Accounts::load(&AuthSettings {
                users_file: String::new(),
                session_idle_ms: 0,
                ..AuthSettings::default()
            })
            .unwrap(),
        );
        a.add_user("s", "S", Role::Operator, "long enough password")
            .unwrap();
        let (_, token) = a.login("s", "long enough password").await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(a.session_user(&token).await.is_none());
    }

    #[test]
    fn accounts_survive_a_restart_through_the_file() {
        let dir = std::env::temp_dir().join(format!("tsunagu-acc-{}", Ulid::new()));
        let cfg = AuthSettings {
            users_file: dir.join("users.json").display().to_string(),
            ..AuthSettings::default()
        };
        let a = Accounts::load(&cfg).unwrap();
        a.add_user("sakura", "Sakura", Role::Operator, "long enough password")
            .unwrap();
        let b = Accounts::load(&cfg).unwrap();
        assert_eq!(b.list().len(), 1);
        assert!(b.pending_setup_code().is_none());
        // An account added by another process (the CLI) is seen at the next login.
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.add_user("kai", "Kai", Role::Operator, "long enough password")
            .unwrap();
        let b = Arc::new(b);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(rt.block_on(b.login("kai", "long enough password")).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
