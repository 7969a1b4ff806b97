//! The enterprise base's drainer: while `ebis run` captures, one background task takes
//! the statements the exchange tables' triggers queued into the base, many at a time, so
//! no apply waits for the base and the base keeps up (see migration 0019).

use super::Shutdown;
use crate::warehouse::Warehouse;
use std::time::Duration;

/// Statements taken per drain transaction.
pub const DRAIN_BATCH: i32 = 500;

/// Drains the base's queue until `shutdown`: again at once while the queue is long,
/// every `idle` while it is short, and after an error a second later.
pub async fn drain_base(wh: Warehouse, mut shutdown: Shutdown, idle: Duration) {
    loop {
        let wait = match wh.drain_base(DRAIN_BATCH).await {
            Ok(n) if n >= i64::from(DRAIN_BATCH) => Duration::ZERO,
            Ok(_) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "enterprise base: drain failed (retrying)");
                Duration::from_secs(1)
            }
        };
        if shutdown.requested() || (!wait.is_zero() && shutdown.sleep(wait).await) {
            return;
        }
    }
}
