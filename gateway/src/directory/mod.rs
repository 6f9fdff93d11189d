//! Organisation-maintained data, kept in the database and edited by admins (issue 20): the
//! referral directory (support organisations with hours, numbers, region, topics, languages),
//! canned phrases, and the runtime settings an admin may change (overloaded mode, the
//! thin-staff threshold).
//!
//! - [`Directory`]: this node's copy of all three (a snapshot behind a lock, swapped whole),
//!   re-read when the database's revision moves: at each of this node's own changes at once,
//!   and by [`Directory::spawn_poller`] every `poll_ms` for other nodes' changes. Reads never
//!   touch the database.
//! - [`hours`]: weekly hours in Japan time and "open now" from the injected clock.
//! - [`entries`]: what a valid entry or phrase is, the seed data, the views the API sends.
//! - [`csv`]: import and export as CSV (all-or-nothing, every row checked, lines named).
//!
//! The seed: the national entries in `gateway/assets/` (or the files named in
//! `directory.referrals_file` / `phrases_file`, as import sources) are written once in the
//! database's life, each marked to be verified by the organisation.

pub mod csv;
pub mod entries;
pub mod hours;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::db::{AdminAudit, Db, DbError, PhraseRecord, ReferralRecord};

pub use entries::{EntryView, Helpline, PhraseInput, ReferralInput};
pub use hours::Hours;

/// `[directory]` in the configuration. Owned here; `config` assembles it into `Settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DirectorySettings {
    /// JSON file of referral entries to seed the database with on first start; unset uses the
    /// built-in national entries (to verify before use). Read once, never again.
    pub referrals_file: Option<String>,
    /// JSON file of canned phrases to seed with on first start; unset uses the built-in ones.
    pub phrases_file: Option<String>,
    /// How often each node checks the database for changes made on other nodes.
    pub poll_ms: u64,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings {
            referrals_file: None,
            phrases_file: None,
            poll_ms: 2_000,
        }
    }
}

/// The settings an admin may change at run time; the database's value overrides the
/// configuration's (`[alerts] min_on_duty`), which is the default until an admin sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    pub overloaded: bool,
    pub min_on_duty: u32,
}

/// The settings keys in the `settings` table.
pub const OVERLOADED: &str = "service.overloaded";
pub const MIN_ON_DUTY: &str = "alerts.min_on_duty";
/// The thin-staff threshold's bounds.
pub const MAX_MIN_ON_DUTY: u32 = 100;

/// Why a directory request failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The input is not valid; the message says which field (or CSV line) and why.
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One consistent copy of the database's directory, phrases and settings.
#[derive(Debug, Default)]
struct Snapshot {
    revision: i64,
    referrals: Vec<(ReferralRecord, Hours)>,
    phrases: Vec<PhraseRecord>,
    runtime: Option<RuntimeSettings>,
}

pub struct Directory {
    db: Db,
    clock: Clock,
    defaults: RuntimeSettings,
    snap: RwLock<Arc<Snapshot>>,
    /// One re-read at a time (a change and the poller may both ask).
    reload: tokio::sync::Mutex<()>,
}

/// Who makes an admin change, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
}

impl Directory {
    /// Seeds the database on its first start (once ever) and reads everything.
    pub async fn open(
        db: Db,
        clock: Clock,
        settings: &DirectorySettings,
        defaults: RuntimeSettings,
    ) -> anyhow::Result<Arc<Directory>> {
        let (referrals, phrases) = entries::seed(settings, clock.now_ms())?;
        if db
            .seed_directory(&referrals, &phrases, clock.now_ms())
            .await?
        {
            tracing::info!(
                referrals = referrals.len(),
                phrases = phrases.len(),
                "directory seeded (entries marked to be verified)"
            );
        }
        let dir = Arc::new(Directory {
            db,
            clock,
            defaults,
            snap: RwLock::new(Arc::new(Snapshot::default())),
            reload: tokio::sync::Mutex::new(()),
        });
        dir.refresh().await?;
        Ok(dir)
    }

