//! `ebis status`: per source — mode, state, position, newest change, lag, rows applied,
//! open quarantine, open gaps, last error — read from the warehouse, so it works from any
//! machine that can reach it.

use crate::warehouse::{Warehouse, WarehouseError};
use crate::zone::Zone;
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
    /// The last error that has cleared (the source recovered), if any.
    pub cleared_error: Option<String>,
    /// When that error happened.
    pub cleared_error_at: Option<DateTime<Utc>>,
    /// When it cleared.
    pub error_cleared_at: Option<DateTime<Utc>>,
    /// Last poll.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Last batch that applied rows.
    pub last_applied_at: Option<DateTime<Utc>>,
    /// Rows quarantined since the source was first run (resolved or not).
    pub rows_quarantined: i64,
    /// The `ebis run` process capturing it now (an unexpired lease), if any.
    pub held_by: Option<String>,
    /// Its lease's epoch: raised by each take-over.
    pub lease_epoch: Option<i64>,
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
    /// Since when it has been catching up a backlog (reading full batches); set only
    /// while it streams (any other state clears it).
    pub backlog_since: Option<DateTime<Utc>>,
    /// Its snapshot in progress, as the last chunk stored left it; `None` when none runs.
    pub snapshot: Option<SnapshotStatus>,
}

/// A snapshot in progress, as its checkpoint holds it after the last chunk applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotStatus {
    /// Of tables added to a source that streams meanwhile (or of every table, streaming
    /// from a new head); false for a source's first snapshot.
    pub while_streaming: bool,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// Rows read so far, every table.
    pub rows: u64,
    /// The table being read: its place, from 1.
    pub table: usize,
    /// How many tables the snapshot reads (`None` until its first chunk stored them).
    pub tables: Option<usize>,
    /// The table being read.
    pub table_name: Option<String>,
    /// Rows read of it.
    pub table_rows: u64,
    /// The source's estimate of its rows.
    pub table_estimate: Option<u64>,
    /// Rows still to read by the source's estimates (a table read past its estimate
    /// counts none left), when every table has one.
    pub rows_left: Option<u64>,
    /// When a process took it up again after a stop, and the rows read by then (the
    /// rate counts from there).
    pub resumed: Option<crate::pipeline::snapshot::Resumed>,
}

impl SnapshotStatus {
    /// From a checkpoint's stored snapshot progress; `None` for one this version cannot
    /// read.
    pub fn from_stored(stored: serde_json::Value) -> Option<SnapshotStatus> {
        let p: crate::pipeline::snapshot::SnapshotProgress = serde_json::from_value(stored).ok()?;
        let current = p.estimates.get(p.table);
        let rows_left = if p.estimates.is_empty() {
            None
        } else {
            p.estimates
                .iter()
                .enumerate()
                .skip(p.table)
                .try_fold(0u64, |left, (i, e)| {
                    let read = if i == p.table { p.table_rows } else { 0 };
                    Some(left + e.rows?.saturating_sub(read))
                })
        };
        Some(SnapshotStatus {
            while_streaming: p.added,
            started_at: p.started_at,
            rows: p.rows,
            table: p.table + 1,
            tables: (!p.estimates.is_empty()).then_some(p.estimates.len()),
            table_name: current.map(|e| e.table.clone()),
            table_rows: p.table_rows,
            table_estimate: current.and_then(|e| e.rows),
            rows_left,
            resumed: p.resumed,
        })
    }

    /// Rows read per second at `now`: since it began, or since it was last taken up
    /// again (the time it stood still does not count).
    pub fn rate(&self, now: DateTime<Utc>) -> Option<f64> {
        let (from, before) = self
            .resumed
            .map_or((self.started_at, 0), |r| (r.at, r.rows));
        let secs = (now - from).num_milliseconds() as f64 / 1000.0;
        let rows = self.rows.saturating_sub(before);
        (secs > 0.0 && rows > 0).then(|| rows as f64 / secs)
    }

    /// Seconds left at that rate, by the estimates.
    pub fn seconds_left(&self, now: DateTime<Utc>) -> Option<f64> {
        Some(self.rows_left? as f64 / self.rate(now)?)
    }
}

