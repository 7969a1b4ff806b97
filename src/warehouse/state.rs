//! Pipeline state in the warehouse: checkpoints, source status rows, coverage, and the
//! per-source lock that keeps two `ebis run` processes from capturing one source.

use super::{Warehouse, WarehouseError};
use crate::config::SourceConfig;
use ebis_source::Position;

/// A stored checkpoint.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    /// Where streaming resumes.
    pub position: Position,
    /// Snapshot progress, while one runs.
    pub snapshot: Option<serde_json::Value>,
    /// The capture mode it was written under.
    pub mode: Option<String>,
    /// Tables (and record kinds of each) capture covers; `None` from before that was kept.
    pub captured: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Added to every version the source reads.
    pub version_base: i64,
    /// Why an operator asked the source to start over from a new head
    /// (`ebis reset-source`), until the restart has stored its checkpoint.
    pub reset_requested: Option<String>,
}

impl Warehouse {
    /// The checkpoint of a source, if it has one.
    pub async fn checkpoint(
        &self,
        source: &str,
    ) -> Result<Option<StoredCheckpoint>, WarehouseError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "select position, snapshot, mode, captured, version_base, reset_requested from ebis.checkpoint where source = $1",
                &[&source],
            )
            .await?;
        row.map(|r| {
            let position: serde_json::Value = r.get(0);
            Ok(StoredCheckpoint {
                position: serde_json::from_value(position).map_err(|e| {
                    WarehouseError::Config(format!("checkpoint of {source} is unreadable: {e}"))
                })?,
                snapshot: r.get(1),
                mode: r.get(2),
                captured: r
                    .get::<_, Option<serde_json::Value>>(3)
                    .and_then(|v| serde_json::from_value(v).ok()),
                version_base: r.get(4),
                reset_requested: r.get(5),
            })
        })
        .transpose()
    }

    /// Whether any row of `source` is in the given record kinds' tables.
    pub async fn source_has_rows(
        &self,
        source: &str,
        kinds: &[&str],
    ) -> Result<bool, WarehouseError> {
        let client = self.client().await?;
        for k in kinds {
            let any: bool = client
                .query_one(
                    &format!(
                        "select exists (select 1 from exchange.{} where source = $1)",
                        postgres_protocol::escape::escape_identifier(k)
                    ),
                    &[&source],
                )
                .await?
                .get(0);
            if any {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The highest version any row of `source` carries in the given record kinds (0 when
    /// none): where a position written before version stamps existed resumes stamping.
    pub async fn max_change_version(
        &self,
        source: &str,
        kinds: &[&str],
    ) -> Result<i64, WarehouseError> {
        let client = self.client().await?;
        let mut max = 0;
        for k in kinds {
            let v: Option<i64> = client
                .query_one(
                    &format!(
                        "select max(change_version) from exchange.{} where source = $1",
                        postgres_protocol::escape::escape_identifier(k)
                    ),
                    &[&source],
                )
                .await?
                .get(0);
            max = max.max(v.unwrap_or(0));
        }
        Ok(max)
    }

    /// Registers the sources of a config: a status row each, and the coverage table
    /// (bureau → divisions) rebuilt from the enabled sources.
    pub async fn register_sources(&self, sources: &[SourceConfig]) -> Result<(), WarehouseError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for s in sources {
            tx.execute(
                "insert into ebis.source_status (source, bureau, division, dialect, mode)
                 values ($1, $2, $3, $4, $5)
                 on conflict (source) do update set bureau = excluded.bureau, division = excluded.division,
                   dialect = excluded.dialect, mode = excluded.mode, updated_at = now()",
                &[&s.name, &s.bureau.code(), &s.division, &s.dialect.name(), &s.capture.name()],
            )
            .await?;
        }
        let enabled: Vec<&SourceConfig> = sources.iter().filter(|s| s.enabled).collect();
        let names: Vec<&str> = enabled.iter().map(|s| s.name.as_str()).collect();
        tx.execute(
            "delete from ebis.coverage where source <> all($1)",
            &[&names],
        )
        .await?;
        for s in &enabled {
            tx.execute(
                "delete from ebis.coverage where source = $1 and division <> all($2)",
                &[&s.name, &s.covers],
            )
            .await?;
            for d in &s.covers {
                tx.execute(
                    "insert into ebis.coverage (bureau, division, source) values ($1, $2, $3)
                     on conflict do nothing",
                    &[&s.bureau.code(), d, &s.name],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets a source's state, and its last error when given (errors never carry values).
    /// Fenced as applies are ([`Warehouse::fence`]): once another process has taken the
    /// source over, the status is its to write, and a state or an error of the process
    /// that lost it (its connection back after a partition, say, before its next apply
    /// finds the lease lost) changes nothing.
    pub async fn set_state(
        &self,
        source: &str,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), WarehouseError> {
        let fence = self.fence_of(source);
        let holder = fence.as_ref().map(|l| l.holder.as_str());
        let epoch = fence.as_ref().map(|l| l.epoch);
        let client = self.client().await?;
        client
            .execute(
                "update ebis.source_status set state = $2,
                   backlog_since = case when $2 = 'streaming' then backlog_since end,
                   last_error = coalesce($3, last_error),
                   last_error_at = case when $3 is null then last_error_at else now() end,
                   updated_at = now()
                 where source = $1
                   and ($4::text is null or exists (
                         select 1 from ebis.lease l
                         where l.source = $1 and l.holder = $4 and l.epoch = $5))",
                &[&source, &state, &error, &holder, &epoch],
            )
            .await?;
        Ok(())
    }

    /// Adds to a source's count of purged change-table rows.
    pub async fn record_purge(&self, source: &str, deleted: u64) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        client
            .execute(
                "update ebis.source_status set changes_purged = changes_purged + $2,
                   last_purge_at = now()
                 where source = $1",
                &[&source, &i64::try_from(deleted).unwrap_or(i64::MAX)],
            )
            .await?;
        Ok(())
    }

    /// Clears a source's last error (after it recovered): it stays visible as cleared,
    /// with when it happened and when it cleared.
    pub async fn clear_error(&self, source: &str) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        client
            .execute(
                "update ebis.source_status set cleared_error = last_error,
                   cleared_error_at = last_error_at, error_cleared_at = now(),
                   last_error = null, last_error_at = null
                 where source = $1 and last_error is not null",
                &[&source],
            )
            .await?;
        Ok(())
    }

    /// Asks a stopped source to start over from a new head at its next run (`ebis
    /// reset-source`): refused while a process holds the source's lease, whose row stays
    /// locked meanwhile so no process takes it.
    pub async fn request_reset(
        &self,
        source: &str,
        reason: &str,
    ) -> Result<ResetOutcome, WarehouseError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "insert into ebis.lease (source, holder, epoch, acquired_at, renewed_at, expires_at)
             values ($1, 'reset-source', 0, clock_timestamp(), clock_timestamp(), '-infinity')
             on conflict (source) do nothing",
            &[&source],
        )
        .await?;
        let held: bool = tx
            .query_one(
                "select expires_at > clock_timestamp() from ebis.lease where source = $1 for update",
                &[&source],
            )
            .await?
            .get(0);
        if held {
            tx.rollback().await?;
            return Ok(ResetOutcome::Running);
        }
        let n = tx
            .execute(
                "update ebis.checkpoint set reset_requested = $2 where source = $1",
                &[&source, &reason],
            )
            .await?;
        tx.commit().await?;
        Ok(if n == 0 {
            ResetOutcome::NeverRun
        } else {
            ResetOutcome::Requested
        })
    }
}

/// What `ebis reset-source` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetOutcome {
    /// The next run starts over from a new head.
    Requested,
    /// A process is capturing the source: nothing was changed.
    Running,
    /// The source has no stored position: its next run snapshots from the start anyway.
    NeverRun,
}
