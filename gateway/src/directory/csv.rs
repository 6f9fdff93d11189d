//! The directory and the phrases as CSV (the `csv` crate; UTF-8, a header row, one entry per
//! row). Export writes every row, hidden ones too. Import reads every row and checks it as a
//! form's input is checked before anything is written: the first wrong row fails the whole
//! import with its line number, and nothing changes. Bounded: at most [`MAX_BYTES`] and
//! [`super::entries::MAX_ROWS`] rows.
//!
//! Referral columns: `id, name, phone, url, helps_with, hours, hours_note, region, topics,
//! languages, notes, for_closing, hidden, verified, sort_order` (`topics` and `languages`
//! comma-separated inside the cell; flags `yes`/`no`). Phrase columns: `id, lang, category,
//! title, text, hidden, sort_order`. A row whose id is known replaces that entry; an empty id
//! adds one. Unknown columns are refused (a typo would silently drop a field).

use std::collections::HashSet;

use super::entries::{self, PhraseInput, ReferralInput, MAX_ROWS};
use super::DirectoryError;
use crate::clock::Millis;
use crate::db::{PhraseRecord, ReferralRecord};

/// The largest CSV body accepted.
pub const MAX_BYTES: usize = 512 * 1024;

/// A kind of stored row the CSV holds (a referral entry or a phrase): its columns, how a record
/// is written as cells, and how a cell is read into the form's input (checked as a form is).
pub trait CsvRow: Sized {
    /// The form's input a row is read into.
    type Input: Default;
    /// Every column, in the order an export writes them.
    const HEADER: &'static [&'static str];
    /// The columns an import must have.
    const REQUIRED: &'static [&'static str];

    fn id(&self) -> &str;
    fn sort_order(&self) -> i64;
    /// The record's cells, in the order of [`CsvRow::HEADER`].
    fn cells(&self) -> Vec<String>;
    /// The input's id (the `id` column: an empty cell adds a new entry).
    fn input_id(input: &mut Self::Input) -> &mut Option<String>;
    /// Sets the input's field of column `col` (any but `id`) from the cell `v` of line `line`.
    fn read_cell(
        input: &mut Self::Input,
        line: u64,
        col: &str,
        v: String,
    ) -> Result<(), DirectoryError>;
    /// The record to store, as the form's `into_record`.
    fn into_record(
        input: Self::Input,
        existing: Option<&Self>,
        now: Millis,
        next_order: i64,
    ) -> Result<Self, String>;
}

impl CsvRow for ReferralRecord {
    type Input = ReferralInput;
    const HEADER: &'static [&'static str] = &[
        "id",
        "name",
        "phone",
        "url",
        "helps_with",
        "hours",
        "hours_note",
        "region",
        "topics",
        "languages",
        "notes",
        "for_closing",
        "hidden",
        "verified",
        "sort_order",
    ];
    const REQUIRED: &'static [&'static str] = &["name"];

    fn id(&self) -> &str {
        &self.id
    }
    fn sort_order(&self) -> i64 {
        self.sort_order
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.phone.clone(),
            self.url.clone(),
            self.helps_with.clone(),
            self.hours.clone(),
            self.hours_note.clone(),
            self.region.clone(),
            self.topics.join(","),
            self.languages.join(","),
            self.notes.clone(),
            yes(self.for_closing),
            yes(self.hidden_at.is_some()),
            yes(self.verified_at.is_some()),
            self.sort_order.to_string(),
        ]
    }
    fn input_id(input: &mut ReferralInput) -> &mut Option<String> {
        &mut input.id
    }
    fn read_cell(
        input: &mut ReferralInput,
        line: u64,
        col: &str,
        v: String,
    ) -> Result<(), DirectoryError> {
        match col {
            "name" => input.name = v,
            "phone" => input.phone = v,
            "url" => input.url = v,
            "helps_with" => input.helps_with = v,
            "hours" => input.hours = v,
            "hours_note" => input.hours_note = v,
            "region" => input.region = v,
            "topics" => input.topics = vec![v],
            "languages" => input.languages = vec![v],
            "notes" => input.notes = v,
            "for_closing" => input.for_closing = flag(line, col, &v)?,
            "hidden" => input.hidden = flag(line, col, &v)?,
            "verified" => input.verified = flag(line, col, &v)?,
            "sort_order" => input.sort_order = order(line, &v)?,
            _ => {}
        }
        Ok(())
    }
    fn into_record(
        input: ReferralInput,
        existing: Option<&Self>,
        now: Millis,
        next_order: i64,
    ) -> Result<Self, String> {
        input.into_record(existing, now, next_order)
    }
}

