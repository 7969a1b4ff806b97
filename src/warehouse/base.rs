//! The enterprise base's queue (migration 0019): the exchange tables' triggers queue what
//! each statement touched; these calls bring the base up to date with it.

use super::{Warehouse, WarehouseError};
use chrono::{DateTime, Utc};

/// How far behind the enterprise base is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaseStatus {
    /// Statements queued and not yet taken in.
    pub queued: i64,
    /// When the oldest of them was queued.
    pub oldest: Option<DateTime<Utc>>,
    /// When a drain last emptied the queue.
    pub drained_at: Option<DateTime<Utc>>,
    /// Statements the base could not take in, parked with their reasons.
    pub parked: i64,
}

impl Warehouse {
    /// Takes up to `max` queued statements into the base — or, when `rebuild_allowed`
    /// and the queue is large against the base, the whole queue by rebuilding the base
    /// (migration 0024); how many it took, or -1 when another drainer is at work (it
    /// never waits for one).
    pub async fn drain_base(&self, max: i32, rebuild_allowed: bool) -> Result<i64, WarehouseError> {
        let client = self.client().await?;
        Ok(client
            .query_one("select core.drain($1, $2)", &[&max, &rebuild_allowed])
            .await?
            .get(0))
    }

    /// True when draining should wait: a source's first snapshot is running and the
    /// oldest queued statement is younger than `max_wait`.
    pub async fn defer_drain(&self, max_wait: std::time::Duration) -> Result<bool, WarehouseError> {
        let client = self.client().await?;
        let secs = max_wait.as_secs_f64();
        Ok(client
            .query_one(
                "select exists (select 1 from ebis.source_status where state = 'snapshotting')
                        and coalesce((select min(queued_at) from core.pending) > clock_timestamp() - make_interval(secs => $1), true)",
                &[&secs],
            )
            .await?
            .get(0))
    }

    /// Takes the whole queue in now (waiting for a drainer at work), with statistics
    /// refreshed first: afterwards the base holds every record applied before the call.
    pub async fn settle_base(&self) -> Result<i64, WarehouseError> {
        self.analyze_stale().await?;
        let client = self.client().await?;
        Ok(client.query_one("select core.settle()", &[]).await?.get(0))
    }

    /// Analyzes the warehouse tables that changed by more than autovacuum's threshold
    /// since they were last analyzed; their names.
    pub async fn analyze_stale(&self) -> Result<Vec<String>, WarehouseError> {
        let client = self.client().await?;
        Ok(client
            .query_one("select ebis.analyze_stale()", &[])
            .await?
            .get(0))
    }

    /// Parks the oldest queued statement, which the base refuses, with `reason`; its
    /// number, or `None` when a drainer is at work or nothing is queued.
    pub async fn park_oldest(&self, reason: &str) -> Result<Option<i64>, WarehouseError> {
        let client = self.client().await?;
        let parked: Option<i64> = client
            .query_one("select core.park_oldest($1)", &[&reason])
            .await?
            .get(0);
        Ok(parked.filter(|n| *n >= 0))
    }

    /// The queue's length and age.
    pub async fn base_status(&self) -> Result<BaseStatus, WarehouseError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "select (select count(*) from core.pending),
                        (select min(queued_at) from core.pending),
                        (select max(drained_at) from core.base_complete),
                        (select count(*) from core.pending_parked)",
                &[],
            )
            .await?;
        Ok(BaseStatus {
            queued: row.get(0),
            oldest: row.get(1),
            drained_at: row.get(2),
            parked: row.get(3),
        })
    }
}
