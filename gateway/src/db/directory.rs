//! The tables of the referral directory, canned phrases, runtime settings and the admin audit
//! trail (migration 0004). The rules (what a valid entry is, when an entry is open, which
//! entries close a conversation) are the `directory` module's; this file only reads and writes
//! rows. Every change is one transaction with its audit entry and a bump of the revision that
//! nodes poll ([`Db::settings_revision`]), so a change is seen by every node or by none.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, DbError};

/// The settings row bumped by every change of the directory or the phrases.
pub const DIRECTORY_REVISION: &str = "directory.revision";
/// The settings row that says the directory was seeded once (never again, even if emptied).
const SEEDED: &str = "directory.seeded";

/// One row of `referral_entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReferralRecord {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub url: String,
    pub helps_with: String,
    /// The compact weekly hours in Japan time (`crate::directory::hours`); empty: unknown.
    pub hours: String,
    pub hours_note: String,
    /// Empty: national.
    pub region: String,
    pub topics: Vec<String>,
    /// Empty: every language.
    pub languages: Vec<String>,
    pub notes: String,
    pub for_closing: bool,
    pub sort_order: i64,
    pub hidden_at: Option<u64>,
    /// NULL until the organisation has checked the entry.
    pub verified_at: Option<u64>,
    pub updated_at: u64,
}

/// One row of `phrases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PhraseRecord {
    pub id: String,
    pub lang: String,
    pub category: String,
    pub title: String,
    pub text: String,
    pub sort_order: i64,
    pub hidden_at: Option<u64>,
    pub updated_at: u64,
}

/// One row of `settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingRecord {
    pub key: String,
    pub value: String,
    pub version: i64,
    pub updated_at: u64,
    pub updated_by: Option<String>,
}

/// One entry of `admin_audit`: which admin did what to which row. No content of a
/// conversation, ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminAudit {
    pub at: u64,
    pub actor_id: String,
    pub actor_name: String,
    /// `directory`, `phrase`, `setting` (other parts may add subjects).
    pub subject: String,
    pub action: String,
    pub target_id: Option<String>,
    pub detail: Option<String>,
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn millis(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

const REFERRAL_COLUMNS: &str = "id, name, phone, url, helps_with, hours, hours_note, region, \
     topics, languages, notes, for_closing, sort_order, hidden_at, verified_at, updated_at";

fn referral_from_row(row: &AnyRow) -> Result<ReferralRecord, DbError> {
    let topics: String = row.try_get("topics")?;
    let languages: String = row.try_get("languages")?;
    let for_closing: i64 = row.try_get("for_closing")?;
    Ok(ReferralRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        url: row.try_get("url")?,
        helps_with: row.try_get("helps_with")?,
        hours: row.try_get("hours")?,
        hours_note: row.try_get("hours_note")?,
        region: row.try_get("region")?,
        topics: split(&topics),
        languages: split(&languages),
        notes: row.try_get("notes")?,
        for_closing: for_closing != 0,
        sort_order: row.try_get("sort_order")?,
        hidden_at: millis(row.try_get("hidden_at")?),
        verified_at: millis(row.try_get("verified_at")?),
        updated_at: millis(row.try_get("updated_at")?).unwrap_or(0),
    })
}

/// Inserts `r`, or replaces the row with its id.
fn upsert_referral(r: &ReferralRecord) -> Query<'_> {
    sqlx::query(
        "INSERT INTO referral_entries (id, name, phone, url, helps_with, hours, hours_note, \
         region, topics, languages, notes, for_closing, sort_order, hidden_at, verified_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone, \
         url = excluded.url, helps_with = excluded.helps_with, hours = excluded.hours, \
         hours_note = excluded.hours_note, region = excluded.region, topics = excluded.topics, \
         languages = excluded.languages, notes = excluded.notes, \
         for_closing = excluded.for_closing, sort_order = excluded.sort_order, \
         hidden_at = excluded.hidden_at, verified_at = excluded.verified_at, \
         updated_at = excluded.updated_at",
    )
    .bind(r.id.clone())
    .bind(r.name.clone())
    .bind(r.phone.clone())
    .bind(r.url.clone())
    .bind(r.helps_with.clone())
    .bind(r.hours.clone())
    .bind(r.hours_note.clone())
    .bind(r.region.clone())
    .bind(r.topics.join(","))
    .bind(r.languages.join(","))
    .bind(r.notes.clone())
    .bind(i64::from(r.for_closing))
    .bind(r.sort_order)
    .bind(r.hidden_at.map(to_i64))
    .bind(r.verified_at.map(to_i64))
    .bind(to_i64(r.updated_at))
}

