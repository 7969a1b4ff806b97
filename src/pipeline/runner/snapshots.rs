//! Snapshots inside the runner: the first one of a source (the stream then starts from
//! the head taken before it), and those of tables whose mappings were added to a source
//! already streaming (a chunk between stream batches; the stream's position stays).

use super::{Runner, Step, count};
use crate::mapping::MappingSet;
use crate::pipeline::PipelineError;
use crate::pipeline::snapshot::{SnapshotProgress, TableEstimate, read_chunk};
use crate::warehouse::{ApplyBatch, StatusUpdate};
use ebis_source::{MarkValue, Position, Source, Value};
use std::collections::BTreeMap;

/// Source table → the record kinds capture covers from it.
pub(super) type Captured = BTreeMap<String, Vec<String>>;

/// What the mappings read now: table → record kinds.
pub(super) fn mapped(mappings: &MappingSet) -> Captured {
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

impl Runner {
    /// Tables whose mappings capture does not cover yet (a mapping added to a source
    /// already captured): snapshotted while streaming goes on.
    pub(super) async fn start_added_snapshot(&mut self) -> Result<(), PipelineError> {
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
        progress.version = progress.version.saturating_add(self.version_base);
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

    /// The stored position cannot be resumed from (`reason` says why, without values):
    /// stream from a new head, and snapshot every table again meanwhile, comparing each
    /// table's keys at its end so rows deleted while capture was blind are deleted too.
    /// Versions are raised above every one stored, since the source's own may have
    /// started again lower. Recorded in the source's status (`ebis status`) in the same
    /// transaction as the new checkpoint.
    pub(super) async fn restart_from_head(&mut self, reason: String) -> Result<(), PipelineError> {
        tracing::warn!(
            source = %self.cfg.name,
            reason = %reason,
            "the stored position cannot be resumed from: snapshotting the source again while streaming from a new head"
        );
        let head = self.source.head().await?;
        let mut progress = SnapshotProgress::start(head.clone());
        let kinds: Vec<&str> = self.mappings.mappings.iter().map(|m| m.kind.name).collect();
        let stored = self.wh.max_change_version(&self.cfg.name, &kinds).await?;
        if progress.version.saturating_add(self.version_base) <= stored {
            self.version_base = stored.saturating_add(1).saturating_sub(progress.version);
        }
        progress.version = progress.version.saturating_add(self.version_base);
        progress.tables = self.plans.iter().map(|p| p.table.clone()).collect();
        progress.added = true;
        self.position = head;
        self.read_ahead = None;
        self.snapshot = Some(progress);
        let mut batch = ApplyBatch::new();
        batch.checkpoint = Some(self.checkpoint(self.position.clone())?);
        batch.status = StatusUpdate {
            state: Some("streaming"),
            open_gaps: Some(count(self.position.open_gaps())),
            expired_gaps: Some(count(self.position.expired_gaps())),
            resnapshot: Some(reason),
            ..StatusUpdate::default()
        };
        self.wh
            .apply(self.meta(), &self.position.summary(), &batch)
            .await?;
        Ok(())
    }

    /// One step of a snapshot: a chunk of the current table, or the end. A first
    /// snapshot ends by storing the head it started from as the stream's position; one
    /// of tables added to a streaming source leaves the position alone, and compares each
    /// table's keys at its end (rows deleted while it was not covered).
    pub(super) async fn snapshot_step(&mut self) -> Result<Step, PipelineError> {
        if self.snapshot.is_none() {
            let head = self.source.head().await?;
            tracing::info!(source = %self.cfg.name, head = %head.summary(), "snapshot starts");
            let mut progress = SnapshotProgress::start(head);
            progress.version = progress.version.saturating_add(self.version_base);
            self.snapshot = Some(progress);
        }
        let Some(mut progress) = self.snapshot.clone() else {
            return Ok(Step::Busy);
        };
        let tables: Vec<String> = if progress.tables.is_empty() {
            self.plans.iter().map(|p| p.table.clone()).collect()
        } else {
            progress.tables.clone()
        };
        if progress.estimates.is_empty() && progress.table < tables.len() {
            progress.estimates = self.estimate_rows(&tables).await;
        }
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
            // Its rows wait in the base's queue for this end (migration 0048).
            self.wh.wake_drainer();
            self.position = position;
            return Ok(Step::Busy);
        }
        let table = tables[progress.table].clone();
        let after: Option<Vec<Value>> = progress
            .after
            .as_ref()
            .map(|k| k.iter().map(Value::from).collect());
        // The chunk read while the previous one applied, if it is the one due.
        let chunk = match self.prefetched.take() {
            Some(p)
                if p.table == table
                    && p.after == progress.after
                    && p.version == progress.version =>
            {
                p.chunk
            }
            _ => {
                let rows = self.read_rows();
                read_chunk(
                    &mut self.source,
                    &self.cfg,
                    &self.mappings,
                    &table,
                    after.as_deref(),
                    rows,
                    progress.version,
                )
                .await?
            }
        };
        self.row_bytes = super::average_row_bytes(&chunk.batch).or(self.row_bytes);
        progress.rows += chunk.rows as u64;
        progress.table_rows += chunk.rows as u64;
        let mut batch = chunk.batch;
        batch.fresh = !progress.added && self.fresh_table(&table, &progress).await?;
        if chunk.table_done {
            progress.table += 1;
            progress.table_rows = 0;
            progress.after = None;
            if progress.added {
                let scan = self
                    .compare_keys(crate::pipeline::keyscan::KeyScanSpec {
                        table: &table,
                        version: progress.version,
                        modified_column: None,
                        now_local: None,
                        mark: None,
                    })
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
        self.batches += 1;
        tracing::debug!(
            source = %self.cfg.name,
            table = %table,
            batch = self.batches,
            position = %summary,
            rows = chunk.rows,
            snapshot_rows = progress_rows(self.snapshot.as_ref()),
            "snapshot chunk read; applying"
        );
        // While this chunk applies (in two concurrent halves when large), the next one is
        // read and mapped: the source and the warehouse work at once. The apply is a task
        // of its own, so that the mapping (CPU work here) does not hold up its COPY. A
        // chunk read ahead is used only if the snapshot goes on from exactly where it was
        // read (an apply that failed is retried from the stored progress, and the chunk is
        // read again).
        let next = self
            .snapshot
            .as_ref()
            .and_then(|p| p.after.clone().map(|after| (after, p.version)));
        match next {
            Some((after, version))
                if progress_table_continues(self.snapshot.as_ref(), &table, &tables) =>
            {
                let rows = self.read_rows();
                let mut apply = self.apply_in_background(summary, batch);
                let keys: Vec<Value> = after.iter().map(Value::from).collect();
                let read = read_chunk(
                    &mut self.source,
                    &self.cfg,
                    &self.mappings,
                    &table,
                    Some(&keys),
                    rows,
                    version,
                );
                let (applied, ahead) = tokio::join!(apply.join(), read);
                applied??;
                if let Ok(chunk) = ahead {
                    self.prefetched = Some(Prefetched {
                        table: table.clone(),
                        after: Some(after),
                        version,
                        chunk,
                    });
                }
            }
            _ => {
                self.wh.apply_split(self.meta(), &summary, batch).await?;
            }
        }
        Ok(Step::Busy)
    }
}

/// Rows a snapshot in progress has read so far.
fn progress_rows(p: Option<&SnapshotProgress>) -> u64 {
    p.map_or(0, |p| p.rows)
}

impl Runner {
    /// Each table's rows as the source estimates them, for progress: asked once when a
    /// snapshot begins, or resumes from a checkpoint an older version stored without them.
    /// A source that cannot say leaves the table without an
    /// estimate; the snapshot goes on regardless.
    async fn estimate_rows(&mut self, tables: &[String]) -> Vec<TableEstimate> {
        let mut out = Vec::with_capacity(tables.len());
        for table in tables {
            let rows = match self.source.count(table).await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::debug!(source = %self.cfg.name, table = %table, error = %e, "the source gave no estimate of the table's rows");
                    None
                }
            };
            out.push(TableEstimate {
                table: table.clone(),
                rows,
            });
        }
        out
    }

    /// Whether a first snapshot's chunks of `table` can be copied straight into the
    /// warehouse: decided when the table's snapshot starts (no row of the source in the
    /// record kinds it maps to), and not for a table resumed midway after a restart.
    async fn fresh_table(
        &mut self,
        table: &str,
        progress: &SnapshotProgress,
    ) -> Result<bool, PipelineError> {
        if let Some((t, fresh)) = &self.fresh
            && t == table
        {
            return Ok(*fresh);
        }
        let fresh = progress.after.is_none() && {
            let kinds: Vec<&str> = self
                .mappings
                .for_table(table)
                .map(|m| m.kind.name)
                .collect();
            !self.wh.source_has_rows(&self.cfg.name, &kinds).await?
        };
        self.fresh = Some((table.to_owned(), fresh));
        Ok(fresh)
    }
}

/// Whether the snapshot goes on in `table` (it is the current one, not finished).
fn progress_table_continues(
    progress: Option<&SnapshotProgress>,
    table: &str,
    tables: &[String],
) -> bool {
    progress.is_some_and(|p| tables.get(p.table).is_some_and(|t| t == table) && p.after.is_some())
}

/// A snapshot chunk read while the one before it applied.
pub(super) struct Prefetched {
    /// Its table.
    pub table: String,
    /// The key it was read after.
    pub after: Option<Vec<MarkValue>>,
    /// The version its rows carry.
    pub version: i64,
    /// What was read.
    pub chunk: crate::pipeline::snapshot::ChunkResult,
}
