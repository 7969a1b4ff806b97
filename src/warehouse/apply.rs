//! Applying one batch: records, tombstones, quarantine, gap log, checkpoint and source
//! status, all in one transaction.
//!
//! Records are bulk-loaded with binary COPY into a temporary table per record kind, then
//! upserted with one statement per kind. The upsert is guarded: a row only changes when
//! the incoming version is not older than the stored one and something actually differs,
//! so a replayed batch changes nothing.

use super::batch::{Applied, ApplyBatch, StagedDelete, StagedRecord, StagedRejection};
use super::copy::{copy_columns, copy_rows};
use super::layout::Layouts;
use super::{Warehouse, WarehouseError};
use crate::indicators::RecordKind;
use chrono::{DateTime, Utc};
use postgres_protocol::escape::escape_identifier;

/// Who a batch is for.
#[derive(Clone, Copy, Debug)]
pub struct SourceMeta<'a> {
    /// Source name.
    pub name: &'a str,
    /// Bureau code.
    pub bureau: &'a str,
}

impl Warehouse {
    /// Applies a batch in one transaction. Rows whose values the warehouse refuses (see
    /// [`WarehouseError::is_refused_value`]) are found, go to quarantine with the server's
    /// reason, and the rest of the batch applies: one bad row never stops a source.
    pub async fn apply(
        &self,
        source: SourceMeta<'_>,
        position_summary: &str,
        batch: &ApplyBatch,
    ) -> Result<Applied, WarehouseError> {
        self.apply_after(source, position_summary, batch, None)
            .await
    }

    /// [`Warehouse::apply`] in two transactions at once when the batch is large (the
    /// warehouse's COPY, index and trigger work then runs on two cores): the first half
    /// of its rows alone, and the rest with the checkpoint and status, which commit only
    /// after the first half committed. Should the first fail, the second rolls back and
    /// the source goes on from its stored checkpoint (rows of a committed first half are
    /// applied again then, which changes nothing); the checkpoint never passes rows that
    /// are not there.
    pub async fn apply_split(
        &self,
        source: SourceMeta<'_>,
        position_summary: &str,
        mut rest: ApplyBatch,
    ) -> Result<Applied, WarehouseError> {
        let Some(first) = rest.split_half() else {
            return self.apply(source, position_summary, &rest).await;
        };
        let (committed, before) = tokio::sync::watch::channel(None);
        let first = async {
            let r = self.apply(source, position_summary, &first).await;
            let _ = committed.send(Some(r.is_ok()));
            r
        };
        let (a, b) = tokio::join!(
            first,
            self.apply_after(source, position_summary, &rest, Some(&before))
        );
        let (a, b) = (a?, b?);
        Ok(Applied {
            upserted: a.upserted + b.upserted,
            deleted: a.deleted + b.deleted,
            quarantined: a.quarantined + b.quarantined,
        })
    }

    /// [`Warehouse::apply`] of a batch that must commit after another applying at the
    /// same time (the second half of a split batch): its rows are written at once,
    /// but its checkpoint only once `before` says the other committed (`Some(true)`);
    /// should it not (`Some(false)`, or the sender gone), this batch is rolled back with
    /// a retryable error.
    pub async fn apply_after(
        &self,
        source: SourceMeta<'_>,
        position_summary: &str,
        batch: &ApplyBatch,
        before: Option<&tokio::sync::watch::Receiver<Option<bool>>>,
    ) -> Result<Applied, WarehouseError> {
        let first = self
            .apply_once(source, position_summary, batch, before)
            .await;
        let (batch, first) = match first {
            // A key a first snapshot's chunk expected to be new is there (two tables
            // mapped onto one record kind, a checkpoint deleted by hand): upserts then.
            Err(e) if batch.fresh && e.is_unique_violation() => {
                tracing::info!(
                    source = source.name,
                    "rows of a first snapshot were already in the warehouse: applying them as upserts"
                );
                let mut again = batch.clone();
                again.fresh = false;
                let r = self
                    .apply_once(source, position_summary, &again, before)
                    .await;
                (std::borrow::Cow::Owned(again), r)
            }
            other => (std::borrow::Cow::Borrowed(batch), other),
        };
        let batch: &ApplyBatch = &batch;
        match first {
            Err(e) if e.is_refused_value() => {
                let refused = self.refused_rows(source, position_summary, batch).await?;
                if refused.is_empty() {
                    return Err(e);
                }
                tracing::warn!(
                    source = source.name,
                    rows = refused.len(),
                    "the warehouse refused values of some rows; they go to quarantine"
                );
                let sifted = batch.without_refused(refused);
                self.apply_once(source, position_summary, &sifted, before)
                    .await
            }
            other => other,
        }
    }

