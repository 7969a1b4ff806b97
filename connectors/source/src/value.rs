//! Column values as a connector delivers them, before any mapping.
//!
//! Values keep the source's own representation (bytes stay bytes, so text stored as GBK in
//! a latin1 column can still be decoded by the mapping). Their canonical text form is what
//! filters compare against and what quarantine shows as the raw value.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::sync::Arc;

/// One column value read from a source database.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean (bit(1), BOOLEAN).
    Bool(bool),
    /// A signed integer of any width.
    Int(i64),
    /// An unsigned integer that does not fit `i64`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// An exact decimal, kept as its decimal text so no digit is lost.
    Decimal(String),
    /// Text, already decoded to Unicode by the driver.
    Text(String),
    /// Raw bytes: binary columns, and text columns whose bytes the driver cannot decode
    /// (for example GBK stored in a latin1 column).
    Bytes(Vec<u8>),
    /// A calendar date.
    Date(NaiveDate),
    /// A date and time of day without a time zone (the source's local time).
    DateTime(NaiveDateTime),
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The canonical text of the value; `None` for NULL.
    ///
    /// Bytes are written as PostgreSQL's hex form (`\x…`), dates as ISO 8601.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Decimal(d) => d.clone(),
            Value::Text(s) => s.clone(),
            Value::Bytes(b) => hex_text(b),
            Value::Date(d) => date_text(*d),
            Value::DateTime(t) => datetime_text(t),
        })
    }

    /// The value as JSON, for the raw source row kept beside every warehouse record.
    /// Text holding a NUL character, which PostgreSQL cannot store, is kept as its bytes
    /// (`\x…`) like any other value text cannot hold.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Text(s) if s.contains('\0') => Json::String(hex_text(s.as_bytes())),
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::UInt(u) => Json::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or_else(|| Json::String(f.to_string())),
            other => Json::String(other.to_text().unwrap_or_default()),
        }
    }
}

/// Text PostgreSQL can store: unchanged, or — when it holds a NUL character, which no
/// PostgreSQL text can — its UTF-8 bytes in hex (`\x610062`), so a raw value stays
/// visible byte for byte.
pub fn storable_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(hex_text(s.as_bytes()))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn hex_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A date as ISO 8601 text (`2006-03-01`), as chrono's `%Y-%m-%d` writes it, without
/// parsing a format string for every value (a snapshot writes millions).
pub fn date_text(d: NaiveDate) -> String {
    let y = d.year();
    if !(0..=9999).contains(&y) {
        return d.format("%Y-%m-%d").to_string();
    }
    let mut s = String::with_capacity(26);
    push_date(&mut s, d);
    s
}

fn push_date(s: &mut String, d: NaiveDate) {
    push_digits(s, d.year() as u32, 4);
    s.push('-');
    push_digits(s, d.month(), 2);
    s.push('-');
    push_digits(s, d.day(), 2);
}

fn push_digits(s: &mut String, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    for b in buf[..width].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    s.extend(buf[..width].iter().map(|&b| char::from(b)));
}

/// A date and time as text: `2006-03-01 08:05:00`, with microseconds (`.000123`) when
/// it has a fraction of a second, as chrono's `%Y-%m-%d %H:%M:%S%.6f` writes it.
pub fn datetime_text(t: &NaiveDateTime) -> String {
    // Years chrono writes with a sign, and leap seconds: chrono's own formatting.
    if !(0..=9999).contains(&t.year()) || t.nanosecond() >= 1_000_000_000 {
        return if t.nanosecond() == 0 {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        } else {
            t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
        };
    }
    let mut s = String::with_capacity(26);
    push_date(&mut s, t.date());
    s.push(' ');
    push_digits(&mut s, t.hour(), 2);
    s.push(':');
    push_digits(&mut s, t.minute(), 2);
    s.push(':');
    push_digits(&mut s, t.second(), 2);
    if t.nanosecond() != 0 {
        s.push('.');
        push_digits(&mut s, t.nanosecond() / 1000, 6);
    }
    s
}

/// One source row: column name → value, in the order the source returned the columns.
/// The names are shared by every row read with them ([`Row::with_names`]): a snapshot's
/// rows held a copy of each name, an allocation per column and row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    names: Arc<Vec<String>>,
    values: Vec<Value>,
}

impl Row {
    /// An empty row (the row of a delete).
    pub fn new() -> Self {
        Self::default()
    }

    /// A row of `values` under `names` (shared with the other rows read with them).
    ///
    /// # Panics
    /// When there are not as many values as names: a reader's bug.
    pub fn with_names(names: Arc<Vec<String>>, values: Vec<Value>) -> Self {
        assert_eq!(names.len(), values.len(), "a row's names and values");
        Self { names, values }
    }

