//! `gateway import escalations <dir>`: the records and audit trail earlier versions kept in a
//! directory (`escalation.dir`: one sealed file per record, `<expires_at>-<id>.rec`, and
//! `audit.jsonl`) moved into the database. The sealed bytes are stored as they are (the same
//! encryption, the same key); each is decrypted first, so a file that does not open with the
//! configured key is reported and not imported. Importing twice changes nothing.

use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::{AuditEntry, Escalations};
use crate::db::{AuditRow, DbError, EscalationImport, SealedRecord};

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// What an import found and did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub done: EscalationImport,
    /// Record files that did not decrypt with the configured key (or whose name is not a
    /// record's): not imported.
    pub unreadable: Vec<PathBuf>,
    /// Lines of `audit.jsonl` that did not parse: not imported.
    pub bad_audit_lines: usize,
}

/// `<expires_at>-<id>.rec` → (expires_at, id).
fn parse_name(path: &Path) -> Option<(u64, Ulid)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".rec")?;
    let (expiry, id) = name.split_once('-')?;
    Some((expiry.parse().ok()?, Ulid::from_string(id).ok()?))
}

impl Escalations {
    /// Imports the directory `dir` of an earlier version into the database.
    pub async fn import_dir(&self, dir: &Path) -> Result<ImportReport, ImportError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImportError::Read { path, source }
        };
        let mut report = ImportReport::default();
        let mut records = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err(dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rec"))
            .collect();
        paths.sort();
        for path in paths {
            let Some((expires_at, id)) = parse_name(&path) else {
                report.unreadable.push(path);
                continue;
            };
            let sealed = std::fs::read(&path).map_err(read_err(&path))?;
            let Ok(rec) = self.unseal(id, &sealed) else {
                report.unreadable.push(path);
                continue;
            };
            records.push(SealedRecord {
                id,
                sealed,
                version: 1,
                created_at: rec.created_at,
                expires_at,
                closed_at: rec.closed.then_some(rec.created_at),
                delivered_at: rec.delivered_at,
                delivery_attempts: 0,
                next_attempt_at: None,
            });
        }
        let trail = dir.join("audit.jsonl");
        let mut audit = Vec::new();
        if trail.exists() {
            let text = std::fs::read_to_string(&trail).map_err(read_err(&trail))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<AuditEntry>(line) {
                    Ok(e) => audit.push(AuditRow {
                        at: e.at,
                        actor_id: e.actor_id,
                        actor_name: e.actor,
                        action: e.action,
                        record_id: e.record,
                    }),
                    Err(_) => report.bad_audit_lines += 1,
                }
            }
        }
        report.done = self
            .db
            .import_escalations(&records, &audit, self.clock.now_ms())
            .await?;
        Ok(report)
    }
}
