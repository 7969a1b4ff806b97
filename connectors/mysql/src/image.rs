//! A captured table's rows taken from the binary log's full row images, as a read of the
//! row by key would give them, so that binlog capture need not read the row again.
//!
//! A read by key is what binlog capture did for every change (as changelog capture
//! must): a catch-up of 111,000 changes spent 1.6 core-seconds of the source server's
//! CPU and random reads of its buffer pool on them. A full image (`binlog_row_image =
//! FULL`) already holds every column as the transaction wrote it. It is used only where
//! it gives exactly what the select list would:
//! - every select-list item is a plain column (no mapping expression, evaluated by the
//!   server) that the image names (`binlog_row_metadata = FULL`);
//! - every column's type reads the same from the log as over the wire: integers, FLOAT
//!   and DOUBLE, DECIMAL, DATE, DATETIME, text (CHAR, VARCHAR, TEXT) in UTF-8, ASCII,
//!   latin1 or a GBK character set, VARBINARY and BLOBs. TIMESTAMP (the log holds UTC
//!   seconds, the select the session's time), TIME, YEAR, ENUM, SET, BIT, JSON, BINARY
//!   (padded) and spatial columns are not: a table with one of them is read by key, as
//!   before;
//! - text in a GBK character set is converted by the server on a read, here by
//!   [`gb_text`], which decodes only the byte pairs where the server's GBK table and
//!   GB18030 agree (tests/binlog.rs compares both on every pair): a value with another
//!   pair, or bytes that are not valid in its character set, makes that change's row be
//!   read by key.

use crate::values::{Reading, date};
use ebis_source::{Row, Value};
use mysql_async::Value as My;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use std::sync::Arc;

/// How one column's logged value becomes the value a read gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Integers, FLOAT, DOUBLE.
    Number,
    /// A signed MEDIUMINT, which mysql_common reads from the log without its sign.
    SignedInt24,
    /// DECIMAL: exact text.
    Decimal,
    /// DATE.
    Date,
    /// DATETIME.
    DateTime,
    /// Text whose bytes are UTF-8 (utf8, utf8mb3, utf8mb4, ascii).
    Utf8,
    /// Text in a GBK character set, converted by [`gb_text`].
    Gb,
    /// A latin1 column, read as its bytes ([`Reading::Latin1Bytes`]).
    Latin1,
    /// Bytes (VARBINARY, BLOB).
    Bytes,
}

impl Kind {
    /// The kind of a column by its catalog data type and character set; `None` where
    /// the log's value reads otherwise than a select's.
    fn of(
        data_type: &str,
        charset: Option<&str>,
        reading: Reading,
        unsigned: bool,
    ) -> Option<Kind> {
        let text = || match (reading, charset.map(str::to_ascii_lowercase).as_deref()) {
            (Reading::Latin1Bytes, _) => Some(Kind::Latin1),
            (_, Some("utf8" | "utf8mb3" | "utf8mb4" | "ascii")) => Some(Kind::Utf8),
            (_, Some("gbk" | "gb2312" | "gb18030")) => Some(Kind::Gb),
            _ => None,
        };
        match data_type.to_ascii_lowercase().as_str() {
            "mediumint" if !unsigned => Some(Kind::SignedInt24),
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "float"
            | "double" | "real" => Some(Kind::Number),
            "decimal" | "numeric" => Some(Kind::Decimal),
            "date" => Some(Kind::Date),
            "datetime" => Some(Kind::DateTime),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => text(),
            "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Some(Kind::Bytes),
            _ => None,
        }
    }
}

/// Where a table's select-list columns are in its log images, and how each is read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ImageRead {
    /// The select list's column names, shared by the rows read.
    names: Arc<Vec<String>>,
    /// Per select-list column: its position in the image, and its kind.
    columns: Vec<(usize, Kind)>,
}

impl ImageRead {
    /// How to read `columns` (select-list order: name, catalog data type, character set,
    /// reading) from images whose columns are `image` (name and whether it is unsigned,
    /// in image order); `None` when some column cannot be read from the log as a select
    /// reads it, or the image lacks it.
    pub(crate) fn new<'a>(
        columns: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>, Reading)>,
        image: &[(String, bool)],
    ) -> Option<ImageRead> {
        let mut out = Vec::new();
        let mut names = Vec::new();
        for (name, data_type, charset, reading) in columns {
            let at = image
                .iter()
                .position(|(c, _)| c.eq_ignore_ascii_case(name))?;
            let kind = Kind::of(data_type, charset, reading, image[at].1)?;
            names.push(name.to_owned());
            out.push((at, kind));
        }
        Some(ImageRead {
            names: Arc::new(names),
            columns: out,
        })
    }

    /// The row an image gives, `value(i)` being the image's value at position `i`;
    /// `None` when a value does not convert exactly (its row is then read by key).
    pub(crate) fn row<'v, 'b: 'v>(
        &self,
        mut value: impl FnMut(usize) -> Option<&'v BinlogValue<'b>>,
    ) -> Option<Row> {
        let mut values = Vec::with_capacity(self.columns.len());
        for (at, kind) in &self.columns {
            let BinlogValue::Value(v) = value(*at)? else {
                return None;
            };
            values.push(convert(v, *kind)?);
        }
        Some(Row::with_names(Arc::clone(&self.names), values))
    }
}

