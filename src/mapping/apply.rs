//! Applying a compiled mapping to one change: pure, total, and explicit about failure.

use super::transform::Cell;
use super::{Condition, FieldSpec, Input, Mapping, Test};
use crate::indicators::FieldType;
use chrono::{Datelike, NaiveDate};
use ebis_source::{Change, Op, Row, Value, key_text, storable_text};

/// The longest source key the warehouse keeps (its primary-key index holds about 2.7 kB
/// per entry); source databases index their keys under similar limits.
const MAX_KEY_BYTES: usize = 2000;

/// A field's final, typed value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// NULL.
    Null,
    /// Text.
    Text(String),
    /// A date.
    Date(NaiveDate),
    /// A year.
    Year(i16),
}

impl FieldValue {
    /// The value as text (dates ISO 8601); `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        match self {
            FieldValue::Null => None,
            FieldValue::Text(s) => Some(s.clone()),
            FieldValue::Date(d) => Some(ebis_source::date_text(*d)),
            FieldValue::Year(y) => Some(y.to_string()),
        }
    }
}

/// A record of one record kind, ready for the warehouse.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The source row's key as text.
    pub source_key: String,
    /// The division the record is tagged with.
    pub division: String,
    /// One value per field of the record kind, in its order.
    pub values: Vec<FieldValue>,
}

/// Why a row could not be mapped.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The source row's key as text.
    pub source_key: String,
    /// The canonical field that failed (or `division`).
    pub field: String,
    /// What is wrong (never contains the value).
    pub reason: String,
    /// The raw source value, as canonical text.
    pub raw: Option<String>,
}

/// What a change means for one record kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Insert or update this record.
    Upsert(Record),
    /// The record with this source key no longer exists at the source (deleted, or the
    /// row no longer matches the mapping's filter).
    Delete {
        /// The source row's key as text.
        source_key: String,
    },
    /// The row cannot be mapped.
    Rejected(Rejected),
}

impl Mapping {
    /// Maps one change. `default_division` is the source's division.
    pub fn apply(&self, change: &Change, default_division: &str) -> Outcome {
        self.apply_keyed(change, &key_text(&change.key), default_division)
    }

    /// [`Mapping::apply`] with the change's key text ([`key_text`] of its key) already
    /// made: every mapping of a table shares it.
    pub fn apply_keyed(&self, change: &Change, key: &str, default_division: &str) -> Outcome {
        if change.op == Op::Delete || !self.filter.iter().all(|c| c.holds(&change.row)) {
            // A key no row can be stored under deletes nothing; written storably, it
            // still resolves the quarantine entry its row may have.
            return Outcome::Delete {
                source_key: storable_text(key).into_owned(),
            };
        }
        if let Some(rejected) = self.key_problem(change, key) {
            return Outcome::Rejected(rejected);
        }
        let source_key = key.to_owned();
        let reject = |field: &str, reason: String, raw: Option<String>| {
            Outcome::Rejected(Rejected {
                source_key: source_key.clone(),
                field: field.to_owned(),
                reason,
                raw,
            })
        };
        let division = match &self.division {
            None => default_division.to_owned(),
            Some(spec) => match spec.evaluate(&change.row) {
                Err((reason, raw)) => return reject("division", reason, raw),
                Ok(cell) => match cell.into_text() {
                    Ok(Some(d)) if d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit()) => d,
                    Ok(None) => default_division.to_owned(),
                    _ => {
                        return reject(
                            "division",
                            "not a 6-digit division code".to_owned(),
                            spec.raw(&change.row),
                        );
                    }
                },
            },
        };
        let mut values = Vec::with_capacity(self.fields.len());
        for (field, spec) in self.kind.fields.iter().zip(&self.fields) {
            let Some(spec) = spec else {
                values.push(FieldValue::Null);
                continue;
            };
            let typed = spec
                .evaluate(&change.row)
                .and_then(|cell| coerce(cell, field.ty).map_err(|r| (r, spec.raw(&change.row))));
            match typed {
                Ok(v) => values.push(v),
                Err((reason, raw)) => return reject(field.name, reason, raw),
            }
        }
        Outcome::Upsert(Record {
            source_key,
            division,
            values,
        })
    }
}

