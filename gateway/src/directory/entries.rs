//! What a valid referral entry or phrase is, the seed data, and the shapes the API sends:
//! admins' input is checked here (every field bounded), the same checks for a form and a CSV
//! row.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{DirectoryError, DirectorySettings, Hours};
use crate::clock::Millis;
use crate::db::{PhraseRecord, ReferralRecord};

const BUILTIN_REFERRALS: &str = include_str!("../../assets/referrals.json");
const BUILTIN_PHRASES: &str = include_str!("../../assets/phrases.json");

/// Most entries or phrases the gateway keeps (each list is read whole by every node), and the
/// most rows one CSV import may hold.
pub const MAX_ROWS: usize = 2_000;

/// Refuses to add `added` entries to a list of `kept` (hidden ones count: they are kept).
pub fn check_room(kept: usize, added: usize) -> Result<(), DirectoryError> {
    if added > 0 && kept + added > MAX_ROWS {
        return Err(DirectoryError::Invalid(format!(
            "at most {MAX_ROWS} in all ({kept} kept, {added} new): edit or reuse a hidden one instead"
        )));
    }
    Ok(())
}

/// An entry as the API shows it: the stored row, whether it is hidden or still to be
/// verified, and whether it is open now (`null`: hours unknown).
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    #[serde(flatten)]
    pub entry: ReferralRecord,
    pub hidden: bool,
    pub needs_verification: bool,
    pub open_now: Option<bool>,
}

impl EntryView {
    pub fn of(r: &ReferralRecord, hours: &Hours, now: Millis) -> EntryView {
        EntryView {
            entry: r.clone(),
            hidden: r.hidden_at.is_some(),
            needs_verification: r.verified_at.is_none(),
            open_now: hours.open_at(now),
        }
    }
}

/// One helpline of a closing message: name, number and a short note (the hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Helpline {
    pub name: String,
    pub number: String,
    pub note: String,
}

/// An admin's entry, from the form (JSON) or a CSV row.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferralInput {
    /// Only for a new entry (CSV); a form's new entry gets a generated id.
    pub id: Option<String>,
    pub name: String,
    pub phone: String,
    pub url: String,
    pub helps_with: String,
    pub hours: String,
    pub hours_note: String,
    pub region: String,
    pub topics: Vec<String>,
    pub languages: Vec<String>,
    pub notes: String,
    pub for_closing: bool,
    pub hidden: bool,
    /// The organisation has checked the entry (clears "to be verified").
    pub verified: bool,
    pub sort_order: Option<i64>,
}

/// An admin's phrase.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhraseInput {
    pub id: Option<String>,
    pub lang: String,
    pub category: String,
    pub title: String,
    pub text: String,
    pub hidden: bool,
    pub sort_order: Option<i64>,
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String, String> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(format!("{field}: required"));
    }
    if v.chars().count() > max {
        return Err(format!("{field}: at most {max} characters"));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{field}: control characters are not allowed"));
    }
    Ok(v.to_owned())
}

fn words(field: &str, list: &[String], max_each: usize) -> Result<Vec<String>, String> {
    let out: Vec<String> = list
        .iter()
        .flat_map(|w| w.split(','))
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    if out.len() > 20 {
        return Err(format!("{field}: at most 20"));
    }
    for w in &out {
        text(field, w, max_each, false)?;
    }
    Ok(out)
}

/// An id an admin may give: 1–64 of `a-z 0-9 - _`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("id: 1 to 64 of a-z, 0-9, - and _".into())
    }
}

fn new_id() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}

fn flag_time(on: bool, was: Option<u64>, now: Millis) -> Option<u64> {
    on.then(|| was.unwrap_or(now))
}

impl ReferralInput {
    /// The row to store: checked, trimmed, hours in canonical form; `existing` is the row it
    /// replaces (its id and flag times kept), `next_order` the place of a new one.
    pub fn into_record(
        self,
        existing: Option<&ReferralRecord>,
        now: Millis,
        next_order: i64,
    ) -> Result<ReferralRecord, String> {
        let id = match (existing, &self.id) {
            (Some(e), _) => e.id.clone(),
            (None, Some(id)) => {
                check_id(id)?;
                id.clone()
            }
            (None, None) => new_id(),
        };
        let phone = text("phone", &self.phone, 40, false)?;
        if !phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-()#*".contains(c))
        {
            return Err("phone: digits, spaces and + - ( ) # * only".into());
        }
        let url = text("url", &self.url, 500, false)?;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err("url: must start with https:// or http://".into());
        }
        let hours = Hours::parse(&self.hours).map_err(|e| e.to_string())?;
        let languages = words("languages", &self.languages, 16)?;
        if let Some(bad) = languages
            .iter()
            .find(|l| !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(format!("languages: {bad:?} is not a language tag"));
        }
        Ok(ReferralRecord {
            id,
            name: text("name", &self.name, 200, true)?,
            phone,
            url,
            helps_with: text("helps_with", &self.helps_with, 500, false)?,
            hours: hours.to_string(),
            hours_note: text("hours_note", &self.hours_note, 200, false)?,
            region: text("region", &self.region, 100, false)?,
            topics: words("topics", &self.topics, 40)?,
            languages,
            notes: text("notes", &self.notes, 2_000, false)?,
            for_closing: self.for_closing,
            sort_order: self
                .sort_order
                .or(existing.map(|e| e.sort_order))
                .unwrap_or(next_order),
            hidden_at: flag_time(self.hidden, existing.and_then(|e| e.hidden_at), now),
            verified_at: flag_time(self.verified, existing.and_then(|e| e.verified_at), now),
            updated_at: now,
        })
    }
}

