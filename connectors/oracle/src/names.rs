//! Oracle names: quoting, the identifier length limits, and the names ebis generates.
//!
//! A quoted Oracle identifier is case-sensitive and cannot contain a double quote at all
//! (there is no escape), so a name holding one is refused rather than quoted. Unquoted
//! names are stored in upper case; ebis resolves a mapping's name against the catalog as
//! written first, then in upper case, and quotes the catalog's spelling. Identifiers are
//! at most 30 bytes before Oracle 12.2 and 128 bytes from 12.2; names ebis generates
//! (triggers) are kept within 30 so one script fits every version.

use ebis_capture::keys::split_table;

/// The longest identifier any supported Oracle accepts (12.2 and later), in bytes.
pub const MAX_IDENTIFIER: usize = 128;

/// The longest identifier before Oracle 12.2, in bytes: generated names stay within it.
pub const MAX_LEGACY_IDENTIFIER: usize = 30;

/// Quotes an identifier; `None` when Oracle cannot hold it (empty, a double quote or NUL
/// in it, or longer than [`MAX_IDENTIFIER`] bytes).
pub fn try_quote(name: &str) -> Option<String> {
    (!name.is_empty()
        && !name.contains('"')
        && !name.contains('\0')
        && name.len() <= MAX_IDENTIFIER)
        .then(|| format!("\"{name}\""))
}

/// Quotes an identifier already checked by [`check_identifier`] (or from the catalog).
pub fn quote(name: &str) -> String {
    try_quote(name).unwrap_or_else(|| format!("\"{}\"", name.replace('"', "")))
}

/// Why Oracle cannot hold `name` as an identifier, if it cannot.
pub fn check_identifier(name: &str) -> Option<String> {
    if try_quote(name).is_some() {
        return None;
    }
    Some(if name.len() > MAX_IDENTIFIER {
        format!(
            "`{name}` is {} bytes long: Oracle identifiers are at most {MAX_IDENTIFIER} bytes (30 before Oracle 12.2)",
            name.len()
        )
    } else {
        format!("`{name}` cannot be an Oracle identifier (empty, or a double quote in it)")
    })
}

/// A `schema.table` name quoted.
pub fn quote_table(owner: &str, table: &str) -> String {
    format!("{}.{}", quote(owner), quote(table))
}

/// A string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A short stable hash of a name (FNV-1a), for generated names that must be shortened.
fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08X}")
}

/// The trigger ebis puts on a table: `EBIS_<table>_CAP`, within 30 bytes on every
/// version (a long name keeps its first characters and gains a hash of the whole).
pub fn trigger_name(table: &str) -> String {
    let (_, name) = split_table(table);
    let name = name.to_ascii_uppercase();
    let plain: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let full = format!("EBIS_{name}_CAP");
    if plain == name && full.len() <= MAX_LEGACY_IDENTIFIER {
        return full;
    }
    // EBIS_ + at most 12 characters + _ + 8 hex digits + _CAP = 30 bytes.
    let prefix: String = plain.chars().take(12).collect();
    format!("EBIS_{prefix}_{}_CAP", short_hash(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_quoted_or_refused() {
        assert_eq!(quote("DJ_NSRXX"), "\"DJ_NSRXX\"");
        assert_eq!(quote_table("NTAX", "DJ_NSRXX"), "\"NTAX\".\"DJ_NSRXX\"");
        assert_eq!(try_quote("纳税人 信息"), Some("\"纳税人 信息\"".to_owned()));
        assert_eq!(try_quote("a\"; DROP TABLE x; --"), None);
        assert_eq!(try_quote(""), None);
        assert!(
            check_identifier("x\"y")
                .expect("refused")
                .contains("double quote")
        );
        let long = "A".repeat(129);
        assert!(
            check_identifier(&long)
                .expect("refused")
                .contains("128 bytes")
        );
        assert_eq!(check_identifier(&"A".repeat(128)), None);
        // 43 Chinese characters are 129 bytes in UTF-8.
        assert!(check_identifier(&"纳".repeat(43)).is_some());
        assert_eq!(literal("O'Brien"), "'O''Brien'");
    }

    #[test]
    fn generated_names_fit_every_version() {
        assert_eq!(trigger_name("NTAX.DJ_NSRXX"), "EBIS_DJ_NSRXX_CAP");
        assert_eq!(trigger_name("dj_nsrxx"), "EBIS_DJ_NSRXX_CAP");
        let long = trigger_name("NTAX.DJ_NSRXX_BGDJ_HISTORY_ARCHIVE");
        assert!(long.len() <= MAX_LEGACY_IDENTIFIER, "{long}");
        assert!(long.starts_with("EBIS_DJ_NSRXX_BG"), "{long}");
        assert_ne!(
            long,
            trigger_name("NTAX.DJ_NSRXX_BGDJ_HISTORY_ARCHIVE2"),
            "two long names do not collide"
        );
        let chinese = trigger_name("纳税人登记信息表");
        assert!(
            chinese.len() <= MAX_LEGACY_IDENTIFIER && chinese.is_ascii(),
            "{chinese}"
        );
    }
}
