//! Chinese enterprise identifiers: check characters and validation (DOMAIN.md §1).
//!
//! - 组织机构代码 (GB 11714): 8 body characters `0-9A-Z` + check (`0-9`, `X`).
//! - 15-digit 注册号 (GS15-2006): check digit by ISO 7064 MOD 11,10 (GB/T 17710).
//!   Older numbers (13 digits and others) have no national check digit: format only.
//! - 统一社会信用代码 (GB 32100): 17 characters + check; characters 9–17 are an org code.
//! - 身份证号 (GB 11643): 17 digits + check (`0-9`, `X`), a real birth date; 15-digit
//!   numbers upgrade to 18.
//! - 纳税人识别号 of the era: 6-digit division + org code (15); or an ID-card number
//!   (15/18), possibly padded with 2 digits (20).
//!
//! Every function works on `char`s, never byte slices, so non-ASCII input is simply
//! invalid. The same algorithms exist as SQL functions in the warehouse; both are tested
//! against `testdata/identifiers.csv`.

use chrono::NaiveDate;

const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
const USCC_CHARS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// The GB 11714 check character for 8 body characters; `None` if the body is malformed.
pub fn org_code_check(body: &str) -> Option<char> {
    let chars: Vec<char> = body.chars().collect();
    if chars.len() != 8 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in chars.iter().zip(ORG_WEIGHTS) {
        let v = c
            .to_digit(36)
            .filter(|_| c.is_ascii_digit() || c.is_ascii_uppercase())?;
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from_digit(d, 10)?,
    })
}

/// True for a valid 9-character org code (no hyphen).
pub fn is_org_code(code: &str) -> bool {
    let chars: Vec<char> = code.chars().collect();
    chars.len() == 9 && org_code_check(&chars[..8].iter().collect::<String>()) == Some(chars[8])
}

/// The MOD 11,10 check digit for the 14 body digits of a 15-digit registration number.
pub fn reg_no_check(body: &str) -> Option<char> {
    let digits: Vec<u32> = body
        .chars()
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()?;
    if digits.len() != 14 {
        return None;
    }
    let mut p = 10;
    for a in digits {
        let mut s = (p + a) % 10;
        if s == 0 {
            s = 10;
        }
        p = (2 * s) % 11;
    }
    char::from_digit((11 - p) % 10, 10)
}

/// True for a valid registration number: 15 digits with a correct check digit, an older
/// 13-digit number (no check digit exists: format only), or — for enterprises registered
/// since the 2015 reform — an 18-character unified social credit code.
pub fn is_reg_no(no: &str) -> bool {
    let chars: Vec<char> = no.chars().collect();
    if chars.len() == 18 {
        return is_uscc(no);
    }
    if !chars.iter().all(char::is_ascii_digit) {
        return false;
    }
    match chars.len() {
        15 => reg_no_check(&chars[..14].iter().collect::<String>()) == Some(chars[14]),
        13 => true,
        _ => false,
    }
}

/// The org code a unified social credit code embeds (characters 9–17), if it is one.
pub fn uscc_org_code(code: &str) -> Option<String> {
    is_uscc(code).then(|| code.chars().skip(8).take(9).collect())
}

/// A unified social credit code for an enterprise (登记管理部门 9, 类别 1) of a division
/// with this org code.
pub fn uscc_of(division: &str, org_code: &str) -> Option<String> {
    let body = format!("91{division}{org_code}");
    uscc_check(&body).map(|c| format!("{body}{c}"))
}

/// The GB 32100 check character for 17 body characters.
pub fn uscc_check(body: &str) -> Option<char> {
    let chars: Vec<char> = body.chars().collect();
    if chars.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in chars.iter().zip(USCC_WEIGHTS) {
        let v = USCC_CHARS.find(*c)? as u32;
        sum += v * w;
    }
    USCC_CHARS.chars().nth(((31 - sum % 31) % 31) as usize)
}

/// True for a valid unified social credit code whose embedded org code is valid too.
pub fn is_uscc(code: &str) -> bool {
    let chars: Vec<char> = code.chars().collect();
    chars.len() == 18
        && uscc_check(&chars[..17].iter().collect::<String>()) == Some(chars[17])
        && is_org_code(&chars[8..17].iter().collect::<String>())
}

/// The GB 11643 check character for 17 body digits.
pub fn id_card_check(body: &str) -> Option<char> {
    let digits: Vec<u32> = body
        .chars()
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()?;
    if digits.len() != 17 {
        return None;
    }
    let sum: u32 = digits.iter().zip(ID_WEIGHTS).map(|(d, w)| d * w).sum();
    Some(ID_CHECK[(sum % 11) as usize])
}

