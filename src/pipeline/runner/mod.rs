//! One source's loop: lock, check, snapshot (resumable), then stream; back off and retry
//! on retryable errors, stop this source alone on fatal ones. A checkpoint only ever moves
//! in the transaction that applies the changes it covers. Snapshots (the first, and those
//! of tables whose mappings were added) are in `snapshots`; what runs between batches
//! (purges, key comparisons) in `upkeep`.

mod snapshots;
mod upkeep;

use super::connector::{AnySource, plans};
use super::mapper::map_changes;
use super::snapshot::SnapshotProgress;
use super::{PipelineError, Shutdown};
use crate::config::{PipelineConfig, SourceConfig};
use crate::mapping::MappingSet;
use crate::warehouse::{
    ApplyBatch, Checkpoint, LeaseKeeper, SourceMeta, StatusUpdate, Warehouse, WarehouseError,
};
use chrono::{DateTime, Utc};
use ebis_source::{Batch, GapFate, Position, Source, SourceError, TablePlan};
use snapshots::{Captured, mapped};

/// A count for a status column.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
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
    /// How long a source's lease lasts unless renewed (renewed every fifth of it; a
    /// standby takes the source over this long after its holder died).
    pub lease_ttl: Duration,
}

impl RunSettings {
    /// From the config.
    pub fn from_config(c: &PipelineConfig) -> Self {
        RunSettings {
            poll_interval: c.poll_interval,
            batch_size: c.batch_size,
            max_backoff: Duration::from_secs(30),
            lease_ttl: c.lease_ttl,
        }
    }
}

enum Step {
    /// More work is waiting.
    Busy,
    /// Caught up after applying changes: more may follow at once (poll again soon).
    Drained,
    /// Caught up, nothing new: wait (longer after each empty poll).
    Idle,
    /// Another process holds the source's lease: try to take it again shortly.
    Standby,
}

struct Runner {
    cfg: SourceConfig,
    mappings: MappingSet,
    plans: Vec<TablePlan>,
    wh: Warehouse,
    settings: RunSettings,
    source: AnySource,
    lease: Option<LeaseKeeper>,
    /// Whether this runner has said it stands by (said once per stretch).
    standing_by: bool,
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
    /// Added to every version the source reads (see [`Checkpoint::version_base`]).
    version_base: i64,
    /// The stored position cannot be resumed from, for this reason: re-snapshot first.
    expired: Option<String>,
    /// The snapshot chunk read while the one before it applied.
    prefetched: Option<snapshots::Prefetched>,
    /// Changes read and mapped while the batch before them applied, with the position
    /// they were read from: used only if the stream is still there.
    read_ahead: Option<(Position, (Batch, ApplyBatch))>,
    /// The last stream batch applied was a backlog's (a full read): the batch that
    /// drains it wakes the base's drainer, which waited for the catch-up.
    catching_up: bool,
    /// Batches and snapshot chunks applied by this run (a log field).
    batches: u64,
    /// A digest of the password the source was opened with: a rotated one (a
    /// `password_file` rewritten) reopens the source at the next error.
    password_seen: Option<[u8; 32]>,
    /// Whether the first snapshot of this table (its name) copies rows straight in.
    fresh: Option<(String, bool)>,
    /// The average raw row of the last batch or chunk mapped, bytes: what bounds the rows
    /// the next read takes ([`read_rows`]). `None` until one was mapped.
    row_bytes: Option<usize>,
}

/// How long a caught-up source waits before it polls again: briefly right after it
/// found changes (a burst goes on, and a commit is seen within tens of milliseconds),
/// twice as long after each empty poll, up to `poll_interval` (an idle source is polled
/// at that pace, never hammered). A source starts idle: only changes make it quick.
#[derive(Clone, Copy, Debug)]
pub struct IdleWait {
    next: Duration,
    max: Duration,
}

impl IdleWait {
    /// The shortest wait, right after changes were found.
    pub const MIN: Duration = Duration::from_millis(10);

    /// Waits of an idle source (`max` each) until changes are found.
    pub fn new(max: Duration) -> IdleWait {
        IdleWait { next: max, max }
    }