impl CsvRow for PhraseRecord {
    type Input = PhraseInput;
    const HEADER: &'static [&'static str] = &[
        "id",
        "lang",
        "category",
        "title",
        "text",
        "hidden",
        "sort_order",
    ];
    const REQUIRED: &'static [&'static str] = &["lang", "title", "text"];

    fn id(&self) -> &str {
        &self.id
    }
    fn sort_order(&self) -> i64 {
        self.sort_order
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.lang.clone(),
            self.category.clone(),
            self.title.clone(),
            self.text.clone(),
            yes(self.hidden_at.is_some()),
            self.sort_order.to_string(),
        ]
    }
    fn input_id(input: &mut PhraseInput) -> &mut Option<String> {
        &mut input.id
    }
    fn read_cell(
        input: &mut PhraseInput,
        line: u64,
        col: &str,
        v: String,
    ) -> Result<(), DirectoryError> {
        match col {
            "lang" => input.lang = v,
            "category" => input.category = v,
            "title" => input.title = v,
            "text" => input.text = v,
            "hidden" => input.hidden = flag(line, col, &v)?,
            "sort_order" => input.sort_order = order(line, &v)?,
            _ => {}
        }
        Ok(())
    }
    fn into_record(
        input: PhraseInput,
        existing: Option<&Self>,
        now: Millis,
        next_order: i64,
    ) -> Result<Self, String> {
        input.into_record(existing, now, next_order)
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn out_err(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Invalid(format!("csv: {e}"))
}

/// Every row as CSV, with the header, hidden ones too.
pub fn write<'a, R: CsvRow + 'a>(
    rows: impl Iterator<Item = &'a R>,
) -> Result<String, DirectoryError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(R::HEADER).map_err(out_err)?;
    for r in rows {
        w.write_record(r.cells()).map_err(out_err)?;
    }
    let bytes = w.into_inner().map_err(out_err)?;
    String::from_utf8(bytes).map_err(out_err)
}

/// A row: its line number and its (column, cell) pairs.
type Row = (u64, Vec<(String, String)>);

/// The rows of `text` as maps from column to cell, each with its line number; the header
/// checked against `known` (`required` must be there).
fn rows(text: &str, known: &[&str], required: &[&str]) -> Result<Vec<Row>, DirectoryError> {
    if text.len() > MAX_BYTES {
        return Err(DirectoryError::Invalid(format!(
            "csv: larger than {} KiB",
            MAX_BYTES / 1024
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| DirectoryError::Invalid(format!("line 1: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut seen = HashSet::new();
    for h in &header {
        if !known.contains(&h.as_str()) {
            return Err(DirectoryError::Invalid(format!(
                "line 1: unknown column {h:?}"
            )));
        }
        if !seen.insert(h.as_str()) {
            return Err(DirectoryError::Invalid(format!(
                "line 1: column {h:?} twice"
            )));
        }
    }
    if let Some(missing) = required.iter().find(|c| !seen.contains(*c)) {
        return Err(DirectoryError::Invalid(format!(
            "line 1: column {missing:?} is missing"
        )));
    }
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            DirectoryError::Invalid(format!("line {line}: {e}"))
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        if out.len() >= MAX_ROWS {
            return Err(DirectoryError::Invalid(format!(
                "line {line}: at most {MAX_ROWS} rows"
            )));
        }
        let cells = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_owned))
            .collect();
        out.push((line, cells));
    }
    Ok(out)
}

fn flag(line: u64, col: &str, v: &str) -> Result<bool, DirectoryError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "y" => Ok(true),
        "no" | "false" | "0" | "n" | "" => Ok(false),
        _ => Err(DirectoryError::Invalid(format!(
            "line {line}: {col}: yes or no, not {v:?}"
        ))),
    }
}

fn order(line: u64, v: &str) -> Result<Option<i64>, DirectoryError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| DirectoryError::Invalid(format!("line {line}: sort_order: not a number")))
}

/// Checks that no id comes twice in one file.
fn once(ids: &mut HashSet<String>, line: u64, id: &Option<String>) -> Result<(), DirectoryError> {
    if let Some(id) = id {
        if !ids.insert(id.clone()) {
            return Err(DirectoryError::Invalid(format!(
                "line {line}: id {id:?} twice"
            )));
        }
    }
    Ok(())
}

