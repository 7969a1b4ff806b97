//! The enterprise base's drainer: while `ebis run` captures, one background task takes
//! the statements the exchange tables' triggers queued into the base, many at a time, so
//! no apply waits for the base and the base keeps up (see migration 0019).

use super::Shutdown;
use crate::warehouse::Warehouse;
use std::time::Duration;

/// Statements taken per drain transaction.
pub const DRAIN_BATCH: i32 = 500;

/// The pause between drains while the queue is short. Taking in many statements at once
/// costs far less per record than a few at a time (a refresh of more than 5,000
/// enterprises runs set-wise), so the base lags capture by about this much, and the
/// comparison, which settles the queue first, never sees the lag.
pub const DRAIN_PAUSE: Duration = Duration::from_secs(1);

/// Drains the base's queue until `shutdown`: again at once while the queue is long,
/// every `idle` while it is short, and after an error a second later.
pub async fn drain_base(wh: Warehouse, mut shutdown: Shutdown, idle: Duration) {
    let idle = idle.max(DRAIN_PAUSE);
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
