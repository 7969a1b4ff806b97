//! PostgreSQL values as ebis values, one way per column type.
//!
//! The select list reads the types the driver decodes exactly (integers, booleans,
//! floats, text, bytea) as they are; every other type is read as its text (`::text`) and
//! parsed here — NUMERIC to a decimal text (no float rounding), dates and timestamps to
//! dates and local times (`infinity` and BC dates stay text), the rest (time, interval,
//! json, uuid, arrays, enums, domains, extension types) as text. A `timestamptz` is read
//! as the session's local time, as a `DATETIME` of the other dialects holds it.
//!
//! Keys travel back to the server as text parameters cast to the column's type, so a
//! key read here and sent back compares equal whatever its type.

use chrono::{NaiveDate, NaiveDateTime};
use ebis_source::Value;
use tokio_postgres::types::Type;

/// How one selected column is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// `smallint`.
    I16,
    /// `integer`.
    I32,
    /// `bigint`.
    I64,
    /// `boolean`.
    Bool,
    /// `real`.
    F32,
    /// `double precision`.
    F64,
    /// `text`, `varchar`, `name`.
    Text,
    /// `char(n)`: blank-padded; read without its trailing blanks (which PostgreSQL
    /// itself ignores when it compares such values), as the other dialects read CHAR.
    Char,
    /// `bytea`.
    Bytes,
    /// `numeric`, read as text.
    Decimal,
    /// `date`, read as text.
    Date,
    /// `timestamp`, read as text; `timestamptz` read as the session's local time.
    DateTime,
    /// Anything else, read as its text.
    Other,
}

impl Reading {
    /// How a column of this type is read.
    pub fn of(ty: &Type) -> Reading {
        match *ty {
            Type::INT2 => Reading::I16,
            Type::INT4 => Reading::I32,
            Type::INT8 => Reading::I64,
            Type::BOOL => Reading::Bool,
            Type::FLOAT4 => Reading::F32,
            Type::FLOAT8 => Reading::F64,
            Type::TEXT | Type::VARCHAR | Type::NAME => Reading::Text,
            Type::BPCHAR => Reading::Char,
            Type::BYTEA => Reading::Bytes,
            Type::NUMERIC => Reading::Decimal,
            Type::DATE => Reading::Date,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Reading::DateTime,
            _ => Reading::Other,
        }
    }

    /// The select-list item that reads `expr` (a quoted column or an expression) of
    /// type `ty` this way, named `alias`.
    pub fn select_item(ty: &Type, expr: &str, alias: &str) -> String {
        match (Reading::of(ty), ty) {
            (_, &Type::TIMESTAMPTZ) => format!("(({expr})::timestamp)::text AS {alias}"),
            (
                Reading::I16
                | Reading::I32
                | Reading::I64
                | Reading::Bool
                | Reading::F32
                | Reading::F64
                | Reading::Text
                | Reading::Char
                | Reading::Bytes,
                _,
            ) => format!("({expr}) AS {alias}"),
            _ => format!("({expr})::text AS {alias}"),
        }
    }
}

/// Column `i` of a row read by a select list built with [`Reading::select_item`].
pub fn decode(row: &tokio_postgres::Row, i: usize, reading: Reading) -> Value {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
    ) -> Option<T> {
        row.try_get::<_, Option<T>>(i).ok().flatten()
    }
    let v = match reading {
        Reading::I16 => get::<i16>(row, i).map(|n| Value::Int(n.into())),
        Reading::I32 => get::<i32>(row, i).map(|n| Value::Int(n.into())),
        Reading::I64 => get::<i64>(row, i).map(Value::Int),
        Reading::Bool => get::<bool>(row, i).map(Value::Bool),
        Reading::F32 => get::<f32>(row, i).map(|f| Value::Float(f.into())),
        Reading::F64 => get::<f64>(row, i).map(Value::Float),
        Reading::Bytes => get::<Vec<u8>>(row, i).map(Value::Bytes),
        Reading::Text
        | Reading::Char
        | Reading::Decimal
        | Reading::Date
        | Reading::DateTime
        | Reading::Other => get::<String>(row, i).map(|s| from_text(reading, &s)),
    };
    v.unwrap_or(Value::Null)
}

/// A value from its PostgreSQL text form (a `::text` read, a pgoutput tuple column),
/// read the way `reading` reads the column.
pub fn from_text(reading: Reading, s: &str) -> Value {
    let text = || Value::Text(s.to_owned());
    match reading {
        Reading::I16 | Reading::I32 | Reading::I64 => {
            s.parse().map(Value::Int).unwrap_or_else(|_| text())
        }
        Reading::Bool => match s {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => text(),
        },
        // A `real` is written as text that reads back as the same f32 (shortest on
        // PostgreSQL 12+, 9 digits before, with extra_float_digits = 3): read as f32 and
        // widened, as the driver widens the binary value, never as the double 1.1.
        Reading::F32 => s
            .parse::<f32>()
            .map(|f| Value::Float(f.into()))
            .unwrap_or_else(|_| text()),
        Reading::F64 => s.parse().map(Value::Float).unwrap_or_else(|_| text()),
        Reading::Bytes => s
            .strip_prefix("\\x")
            .and_then(unhex)
            .map(Value::Bytes)
            .unwrap_or_else(text),
        Reading::Decimal => {
            if s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                Value::Decimal(s.to_owned())
            } else {
                text() // NaN, Infinity
            }
        }
        Reading::Date => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Value::Date)
            .unwrap_or_else(|_| text()),
        Reading::DateTime => parse_datetime(s).map(Value::DateTime).unwrap_or_else(text),
        Reading::Char => Value::Text(s.trim_end_matches(' ').to_owned()),
        Reading::Text | Reading::Other => text(),
    }
}