    /// The wait after an empty poll (each one twice the last, up to the cap).
    pub fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Changes were found: the next empty poll waits the shortest again.
    pub fn reset(&mut self) {
        self.next = IdleWait::MIN.min(self.max);
    }
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
    // The enterprise base keeps up in the background: until shutdown, or until every
    // source has stopped.
    let (sources_done, done) = tokio::sync::oneshot::channel::<()>();
    let drainer = {
        let drain = super::drain_base(wh.clone(), shutdown.clone(), settings.poll_interval);
        tokio::spawn(async move {
            tokio::select! {
                () = drain => {}
                _ = done => {}
            }
        })
    };
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
    let _ = sources_done.send(());
    let _ = drainer.await;
    Ok(failed)
}

/// A digest of the source's password as it reads now (`None`: none, or unreadable).
fn password_fingerprint(cfg: &SourceConfig) -> Option<[u8; 32]> {
    cfg.connection
        .password()
        .ok()
        .flatten()
        .map(|p| p.fingerprint())
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
    let password_seen = password_fingerprint(&cfg);
    let mut r = Runner {
        password_seen,
        cfg,
        mappings,
        plans,
        wh,
        settings,
        source,
        lease: None,
        standing_by: false,
        checked: false,
        position: Position::Initial,
        snapshot: None,
        last_complete: None,
        last_purge: None,
        captured: Captured::new(),
        chunk_next: true,
        version_base: 0,
        expired: None,
        prefetched: None,
        read_ahead: None,
        catching_up: false,
        batches: 0,
        fresh: None,
        row_bytes: None,
    };
    let mut backoff = Duration::from_millis(500);
    let mut recovering = false;
    let mut idle = IdleWait::new(r.settings.poll_interval);
    let result = loop {
        if shutdown.requested() {
            break Ok(());
        }
        match r.step().await {
            Ok(step) => {
                if recovering && r.holds_lease() {
                    tracing::info!(source = %r.cfg.name, "recovered");
                    let _ = r.wh.clear_error(&r.cfg.name).await;
                    recovering = false;
                }
                backoff = Duration::from_millis(500);
                let wait = match step {
                    Step::Busy => None,
                    Step::Drained => {
                        idle.reset();
                        Some(idle.next())
                    }
                    Step::Idle => Some(idle.next()),
                    Step::Standby => Some(r.settings.lease_ttl / 5),
                };
                if let Some(wait) = wait
                    && shutdown.sleep(wait).await
                {
                    break Ok(());
                }
            }
            Err(PipelineError::Stopped) => break Ok(()),
            // Another process took the source over (this one's lease expired): nothing
            // was written; stand by, leaving the source's status to its new holder.
            Err(PipelineError::Warehouse(WarehouseError::LeaseLost(_))) => {
                tracing::warn!(source = %r.cfg.name, "this process's lease of the source was lost: it stops writing and stands by");
                r.drop_lease();
                if shutdown.sleep(r.settings.lease_ttl / 5).await {
                    break Ok(());
                }
            }
            // A rotated password reopens the source with the new one (and so makes a
            // refused login retried even where the connector would not retry it).
            Err(e) if r.password_rotated().await | e.is_retryable() => {
                tracing::warn!(source = %r.cfg.name, error = %e, retry_in = ?backoff, "retrying");
                crate::metrics::record_error(&r.cfg.name, e.kind(), true);
                // The source's status is its holder's to write: a standby's own errors
                // (the warehouse away while it waits) are only logged.
                if !r.standing_by {
                    let _ =
                        r.wh.set_state(&r.cfg.name, "retrying", Some(&e.to_string()))
                            .await;
                }
                recovering = true;
                r.checked = false;
                if shutdown.sleep(backoff).await {
                    break Ok(());
                }
                backoff = (backoff * 2).min(r.settings.max_backoff);
            }
            Err(e) => {
                tracing::error!(source = %r.cfg.name, error = %e, "source stopped");
                crate::metrics::record_error(&r.cfg.name, e.kind(), false);
                if !r.standing_by {
                    let _ =
                        r.wh.set_state(&r.cfg.name, "failed", Some(&e.to_string()))
                            .await;
                }
                break Err(e);
            }
        }
    };
    if result.is_ok() && r.holds_lease() {
        r.last_poll().await;
        let _ = r.wh.set_state(&r.cfg.name, "stopped", None).await;
    }
    // A clean stop hands the source to a standby at once.
    if let Some(held) = r.lease.take() {
        r.wh.unfence(&r.cfg.name);
        if result.is_ok() {
            let _ = r.wh.release_lease(held.lease()).await;
        }
    }
    r.source.close().await;
    result
}

