//! `ebis status`: per source — mode, state, position, newest change, lag, rows applied,
//! open quarantine, open gaps, last error — read from the warehouse, so it works from any
//! machine that can reach it.

use crate::warehouse::{Warehouse, WarehouseError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One source's state.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// Source name.
    pub source: String,
    /// Bureau code.
    pub bureau: String,
    /// Capture mode.
    pub mode: String,
    /// starting / snapshotting / streaming / retrying / failed / stopped.
    pub state: String,
    /// Checkpoint summary.
    pub position: Option<String>,
    /// Newest source change applied.
    pub last_change_at: Option<DateTime<Utc>>,
    /// Seconds since "complete up to".
    pub lag_seconds: Option<f64>,
    /// Rows applied since the source was first run.
    pub rows_applied: i64,
    /// Rejected rows not yet resolved.
    pub quarantined_open: i64,
    /// Open changelog gaps.
    pub open_gaps: i32,
    /// Expired changelog gaps still watched for late commits.
    pub expired_gaps: i32,
    /// Changes that arrived late: committed after their gap expired, or (timestamp mode)
    /// found by a key scan below the mark.
    pub late_changes: i64,
    /// Rows dated ahead of the source's clock (timestamp capture).
    pub future_rows: i32,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Last poll.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Change-table rows ebis has purged at the source (changelog with `purge_every`).
    pub changes_purged: i64,
    /// When it last purged.
    pub last_purge_at: Option<DateTime<Utc>>,
    /// How often its stored position expired and it was snapshotted again.
    pub resnapshots: i32,
    /// When that last happened.
    pub last_resnapshot_at: Option<DateTime<Utc>>,
    /// Why (no values).
    pub last_resnapshot_reason: Option<String>,
    /// Bytes the source keeps for ebis (a logical slot's retained WAL), when last read.
    pub backlog_bytes: Option<i64>,
}

impl Warehouse {
    /// Every source's state.
    pub async fn status(&self) -> Result<Vec<SourceStatus>, WarehouseError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "select s.source, s.bureau, s.mode, s.state, c.position_summary, s.last_change_at,
                        extract(epoch from now() - s.complete_up_to)::float8, s.rows_applied,
                        (select count(*) from ebis.quarantine q where q.source = s.source and q.resolved_at is null),
                        s.open_gaps, s.last_error, s.last_error_at, s.last_poll_at,
                        s.changes_purged, s.last_purge_at, s.expired_gaps, s.late_changes,
                        s.future_rows, s.resnapshots, s.last_resnapshot_at, s.last_resnapshot_reason,
                        s.source_backlog_bytes
                 from ebis.source_status s left join ebis.checkpoint c using (source)
                 order by s.source",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SourceStatus {
                source: r.get(0),
                bureau: r.get(1),
                mode: r.get(2),
                state: r.get(3),
                position: r.get(4),
                last_change_at: r.get(5),
                lag_seconds: r.get(6),
                rows_applied: r.get(7),
                quarantined_open: r.get(8),
                open_gaps: r.get(9),
                last_error: r.get(10),
                last_error_at: r.get(11),
                last_poll_at: r.get(12),
                changes_purged: r.get(13),
                last_purge_at: r.get(14),
                expired_gaps: r.get(15),
                late_changes: r.get(16),
                future_rows: r.get(17),
                resnapshots: r.get(18),
                last_resnapshot_at: r.get(19),
                last_resnapshot_reason: r.get(20),
                backlog_bytes: r.get(21),
            })
            .collect())
    }
}