    /// Finds the upserts of a batch the warehouse refuses, by halving each record kind's
    /// rows under savepoints in a transaction that is rolled back; each with its error.
    async fn refused_rows(
        &self,
        source: SourceMeta<'_>,
        position_summary: &str,
        batch: &ApplyBatch,
    ) -> Result<Vec<(&'static str, usize, WarehouseError)>, WarehouseError> {
        let mut client = self.client().await?;
        let layouts = self.raw_layouts(&client, batch).await?;
        let tx = client.transaction().await?;
        let mut refused = Vec::new();
        for (kind, kb) in batch.kinds.values() {
            let mut pending = vec![(0, kb.upserts.len())];
            while let Some((lo, hi)) = pending.pop() {
                if lo >= hi {
                    continue;
                }
                tx.batch_execute("savepoint ebis_sift").await?;
                let rows = &kb.upserts[lo..hi];
                match upsert(&tx, source, position_summary, kind, rows, &layouts).await {
                    Ok(_) => tx.batch_execute("release savepoint ebis_sift").await?,
                    Err(e) if e.is_refused_value() => {
                        tx.batch_execute("rollback to savepoint ebis_sift").await?;
                        if hi - lo == 1 {
                            refused.push((kind.name, lo, e));
                        } else {
                            let mid = lo + (hi - lo) / 2;
                            pending.push((mid, hi));
                            pending.push((lo, mid));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        tx.rollback().await?;
        Ok(refused)
    }

    async fn apply_once(
        &self,
        source: SourceMeta<'_>,
        position_summary: &str,
        batch: &ApplyBatch,
        before: Option<&tokio::sync::watch::Receiver<Option<bool>>>,
    ) -> Result<Applied, WarehouseError> {
        let mut client = self.client().await?;
        let layouts = self.raw_layouts(&client, batch).await?;
        let tx = client.transaction().await?;
        // What the exchange tables' triggers queue for the base is marked as this
        // source's: a drain leaves it queued while the source's first load runs
        // (migration 0048). Those triggers see each statement's rows in transition
        // tables, which spill to temporary files beyond work_mem: 4 MB by default, half
        // a 10,000-row chunk. Sized for the batch, they stay in memory, and a chunked
        // first load of 1M rows took 14.7 s instead of 15.4 s (capture bench's rows, one
        // connection). A role's or server's larger work_mem is kept.
        tx.execute(
            "select set_config('ebis.source', $1, true),
                    case when pg_size_bytes(current_setting('work_mem')) < $2::bigint * 1024
                         then set_config('work_mem', $2::bigint || 'kB', true) end",
            &[&source.name, &batch.work_mem_kb()],
        )
        .await?;
        if let Some(lease) = self.fence_of(source.name) {
            super::lease::check_fence(&tx, &lease).await?;
        }
        let mut applied = Applied::default();
        for (kind, kb) in batch.kinds.values() {
            if !kb.upserts.is_empty() {
                applied.upserted += if batch.fresh {
                    copy_new(&tx, source, position_summary, kind, &kb.upserts, &layouts).await?
                } else {
                    upsert(&tx, source, position_summary, kind, &kb.upserts, &layouts).await?
                };
            }
            if !kb.deletes.is_empty() {
                applied.deleted +=
                    tombstone(&tx, source, position_summary, kind, &kb.deletes).await?;
            }
            let keys: Vec<&str> = kb
                .upserts
                .iter()
                .map(|u| u.record.source_key.as_str())
                .chain(kb.deletes.iter().map(|d| d.source_key.as_str()))
                .collect();
            if !keys.is_empty() {
                tx.execute(
                    "update ebis.quarantine set resolved_at = now()
                     where source = $1 and record_kind = $2 and source_key = any($3) and resolved_at is null",
                    &[&source.name, &kind.name, &keys],
                )
                .await?;
            }
        }
        if !batch.rejections.is_empty() {
            applied.quarantined = quarantine(&tx, source, &batch.rejections).await?;
        }
        for e in &batch.gap_events {
            tx.execute(
                "insert into ebis.gap_log (source, from_seq, to_seq, fate) values ($1, $2, $3, $4)",
                &[&source.name, &e.from, &e.to, &e.fate.as_str()],
            )
            .await?;
        }
        if let Some(before) = before {
            let mut rx = before.clone();
            let committed = rx
                .wait_for(Option::is_some)
                .await
                .is_ok_and(|v| *v == Some(true));
            if !committed {
                return Err(behind_uncommitted());
            }
        }
        if let Some(cp) = &batch.checkpoint {
            let position = serde_json::to_value(&cp.position)
                .map_err(|e| WarehouseError::Config(format!("position: {e}")))?;
            let captured = serde_json::to_value(&cp.captured)
                .map_err(|e| WarehouseError::Config(format!("captured tables: {e}")))?;
            tx.execute(
                "insert into ebis.checkpoint (source, position, position_summary, snapshot, mode, captured, version_base, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, now())
                 on conflict (source) do update set position = excluded.position,
                   position_summary = excluded.position_summary, snapshot = excluded.snapshot,
                   mode = excluded.mode, captured = excluded.captured,
                   version_base = excluded.version_base, reset_requested = null, updated_at = now()",
                &[&source.name, &position, &cp.position.summary(), &cp.snapshot, &cp.mode, &captured, &cp.version_base],
            )
            .await?;
        }
        let s = &batch.status;
        let rows = i64::try_from(applied.upserted + applied.deleted).unwrap_or(i64::MAX);
        let quarantined = i64::try_from(applied.quarantined).unwrap_or(i64::MAX);
        tx.execute(
            "update ebis.source_status set
               state = coalesce($2, state),
               last_poll_at = now(),
               last_applied_at = case when $3::bigint + $4::bigint > 0 then now() else last_applied_at end,
               complete_up_to = greatest(complete_up_to, $5),
               last_change_at = greatest(last_change_at, $6),
               open_gaps = coalesce($7, open_gaps),
               expired_gaps = coalesce($8, expired_gaps),
               late_changes = late_changes + $9,
               future_rows = coalesce($10, future_rows),
               resnapshots = resnapshots + case when $11::text is null then 0 else 1 end,
               last_resnapshot_at = case when $11::text is null then last_resnapshot_at else now() end,
               last_resnapshot_reason = coalesce($11, last_resnapshot_reason),
               rows_applied = rows_applied + $3,
               rows_quarantined = rows_quarantined + $4,
               source_backlog_bytes = coalesce($12, source_backlog_bytes),
               source_backlog_at = case when $12::bigint is null then source_backlog_at else now() end,
               backlog_since = case when coalesce($2, state) <> 'streaming' then null
                                    when $13::boolean is null then backlog_since
                                    when $13 then coalesce(backlog_since, now()) end,
               updated_at = now()
             where source = $1",
            &[
                &source.name,
                &s.state,
                &rows,
                &quarantined,
                &s.complete_up_to,
                &s.last_change_at,
                &s.open_gaps,
                &s.expired_gaps,
                &s.late_changes,
                &s.future_rows,
                &s.resnapshot,
                &s.backlog_bytes,
                &s.backlog,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(applied)
    }
}

/// The error of a batch whose first half did not commit: retryable, so the source goes
/// on from its stored checkpoint.
fn behind_uncommitted() -> WarehouseError {
    WarehouseError::Db {
        code: "40001".to_owned(),
        message: "the first half of the batch did not commit; the batch is read again".to_owned(),
        column: None,
    }
}

/// A record kind's exchange table, quoted.
fn exchange_table(kind: &RecordKind) -> String {
    format!("exchange.{}", escape_identifier(kind.name))
}

/// Rows whose keys are new to the warehouse, copied straight into their table.
async fn copy_new(
    tx: &tokio_postgres::Transaction<'_>,
    source: SourceMeta<'_>,
    position: &str,
    kind: &RecordKind,
    rows: &[StagedRecord],
    layouts: &Layouts,
) -> Result<u64, WarehouseError> {
    let table = exchange_table(kind);
    copy_rows(tx, source, position, kind, rows, layouts, &table).await
}

async fn upsert(
    tx: &tokio_postgres::Transaction<'_>,
    source: SourceMeta<'_>,
    position: &str,
    kind: &RecordKind,
    rows: &[StagedRecord],
    layouts: &Layouts,
) -> Result<u64, WarehouseError> {
    let table = exchange_table(kind);
    let stage = escape_identifier(&format!("ebis_stage_{}", kind.name));
    tx.batch_execute(&format!(
        "create temp table if not exists {stage} (like {table} including defaults) on commit delete rows;
         truncate {stage}"
    ))
    .await?;
    copy_rows(tx, source, position, kind, rows, layouts, &stage).await?;
    Ok(tx.execute(&upsert_statement(kind, &stage), &[]).await?)
}

/// The statement that upserts a record kind's rows from `stage` (a quoted table name,
/// with the exchange table's columns) into its exchange table: a row replaces the stored
/// one only when its version is not older and something in it changed. The capture
/// bench runs it too, for the raw limit of a catch-up's writes.
pub(crate) fn upsert_statement(kind: &RecordKind, stage: &str) -> String {
    let table = exchange_table(kind);
    let (cols, _) = copy_columns(kind);
    let all_cols = cols.join(", ");
    let (field_cols, prov_cols) = cols.split_at(kind.fields.len());
    let sets = field_cols
        .iter()
        .chain(prov_cols)
        .map(String::as_str)
        .filter(|c| *c != "source" && *c != "source_key")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let compared = field_cols
        .iter()
        .map(String::as_str)
        // (The raw row as text: json has no equality, and ebis writes a row the same way
        // each time it reads it.)
        .chain(["division", "mapping_version", "raw_layout", "raw_row::text"])
        .collect::<Vec<_>>();
    let old = compared
        .iter()
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let new = compared
        .iter()
        .map(|c| format!("excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "insert into {table} as t ({all_cols}) select {all_cols} from {stage}
         on conflict (source, source_key) do update set {sets}, applied_at = now(), deleted_at = null
         where t.change_version <= excluded.change_version
           and (t.deleted_at is not null or ({old}) is distinct from ({new}))"
    )
}

async fn tombstone(
    tx: &tokio_postgres::Transaction<'_>,
    source: SourceMeta<'_>,
    position: &str,
    kind: &RecordKind,
    deletes: &[StagedDelete],
) -> Result<u64, WarehouseError> {
    let keys: Vec<&str> = deletes.iter().map(|d| d.source_key.as_str()).collect();
    let versions: Vec<i64> = deletes.iter().map(|d| d.version).collect();
    let times: Vec<Option<DateTime<Utc>>> = deletes.iter().map(|d| d.commit_time).collect();
    let n = tx
        .execute(
            &format!(
                "update exchange.{} as t set deleted_at = coalesce(d.at, now()), change_version = d.version,
                   change_position = $2, applied_at = now()
                 from unnest($3::text[], $4::bigint[], $5::timestamptz[]) as d(source_key, version, at)
                 where t.source = $1 and t.source_key = d.source_key and t.deleted_at is null
                   and t.change_version <= d.version",
                escape_identifier(kind.name)
            ),
            &[&source.name, &position, &keys, &versions, &times],
        )
        .await?;
    Ok(n)
}

async fn quarantine(
    tx: &tokio_postgres::Transaction<'_>,
    source: SourceMeta<'_>,
    rejections: &[StagedRejection],
) -> Result<u64, WarehouseError> {
    let col = |f: fn(&StagedRejection) -> String| rejections.iter().map(f).collect::<Vec<String>>();
    let kinds = col(|r| r.kind.to_owned());
    let tables = col(|r| r.source_table.clone());
    let keys = col(|r| r.source_key.clone());
    let fields = col(|r| r.field.clone());
    let reasons = col(|r| r.reason.clone());
    let versions = col(|r| r.mapping_version.clone());
    let raw_values: Vec<Option<String>> = rejections.iter().map(|r| r.raw_value.clone()).collect();
    let raw_rows: Vec<serde_json::Value> = rejections.iter().map(|r| r.raw_row.object()).collect();
    let n = tx
        .execute(
            "insert into ebis.quarantine (source, record_kind, source_table, source_key, field, reason,
                                          raw_value, raw_row, mapping_version)
             select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::jsonb[], $9::text[])
             on conflict (source, record_kind, source_key) do update set
               source_table = excluded.source_table, field = excluded.field, reason = excluded.reason,
               raw_value = excluded.raw_value, raw_row = excluded.raw_row,
               mapping_version = excluded.mapping_version, last_seen = now(),
               seen_count = ebis.quarantine.seen_count + 1, resolved_at = null",
            &[
                &source.name,
                &kinds,
                &tables,
                &keys,
                &fields,
                &reasons,
                &raw_values,
                &raw_rows,
                &versions,
            ],
        )
        .await?;
    Ok(n)
}
