//! The one place the pipeline dispatches on a source's dialect: a closed enum over the
//! connector crates, built from the config and the mappings' table plans.

use crate::config::{CaptureMode, Dialect, SourceConfig};
use crate::mapping::MappingSet;
use ebis_mysql::{Capture, GapRules, MysqlOptions, MysqlSource};
use ebis_source::{
    Batch, Change, Clock, KeyEntry, Position, Source, SourceError, TablePlan, Value,
};

/// A connector of any supported dialect.
pub enum AnySource {
    /// MySQL or MariaDB.
    Mysql(MysqlSource),
}

/// The tables a source's mappings read, with the config's default modified column.
pub fn plans(cfg: &SourceConfig, mappings: &MappingSet) -> Vec<TablePlan> {
    let mut plans = mappings.plans();
    if let CaptureMode::Timestamp {
        modified_column: Some(default),
        ..
    } = &cfg.capture
    {
        for p in &mut plans {
            if p.modified_column.is_none() {
                p.modified_column = Some(default.clone());
                p.columns.push(default.clone());
            }
        }
    }
    plans
}

impl AnySource {
    /// Opens (lazily) the connector of a source.
    pub fn open(cfg: &SourceConfig, plans: Vec<TablePlan>) -> Result<AnySource, SourceError> {
        let password = cfg
            .connection
            .password()
            .map_err(SourceError::Query)?
            .map(|s| s.expose().to_owned());
        match cfg.dialect {
            Dialect::Mysql => Ok(AnySource::Mysql(MysqlSource::new(MysqlOptions {
                name: cfg.name.clone(),
                url: cfg.connection.url.clone(),
                password,
                plans,
                capture: match &cfg.capture {
                    CaptureMode::Changelog {
                        gap_timeout,
                        gap_watch,
                        ..
                    } => Capture::Changelog {
                        gaps: GapRules {
                            timeout: *gap_timeout,
                            watch: *gap_watch,
                        },
                    },
                    CaptureMode::Timestamp { overlap, .. } => {
                        Capture::Timestamp { overlap: *overlap }
                    }
                },
            })?)),
            other => Err(SourceError::Query(format!(
                "dialect {} has no connector in this build yet (only mysql)",
                other.name()
            ))),
        }
    }

    /// See [`Source::check`].
    pub async fn check(&mut self) -> Result<(), SourceError> {
        match self {
            AnySource::Mysql(s) => s.check().await,
        }
    }

    /// See [`Source::head`].
    pub async fn head(&mut self) -> Result<Position, SourceError> {
        match self {
            AnySource::Mysql(s) => s.head().await,
        }
    }

    /// See [`Source::snapshot_chunk`].
    pub async fn snapshot_chunk(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        match self {
            AnySource::Mysql(s) => s.snapshot_chunk(table, after, limit, version).await,
        }
    }

    /// See [`Source::changes`].
    pub async fn changes(&mut self, after: &Position, limit: usize) -> Result<Batch, SourceError> {
        match self {
            AnySource::Mysql(s) => s.changes(after, limit).await,
        }
    }

    /// See [`Source::keys`].
    pub async fn keys(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        match self {
            AnySource::Mysql(s) => s.keys(table, after, limit).await,
        }
    }

    /// See [`Source::rows_by_keys`].
    pub async fn rows_by_keys(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        match self {
            AnySource::Mysql(s) => s.rows_by_keys(table, keys, version).await,
        }
    }

    /// See [`Source::clock`].
    pub async fn clock(&mut self) -> Result<Clock, SourceError> {
        match self {
            AnySource::Mysql(s) => s.clock().await,
        }
    }

    /// See [`Source::purge`].
    pub async fn purge(&mut self, stored: &Position) -> Result<u64, SourceError> {
        match self {
            AnySource::Mysql(s) => s.purge(stored).await,
        }
    }

    /// Each column of a planned table with its data type.
    pub async fn column_types(
        &mut self,
        table: &str,
    ) -> Result<Vec<(String, String)>, SourceError> {
        match self {
            AnySource::Mysql(s) => s.column_types(table).await,
        }
    }

    /// Rows in a table, for progress.
    pub async fn count(&mut self, table: &str) -> Result<u64, SourceError> {
        match self {
            AnySource::Mysql(s) => s.count(table).await,
        }
    }

    /// Releases connections.
    pub async fn close(self) {
        match self {
            AnySource::Mysql(s) => s.close().await,
        }
    }
}