const PHRASE_COLUMNS: &str = "id, lang, category, title, text, sort_order, hidden_at, updated_at";

fn phrase_from_row(row: &AnyRow) -> Result<PhraseRecord, DbError> {
    Ok(PhraseRecord {
        id: row.try_get("id")?,
        lang: row.try_get("lang")?,
        category: row.try_get("category")?,
        title: row.try_get("title")?,
        text: row.try_get("text")?,
        sort_order: row.try_get("sort_order")?,
        hidden_at: millis(row.try_get("hidden_at")?),
        updated_at: millis(row.try_get("updated_at")?).unwrap_or(0),
    })
}

fn upsert_phrase(p: &PhraseRecord) -> Query<'_> {
    sqlx::query(
        "INSERT INTO phrases (id, lang, category, title, text, sort_order, hidden_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET lang = excluded.lang, category = excluded.category, \
         title = excluded.title, text = excluded.text, sort_order = excluded.sort_order, \
         hidden_at = excluded.hidden_at, updated_at = excluded.updated_at",
    )
    .bind(p.id.clone())
    .bind(p.lang.clone())
    .bind(p.category.clone())
    .bind(p.title.clone())
    .bind(p.text.clone())
    .bind(p.sort_order)
    .bind(p.hidden_at.map(to_i64))
    .bind(to_i64(p.updated_at))
}

/// Sets a settings row (a new version of it).
fn put_setting_row<'q>(key: &'q str, value: &'q str, at: u64, by: Option<&'q str>) -> Query<'q> {
    sqlx::query(
        "INSERT INTO settings (key, value, version, updated_at, updated_by) \
         VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
         version = settings.version + 1, updated_at = excluded.updated_at, \
         updated_by = excluded.updated_by",
    )
    .bind(key)
    .bind(value)
    .bind(to_i64(at))
    .bind(by)
}

fn insert_audit(a: &AdminAudit) -> Query<'_> {
    sqlx::query(
        "INSERT INTO admin_audit (at, actor_id, actor_name, subject, action, target_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(to_i64(a.at))
    .bind(a.actor_id.clone())
    .bind(a.actor_name.clone())
    .bind(a.subject.clone())
    .bind(a.action.clone())
    .bind(a.target_id.clone())
    .bind(a.detail.clone())
}

