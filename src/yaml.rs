//! Reading user-written YAML with the place of every value kept.
//!
//! Structural errors (syntax, unknown keys, wrong types) come from the deserializer as one
//! diagnostic with its line and column; semantic checks then use the spans kept in
//! [`Spanned`] values to point at the offending value. Nothing here knows about config or
//! mappings.

use crate::diagnostic::Diagnostic;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

pub use serde_saphyr::Spanned;

/// A YAML mapping whose keys keep their places, in file order (duplicates are reported by
/// the parser).
#[derive(Debug)]
pub struct SpannedMap<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = access.next_key()? {
                    entries.push((k, access.next_value()?));
                }
                Ok(SpannedMap(entries))
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

impl<V> Default for SpannedMap<V> {
    fn default() -> Self {
        SpannedMap(Vec::new())
    }
}

/// A diagnostic at the place of a spanned value.
pub fn at<T>(path: &Path, value: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::at(
        path,
        value.referenced.line(),
        value.referenced.column(),
        message,
    )
}

/// Parses `text` (the content of `path`) into `T`, turning a parse error into a diagnostic
/// with the parser's line and column.
pub fn parse<'de, T: Deserialize<'de>>(path: &Path, text: &'de str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        Diagnostic::at(
            path,
            line,
            column,
            in_user_terms(&bare_message(&e.without_snippet().to_string())),
        )
    })
}

/// The parser's wording, said in a YAML writer's terms (no Rust types, no library knobs).
fn in_user_terms(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("`{key}` is written twice here: keep one");
    }
    let kinds = [
        ("invalid u64", "expected a whole number (0 or more)"),
        ("invalid u32", "expected a whole number (0 or more)"),
        ("invalid i64", "expected a whole number"),
        ("invalid bool", "expected true or false"),
        (
            "expected sequence start",
            "expected a list (`- item` lines, or `[a, b]`)",
        ),
        ("expected mapping start", "expected `key: value` lines"),
        (
            "expected scalar",
            "expected a single value, not a list or a block",
        ),
    ];
    for (library, said) in kinds {
        if message == library || message.starts_with(&format!("{library}:")) {
            return said.to_owned();
        }
    }
    message.to_owned()
}

/// The parser's message without its trailing " at line N, column M".
fn bare_message(rendered: &str) -> String {
    let text = rendered.trim();
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains(", column ") => text[..i].to_owned(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: Spanned<String>,
        #[serde(default)]
        items: SpannedMap<Spanned<String>>,
    }

    #[test]
    fn keeps_places_of_keys_and_values() {
        let doc: Doc =
            parse(Path::new("t.yaml"), "name: 乌海\nitems:\n  a: x\n  b: y\n").expect("ok");
        assert_eq!(doc.name.value, "乌海");
        assert_eq!(
            (doc.name.referenced.line(), doc.name.referenced.column()),
            (1, 7)
        );
        let keys: Vec<_> = doc
            .items
            .0
            .iter()
            .map(|(k, _)| (k.value.as_str(), k.referenced.line(), k.referenced.column()))
            .collect();
        assert_eq!(keys, [("a", 3, 3), ("b", 4, 3)]);
    }

    #[test]
    fn parser_wording_is_said_in_the_writers_terms() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Numbers {
            n: u64,
            list: Option<Vec<String>>,
        }
        let err = parse::<Numbers>(Path::new("t.yaml"), "n: lots\n").expect_err("bad");
        assert_eq!(err.message, "expected a whole number (0 or more)");
        let err = parse::<Numbers>(Path::new("t.yaml"), "n: 1\nlist: 5\n").expect_err("bad");
        assert!(
            err.message.starts_with("expected a list"),
            "{}",
            err.message
        );
        let err = parse::<Numbers>(Path::new("t.yaml"), "n: 1\nn: 2\n").expect_err("bad");
        assert_eq!(err.message, "`n` is written twice here: keep one");
        assert!(!err.message.contains("DuplicateKeyPolicy"));
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let err = parse::<Doc>(Path::new("t.yaml"), "name: a\nnmae: b\n").expect_err("bad");
        assert_eq!((err.line, err.column), (2, 1));
        assert!(
            err.message.contains("unknown field `nmae`"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("at line"), "{}", err.message);
    }
}