    fn snap(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snap.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads everything if the database's revision moved; says whether it did.
    pub async fn refresh(&self) -> Result<bool, DbError> {
        let _one = self.reload.lock().await;
        let revision = self.db.settings_revision().await?;
        if revision == self.snap().revision && revision != 0 {
            return Ok(false);
        }
        let referrals = self.db.referrals().await?;
        let phrases = self.db.phrases().await?;
        let settings = self.db.settings().await?;
        let mut runtime = self.defaults;
        for s in &settings {
            match s.key.as_str() {
                OVERLOADED => runtime.overloaded = s.value == "true",
                MIN_ON_DUTY => {
                    if let Ok(n) = s.value.parse() {
                        runtime.min_on_duty = n;
                    }
                }
                _ => {}
            }
        }
        let referrals = referrals
            .into_iter()
            .map(|r| {
                // A row the current rules cannot read claims no hours rather than failing all.
                let hours = Hours::parse(&r.hours).unwrap_or_default();
                (r, hours)
            })
            .collect();
        let snap = Snapshot {
            revision,
            referrals,
            phrases,
            runtime: Some(runtime),
        };
        *self.snap.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        Ok(true)
    }

    /// Polls the database every `poll_ms` and calls `changed` with the runtime settings after
    /// every change seen (this node's or another's), until shutdown.
    pub fn spawn_poller(
        self: &Arc<Self>,
        poll_ms: u64,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
        changed: impl Fn(RuntimeSettings) + Send + 'static,
    ) {
        let dir = Arc::clone(self);
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(poll_ms.max(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match dir.refresh().await {
                    Ok(true) => changed(dir.runtime()),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "directory: could not check for changes"),
                }
            }
        });
    }

    /// The runtime settings in force.
    pub fn runtime(&self) -> RuntimeSettings {
        self.snap().runtime.unwrap_or(self.defaults)
    }

    /// The configuration's defaults the database's settings override.
    pub fn defaults(&self) -> RuntimeSettings {
        self.defaults
    }

    /// Every entry, hidden ones too, for admins.
    pub fn all_referrals(&self) -> Vec<EntryView> {
        let now = self.clock.now_ms();
        self.snap()
            .referrals
            .iter()
            .map(|(r, h)| EntryView::of(r, h, now))
            .collect()
    }

    /// Visible entries about `topic` in `region` serving `lang` (each filter optional), in
    /// the admins' order, each with whether it is open now.
    pub fn search(&self, topic: &str, region: &str, lang: &str) -> Vec<EntryView> {
        let now = self.clock.now_ms();
        self.snap()
            .referrals
            .iter()
            .filter(|(r, _)| r.hidden_at.is_none() && entries::matches(r, topic, region, lang))
            .map(|(r, h)| EntryView::of(r, h, now))
            .collect()
    }

    /// The helplines a closing message lists for a person reading `lang` (`ja`, `ja-easy`,
    /// `en`, …): visible entries marked for closing that serve the language; Japanese ones
    /// when none does.
    pub fn closing(&self, lang: &str) -> Vec<Helpline> {
        entries::closing(self.snap().referrals.iter().map(|(r, _)| r), lang)
    }

    /// Phrases, hidden ones too when `all`.
    pub fn phrases(&self, all: bool) -> Vec<PhraseRecord> {
        self.snap()
            .phrases
            .iter()
            .filter(|p| all || p.hidden_at.is_none())
            .cloned()
            .collect()
    }

    fn audit(&self, by: &Actor, subject: &str, action: &str, target: Option<&str>) -> AdminAudit {
        AdminAudit {
            at: self.clock.now_ms(),
            actor_id: by.id.clone(),
            actor_name: by.name.clone(),
            subject: subject.to_owned(),
            action: action.to_owned(),
            target_id: target.map(str::to_owned),
            detail: None,
        }
    }

    /// Adds an entry (`id: None`) or replaces one; returns it as stored.
    pub async fn put_referral(
        &self,
        id: Option<&str>,
        input: ReferralInput,
        by: &Actor,
    ) -> Result<EntryView, DirectoryError> {
        let snap = self.snap();
        let existing = id.and_then(|id| snap.referrals.iter().find(|(r, _)| r.id == id));
        if id.is_some() && existing.is_none() {
            return Err(DirectoryError::NotFound);
        }
        entries::check_room(snap.referrals.len(), usize::from(existing.is_none()))?;
        let next_order = snap.referrals.iter().map(|(r, _)| r.sort_order + 1).max();
        let rec = input
            .into_record(
                existing.map(|(r, _)| r),
                self.clock.now_ms(),
                next_order.unwrap_or(0),
            )
            .map_err(DirectoryError::Invalid)?;
        let action = match existing {
            None => "create",
            Some((old, _)) if old.hidden_at.is_none() && rec.hidden_at.is_some() => "hide",
            Some((old, _)) if old.hidden_at.is_some() && rec.hidden_at.is_none() => "show",
            Some(_) => "update",
        };
        let audit = self.audit(by, "directory", action, Some(&rec.id));
        self.db
            .put_referrals(std::slice::from_ref(&rec), &[audit])
            .await?;
        self.refresh().await?;
        let hours = Hours::parse(&rec.hours).unwrap_or_default();
        Ok(EntryView::of(&rec, &hours, self.clock.now_ms()))
    }

    /// Adds a phrase (`id: None`) or replaces one.
    pub async fn put_phrase(
        &self,
        id: Option<&str>,
        input: PhraseInput,
        by: &Actor,
    ) -> Result<PhraseRecord, DirectoryError> {
        let snap = self.snap();
        let existing = id.and_then(|id| snap.phrases.iter().find(|p| p.id == id));
        if id.is_some() && existing.is_none() {
            return Err(DirectoryError::NotFound);
        }
        entries::check_room(snap.phrases.len(), usize::from(existing.is_none()))?;
        let next_order = snap.phrases.iter().map(|p| p.sort_order + 1).max();
        let rec = input
            .into_record(existing, self.clock.now_ms(), next_order.unwrap_or(0))
            .map_err(DirectoryError::Invalid)?;
        let action = match existing {
            None => "create",
            Some(old) if old.hidden_at.is_none() && rec.hidden_at.is_some() => "hide",
            Some(old) if old.hidden_at.is_some() && rec.hidden_at.is_none() => "show",
            Some(_) => "update",
        };
        let audit = self.audit(by, "phrase", action, Some(&rec.id));
        self.db
            .put_phrases(std::slice::from_ref(&rec), &[audit])
            .await?;
        self.refresh().await?;
        Ok(rec)
    }

    /// Puts the entries in the order of `ids`, which must name every entry once.
    pub async fn order_referrals(&self, ids: &[String], by: &Actor) -> Result<(), DirectoryError> {
        let snap = self.snap();
        let known: Vec<&str> = snap.referrals.iter().map(|(r, _)| r.id.as_str()).collect();
        entries::check_order(&known, ids)?;
        let audit = self.audit(by, "directory", "order", None);
        self.db.order_referrals(ids, &audit).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Puts the phrases in the order of `ids`, which must name every phrase once.
    pub async fn order_phrases(&self, ids: &[String], by: &Actor) -> Result<(), DirectoryError> {
        let known: Vec<String> = self.snap().phrases.iter().map(|p| p.id.clone()).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        entries::check_order(&known, ids)?;
        let audit = self.audit(by, "phrase", "order", None);
        self.db.order_phrases(ids, &audit).await?;
        self.refresh().await?;
        Ok(())
    }

    /// The entries as CSV (hidden ones too).
    pub fn export_referrals(&self) -> Result<String, DirectoryError> {
        let snap = self.snap();
        csv::write(snap.referrals.iter().map(|(r, _)| r))
    }

    /// The phrases as CSV (hidden ones too).
    pub fn export_phrases(&self) -> Result<String, DirectoryError> {
        csv::write(self.snap().phrases.iter())
    }

    /// Imports entries from CSV: every row checked first, then all written in one
    /// transaction (rows with an existing id replace it, others are added); nothing is written
    /// if any row is wrong. Returns how many rows were written.
    pub async fn import_referrals(&self, text: &str, by: &Actor) -> Result<usize, DirectoryError> {
        let snap = self.snap();
        let existing: Vec<&ReferralRecord> = snap.referrals.iter().map(|(r, _)| r).collect();
        let rows = csv::read(text, &existing, self.clock.now_ms())?;
        let mut audit = self.audit(by, "directory", "import", None);
        audit.detail = Some(format!("{} rows", rows.len()));
        self.db.put_referrals(&rows, &[audit]).await?;
        self.refresh().await?;
        Ok(rows.len())
    }

    /// Imports phrases from CSV, as [`Directory::import_referrals`].
    pub async fn import_phrases(&self, text: &str, by: &Actor) -> Result<usize, DirectoryError> {
        let snap = self.snap();
        let existing: Vec<&PhraseRecord> = snap.phrases.iter().collect();
        let rows = csv::read(text, &existing, self.clock.now_ms())?;
        let mut audit = self.audit(by, "phrase", "import", None);
        audit.detail = Some(format!("{} rows", rows.len()));
        self.db.put_phrases(&rows, &[audit]).await?;
        self.refresh().await?;
        Ok(rows.len())
    }

    /// Sets runtime settings (each optional), audited; returns those in force.
    pub async fn put_runtime(
        &self,
        overloaded: Option<bool>,
        min_on_duty: Option<u32>,
        by: &Actor,
    ) -> Result<RuntimeSettings, DirectoryError> {
        let mut values = Vec::new();
        if let Some(on) = overloaded {
            values.push((OVERLOADED.to_owned(), on.to_string()));
        }
        if let Some(n) = min_on_duty {
            if n > MAX_MIN_ON_DUTY {
                return Err(DirectoryError::Invalid(format!(
                    "min_on_duty: at most {MAX_MIN_ON_DUTY}"
                )));
            }
            values.push((MIN_ON_DUTY.to_owned(), n.to_string()));
        }
        let audit: Vec<AdminAudit> = values
            .iter()
            .map(|(k, v)| {
                let mut a = self.audit(by, "setting", "set", Some(k));
                a.detail = Some(v.clone());
                a
            })
            .collect();
        if !values.is_empty() {
            self.db.put_settings(&values, &audit).await?;
            self.refresh().await?;
        }
        Ok(self.runtime())
    }

    /// The admin audit trail, newest first.
    pub async fn audit_trail(&self, limit: u32) -> Result<Vec<AdminAudit>, DbError> {
        self.db.admin_audit(limit).await
    }
}

/// The closing helplines of the built-in seed, for an engine that has no directory (tests
/// that build an engine alone); a gateway always has one.
pub fn builtin_closing(lang: &str) -> Vec<Helpline> {
    static SEED: std::sync::OnceLock<Vec<ReferralRecord>> = std::sync::OnceLock::new();
    let seed = SEED.get_or_init(|| {
        entries::seed(&DirectorySettings::default(), 0)
            .map(|(r, _)| r)
            .unwrap_or_default()
    });
    entries::closing(seed.iter(), lang)
}
