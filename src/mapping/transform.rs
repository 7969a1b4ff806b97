//! Compiled transforms and the value they work on.
//!
//! A transform takes a [`Cell`] and returns a new one or a reason the value cannot be
//! used. Reasons name the problem, never the value (the raw value is kept separately, in
//! the quarantine row, where only the warehouse's readers see it).

use super::date::DateFormat;
use super::text::{self, Legacy};
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use ebis_source::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// A value between transforms.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// Text.
    Text(String),
    /// Bytes not yet decoded.
    Bytes(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A date.
    Date(NaiveDate),
    /// A date and time.
    DateTime(NaiveDateTime),
}

impl From<&Value> for Cell {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => Cell::Null,
            Value::Int(i) => Cell::Int(*i),
            Value::Bytes(b) => Cell::Bytes(b.clone()),
            Value::Date(d) => Cell::Date(*d),
            Value::DateTime(t) => Cell::DateTime(*t),
            Value::Text(s) => Cell::Text(s.clone()),
            other => Cell::Text(other.to_text().unwrap_or_default()),
        }
    }
}

impl Cell {
    /// The value as text for text transforms; bytes must be valid UTF-8 (else decode first).
    pub fn into_text(self) -> Result<Option<String>, String> {
        Ok(Some(match self {
            Cell::Null => return Ok(None),
            Cell::Text(s) => s,
            Cell::Bytes(b) => String::from_utf8(b).map_err(|_| {
                "bytes are not valid UTF-8 (add a `decode: gbk` transform before this one)"
                    .to_owned()
            })?,
            Cell::Int(i) => i.to_string(),
            Cell::Date(d) => ebis_source::date_text(d),
            // Whole seconds (a leap second, which chrono writes as :60, by chrono).
            Cell::DateTime(t) => match t.with_nanosecond(0) {
                Some(whole) if t.nanosecond() < 1_000_000_000 => ebis_source::datetime_text(&whole),
                _ => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            },
        }))
    }
}

/// What a lookup does with a code its table lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The row is rejected.
    Reject,
    /// The code passes unchanged.
    Keep,
    /// The field becomes NULL.
    Null,
}

/// A compiled transform.
#[derive(Clone, Debug)]
pub enum Transform {
    /// Trim both ends.
    Trim,
    /// Full-width → half-width.
    Halfwidth,
    /// NFKC.
    Nfkc,
    /// Upper case.
    Upper,
    /// Collapse white space.
    CollapseSpaces,
    /// Identifier normalization.
    Identifier,
    /// Texts that mean NULL.
    NullIf(Vec<String>),
    /// NULL → this text.
    Default(String),
    /// Parse with the first format that fits.
    Date(Vec<DateFormat>),
    /// Decode legacy Chinese bytes.
    Decode(Legacy),
    /// Code lookup.
    Lookup {
        /// Code → value.
        table: Arc<HashMap<String, String>>,
        /// Unknown codes.
        missing: Missing,
    },
}

impl Transform {
    /// Applies the transform.
    pub fn apply(&self, cell: Cell) -> Result<Cell, String> {
        Ok(match self {
            Transform::Trim => text_map(cell, |s| kept_or(s, |s| Cow::Borrowed(text::trim(s))))?,
            Transform::Halfwidth => text_map(cell, |s| kept_or(s, text::halfwidth))?,
            Transform::Nfkc => text_map(cell, |s| kept_or(s, text::nfkc))?,
            Transform::Upper => text_map(cell, |s| s.to_uppercase())?,
            Transform::CollapseSpaces => text_map(cell, |s| kept_or(s, text::collapse_spaces))?,
            Transform::Identifier => text_map(cell, |s| kept_or(s, text::identifier))?,
            Transform::NullIf(values) => match cell.into_text()? {
                Some(s) if values.contains(&s) => Cell::Null,
                Some(s) => Cell::Text(s),
                None => Cell::Null,
            },
            Transform::Default(v) => match cell {
                Cell::Null => Cell::Text(v.clone()),
                other => other,
            },
            Transform::Date(formats) => date(cell, formats)?,
            Transform::Decode(legacy) => match cell {
                Cell::Bytes(b) => Cell::Text(text::decode_bytes(&b, *legacy)?),
                Cell::Text(s) => Cell::Text(text::decode_text(&s, *legacy)?.into_owned()),
                other => other,
            },
            Transform::Lookup { table, missing } => match cell.into_text()? {
                None => Cell::Null,
                Some(code) => match table.get(&code) {
                    Some(v) => Cell::Text(v.clone()),
                    None => match missing {
                        Missing::Keep => Cell::Text(code),
                        Missing::Null => Cell::Null,
                        Missing::Reject => return Err("code not in the lookup table".to_owned()),
                    },
                },
            },
        })
    }
}

