//! Operator accounts and sessions.
//!
//! Accounts (username, display name, role, argon2id hash, languages, capacity, phone identity,
//! disabled flag) live in the database ([`crate::db`]: SQLite by default, PostgreSQL for several
//! nodes); they hold nothing about the people who reach out. The running gateway and the
//! `gateway user` CLI both write them, each change one statement (or transaction) the
//! database serialises, so no write replaces accounts it did not read (issue 17, item 6). Every
//! node keeps a copy in memory for the hot paths (a session's user, a phone target), re-read at
//! each sign-in and setup and after each change it makes; sign-in itself always checks the
//! account as the database has it now, so a disabled account cannot sign in anywhere.
//!
//! Sessions live in memory (or Redis): a random 256-bit token in an HttpOnly cookie, stored
//! here only as its SHA-256, with an idle timeout and an absolute lifetime, revocable. On first
//! run with no accounts a one-time setup code is generated and printed, so nobody ever has a
//! default password; it stops working as soon as any admin exists, checked by the database in
//! the same step that adds the admin. Password checks are bounded ([`crate::password`]);
//! failed logins lock per (username, address) and slow down per username ([`crate::lockout`]).
//!
//! This file holds the types (settings, roles, users, sessions, errors, the
//! [`SharedSessions`] trait) and [`Accounts`] itself with its construction; the rest of
//! `Accounts` is in parts by concern:
//! - `store`: adding and changing accounts in the database, the copy in memory, the import of
//!   the accounts file earlier versions kept (`users.json`);
//! - `setup`: the first-run setup code;
//! - `login`: password checks with lockout, opening a session;
//! - `sessions`: the session table (in memory or shared), expiry, revocation;
//! - `steps`: what a sign-in does between its password and its session (second factor,
//!   one-time password change, TOTP enrolment for the roles that need it, the pledge);
//! - `totp`: RFC 6238 codes (the `totp-rs` crate) and recovery codes;
//! - `admin`: the admin screen's changes to accounts, each audited (`account_audit`).
//!
//! Every time auth reads comes from the [`Clock`] given to [`Accounts::open`].

mod admin;
mod login;
mod sessions;
mod setup;
mod steps;
mod store;
mod totp;

pub use admin::AccountView;
pub use steps::{Enrolment, Pending, Progress, SignIn, Step, StepInput};

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::clock::Clock;
use crate::db::Db;
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
    /// Roles that sign in with a second factor (TOTP, RFC 6238): an account of such a role
    /// without one enrols at its next sign-in, before it gets a session. Default: coordinators
    /// and admins (who can open escalation records). Operators may turn TOTP on themselves.
    /// Only tests that are not about second factors set this to `[]`.
    pub require_totp_for: Vec<String>,
    /// Every account acknowledges the confidentiality pledge at its first sign-in, and again
    /// when the text changes, before it gets a session.
    pub require_pledge: bool,
    /// The pledge's text (shown as written; Japanese by default).
    pub pledge_text: String,
    /// A file whose text is the pledge instead of `pledge_text` (read at start).
    pub pledge_file: Option<String>,
    /// How long a sign-in may take from its password to its last step (second factor,
    /// password change, enrolment, pledge).
    pub sign_in_step_ms: u64,
    /// The issuer shown by authenticator apps beside the username.
    pub totp_issuer: String,
}

/// The confidentiality pledge every account acknowledges (seed 000 on staff confidentiality):
/// what was heard stays here, nothing is recorded, no contact outside the service.
pub const DEFAULT_PLEDGE: &str = "私は、この相談窓口の相談員・スタッフとして、次のことを約束します。\n\
1. 相談の中で見聞きしたことは、誰にも話しません。相談者が誰か分からなくても、活動を終えた後も同じです。\n\
2. 相談の内容を録音・撮影・書き写して持ち出しません。\n\
3. 相談者と、この窓口の外で連絡を取ったり会ったりしません。\n\
4. 命や身体に危険があるときは、決められた手順（緊急フラグ）に従い、コーディネーターに伝えます。";

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_idle_ms: 2 * 60 * 60_000,
            session_max_ms: 12 * 60 * 60_000,
            cookie_secure: false,
            hash_concurrency: 0,
            // A check takes tens of milliseconds: a queue of 8 is well under a second's wait.
            hash_queue: 8,
            require_totp_for: vec!["coordinator".into(), "admin".into()],
            require_pledge: true,
            pledge_text: DEFAULT_PLEDGE.into(),
            pledge_file: None,
            sign_in_step_ms: 10 * 60_000,
            totp_issuer: "Tsunagu".into(),
        }
    }
}

impl AuthSettings {
    /// Whether accounts of `role` must sign in with a second factor.
    pub fn totp_required(&self, role: Role) -> bool {
        self.require_totp_for
            .iter()
            .any(|r| r.trim() == role.as_str())
    }