/// A size as people read it (binary units).
pub fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A lag as people read it.
pub fn human_seconds(s: f64) -> String {
    if s < 0.0 {
        return "0s".to_owned();
    }
    let s = s.round() as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=5999 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The enterprise base's line: how much it has still to take in, and since when.
pub fn render_base(b: &crate::warehouse::BaseStatus, now: chrono::DateTime<chrono::Utc>) -> String {
    let line = render_queue(b, now);
    if b.parked > 0 {
        format!(
            "{line}; {} statement(s) parked: the base refused them, their records are missing from it (see core.pending_parked)",
            b.parked
        )
    } else {
        line
    }
}

fn render_queue(b: &crate::warehouse::BaseStatus, now: chrono::DateTime<chrono::Utc>) -> String {
    match b.oldest {
        Some(oldest) if b.queued > 0 => format!(
            "enterprise base: {} statement(s) queued, the oldest {} ago (the comparison trusts each source only as far as the base has taken it in)",
            b.queued,
            human_seconds((now - oldest).num_milliseconds() as f64 / 1000.0)
        ),
        _ => match b.drained_at {
            Some(at) => format!(
                "enterprise base: up to date (last drained {})",
                at.format("%Y-%m-%d %H:%M:%S")
            ),
            None => "enterprise base: not built yet".to_owned(),
        },
    }
}

/// The status as a text table.
pub fn render(rows: &[SourceStatus]) -> String {
    let header = [
        "SOURCE",
        "BUREAU",
        "MODE",
        "STATE",
        "POSITION",
        "LAST CHANGE",
        "LAG",
        "APPLIED",
        "QUARANTINE",
        "GAPS",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in rows {
        table.push(vec![
            r.source.clone(),
            r.bureau.clone(),
            r.mode.clone(),
            r.state.clone(),
            r.position.clone().unwrap_or_else(|| "-".to_owned()),
            r.last_change_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".to_owned()),
            r.lag_seconds
                .map(human_seconds)
                .unwrap_or_else(|| "-".to_owned()),
            r.rows_applied.to_string(),
            r.quarantined_open.to_string(),
            r.open_gaps.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for r in rows.iter() {
        if let Some(bytes) = r.backlog_bytes {
            out.push_str(&format!(
                "{}: the replication slot keeps {} of WAL on the source for ebis (it grows while ebis is stopped or failing)\n",
                r.source,
                human_bytes(bytes)
            ));
        }
    }
    for r in rows.iter() {
        if let Some(at) = r.last_purge_at {
            out.push_str(&format!(
                "{}: {} change-table rows purged, last at {}\n",
                r.source,
                r.changes_purged,
                at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
    for r in rows.iter() {
        if r.future_rows > 0 {
            out.push_str(&format!(
                "{}: {} row(s) dated ahead of the source's clock: captured by key comparison (capture.key_scan_every) until the clock reaches them\n",
                r.source, r.future_rows
            ));
        }
        if r.mode == "timestamp" && r.late_changes > 0 {
            out.push_str(&format!(
                "{}: {} row(s) found by key comparison that the timestamp mark had passed by (modified times set behind it)\n",
                r.source, r.late_changes
            ));
        } else if r.expired_gaps > 0 || r.late_changes > 0 {
            out.push_str(&format!(
                "{}: {} expired gap(s) watched for late commits; {} change(s) arrived late so far (see ebis.gap_log)\n",
                r.source, r.expired_gaps, r.late_changes
            ));
        }
    }
    for r in rows.iter() {
        if let Some(at) = r.last_resnapshot_at {
            out.push_str(&format!(
                "{}: its stored position expired at {} ({}): snapshotted again from a new head, rows deleted meanwhile found by key comparison ({} time(s) so far)\n",
                r.source,
                at.format("%Y-%m-%d %H:%M:%S"),
                r.last_resnapshot_reason.as_deref().unwrap_or("no reason recorded"),
                r.resnapshots
            ));
        }
    }
    for r in rows.iter().filter(|r| r.last_error.is_some()) {
        out.push_str(&format!(
            "{}: last error{}: {}\n",
            r.source,
            r.last_error_at
                .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M:%S")))
                .unwrap_or_default(),
            r.last_error.as_deref().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_read_naturally() {
        assert_eq!(human_seconds(0.4), "0s");
        assert_eq!(human_seconds(42.0), "42s");
        assert_eq!(human_seconds(125.0), "2m05s");
        assert_eq!(human_seconds(7322.0), "2h02m");
    }
}
