//! Oracle values to ebis values, and ebis values to bind parameters.
//!
//! - `NUMBER` is fetched as the driver's exact decimal text (ODPI-C writes it without any
//!   NLS setting) and becomes an integer when it is one and fits, else an exact decimal:
//!   no value passes through a float. `BINARY_FLOAT`/`BINARY_DOUBLE` are floats.
//! - `DATE` carries a time of day in Oracle and arrives as a date and time; `TIMESTAMP`
//!   as well; `TIMESTAMP WITH TIME ZONE` as the wall clock at its own offset (what the
//!   bureau's application shows).
//! - `CHAR`/`VARCHAR2` in a database whose character set ebis knows are selected as their
//!   stored bytes (`UTL_RAW.CAST_TO_RAW`) and decoded here, strictly, per value: a value
//!   with one invalid byte stays bytes, and the mapping rejects that one row with its raw
//!   value (Oracle's own conversion would put `?` in its place, silently). `CHAR` values
//!   lose their blank padding, as MySQL's do. `NVARCHAR2`, `NCHAR` and LOBs of text are
//!   Unicode already and arrive as the driver converts them.
//! - Oracle stores an empty string as NULL: a mapping sees NULL where the application
//!   wrote `''`.

use chrono::{NaiveDate, NaiveDateTime};
use ebis_source::Value;
use encoding_rs::Encoding;

/// How one select-list item is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// `NUMBER`, `FLOAT`, `INTEGER`: exact text, an integer where it is one.
    Number,
    /// `BINARY_FLOAT`, `BINARY_DOUBLE`.
    Float,
    /// Text the driver converts (`NVARCHAR2`, `NCHAR`, `CLOB`, `NCLOB`, `LONG`, and
    /// character data of a database whose character set ebis does not decode itself).
    Text,
    /// `CHAR`/`NCHAR` as the driver converts it, blank padding removed.
    PaddedText,
    /// Character data selected as its stored bytes, in this encoding (`true`: `CHAR`, whose
    /// blank padding is removed).
    Stored(&'static Encoding, bool),
    /// `RAW`, `BLOB`, `LONG RAW`.
    Bytes,
    /// `DATE`, `TIMESTAMP`, `TIMESTAMP WITH [LOCAL] TIME ZONE`.
    DateTime,
    /// `ROWID`, intervals and other types read as their text.
    Other,
}

/// The encoding of an Oracle database character set (`NLS_CHARACTERSET`), for the sets
/// ebis decodes itself. `ZHS16GBK` decodes as GB18030, a superset of GBK, so characters
/// outside GBK that an application stored anyway arrive too. `US7ASCII` is strict ASCII:
/// bytes above 127 (GBK stored through a client that claimed ASCII, a common mistake)
/// stay bytes, for a mapping's `decode` to read.
pub fn charset_encoding(charset: &str) -> Option<&'static Encoding> {
    Some(match charset.to_ascii_uppercase().as_str() {
        "ZHS16GBK" | "ZHS32GB18030" | "ZHS16CGB231280" => encoding_rs::GB18030,
        "ZHT16BIG5" | "ZHT16MSWIN950" | "ZHT16HKSCS" => encoding_rs::BIG5,
        "AL32UTF8" | "UTF8" => encoding_rs::UTF_8,
        "JA16SJIS" | "JA16SJISTILDE" => encoding_rs::SHIFT_JIS,
        "JA16EUC" | "JA16EUCTILDE" => encoding_rs::EUC_JP,
        "KO16MSWIN949" | "KO16KSC5601" => encoding_rs::EUC_KR,
        "WE8MSWIN1252" => encoding_rs::WINDOWS_1252,
        "WE8ISO8859P1" => encoding_rs::WINDOWS_1252,
        "EE8MSWIN1250" => encoding_rs::WINDOWS_1250,
        "CL8MSWIN1251" => encoding_rs::WINDOWS_1251,
        // Strict ASCII: encoding_rs has none, so decoded by hand (see `decode_stored`).
        "US7ASCII" => return Some(ASCII),
        _ => return None,
    })
}

/// Marks strict ASCII (US7ASCII); decoded by [`decode_stored`] without encoding_rs.
const ASCII: &Encoding = encoding_rs::REPLACEMENT;

/// Decodes stored bytes strictly: text, or the bytes themselves when they do not decode.
pub fn decode_stored(bytes: &[u8], encoding: &'static Encoding, padded: bool) -> Value {
    let text = if std::ptr::eq(encoding, ASCII) {
        bytes
            .is_ascii()
            .then(|| String::from_utf8_lossy(bytes).into_owned())
    } else {
        encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|t| t.into_owned())
    };
    match text {
        Some(t) if padded => Value::Text(t.trim_end_matches(' ').to_owned()),
        Some(t) => Value::Text(t),
        None => Value::Bytes(bytes.to_vec()),
    }
}