    /// Refuses role names that are not roles (a typo must not silently drop a requirement);
    /// empty entries (an empty list given as an empty variable) are ignored.
    pub fn validate(&self) -> anyhow::Result<()> {
        for r in &self.require_totp_for {
            anyhow::ensure!(
                r.trim().is_empty() || Role::parse(r.trim()).is_some(),
                "auth.require_totp_for: {r:?} is not a role (operator, coordinator, admin)"
            );
        }
        anyhow::ensure!(
            self.sign_in_step_ms >= 10_000,
            "auth.sign_in_step_ms must be at least 10000"
        );
        Ok(())
    }

    /// The pledge's text as configured (the file's when `pledge_file` is set), or `None`
    /// when no pledge is required.
    fn pledge(&self) -> anyhow::Result<Option<String>> {
        if !self.require_pledge {
            return Ok(None);
        }
        let text = match &self.pledge_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading auth.pledge_file {path}: {e}"))?,
            None => self.pledge_text.clone(),
        };
        let text = text.trim().to_owned();
        anyhow::ensure!(
            !text.is_empty(),
            "auth.require_pledge is on but the pledge text is empty"
        );
        Ok(Some(text))
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
    /// The role named `s` as [`Role::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Operator, Role::Coordinator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

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
    /// When the account was created (0 in accounts files of earlier versions).
    #[serde(default)]
    pub created_at: Millis,
    /// The last successful sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<Millis>,
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
    /// The password was right but the sign-in has steps to go (second factor, password
    /// change, enrolment, pledge): [`Accounts::login_from`] says which.
    #[error("sign-in needs another step")]
    StepRequired,
    /// A wrong (or already used) second-factor or recovery code.
    #[error("wrong code")]
    BadCode,
    /// The pending sign-in is unknown or expired: start again with the password.
    #[error("sign-in expired")]
    SignInExpired,
}

/// The address key of logins that come from no network address (the CLI, tests).
pub const NO_ADDRESS: AddrKey = 0;

pub struct Accounts {
    cfg: AuthSettings,
    /// Where accounts live.
    db: Db,
    /// This node's copy of the accounts, for the hot paths; re-read at each sign-in and setup.
    users: RwLock<Vec<User>>,
    /// SHA-256 of the session token → session.
    sessions: Mutex<HashMap<String, Session>>,
    /// The first-run setup code while no account exists.
    setup_code: Mutex<Option<String>>,
    /// A real hash to verify against when the username is unknown, so timing does not tell
    /// which usernames exist.
    dummy_hash: String,
    /// Failed logins per (username, address) and per username (known or not, so a lock
    /// reveals nothing).
    lockout: Lockout,
    /// Bounds concurrent password checks (argon2 holds 19 MiB each).
    checker: Checker,
    /// With the Redis store: sessions live there (shared by every node) instead of `sessions`.
    shared: Option<Box<dyn SharedSessions>>,
    /// Where every time this reads comes from: sessions' ages, lockout windows, accounts'
    /// creation and sign-in times.
    clock: Clock,
    /// Wrong second-factor and recovery codes per (username, address), locked like passwords.
    code_lockout: Lockout,
    /// The pledge's text and its SHA-256 (hex), when a pledge is required.
    pledge: Option<(String, String)>,
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    crate::password::hash(password).ok_or(AuthError::Invalid("password could not be hashed"))
}

impl Accounts {
    /// The accounts in `db` (migrated: see [`Db::open`]), reading the time from `clock`.
    pub async fn open(cfg: &AuthSettings, db: Db, clock: Clock) -> anyhow::Result<Self> {
        let users = store::read_all(&db)
            .await
            .map_err(|e| anyhow::anyhow!("reading accounts from the database: {e}"))?;
        let code = users.is_empty().then(setup::setup_code);
        let pledge = cfg.pledge()?.map(|text| {
            let hash = crate::token::hash_token(&text);
            (text, hash)
        });
        Ok(Accounts {
            code_lockout: Lockout::new(),
            pledge,
            lockout: Lockout::new(),
            checker: Checker::new(cfg.hash_concurrency, cfg.hash_queue),
            cfg: cfg.clone(),
            db,
            users: RwLock::new(users),
            sessions: Mutex::new(HashMap::new()),
            setup_code: Mutex::new(code),
            dummy_hash: hash_password("not a real password, for timing only")
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            shared: None,
            clock,
        })
    }

    /// Closes the database's connections (at shutdown; nothing reads accounts after).
    pub async fn close_database(&self) {
        self.db.close().await;
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

#[cfg(test)]
impl AuthSettings {
    /// The defaults with sign-ins by password alone (no second factor, no pledge): for tests
    /// of the other parts.
    pub(crate) fn password_only() -> Self {
        AuthSettings {
            require_totp_for: Vec::new(),
            require_pledge: false,
            ..AuthSettings::default()
        }
    }
}

/// Accounts in a database of their own in memory, reading the time from `clock` (tests of
/// every part).
#[cfg(test)]
async fn in_memory(cfg: AuthSettings, clock: Clock) -> std::sync::Arc<Accounts> {
    let db = Db::open(&crate::db::DatabaseSettings {
        url: Some("memory".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    std::sync::Arc::new(Accounts::open(&cfg, db, clock).await.unwrap())
}
