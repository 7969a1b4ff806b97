//! MySQL values (binary protocol) to ebis values, by the column's type and character set.
//!
//! Text arrives as UTF-8 because connections `SET NAMES utf8mb4` (the server converts GBK
//! columns). Latin1 columns are read as bytes (`CAST(… AS BINARY)`) because bureaus store
//! GBK bytes in them: ASCII-only values become text, others stay bytes for the mapping to
//! decode. DECIMAL stays exact text; zero dates stay visible as text; BIT(1) is a flag,
//! wider BITs a number.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use ebis_source::Value;
use mysql_async::consts::ColumnType;
use mysql_async::{Column, Value as My};

/// The `binary` character set id: bytes with no text encoding.
const BINARY_CHARSET: u16 = 63;

/// How a select-list item must be interpreted beyond its wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// As the wire type says.
    Plain,
    /// A latin1 column cast to binary: ASCII → text, anything else → bytes.
    Latin1Bytes,
}

/// Converts one value.
pub fn convert(v: My, column: &Column, reading: Reading) -> Value {
    match v {
        My::NULL => Value::Null,
        My::Int(i) => Value::Int(i),
        My::UInt(u) => i64::try_from(u).map(Value::Int).unwrap_or(Value::UInt(u)),
        My::Float(f) => Value::Float(f64::from(f)),
        My::Double(d) => Value::Float(d),
        My::Date(y, m, d, h, mi, s, us) => date(column.column_type(), y, m, d, h, mi, s, us),
        My::Time(neg, days, h, m, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            let frac = if us > 0 {
                format!(".{us:06}")
            } else {
                String::new()
            };
            Value::Text(format!("{sign}{hours:02}:{m:02}:{s:02}{frac}"))
        }
        My::Bytes(b) => bytes(b, column, reading),
    }
}

/// A DATE or DATETIME value (by `ty`) as ebis holds it; a zero or partial date as text.
#[allow(clippy::too_many_arguments)]
pub(crate) fn date(ty: ColumnType, y: u16, m: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Value {
    let Some(day) = NaiveDate::from_ymd_opt(i32::from(y), u32::from(m), u32::from(d)) else {
        // Zero or partial dates ('0000-00-00') are legal in MySQL; keep them visible.
        return Value::Text(format!("{y:04}-{m:02}-{d:02}"));
    };
    if matches!(
        ty,
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
    ) {
        return Value::Date(day);
    }
    match NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us) {
        Some(t) => Value::DateTime(NaiveDateTime::new(day, t)),
        None => Value::Date(day),
    }
}

fn bytes(b: Vec<u8>, column: &Column, reading: Reading) -> Value {
    match column.column_type() {
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
            return match String::from_utf8(b) {
                Ok(s) => Value::Decimal(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            };
        }
        // BIT(n): big-endian bytes; BIT(1) is a flag.
        ColumnType::MYSQL_TYPE_BIT if b.len() <= 8 => {
            let n = b.iter().fold(0u64, |n, byte| (n << 8) | u64::from(*byte));
            return if column.column_length() == 1 {
                Value::Bool(n != 0)
            } else {
                i64::try_from(n).map(Value::Int).unwrap_or(Value::UInt(n))
            };
        }
        ColumnType::MYSQL_TYPE_LONGLONG
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_YEAR => {
            if let Some(i) = std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()) {
                return Value::Int(i);
            }
        }
        _ => {}
    }
    if reading == Reading::Latin1Bytes {
        return if b.is_ascii() {
            Value::Text(String::from_utf8(b).unwrap_or_default())
        } else {
            Value::Bytes(b)
        };
    }
    if column.character_set() == BINARY_CHARSET {
        return Value::Bytes(b);
    }
    match String::from_utf8(b) {
        Ok(s) => Value::Text(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

/// A latin1 key part logged as text, as a read of its column gives it
/// (`Reading::Latin1Bytes`): ASCII stays text, anything else becomes the column's own
/// bytes again. The server logs a latin1 value converted to UTF-8 from Windows-1252,
/// which is what MariaDB's latin1 is, every byte included, so the conversion is undone
/// exactly; text Windows-1252 cannot hold did not come from such a column and is kept.
pub fn latin1_key(v: Value) -> Value {
    match v {
        Value::Text(s) if !s.is_ascii() => {
            let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&s);
            if unmappable {
                Value::Text(s)
            } else {
                Value::Bytes(bytes.into_owned())
            }
        }
        other => other,
    }
}

/// An ebis value as a statement parameter.
pub fn param(v: &Value) -> My {
    match v {
        Value::Null => My::NULL,
        Value::Bool(b) => My::Int(i64::from(*b)),
        Value::Int(i) => My::Int(*i),
        Value::UInt(u) => My::UInt(*u),
        Value::Float(f) => My::Double(*f),
        Value::Bytes(b) => My::Bytes(b.clone()),
        other => My::Bytes(other.to_text().unwrap_or_default().into_bytes()),
    }
}

/// A key value from the change table's JSON array, as a parameter and as an ebis value.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_u64() {
                Some(u) => Value::UInt(u),
                None => Value::Decimal(n.to_string()),
            },
        },
        serde_json::Value::String(s) => Value::Text(normalize_json_datetime(s)),
        other => Value::Text(other.to_string()),
    }
}

/// `JSON_ARRAY(datetime)` writes `2006-03-01 08:00:00.000000`; rows read back as
/// `2006-03-01 08:00:00`. Drop an all-zero fraction so both key texts agree.
fn normalize_json_datetime(s: &str) -> String {
    match s.strip_suffix(".000000") {
        Some(head) if head.len() == 19 && head.as_bytes().get(10) == Some(&b' ') => head.to_owned(),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys() {
        assert_eq!(from_json(&serde_json::json!(42)), Value::Int(42));
        assert_eq!(
            from_json(&serde_json::json!("1503020001")),
            Value::Text("1503020001".into())
        );
        assert_eq!(
            from_json(&serde_json::json!("2006-03-01 08:00:00.000000")),
            Value::Text("2006-03-01 08:00:00".into())
        );
        assert_eq!(
            from_json(&serde_json::json!("2006-03-01 08:00:00.250000")),
            Value::Text("2006-03-01 08:00:00.250000".into())
        );
    }

    #[test]
    fn latin1_keys_logged_as_text_are_the_columns_bytes_again() {
        assert_eq!(
            latin1_key(Value::Text("Café Zoë €".into())),
            Value::Bytes(b"Caf\xe9 Zo\xeb \x80".to_vec())
        );
        // A byte Windows-1252 leaves undefined, as MariaDB logs it.
        assert_eq!(
            latin1_key(Value::Text("\u{81}".into())),
            Value::Bytes(vec![0x81])
        );
        assert_eq!(
            latin1_key(Value::Text("ABC-1".into())),
            Value::Text("ABC-1".into())
        );
        assert_eq!(
            latin1_key(Value::Text("乌海".into())),
            Value::Text("乌海".into())
        );
        assert_eq!(latin1_key(Value::Int(7)), Value::Int(7));
    }

    #[test]
    fn params() {
        assert_eq!(param(&Value::Int(5)), My::Int(5));
        assert_eq!(
            param(&Value::Text("乌海".into())),
            My::Bytes("乌海".as_bytes().to_vec())
        );
        let d = NaiveDate::from_ymd_opt(2006, 3, 1).expect("date");
        assert_eq!(param(&Value::Date(d)), My::Bytes(b"2006-03-01".to_vec()));
    }
}
