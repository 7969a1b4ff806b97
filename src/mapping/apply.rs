//! Applying a compiled mapping to one change: pure, total, and explicit about failure.

use super::transform::Cell;
use super::{Condition, FieldSpec, Input, Mapping, Test};
use crate::indicators::FieldType;
use chrono::{Datelike, NaiveDate};
use ebis_source::{Change, Op, Row, Value, key_text};

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
        let source_key = key_text(&change.key);
        if change.op == Op::Delete || !self.filter.iter().all(|c| c.holds(&change.row)) {
            return Outcome::Delete { source_key };
        }
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

impl FieldSpec {
    fn input_value<'r>(&self, row: &'r Row) -> Result<Option<&'r Value>, String> {
        match &self.input {
            Input::Column(c) => row
                .get(c)
                .map(Some)
                .ok_or_else(|| format!("source column {c} is missing from the row")),
            Input::Expression { alias, .. } => row
                .get(alias)
                .map(Some)
                .ok_or_else(|| "the source did not return the expression's value".to_owned()),
            Input::Constant(_) => Ok(None),
        }
    }

    fn raw(&self, row: &Row) -> Option<String> {
        self.input_value(row)
            .ok()
            .flatten()
            .and_then(Value::to_text)
    }

    /// Reads the input and runs the transforms; `Err((reason, raw value))`.
    fn evaluate(&self, row: &Row) -> Result<Cell, (String, Option<String>)> {
        let start = match (&self.input, self.input_value(row)) {
            (Input::Constant(c), _) => Cell::Text(c.clone()),
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

/// Converts a transformed value to the field's warehouse type.
fn coerce(cell: Cell, ty: FieldType) -> Result<FieldValue, String> {
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
