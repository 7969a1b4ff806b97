//! Connector errors, classified once: retryable (the pipeline backs off and tries again)
//! or fatal (the pipeline stops that source and shows the error).
//!
//! Messages name tables and columns, never row values.

use thiserror::Error;

/// Why a source read failed.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The connection was refused, lost or timed out; the server may be restarting.
    #[error("source unreachable: {0}")]
    Unreachable(String),
    /// A transient server condition: deadlock, lock wait timeout, too many connections.
    #[error("transient source error: {0}")]
    Transient(String),
    /// A table a mapping reads does not exist (or is not visible to this account).
    #[error("source table {table} does not exist or is not readable")]
    MissingTable {
        /// The table.
        table: String,
    },
    /// A column a mapping reads does not exist.
    #[error("source table {table} has no column {column}")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// Change capture is not installed or not usable on this table.
    #[error("change capture not set up: {0}")]
    CaptureNotInstalled(String),
    /// The stored position does not fit this source (another mode, or corrupted).
    #[error("position does not fit this source: {0}")]
    BadPosition(String),
    /// Any other error the server reported; fatal unless it is known to be transient.
    #[error("source query failed: {0}")]
    Query(String),
}

impl SourceError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable(_) | SourceError::Transient(_)
        )
    }
}
