//! Work between stream batches: purging the source's change table below the stored
//! position (changelog), and comparing keys with the warehouse on a schedule
//! (timestamp), which finds deletes and the rows the mark passed by.

use super::{Runner, count};
use crate::config::CaptureMode;
use crate::pipeline::PipelineError;
use crate::pipeline::keyscan::{KeyScanResult, KeyScanSpec, scan_table};
use crate::warehouse::StatusUpdate;
use chrono::Utc;
use ebis_source::{Position, Source};
use std::time::Instant;

impl Runner {
    /// Compares one table's keys with the warehouse (see [`scan_table`]).
    pub(super) async fn compare_keys(
        &mut self,
        spec: KeyScanSpec<'_>,
    ) -> Result<KeyScanResult, PipelineError> {
        scan_table(&mut self.source, &self.wh, &self.cfg, &self.mappings, spec).await
    }

    /// Changelog capture with `purge_every`: deletes the change rows that the position
    /// just stored in the warehouse no longer needs. A source-side failure (most often a
    /// missing DELETE grant) is shown as the source's last error and capture goes on.
    pub(super) async fn purge_if_due(&mut self) -> Result<(), PipelineError> {
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
        match self.source.acknowledge(&self.position).await {
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
    pub(super) async fn key_scan_if_due(&mut self) -> Result<(), PipelineError> {
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
        let mark = tables.get(&table).and_then(|m| m.modified);
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
        let scan = self
            .compare_keys(KeyScanSpec {
                table: &table,
                version: version.saturating_add(self.version_base),
                modified_column: modified_column.as_deref(),
                now_local: Some(clock.local),
                mark,
            })
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
