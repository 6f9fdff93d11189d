//! The first-run setup code: while no account exists, a one-time code (printed at start) lets
//! the person who installs create the first admin, so nobody ever has a default password. It
//! stops working as soon as any admin exists in the database, whoever created it and on
//! whichever node: checked by the database in the same step that adds the admin.

use subtle::ConstantTimeEq;
use ulid::Ulid;

use super::{Accounts, AuthError, Role, User};

pub(super) fn setup_code() -> String {
    // 10 characters of Crockford base32: 50 bits, typed once by the person who installs.
    let u = Ulid::new().to_string();
    format!("{}-{}", &u[16..21], &u[21..26])
}

impl Accounts {
    /// The one-time setup code, while no account exists.
    pub fn pending_setup_code(&self) -> Option<String> {
        self.setup_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Creates the first admin with the setup code printed at start. Refused as soon as any
    /// admin exists in the database, whoever created it and whenever: checked by the database
    /// in the same step that adds the admin.
    pub async fn setup(
        &self,
        code: &str,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<User, AuthError> {
        self.refresh().await?;
        let expected = self
            .pending_setup_code()
            .ok_or(AuthError::SetupUnavailable)?;
        let given = code.trim().to_ascii_uppercase();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AuthError::SetupUnavailable);
        }
        let user = self
            .new_user(username, display_name, Role::Admin, password)
            .await?;
        let added = self.insert_first_admin(&user).await?;
        // Either way an admin exists now: the copy re-read ends the setup code.
        self.refresh().await?;
        if !added {
            return Err(AuthError::SetupUnavailable);
        }
        Ok(user)
    }

    /// Forgets the setup code once `users` (the accounts now) hold an admin.
    pub(super) fn end_setup_once_an_admin_exists(&self, users: &[User]) {
        if users.iter().any(|u| u.role == Role::Admin) {
            *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{in_memory, AuthSettings, Role};
    use crate::clock::Clock;

    #[tokio::test]
    async fn the_setup_code_creates_one_admin_and_then_is_gone() {
        let a = in_memory(AuthSettings::password_only(), Clock::manual(1_000_000)).await;
        let code = a.pending_setup_code().expect("no accounts yet");
        assert!(a
            .setup("WRONG-CODE", "admin", "Admin", "long enough password")
            .await
            .is_err());
        let admin = a
            .setup(
                &code.to_lowercase(),
                "admin",
                "Admin",
                "long enough password",
            )
            .await
            .unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert!(a.pending_setup_code().is_none());
        assert!(a
            .setup(&code, "admin2", "Admin", "long enough password")
            .await
            .is_err());
    }
}
