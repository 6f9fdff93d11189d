//! Operator accounts and sessions.
//!
//! Accounts (username, display name, role, argon2id hash, languages, capacity) live in a JSON file
//! (`auth.users_file`); they are the only thing the gateway writes to disk and hold nothing about
//! the people who reach out. The running gateway and the `gateway user` CLI both write it, so
//! every change is a read-modify-write under an exclusive lock on `<users_file>.lock`: the file
//! is re-read under the lock, changed, and replaced atomically (temporary file, fsync, rename).
//! No write replaces accounts it did not read (issue 17, item 6).
//!
//! Sessions live in memory (or Redis): a random 256-bit token in an HttpOnly cookie, stored
//! here only as its SHA-256, with an idle timeout and an absolute lifetime, revocable. On first
//! run with no accounts a one-time setup code is generated and printed, so nobody ever has a
//! default password; it stops working as soon as any admin exists, checked against the file
//! at use. Password checks are bounded ([`crate::password`]); failed logins lock per
//! (username, address) and slow down per username ([`crate::lockout`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use ulid::Ulid;

use crate::clock::now_ms;
use crate::limits::AddrKey;
use crate::lockout::{Locked, Lockout};
pub use crate::lockout::{LOCK_AFTER, LOCK_FIRST_MS, LOCK_MAX_MS};
use crate::password::Checker;
use crate::protocol::Millis;
use crate::token::hash_token;

/// `[auth]` in the configuration: accounts, sessions and password checks. Owned here;
/// `config` assembles it into `Settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Operator accounts (argon2 hashes, roles). Created by `gateway user add` or first-run setup.
    pub users_file: String,
    /// A session unused this long expires.
    pub session_idle_ms: u64,
    /// A session expires this long after login whatever its use.
    pub session_max_ms: u64,
    /// Mark the session cookie `Secure` (set when serving over TLS or behind a TLS proxy).
    pub cookie_secure: bool,
    /// Password checks (argon2id, 19 MiB each) run at once; 0: one per core.
    pub hash_concurrency: usize,
    /// Logins waiting for a check beyond those; more are answered 503 with `Retry-After`.
    pub hash_queue: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            users_file: "data/users.json".into(),
            session_idle_ms: 2 * 60 * 60_000,
            session_max_ms: 12 * 60 * 60_000,
            cookie_secure: false,
            hash_concurrency: 0,
            // A check takes tens of milliseconds: a queue of 8 is well under a second's wait.
            hash_queue: 8,
        }
    }
}

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

/// Operator sessions kept outside this process and shared by every gateway node, so a console
/// signed in through one node can open its websocket on another. The Redis store implements it
/// (`store::redis::RedisSessions`); without one, sessions live in [`Accounts`] itself. A trait
/// here rather than the Redis type, so that `auth` does not depend on the store.
/// Sessions are keyed by the token's hash ([`crate::token::hash_token`]), never the token.
#[async_trait::async_trait]
pub trait SharedSessions: Send + Sync + 'static {
    /// Stores (or renews) a session for `idle_ms`; the user's index lives for `max_ms`.
    async fn put(
        &self,
        hash: &str,
        s: &Session,
        idle_ms: u64,
        max_ms: u64,
    ) -> Result<(), SessionsError>;
    async fn get(&self, hash: &str) -> Result<Option<Session>, SessionsError>;
    async fn remove(&self, hash: &str) -> Result<(), SessionsError>;
    /// Removes every session of `user`; returns how many were live.
    async fn remove_user(&self, user: Ulid) -> Result<usize, SessionsError>;
}

/// The shared session store could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub struct SessionsError(pub String);

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
    /// Every password check is taken and the queue is full ([`crate::password`]).
    #[error("password checks are busy")]
    Busy,
}

/// The address key of logins that come from no network address (the CLI, tests).
pub const NO_ADDRESS: AddrKey = 0;

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
    /// Failed logins per (username, address) and per username (known or not, so a lock
    /// reveals nothing).
    lockout: Lockout,
    /// Bounds concurrent password checks (argon2 holds 19 MiB each).
    checker: Checker,
    /// With the Redis store: sessions live there (shared by every node) instead of `sessions`.
    shared: Option<Box<dyn SharedSessions>>,
}

fn mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    crate::password::hash(password).ok_or(AuthError::Invalid("password could not be hashed"))
}

