//! Signing in: a password checked with the lockout's accounting around it. The attempt is
//! counted before its check ([`crate::lockout`]: locked per (username, address), slowed per
//! username, unknown names counted alike); the check runs off the async runtime, bounded
//! ([`crate::password`]), against a dummy hash when the name is unknown so timing tells
//! nothing; a success opens a session (`sessions`).

use crate::limits::AddrKey;
use crate::lockout::Locked;
use crate::password::Checker;

use super::{Accounts, AuthError, SignIn, User, NO_ADDRESS};

impl Accounts {
    /// Checks a password and opens a session, for a login from no network address (the CLI,
    /// tests): [`AuthError::StepRequired`] if the sign-in has steps after its password (see
    /// [`Accounts::login_from`]).
    pub async fn login(
        self: &std::sync::Arc<Self>,
        username: &str,
        password: &str,
    ) -> Result<(User, String), AuthError> {
        match self.login_from(NO_ADDRESS, username, password).await? {
            SignIn::Session { user, token } => Ok((user, token)),
            SignIn::Pending { .. } => Err(AuthError::StepRequired),
        }
    }

    /// Checks a password from the address with key `addr`: a session (the user and the token
    /// for the cookie), or a pending sign-in when steps remain (`steps`: second factor,
    /// password change, enrolment, pledge). The attempt is counted before its check
    /// ([`crate::lockout`]); the check runs off the async runtime, bounded
    /// ([`crate::password`]).
    pub async fn login_from(
        self: &std::sync::Arc<Self>,
        addr: AddrKey,
        username: &str,
        password: &str,
    ) -> Result<SignIn, AuthError> {
        // The accounts as the database has them now: one added on another node (or by the
        // CLI) signs in, one disabled anywhere does not.
        self.refresh().await?;
        let name = username.trim().to_owned();
        let attempt = self
            .lockout
            .begin(&name, addr, self.clock.now_ms())
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
                self.after_password(user).await
            }
            _ => {
                let locked = attempt.failed(self.clock.now_ms());
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
}

#[cfg(test)]
mod tests {
    use super::super::{in_memory, AuthSettings, Role, LOCK_AFTER, LOCK_FIRST_MS};
    use super::*;
    use crate::clock::Clock;

    #[tokio::test]
    async fn a_user_can_log_in_with_the_right_password_only() {
        let a = in_memory(AuthSettings::password_only(), Clock::manual(1_000_000)).await;
        a.add_user("sakura", "Sakura", Role::Operator, "correct horse battery")
            .await
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

    /// With a clock that stands still: the lock's window never passes during the test, and
    /// the slowdown a name under attack gets is waited out in real time (a quarter second
    /// here). Not on paused tokio time: the database's pool waits on timers while its SQLite
    /// thread works, and paused time would run them out at once.
    #[tokio::test]
    async fn repeated_failures_lock_the_name_from_that_address_only() {
        let a = in_memory(AuthSettings::password_only(), Clock::manual(1_000_000)).await;
        a.add_user("sakura", "Sakura", Role::Operator, "correct horse battery")
            .await
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
}