/// A key value logged as JSON by the change table's trigger (`to_jsonb` of the row).
pub fn from_json(reading: Reading, v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (reading, n.as_i64()) {
            (Reading::I16 | Reading::I32 | Reading::I64, Some(i)) => Value::Int(i),
            _ => from_text(reading, &n.to_string()),
        },
        serde_json::Value::String(s) => from_text(reading, s),
        other => Value::Text(other.to_string()),
    }
}

/// A value as the text parameter the server casts back to the column's type.
pub fn param(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_owned()),
        other => other.to_text(),
    }
}

/// `2006-03-01 08:30:00[.123456]`, or with a `T` as JSON writes it.
fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_read_as_the_column_reads_them() {
        assert_eq!(from_text(Reading::I32, "42"), Value::Int(42));
        assert_eq!(from_text(Reading::Bool, "t"), Value::Bool(true));
        assert_eq!(
            from_text(Reading::F32, "1.1"),
            Value::Float(f64::from(1.1f32)),
            "a real reads as the driver widens it, not as the double 1.1"
        );
        assert_eq!(from_text(Reading::F64, "1.1"), Value::Float(1.1));
        assert_eq!(
            from_text(Reading::Decimal, "12345678901234.567891"),
            Value::Decimal("12345678901234.567891".to_owned())
        );
        assert_eq!(
            from_text(Reading::Decimal, "NaN"),
            Value::Text("NaN".to_owned())
        );
        assert_eq!(
            from_text(Reading::Date, "2006-03-01"),
            Value::Date(NaiveDate::from_ymd_opt(2006, 3, 1).expect("date"))
        );
        assert_eq!(
            from_text(Reading::Date, "infinity"),
            Value::Text("infinity".to_owned())
        );
        let t = NaiveDate::from_ymd_opt(2006, 3, 1)
            .and_then(|d| d.and_hms_micro_opt(8, 30, 0, 123_456))
            .expect("time");
        assert_eq!(
            from_text(Reading::DateTime, "2006-03-01 08:30:00.123456"),
            Value::DateTime(t)
        );
        assert_eq!(
            from_text(Reading::DateTime, "2006-03-01T08:30:00.123456"),
            Value::DateTime(t)
        );
        assert_eq!(
            from_text(Reading::Bytes, "\\x00ff10"),
            Value::Bytes(vec![0, 0xff, 0x10])
        );
        assert_eq!(
            from_text(Reading::Char, "AB  "),
            Value::Text("AB".to_owned())
        );
        assert_eq!(
            from_text(Reading::Text, "乌海"),
            Value::Text("乌海".to_owned())
        );
    }

    #[test]
    fn json_keys_read_as_the_column_reads_them() {
        assert_eq!(
            from_json(Reading::I64, &serde_json::json!(7)),
            Value::Int(7)
        );
        assert_eq!(
            from_json(Reading::Text, &serde_json::json!("A1")),
            Value::Text("A1".to_owned())
        );
        assert_eq!(
            from_json(Reading::Decimal, &serde_json::json!(1.5)),
            Value::Decimal("1.5".to_owned())
        );
        assert_eq!(
            from_json(Reading::Date, &serde_json::json!("2006-03-01")),
            from_text(Reading::Date, "2006-03-01")
        );
    }

    #[test]
    fn parameters_are_text_the_server_casts_back() {
        assert_eq!(param(&Value::Bool(true)).as_deref(), Some("true"));
        assert_eq!(param(&Value::Int(-5)).as_deref(), Some("-5"));
        assert_eq!(param(&Value::Null), None);
        assert_eq!(
            param(&Value::Bytes(vec![0xde, 0xad])).as_deref(),
            Some("\\xdead")
        );
    }

    #[test]
    fn exact_types_are_read_as_they_are_and_others_as_text() {
        assert_eq!(
            Reading::select_item(&Type::INT4, "\"id\"", "\"id\""),
            "(\"id\") AS \"id\""
        );
        assert_eq!(
            Reading::select_item(&Type::NUMERIC, "\"amt\"", "\"amt\""),
            "(\"amt\")::text AS \"amt\""
        );
        assert_eq!(
            Reading::select_item(&Type::TIMESTAMPTZ, "\"at\"", "\"at\""),
            "((\"at\")::timestamp)::text AS \"at\""
        );
    }
}