impl Runner {
    /// Rows the next read takes (see [`read_rows`]).
    fn read_rows(&self) -> usize {
        read_rows(self.settings.batch_size, self.row_bytes)
    }

    fn meta(&self) -> SourceMeta<'_> {
        SourceMeta {
            name: &self.cfg.name,
            bureau: self.cfg.bureau.code(),
        }
    }

    /// [`Warehouse::apply_split`] of `batch` as a task of its own, so that what this
    /// step does meanwhile (reading and mapping the next batch: CPU work in this task)
    /// does not hold it up. Dropped, it is aborted: its transaction rolls back, as when
    /// the apply ran in the step's own future.
    fn apply_in_background(
        &self,
        summary: String,
        batch: ApplyBatch,
    ) -> AbortOnDrop<Result<crate::warehouse::Applied, WarehouseError>> {
        let wh = self.wh.clone();
        let name = self.cfg.name.clone();
        let bureau = self.cfg.bureau.code();
        AbortOnDrop(tokio::spawn(async move {
            let meta = SourceMeta {
                name: &name,
                bureau,
            };
            wh.apply_split(meta, &summary, batch).await
        }))
    }

    async fn step(&mut self) -> Result<Step, PipelineError> {
        let mut just_taken = false;
        if !self.holds_lease() {
            self.drop_lease();
            let holder = crate::warehouse::holder_name();
            match self
                .wh
                .acquire_lease(&self.cfg.name, &holder, self.settings.lease_ttl)
                .await?
            {
                Some(lease) => {
                    tracing::info!(source = %self.cfg.name, epoch = lease.epoch, "holding the source's lease: capturing it");
                    self.wh.fence(lease.clone());
                    self.lease = Some(self.wh.keep_lease(lease, self.settings.lease_ttl));
                    self.standing_by = false;
                    just_taken = true;
                }
                None => {
                    if !self.standing_by {
                        tracing::info!(source = %self.cfg.name, "another ebis process captures this source: standing by to take it over");
                        self.standing_by = true;
                    }
                    return Ok(Step::Standby);
                }
            }
        }
        if !self.checked {
            // After an error (a partition, say) the lease is confirmed before the status
            // is touched: another process may hold the source by now. (One just taken
            // needs no confirming.)
            if !just_taken
                && let Some(held) = &self.lease
                && !self
                    .wh
                    .renew_lease(held.lease(), self.settings.lease_ttl)
                    .await?
            {
                return Err(WarehouseError::LeaseLost(self.cfg.name.clone()).into());
            }
            self.wh.set_state(&self.cfg.name, "starting", None).await?;
            self.source.check().await?;
            self.load_checkpoint().await?;
            self.checked = true;
        }
        if let Some(reason) = self.expired.take() {
            self.restart_from_head(reason).await?;
            return Ok(Step::Busy);
        }
        match self.capture_step().await {
            Err(PipelineError::Source(SourceError::PositionExpired(reason))) => {
                self.restart_from_head(reason).await?;
                Ok(Step::Busy)
            }
            other => other,
        }
    }

    /// A snapshot chunk or a stream batch, whichever is due.
    async fn capture_step(&mut self) -> Result<Step, PipelineError> {
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

    /// On a clean stop, one more poll of a streaming source (a few batches at most, until
    /// drained): its complete-up-to then stands at the moment it stopped, not at its last
    /// poll before, so a comparison after the stop holds back nothing that committed
    /// before it. Errors are logged; the stop goes on.
    async fn last_poll(&mut self) {
        let streaming = self.checked
            && !matches!(self.position, Position::Initial)
            && self.snapshot.as_ref().is_none_or(|p| p.added);
        if !streaming {
            return;
        }
        for _ in 0..5 {
            match self.stream_step().await {
                Ok(Step::Idle | Step::Drained | Step::Standby) => return,
                Ok(Step::Busy) => {}
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, error = %e, "the last poll before stopping failed");
                    return;
                }
            }
        }
    }

    /// Whether this runner holds the source's lease (as far as its renewals know).
    fn holds_lease(&self) -> bool {
        self.lease.as_ref().is_some_and(LeaseKeeper::is_held)
    }

    /// Forgets the lease (lost or given up): applies are no longer fenced by it, what
    /// was read ahead is dropped, and the checkpoint is read again when a lease is next
    /// taken (another process may have moved it meanwhile).
    fn drop_lease(&mut self) {
        if self.lease.take().is_some() {
            self.wh.unfence(&self.cfg.name);
        }
        self.checked = false;
        self.read_ahead = None;
        self.prefetched = None;
    }

    /// Whether the source's password is not the one it was opened with any more (a
    /// rotated `password_file`): then the source is opened again with the new one, and
    /// the error that brought this up (a refused login) is retried rather than fatal.
    async fn password_rotated(&mut self) -> bool {
        let now = password_fingerprint(&self.cfg);
        if now.is_none() || now == self.password_seen {
            return false;
        }
        match AnySource::open(&self.cfg, self.plans.clone()) {
            Ok(fresh) => {
                tracing::info!(source = %self.cfg.name, "the source's password changed: connecting with the new one");
                std::mem::replace(&mut self.source, fresh).close().await;
                self.password_seen = now;
                true
            }
            Err(_) => false,
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
            version_base: self.version_base,
        })
    }

    async fn load_checkpoint(&mut self) -> Result<(), PipelineError> {
        let mode = self.cfg.capture.name();
        let now = mapped(&self.mappings);
        match self.wh.checkpoint(&self.cfg.name).await? {
            None => {
                self.position = Position::Initial;
                self.snapshot = None;
                self.captured = Captured::new();
                self.version_base = 0;
            }
            Some(cp) => {
                self.version_base = cp.version_base;
                self.expired = None;
                if let Some(stored) = &cp.mode
                    && stored != mode
                    && !matches!(cp.position, Position::Initial)
                {
                    // A position of another mode cannot be resumed from: capture again.
                    self.expired =
                        Some(format!("the capture mode changed from {stored} to {mode}"));
                }
                if let Some(reason) = &cp.reset_requested {
                    // `ebis reset-source`: start over from a new head, as if the stored
                    // position had expired.
                    self.expired = Some(reason.clone());
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
                    Some(s) => {
                        let mut p: SnapshotProgress = serde_json::from_value(s).map_err(|e| {
                            PipelineError::Setup(format!(
                                "snapshot progress of {} is unreadable: {e}",
                                self.cfg.name
                            ))
                        })?;
                        // Taken up again: its rate counts from now.
                        p.resumed = Some(super::snapshot::Resumed {
                            at: chrono::Utc::now(),
                            rows: p.rows,
                        });
                        Some(p)
                    }
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

    async fn stream_step(&mut self) -> Result<Step, PipelineError> {
        let (read, mut batch) = match self.read_ahead.take() {
            Some((from, ahead)) if from == self.position => ahead,
            _ => {
                let size = cold_read_size(&self.position, self.read_rows());
                let read = self.source.changes(&self.position, size).await?;
                map_batch(&self.mappings, &self.cfg.division, self.version_base, read)
            }
        };
        self.row_bytes = average_row_bytes(&batch).or(self.row_bytes);
        let drained = read.read_at.is_some();
        let changed = !read.changes.is_empty();
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
        // What the source keeps for us (a slot's WAL): shown beside the lag; a failed
        // look leaves the last figure.
        let backlog_bytes = self
            .source
            .backlog()
            .await
            .ok()
            .flatten()
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        batch.status = StatusUpdate {
            state: Some("streaming"),
            complete_up_to: complete,
            last_change_at: newest_change,
            open_gaps: Some(count(read.position.open_gaps())),
            expired_gaps: Some(count(read.position.expired_gaps())),
            late_changes: late,
            future_rows: None,
            resnapshot: None,
            backlog_bytes,
            backlog: Some(!drained),
        };
        let summary = read.position.summary();
        // A backlog: the next batch is read (and its rows fetched) and mapped while this
        // one applies (see `reads_ahead`). A batch read ahead is used only if the stream
        // is still where it was read from.
        let applied = if !drained && reads_ahead(&read.position) {
            // Mapping 10,000 changes takes 45-80 ms, during which nothing applied when
            // the apply ran in this task.
            let rows = self.read_rows();
            let mut apply = self.apply_in_background(summary.clone(), batch);
            let (source, mappings) = (&mut self.source, &self.mappings);
            let (division, version_base) = (&self.cfg.division, self.version_base);
            let next = async {
                let ahead = source.changes(&read.position, rows).await?;
                Ok::<_, SourceError>(map_batch(mappings, division, version_base, ahead))
            };
            let (applied, ahead) = tokio::join!(apply.join(), next);
            if let Ok(ahead) = ahead {
                self.read_ahead = Some((read.position.clone(), ahead));
            }
            applied??
        } else {
            self.wh.apply_split(self.meta(), &summary, batch).await?
        };
        if !read.changes.is_empty() {
            self.batches += 1;
            tracing::debug!(
                source = %self.cfg.name,
                batch = self.batches,
                position = %summary,
                changes = read.changes.len(),
                upserted = applied.upserted,
                deleted = applied.deleted,
                quarantined = applied.quarantined,
                "applied"
            );
        }
        self.position = read.position;
        // A catch-up ended: the drainer waited for it (up to a minute) and now takes it
        // in at once, not after its idle wait.
        if drained && self.catching_up {
            self.wh.wake_drainer();
        }
        self.catching_up = !drained;
        // A replication slot may let go of what the warehouse now holds.
        if matches!(self.position, Position::Logical { .. })
            && let Err(e) = self.source.acknowledge(&self.position).await
        {
            tracing::debug!(source = %self.cfg.name, error = %e, "confirming the stored position to the slot failed; the next read confirms it");
        }
        // Due purges run between batches too: a source that never drains must not grow
        // its change table without bound.
        self.purge_if_due().await?;
        if drained {
            self.key_scan_if_due().await?;
            Ok(if changed { Step::Drained } else { Step::Idle })
        } else {
            Ok(Step::Busy)
        }
    }
}

/// Whether the next batch may be read while one applies: where the position alone says
/// what comes next and reading changes nothing at the source (changelog; binlog, reading
/// on from the stream it keeps; logical, whose slot moves only to positions acknowledged
/// as stored). Timestamp capture keeps its overlap window in the connector.
fn reads_ahead(position: &Position) -> bool {
    matches!(
        position,
        Position::Changelog { .. } | Position::Binlog { .. } | Position::Logical { .. }
    )
}

/// Most changes a read takes when no batch was read ahead: a source's first read, and
/// the first after it caught up.
const COLD_READ: usize = 1000;

/// How many changes to read when none were read ahead. Where reads are pipelined, a
/// backlog's first batch is read while nothing applies: read small, its apply starts
/// sooner and the next read, full size, runs beside it (a catch-up of 111,000 binlog
/// changes in batches of 10,000 read its first for 0.26 s before anything applied). A
/// poll of a live source finds fewer changes than this anyway; elsewhere every read is
/// full size.
fn cold_read_size(position: &Position, batch_size: usize) -> usize {
    if reads_ahead(position) {
        batch_size.min(COLD_READ)
    } else {
        batch_size
    }
}

/// Raw row bytes a read may take: it ends at this many bytes of rows (the average of
/// the last batch's raw rows times its rows), below `batch_size` when rows are wide. The
/// memory a batch takes grows with its rows: ebis holds each row as read, as JSON text,
/// mapped, and encoded for COPY, and up to three batches at once (one applying, one read
/// ahead, one being mapped), about 15 times the raw row's JSON text per row in all. With
/// the bench's 570-byte rows, batch_size 10,000 peaked at 159 MB, 20,000 at 255 MB and
/// 50,000 at 460 MB; bounded by bytes, any batch_size stays below 200 MB (50,000: 173
/// MB) for rows up to about 60 kB, above which the floor of 100 rows a read decides.
const READ_RAW_BYTES: usize = 6 << 20;

/// Rows the first read of a run takes when `batch_size` is larger: until a batch was
/// mapped, the width of the source's rows is not known.
const FIRST_READ_ROWS: usize = 1000;

/// Rows the next read takes: `batch_size`, unless the rows seen so far are wide enough
/// that so many would pass [`READ_RAW_BYTES`] (never fewer than 100).
fn read_rows(batch_size: usize, row_bytes: Option<usize>) -> usize {
    match row_bytes {
        None => batch_size.min(FIRST_READ_ROWS),
        Some(b) => batch_size.min((READ_RAW_BYTES / b.max(1)).max(100)),
    }
}

/// The average raw row (JSON text bytes, as an object with its column names:
/// [`RawRow::object_len`](crate::warehouse::RawRow)) of a mapped batch's records; `None`
/// without any.
pub(super) fn average_row_bytes(batch: &ApplyBatch) -> Option<usize> {
    let (rows, bytes) = batch
        .kinds
        .values()
        .flat_map(|(_, k)| &k.upserts)
        .fold((0usize, 0usize), |(n, b), r| {
            (n + 1, b + r.raw_row.object_len())
        });
    (rows > 0).then(|| bytes / rows)
}

/// A batch of changes as read (versions moved by `version_base`) and as mapped.
fn map_batch(
    mappings: &MappingSet,
    division: &str,
    version_base: i64,
    mut read: Batch,
) -> (Batch, ApplyBatch) {
    for c in &mut read.changes {
        c.version = c.version.saturating_add(version_base);
    }
    let batch = map_changes(mappings, division, &read.changes);
    (read, batch)
}

/// A spawned task, aborted when this is dropped (a step dropped at shutdown).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Its result; a panic in it goes on here.
    async fn join(&mut self) -> Result<T, PipelineError> {
        match (&mut self.0).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(PipelineError::Stopped),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_in_the_background_ends_with_the_step_that_started_it() {
        // Joined: its result comes back.
        let mut done = AbortOnDrop(tokio::spawn(async { 7 }));
        assert_eq!(done.join().await.ok(), Some(7));
        // Dropped before it finished (a step dropped at shutdown): it never gets further.
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = AbortOnDrop(tokio::spawn({
            let reached = reached.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                reached.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }));
        let handle_done = started.0.is_finished();
        drop(started);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!handle_done);
        assert!(
            !reached.load(std::sync::atomic::Ordering::SeqCst),
            "an apply whose step was dropped is aborted, not left to commit later"
        );
    }

    #[test]
    fn a_read_takes_batch_size_rows_unless_they_would_pass_its_bytes() {
        // The first read of a run, before any row was seen: small.
        assert_eq!(read_rows(10_000, None), 1000);
        assert_eq!(read_rows(500, None), 500);
        // The bench's 570-byte rows: batch_size 10,000 as set; 50,000 bounded.
        assert_eq!(read_rows(10_000, Some(570)), 10_000);
        assert_eq!(read_rows(50_000, Some(570)), READ_RAW_BYTES / 570);
        assert!(read_rows(50_000, Some(570)) * 570 <= READ_RAW_BYTES);
        // Rows of a megabyte: never fewer than 100 a read.
        assert_eq!(read_rows(10_000, Some(1 << 20)), 100);
        assert_eq!(read_rows(50, Some(1 << 20)), 50);
    }

    #[test]
    fn a_caught_up_source_backs_off_to_the_poll_interval_and_wakes_on_changes() {
        let mut w = IdleWait::new(Duration::from_millis(500));
        assert_eq!(
            w.next(),
            Duration::from_millis(500),
            "idle until changes come"
        );
        w.reset();
        let waits: Vec<u128> = (0..8).map(|_| w.next().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 500, 500]);
        w.reset();
        assert_eq!(w.next(), Duration::from_millis(10));
        // A poll interval below the shortest wait is kept.
        let mut fast = IdleWait::new(Duration::from_millis(5));
        fast.reset();
        assert_eq!(fast.next(), Duration::from_millis(5));
    }
}