impl PhraseInput {
    /// The row to store, as [`ReferralInput::into_record`].
    pub fn into_record(
        self,
        existing: Option<&PhraseRecord>,
        now: Millis,
        next_order: i64,
    ) -> Result<PhraseRecord, String> {
        let id = match (existing, &self.id) {
            (Some(e), _) => e.id.clone(),
            (None, Some(id)) => {
                check_id(id)?;
                id.clone()
            }
            (None, None) => new_id(),
        };
        let lang = text("lang", &self.lang, 16, true)?;
        if !lang.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("lang: {lang:?} is not a language tag"));
        }
        Ok(PhraseRecord {
            id,
            lang,
            category: text("category", &self.category, 60, false)?,
            title: text("title", &self.title, 120, true)?,
            text: text("text", &self.text, 2_000, true)?,
            sort_order: self
                .sort_order
                .or(existing.map(|e| e.sort_order))
                .unwrap_or(next_order),
            hidden_at: flag_time(self.hidden, existing.and_then(|e| e.hidden_at), now),
            updated_at: now,
        })
    }
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Whether an entry is about `topic` (its topics, what it helps with, its name), in `region`
/// (national entries are everywhere) and serves `lang` (plain Japanese is Japanese); an empty
/// filter matches all.
pub fn matches(r: &ReferralRecord, topic: &str, region: &str, lang: &str) -> bool {
    let (topic, region) = (norm(topic), norm(region));
    let topic_ok = topic.is_empty()
        || r.topics.iter().any(|t| norm(t).contains(&topic))
        || norm(&r.helps_with).contains(&topic)
        || norm(&r.name).contains(&topic);
    let region_ok = region.is_empty() || r.region.is_empty() || norm(&r.region).contains(&region);
    topic_ok && region_ok && serves(r, lang)
}

fn serves(r: &ReferralRecord, lang: &str) -> bool {
    let lang = match lang.trim() {
        "ja-easy" => "ja",
        l => l,
    };
    lang.is_empty() || r.languages.is_empty() || r.languages.iter().any(|l| l == lang)
}

/// The helplines a closing message lists in `lang`: visible entries marked for closing that
/// serve it, else the Japanese ones.
pub fn closing<'a>(
    all: impl Iterator<Item = &'a ReferralRecord> + Clone,
    lang: &str,
) -> Vec<Helpline> {
    let pick = |lang: &str| -> Vec<Helpline> {
        all.clone()
            .filter(|r| r.for_closing && r.hidden_at.is_none() && !r.phone.is_empty())
            .filter(|r| serves(r, lang))
            .map(|r| Helpline {
                name: r.name.clone(),
                number: r.phone.clone(),
                note: r.hours_note.clone(),
            })
            .collect()
    };
    let mine = pick(lang);
    // Entries for every language (an emergency number) alone do not make a list in `lang`.
    let specific = all.clone().any(|r| {
        r.for_closing && r.hidden_at.is_none() && !r.languages.is_empty() && serves(r, lang)
    });
    if specific || lang.starts_with("ja") {
        mine
    } else {
        pick("ja")
    }
}

/// `ids` must name each of `known` exactly once.
pub fn check_order(known: &[&str], ids: &[String]) -> Result<(), DirectoryError> {
    let mut given: Vec<&str> = ids.iter().map(String::as_str).collect();
    given.sort_unstable();
    let mut all = known.to_vec();
    all.sort_unstable();
    if given == all {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(
            "order: list every id exactly once".into(),
        ))
    }
}

/// A seed entry as the asset (or an older `referrals_file`) has it.
#[derive(Deserialize)]
struct SeedReferral {
    id: String,
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default, alias = "web")]
    url: String,
    #[serde(default)]
    helps_with: String,
    /// Compact hours; a file of an earlier version had free text here, kept as the note.
    #[serde(default)]
    hours: String,
    #[serde(default)]
    hours_note: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    for_closing: bool,
}

#[derive(Deserialize)]
struct SeedPhrase {
    id: String,
    lang: String,
    #[serde(default)]
    category: String,
    title: String,
    text: String,
}

