//! The capture algorithms every connector shares, written once and driven by small
//! driver primitives each connector supplies: no driver, no SQL, no I/O of its own
//! (a wait sleeps between a connector's tries).
//!
//! - [`keys`]: whether the source guarantees a mapped key (a unique index within it, no
//!   nullable column), `schema.table` names.
//! - [`gaps`]: changelog sequence gaps — detected, filled, rolled back, expired and
//!   watched, filled late, abandoned (pure).
//! - [`changelog`]: one changelog poll — entries after the position and in open or
//!   watched gaps, the newest entry per (table, key), the current rows fetched by key
//!   (a row gone is a delete), one version per read — over [`ChangelogReader`].
//! - [`timestamp`]: one timestamp poll — rows after each table's mark up to the source's
//!   clock, the overlap window re-read with rows already returned skipped, one version
//!   stamp per read — over [`TimestampReader`].
//!
//! - [`changelog::VisibleWait`]: for capture from a log (binlog, logical decoding), the
//!   wait until the transactions a batch names are visible to new snapshots, since a
//!   server hands a transaction to log readers a moment before other sessions see it.
//!
//! A connector supplies: reading change-table entries after a sequence number and in
//! ranges, fetching rows by key, reading rows after a mark and in a modified-time range,
//! the source's clock, and (where the server can tell) when every open transaction began.
//! Paging a table by key and listing keys are connector primitives of `Source` itself.

pub mod changelog;
pub mod gaps;
pub mod keys;
pub mod timestamp;

pub use changelog::{ChangeEntry, ChangelogReader};
pub use gaps::GapRules;
pub use timestamp::{OverlapWindow, TimestampReader};

#[cfg(test)]
mod test_support {
    use std::future::Future;

    /// Runs a future over an in-memory reader, which never waits: one poll completes it.
    pub fn block_on<F: Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the fake reader never waits"),
        }
    }
}
