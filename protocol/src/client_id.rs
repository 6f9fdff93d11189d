//! Client ids: the ULID a client puts in every frame's `id`, which the server's `ack`, `error`
//! and `pong` answer with, and a message's log entry carries, so the client can match them.
//!
//! The rules (docs/protocol.md, "Client ids"):
//! - 26 characters of Crockford's base32 (`0-9`, `A-Z` without `I`, `L`, `O`, `U`), upper or
//!   lower case, the first `0` to `7`: a ULID is 128 bits and 26 characters hold 130, so a
//!   first character above `7` does not fit. Anything else is refused with `invalid` (the
//!   `ulid` crate alone would take `P1M…` and silently keep `61M…`, a different id).
//! - The id is its 128-bit value: `01arz…` and `01ARZ…` are the same id (Crockford's base32 is
//!   not case-sensitive), so a retry in the other case is still a retry. Two ids that are
//!   different values never meet (the property test in `gateway/tests/properties.rs`).
//! - It is echoed exactly as sent, in its case: the server keeps which letters were lowercase.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Characters in a ULID's text.
const LEN: usize = 26;

/// A client id: its value, and which of its letters the client wrote in lowercase (bit `i`:
/// character `i`), so that it is written back exactly as sent. Equal, hashed and ordered by
/// value alone.
#[derive(Debug, Clone, Copy)]
pub struct ClientId {
    value: Ulid,
    lowercase: u32,
}

/// Why a text is not a client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClientId {
    #[error("a client id is 26 characters")]
    Length,
    #[error("a client id's first character is 0 to 7 (a ULID is 128 bits)")]
    OutOfRange,
    #[error("a client id is Crockford base32 (0-9, A-Z without I, L, O, U)")]
    Character,
}

impl ClientId {
    /// Parses a client id by the rules above.
    pub fn parse(text: &str) -> Result<ClientId, InvalidClientId> {
        let bytes = text.as_bytes();
        if bytes.len() != LEN {
            return Err(InvalidClientId::Length);
        }
        if !matches!(bytes[0], b'0'..=b'7') {
            // Checked first: `Ulid::from_string` would shift the excess bits out unnoticed.
            return match Ulid::from_string(text) {
                Ok(_) => Err(InvalidClientId::OutOfRange),
                Err(_) => Err(InvalidClientId::Character),
            };
        }
        let value = Ulid::from_string(text).map_err(|_| InvalidClientId::Character)?;
        let lowercase = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_lowercase())
            .fold(0, |mask, (i, _)| mask | (1 << i));
        Ok(ClientId { value, lowercase })
    }

    /// The id's value, which the store remembers to recognise a retry.
    pub fn ulid(self) -> Ulid {
        self.value
    }

    /// The id as the client wrote it.
    fn write(self, buf: &mut [u8; LEN]) -> &str {
        self.value.array_to_str(buf);
        for (i, b) in buf.iter_mut().enumerate() {
            if self.lowercase & (1 << i) != 0 {
                b.make_ascii_lowercase();
            }
        }
        // Only ASCII letters and digits: still UTF-8.
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

/// An id the server made (LINE and phone connectors): upper case, as a ULID is written.
impl From<Ulid> for ClientId {
    fn from(value: Ulid) -> Self {
        ClientId {
            value,
            lowercase: 0,
        }
    }
}

impl PartialEq for ClientId {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for ClientId {}

impl Hash for ClientId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.write(&mut [0; LEN]))
    }
}

impl std::str::FromStr for ClientId {
    type Err = InvalidClientId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientId::parse(s)
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.write(&mut [0; LEN]))
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ClientId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a client id (a ULID)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClientId, E> {
                ClientId::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// The same checks for the other ids a client sends (conversations, colleagues): the server
/// made them, so a valid client only ever sends them back as they were; one out of range is
/// refused rather than read as another conversation.
pub mod strict {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer};
    use ulid::Ulid;

    use super::ClientId;

    pub fn ulid<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        ClientId::deserialize(d).map(ClientId::ulid)
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ulid>, D::Error> {
        Ok(Option::<ClientId>::deserialize(d)?.map(ClientId::ulid))
    }

    pub fn keys<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<HashMap<Ulid, V>, D::Error> {
        let map = HashMap::<ClientId, V>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k.ulid(), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_character_above_7_is_out_of_range_not_another_id() {
        assert_eq!(
            ClientId::parse("P1M95GDJGJ6FNKM0YF7E9F6FGW"),
            Err(InvalidClientId::OutOfRange)
        );
        assert_eq!(
            ClientId::parse("81M95GDJGJ6FNKM0YF7E9F6FGW"),
            Err(InvalidClientId::OutOfRange)
        );
        assert!(ClientId::parse("71M95GDJGJ6FNKM0YF7E9F6FGW").is_ok());
        assert_eq!(
            ClientId::parse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ").map(|c| c.ulid().0),
            Ok(u128::MAX)
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "01M95GDJGJ6FNKM0YF7E9F6FG",
            "01M95GDJGJ6FNKM0YF7E9F6FGWW",
            "01M95GDJGJ6FNKM0YF7E9F6FGI",
            "01M95GDJGJ6FNKM0YF7E9F6FGL",
            "01M95GDJGJ6FNKM0YF7E9F6FGO",
            "01M95GDJGJ6FNKM0YF7E9F6FGU",
            "01M95GDJGJ6FNKM0YF7E9F6F-W",
            "01M95GDJGJ6FNKM0YF7E9F6FGé",
        ] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_id_is_written_back_exactly_as_sent_and_equal_in_either_case() {
        let mixed = "01arZ3NDEKTSV4RRFFQ69G5FAV";
        let id = ClientId::parse(mixed).unwrap();
        assert_eq!(id.to_string(), mixed);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{mixed}\""));
        let upper = ClientId::parse(&mixed.to_uppercase()).unwrap();
        assert_eq!(id, upper, "the same value");
        assert_eq!(upper.to_string(), mixed.to_uppercase());
        assert_eq!(
            serde_json::from_str::<ClientId>(&format!("\"{mixed}\""))
                .unwrap()
                .to_string(),
            mixed
        );
    }
}