fn read<T: serde::de::DeserializeOwned>(file: Option<&str>, builtin: &str) -> anyhow::Result<T> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
        }
        None => Ok(serde_json::from_str(builtin)?),
    }
}

/// The seed rows (each to be verified by the organisation), checked like an admin's input.
pub fn seed(
    cfg: &DirectorySettings,
    now: Millis,
) -> anyhow::Result<(Vec<ReferralRecord>, Vec<PhraseRecord>)> {
    let referrals: Vec<SeedReferral> = read(cfg.referrals_file.as_deref(), BUILTIN_REFERRALS)?;
    let phrases: Vec<SeedPhrase> = read(cfg.phrases_file.as_deref(), BUILTIN_PHRASES)?;
    let referrals = referrals
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (hours, hours_note) = match Hours::parse(&s.hours) {
                Ok(_) => (s.hours, s.hours_note),
                Err(_) => (String::new(), s.hours),
            };
            ReferralInput {
                id: Some(s.id),
                name: s.name,
                phone: s.phone,
                url: s.url,
                helps_with: s.helps_with,
                hours,
                hours_note,
                region: s.region,
                topics: s.topics,
                languages: s.languages,
                notes: s.notes,
                for_closing: s.for_closing,
                sort_order: Some(i as i64),
                ..ReferralInput::default()
            }
            .into_record(None, now, 0)
            .map_err(|e| anyhow::anyhow!("seed referral {}: {e}", i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let phrases = phrases
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            PhraseInput {
                id: Some(s.id),
                lang: s.lang,
                category: s.category,
                title: s.title,
                text: s.text,
                sort_order: Some(i as i64),
                ..PhraseInput::default()
            }
            .into_record(None, now, 0)
            .map_err(|e| anyhow::anyhow!("seed phrase {}: {e}", i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((referrals, phrases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_has_the_national_lines_and_emergency_numbers_all_to_be_verified() {
        let (refs, phrases) = seed(&DirectorySettings::default(), 1).unwrap();
        let phones: Vec<&str> = refs.iter().map(|r| r.phone.as_str()).collect();
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
        assert!(refs.iter().all(|r| r.verified_at.is_none()));
        assert!(phrases.iter().any(|p| p.lang == "ja"));
    }

    #[test]
    fn a_malformed_seed_file_is_an_error() {
        let path = std::env::temp_dir().join(format!("tsunagu-dir-{}.json", ulid::Ulid::new()));
        std::fs::write(&path, "{ nope").unwrap();
        let cfg = DirectorySettings {
            referrals_file: Some(path.display().to_string()),
            ..DirectorySettings::default()
        };
        assert!(seed(&cfg, 1).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn closing_lists_entries_marked_for_it_in_the_persons_language() {
        let (refs, _) = seed(&DirectorySettings::default(), 1).unwrap();
        let ja = closing(refs.iter(), "ja");
        let numbers: Vec<&str> = ja.iter().map(|h| h.number.as_str()).collect();
        for n in ["0120-279-338", "0120-061-338", "119", "110"] {
            assert!(numbers.contains(&n), "{n} in {numbers:?}");
        }
        assert!(!numbers.contains(&"189"), "not marked for closing");
        assert_eq!(closing(refs.iter(), "ja-easy"), ja);
        let mut en = refs.clone();
        en.push(ReferralRecord {
            id: "en-line".into(),
            name: "English line".into(),
            phone: "0120-000-000".into(),
            languages: vec!["en".into()],
            for_closing: true,
            ..ReferralRecord::default()
        });
        let en_list = closing(en.iter(), "en");
        assert!(en_list.iter().any(|h| h.name == "English line"));
        assert!(
            en_list.iter().any(|h| h.number == "119"),
            "every-language entries too"
        );
        assert!(!en_list.iter().any(|h| h.number == "0120-061-338"));
        // No entry for a language: the Japanese list.
        assert_eq!(closing(refs.iter(), "vi"), ja);
    }

    #[test]
    fn invalid_input_names_the_field() {
        let bad = |f: fn(&mut ReferralInput)| {
            let mut i = ReferralInput {
                name: "x".into(),
                ..ReferralInput::default()
            };
            f(&mut i);
            i.into_record(None, 1, 0).unwrap_err()
        };
        assert!(bad(|i| i.name = " ".into()).starts_with("name:"));
        assert!(bad(|i| i.phone = "call me".into()).starts_with("phone:"));
        assert!(bad(|i| i.url = "javascript:alert(1)".into()).starts_with("url:"));
        assert!(bad(|i| i.hours = "sometimes".into()).starts_with("hours:"));
        assert!(bad(|i| i.id = Some("Bad Id".into())).starts_with("id:"));
        assert!(bad(|i| i.notes = "x".repeat(2_001)).starts_with("notes:"));
    }
}
