//! The running pipeline: a task per enabled source that snapshots, then streams changes
//! through the mappings into the warehouse, retrying what can be retried and stopping
//! only the failing source on what cannot.

mod base;
pub mod connector;
mod keyscan;
mod mapper;
mod runner;
pub mod snapshot;

pub use base::{DEFER_DURING_CATCH_UP, drain_base};
pub use connector::{AnySource, binlog_server_id, plans};
pub use mapper::map_changes;
pub use runner::{RunSettings, run_source, run_sources};

use crate::warehouse::WarehouseError;
use ebis_source::SourceError;
use thiserror::Error;
use tokio::sync::watch;

/// Why a source stopped.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The source database.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The warehouse.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// Something in the configuration or stored state that needs an operator.
    #[error("{0}")]
    Setup(String),
    /// Shutdown was requested.
    #[error("stopped")]
    Stopped,
}

impl PipelineError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_retryable(),
            PipelineError::Warehouse(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// A short, bounded name of what went wrong (a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            PipelineError::Source(e) => match e {
                SourceError::Unreachable(_) => "source_unreachable",
                SourceError::Transient(_) => "source_transient",
                SourceError::MissingTable { .. } | SourceError::MissingColumn { .. } => {
                    "source_schema"
                }
                SourceError::Key { .. } | SourceError::Expression { .. } => "mapping",
                SourceError::CaptureNotInstalled(_) => "capture_not_installed",
                SourceError::BadPosition(_) | SourceError::PositionExpired(_) => "position",
                _ => "source_query",
            },
            PipelineError::Warehouse(e) => match e {
                WarehouseError::Unreachable(_) => "warehouse_unreachable",
                WarehouseError::LeaseLost(_) => "lease_lost",
                WarehouseError::Db { .. } => "warehouse_error",
                _ => "warehouse_setup",
            },
            PipelineError::Setup(_) => "setup",
            PipelineError::Stopped => "stopped",
        }
    }
}

/// A shutdown signal shared by all source tasks.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// True once shutdown was requested.
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps for `d`, returning early (true) when shutdown is requested.
    pub async fn sleep(&mut self, d: std::time::Duration) -> bool {
        if self.requested() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.requested(),
            _ = self.0.changed() => true,
        }
    }
}

impl ShutdownTrigger {
    /// Asks every task to stop after its current batch.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}