/// A `NUMBER`'s exact text as a value: an integer when it is one that fits, else the
/// decimal text (normalized: `.5` → `0.5`, `-.5` → `-0.5`).
pub fn number(text: &str) -> Value {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Value::Int(i);
    }
    let normalized = if let Some(rest) = t.strip_prefix("-.") {
        format!("-0.{rest}")
    } else if let Some(rest) = t.strip_prefix('.') {
        format!("0.{rest}")
    } else {
        t.to_owned()
    };
    Value::Decimal(normalized)
}

/// An Oracle date-time (any of DATE, TIMESTAMP and their zoned forms) as the wall clock
/// it shows: its own fields, whatever its offset.
pub fn datetime(t: &oracle::sql_type::Timestamp) -> Option<Value> {
    let date = NaiveDate::from_ymd_opt(t.year(), t.month(), t.day())?;
    let time = date.and_hms_nano_opt(t.hour(), t.minute(), t.second(), t.nanosecond())?;
    Some(Value::DateTime(time))
}

/// A wall-clock time as a bind parameter.
pub fn timestamp(t: &NaiveDateTime) -> Option<oracle::sql_type::Timestamp> {
    use chrono::{Datelike, Timelike};
    oracle::sql_type::Timestamp::new(
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond(),
    )
    .ok()
}

/// Reads one value of a fetched row.
pub fn fetch(row: &oracle::Row, index: usize, reading: Reading) -> Result<Value, oracle::Error> {
    Ok(match reading {
        Reading::Number => row
            .get::<usize, Option<String>>(index)?
            .map_or(Value::Null, |s| number(&s)),
        Reading::Float => row
            .get::<usize, Option<f64>>(index)?
            .map_or(Value::Null, Value::Float),
        Reading::Text | Reading::Other => row
            .get::<usize, Option<String>>(index)?
            .map_or(Value::Null, Value::Text),
        Reading::PaddedText => row
            .get::<usize, Option<String>>(index)?
            .map_or(Value::Null, |s| {
                Value::Text(s.trim_end_matches(' ').to_owned())
            }),
        Reading::Stored(encoding, padded) => row
            .get::<usize, Option<Vec<u8>>>(index)?
            .map_or(Value::Null, |b| decode_stored(&b, encoding, padded)),
        Reading::Bytes => row
            .get::<usize, Option<Vec<u8>>>(index)?
            .map_or(Value::Null, Value::Bytes),
        Reading::DateTime => row
            .get::<usize, Option<oracle::sql_type::Timestamp>>(index)?
            .and_then(|t| datetime(&t))
            .unwrap_or(Value::Null),
    })
}

/// A bind parameter, owned, so a call can move it to the blocking pool.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text, bound as `VARCHAR2` (Oracle converts it to the column's type where it
    /// compares).
    Text(String),
    /// Text bound as `NVARCHAR2`, for national character columns.
    NText(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A date and time.
    DateTime(NaiveDateTime),
}

impl Param {
    /// A value as a parameter: text for what Oracle converts itself.
    pub fn of(v: &Value) -> Param {
        match v {
            Value::Null => Param::Null,
            Value::Bool(b) => Param::Int(i64::from(*b)),
            Value::Int(i) => Param::Int(*i),
            Value::Float(f) => Param::Float(*f),
            Value::Bytes(b) => Param::Bytes(b.clone()),
            Value::DateTime(t) => Param::DateTime(*t),
            Value::Date(d) => d.and_hms_opt(0, 0, 0).map_or(Param::Null, Param::DateTime),
            other => other.to_text().map_or(Param::Null, Param::Text),
        }
    }

    /// The parameter as the driver binds it.
    pub fn to_sql(&self) -> Box<dyn oracle::sql_type::ToSql> {
        match self {
            Param::Null => Box::new(Option::<String>::None),
            Param::Int(i) => Box::new(*i),
            Param::Float(f) => Box::new(*f),
            // The driver binds a string as NVARCHAR2 by default; against a VARCHAR2 or
            // CHAR column Oracle would then convert the column, row by row, and its index
            // would go unused.
            Param::Text(s) => Box::new(Typed(
                s.clone(),
                oracle::sql_type::OracleType::Varchar2(s.len().max(1) as u32),
            )),
            Param::NText(s) => Box::new(s.clone()),
            Param::Bytes(b) => Box::new(b.clone()),
            Param::DateTime(t) => match timestamp(t) {
                Some(ts) => Box::new(ts),
                None => Box::new(Option::<String>::None),
            },
        }
    }
}

/// A string bound with a chosen Oracle type.
struct Typed(String, oracle::sql_type::OracleType);