    /// The first `count` of a result's column names, to be shared by its rows
    /// ([`Row::with_names`]).
    pub fn shared_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
        count: usize,
    ) -> Arc<Vec<String>> {
        Arc::new(names.into_iter().take(count).map(str::to_owned).collect())
    }

    /// Appends a column.
    pub fn push(&mut self, column: impl Into<String>, value: Value) {
        Arc::make_mut(&mut self.names).push(column.into());
        self.values.push(value);
    }

    /// The value of a column: an exact name match first, then ASCII case-insensitive
    /// (Oracle folds unquoted names to upper case, MySQL keeps them as written).
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.position(column).map(|i| &self.values[i])
    }

    /// [`Row::get`] that looks at position `hint` first (where the column was in the
    /// last row read): the value, and where it was. A mapping reads each of its columns
    /// from every row, and its search by name was a tenth of mapping's instructions.
    pub fn get_hinted(&self, column: &str, hint: usize) -> Option<(usize, &Value)> {
        if self.names.get(hint).is_some_and(|c| c == column) {
            return Some((hint, &self.values[hint]));
        }
        self.position(column).map(|i| (i, &self.values[i]))
    }

    fn position(&self, column: &str) -> Option<usize> {
        self.names.iter().position(|c| c == column).or_else(|| {
            self.names
                .iter()
                .position(|c| c.eq_ignore_ascii_case(column))
        })
    }

    /// The values at some column positions (NULL where the row has none).
    pub fn values_at(&self, positions: &[usize]) -> Vec<Value> {
        positions
            .iter()
            .map(|i| self.value_at(*i).unwrap_or(Value::Null))
            .collect()
    }

    /// The value at a column position, if the row has one there.
    pub fn value_at(&self, position: usize) -> Option<Value> {
        self.values.get(position).cloned()
    }

    /// The columns in source order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
    }

    /// The column names in source order, shared with the other rows read with them.
    pub fn names(&self) -> &Arc<Vec<String>> {
        &self.names
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The whole row as a JSON object (the raw source row).
    pub fn to_json(&self) -> Json {
        Json::Object(
            self.iter()
                .map(|(c, v)| (c.to_owned(), v.to_json()))
                .collect(),
        )
    }

    /// The row's values as a JSON array, in its columns' order, written straight out
    /// without building [`Row::to_json`]'s tree (the raw row is kept beside every record
    /// of a snapshot, where building and cloning the tree was a third of mapping's
    /// time). The column names are left out: the rows read with it share them
    /// ([`Row::names`]), and written into every row they were three fifths of its bytes.
    pub fn values_json(&self) -> String {
        let mut out = String::with_capacity(32 * self.values.len() + 2);
        out.push('[');
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_value(&mut out, v);
        }
        out.push(']');
        out
    }
}

/// `v` as JSON, as [`Value::to_json`] gives it.
fn push_json_value(out: &mut String, v: &Value) {
    match v {
        Value::Text(t) if t.contains('\0') => push_json_str(out, &hex_text(t.as_bytes())),
        Value::Text(t) => push_json_str(out, t),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        // serde_json's own form of a finite float (shortest round trip).
        Value::Float(f) if f.is_finite() => {
            out.push_str(&Json::from(*f).to_string());
        }
        other => push_json_str(out, &other.to_text().unwrap_or_default()),
    }
}

