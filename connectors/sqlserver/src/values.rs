//! SQL Server values (TDS, as tiberius decodes them) to ebis values.
//!
//! Character columns are selected as `VARBINARY` and decoded here, per value, with the
//! column's own encoding: tiberius decodes legacy `VARCHAR` strictly with the collation's
//! code page, and one invalid byte would abort the whole result set. Here a value that
//! does not decode stays bytes — the mapping rejects that one row, with its raw value,
//! and the rest of the batch goes on. `MONEY` is selected as `DECIMAL(19,4)`, so no value
//! passes through a float; every decimal stays its exact text.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use ebis_source::Value;
use encoding_rs::Encoding;
use tiberius::{ColumnData, FromSql};

/// How a select-list item is read beyond its wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// As the wire type says.
    Plain,
    /// A `CHAR`/`VARCHAR`/`TEXT` column selected as bytes, in this encoding.
    Legacy(&'static Encoding),
    /// An `NCHAR`/`NVARCHAR`/`NTEXT` column selected as bytes (UTF-16LE).
    Utf16,
}

/// The encoding of a code page (`COLLATIONPROPERTY(collation, 'CodePage')`), for the
/// code pages SQL Server collations use. Code page 936 (`Chinese_PRC_*`) decodes as
/// GB18030, a superset of GBK, so characters outside GBK that an application stored
/// anyway arrive too.
pub fn code_page_encoding(code_page: i32) -> Option<&'static Encoding> {
    Some(match code_page {
        936 | 20936 | 54936 => encoding_rs::GB18030,
        950 => encoding_rs::BIG5,
        932 => encoding_rs::SHIFT_JIS,
        949 => encoding_rs::EUC_KR,
        874 => encoding_rs::WINDOWS_874,
        1250 => encoding_rs::WINDOWS_1250,
        1251 => encoding_rs::WINDOWS_1251,
        1252 => encoding_rs::WINDOWS_1252,
        1253 => encoding_rs::WINDOWS_1253,
        1254 => encoding_rs::WINDOWS_1254,
        1255 => encoding_rs::WINDOWS_1255,
        1256 => encoding_rs::WINDOWS_1256,
        1257 => encoding_rs::WINDOWS_1257,
        1258 => encoding_rs::WINDOWS_1258,
        65001 => encoding_rs::UTF_8,
        _ => return None,
    })
}

/// Decodes bytes strictly: text, or the bytes themselves when they do not decode.
fn decode(bytes: &[u8], encoding: &'static Encoding) -> Value {
    match encoding.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Value::Text(text.into_owned()),
        None => Value::Bytes(bytes.to_vec()),
    }
}

/// UTF-16LE bytes to text, strictly (a lone surrogate or an odd length stays bytes).
fn decode_utf16(bytes: &[u8]) -> Value {
    if !bytes.len().is_multiple_of(2) {
        return Value::Bytes(bytes.to_vec());
    }
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    match char::decode_utf16(units).collect::<Result<String, _>>() {
        Ok(text) => Value::Text(text),
        Err(_) => Value::Bytes(bytes.to_vec()),
    }
}

