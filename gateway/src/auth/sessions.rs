//! Sessions: a random 256-bit token in an HttpOnly cookie, stored only as its SHA-256
//! ([`crate::token::hash_token`]), with an idle timeout and an absolute lifetime, revocable.
//! They live in [`Accounts`]' table, or with the Redis store in the [`SharedSessions`](super::SharedSessions) every
//! node reads. Their ages are read from the accounts' clock.

use std::collections::HashMap;

use ulid::Ulid;

use super::{Accounts, AuthError, Session, User};
use crate::protocol::Millis;
use crate::token::hash_token;

fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Accounts {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `user_id` and returns its token (for the cookie).
    pub(super) async fn open_session(&self, user_id: Ulid) -> Result<String, AuthError> {
        let token = random_token();
        let now = self.clock.now_ms();
        let session = Session {
            user_id,
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
        Ok(token)
    }

    fn expired(&self, s: &Session, now: Millis) -> bool {
        now.saturating_sub(s.last_seen) > self.cfg.session_idle_ms
            || now.saturating_sub(s.created_at) > self.cfg.session_max_ms
    }

    /// The user of a live session, refreshing its idle timer. Expired sessions are removed.
    /// With shared sessions and Redis unreachable, nobody new is let in. The account is read
    /// from the database, so one disabled elsewhere (another node, the CLI) is refused at once.
    pub async fn session_user(&self, token: &str) -> Option<User> {
        let key = hash_token(token);
        let now = self.clock.now_ms();
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
        self.current_user(user_id).await.filter(|u| !u.disabled)
    }

    /// Whether a session token is still live, without refreshing it (for open sockets). With
    /// shared sessions and Redis unreachable, open sockets stay open: nobody could have revoked
    /// them meanwhile, and closing every console during an outage would help nobody.
    pub async fn session_live(&self, token: &str) -> bool {
        let now = self.clock.now_ms();
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
                    s.last_seen = self.clock.now_ms();
                    let _ = shared
                        .put(&key, &s, self.cfg.session_idle_ms, self.cfg.session_max_ms)
                        .await;
                }
            }
            None => {
                if let Some(s) = self.sessions().get_mut(&key) {
                    s.last_seen = self.clock.now_ms();
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
    use super::super::{in_memory, AuthSettings, Role};
    use crate::clock::Clock;

    #[tokio::test]
    async fn sessions_expire_when_idle() {
        let clock = Clock::manual(1_000_000);
        let a = in_memory(
            AuthSettings {
                session_idle_ms: 0,
                ..AuthSettings::password_only()
            },
            clock.clone(),
        )
        .await;
        a.add_user("s", "S", Role::Operator, "long enough password")
            .await
            .unwrap();
        let (_, token) = a.login("s", "long enough password").await.unwrap();
        clock.advance(5);
        assert!(a.session_user(&token).await.is_none());
    }
}
