//! One source's loop: lock, check, snapshot (resumable), then stream; back off and retry
//! on retryable errors, stop this source alone on fatal ones. A checkpoint only ever moves
//! in the transaction that applies the changes it covers.

use super::connector::{AnySource, plans};
use super::mapper::map_changes;
use super::snapshot::{SnapshotProgress, read_chunk};
use super::{PipelineError, Shutdown};
use crate::config::{CaptureMode, PipelineConfig, SourceConfig};
use crate::mapping::MappingSet;
use crate::warehouse::{ApplyBatch, Checkpoint, SourceLock, SourceMeta, StatusUpdate, Warehouse};
use chrono::{DateTime, Utc};
use ebis_source::{Batch, GapFate, MarkValue, Position, TablePlan, Value};

/// A count for a status column.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Settings shared by all sources.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Wait between polls once caught up.
    pub poll_interval: Duration,
    /// Changes per batch.
    pub batch_size: usize,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl RunSettings {
    /// From the config.
    pub fn from_config(c: &PipelineConfig) -> Self {
        RunSettings {
            poll_interval: c.poll_interval,
            batch_size: c.batch_size,
            max_backoff: Duration::from_secs(30),
        }
    }
}

enum Step {
    /// More work is waiting.
    Busy,
    /// Caught up: wait a poll interval.
    Idle,
}

struct Runner {
    cfg: SourceConfig,
    mappings: MappingSet,
    plans: Vec<TablePlan>,
    wh: Warehouse,
    settings: RunSettings,
    source: AnySource,
    lock: Option<SourceLock>,
    checked: bool,
    position: Position,
    snapshot: Option<SnapshotProgress>,
    last_complete: Option<DateTime<Utc>>,
    /// When the change table was last purged, and whether that failed.
    last_purge: Option<(Instant, bool)>,
    /// The tables, and record kinds of each, capture covers.
    captured: Captured,
    /// While tables added to a streaming source are snapshotted: whether the next step
    /// reads a snapshot chunk (else a stream batch).
    chunk_next: bool,
}

/// Source table → the record kinds capture covers from it.
type Captured = BTreeMap<String, Vec<String>>;

/// What the mappings read now: table → record kinds.
fn mapped(mappings: &MappingSet) -> Captured {
    let mut out = Captured::new();
    for m in &mappings.mappings {
        let kinds = out.entry(m.table.clone()).or_default();
        if !kinds.iter().any(|k| k == m.kind.name) {
            kinds.push(m.kind.name.to_owned());
            kinds.sort();
        }
    }
    out
}

/// Runs every enabled source until shutdown; returns the sources that stopped on a fatal
/// error with their errors.
pub async fn run_sources(
    config: &PipelineConfig,
    wh: &Warehouse,
    shutdown: Shutdown,
) -> Result<Vec<(String, PipelineError)>, PipelineError> {
    wh.register_sources(&config.sources).await?;
    let settings = RunSettings::from_config(config);
    let mut tasks = Vec::new();
    for cfg in config.sources.iter().filter(|s| s.enabled).cloned() {
        let mappings = MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau))
            .map_err(|d| PipelineError::Setup(d.to_string()))?;
        let wh = wh.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        let name = cfg.name.clone();
        tasks.push((
            name,
            tokio::spawn(async move { run_source(cfg, mappings, wh, settings, shutdown).await }),
        ));
    }
    let mut failed = Vec::new();
    for (name, task) in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push((name, e)),
            Err(join) => failed.push((
                name,
                PipelineError::Setup(format!("task ended abnormally: {join}")),
            )),
        }
    }
    Ok(failed)
}