/// A decimal's exact text: `value` with `scale` digits after the point.
pub fn decimal_text(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// A legacy DATETIME rounded to the millisecond, as SQL Server shows it.
fn to_millisecond(t: NaiveDateTime) -> NaiveDateTime {
    use chrono::Timelike;
    let ns = t.nanosecond();
    let ms = (ns + 500_000) / 1_000_000;
    let base = t.with_nanosecond(0).unwrap_or(t);
    base + chrono::Duration::milliseconds(i64::from(ms))
}

/// A time of day as SQL Server shows it: fraction digits as far as they are not zero.
fn time_text(t: NaiveTime) -> String {
    use chrono::Timelike;
    let whole = t.format("%H:%M:%S").to_string();
    match t.nanosecond() {
        0 => whole,
        n => format!("{whole}.{}", format!("{n:09}").trim_end_matches('0')),
    }
}

/// Converts one value.
pub fn convert(data: &ColumnData<'static>, reading: Reading) -> Value {
    match data {
        ColumnData::U8(v) => v.map_or(Value::Null, |v| Value::Int(i64::from(v))),
        ColumnData::I16(v) => v.map_or(Value::Null, |v| Value::Int(i64::from(v))),
        ColumnData::I32(v) => v.map_or(Value::Null, |v| Value::Int(i64::from(v))),
        ColumnData::I64(v) => v.map_or(Value::Null, Value::Int),
        ColumnData::F32(v) => v.map_or(Value::Null, |v| Value::Float(f64::from(v))),
        ColumnData::F64(v) => v.map_or(Value::Null, Value::Float),
        ColumnData::Bit(v) => v.map_or(Value::Null, Value::Bool),
        ColumnData::String(v) => v
            .as_ref()
            .map_or(Value::Null, |s| Value::Text(s.to_string())),
        // As SQL Server shows a uniqueidentifier.
        ColumnData::Guid(v) => v.map_or(Value::Null, |g| {
            Value::Text(g.to_string().to_ascii_uppercase())
        }),
        ColumnData::Binary(v) => match v {
            None => Value::Null,
            Some(b) => match reading {
                Reading::Plain => Value::Bytes(b.to_vec()),
                Reading::Legacy(encoding) => decode(b, encoding),
                Reading::Utf16 => decode_utf16(b),
            },
        },
        ColumnData::Numeric(v) => v.map_or(Value::Null, |n| {
            Value::Decimal(decimal_text(n.value(), n.scale()))
        }),
        ColumnData::Xml(v) => v
            .as_ref()
            .map_or(Value::Null, |x| Value::Text(x.to_string())),
        // DATETIME counts 1/300 s; SQL Server shows it to the millisecond, and so does
        // ebis (08:30:00.123 is stored as 37/300 s and read back as .123).
        ColumnData::DateTime(_) => match NaiveDateTime::from_sql(data) {
            Ok(Some(t)) => Value::DateTime(to_millisecond(t)),
            _ => Value::Null,
        },
        ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            match NaiveDateTime::from_sql(data) {
                Ok(Some(t)) => Value::DateTime(t),
                _ => Value::Null,
            }
        }
        ColumnData::Date(_) => match NaiveDate::from_sql(data) {
            Ok(Some(d)) => Value::Date(d),
            _ => Value::Null,
        },
        ColumnData::Time(_) => match NaiveTime::from_sql(data) {
            Ok(Some(t)) => Value::Text(time_text(t)),
            _ => Value::Null,
        },
        // The wall clock at the value's own offset: what the bureau's application shows.
        ColumnData::DateTimeOffset(_) => {
            match chrono::DateTime::<chrono::FixedOffset>::from_sql(data) {
                Ok(Some(t)) => Value::DateTime(t.naive_local()),
                _ => Value::Null,
            }
        }
    }
}

