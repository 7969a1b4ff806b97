//! Date formats as DBAs write them (`YYYYMMDD`, `YYYY-MM-DD HH24:MI:SS`), compiled once and
//! applied to text values.

use chrono::{NaiveDate, NaiveDateTime};

/// A compiled date or date-time format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFormat {
    /// As written in the mapping.
    pub written: String,
    chrono: String,
    has_time: bool,
}

impl DateFormat {
    /// Compiles a format. Tokens: `YYYY`, `MM`, `DD`, `HH24`/`HH`, `MI`, `SS`; anything else
    /// must be punctuation or a space, matched literally.
    pub fn compile(written: &str) -> Result<DateFormat, String> {
        let mut chrono = String::new();
        let mut rest = written;
        let mut seen = Vec::new();
        let tokens = [
            ("YYYY", "%Y"),
            ("HH24", "%H"),
            ("MM", "%m"),
            ("DD", "%d"),
            ("HH", "%H"),
            ("MI", "%M"),
            ("SS", "%S"),
        ];
        'outer: while !rest.is_empty() {
            for (token, spec) in tokens {
                if let Some(after) = rest.strip_prefix(token) {
                    chrono.push_str(spec);
                    seen.push(spec);
                    rest = after;
                    continue 'outer;
                }
            }
            let Some(c) = rest.chars().next() else { break };
            if c.is_alphanumeric() {
                return Err(format!(
                    "unknown date format token at `{rest}` (use YYYY, MM, DD, HH24, MI, SS)"
                ));
            }
            if c == '%' {
                chrono.push_str("%%");
            } else {
                chrono.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
        for needed in ["%Y", "%m", "%d"] {
            if !seen.contains(&needed) {
                return Err(format!("date format `{written}` needs YYYY, MM and DD"));
            }
        }
        let has_time = seen.iter().any(|s| *s == "%H" || *s == "%M" || *s == "%S");
        Ok(DateFormat {
            written: written.to_owned(),
            chrono,
            has_time,
        })
    }

    /// Parses text in this format to a date-time (midnight for date-only formats).
    /// Strict: the text must be exactly as the format writes it (`2006031` does not fit
    /// `YYYYMMDD`).
    pub fn parse(&self, text: &str) -> Option<NaiveDateTime> {
        let parsed = if self.has_time {
            NaiveDateTime::parse_from_str(text, &self.chrono).ok()
        } else {
            NaiveDate::parse_from_str(text, &self.chrono)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        }?;
        (parsed.format(&self.chrono).to_string() == text).then_some(parsed)
    }

    /// True when the format carries a time of day.
    pub fn has_time(&self) -> bool {
        self.has_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, day)
            .and_then(|x| x.and_hms_opt(0, 0, 0))
            .expect("date")
    }

    #[test]
    fn compact_and_punctuated_dates() {
        let f = DateFormat::compile("YYYYMMDD").expect("ok");
        assert_eq!(f.parse("20060301"), Some(d(2006, 3, 1)));
        assert_eq!(f.parse("20060230"), None);
        assert_eq!(f.parse("2006031"), None);
        let g = DateFormat::compile("YYYY/MM/DD").expect("ok");
        assert_eq!(g.parse("2006/03/01"), Some(d(2006, 3, 1)));
        assert_eq!(g.parse("2006-03-01"), None);
    }

    #[test]
    fn date_times() {
        let f = DateFormat::compile("YYYY-MM-DD HH24:MI:SS").expect("ok");
        assert!(f.has_time());
        let t = f.parse("2006-03-01 13:45:10").expect("parses");
        assert_eq!(t.format("%H:%M:%S").to_string(), "13:45:10");
    }

    #[test]
    fn bad_formats_are_explained() {
        assert!(
            DateFormat::compile("YYYYMM")
                .expect_err("no day")
                .contains("needs YYYY, MM and DD")
        );
        assert!(
            DateFormat::compile("YYYYMMDQ")
                .expect_err("bad")
                .contains("unknown date format token")
        );
    }
}