/// Runs one source until shutdown (Ok) or a fatal error.
pub async fn run_source(
    cfg: SourceConfig,
    mappings: MappingSet,
    wh: Warehouse,
    settings: RunSettings,
    mut shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let plans = plans(&cfg, &mappings);
    let source = AnySource::open(&cfg, plans.clone())?;
    let mut r = Runner {
        cfg,
        mappings,
        plans,
        wh,
        settings,
        source,
        lock: None,
        checked: false,
        position: Position::Initial,
        snapshot: None,
        last_complete: None,
        last_purge: None,
        captured: Captured::new(),
        chunk_next: true,
    };
    let mut backoff = Duration::from_millis(500);
    let mut recovering = false;
    let result = loop {
        if shutdown.requested() {
            break Ok(());
        }
        match r.step().await {
            Ok(step) => {
                if recovering {
                    tracing::info!(source = %r.cfg.name, "recovered");
                    let _ = r.wh.clear_error(&r.cfg.name).await;
                    recovering = false;
                }
                backoff = Duration::from_millis(500);
                if matches!(step, Step::Idle) && shutdown.sleep(r.settings.poll_interval).await {
                    break Ok(());
                }
            }
            Err(PipelineError::Stopped) => break Ok(()),
            Err(e) if e.is_retryable() => {
                tracing::warn!(source = %r.cfg.name, error = %e, retry_in = ?backoff, "retrying");
                let _ =
                    r.wh.set_state(&r.cfg.name, "retrying", Some(&e.to_string()))
                        .await;
                recovering = true;
                r.checked = false;
                if shutdown.sleep(backoff).await {
                    break Ok(());
                }
                backoff = (backoff * 2).min(r.settings.max_backoff);
            }
            Err(e) => {
                tracing::error!(source = %r.cfg.name, error = %e, "source stopped");
                let _ =
                    r.wh.set_state(&r.cfg.name, "failed", Some(&e.to_string()))
                        .await;
                break Err(e);
            }
        }
    };
    if result.is_ok() {
        let _ = r.wh.set_state(&r.cfg.name, "stopped", None).await;
    }
    r.source.close().await;
    result
}