/// A snapshot's line: where it is, how fast it goes and how long it has left.
pub fn render_snapshot(source: &str, s: &SnapshotStatus, now: DateTime<Utc>, zone: Zone) -> String {
    let what = if s.while_streaming {
        "snapshot (streaming goes on)"
    } else {
        "first snapshot"
    };
    let mut line = format!("{source}: {what}");
    if let (Some(n), Some(name)) = (s.tables, &s.table_name) {
        line.push_str(&format!(
            ", table {} of {n} ({name}): {} rows read",
            s.table, s.table_rows
        ));
        if let Some(e) = s.table_estimate {
            line.push_str(&format!(" of about {e}"));
        }
        line.push(';');
    }
    line.push_str(&format!(" {} rows in all", s.rows));
    if let Some(left) = s.rows_left {
        let all = s.rows + left;
        let pct = (s.rows * 100).checked_div(all).unwrap_or(100);
        line.push_str(&format!(" of about {all} ({pct} %)"));
    }
    line.push_str(&format!(" since {}", zone.show(s.started_at)));
    if let Some(rate) = s.rate(now) {
        line.push_str(&format!(", {rate:.0} rows/s"));
        if let Some(r) = s.resumed {
            line.push_str(&format!(" since it resumed at {}", zone.show(r.at)));
        }
    }
    match (s.rows_left, s.seconds_left(now)) {
        (Some(0), _) => line.push_str(", at the source's estimate: ending"),
        (Some(_), Some(left)) => {
            line.push_str(&format!(", about {} left", human_seconds(left)));
        }
        (None, _) => line.push_str(" (no estimate of the rows left)"),
        _ => {}
    }
    line.push('\n');
    line
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
                        s.source_backlog_bytes, s.cleared_error, s.cleared_error_at, s.error_cleared_at,
                        s.last_applied_at, s.rows_quarantined,
                        case when l.expires_at > clock_timestamp() then l.holder end,
                        case when l.epoch > 0 then l.epoch end,
                        s.backlog_since, c.snapshot
                 from ebis.source_status s left join ebis.checkpoint c using (source)
                      left join ebis.lease l using (source)
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
                cleared_error: r.get(22),
                cleared_error_at: r.get(23),
                error_cleared_at: r.get(24),
                last_applied_at: r.get(25),
                rows_quarantined: r.get(26),
                held_by: r.get(27),
                lease_epoch: r.get(28),
                backlog_since: r.get(29),
                snapshot: r
                    .get::<_, Option<serde_json::Value>>(30)
                    .and_then(SnapshotStatus::from_stored),
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
pub fn render_base(
    b: &crate::warehouse::BaseStatus,
    now: chrono::DateTime<chrono::Utc>,
    zone: Zone,
) -> String {
    let mut line = render_queue(b, now, zone);
    // A rebuild; else a drain, once it is long (a drain beside live capture takes
    // milliseconds; one that turned into a rebuild shows as the rebuild).
    let long = |w: &&crate::warehouse::BaseWork| {
        (now - w.started).to_std().unwrap_or_default() >= crate::warehouse::LONG_DRAIN
    };
    let at_work = b
        .rebuild
        .as_ref()
        .map(|w| ("a rebuild", w))
        .or_else(|| b.drain.as_ref().filter(long).map(|w| ("a drain", w)));
    if let Some((what, w)) = at_work {
        line.push_str(&format!(
            "; {what} of the base has been at work for {} (since {}), now {}",
            human_seconds((now - w.started).num_milliseconds() as f64 / 1000.0),
            zone.show(w.started),
            w.doing()
        ));
    }
    if b.waiting_for_loads > 0 {
        line.push_str(&format!(
            "; {} of them wait for their source's first snapshot to end",
            b.waiting_for_loads
        ));
    }
    if b.parked > 0 {
        format!(
            "{line}; {} statement(s) parked: the base refused them, their records are missing from it (see core.pending_parked)",
            b.parked
        )
    } else {
        line
    }
}

fn render_queue(
    b: &crate::warehouse::BaseStatus,
    now: chrono::DateTime<chrono::Utc>,
    zone: Zone,
) -> String {
    match b.oldest {
        Some(oldest) if b.queued > 0 => format!(
            "enterprise base: {} statement(s) queued, the oldest {} ago (the comparison trusts each source only as far as the base has taken it in)",
            b.queued,
            human_seconds((now - oldest).num_milliseconds() as f64 / 1000.0)
        ),
        _ => match b.drained_at {
            Some(at) => format!(
                "enterprise base: up to date (last drained {})",
                zone.show(at)
            ),
            None => "enterprise base: not built yet".to_owned(),
        },
    }
}

/// The status as a text table, times in `zone` (named under the table).
pub fn render(rows: &[SourceStatus], zone: Zone) -> String {
    use crate::table::Align::{Left, Right};
    let header = [
        ("SOURCE", Left),
        ("BUREAU", Left),
        ("MODE", Left),
        ("STATE", Left),
        ("POSITION", Left),
        ("LAST CHANGE", Left),
        ("LAG", Right),
        ("APPLIED", Right),
        ("QUARANTINE", Right),
        ("GAPS", Right),
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.source.clone(),
                r.bureau.clone(),
                r.mode.clone(),
                r.state.clone(),
                r.position.clone().unwrap_or_else(|| "-".to_owned()),
                r.last_change_at
                    .map(|t| zone.show(t))
                    .unwrap_or_else(|| "-".to_owned()),
                r.lag_seconds
                    .map(human_seconds)
                    .unwrap_or_else(|| "-".to_owned()),
                r.rows_applied.to_string(),
                r.quarantined_open.to_string(),
                r.open_gaps.to_string(),
            ]
        })
        .collect();
    let mut out = crate::table::render(&header, &table);
    out.push_str(&format!("(times in {})\n", zone.label(Utc::now())));
    for r in rows.iter() {
        if let Some(holder) = &r.held_by {
            out.push_str(&format!(
                "{}: captured by {holder} (lease epoch {})\n",
                r.source,
                r.lease_epoch.unwrap_or(0)
            ));
        }
    }
    let now = Utc::now();
    for r in rows.iter() {
        if let Some(s) = &r.snapshot {
            out.push_str(&render_snapshot(&r.source, s, now, zone));
        }
    }
    for r in rows.iter() {
        if let Some(since) = r.backlog_since {
            out.push_str(&format!(
                "{}: catching up a backlog since {} (reading full batches; the enterprise base takes it in afterwards, at most a minute behind)\n",
                r.source,
                zone.show(since)
            ));
        }
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
                zone.show(at)
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
                "{}: snapshotted again from a new head at {} ({}); rows deleted meanwhile found by key comparison ({} time(s) so far)\n",
                r.source,
                zone.show(at),
                r.last_resnapshot_reason.as_deref().unwrap_or("no reason recorded"),
                r.resnapshots
            ));
        }
    }
    for r in rows.iter() {
        if let Some(e) = &r.last_error {
            out.push_str(&format!(
                "{}: error{}: {e}\n",
                r.source,
                r.last_error_at
                    .map(|t| format!(" at {}", zone.show(t)))
                    .unwrap_or_default(),
            ));
        } else if let (Some(e), Some(cleared)) = (&r.cleared_error, r.error_cleared_at) {
            out.push_str(&format!(
                "{}: cleared at {}: error{}: {e}\n",
                r.source,
                zone.show(cleared),
                r.cleared_error_at
                    .map(|t| format!(" at {}", zone.show(t)))
                    .unwrap_or_default(),
            ));
        }
    }
    out
}

