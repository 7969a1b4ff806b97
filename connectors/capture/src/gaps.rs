//! Changelog sequence gaps: pure bookkeeping, no I/O.
//!
//! After each read of the change table, the sequence numbers seen decide the new position:
//! numbers skipped below the highest one read become gaps (a transaction still open, or
//! rolled back); gaps that show up later are filled. A gap is settled as rolled back as
//! soon as every transaction that could hold it has ended (when the source can tell);
//! otherwise it expires after the timeout — it stops holding lag back — and is watched a
//! while longer, so a transaction that outlived the timeout is still read when it commits
//! (a late fill). Every step is an event, so the pipeline logs each gap's fate.

use chrono::{DateTime, Utc};
use ebis_source::{Gap, GapEvent, GapFate};

/// Most expired gaps watched at once; the oldest are abandoned beyond it.
pub const MAX_WATCHED: usize = 10_000;

pub use ebis_source::GapRules;

/// The outcome of one read.
#[derive(Debug, PartialEq)]
pub struct Advance {
    /// Highest sequence number read so far.
    pub seq: i64,
    /// Gaps still open.
    pub gaps: Vec<Gap>,
    /// Expired gaps still watched.
    pub expired: Vec<Gap>,
    /// What happened to gaps in this read.
    pub events: Vec<GapEvent>,
}

/// Computes the new position from the old one and the (sorted, unique) sequence numbers
/// just read — those above `prev_seq` and those inside old open and expired gaps.
///
/// `now` is the source's clock at the read. `settled_before`, when the source can tell,
/// is an instant such that every transaction that started before it had ended before the
/// read: a gap first seen before it that is still missing was rolled back.
pub fn advance(
    prev_seq: i64,
    old_gaps: &[Gap],
    old_expired: &[Gap],
    seen: &[i64],
    now: DateTime<Utc>,
    rules: GapRules,
    settled_before: Option<DateTime<Utc>>,
) -> Advance {
    let mut events = Vec::new();
    let rolled_back = |g: &Gap| settled_before.is_some_and(|t| g.since < t);
    // Expired gaps: filled late, known dead, abandoned, or watched on.
    let watch = chrono::Duration::from_std(rules.watch).unwrap_or(chrono::Duration::MAX);
    let mut expired = Vec::new();
    for g in old_expired {
        let (filled, rest) = split(g, seen);
        events.extend(filled.into_iter().map(|(from, to)| GapEvent {
            from,
            to,
            fate: GapFate::Late,
        }));
        for r in rest {
            // An expired gap's `since` is when it expired; when it was first seen lies
            // before, so "every transaction older than its expiry has ended" settles it.
            let fate = if rolled_back(&r) {
                Some(GapFate::RolledBack)
            } else if now.signed_duration_since(r.since) >= watch {
                Some(GapFate::Abandoned)
            } else {
                None
            };
            match fate {
                Some(fate) => events.push(GapEvent {
                    from: r.from,
                    to: r.to,
                    fate,
                }),
                None => expired.push(r),
            }
        }
    }
    let mut gaps = Vec::new();
    for g in old_gaps {
        let (filled, rest) = split(g, seen);
        events.extend(filled.into_iter().map(|(from, to)| GapEvent {
            from,
            to,
            fate: GapFate::Filled,
        }));
        gaps.extend(rest);
    }
    let new_max = seen.last().copied().unwrap_or(prev_seq).max(prev_seq);
    let above: Vec<i64> = seen.iter().copied().filter(|s| *s > prev_seq).collect();
    for (from, to) in holes(prev_seq, new_max, &above) {
        events.push(GapEvent {
            from,
            to,
            fate: GapFate::Detected,
        });
        gaps.push(Gap {
            from,
            to,
            since: now,
        });
    }
    let limit = chrono::Duration::from_std(rules.timeout).unwrap_or(chrono::Duration::MAX);
    gaps.retain(|g| {
        if rolled_back(g) {
            events.push(GapEvent {
                from: g.from,
                to: g.to,
                fate: GapFate::RolledBack,
            });
            return false;
        }
        if now.signed_duration_since(g.since) >= limit {
            events.push(GapEvent {
                from: g.from,
                to: g.to,
                fate: GapFate::Expired,
            });
            expired.push(Gap {
                from: g.from,
                to: g.to,
                since: now,
            });
            return false;
        }
        true
    });
    gaps.sort_by_key(|g| g.from);
    expired.sort_by_key(|g| g.from);
    if expired.len() > MAX_WATCHED {
        let mut by_age: Vec<usize> = (0..expired.len()).collect();
        by_age.sort_by_key(|i| expired[*i].since);
        let drop: std::collections::HashSet<usize> = by_age[..expired.len() - MAX_WATCHED]
            .iter()
            .copied()
            .collect();
        let mut i = 0;
        expired.retain(|g| {
            let keep = !drop.contains(&i);
            i += 1;
            if !keep {
                events.push(GapEvent {
                    from: g.from,
                    to: g.to,
                    fate: GapFate::Abandoned,
                });
            }
            keep
        });
    }
    Advance {
        seq: new_max,
        gaps,
        expired,
        events,
    }
}

/// The runs of a gap that were seen, and what is left of it (keeping its `since`).
fn split(g: &Gap, seen: &[i64]) -> (Vec<(i64, i64)>, Vec<Gap>) {
    let inside: Vec<i64> = seen
        .iter()
        .copied()
        .filter(|s| *s >= g.from && *s <= g.to)
        .collect();
    let rest = holes(g.from - 1, g.to, &inside)
        .into_iter()
        .map(|(from, to)| Gap {
            from,
            to,
            since: g.since,
        })
        .collect();
    (runs(&inside), rest)
}