impl Runner {
    fn meta(&self) -> SourceMeta<'_> {
        SourceMeta {
            name: &self.cfg.name,
            bureau: self.cfg.bureau.code(),
        }
    }

    async fn step(&mut self) -> Result<Step, PipelineError> {
        if !self.lock.as_ref().is_some_and(SourceLock::is_held) {
            self.lock = None;
            match self.wh.lock_source(&self.cfg.name).await? {
                Some(l) => self.lock = Some(l),
                None => {
                    return Err(PipelineError::Setup(format!(
                        "source {} is already being captured by another ebis process",
                        self.cfg.name
                    )));
                }
            }
            self.checked = false;
        }
        if !self.checked {
            self.wh.set_state(&self.cfg.name, "starting", None).await?;
            self.source.check().await?;
            self.load_checkpoint().await?;
            self.checked = true;
        }
        match &self.snapshot {
            _ if matches!(self.position, Position::Initial) => self.snapshot_step().await,
            Some(p) if !p.added => self.snapshot_step().await,
            // Tables added to a streaming source: a chunk, then a batch, in turn.
            Some(_) => {
                self.chunk_next = !self.chunk_next;
                if self.chunk_next {
                    self.stream_step().await?;
                } else {
                    self.snapshot_step().await?;
                }
                Ok(Step::Busy)
            }
            None => self.stream_step().await,
        }
    }

    /// The checkpoint to store with a batch: `position`, the snapshot in progress, and
    /// what capture covers.
    fn checkpoint(&self, position: Position) -> Result<Checkpoint, PipelineError> {
        Ok(Checkpoint {
            position,
            snapshot: self
                .snapshot
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| PipelineError::Setup(e.to_string()))?,
            mode: self.cfg.capture.name().to_owned(),
            captured: self.captured.clone(),
        })
    }

    /// Tables whose mappings capture does not cover yet (a mapping added to a source
    /// already captured): snapshotted while streaming goes on.
    async fn start_added_snapshot(&mut self) -> Result<(), PipelineError> {
        let now = mapped(&self.mappings);
        let added: Vec<String> = self
            .plans
            .iter()
            .map(|p| p.table.clone())
            .filter(|t| {
                let have = self.captured.get(t).cloned().unwrap_or_default();
                now.get(t)
                    .is_some_and(|kinds| kinds.iter().any(|k| !have.contains(k)))
            })
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let head = self.source.head().await?;
        let mut progress = SnapshotProgress::start(head.clone());
        if let (Position::Timestamp { tables, .. }, Position::Timestamp { tables: marks, .. }) =
            (&mut self.position, &head)
        {
            // A new table streams from the head on; its older rows come by the snapshot.
            for t in &added {
                if !tables.contains_key(t)
                    && let Some(m) = marks.get(t)
                {
                    tables.insert(t.clone(), m.clone());
                }
            }
            let clock = self.source.clock().await?;
            progress.version = self.position.next_stamp(clock.utc);
            if let Position::Timestamp { version, .. } = &mut self.position {
                *version = progress.version;
            }
        }
        progress.tables = added;
        progress.added = true;
        tracing::info!(
            source = %self.cfg.name,
            tables = %progress.tables.join(", "),
            "mappings added since the last run: snapshotting their tables while streaming goes on"
        );
        self.snapshot = Some(progress);
        Ok(())
    }

    async fn load_checkpoint(&mut self) -> Result<(), PipelineError> {
        let mode = self.cfg.capture.name();
        let now = mapped(&self.mappings);
        match self.wh.checkpoint(&self.cfg.name).await? {
            None => {
                self.position = Position::Initial;
                self.snapshot = None;
                self.captured = Captured::new();
            }
            Some(cp) => {
                if let Some(stored) = &cp.mode
                    && stored != mode
                {
                    return Err(PipelineError::Setup(format!(
                        "source {} was captured in {stored} mode and is now configured for {mode}: versions of the two modes do not compare; restore the mode, or remove its checkpoint and warehouse rows to capture it anew",
                        self.cfg.name
                    )));
                }
                self.position = cp.position;
                // A timestamp position from before version stamps: stamp on from the
                // newest version stored (then the rows' modified times), never below it.
                if let Position::Timestamp { version, .. } = &mut self.position
                    && *version == 0
                {
                    let kinds: Vec<&str> =
                        self.mappings.mappings.iter().map(|m| m.kind.name).collect();
                    *version = self.wh.max_change_version(&self.cfg.name, &kinds).await?;
                }
                self.snapshot = match cp.snapshot {
                    Some(s) => Some(serde_json::from_value(s).map_err(|e| {
                        PipelineError::Setup(format!(
                            "snapshot progress of {} is unreadable: {e}",
                            self.cfg.name
                        ))
                    })?),
                    None => None,
                };
                // What capture covers, as far as the mappings still ask for it (a mapping
                // removed and added again is snapshotted again). A checkpoint from before
                // this was kept covers the mappings of this run.
                self.captured = match cp.captured {
                    None => now.clone(),
                    Some(had) => had
                        .into_iter()
                        .filter_map(|(t, kinds)| {
                            let still = now.get(&t)?;
                            let kept: Vec<String> =
                                kinds.into_iter().filter(|k| still.contains(k)).collect();
                            (!kept.is_empty()).then_some((t, kept))
                        })
                        .collect(),
                };
                if !matches!(self.position, Position::Initial) && self.snapshot.is_none() {
                    self.start_added_snapshot().await?;
                }
            }
        }
        Ok(())
    }

    /// One step of a snapshot: a chunk of the current table, or the end. A first
    /// snapshot ends by storing the head it started from as the stream's position; one
    /// of tables added to a streaming source leaves the position alone, and compares each
    /// table's keys at its end (rows deleted while it was not covered).
    async fn snapshot_step(&mut self) -> Result<Step, PipelineError> {
        if self.snapshot.is_none() {
            let head = self.source.head().await?;
            tracing::info!(source = %self.cfg.name, head = %head.summary(), "snapshot starts");
            self.snapshot = Some(SnapshotProgress::start(head));
        }
        let Some(mut progress) = self.snapshot.clone() else {
            return Ok(Step::Busy);
        };
        let tables: Vec<String> = if progress.tables.is_empty() {
            self.plans.iter().map(|p| p.table.clone()).collect()
        } else {
            progress.tables.clone()
        };
        if progress.table >= tables.len() {
            let now = mapped(&self.mappings);
            for t in &tables {
                if let Some(kinds) = now.get(t) {
                    self.captured.insert(t.clone(), kinds.clone());
                }
            }
            self.snapshot = None;
            let position = if progress.added {
                self.position.clone()
            } else {
                progress.head.clone()
            };
            let mut batch = ApplyBatch::new();
            batch.checkpoint = Some(self.checkpoint(position.clone())?);
            batch.status = StatusUpdate {
                state: Some("streaming"),
                open_gaps: Some(count(position.open_gaps())),
                expired_gaps: Some(count(position.expired_gaps())),
                ..StatusUpdate::default()
            };
            self.wh
                .apply(self.meta(), &position.summary(), &batch)
                .await?;
            tracing::info!(source = %self.cfg.name, rows = progress.rows, tables = tables.len(), "snapshot complete");
            self.position = position;
            return Ok(Step::Busy);
        }
        let table = tables[progress.table].clone();
        let after: Option<Vec<Value>> = progress
            .after
            .as_ref()
            .map(|k| k.iter().map(Value::from).collect());
        let chunk = read_chunk(
            &mut self.source,
            &self.cfg,
            &self.mappings,
            &table,
            after.as_deref(),
            self.settings.batch_size,
            progress.version,
        )
        .await?;
        progress.rows += chunk.rows as u64;
        let mut batch = chunk.batch;
        if chunk.table_done {
            progress.table += 1;
            progress.after = None;
            if progress.added {
                let scan = super::keyscan::scan_table(
                    &mut self.source,
                    &self.wh,
                    &self.cfg,
                    &self.mappings,
                    super::keyscan::KeyScanSpec {
                        table: &table,
                        version: progress.version,
                        modified_column: None,
                        now_local: None,
                    },
                )
                .await?;
                for (name, (kind, kb)) in scan.batch.kinds {
                    batch
                        .kinds
                        .entry(name)
                        .or_insert_with(|| (kind, Default::default()))
                        .1
                        .deletes
                        .extend(kb.deletes);
                }
            }
        } else {
            progress.after = chunk
                .last_key
                .map(|k| k.iter().map(MarkValue::from).collect());
        }
        self.snapshot = Some(progress);
        batch.checkpoint = Some(self.checkpoint(self.position.clone())?);
        let added = self.snapshot.as_ref().is_some_and(|p| p.added);
        if !added {
            batch.status.state = Some("snapshotting");
        }
        let summary = format!("snapshot of {table}");
        self.wh.apply(self.meta(), &summary, &batch).await?;
        Ok(Step::Busy)
    }

    async fn stream_step(&mut self) -> Result<Step, PipelineError> {
        let read: Batch = self
            .source
            .changes(&self.position, self.settings.batch_size)
            .await?;
        let drained = read.read_at.is_some();
        let mut batch = map_changes(&self.mappings, &self.cfg.division, &read.changes);
        let earliest_gap = match &read.position {
            Position::Changelog { gaps, .. } => gaps.iter().map(|g| g.since).min(),
            _ => None,
        };
        let newest_change = read.changes.iter().filter_map(|c| c.commit_time).max();
        let cut = if drained {
            read.read_at
        } else {
            newest_change.or(self.last_complete)
        };
        let complete = match (cut, earliest_gap) {
            (Some(c), Some(g)) => Some(c.min(g)),
            (c, _) => c,
        };
        self.last_complete = complete.max(self.last_complete);
        batch.gap_events = read.gap_events.clone();
        batch.checkpoint = Some(self.checkpoint(read.position.clone())?);
        let late: i64 = read
            .gap_events
            .iter()
            .filter(|e| e.fate == GapFate::Late)
            .map(|e| e.to - e.from + 1)
            .sum();
        if late > 0 {
            tracing::warn!(
                source = %self.cfg.name,
                changes = late,
                "changes committed after their gap had expired (a transaction longer than capture.gap_timeout); read now"
            );
        }
        batch.status = StatusUpdate {
            state: Some("streaming"),
            complete_up_to: complete,
            last_change_at: newest_change,
            open_gaps: Some(count(read.position.open_gaps())),
            expired_gaps: Some(count(read.position.expired_gaps())),
            late_changes: late,
            future_rows: None,
        };
        let applied = self
            .wh
            .apply(self.meta(), &read.position.summary(), &batch)
            .await?;
        if !read.changes.is_empty() {
            tracing::debug!(
                source = %self.cfg.name,
                changes = read.changes.len(),
                upserted = applied.upserted,
                deleted = applied.deleted,
                quarantined = applied.quarantined,
                "applied"
            );
        }
        self.position = read.position;
        // Due purges run between batches too: a source that never drains must not grow
        // its change table without bound.
        self.purge_if_due().await?;
        if drained {
            self.key_scan_if_due().await?;
            Ok(Step::Idle)
        } else {
            Ok(Step::Busy)
        }
    }

    /// Changelog capture with `purge_every`: deletes the change rows that the position
    /// just stored in the warehouse no longer needs. A source-side failure (most often a
    /// missing DELETE grant) is shown as the source's last error and capture goes on.
    async fn purge_if_due(&mut self) -> Result<(), PipelineError> {
        let CaptureMode::Changelog {
            purge_every: Some(every),
            ..
        } = &self.cfg.capture
        else {
            return Ok(());
        };
        if self.last_purge.is_some_and(|(at, _)| at.elapsed() < *every) {
            return Ok(());
        }
        let failed_before = self.last_purge.is_some_and(|(_, failed)| failed);
        match self.source.purge(&self.position).await {
            Ok(deleted) => {
                self.last_purge = Some((Instant::now(), false));
                self.wh.record_purge(&self.cfg.name, deleted).await?;
                if failed_before {
                    self.wh.clear_error(&self.cfg.name).await?;
                }
                if deleted > 0 {
                    tracing::debug!(source = %self.cfg.name, deleted, "purged the change table");
                }
            }
            Err(e) => {
                self.last_purge = Some((Instant::now(), true));
                let message = format!("purging the change table failed (capture goes on): {e}");
                tracing::warn!(source = %self.cfg.name, error = %e, "purging the change table failed; capture goes on");
                self.wh
                    .set_state(&self.cfg.name, "streaming", Some(&message))
                    .await?;
            }
        }
        Ok(())
    }

    /// Timestamp capture cannot see deletes: compare keys per table on a schedule.
    async fn key_scan_if_due(&mut self) -> Result<(), PipelineError> {
        let CaptureMode::Timestamp { key_scan_every, .. } = &self.cfg.capture else {
            return Ok(());
        };
        let every = chrono::Duration::from_std(*key_scan_every).unwrap_or(chrono::Duration::MAX);
        let Position::Timestamp { tables, .. } = &self.position else {
            return Ok(());
        };
        let now = Utc::now();
        let due = tables
            .iter()
            .find(|(_, m)| m.keys_compared_at.is_none_or(|at| now - at >= every))
            .map(|(t, _)| t.clone());
        let Some(table) = due else {
            return Ok(());
        };
        let modified_column = self
            .plans
            .iter()
            .find(|p| p.table == table)
            .and_then(|p| p.modified_column.clone());
        // One stamp for the whole comparison, newer than every read before it: its
        // tombstones win over those reads, and any later read of a re-created row wins
        // over its tombstone.
        let clock = self.source.clock().await?;
        let version = self.position.next_stamp(clock.utc);
        let scan = super::keyscan::scan_table(
            &mut self.source,
            &self.wh,
            &self.cfg,
            &self.mappings,
            super::keyscan::KeyScanSpec {
                table: &table,
                version,
                modified_column: modified_column.as_deref(),
                now_local: Some(clock.local),
            },
        )
        .await?;
        let mut position = self.position.clone();
        if let Position::Timestamp { tables, version: v } = &mut position {
            *v = version;
            if let Some(mark) = tables.get_mut(&table) {
                mark.keys_compared_at = Some(now);
                mark.future_rows = scan.future_rows as u64;
            }
        }
        if scan.future_rows > 0 {
            tracing::warn!(
                source = %self.cfg.name,
                table,
                rows = scan.future_rows,
                "rows are dated ahead of the source's clock: captured by key comparison until the clock reaches them"
            );
        }
        let mut batch = scan.batch;
        batch.checkpoint = Some(self.checkpoint(position.clone())?);
        batch.status = StatusUpdate {
            late_changes: i64::try_from(scan.late_rows).unwrap_or(i64::MAX),
            future_rows: Some(count(
                usize::try_from(position.future_rows()).unwrap_or(usize::MAX),
            )),
            ..StatusUpdate::default()
        };
        self.wh
            .apply(self.meta(), &position.summary(), &batch)
            .await?;
        self.position = position;
        Ok(())
    }
}