/// What `ebis status` concludes, worst first: its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Every source that has run is working and within the lag asked for: exit 0.
    Healthy,
    /// A source has failed (it needs an operator): exit 3.
    Failed(Vec<String>),
    /// No source has failed, but some lag more than `--max-lag` (or have never been
    /// complete): exit 4.
    Lagging(Vec<String>),
}

impl Health {
    /// The verdict over `rows`; `max_lag` in seconds when asked.
    pub fn of(rows: &[SourceStatus], max_lag: Option<f64>) -> Health {
        let failed: Vec<String> = rows
            .iter()
            .filter(|r| r.state == "failed")
            .map(|r| r.source.clone())
            .collect();
        if !failed.is_empty() {
            return Health::Failed(failed);
        }
        let Some(max) = max_lag else {
            return Health::Healthy;
        };
        let lagging: Vec<String> = rows
            .iter()
            .filter(|r| r.state != "stopped" || r.lag_seconds.is_some())
            .filter(|r| r.lag_seconds.is_none_or(|l| l > max))
            .map(|r| r.source.clone())
            .collect();
        if lagging.is_empty() {
            Health::Healthy
        } else {
            Health::Lagging(lagging)
        }
    }

    /// The process exit code: 0, 3 or 4. 1 is left to errors (the status could not be
    /// read), 2 to a command line that could not be parsed.
    pub fn code(&self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Failed(_) => 3,
            Health::Lagging(_) => 4,
        }
    }

    /// One line for people, `None` when healthy.
    pub fn line(&self, max_lag: Option<f64>) -> Option<String> {
        match self {
            Health::Healthy => None,
            Health::Failed(s) => Some(format!("failed: {} (exit 3)", s.join(", "))),
            Health::Lagging(s) => Some(format!(
                "lag over {}: {} (exit 4)",
                max_lag.map(human_seconds).unwrap_or_default(),
                s.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, state: &str, lag: Option<f64>) -> SourceStatus {
        SourceStatus {
            source: source.to_owned(),
            bureau: "aic".to_owned(),
            mode: "changelog".to_owned(),
            state: state.to_owned(),
            position: None,
            last_change_at: None,
            lag_seconds: lag,
            rows_applied: 0,
            quarantined_open: 0,
            open_gaps: 0,
            expired_gaps: 0,
            late_changes: 0,
            future_rows: 0,
            last_error: None,
            last_error_at: None,
            cleared_error: None,
            cleared_error_at: None,
            error_cleared_at: None,
            last_poll_at: None,
            last_applied_at: None,
            rows_quarantined: 0,
            held_by: None,
            lease_epoch: None,
            changes_purged: 0,
            last_purge_at: None,
            resnapshots: 0,
            last_resnapshot_at: None,
            last_resnapshot_reason: None,
            backlog_bytes: None,
            backlog_since: None,
            snapshot: None,
        }
    }

    /// A checkpoint's snapshot progress as the runner stores it: `table` (from 0) being
    /// read, `read` of its rows so far, `rows` in all; estimates per table.
    fn stored(table: usize, read: u64, rows: u64, estimates: &[Option<u64>]) -> serde_json::Value {
        let mut p =
            crate::pipeline::snapshot::SnapshotProgress::start(ebis_source::Position::Initial);
        p.started_at = "2026-12-07T10:00:00Z".parse().expect("time");
        p.table = table;
        p.table_rows = read;
        p.rows = rows;
        p.estimates = estimates
            .iter()
            .enumerate()
            .map(|(i, e)| crate::pipeline::snapshot::TableEstimate {
                table: format!("T{i}"),
                rows: *e,
            })
            .collect();
        serde_json::to_value(p).expect("json")
    }

    #[test]
    fn a_snapshot_shows_where_it_is_and_how_long_it_has_left_by_the_sources_estimates() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        // Second of three tables: 30,000 of about 50,000 read, the first (100,000) done.
        let s = SnapshotStatus::from_stored(stored(
            1,
            30_000,
            130_000,
            &[Some(100_000), Some(50_000), Some(20_000)],
        ))
        .expect("readable");
        assert_eq!((s.table, s.tables), (2, Some(3)));
        assert_eq!(s.table_name.as_deref(), Some("T1"));
        assert_eq!(s.rows_left, Some(40_000));
        // 130,000 rows in 100 s: 1,300 rows/s, 40,000 left in about 31 s.
        let now = at("2026-12-07T10:01:40Z");
        assert_eq!(s.rate(now), Some(1300.0));
        let line = render_snapshot("aic_city", &s, now, Zone::default());
        assert!(
            line.starts_with("aic_city: first snapshot, table 2 of 3 (T1): 30000 rows read of about 50000; 130000 rows in all of about 170000 (76 %) since "),
            "{line}"
        );
        assert!(line.ends_with(", 1300 rows/s, about 31s left\n"), "{line}");

        // Stopped, then taken up again at 10:30 with 100,000 rows read: 30,000 more in
        // 100 s, 300 rows/s (not 130,000 over the whole 31 minutes), 133 s left.
        let mut resumed = s.clone();
        resumed.resumed = Some(crate::pipeline::snapshot::Resumed {
            at: at("2026-12-07T10:30:00Z"),
            rows: 100_000,
        });
        let later = at("2026-12-07T10:31:40Z");
        assert_eq!(resumed.rate(later), Some(300.0));
        let utc = Zone::parse("UTC").expect("utc");
        let line = render_snapshot("aic_city", &resumed, later, utc);
        assert!(
            line.ends_with(
                ", 300 rows/s since it resumed at 2026-12-07 10:30:00, about 2m13s left\n"
            ),
            "{line}"
        );
        // Until it has read a row since, no rate and no time left.
        let mut idle = resumed.clone();
        idle.rows = 100_000;
        assert_eq!(idle.rate(later), None);

        // A table read past its estimate (stale statistics) has none left, and a table
        // the source could not estimate leaves the time unknown.
        let past = SnapshotStatus::from_stored(stored(0, 120_000, 120_000, &[Some(100_000)]))
            .expect("readable");
        assert_eq!(past.rows_left, Some(0));
        assert!(
            render_snapshot("a", &past, now, Zone::default())
                .contains("at the source's estimate: ending")
        );
        let unknown =
            SnapshotStatus::from_stored(stored(0, 10, 10, &[None, Some(5)])).expect("readable");
        assert_eq!(unknown.rows_left, None);
        let line = render_snapshot("a", &unknown, now, Zone::default());
        assert!(
            line.contains("table 1 of 2 (T0): 10 rows read; 10 rows in all since"),
            "{line}"
        );
        assert!(
            line.ends_with(" (no estimate of the rows left)\n"),
            "{line}"
        );
    }

    #[test]
    fn a_snapshot_stored_before_estimates_were_kept_still_shows() {
        // A checkpoint an older version wrote: no estimates, no rows of the table.
        let mut old = stored(0, 0, 4_000, &[]);
        let o = old.as_object_mut().expect("object");
        o.remove("estimates");
        o.remove("table_rows");
        let s = SnapshotStatus::from_stored(old).expect("readable");
        assert_eq!((s.rows, s.tables, s.rows_left), (4_000, None, None));
        let line = render_snapshot("a", &s, Utc::now(), Zone::default());
        assert!(
            line.starts_with("a: first snapshot 4000 rows in all since "),
            "{line}"
        );
    }

    #[test]
    fn status_exits_non_zero_on_a_failed_source_or_lag_over_the_limit() {
        let ok = [
            row("a", "streaming", Some(2.0)),
            row("b", "streaming", Some(30.0)),
        ];
        assert_eq!(Health::of(&ok, None), Health::Healthy);
        assert_eq!(Health::of(&ok, Some(60.0)), Health::Healthy);
        let slow = Health::of(&ok, Some(10.0));
        assert_eq!(slow, Health::Lagging(vec!["b".to_owned()]));
        assert_eq!(slow.code(), 4);
        assert_eq!(
            slow.line(Some(10.0)).as_deref(),
            Some("lag over 10s: b (exit 4)")
        );
        // A failed source outranks lag, and is reported without --max-lag.
        let failed = [
            row("a", "failed", Some(500.0)),
            row("b", "streaming", Some(30.0)),
        ];
        assert_eq!(
            Health::of(&failed, None),
            Health::Failed(vec!["a".to_owned()])
        );
        assert_eq!(Health::of(&failed, Some(10.0)).code(), 3);
        // Never complete yet (a first snapshot): over any limit asked for; a stopped
        // source that never ran is not.
        let new = [row("a", "snapshotting", None), row("b", "stopped", None)];
        assert_eq!(
            Health::of(&new, Some(60.0)),
            Health::Lagging(vec!["a".to_owned()])
        );
    }

    #[test]
    fn a_cleared_error_stays_shown_as_cleared() {
        use chrono::TimeZone;
        let zone = Zone::parse("+08:00").expect("an offset");
        let mut r = row("aic_city", "streaming", Some(1.0));
        r.cleared_error = Some("source unreachable: connection refused".to_owned());
        r.cleared_error_at = Some(Utc.with_ymd_and_hms(2026, 12, 3, 1, 0, 0).unwrap());
        r.error_cleared_at = Some(Utc.with_ymd_and_hms(2026, 12, 3, 1, 5, 0).unwrap());
        let shown = render(std::slice::from_ref(&r), zone);
        assert!(
            shown.contains("aic_city: cleared at 2026-12-03 09:05:00: error at 2026-12-03 09:00:00: source unreachable"),
            "{shown}"
        );
        assert!(shown.contains("(times in UTC+08:00)"), "{shown}");
        r.last_error = Some("warehouse unreachable".to_owned());
        let shown = render(std::slice::from_ref(&r), zone);
        assert!(
            shown.contains("aic_city: error: warehouse unreachable"),
            "{shown}"
        );
        assert!(
            !shown.contains("cleared"),
            "the error now in force is shown: {shown}"
        );
    }

    #[test]
    fn a_rebuild_at_work_shows_since_when_and_its_step() {
        use chrono::TimeZone;
        let zone = Zone::parse("+08:00").expect("an offset");
        let rebuild = crate::warehouse::BaseWork::from_application_name(
            "ebis:base-rebuild:1796619702000:index",
        )
        .expect("a rebuild's name");
        assert_eq!(rebuild.kind, crate::warehouse::BaseWorkKind::Rebuild);
        assert_eq!(
            rebuild.started,
            Utc.with_ymd_and_hms(2026, 12, 7, 5, 1, 42).unwrap()
        );
        let b = crate::warehouse::BaseStatus {
            queued: 3,
            oldest: Some(rebuild.started),
            rebuild: Some(rebuild.clone()),
            ..Default::default()
        };
        let line = render_base(&b, rebuild.started + chrono::Duration::seconds(75), zone);
        assert!(
            line.contains("3 statement(s) queued, the oldest 75s ago")
                && line.contains("a rebuild of the base has been at work for 75s (since 2026-12-07 13:01:42), now building the keys and indexes"),
            "{line}"
        );
        // Other backends' names are not work on the base.
        for name in [
            "ebis",
            "ebis:base-rebuild:",
            "ebis:base-rebuild:x:index",
            "ebis:base-drain:1796619702000",
            "psql",
        ] {
            assert_eq!(
                crate::warehouse::BaseWork::from_application_name(name),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn a_long_drain_at_work_shows_what_it_refreshes_and_a_short_one_does_not() {
        let zone = Zone::parse("+08:00").expect("an offset");
        let drain = crate::warehouse::BaseWork::from_application_name(
            "ebis:base-drain:1796619702000:refresh:120000",
        )
        .expect("a drain's name");
        assert_eq!(drain.kind, crate::warehouse::BaseWorkKind::Drain);
        assert_eq!(drain.doing(), "refreshing 120000 enterprises");
        let b = crate::warehouse::BaseStatus {
            queued: 2,
            oldest: Some(drain.started),
            drain: Some(drain.clone()),
            ..Default::default()
        };
        let line = render_base(&b, drain.started + chrono::Duration::seconds(12), zone);
        assert!(
            line.contains("a drain of the base has been at work for 12s (since 2026-12-07 13:01:42), now refreshing 120000 enterprises"),
            "{line}"
        );
        let line = render_base(&b, drain.started + chrono::Duration::seconds(2), zone);
        assert!(!line.contains("at work"), "{line}");
        // A rebuild at work is what the line shows, not the drain that started it.
        let both = crate::warehouse::BaseStatus {
            rebuild: crate::warehouse::BaseWork::from_application_name(
                "ebis:base-rebuild:1796619703000:enterprises",
            ),
            ..b
        };
        let line = render_base(&both, drain.started + chrono::Duration::seconds(12), zone);
        assert!(
            line.contains("a rebuild of the base has been at work for 11s")
                && line.ends_with("now building the enterprises")
                && !line.contains("a drain"),
            "{line}"
        );
    }

    #[test]
    fn lags_read_naturally() {
        assert_eq!(human_seconds(0.4), "0s");
        assert_eq!(human_seconds(42.0), "42s");
        assert_eq!(human_seconds(125.0), "2m05s");
        assert_eq!(human_seconds(7322.0), "2h02m");
    }
}
