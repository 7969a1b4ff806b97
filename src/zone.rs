//! The time zone times are shown in (`time_zone:` in the config): the machine's own by
//! default, or UTC, or a fixed offset such as `+08:00` (China Standard Time, which has
//! no daylight saving). What is stored stays UTC; only what people read is converted.

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, Offset, Utc};

/// Where shown times are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Zone {
    /// The machine's time zone (`/etc/localtime`, or `TZ`).
    #[default]
    Local,
    /// A fixed offset from UTC (`UTC` is `+00:00`).
    Fixed(FixedOffset),
}

impl Zone {
    /// `local`, `UTC`/`Z`, or `+08:00` / `-05:30` / `+8`.
    pub fn parse(text: &str) -> Option<Zone> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("local") {
            return Some(Zone::Local);
        }
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return FixedOffset::east_opt(0).map(Zone::Fixed);
        }
        let t = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("utc"))
            .unwrap_or(t);
        let (sign, rest) = match t.as_bytes().first()? {
            b'+' => (1, &t[1..]),
            b'-' => (-1, &t[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let all_digits =
            |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(h) || !all_digits(m) {
            return None;
        }
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        if h > 14 || m > 59 {
            return None;
        }
        FixedOffset::east_opt(sign * (h * 3600 + m * 60)).map(Zone::Fixed)
    }

    /// `t` as a wall-clock time here: `2026-12-03 16:05:01`.
    pub fn show(self, t: DateTime<Utc>) -> String {
        self.wall(t).format("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// `t` as the wall clock here reads it.
    pub fn wall(self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Local => t.with_timezone(&Local).naive_local(),
            Zone::Fixed(o) => t.with_timezone(&o).naive_local(),
        }
    }

    /// The offset in force at `t`, as people write it: `UTC+08:00`.
    pub fn label(self, t: DateTime<Utc>) -> String {
        let offset = match self {
            Zone::Local => t.with_timezone(&Local).offset().fix(),
            Zone::Fixed(o) => o,
        };
        let s = offset.local_minus_utc();
        let sign = if s < 0 { '-' } else { '+' };
        let s = s.abs();
        format!("UTC{sign}{:02}:{:02}", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn offsets_are_read_as_people_write_them() {
        let east8 = Zone::Fixed(FixedOffset::east_opt(8 * 3600).expect("an offset"));
        assert_eq!(Zone::parse("+08:00"), Some(east8));
        assert_eq!(Zone::parse("UTC+8"), Some(east8));
        assert_eq!(Zone::parse("+8"), Some(east8));
        assert_eq!(
            Zone::parse("-05:30"),
            Some(Zone::Fixed(
                FixedOffset::west_opt(5 * 3600 + 1800).expect("an offset")
            ))
        );
        assert_eq!(
            Zone::parse("utc"),
            Some(Zone::Fixed(FixedOffset::east_opt(0).expect("an offset")))
        );
        assert_eq!(Zone::parse("local"), Some(Zone::Local));
        for bad in ["Asia/Shanghai", "+25:00", "+08:75", "8", "+", "+0800x", ""] {
            assert_eq!(Zone::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_are_shown_in_the_zone() {
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 8, 5, 1).unwrap();
        let east8 = Zone::parse("+08:00").expect("valid");
        assert_eq!(east8.show(t), "2026-12-03 16:05:01");
        assert_eq!(east8.label(t), "UTC+08:00");
        let utc = Zone::parse("UTC").expect("valid");
        assert_eq!(utc.show(t), "2026-12-03 08:05:01");
        assert_eq!(utc.label(t), "UTC+00:00");
        assert_eq!(
            Zone::parse("-05:30").expect("valid").show(t),
            "2026-12-03 02:35:01"
        );
    }
}
