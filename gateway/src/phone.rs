//! Where a phone call to an operator goes: the `phone` field of an operator's account, checked
//! when the account is written (`auth`) and dialled by the voice connector (`connectors::voice`,
//! whose `twiml` module re-exports it). A module of its own so that neither of the two depends
//! on the other for it.

/// Where a `<Dial>` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A phone number (E.164).
    Number(String),
    /// A browser or app voice client identity.
    Client(String),
}

impl Target {
    /// Reads an operator's configured target: `+8190…` or `client:<identity>`.
    pub fn parse(s: &str) -> Option<Target> {
        let s = s.trim();
        if let Some(id) = s.strip_prefix("client:") {
            let ok = !id.is_empty()
                && id.len() <= 120
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
            return ok.then(|| Target::Client(id.to_owned()));
        }
        let digits = s.strip_prefix('+')?;
        let ok = (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit());
        ok.then(|| Target::Number(s.to_owned()))
    }
}
