//! Changelog sequence gaps: pure bookkeeping, no I/O.
//!
//! After each read of the change table, the sequence numbers seen decide the new position:
//! numbers skipped below the highest one read become gaps (a transaction still open, or
//! rolled back); gaps that show up later are filled; gaps older than the timeout are given
//! up. Every step is reported as an event so the pipeline can log each gap's fate.

use chrono::{DateTime, Utc};
use ebis_source::{Gap, GapEvent, GapFate};
use std::time::Duration;

/// The outcome of one read.
#[derive(Debug, PartialEq)]
pub struct Advance {
    /// Highest sequence number read so far.
    pub seq: i64,
    /// Gaps still open.
    pub gaps: Vec<Gap>,
    /// What happened to gaps in this read.
    pub events: Vec<GapEvent>,
}

/// Computes the new position from the old one and the (sorted, unique) sequence numbers
/// just read — those above `prev_seq` and those inside old gaps.
pub fn advance(
    prev_seq: i64,
    old_gaps: &[Gap],
    seen: &[i64],
    now: DateTime<Utc>,
    timeout: Duration,
) -> Advance {
    let mut events = Vec::new();
    let mut gaps = Vec::new();
    for g in old_gaps {
        let inside: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|s| *s >= g.from && *s <= g.to)
            .collect();
        for (from, to) in runs(&inside) {
            events.push(GapEvent {
                from,
                to,
                fate: GapFate::Filled,
            });
        }
        for (from, to) in holes(g.from - 1, g.to, &inside) {
            gaps.push(Gap {
                from,
                to,
                since: g.since,
            });
        }
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
    let limit = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    gaps.retain(|g| {
        let expired = now.signed_duration_since(g.since) >= limit;
        if expired {
            events.push(GapEvent {
                from: g.from,
                to: g.to,
                fate: GapFate::Expired,
            });
        }
        !expired
    });
    gaps.sort_by_key(|g| g.from);
    Advance {
        seq: new_max,
        gaps,
        events,
    }
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

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_150_000_000 + secs, 0).expect("time")
    }

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn skipped_numbers_become_gaps() {
        let a = advance(10, &[], &[11, 12, 15, 18], t(0), TIMEOUT);
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
        let a = advance(18, &open, &[15, 19], t(5), TIMEOUT);
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
        let a = advance(10, &open, &[], t(61), TIMEOUT);
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
    }

    #[test]
    fn nothing_read_changes_nothing() {
        let a = advance(42, &[], &[], t(0), TIMEOUT);
        assert_eq!(
            a,
            Advance {
                seq: 42,
                gaps: vec![],
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
        let a = advance(9, &open, &[5, 6], t(1), TIMEOUT);
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