/// `s` itself when `f` leaves it as it is (most values are clean: no copy), else what
/// `f` made of it.
fn kept_or(s: String, f: impl FnOnce(&str) -> Cow<'_, str>) -> String {
    let changed = match f(&s) {
        Cow::Borrowed(t) if t.len() == s.len() => None,
        Cow::Borrowed(t) => Some(t.to_owned()),
        Cow::Owned(t) => Some(t),
    };
    changed.unwrap_or(s)
}

fn text_map(cell: Cell, f: impl FnOnce(String) -> String) -> Result<Cell, String> {
    Ok(match cell.into_text()? {
        None => Cell::Null,
        Some(s) => Cell::Text(f(s)),
    })
}

fn date(cell: Cell, formats: &[DateFormat]) -> Result<Cell, String> {
    match cell {
        Cell::Date(_) | Cell::DateTime(_) | Cell::Null => Ok(cell),
        other => {
            let Some(s) = other.into_text()? else {
                return Ok(Cell::Null);
            };
            let s = s.trim();
            if s.is_empty() {
                return Ok(Cell::Null);
            }
            let parsed = formats.iter().find_map(|f| f.parse(s).map(|t| (f, t)));
            match parsed {
                Some((f, t)) if f.has_time() => Ok(Cell::DateTime(t)),
                Some((_, t)) => Ok(Cell::Date(t.date())),
                None => Err(format!(
                    "not a date in format {}",
                    formats
                        .iter()
                        .map(|f| f.written.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    #[test]
    fn chained_text_transforms() {
        let chain = [
            Transform::Trim,
            Transform::Halfwidth,
            Transform::CollapseSpaces,
        ];
        let out = chain.iter().try_fold(
            text("  乌海市（海勃湾）\u{3000}\u{3000}商贸有限公司 "),
            |c, t| t.apply(c),
        );
        assert_eq!(out, Ok(text("乌海市(海勃湾) 商贸有限公司")));
    }

    #[test]
    fn null_if_and_default() {
        let t = Transform::NullIf(vec![String::new(), "-".into()]);
        assert_eq!(t.apply(text("-")), Ok(Cell::Null));
        assert_eq!(t.apply(text("有")), Ok(text("有")));
        let d = Transform::Default("未知".into());
        assert_eq!(d.apply(Cell::Null), Ok(text("未知")));
        assert_eq!(d.apply(text("x")), Ok(text("x")));
    }

    #[test]
    fn dates_from_text_with_several_formats() {
        let t = Transform::Date(vec![
            DateFormat::compile("YYYYMMDD").expect("f"),
            DateFormat::compile("YYYY-MM-DD").expect("f"),
        ]);
        let want = Cell::Date(NaiveDate::from_ymd_opt(2006, 5, 9).expect("d"));
        assert_eq!(t.apply(text("20060509")), Ok(want.clone()));
        assert_eq!(t.apply(text("2006-05-09")), Ok(want));
        assert_eq!(t.apply(text("  ")), Ok(Cell::Null));
        assert_eq!(
            t.apply(text("2006年5月9日")),
            Err("not a date in format YYYYMMDD or YYYY-MM-DD".to_owned())
        );
    }

    #[test]
    fn lookup_missing_policies() {
        let table: Arc<HashMap<String, String>> =
            Arc::new([("01".to_owned(), "正常".to_owned())].into_iter().collect());
        let reject = Transform::Lookup {
            table: table.clone(),
            missing: Missing::Reject,
        };
        assert_eq!(reject.apply(text("01")), Ok(text("正常")));
        assert_eq!(
            reject.apply(text("99")),
            Err("code not in the lookup table".to_owned())
        );
        let keep = Transform::Lookup {
            table: table.clone(),
            missing: Missing::Keep,
        };
        assert_eq!(keep.apply(text("99")), Ok(text("99")));
        let null = Transform::Lookup {
            table,
            missing: Missing::Null,
        };
        assert_eq!(null.apply(text("99")), Ok(Cell::Null));
        assert_eq!(null.apply(Cell::Int(1)), Ok(Cell::Null));
    }

    #[test]
    fn undecoded_bytes_are_refused_by_text_transforms() {
        let gbk = Cell::Bytes(vec![0xCE, 0xDA, 0xBA, 0xA3]);
        let err = Transform::Trim
            .apply(gbk.clone())
            .expect_err("needs decode");
        assert!(err.contains("decode: gbk"));
        let decoded = Transform::Decode(Legacy::Gbk).apply(gbk).expect("decodes");
        assert_eq!(decoded, text("乌海"));
    }
}