impl Mapping {
    /// Why a row's key cannot identify it in the warehouse: a NULL part (rows without a
    /// key would merge into one), a NUL character, or more bytes than the key index takes.
    fn key_problem(&self, change: &Change, source_key: &str) -> Option<Rejected> {
        let column = |i: usize| self.key.get(i).map(String::as_str).unwrap_or("?");
        if let Some(i) = change.key.iter().position(Value::is_null) {
            // Each NULL-key row is its own quarantine entry, told apart by its content.
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(change.row.to_json().to_string().as_bytes());
            let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            return Some(Rejected {
                source_key: format!("{source_key}#{tag}"),
                field: "key".to_owned(),
                reason: format!(
                    "key column {} is NULL: a row without its key cannot be told apart from others",
                    column(i)
                ),
                raw: None,
            });
        }
        if source_key.contains('\0') {
            return Some(Rejected {
                source_key: storable_text(source_key).into_owned(),
                field: "key".to_owned(),
                reason: "the key holds a NUL character (0x00), which the warehouse cannot store"
                    .to_owned(),
                raw: Some(storable_text(source_key).into_owned()),
            });
        }
        if source_key.len() > MAX_KEY_BYTES {
            let cut = (0..=MAX_KEY_BYTES / 2)
                .rev()
                .find(|i| source_key.is_char_boundary(*i))
                .unwrap_or(0);
            return Some(Rejected {
                source_key: format!("{}…", &source_key[..cut]),
                field: "key".to_owned(),
                reason: format!(
                    "the key is {} bytes long; the warehouse keeps keys of at most {MAX_KEY_BYTES}",
                    source_key.len()
                ),
                raw: None,
            });
        }
        None
    }
}

impl FieldSpec {
    /// The value of its input column `name`, looked for first where it was last time.
    fn column<'r>(&self, row: &'r Row, name: &str) -> Option<&'r Value> {
        let (at, v) = row.get_hinted(name, self.seen_at.get())?;
        self.seen_at.set(at);
        Some(v)
    }

    fn input_value<'r>(&self, row: &'r Row) -> Result<Option<&'r Value>, String> {
        match &self.input {
            Input::Column(c) => self
                .column(row, c)
                .map(Some)
                .ok_or_else(|| format!("source column {c} is missing from the row")),
            Input::Expression { alias, .. } => self
                .column(row, alias)
                .map(Some)
                .ok_or_else(|| "the source did not return the expression's value".to_owned()),
            Input::Constant(_) | Input::Concat(_) => Ok(None),
        }
    }

    /// A `concat` input's text: its columns' texts joined, a NULL one as empty.
    fn joined(columns: &[String], row: &Row) -> Result<String, String> {
        let mut out = String::new();
        for c in columns {
            match row.get(c) {
                None => return Err(format!("source column {c} is missing from the row")),
                Some(Value::Null) => {}
                Some(Value::Bytes(_)) => {
                    return Err(format!(
                        "source column {c} holds bytes, not text: concat joins text columns only"
                    ));
                }
                Some(v) => out.push_str(&v.to_text().unwrap_or_default()),
            }
        }
        Ok(out)
    }

    /// The raw input as storable text (bytes in hex where text holds a NUL).
    fn raw(&self, row: &Row) -> Option<String> {
        if let Input::Concat(columns) = &self.input {
            return Self::joined(columns, row)
                .ok()
                .map(|t| storable_text(&t).into_owned());
        }
        self.input_value(row)
            .ok()
            .flatten()
            .and_then(Value::to_text)
            .map(|t| storable_text(&t).into_owned())
    }

    /// Reads the input and runs the transforms; `Err((reason, raw value))`.
    fn evaluate(&self, row: &Row) -> Result<Cell, (String, Option<String>)> {
        let start = match (&self.input, self.input_value(row)) {
            (Input::Constant(c), _) => Cell::Text(c.clone()),
            (Input::Concat(columns), _) => match Self::joined(columns, row) {
                Ok(text) => Cell::Text(text),
                Err(reason) => return Err((reason, None)),
            },
            (_, Ok(Some(v))) => Cell::from(v),
            (_, Ok(None)) => Cell::Null,
            (_, Err(reason)) => return Err((reason, None)),
        };
        self.transforms
            .iter()
            .try_fold(start, |cell, t| t.apply(cell))
            .map_err(|reason| (reason, self.raw(row)))
    }
}

