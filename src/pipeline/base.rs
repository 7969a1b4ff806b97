//! The enterprise base's drainer: while `ebis run` captures, one background task takes
//! the statements the exchange tables' triggers queued into the base, many at a time, so
//! no apply waits for the base and the base keeps up (see migration 0019).

use super::Shutdown;
use crate::warehouse::{LONG_DRAIN, Warehouse};
use std::time::Duration;

/// Statements taken per drain transaction.
pub const DRAIN_BATCH: i32 = 500;

/// The pause between drains while the queue is short. Taking in many statements at once
/// costs far less per record than a few at a time (a refresh of more than 5,000
/// enterprises runs set-wise), so the base lags capture by about this much, and the
/// comparison, which settles the queue first, never sees the lag.
pub const DRAIN_PAUSE: Duration = Duration::from_secs(1);

/// How often the drainer has the warehouse's statistics refreshed where tables changed
/// much (`ebis.analyze_stale()`, migration 0021: autovacuum may be off or behind a bulk
/// load, and the base's set-wise refresh plans by them).
pub const ANALYZE_EVERY: Duration = Duration::from_secs(10);

/// How long queued statements may wait while a streaming source catches up a backlog
/// (it reads full batches): the drains would take the cores its applies need, and one
/// drain of what a minute queued costs less per enterprise than many small ones. The
/// base is at most about this much behind meanwhile (`ebis status` shows the source as
/// catching up); a comparison run settles the queue first whatever its age.
pub const DEFER_DURING_CATCH_UP: Duration = Duration::from_secs(60);

/// After a drain failed, how long drains take the queue statement by statement instead of
/// rebuilding the base for a large queue: a record the base refuses fails every rebuild
/// (a rebuild reads every record) until the statement holding it is parked.
pub const NO_REBUILD_AFTER_FAILURE: Duration = Duration::from_secs(600);

/// Drains the base's queue until `shutdown`: again at once while the queue is long,
/// every `idle` while it is short, and not while a source catches up a backlog (up to
/// [`DEFER_DURING_CATCH_UP`]); a source's first load waits in the queue until it ends
/// (migration 0048: a drain leaves a loading source's statements queued, and takes
/// nothing worth a rebuild while any load runs); the end of a snapshot or of a catch-up
/// wakes it ([`Warehouse::wake_drainer`]); statistics refreshed first, every [`ANALYZE_EVERY`].
/// When a drain fails for a reason other than the connection, the statements are taken
/// one at a time (and no rebuild is tried for [`NO_REBUILD_AFTER_FAILURE`]), and one the
/// base still refuses is parked with the server's reason (`core.pending_parked`), so one
/// bad record never stalls the base; after a lost connection, a second later.
pub async fn drain_base(wh: Warehouse, mut shutdown: Shutdown, idle: Duration) {
    let idle = idle.max(DRAIN_PAUSE);
    let mut analyzed: Option<std::time::Instant> = None;
    let mut failed: Option<std::time::Instant> = None;
    loop {
        if analyzed.is_none_or(|t| t.elapsed() >= ANALYZE_EVERY) {
            analyzed = Some(std::time::Instant::now());
            if let Err(e) = wh.analyze_stale().await {
                tracing::warn!(error = %e, "warehouse statistics: analyze failed (retrying)");
            }
        }
        let deferred = match wh.defer_drain(DEFER_DURING_CATCH_UP).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "enterprise base: reading the queue failed (retrying)");
                false
            }
        };
        let wait = if deferred {
            idle
        } else {
            let rebuild_allowed = failed.is_none_or(|t| t.elapsed() >= NO_REBUILD_AFTER_FAILURE);
            let started = std::time::Instant::now();
            let drained = wh.drain_base(DRAIN_BATCH, rebuild_allowed).await;
            if let Ok(n) = drained
                && n > 0
                && started.elapsed() >= LONG_DRAIN
            {
                // A rebuild, or a large catch-up's refresh: worth a line (short ones are not).
                tracing::info!(
                    statements = n,
                    seconds = started.elapsed().as_secs_f64(),
                    "enterprise base: took queued statements in"
                );
            }
            match drained {
                Ok(n) if n >= i64::from(DRAIN_BATCH) => Duration::ZERO,
                Ok(_) => idle,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "enterprise base: drain failed (retrying)");
                    Duration::from_secs(1)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "enterprise base: a drain failed; taking statements one at a time");
                    failed = Some(std::time::Instant::now());
                    one_at_a_time(&wh).await
                }
            }
        };
        if shutdown.requested() {
            return;
        }
        if !wait.is_zero() {
            // A snapshot or a catch-up that ended wakes it: its load's rebuild, or its
            // refresh, starts then, not up to `idle` (the poll interval) later.
            tokio::select! {
                stop = shutdown.sleep(wait) => if stop { return },
                () = wh.drainer_woken() => {}
            }
        }
    }
}

/// Takes in the oldest statement alone; parks it when the base refuses it. The wait
/// before the next drain.
async fn one_at_a_time(wh: &Warehouse) -> Duration {
    match wh.drain_base(1, false).await {
        Ok(_) => Duration::ZERO,
        Err(e) if e.is_retryable() => Duration::from_secs(1),
        Err(e) => match wh.park_oldest(&e.to_string()).await {
            Ok(Some(seq)) => {
                tracing::warn!(statement = seq, error = %e, "enterprise base: a queued statement it refuses is parked in core.pending_parked");
                Duration::ZERO
            }
            Ok(None) => Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, "enterprise base: parking a refused statement failed (retrying)");
                Duration::from_secs(1)
            }
        },
    }
}
