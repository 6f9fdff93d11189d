//! Adding and changing accounts, and the accounts file they live in.
//!
//! The running gateway and the `gateway user` CLI both write the file, so every change
//! (`Accounts::modify`) takes an exclusive `flock` on `<users_file>.lock`, re-reads the file,
//! applies the change to what it holds now, and replaces it atomically (a temporary file beside
//! it, written, synced, renamed over). A file that cannot be read is an error, never taken as
//! empty. Accounts another process changed are picked up at the next login
//! (`Accounts::refresh`, by modification time).

use ulid::Ulid;

use super::MIN_PASSWORD_CHARS;
use super::{default_languages, hash_password, Accounts, AuthError, Role, User};

pub(super) fn mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
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

impl Accounts {
    /// Checks an account's fields and hashes its password (slow: done before taking the file
    /// lock).
    pub(super) fn new_user(
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
        self.modify_user(id, |u| {
            u.languages = languages;
            u.capacity = capacity;
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
        self.modify_user(id, |u| u.phone = phone)
    }

    /// [`Self::modify`] for one account, `id` (refused when there is no such user).
    fn modify_user(&self, id: Ulid, change: impl FnOnce(&mut User)) -> Result<(), AuthError> {
        self.modify(|users| {
            let u = users
                .iter_mut()
                .find(|u| u.id == id)
                .ok_or(AuthError::Invalid("no such user"))?;
            change(u);
            Ok(())
        })
    }

    /// Changes the accounts. With a file: under its lock, re-reads it, applies `change` to
    /// what it holds now (so accounts another process added are kept), writes the result
    /// atomically, and adopts it in memory. Without a file (tests), changes memory.
    pub(super) fn modify<T>(
        &self,
        change: impl FnOnce(&mut Vec<User>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let Some(path) = &self.path else {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            let out = change(&mut users)?;
            self.end_setup_once_an_admin_exists(&users);
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
        self.end_setup_once_an_admin_exists(&users);
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        *self.loaded_mtime.lock().unwrap_or_else(|e| e.into_inner()) = mtime;
    }

    /// Re-reads the accounts file if another process (the CLI) changed it.
    pub(super) fn refresh(&self) {
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
}

/// Adds `user` to `users` unless the username is taken.
pub(super) fn push_new(users: &mut Vec<User>, user: &User) -> Result<(), AuthError> {
    if users.iter().any(|u| u.username == user.username) {
        return Err(AuthError::Exists);
    }
    users.push(user.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{in_memory, AuthSettings};
    use super::*;
    use crate::clock::Clock;

    fn accounts() -> Arc<Accounts> {
        in_memory(AuthSettings::default(), Clock::manual(1_000_000))
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
    fn accounts_survive_a_restart_through_the_file() {
        let dir = std::env::temp_dir().join(format!("tsunagu-acc-{}", Ulid::new()));
        let cfg = AuthSettings {
            users_file: dir.join("users.json").display().to_string(),
            ..AuthSettings::default()
        };
        let clock = Clock::manual(1_000_000);
        let a = Accounts::load(&cfg, clock.clone()).unwrap();
        a.add_user("sakura", "Sakura", Role::Operator, "long enough password")
            .unwrap();
        let b = Accounts::load(&cfg, clock).unwrap();
        assert_eq!(b.list().len(), 1);
        assert!(b.pending_setup_code().is_none());
        // An account added by another process (the CLI) is seen at the next login. (The wait
        // is for the file's modification time, which the injected clock does not move.)
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