/// Holds the exclusive lock on the accounts file's lock file while alive (released when the
/// file is closed).
struct FileLock(#[allow(dead_code)] std::fs::File);

fn lock_file(path: &std::path::Path) -> std::io::Result<FileLock> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::PathBuf::from(name))?;
    // Held for a read, a change and a write of a small file: milliseconds. (`flock`: the
    // standard library's `File::lock` is newer than the supported Rust.)
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(FileLock(f))
}

/// The accounts in the file; none if it does not exist yet. A file that cannot be read or
/// parsed is an error: never treated as empty, so nothing overwrites it.
fn read_users(path: &std::path::Path) -> std::io::Result<Vec<User>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Replaces the file atomically: a temporary file beside it, written, synced, renamed over.
fn write_users(path: &std::path::Path, users: &[User]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(users).map_err(std::io::Error::other)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    #[cfg(unix)]
    {
        // Also when a crashed write left the temporary file behind with other permissions.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(&json)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
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
            lockout: Lockout::new(),
            checker: Checker::new(cfg.hash_concurrency, cfg.hash_queue),
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
    pub fn with_shared_sessions(mut self, sessions: impl SharedSessions) -> Self {
        self.shared = Some(Box::new(sessions));
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

    /// Checks an account's fields and hashes its password (slow: done before taking the file
    /// lock).
    fn new_user(
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
        Ok(User {
            id: Ulid::new(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            role,
            password_hash: hash_password(password)?,
            languages: default_languages(),
            capacity: None,
            disabled: false,
            phone: None,
        })
    }

    /// Creates an account and saves the file.
    pub fn add_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        password: &str,
    ) -> Result<User, AuthError> {
        let user = Self::new_user(username, display_name, role, password)?;
        self.modify(|users| push_new(users, &user))?;
        Ok(user)
    }

    /// Sets an account's languages (for routing) and capacity.
    pub fn set_routing(
        &self,
        id: Ulid,
        languages: Vec<String>,
        capacity: Option<u32>,
    ) -> Result<(), AuthError> {
        self.modify(|users| {
            let u = users
                .iter_mut()
                .find(|u| u.id == id)
                .ok_or(AuthError::Invalid("no such user"))?;
            u.languages = languages;
            u.capacity = capacity;
            Ok(())
        })
    }

    /// Sets (or clears) where phone calls are bridged for this operator: `+` and 8-15 digits,
    /// or `client:` and a voice client identity.
    pub fn set_phone(&self, id: Ulid, phone: Option<String>) -> Result<(), AuthError> {
        let phone = phone.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        if let Some(p) = &phone {
            if crate::phone::Target::parse(p).is_none() {
                return Err(AuthError::Invalid(
                    "phone: +<country code and number, digits only> or client:<identity>",
                ));
            }
        }
        self.modify(|users| {
            let u = users
                .iter_mut()
                .find(|u| u.id == id)
                .ok_or(AuthError::Invalid("no such user"))?;
            u.phone = phone;
            Ok(())
        })
    }

    /// Changes the accounts. With a file: under its lock, re-reads it, applies `change` to
    /// what it holds now (so accounts another process added are kept), writes the result
    /// atomically, and adopts it in memory. Without a file (tests), changes memory.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Vec<User>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let Some(path) = &self.path else {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            let out = change(&mut users)?;
            if users.iter().any(|u| u.role == Role::Admin) {
                *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            return Ok(out);
        };
        let storage = |e: std::io::Error| {
            tracing::error!(error = %e, "could not update the accounts file");
            AuthError::Storage
        };
        let _lock = lock_file(path).map_err(storage)?;
        let mut users = read_users(path).map_err(storage)?;
        match change(&mut users) {
            Ok(out) => {
                write_users(path, &users).map_err(storage)?;
                self.adopt(users, mtime(path));
                Ok(out)
            }
            Err(e) => {
                // Nothing written; what was read is still the truth.
                self.adopt(users, mtime(path));
                Err(e)
            }
        }
    }

    /// Takes `users`, read from the file with modification time `mtime`, as the accounts.
    fn adopt(&self, users: Vec<User>, mtime: Option<std::time::SystemTime>) {
        if users.iter().any(|u| u.role == Role::Admin) {
            *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        *self.loaded_mtime.lock().unwrap_or_else(|e| e.into_inner()) = mtime;
    }

    /// Re-reads the accounts file if another process (the CLI) changed it.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let now = mtime(path);
        let loaded = *self.loaded_mtime.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_none() || loaded == now {
            return;
        }
        match read_users(path) {
            Ok(users) => {
                self.adopt(users, now);
                tracing::info!("accounts file changed: reloaded");
            }
            Err(_) => tracing::warn!(
                "accounts file changed but could not be read; keeping the accounts in memory"
            ),
        }
    }

    /// Creates the first admin with the setup code printed at start. Refused as soon as any
    /// admin exists in the accounts file, whoever created it and whenever: checked under the
    /// file's lock, in the same step that adds the admin.
    pub fn setup(
        &self,
        code: &str,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<User, AuthError> {
        self.refresh();
        let expected = self
            .pending_setup_code()
            .ok_or(AuthError::SetupUnavailable)?;
        let given = code.trim().to_ascii_uppercase();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AuthError::SetupUnavailable);
        }
        let user = Self::new_user(username, display_name, Role::Admin, password)?;
        self.modify(|users| {
            if users.iter().any(|u| u.role == Role::Admin) {
                return Err(AuthError::SetupUnavailable);
            }
            push_new(users, &user)
        })?;
        Ok(user)
    }

    /// Checks a password and opens a session, for a login from no network address (the CLI,
    /// tests). See [`Accounts::login_from`].
    pub async fn login(
        self: &std::sync::Arc<Self>,
        username: &str,
        password: &str,
    ) -> Result<(User, String), AuthError> {
        self.login_from(NO_ADDRESS, username, password).await
    }

    /// Checks a password from the address with key `addr` and opens a session. Returns the
    /// user and the session token for the cookie. The attempt is counted before its check
    /// ([`crate::lockout`]); the check runs off the async runtime, bounded
    /// ([`crate::password`]).
    pub async fn login_from(
        self: &std::sync::Arc<Self>,
        addr: AddrKey,
        username: &str,
        password: &str,
    ) -> Result<(User, String), AuthError> {
        self.refresh();
        let name = username.trim().to_owned();
        let attempt = self
            .lockout
            .begin(&name, addr, now_ms())
            .map_err(|Locked(ms)| AuthError::Locked(ms))?;
        if attempt.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(attempt.delay_ms)).await;
        }
        let user = self
            .users()
            .iter()
            .find(|u| u.username == name && !u.disabled)
            .cloned();
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        // Busy: the attempt is dropped unfinished, so it is not counted as a failure.
        let ok = self
            .checker
            .verify(password.to_owned(), hash)
            .await
            .map_err(|_| AuthError::Busy)?;
        match (ok, user) {
            (true, Some(user)) => {
                attempt.succeeded();
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
                let locked = attempt.failed(now_ms());
                tracing::info!(locked = locked.is_some(), "login refused");
                match locked {
                    Some(ms) => Err(AuthError::Locked(ms)),
                    None => Err(AuthError::BadCredentials),
                }
            }
        }
    }

    /// Failed and in-flight logins of `username` from the address with key `addr` (for tests
    /// and operations).
    pub fn login_attempts(&self, username: &str, addr: AddrKey) -> u32 {
        self.lockout.attempts(username, addr)
    }

    /// The password checker, whose permits tests may hold.
    pub fn password_checker(&self) -> &Checker {
        &self.checker
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

/// Adds `user` to `users` unless the username is taken.
fn push_new(users: &mut Vec<User>, user: &User) -> Result<(), AuthError> {
    if users.iter().any(|u| u.username == user.username) {
        return Err(AuthError::Exists);
    }
    users.push(user.clone());
    Ok(())
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
    async fn repeated_failures_lock_the_name_from_that_address_only() {
        let a = accounts();
        a.add_user("sakura", "Sakura", Role::Operator, "correct horse battery")
            .unwrap();
        for _ in 0..LOCK_AFTER - 1 {
            assert_eq!(
                a.login_from(1, "sakura", "wrong password!!")
                    .await
                    .unwrap_err(),
                AuthError::BadCredentials
            );
        }
        let first = a
            .login_from(1, "sakura", "wrong password!!")
            .await
            .unwrap_err();
        assert_eq!(first, AuthError::Locked(LOCK_FIRST_MS));
        // Locked: even the right password is refused, without being checked.
        assert!(matches!(
            a.login_from(1, "sakura", "correct horse battery").await,
            Err(AuthError::Locked(_))
        ));
        // From another address, the owner's password still works.
        assert!(a
            .login_from(2, "sakura", "correct horse battery")
            .await
            .is_ok());
        // Unknown names lock the same way, so a lock says nothing about who exists.
        for _ in 0..LOCK_AFTER {
            let _ = a.login_from(1, "nobody", "whatever password").await;
        }
        assert!(matches!(
            a.login_from(1, "nobody", "whatever password").await,
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