/// `s` as a JSON string: quoted, with `"`, `\` and control characters escaped as
/// serde_json escapes them.
fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(at) = first_escaped(&bytes[start..]).map(|p| start + p) {
        // Only ASCII bytes are escaped: the slices end on character boundaries.
        out.push_str(&s[start..at]);
        let b = bytes[at];
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = at + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Where the first byte JSON escapes (`"`, `\`, a control character) is in `b`. Eight
/// bytes at a time: a raw row is mostly text that needs no escape, and a byte at a time
/// this took a third of the mapping's instructions.
fn first_escaped(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `x` is below `n` (n <= 0x80; bytes from 0x80 never are).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        if below(x, 0x20)
            || zero(x ^ (ONES * u64::from(b'"')))
            || zero(x ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|p| i + p)
}

impl FromIterator<(String, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let (names, values) = iter.into_iter().unzip();
        Self {
            names: Arc::new(names),
            values,
        }
    }
}

/// The canonical text of a row key: the value's text for a one-column key, the values
/// joined by `|` for a composite key (with `\` escaping `|` and `\` inside values).
/// NULL key parts are written as `\N`.
pub fn key_text(key: &[Value]) -> String {
    if let [single] = key {
        return single.to_text().unwrap_or_else(|| "\\N".to_owned());
    }
    let mut out = String::new();
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        match v.to_text() {
            None => out.push_str("\\N"),
            Some(t) => {
                for ch in t.chars() {
                    if ch == '|' || ch == '\\' {
                        out.push('\\');
                    }
                    out.push(ch);
                }
            }
        }
    }
    out
}

/// The key values a [`key_text`] was made from, as far as a statement parameter needs
/// them: text parts as text (a source compares them with its own column types), `\N` as
/// NULL, `\x…` as bytes. `parts` is the number of key columns.
pub fn key_values(text: &str, parts: usize) -> Vec<Value> {
    let part = |t: &str| -> Value {
        if t == "\\N" {
            return Value::Null;
        }
        if let Some(hex) = t.strip_prefix("\\x")
            && hex.len() % 2 == 0
            && !hex.is_empty()
            && let Some(bytes) = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        {
            return Value::Bytes(bytes);
        }
        Value::Text(t.to_owned())
    };
    if parts <= 1 {
        return vec![part(text)];
    }
    let mut out = Vec::with_capacity(parts);
    let mut current = String::new();
    let mut raw_null = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('N') if current.is_empty() => raw_null = true,
                Some(escaped) => current.push(escaped),
                None => current.push('\\'),
            },
            '|' => {
                out.push(if raw_null {
                    Value::Null
                } else {
                    part(&current)
                });
                current.clear();
                raw_null = false;
            }
            c => current.push(c),
        }
    }
    out.push(if raw_null {
        Value::Null
    } else {
        part(&current)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_json_text_is_its_json() {
        let d = NaiveDate::from_ymd_opt(2006, 3, 1).expect("date");
        let mut row = Row::new();
        row.push(
            "ENTNAME",
            Value::Text("乌海市\"宏达\"\\商贸\n有限公司\u{1}".into()),
        );
        row.push("NUL", Value::Text("a\0b".into()));
        row.push("NONE", Value::Null);
        row.push("FLAG", Value::Bool(true));
        row.push("ID", Value::Int(-42));
        row.push("BIG", Value::UInt(u64::MAX));
        row.push("RATE", Value::Float(0.1));
        row.push("NAN", Value::Float(f64::NAN));
        row.push("INF", Value::Float(f64::NEG_INFINITY));
        row.push("CAPITAL", Value::Decimal("12345678901234567890.01".into()));
        row.push("GBK", Value::Bytes(vec![0xd6, 0xd0]));
        row.push("ESTDATE", Value::Date(d));
        row.push(
            "UPDATED",
            Value::DateTime(d.and_hms_micro_opt(8, 5, 0, 120).expect("time")),
        );
        // The values of `to_json`'s object, in the same order.
        let text = row.values_json();
        let parsed: Json = serde_json::from_str(&text).expect("valid JSON");
        let expected: Vec<Json> = row.iter().map(|(_, v)| v.to_json()).collect();
        assert_eq!(parsed, Json::Array(expected), "{text}");
        assert_eq!(Row::new().values_json(), "[]");
    }

    #[test]
    fn a_hinted_lookup_finds_the_column_wherever_it_moved() {
        let row = |names: &[&str]| {
            Row::with_names(
                Row::shared_names(names.iter().copied(), names.len()),
                names.iter().map(|n| Value::Text((*n).to_owned())).collect(),
            )
        };
        let a = row(&["PRIPID", "REGNO", "ENTNAME"]);
        assert_eq!(
            a.get_hinted("ENTNAME", 2),
            Some((2, &Value::Text("ENTNAME".into())))
        );
        // The table changed between reads: a stale hint, another column there.
        let b = row(&["ENTNAME", "PRIPID", "regno"]);
        assert_eq!(
            b.get_hinted("ENTNAME", 2),
            Some((0, &Value::Text("ENTNAME".into())))
        );
        assert_eq!(
            b.get_hinted("REGNO", 1),
            Some((2, &Value::Text("regno".into())))
        );
        assert_eq!(b.get_hinted("DOM", 0), None);
        assert_eq!(
            b.get_hinted("PRIPID", 99),
            Some((1, &Value::Text("PRIPID".into())))
        );
    }

    /// A raw row's strings are written as serde_json writes them, whatever byte needs an
    /// escape and wherever it falls.
    #[test]
    fn json_strings_are_serde_jsons() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        for pad in 0..20 {
            for special in [
                "\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{7f}", "乌海", "é", "/",
            ] {
                samples.push(format!(
                    "{}{special}{}",
                    "a".repeat(pad),
                    "海".repeat(pad % 4)
                ));
                samples.push(format!("{}{special}", "市".repeat(pad)));
            }
        }
        samples.push("乌海市鑫源煤焦有限公司 \"内\\蒙\" \t\r\n end".to_owned());
        for s in &samples {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).expect("json"), "{s:?}");
        }
        let row: Row = [
            ("A".to_owned(), Value::Int(-3)),
            ("B".to_owned(), Value::UInt(u64::MAX)),
            ("C".to_owned(), Value::Float(0.1)),
            ("D".to_owned(), Value::Float(f64::NAN)),
            ("E".to_owned(), Value::Bool(true)),
            ("F".to_owned(), Value::Null),
            ("G".to_owned(), Value::Decimal("12.50".into())),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            row.values_json(),
            r#"[-3,18446744073709551615,0.1,"NaN",true,null,"12.50"]"#
        );
    }

    #[test]
    fn date_and_time_texts_are_chronos() {
        let mut checked = 0;
        for y in [
            -1, 0, 1, 9, 99, 999, 1900, 1970, 2006, 2024, 9999, 10000, 262_000,
        ] {
            for (m, d) in [(1, 1), (2, 28), (3, 1), (9, 30), (12, 31)] {
                let date = NaiveDate::from_ymd_opt(y, m, d).expect("date");
                assert_eq!(date_text(date), date.format("%Y-%m-%d").to_string());
                for (h, mi, s, nano) in [
                    (0, 0, 0, 0),
                    (8, 5, 0, 0),
                    (23, 59, 59, 1_000),
                    (12, 30, 7, 999_999_999),
                    (1, 2, 3, 500),
                    (23, 59, 59, 1_500_000_000),
                ] {
                    let t = date.and_hms_nano_opt(h, mi, s, nano).expect("time");
                    let chrono = if nano == 0 {
                        t.format("%Y-%m-%d %H:%M:%S").to_string()
                    } else {
                        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
                    };
                    assert_eq!(datetime_text(&t), chrono);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 13 * 5 * 6);
    }

    #[test]
    fn text_forms_are_canonical() {
        let d = NaiveDate::from_ymd_opt(2006, 3, 1).expect("date");
        assert_eq!(Value::Date(d).to_text().as_deref(), Some("2006-03-01"));
        let t = d.and_hms_opt(8, 5, 0).expect("time");
        assert_eq!(
            Value::DateTime(t).to_text().as_deref(),
            Some("2006-03-01 08:05:00")
        );
        assert_eq!(
            Value::Bytes(vec![0xd6, 0xd0]).to_text().as_deref(),
            Some("\\xd6d0")
        );
        assert_eq!(Value::Null.to_text(), None);
        assert_eq!(Value::Text("乌海".into()).to_json(), Json::from("乌海"));
        assert_eq!(
            Value::Text("a\0b".into()).to_json(),
            Json::from("\\x610062"),
            "a NUL is kept as bytes"
        );
        assert_eq!(storable_text("a\0b"), "\\x610062");
        assert_eq!(storable_text("乌海"), "乌海");
    }

    #[test]
    fn composite_keys_escape_separators() {
        assert_eq!(key_text(&[Value::Int(7)]), "7");
        assert_eq!(
            key_text(&[Value::Text("a|b".into()), Value::Int(2)]),
            "a\\|b|2"
        );
        assert_eq!(key_text(&[Value::Null, Value::Int(2)]), "\\N|2");
        assert_ne!(
            key_text(&[Value::Text("a|b".into()), Value::Text("c".into())]),
            key_text(&[Value::Text("a".into()), Value::Text("b|c".into())])
        );
    }

    #[test]
    fn key_texts_read_back_into_values() {
        for key in [
            vec![Value::Text("L0001".into())],
            vec![Value::Text("a|b".into()), Value::Text("2".into())],
            vec![Value::Null, Value::Text("x\\y".into())],
            vec![Value::Bytes(vec![0xce, 0xda])],
        ] {
            let text = key_text(&key);
            assert_eq!(key_text(&key_values(&text, key.len())), text, "{key:?}");
        }
        assert_eq!(key_values("7", 1), [Value::Text("7".into())]);
    }

    #[test]
    fn row_lookup_falls_back_to_case_insensitive() {
        let mut row = Row::new();
        row.push("ENTNAME", Value::Text("乌海市某公司".into()));
        assert!(row.get("ENTNAME").is_some());
        assert!(row.get("entname").is_some());
        assert!(row.get("REGNO").is_none());
    }
}