/// True for a valid 18-digit ID-card number (check character and birth date), or a
/// 15-digit one whose birth date is real (15-digit numbers have no check digit).
pub fn is_id_card(no: &str) -> bool {
    let chars: Vec<char> = no.chars().collect();
    match chars.len() {
        18 => {
            let body: String = chars[..17].iter().collect();
            id_card_check(&body) == Some(chars[17]) && birth_ok(&body[6..14])
        }
        15 => chars.iter().all(char::is_ascii_digit) && birth_ok(&format!("19{}", &no[6..12])),
        _ => false,
    }
}

fn birth_ok(yyyymmdd: &str) -> bool {
    NaiveDate::parse_from_str(yyyymmdd, "%Y%m%d").is_ok_and(|d| d.year_ce().1 >= 1900)
}

use chrono::Datelike;

/// Upgrades a 15-digit ID-card number to 18 digits (inserts `19`, adds the check).
pub fn id_card_15_to_18(no: &str) -> Option<String> {
    if no.chars().count() != 15 || !no.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let body = format!("{}19{}", &no[..6], &no[6..]);
    id_card_check(&body).map(|c| format!("{body}{c}"))
}

/// True for a taxpayer id: division (6 digits) + valid org code (the 2006 form); a valid
/// ID-card number (15/18), possibly followed by 2 digits; or, since 2015, the unified
/// social credit code.
pub fn is_taxpayer_id(id: &str) -> bool {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() == 18 && is_uscc(id) {
        return true;
    }
    match chars.len() {
        15 if chars[..6].iter().all(char::is_ascii_digit)
            && is_org_code(&chars[6..].iter().collect::<String>()) =>
        {
            true
        }
        15 | 18 => is_id_card(id),
        17 | 20 => {
            let (head, tail) = chars.split_at(chars.len() - 2);
            tail.iter().all(char::is_ascii_digit) && is_id_card(&head.iter().collect::<String>())
        }
        _ => false,
    }
}

/// The org code a 15-character taxpayer id embeds, if it has that form.
pub fn taxpayer_org_code(id: &str) -> Option<String> {
    let chars: Vec<char> = id.chars().collect();
    (chars.len() == 15 && chars[..6].iter().all(char::is_ascii_digit))
        .then(|| chars[6..].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared vectors: `kind,value,valid` (also run against the SQL functions).
    #[test]
    fn shared_vectors() {
        let text = include_str!("../testdata/identifiers.csv");
        let mut n = 0;
        for line in text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let cols: Vec<&str> = line.split(',').collect();
            let (kind, value, want) = (cols[0], cols[1], cols[2] == "true");
            let got = match kind {
                "org_code" => is_org_code(value),
                "reg_no" => is_reg_no(value),
                "uscc" => is_uscc(value),
                "id_card" => is_id_card(value),
                "taxpayer_id" => is_taxpayer_id(value),
                other => panic!("unknown kind {other}"),
            };
            assert_eq!(got, want, "{kind} {value}");
            n += 1;
        }
        assert!(n > 30);
    }

    #[test]
    fn worked_examples() {
        assert_eq!(org_code_check("71610585"), Some('2'));
        assert_eq!(org_code_check("71526726"), Some('X'));
        assert_eq!(reg_no_check("44030110344866"), Some('9'));
        assert_eq!(uscc_check("91440300708461136"), Some('T'));
        assert_eq!(id_card_check("11010519491231002"), Some('X'));
        assert_eq!(
            id_card_15_to_18("110105491231002").as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(
            taxpayer_org_code("150302769538264").as_deref(),
            Some("769538264")
        );
    }

    #[test]
    fn any_single_change_breaks_an_org_code() {
        let good = "769538264";
        for i in 0..9 {
            for c in "0123456789X".chars() {
                let mut v: Vec<char> = good.chars().collect();
                if v[i] == c {
                    continue;
                }
                v[i] = c;
                let s: String = v.iter().collect();
                assert!(!is_org_code(&s), "{s}");
            }
        }
    }

    #[test]
    fn non_ascii_input_is_invalid_not_a_panic() {
        for s in ["7695382６4", "１５０３０２", "12345678901234中", "乌海", ""] {
            assert!(
                !is_org_code(s)
                    && !is_reg_no(s)
                    && !is_id_card(s)
                    && !is_uscc(s)
                    && !is_taxpayer_id(s)
            );
        }
    }
}