/// One logged value as a read gives it.
fn convert(v: &My, kind: Kind) -> Option<Value> {
    Some(match (kind, v) {
        (_, My::NULL) => Value::Null,
        (Kind::Number, My::Int(i)) => Value::Int(*i),
        (Kind::SignedInt24, My::Int(i)) => Value::Int(int24(*i, false)),
        (Kind::Number, My::UInt(u)) => i64::try_from(*u).map_or(Value::UInt(*u), Value::Int),
        (Kind::Number, My::Float(f)) => Value::Float(f64::from(*f)),
        (Kind::Number, My::Double(d)) => Value::Float(*d),
        (Kind::Decimal, My::Bytes(b)) => Value::Decimal(String::from_utf8(b.clone()).ok()?),
        (Kind::Date, My::Date(y, m, d, h, mi, s, us)) => {
            date(ColumnType::MYSQL_TYPE_DATE, *y, *m, *d, *h, *mi, *s, *us)
        }
        (Kind::DateTime, My::Date(y, m, d, h, mi, s, us)) => date(
            ColumnType::MYSQL_TYPE_DATETIME,
            *y,
            *m,
            *d,
            *h,
            *mi,
            *s,
            *us,
        ),
        (Kind::Utf8, My::Bytes(b)) => Value::Text(String::from_utf8(b.clone()).ok()?),
        (Kind::Gb, My::Bytes(b)) => Value::Text(gb_text(b)?),
        (Kind::Latin1, My::Bytes(b)) if b.is_ascii() => {
            Value::Text(String::from_utf8(b.clone()).ok()?)
        }
        (Kind::Latin1 | Kind::Bytes, My::Bytes(b)) => Value::Bytes(b.clone()),
        _ => return None,
    })
}

/// A MEDIUMINT as mysql_common reads it from the log (three bytes, never sign-extended)
/// made the column's value: a signed column's values from 2^23 up are negative.
pub(crate) fn int24(v: i64, unsigned: bool) -> i64 {
    if !unsigned && (0x80_0000..=0xFF_FFFF).contains(&v) {
        v - 0x100_0000
    } else {
        v
    }
}

/// Whether a GBK byte pair converts to the same character by the server's GBK table and
/// by GB18030 (WHATWG's decoder): the GB2312 hanzi (lead B0–F7), the GB2312 symbol rows
/// of punctuation, full-width forms, kana and Cyrillic (leads A1, A3–A5, A7), and GBK's
/// added hanzi (GBK/3: leads 81–A0; GBK/4: leads AA–FD with trails below A1). Rows the
/// tables fill differently (A2's numerals, A6's vertical forms, A8–A9, FE, the
/// user-defined areas) are left out; tests/binlog.rs checks every pair of these against
/// the server.
fn shared_pair(lead: u8, trail: u8) -> bool {
    let gb2312 =
        matches!(lead, 0xB0..=0xF7 | 0xA1 | 0xA3..=0xA5 | 0xA7) && (0xA1..=0xFE).contains(&trail);
    let gbk3 = (0x81..=0xA0).contains(&lead) && (0x40..=0xFE).contains(&trail);
    let gbk4 = (0xAA..=0xFD).contains(&lead) && (0x40..=0xA0).contains(&trail);
    trail != 0x7F && (gb2312 || gbk3 || gbk4)
}

