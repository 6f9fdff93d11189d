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
//!
//! This file holds the types (settings, roles, users, sessions, errors, the
//! [`SharedSessions`] trait) and [`Accounts`] itself with its construction; the rest of
//! `Accounts` is in parts by concern:
//! - `accounts_file`: adding and changing accounts, and the file they live in;
//! - `setup`: the first-run setup code;
//! - `login`: password checks with lockout, opening a session;
//! - `sessions`: the session table (in memory or shared), expiry, revocation.
//!
//! Every time auth reads comes from the [`Clock`] given to [`Accounts::load`].

mod accounts_file;
mod login;
mod sessions;
mod setup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::clock::Clock;
use crate::limits::AddrKey;
use crate::lockout::Lockout;
pub use crate::lockout::{LOCK_AFTER, LOCK_FIRST_MS, LOCK_MAX_MS};
use crate::password::Checker;
use crate::protocol::Millis;

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
    /// Where every time this reads comes from: sessions' ages, lockout windows.
    clock: Clock,
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    crate::password::hash(password).ok_or(AuthError::Invalid("password could not be hashed"))
}

impl Accounts {
    /// Loads accounts from `cfg.users_file` (empty string: in memory only), reading the time
    /// from `clock`.
    pub fn load(cfg: &AuthSettings, clock: Clock) -> anyhow::Result<Self> {
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
        let code = users.is_empty().then(setup::setup_code);
        let loaded_mtime = Mutex::new(path.as_deref().and_then(accounts_file::mtime));
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
            clock,
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

    pub fn user(&self, id: Ulid) -> Option<User> {
        self.users().iter().find(|u| u.id == id).cloned()
    }

    pub fn list(&self) -> Vec<User> {
        self.users().clone()
    }
}

/// Accounts in memory only, reading the time from `clock` (tests of every part).
#[cfg(test)]
fn in_memory(cfg: AuthSettings, clock: Clock) -> std::sync::Arc<Accounts> {
    std::sync::Arc::new(
        Accounts::load(
            &AuthSettings {
                users_file: String::new(),
                ..cfg
            },
            clock,
        )
        .unwrap(),
    )
}