impl Condition {
    fn holds(&self, row: &Row) -> bool {
        let text = row
            .get(&self.column)
            .and_then(Value::to_text)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        match &self.test {
            Test::In(values) => text.is_some_and(|t| values.iter().any(|v| v.trim() == t)),
            Test::NotIn(values) => text.is_none_or(|t| !values.iter().any(|v| v.trim() == t)),
            Test::IsNull(want_null) => text.is_none() == *want_null,
        }
    }
}

/// Converts a transformed value to the field's warehouse type, refusing what the
/// warehouse cannot store (text with a NUL character, dates outside years 1–9999).
fn coerce(cell: Cell, ty: FieldType) -> Result<FieldValue, String> {
    let value = coerce_type(cell, ty)?;
    match &value {
        FieldValue::Text(s) if s.contains('\0') => {
            Err("holds a NUL character (0x00), which the warehouse cannot store".to_owned())
        }
        FieldValue::Date(d) if !(1..=9999).contains(&d.year()) => {
            Err("a date outside the years 1 to 9999".to_owned())
        }
        _ => Ok(value),
    }
}

fn coerce_type(cell: Cell, ty: FieldType) -> Result<FieldValue, String> {
    match ty {
        FieldType::Text => Ok(match cell.into_text()? {
            None => FieldValue::Null,
            Some(s) => FieldValue::Text(s),
        }),
        FieldType::Date => {
            match cell {
                Cell::Null => Ok(FieldValue::Null),
                Cell::Date(d) => Ok(FieldValue::Date(d)),
                Cell::DateTime(t) => Ok(FieldValue::Date(t.date())),
                Cell::Int(_) => Err(
                    "an integer is not a date (add a `date` transform with its format)".to_owned(),
                ),
                other => {
                    let text = other.into_text()?.unwrap_or_default();
                    let t = text.trim();
                    if t.is_empty() {
                        return Ok(FieldValue::Null);
                    }
                    let head = t.get(..10).unwrap_or(t);
                    NaiveDate::parse_from_str(head, "%Y-%m-%d")
                    .ok()
                    .filter(|_| t.len() == 10 || t.as_bytes().get(10) == Some(&b' ') || t.as_bytes().get(10) == Some(&b'T'))
                    .map(FieldValue::Date)
                    .ok_or_else(|| "not a date in YYYY-MM-DD (add a `date` transform with the source's format)".to_owned())
                }
            }
        }
        FieldType::Year => {
            let year: Option<i64> = match cell {
                Cell::Null => return Ok(FieldValue::Null),
                Cell::Int(i) => Some(i),
                Cell::Date(d) => Some(i64::from(d.year())),
                Cell::DateTime(t) => Some(i64::from(t.year())),
                other => match other.into_text()? {
                    None => return Ok(FieldValue::Null),
                    Some(s) if s.trim().is_empty() => return Ok(FieldValue::Null),
                    Some(s) => s.trim().parse().ok(),
                },
            };
            year.filter(|y| (1900..=2100).contains(y))
                .and_then(|y| i16::try_from(y).ok())
                .map(FieldValue::Year)
                .ok_or_else(|| "not a year between 1900 and 2100".to_owned())
        }
    }
}