/// Every row of a CSV as the record to store; the first wrong row is the error. `existing` are
/// the stored ones (a row with a known id replaces its record; new ones are placed after them).
pub fn read<R: CsvRow>(text: &str, existing: &[&R], now: Millis) -> Result<Vec<R>, DirectoryError> {
    let mut next = existing
        .iter()
        .map(|r| r.sort_order() + 1)
        .max()
        .unwrap_or(0);
    let mut added = 0;
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (line, cells) in rows(text, R::HEADER, R::REQUIRED)? {
        let mut input = R::Input::default();
        for (col, v) in cells {
            if col == "id" {
                *R::input_id(&mut input) = Some(v.trim().to_owned()).filter(|s| !s.is_empty());
            } else {
                R::read_cell(&mut input, line, &col, v)?;
            }
        }
        let id = R::input_id(&mut input);
        once(&mut ids, line, id)?;
        let found = id
            .as_deref()
            .and_then(|id| existing.iter().find(|r| r.id() == id).copied());
        let rec = R::into_record(input, found, now, next)
            .map_err(|e| DirectoryError::Invalid(format!("line {line}: {e}")))?;
        if found.is_none() {
            next += 1;
            added += 1;
        }
        out.push(rec);
    }
    entries::check_room(existing.len(), added)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::entries::seed;
    use crate::directory::DirectorySettings;

    #[test]
    fn an_export_imports_back_to_the_same_rows() {
        let (refs, phrases) = seed(&DirectorySettings::default(), 5).unwrap();
        let text = write(refs.iter()).unwrap();
        let existing: Vec<&ReferralRecord> = refs.iter().collect();
        assert_eq!(read::<ReferralRecord>(&text, &existing, 5).unwrap(), refs);
        let text = write(phrases.iter()).unwrap();
        let existing: Vec<&PhraseRecord> = phrases.iter().collect();
        assert_eq!(read(&text, &existing, 5).unwrap(), phrases);
    }

    #[test]
    fn a_wrong_row_fails_the_import_naming_its_line() {
        let text = "name,phone,hours\nGood,0120-000-000,24h\n\"Two\nlines\",0120,mon 09:00-17:00\nBad,0120,whenever\n";
        let e = read::<ReferralRecord>(text, &[], 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 5: hours:"), "{e}");
        let e = read::<ReferralRecord>("name,colour\nx,red\n", &[], 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown column \"colour\""), "{e}");
        let e = read::<ReferralRecord>("phone\n110\n", &[], 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"name\" is missing"), "{e}");
        let e = read::<ReferralRecord>("id,name\na,x\na,y\n", &[], 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 3: id \"a\" twice"), "{e}");
        let e = read::<ReferralRecord>("name,for_closing\nx,maybe\n", &[], 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2: for_closing"), "{e}");
    }

    #[test]
    fn new_rows_get_ids_and_places_after_the_existing_ones() {
        let old = ReferralRecord {
            id: "old".into(),
            name: "Old".into(),
            sort_order: 7,
            ..ReferralRecord::default()
        };
        let rows =
            read::<ReferralRecord>("name,topics\nA,\"dv, child\"\nB,\n", &[&old], 1).unwrap();
        assert_eq!(rows[0].sort_order, 8);
        assert_eq!(rows[1].sort_order, 9);
        assert_eq!(rows[0].topics, ["dv", "child"]);
        assert_ne!(rows[0].id, rows[1].id);
    }

    #[test]
    fn imports_of_phrases_and_of_entries_alike_stop_at_the_most_the_gateway_keeps() {
        let kept: Vec<PhraseRecord> = (0..MAX_ROWS - 1)
            .map(|i| PhraseRecord {
                id: format!("p{i}"),
                sort_order: i as i64,
                ..PhraseRecord::default()
            })
            .collect();
        let kept: Vec<&PhraseRecord> = kept.iter().collect();
        // One more fits; two do not; replacing kept ones adds nothing.
        assert!(read::<PhraseRecord>("lang,title,text\nja,A,a\n", &kept, 1).is_ok());
        let two = "lang,title,text\nja,A,a\nja,B,b\n";
        let e = read::<PhraseRecord>(two, &kept, 1).unwrap_err();
        assert!(e.to_string().contains("at most 2000 in all"), "{e}");
        let replace = "id,lang,title,text\np1,ja,A,a\np2,ja,B,b\n";
        assert!(read::<PhraseRecord>(replace, &kept, 1).is_ok());
        let kept: Vec<ReferralRecord> = (0..MAX_ROWS)
            .map(|i| ReferralRecord {
                id: format!("r{i}"),
                ..ReferralRecord::default()
            })
            .collect();
        let kept: Vec<&ReferralRecord> = kept.iter().collect();
        assert!(read::<ReferralRecord>("name\nNew\n", &kept, 1).is_err());
    }

    #[test]
    fn a_body_over_the_bound_is_refused_before_parsing() {
        let big = "name\n".to_owned() + &"x\n".repeat(MAX_BYTES);
        assert!(read::<ReferralRecord>(&big, &[], 1)
            .unwrap_err()
            .to_string()
            .contains("larger"));
    }
}
