//! Small text helpers every connector and the app share: `%XX` decoding and encoding of
//! URL parts, and the golden-file check connectors' script tests use.

/// Decodes `%XX` escapes (a malformed escape stays as written; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes every byte but RFC 3986's unreserved characters as `%XX` (for a password in a
/// URL's userinfo).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Asserts `actual` equals the golden file `name` under `dir`; with `EBIS_BLESS` set in
/// the environment, writes it first (to accept a reviewed change).
pub fn assert_golden(dir: &std::path::Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var("EBIS_BLESS").is_ok() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with EBIS_BLESS=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_malformed_ones_stay() {
        assert_eq!(percent_decode("c%23%23ebis"), "c##ebis");
        assert_eq!(percent_decode("%E4%B9%8C"), "乌");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn encoding_keeps_unreserved_characters_and_decodes_back() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("p@ss:w/rd%"), "p%40ss%3Aw%2Frd%25");
        for s in ["p@ss:w/rd%", "口令#1 ", ""] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
    }
}
