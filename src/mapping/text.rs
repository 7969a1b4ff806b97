//! Text repairs the bureaus' data needs: width, Unicode compatibility forms, spaces,
//! identifier punctuation, and GBK bytes (raw, or already mis-read as latin1).
//!
//! Pure functions on strings and bytes; they never see which field they work on.

use std::borrow::Cow;
use unicode_normalization::{IsNormalized, UnicodeNormalization};

/// Name and address normalization for comparisons, as the warehouse's `core.norm_text`:
/// NFKC (widths, brackets, the ideographic space), no ASCII white space, ASCII upper case
/// (SQL's `upper` also upper-cases other letters, `é`, where the database's character
/// type is not C). Raw values are never stored this way.
pub fn norm_text(s: &str) -> String {
    s.nfkc()
        .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Full-width ASCII forms (U+FF01–U+FF5E) and the ideographic space (U+3000) to their
/// half-width equivalents; everything else unchanged. `（乌海）` → `(乌海)`.
pub fn halfwidth(s: &str) -> Cow<'_, str> {
    let wide = |c: char| matches!(c, '\u{3000}' | '\u{FF01}'..='\u{FF5E}');
    if !s.chars().any(wide) {
        return Cow::Borrowed(s);
    }
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Unicode NFKC: half-width forms plus other compatibility characters (circled digits,
/// ligatures, full-width katakana …).
pub fn nfkc(s: &str) -> Cow<'_, str> {
    if unicode_normalization::is_nfkc_quick(s.chars()) == IsNormalized::Yes {
        return Cow::Borrowed(s);
    }
    s.nfkc().collect()
}

/// Runs of white space (including U+3000) become one ASCII space; ends are trimmed.
pub fn collapse_spaces(s: &str) -> Cow<'_, str> {
    // Already collapsed: single ASCII spaces between words, none at the ends.
    let mut after_space = true;
    let collapsed = s.chars().all(|c| {
        let space = c.is_whitespace();
        let fine = !space || (c == ' ' && !after_space);
        after_space = space;
        fine
    }) && !after_space;
    if collapsed || s.is_empty() {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.split(|c: char| c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Trims white space, including the ideographic space that `str::trim` also knows.
pub fn trim(s: &str) -> &str {
    s.trim()
}

/// An identifier as printed (`76953826-4`, `１５０３０２ ７６９５３８２６４`) to its stored form:
/// NFKC, upper case, hyphens, dots and all white space removed.
pub fn identifier(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        // NFKC leaves ASCII as it is: only the case, white space and punctuation.
        let drop = |b: u8| matches!(b, b'\t'..=b'\r' | b' ' | b'-' | b'.');
        if s.bytes().all(|b| !drop(b) && !b.is_ascii_lowercase()) {
            return Cow::Borrowed(s);
        }
        return Cow::Owned(
            s.bytes()
                .filter(|&b| !drop(b))
                .map(|b| char::from(b.to_ascii_uppercase()))
                .collect(),
        );
    }
    Cow::Owned(
        s.nfkc()
            .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '‐' | '–' | '—' | '.' | '·'))
            .flat_map(char::to_uppercase)
            .collect(),
    )
}

/// The legacy Chinese encodings a mapping may decode from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// GBK (CP936); decoded as GB18030, its superset, so every GBK byte string decodes.
    Gbk,
    /// GB18030, including four-byte sequences.
    Gb18030,
}

/// Decodes legacy bytes strictly: `Err` names the first offending byte offset.
pub fn decode_bytes(bytes: &[u8], _legacy: Legacy) -> Result<String, String> {
    // encoding_rs implements GBK decoding as GB18030 decoding (WHATWG), which is a strict
    // superset; both names therefore decode the same way.
    let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
    if had_errors {
        let offset = first_bad_offset(bytes);
        return Err(format!(
            "invalid GBK/GB18030 byte sequence at byte {offset}"
        ));
    }
    Ok(text.into_owned())
}

fn first_bad_offset(bytes: &[u8]) -> usize {
    let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 4 + 4);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(bad, after) => {
            read.saturating_sub(usize::from(bad) + usize::from(after))
        }
        _ => bytes.len(),
    }
}

/// Text that is really GBK bytes read through a latin1 (MySQL: cp1252) conversion back to
/// those bytes; `None` when the text holds characters latin1 cannot have produced, i.e. it
/// is already proper Unicode.
pub fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(latin1_byte).collect()
}

fn latin1_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x80 || (0xA0..=0xFF).contains(&cp) {
        return u8::try_from(cp).ok();
    }
    // 0x80–0x9F: windows-1252 specials, or C1 controls for its five undefined bytes.
    (0x80u8..=0x9F).find(|&b| {
        let byte = [b];
        let (decoded, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&byte);
        decoded.starts_with(c)
    })
}