/// GBK bytes as the text a read converted by the server gives, or `None` where that
/// is not certain (a pair outside [`shared_pair`] or one left unassigned, an unpaired
/// byte, or one the decoder refuses).
pub fn gb_text(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            continue;
        }
        if !shared_pair(b, *bytes.get(i + 1)?) {
            return None;
        }
        i += 2;
    }
    let (text, bad) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
    // A pair GB2312 leaves unassigned in a row it fills is a private-use character to
    // GB18030 and '?' to the server.
    let private = |c: char| ('\u{E000}'..='\u{F8FF}').contains(&c);
    (!bad && !text.chars().any(private)).then(|| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_pairs_decode_only_where_the_tables_agree() {
        // 乌海市（有限公司）: GB2312 hanzi and full-width parentheses.
        let bytes = [
            0xCE, 0xDA, 0xBA, 0xA3, 0xCA, 0xD0, 0xA3, 0xA8, 0xD3, 0xD0, 0xCF, 0xDE, 0xB9, 0xAB,
            0xCB, 0xBE, 0xA3, 0xA9,
        ];
        assert_eq!(gb_text(&bytes).as_deref(), Some("乌海市（有限公司）"));
        assert_eq!(gb_text(b"ABC 123").as_deref(), Some("ABC 123"));
        // 王镕: a GBK/4 hanzi (lead E9, trail 46) after a GB2312 one.
        assert_eq!(gb_text(&[0xCD, 0xF5, 0xE9, 0x46]).as_deref(), Some("王镕"));
        // A user-defined-area pair, a lone lead byte, the euro byte.
        assert_eq!(gb_text(&[0xAA, 0xA1]), None);
        assert_eq!(gb_text(&[0x41, 0xCE]), None);
        assert_eq!(gb_text(&[0x80]), None);
        // Unassigned in GB2312's Cyrillic row: '?' to the server.
        assert_eq!(gb_text(&[0xA7, 0xC2]), None);
    }

    #[test]
    fn a_signed_mediumint_gets_its_sign_back() {
        assert_eq!(int24(8_777_216, false), -8_000_000);
        assert_eq!(int24(8_777_216, true), 8_777_216);
        assert_eq!(int24(0x7F_FFFF, false), 0x7F_FFFF);
        assert_eq!(int24(0xFF_FFFF, false), -1);
    }

    #[test]
    fn a_table_with_a_column_the_log_reads_otherwise_is_read_by_key() {
        let image: Vec<(String, bool)> = ["ID", "NAME", "STAMP"]
            .map(|c| (c.to_owned(), false))
            .to_vec();
        let plain = [
            ("ID", "bigint", None, Reading::Plain),
            ("NAME", "varchar", Some("gbk"), Reading::Plain),
        ];
        let read = ImageRead::new(plain.iter().copied(), &image).expect("readable");
        let values = [
            BinlogValue::Value(My::Int(7)),
            BinlogValue::Value(My::Bytes(vec![0xCE, 0xDA])),
            BinlogValue::Value(My::Bytes(b"1164338800".to_vec())),
        ];
        let row = read.row(|i| values.get(i)).expect("a row");
        assert_eq!(row.get("NAME"), Some(&Value::Text("乌".to_owned())));
        assert_eq!(row.get("STAMP"), None, "only the select list's columns");
        let stamped = [
            ("ID", "bigint", None, Reading::Plain),
            ("STAMP", "timestamp", None, Reading::Plain),
        ];
        assert_eq!(ImageRead::new(stamped.iter().copied(), &image), None);
        let missing = [("GONE", "int", None, Reading::Plain)];
        assert_eq!(ImageRead::new(missing.iter().copied(), &image), None);
        let big5 = [("NAME", "varchar", Some("big5"), Reading::Plain)];
        assert_eq!(ImageRead::new(big5.iter().copied(), &image), None);
    }

    #[test]
    fn logged_values_read_as_a_select_gives_them() {
        let image: Vec<(String, bool)> = ["ID", "NAME", "CAP", "EST", "UPD", "RAW", "L1"]
            .map(|c| (c.to_owned(), c == "ID"))
            .to_vec();
        let columns = [
            ("ID", "bigint", None, Reading::Plain),
            ("NAME", "varchar", Some("gbk"), Reading::Plain),
            ("CAP", "decimal", None, Reading::Plain),
            ("EST", "date", None, Reading::Plain),
            ("UPD", "datetime", None, Reading::Plain),
            ("RAW", "blob", None, Reading::Plain),
            ("L1", "varchar", Some("latin1"), Reading::Latin1Bytes),
        ];
        let read = ImageRead::new(columns.iter().copied(), &image).expect("readable");
        let values = [
            BinlogValue::Value(My::UInt(18_446_744_073_709_551_000)),
            BinlogValue::Value(My::Bytes(vec![0xCE, 0xDA, 0xBA, 0xA3])),
            BinlogValue::Value(My::Bytes(b"-12.5000".to_vec())),
            BinlogValue::Value(My::Date(2006, 3, 1, 0, 0, 0, 0)),
            BinlogValue::Value(My::Date(2026, 12, 3, 10, 11, 12, 654_321)),
            BinlogValue::Value(My::NULL),
            BinlogValue::Value(My::Bytes(vec![b'C', b'a', b'f', 0xE9])),
        ];
        let row = read.row(|i| values.get(i)).expect("a row");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).expect("day");
        let at = day.and_hms_micro_opt(10, 11, 12, 654_321).expect("time");
        assert_eq!(
            row.get("ID"),
            Some(&Value::UInt(18_446_744_073_709_551_000))
        );
        assert_eq!(row.get("NAME"), Some(&Value::Text("乌海".to_owned())));
        assert_eq!(row.get("CAP"), Some(&Value::Decimal("-12.5000".to_owned())));
        assert_eq!(
            row.get("EST"),
            Some(&Value::Date(
                chrono::NaiveDate::from_ymd_opt(2006, 3, 1).expect("day")
            ))
        );
        assert_eq!(row.get("UPD"), Some(&Value::DateTime(at)));
        assert_eq!(row.get("RAW"), Some(&Value::Null));
        assert_eq!(row.get("L1"), Some(&Value::Bytes(b"Caf\xe9".to_vec())));
        // A GBK value outside the shared pairs: the row is read by key instead.
        let odd = [BinlogValue::Value(My::Bytes(vec![0xA6, 0xD9]))];
        let one = [("NAME", "varchar", Some("gbk"), Reading::Plain)];
        let name_only = vec![("NAME".to_owned(), false)];
        let read = ImageRead::new(one.iter().copied(), &name_only).expect("readable");
        assert_eq!(read.row(|i| odd.get(i)), None);
    }
}