/// A value as a statement parameter's text (SQL Server converts it to the column's type
/// where it compares: keys from the change table, marks).
pub fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::DateTime(t) => Some(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        other => other.to_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use tiberius::numeric::Numeric;

    #[test]
    fn chinese_collations_decode_as_gb18030_and_others_by_their_code_page() {
        assert_eq!(code_page_encoding(936), Some(encoding_rs::GB18030));
        assert_eq!(code_page_encoding(950), Some(encoding_rs::BIG5));
        assert_eq!(code_page_encoding(1252), Some(encoding_rs::WINDOWS_1252));
        assert_eq!(code_page_encoding(65001), Some(encoding_rs::UTF_8));
        assert_eq!(code_page_encoding(437), None);
    }

    #[test]
    fn gbk_text_decodes_and_one_bad_byte_keeps_the_value_as_bytes() {
        let (gbk, _, _) = encoding_rs::GBK.encode("乌海市海勃湾区");
        let reading = Reading::Legacy(encoding_rs::GB18030);
        assert_eq!(
            convert(&ColumnData::Binary(Some(Cow::Owned(gbk.to_vec()))), reading),
            Value::Text("乌海市海勃湾区".to_owned())
        );
        let bad = vec![0xCE, 0xDA, 0xFF, 0xFF];
        assert_eq!(
            convert(&ColumnData::Binary(Some(Cow::Owned(bad.clone()))), reading),
            Value::Bytes(bad)
        );
    }

    #[test]
    fn utf16_decodes_and_a_lone_surrogate_stays_bytes() {
        let bytes: Vec<u8> = "乌海𠀀".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(
            convert(&ColumnData::Binary(Some(Cow::Owned(bytes))), Reading::Utf16),
            Value::Text("乌海𠀀".to_owned())
        );
        let lone = vec![0x00, 0xD8];
        assert_eq!(
            convert(
                &ColumnData::Binary(Some(Cow::Owned(lone.clone()))),
                Reading::Utf16
            ),
            Value::Bytes(lone)
        );
    }

    #[test]
    fn decimals_and_money_keep_every_digit() {
        assert_eq!(
            decimal_text(123_456_789_012_345_678, 4),
            "12345678901234.5678"
        );
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(42, 0), "42");
        let n = Numeric::new_with_scale(-9_223_372_036_854_775_808, 4);
        assert_eq!(
            convert(&ColumnData::Numeric(Some(n)), Reading::Plain),
            Value::Decimal("-922337203685477.5808".to_owned())
        );
    }

    #[test]
    fn integers_bits_guids_and_nulls() {
        assert_eq!(
            convert(&ColumnData::U8(Some(255)), Reading::Plain),
            Value::Int(255)
        );
        assert_eq!(
            convert(&ColumnData::I64(Some(i64::MIN)), Reading::Plain),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            convert(&ColumnData::Bit(Some(true)), Reading::Plain),
            Value::Bool(true)
        );
        let g = tiberius::Uuid::from_u128(0x6f9619ff_8b86_d011_b42d_00c04fc964ff);
        assert_eq!(
            convert(&ColumnData::Guid(Some(g)), Reading::Plain),
            Value::Text("6F9619FF-8B86-D011-B42D-00C04FC964FF".to_owned())
        );
        assert_eq!(convert(&ColumnData::I32(None), Reading::Plain), Value::Null);
        assert_eq!(
            convert(&ColumnData::Binary(None), Reading::Utf16),
            Value::Null
        );
    }

    #[test]
    fn dates_and_times() {
        use tiberius::time::{Date, DateTime2, Time};
        let day = NaiveDate::from_ymd_opt(2006, 3, 1).expect("date");
        let days =
            u32::try_from((day - NaiveDate::from_ymd_opt(1, 1, 1).expect("epoch")).num_days())
                .expect("days");
        let date = Date::new(days);
        assert_eq!(
            convert(&ColumnData::Date(Some(date)), Reading::Plain),
            Value::Date(day)
        );
        // 08:30:00.1234567 in 100 ns increments, scale 7.
        let time = Time::new(306_001_234_567, 7);
        let dt = DateTime2::new(date, time);
        assert_eq!(
            convert(&ColumnData::DateTime2(Some(dt)), Reading::Plain),
            Value::DateTime(day.and_hms_nano_opt(8, 30, 0, 123_456_700).expect("a time"))
        );
        assert_eq!(
            convert(&ColumnData::Time(Some(time)), Reading::Plain),
            Value::Text("08:30:00.1234567".to_owned())
        );
        // DATETIME: 08:30:00 and 37/300 s, shown as .123.
        let legacy = tiberius::time::DateTime::new(
            i32::try_from((day - NaiveDate::from_ymd_opt(1900, 1, 1).expect("base")).num_days())
                .expect("days"),
            30_600 * 300 + 37,
        );
        assert_eq!(
            convert(&ColumnData::DateTime(Some(legacy)), Reading::Plain),
            Value::DateTime(day.and_hms_milli_opt(8, 30, 0, 123).expect("a time"))
        );
    }
}