/// Decodes a text value that may be latin1-mangled GBK; proper Unicode passes unchanged.
pub fn decode_text(s: &str, legacy: Legacy) -> Result<Cow<'_, str>, String> {
    match latin1_bytes(s) {
        Some(bytes) if !s.is_ascii() => decode_bytes(&bytes, legacy).map(Cow::Owned),
        _ => Ok(Cow::Borrowed(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transforms' shortcuts for values they leave as they are give what the full
    /// computation gives, on clean, dirty and mixed values.
    #[test]
    fn shortcuts_agree_with_the_full_computation() {
        let samples = [
            "",
            " ",
            "乌海市海勃湾区新华街",
            "乌海市 海勃湾区  新华街",
            " 乌海市",
            "乌海市 ",
            "乌海市\u{3000}海勃湾区",
            "a\tb",
            "150302769538264",
            "91150302MA0N12345X",
            "91150302ma0n12345x",
            "76953826-4",
            "7695.3826 4",
            "a\u{0B}b\u{0C}c\rd\ne",
            "x\u{1F}y",
            "（乌海）有限公司",
            "ＡＢＣ１２３",
            "①号楼",
            "Ａ－１",
            "ﬁ",
            "e\u{301}",
            "ß",
            "İ",
        ];
        for s in samples {
            let full_halfwidth: String = s
                .chars()
                .map(|c| match c {
                    '\u{3000}' => ' ',
                    '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                    _ => c,
                })
                .collect();
            assert_eq!(halfwidth(s), full_halfwidth, "halfwidth {s:?}");
            assert_eq!(nfkc(s), s.nfkc().collect::<String>(), "nfkc {s:?}");
            let full_collapse = s
                .split(|c: char| c.is_whitespace())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(collapse_spaces(s), full_collapse, "collapse {s:?}");
            let full_identifier: String = s
                .nfkc()
                .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '‐' | '–' | '—' | '.' | '·'))
                .flat_map(char::to_uppercase)
                .collect();
            assert_eq!(identifier(s), full_identifier, "identifier {s:?}");
        }
    }

    #[test]
    fn width_and_spaces() {
        assert_eq!(halfwidth("乌海（海勃湾）有限公司"), "乌海(海勃湾)有限公司");
        assert_eq!(halfwidth("ＡＢＣ１２３\u{3000}号"), "ABC123 号");
        assert_eq!(nfkc("①号楼"), "1号楼");
        assert_eq!(
            collapse_spaces("  乌海市\u{3000}\u{3000}海勃湾区  新华街 "),
            "乌海市 海勃湾区 新华街"
        );
        assert_eq!(trim("\u{3000}乌海 "), "乌海");
    }

    #[test]
    fn identifiers_lose_print_punctuation() {
        assert_eq!(identifier("76953826-4"), "769538264");
        assert_eq!(identifier(" ７６９５３８２６－x "), "76953826X");
        assert_eq!(identifier("1503 0276 9538 264"), "150302769538264");
    }

    #[test]
    fn gbk_bytes_decode() {
        let gbk = [
            0xC4, 0xDA, 0xC3, 0xC9, 0xB9, 0xC5, 0xCE, 0xDA, 0xBA, 0xA3, 0xCA, 0xD0,
        ];
        assert_eq!(
            decode_bytes(&gbk, Legacy::Gbk).as_deref(),
            Ok("内蒙古乌海市")
        );
        // 镕 is in GBK but not GB2312.
        let (enc, _, _) = encoding_rs::GBK.encode("王镕");
        assert_eq!(decode_bytes(&enc, Legacy::Gbk).as_deref(), Ok("王镕"));
    }

    #[test]
    fn invalid_gbk_names_the_offset() {
        let err = decode_bytes(&[0xD6, 0xD0, 0xFF, 0x20], Legacy::Gbk).expect_err("bad");
        assert_eq!(err, "invalid GBK/GB18030 byte sequence at byte 2");
    }

    #[test]
    fn latin1_mojibake_is_repaired() {
        // 内蒙古乌海市海勃湾区 as GBK read through latin1 (the DOMAIN example).
        let mangled = "ÄÚÃÉ¹ÅÎÚº£ÊÐº£²ªÍåÇø";
        assert_eq!(
            decode_text(mangled, Legacy::Gbk).as_deref(),
            Ok("内蒙古乌海市海勃湾区")
        );
        // 上午 is GBK C9CF CEE7.
        assert_eq!(decode_text("ÉÏÎç", Legacy::Gbk).as_deref(), Ok("上午"));
        // Bytes in 0x80–0x9F come back through windows-1252 (€ = 0x80, ‚ = 0x82).
        let (enc, _, _) = encoding_rs::GBK.encode("乌达区");
        let via_1252: String = encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(&enc)
            .0
            .into();
        assert_eq!(decode_text(&via_1252, Legacy::Gbk).as_deref(), Ok("乌达区"));
    }

    #[test]
    fn proper_unicode_passes_through_decode() {
        assert_eq!(decode_text("乌海市", Legacy::Gbk).as_deref(), Ok("乌海市"));
        assert_eq!(
            decode_text("ABC 123", Legacy::Gbk).as_deref(),
            Ok("ABC 123")
        );
    }
}