impl oracle::sql_type::ToSql for Typed {
    fn oratype(&self, _: &oracle::Connection) -> oracle::Result<oracle::sql_type::OracleType> {
        Ok(self.1.clone())
    }
    fn to_sql(&self, val: &mut oracle::SqlValue) -> oracle::Result<()> {
        self.0.to_sql(val)
    }
}

/// Binds `params` and runs `f` with them as the driver's slice.
pub fn with_params<T>(params: &[Param], f: impl FnOnce(&[&dyn oracle::sql_type::ToSql]) -> T) -> T {
    let owned: Vec<Box<dyn oracle::sql_type::ToSql>> = params.iter().map(Param::to_sql).collect();
    let refs: Vec<&dyn oracle::sql_type::ToSql> = owned.iter().map(|b| b.as_ref()).collect();
    f(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_exact() {
        assert_eq!(number("42"), Value::Int(42));
        assert_eq!(number("-7"), Value::Int(-7));
        assert_eq!(number("12.5"), Value::Decimal("12.5".to_owned()));
        assert_eq!(number(".5"), Value::Decimal("0.5".to_owned()));
        assert_eq!(number("-.05"), Value::Decimal("-0.05".to_owned()));
        // NUMBER(38) holds more than i64: the text, every digit.
        assert_eq!(
            number("123456789012345678901234567890"),
            Value::Decimal("123456789012345678901234567890".to_owned())
        );
        assert_eq!(
            number("0.1000000000000000055511151231257827"),
            Value::Decimal("0.1000000000000000055511151231257827".to_owned())
        );
    }

    #[test]
    fn gbk_databases_decode_and_one_bad_byte_keeps_the_value_as_bytes() {
        let gbk = charset_encoding("ZHS16GBK").expect("GBK");
        // 乌海 in GBK.
        assert_eq!(
            decode_stored(&[0xCE, 0xDA, 0xBA, 0xA3], gbk, false),
            Value::Text("乌海".to_owned())
        );
        // A lone lead byte: the value stays bytes (the mapping rejects that row).
        assert_eq!(
            decode_stored(&[0xCE, 0xDA, 0xBA], gbk, false),
            Value::Bytes(vec![0xCE, 0xDA, 0xBA])
        );
        // CHAR padding goes.
        assert_eq!(
            decode_stored(b"150302   ", gbk, true),
            Value::Text("150302".to_owned())
        );
        let utf8 = charset_encoding("al32utf8").expect("UTF-8");
        assert_eq!(
            decode_stored("乌海".as_bytes(), utf8, false),
            Value::Text("乌海".to_owned())
        );
        assert_eq!(
            decode_stored(&[0xE4, 0xB9], utf8, false),
            Value::Bytes(vec![0xE4, 0xB9])
        );
        // GBK bytes in a US7ASCII database stay bytes for the mapping's `decode`.
        let ascii = charset_encoding("US7ASCII").expect("ASCII");
        assert_eq!(
            decode_stored(b"NTAX", ascii, false),
            Value::Text("NTAX".to_owned())
        );
        assert_eq!(
            decode_stored(&[0xCE, 0xDA], ascii, false),
            Value::Bytes(vec![0xCE, 0xDA])
        );
        assert_eq!(charset_encoding("AL16UTF16"), None);
    }

    #[test]
    fn dates_and_timestamps_keep_their_wall_clock() {
        let t = oracle::sql_type::Timestamp::new(2006, 3, 1, 8, 30, 0, 123_456_000).expect("ts");
        let want = NaiveDate::from_ymd_opt(2006, 3, 1)
            .and_then(|d| d.and_hms_micro_opt(8, 30, 0, 123_456))
            .expect("a time");
        assert_eq!(datetime(&t), Some(Value::DateTime(want)));
        // WITH TIME ZONE: the wall clock at its own offset.
        let zoned = t.and_tz_hm_offset(8, 0).expect("zoned");
        assert_eq!(datetime(&zoned), Some(Value::DateTime(want)));
        // And back, as a parameter.
        let back = timestamp(&want).expect("a parameter");
        assert_eq!((back.year(), back.month(), back.day()), (2006, 3, 1));
        assert_eq!(back.nanosecond(), 123_456_000);
    }

    #[test]
    fn values_bind_as_oracle_compares_them() {
        assert_eq!(Param::of(&Value::Int(7)), Param::Int(7));
        assert_eq!(Param::of(&Value::Null), Param::Null);
        assert_eq!(Param::of(&Value::Bool(true)), Param::Int(1));
        assert_eq!(
            Param::of(&Value::Decimal("12.50".to_owned())),
            Param::Text("12.50".to_owned())
        );
        let d = NaiveDate::from_ymd_opt(2006, 3, 1).expect("date");
        assert_eq!(
            Param::of(&Value::Date(d)),
            Param::DateTime(d.and_hms_opt(0, 0, 0).expect("midnight"))
        );
    }
}
