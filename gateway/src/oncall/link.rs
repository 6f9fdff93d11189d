//! Linking a coordinator's own LINE account (issue 21, item 3): the coordinator asks for a
//! one-time code in the on-call panel and sends it as a message to the organisation's LINE
//! official account; the LINE connector recognises it before anything else
//! ([`is_link_code`]) and redeems it here ([`Oncall::redeem_line_code`]), with the LINE user
//! id sealed by the connector. A code is short-lived (`alerts.line_code_ttl_ms`), works once,
//! and an account may make only a few an hour; only its hash is kept.

use rand::Rng;
use ulid::Ulid;

use super::Oncall;
use crate::clock::Millis;
use crate::db::{AlertAuditRow, DbError, LineLinkRow};

/// What every code starts with, so that no message a person in need writes is mistaken for one.
pub const CODE_PREFIX: &str = "TSUNAGU";
/// Characters of a code after the prefix (Crockford's base 32: no I, L, O or U).
const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 8;
/// Codes an account may make per hour.
pub const CODES_PER_HOUR: u32 = 5;

/// The code in a message, normalised (`TSUNAGU` and eight characters, upper case, without
/// spaces or hyphens), if the message is one: `None` for anything else.
pub fn is_link_code(text: &str) -> Option<String> {
    let t: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != 'ー' && *c != '－')
        .collect::<String>()
        .to_ascii_uppercase();
    let rest = t.strip_prefix(CODE_PREFIX)?;
    (rest.len() == CODE_LEN && rest.bytes().all(|b| ALPHABET.contains(&b))).then_some(t)
}

/// A new code as shown: `TSUNAGU-XXXX-XXXX`.
fn new_code() -> String {
    let mut rng = rand::rng();
    let c: String = (0..CODE_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{CODE_PREFIX}-{}-{}", &c[..4], &c[4..])
}

fn code_hash(normalised: &str) -> String {
    crate::token::hash_token(normalised)
}

/// What redeeming a code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    /// The LINE account now receives the alerts of this account.
    Linked(Ulid),
    /// Unknown, used or expired.
    Invalid,
}

impl Oncall {
    /// A new link code for `account` (made by that account, `name`), with when it expires;
    /// `None` when the account made [`CODES_PER_HOUR`] in the last hour.
    pub async fn new_line_code(
        &self,
        account: Ulid,
        name: &str,
    ) -> Result<Option<(String, Millis)>, DbError> {
        let now = self.clock.now_ms();
        let code = new_code();
        let normalised = is_link_code(&code).unwrap_or_default();
        let expires = now + self.cfg.line_code_ttl_ms;
        let audit = AlertAuditRow {
            actor_id: Some(account),
            actor_name: name.to_owned(),
            channel: Some("line".into()),
            ..AlertAuditRow::system(now, "line_code_issued", None)
        };
        let made = self
            .db
            .insert_link_code(
                &code_hash(&normalised),
                account,
                now,
                expires,
                CODES_PER_HOUR,
                &audit,
            )
            .await?;
        Ok(made.then_some((code, expires)))
    }

    /// Redeems a code (normalised by [`is_link_code`]) sent from LINE channel `channel`:
    /// `seal` seals the sender's LINE user id for the account the code was made for.
    pub async fn redeem_line_code(
        &self,
        code: &str,
        channel: &str,
        seal: impl FnOnce(Ulid) -> Option<Vec<u8>>,
    ) -> Result<Redeemed, DbError> {
        let now = self.clock.now_ms();
        let Some(account) = self.db.use_link_code(&code_hash(code), now).await? else {
            return Ok(Redeemed::Invalid);
        };
        let Some(sealed_user) = seal(account) else {
            return Ok(Redeemed::Invalid);
        };
        let audit = AlertAuditRow {
            actor_id: Some(account),
            channel: Some("line".into()),
            detail: Some(format!("channel {channel}")),
            ..AlertAuditRow::system(now, "line_linked", None)
        };
        self.db
            .set_line_link(
                &LineLinkRow {
                    account_id: account,
                    channel_id: channel.to_owned(),
                    sealed_user,
                    linked_at: now,
                },
                &audit,
            )
            .await?;
        tracing::info!(account = %account, "LINE account linked for alerts");
        Ok(Redeemed::Linked(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_recognised_however_it_is_typed_and_nothing_else_is() {
        let code = new_code();
        assert!(code.starts_with("TSUNAGU-") && code.len() == 17, "{code}");
        let n = is_link_code(&code).unwrap();
        assert_eq!(is_link_code(&code.to_lowercase()), Some(n.clone()));
        assert_eq!(
            is_link_code(&format!(" {} ", code.replace('-', " "))),
            Some(n)
        );
        for not in [
            "つらいです",
            "TSUNAGU",
            "tsunagu-1234",
            "TSUNAGU-ABCD-EFGI",
            "hello world",
        ] {
            assert_eq!(is_link_code(not), None, "{not}");
        }
    }
}
