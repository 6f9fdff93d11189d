//! Organisation-maintained data the console shows: the referral directory (support
//! organisations with hours and numbers) and canned phrases. Built-in examples ship in
//! `gateway/assets/` (each to be verified by the organisation before use); files named in
//! `directory.*` replace them. Loaded once at start; a malformed file is a startup error.

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// `[directory]` in the configuration. Owned here; `config` assembles it into `Settings`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DirectorySettings {
    /// JSON file of referral entries; unset uses the built-in examples (to verify before use).
    pub referrals_file: Option<String>,
    /// JSON file of canned phrases; unset uses the built-in examples.
    pub phrases_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Referral {
    pub id: String,
    pub name: String,
    pub helps_with: String,
    pub hours: String,
    pub phone: String,
    #[serde(default)]
    pub web: String,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phrase {
    pub id: String,
    pub lang: String,
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Directory {
    pub referrals: Vec<Referral>,
    pub phrases: Vec<Phrase>,
}

const BUILTIN_REFERRALS: &str = include_str!("../assets/referrals.json");
const BUILTIN_PHRASES: &str = include_str!("../assets/phrases.json");

fn load<T: serde::de::DeserializeOwned>(file: Option<&str>, builtin: &str) -> anyhow::Result<T> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
        }
        None => Ok(serde_json::from_str(builtin)?),
    }
}

impl Directory {
    pub fn load(cfg: &DirectorySettings) -> anyhow::Result<Self> {
        Ok(Directory {
            referrals: load(cfg.referrals_file.as_deref(), BUILTIN_REFERRALS)?,
            phrases: load(cfg.phrases_file.as_deref(), BUILTIN_PHRASES)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_examples_include_the_national_lines_and_emergency_numbers() {
        let d = Directory::load(&DirectorySettings::default()).unwrap();
        let phones: Vec<&str> = d.referrals.iter().map(|r| r.phone.as_str()).collect();
        for n in [
            "0120-279-338",
            "0120-061-338",
            "0570-064-556",
            "0120-99-7777",
            "0120-279-889",
            "189",
            "119",
            "110",
        ] {
            assert!(phones.contains(&n), "missing {n}");
        }
        assert!(d.phrases.iter().any(|p| p.lang == "ja"));
    }

    #[test]
    fn a_malformed_file_is_an_error() {
        let path = std::env::temp_dir().join(format!("tsunagu-dir-{}.json", ulid::Ulid::new()));
        std::fs::write(&path, "{ nope").unwrap();
        let cfg = DirectorySettings {
            referrals_file: Some(path.display().to_string()),
            phrases_file: None,
        };
        assert!(Directory::load(&cfg).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