/// What one admin change writes besides its rows.
enum Change<'a> {
    Referrals(&'a [ReferralRecord]),
    Phrases(&'a [PhraseRecord]),
    /// `(table, ids in their new order)`.
    Order(&'static str, &'a [String]),
}

impl Db {
    /// Every referral entry (hidden ones too), in the admins' order.
    pub async fn referrals(&self) -> Result<Vec<ReferralRecord>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {REFERRAL_COLUMNS} FROM referral_entries ORDER BY sort_order, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(referral_from_row).collect()
    }

    /// Every phrase (hidden ones too), in the admins' order.
    pub async fn phrases(&self) -> Result<Vec<PhraseRecord>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {PHRASE_COLUMNS} FROM phrases ORDER BY sort_order, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(phrase_from_row).collect()
    }

    /// Writes entries (new or replaced), their audit entries and the revision, all or nothing.
    pub async fn put_referrals(
        &self,
        rows: &[ReferralRecord],
        audit: &[AdminAudit],
    ) -> Result<(), DbError> {
        self.change(Change::Referrals(rows), audit).await
    }

    /// Writes phrases (new or replaced), their audit entries and the revision, all or nothing.
    pub async fn put_phrases(
        &self,
        rows: &[PhraseRecord],
        audit: &[AdminAudit],
    ) -> Result<(), DbError> {
        self.change(Change::Phrases(rows), audit).await
    }

    /// Gives the referral entries `ids` the sort order of their place in the list.
    pub async fn order_referrals(&self, ids: &[String], audit: &AdminAudit) -> Result<(), DbError> {
        self.change(
            Change::Order("referral_entries", ids),
            std::slice::from_ref(audit),
        )
        .await
    }

    /// Gives the phrases `ids` the sort order of their place in the list.
    pub async fn order_phrases(&self, ids: &[String], audit: &AdminAudit) -> Result<(), DbError> {
        self.change(Change::Order("phrases", ids), std::slice::from_ref(audit))
            .await
    }

    async fn change(&self, change: Change<'_>, audit: &[AdminAudit]) -> Result<(), DbError> {
        let at = audit.first().map_or(0, |a| a.at);
        let mut tx = self.pool().begin().await?;
        match change {
            Change::Referrals(rows) => {
                for r in rows {
                    upsert_referral(r).execute(&mut *tx).await?;
                }
            }
            Change::Phrases(rows) => {
                for p in rows {
                    upsert_phrase(p).execute(&mut *tx).await?;
                }
            }
            Change::Order(table, ids) => {
                let sql =
                    format!("UPDATE {table} SET sort_order = $1, updated_at = $2 WHERE id = $3");
                for (i, id) in ids.iter().enumerate() {
                    sqlx::query(&sql)
                        .bind(i64::try_from(i).unwrap_or(i64::MAX))
                        .bind(to_i64(at))
                        .bind(id.clone())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for a in audit {
            insert_audit(a).execute(&mut *tx).await?;
        }
        put_setting_row(DIRECTORY_REVISION, "", at, None)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Seeds the directory and the phrases once in the database's life: the first call writes
    /// them and returns true; every later call (on any node, even after the tables were emptied)
    /// writes nothing. Two nodes seeding at once: one does it, the other finds it done.
    pub async fn seed_directory(
        &self,
        referrals: &[ReferralRecord],
        phrases: &[PhraseRecord],
        at: u64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let first = sqlx::query(
            "INSERT INTO settings (key, value, version, updated_at) VALUES ($1, '1', 1, $2) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(SEEDED)
        .bind(to_i64(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !first {
            return Ok(false);
        }
        for r in referrals {
            upsert_referral(r).execute(&mut *tx).await?;
        }
        for p in phrases {
            upsert_phrase(p).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Every settings row.
    pub async fn settings(&self) -> Result<Vec<SettingRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT key, value, version, updated_at, updated_by FROM settings ORDER BY key",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SettingRecord {
                    key: row.try_get("key")?,
                    value: row.try_get("value")?,
                    version: row.try_get("version")?,
                    updated_at: millis(row.try_get("updated_at")?).unwrap_or(0),
                    updated_by: row.try_get("updated_by")?,
                })
            })
            .collect()
    }

    /// A number that grows with every change of the settings, the directory or the phrases
    /// (the sum of the settings rows' versions): one cheap query for nodes to poll.
    pub async fn settings_revision(&self) -> Result<i64, DbError> {
        let n: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM settings")
                .fetch_one(self.pool())
                .await?;
        Ok(n)
    }

    /// Sets runtime settings (`(key, value)` pairs) with their audit entries, all or nothing.
    pub async fn put_settings(
        &self,
        values: &[(String, String)],
        audit: &[AdminAudit],
    ) -> Result<(), DbError> {
        let at = audit.first().map_or(0, |a| a.at);
        let by = audit.first().map(|a| a.actor_id.as_str());
        let mut tx = self.pool().begin().await?;
        for (k, v) in values {
            put_setting_row(k, v, at, by).execute(&mut *tx).await?;
        }
        for a in audit {
            insert_audit(a).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The admin audit trail, newest first, at most `limit` entries.
    pub async fn admin_audit(&self, limit: u32) -> Result<Vec<AdminAudit>, DbError> {
        let rows = sqlx::query(
            "SELECT at, actor_id, actor_name, subject, action, target_id, detail \
             FROM admin_audit ORDER BY seq DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AdminAudit {
                    at: millis(row.try_get("at")?).unwrap_or(0),
                    actor_id: row.try_get("actor_id")?,
                    actor_name: row.try_get("actor_name")?,
                    subject: row.try_get("subject")?,
                    action: row.try_get("action")?,
                    target_id: row.try_get("target_id")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}