/// Maximal runs of consecutive numbers in a sorted list.
fn runs(sorted: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &s in sorted {
        match out.last_mut() {
            Some((_, to)) if *to + 1 == s => *to = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// The ranges in (after, upto] not covered by the sorted list.
fn holes(after: i64, upto: i64, sorted: &[i64]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = after + 1;
    for &s in sorted {
        if s < next {
            continue;
        }
        if s > next {
            out.push((next, s - 1));
        }
        next = s + 1;
    }
    if next <= upto {
        out.push((next, upto));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_150_000_000 + secs, 0).expect("time")
    }

    const RULES: GapRules = GapRules {
        timeout: Duration::from_secs(60),
        watch: Duration::from_secs(600),
    };

    fn adv(prev: i64, open: &[Gap], seen: &[i64], now: DateTime<Utc>) -> Advance {
        advance(prev, open, &[], seen, now, RULES, None)
    }

    #[test]
    fn skipped_numbers_become_gaps() {
        let a = adv(10, &[], &[11, 12, 15, 18], t(0));
        assert_eq!(a.seq, 18);
        let ranges: Vec<_> = a.gaps.iter().map(|g| (g.from, g.to)).collect();
        assert_eq!(ranges, [(13, 14), (16, 17)]);
        assert!(a.events.iter().all(|e| e.fate == GapFate::Detected));
        assert_eq!(a.events.len(), 2);
    }

    #[test]
    fn late_commits_fill_gaps_and_split_them() {
        let open = vec![Gap {
            from: 13,
            to: 17,
            since: t(0),
        }];
        let a = adv(18, &open, &[15, 19], t(5));
        assert_eq!(a.seq, 19);
        let ranges: Vec<_> = a.gaps.iter().map(|g| (g.from, g.to, g.since)).collect();
        assert_eq!(ranges, [(13, 14, t(0)), (16, 17, t(0))]);
        assert_eq!(
            a.events,
            [GapEvent {
                from: 15,
                to: 15,
                fate: GapFate::Filled
            }]
        );
    }

    #[test]
    fn old_gaps_expire() {
        let open = vec![
            Gap {
                from: 3,
                to: 3,
                since: t(0),
            },
            Gap {
                from: 7,
                to: 8,
                since: t(50),
            },
        ];
        let a = adv(10, &open, &[], t(61));
        assert_eq!(a.seq, 10);
        assert_eq!(
            a.gaps,
            [Gap {
                from: 7,
                to: 8,
                since: t(50)
            }]
        );
        assert_eq!(
            a.events,
            [GapEvent {
                from: 3,
                to: 3,
                fate: GapFate::Expired
            }]
        );
        assert_eq!(
            a.expired,
            [Gap {
                from: 3,
                to: 3,
                since: t(61)
            }],
            "an expired gap is watched from when it expired"
        );
    }

    #[test]
    fn an_expired_gap_that_commits_late_is_read_and_logged_late() {
        let watched = vec![Gap {
            from: 3,
            to: 5,
            since: t(61),
        }];
        let a = advance(10, &[], &watched, &[4, 11], t(70), RULES, None);
        assert_eq!(a.seq, 11);
        assert_eq!(
            a.events,
            [GapEvent {
                from: 4,
                to: 4,
                fate: GapFate::Late
            }]
        );
        let left: Vec<_> = a.expired.iter().map(|g| (g.from, g.to)).collect();
        assert_eq!(left, [(3, 3), (5, 5)]);
        // Watched for `watch`, then abandoned.
        let a = advance(11, &[], &a.expired, &[], t(61 + 600), RULES, None);
        assert!(a.expired.is_empty());
        assert!(a.events.iter().all(|e| e.fate == GapFate::Abandoned));
    }

    #[test]
    fn gaps_settle_as_rolled_back_once_every_older_transaction_ended() {
        let open = vec![Gap {
            from: 7,
            to: 8,
            since: t(10),
        }];
        // A transaction older than the gap is still open: keep waiting.
        let a = advance(9, &open, &[], &[], t(12), RULES, Some(t(5)));
        assert_eq!(a.gaps.len(), 1);
        assert!(a.events.is_empty());
        // None is: the numbers were rolled back, at once, without waiting for the timeout.
        let a = advance(9, &open, &[], &[], t(12), RULES, Some(t(11)));
        assert!(a.gaps.is_empty() && a.expired.is_empty());
        assert_eq!(
            a.events,
            [GapEvent {
                from: 7,
                to: 8,
                fate: GapFate::RolledBack
            }]
        );
        // A gap detected in the same read is not settled by an older instant.
        let a = advance(9, &[], &[], &[11], t(12), RULES, Some(t(11)));
        assert_eq!(a.gaps.len(), 1, "{a:?}");
    }

    #[test]
    fn nothing_read_changes_nothing() {
        let a = adv(42, &[], &[], t(0));
        assert_eq!(
            a,
            Advance {
                seq: 42,
                gaps: vec![],
                expired: vec![],
                events: vec![]
            }
        );
    }

    #[test]
    fn a_whole_gap_filled_disappears() {
        let open = vec![Gap {
            from: 5,
            to: 6,
            since: t(0),
        }];
        let a = adv(9, &open, &[5, 6], t(1));
        assert!(a.gaps.is_empty());
        assert_eq!(
            a.events,
            [GapEvent {
                from: 5,
                to: 6,
                fate: GapFate::Filled
            }]
        );
    }
}
