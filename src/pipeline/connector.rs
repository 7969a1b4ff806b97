//! The one place ebis dispatches on a source's dialect: a closed enum over the connector
//! crates, built from the config and the mappings' table plans, implementing [`Source`];
//! and each connector's setup (scripts for the DBA, applying them, removal). A new
//! connector adds a variant here and nothing elsewhere in the app.

use crate::config::{CaptureMode, Dialect, SourceConfig};
use crate::mapping::MappingSet;
use ebis_mysql::MysqlSource;
use ebis_oracle::OracleSource;
use ebis_postgres::PostgresSource;
use ebis_source::{
    Batch, Capture, Change, Clock, GapRules, KeyEntry, Position, SetupRequest, SetupScript, Source,
    SourceError, TablePlan, Value,
};
use ebis_sqlserver::SqlServerSource;

/// A connector of any supported dialect.
pub enum AnySource {
    /// MySQL or MariaDB.
    Mysql(MysqlSource),
    /// Microsoft SQL Server.
    Sqlserver(SqlServerSource),
    /// Oracle.
    Oracle(OracleSource),
    /// PostgreSQL and its derivatives (boxed: its logical stream's state is large).
    Postgres(Box<PostgresSource>),
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

/// The capture settings a connector receives.
pub fn capture(cfg: &SourceConfig) -> Capture {
    match &cfg.capture {
        CaptureMode::Changelog {
            gap_timeout,
            gap_watch,
            purge_every,
        } => Capture::Changelog {
            gaps: GapRules {
                timeout: *gap_timeout,
                watch: *gap_watch,
            },
            purge: purge_every.is_some(),
        },
        CaptureMode::Timestamp { overlap, .. } => Capture::Timestamp { overlap: *overlap },
        CaptureMode::ChangeTracking => Capture::ChangeTracking,
        CaptureMode::Binlog { server_id } => Capture::Binlog {
            server_id: server_id
                .unwrap_or_else(|| binlog_server_id(&cfg.name, &cfg.connection.url)),
        },
        CaptureMode::Logical { slot, publication } => Capture::Logical {
            slot: slot.clone().unwrap_or_else(|| default_slot(&cfg.name)),
            publication: publication
                .clone()
                .unwrap_or_else(|| default_slot(&cfg.name)),
        },
    }
}

/// The replication slot (and publication) a logical source uses when the config names
/// none: `ebis_<source>`, cut to PostgreSQL's 63 characters.
pub fn default_slot(source: &str) -> String {
    let mut name = format!("ebis_{source}");
    name.truncate(63);
    name
}

/// The replica id a binlog source registers with when the config names none: one of
/// 2^24 ids from 0x4500_0000 up, chosen by the source's name and connection URL (FNV-1a),
/// so two sources (or two deployments) reading the same server do not take each other's
/// place, and ids a DBA's own replicas usually have (small numbers) are left alone.
pub fn binlog_server_id(source: &str, url: &str) -> u32 {
    let hash = source
        .bytes()
        .chain([0])
        .chain(url.bytes())
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    0x4500_0000 | (hash & 0x00ff_ffff)
}

/// The source's password from the environment.
fn password(cfg: &SourceConfig) -> Result<Option<String>, SourceError> {
    Ok(cfg
        .connection
        .password()
        .map_err(SourceError::Query)?
        .map(|s| s.expose().to_owned()))
}

impl AnySource {
    /// Opens (lazily) the connector of a source.
    pub fn open(cfg: &SourceConfig, plans: Vec<TablePlan>) -> Result<AnySource, SourceError> {
        let password = password(cfg)?;
        match cfg.dialect {
            Dialect::Mysql => Ok(AnySource::Mysql(MysqlSource::new(
                ebis_mysql::MysqlOptions {
                    name: cfg.name.clone(),
                    url: cfg.connection.url.clone(),
                    password,
                    tls: cfg.connection.tls.clone(),
                    plans,
                    capture: capture(cfg),
                },
            )?)),
            Dialect::Sqlserver => Ok(AnySource::Sqlserver(SqlServerSource::new(
                ebis_sqlserver::SqlServerOptions {
                    name: cfg.name.clone(),
                    url: cfg.connection.url.clone(),
                    password,
                    plans,
                    capture: capture(cfg),
                },
            )?)),
            Dialect::Oracle => Ok(AnySource::Oracle(OracleSource::new(
                ebis_oracle::OracleOptions {
                    name: cfg.name.clone(),
                    url: cfg.connection.url.clone(),
                    password,
                    plans,
                    capture: capture(cfg),
                },
            )?)),
            Dialect::Postgres => Ok(AnySource::Postgres(Box::new(PostgresSource::new(
                ebis_postgres::PostgresOptions {
                    name: cfg.name.clone(),
                    url: cfg.connection.url.clone(),
                    password,
                    tls: cfg.connection.tls.clone(),
                    plans,
                    capture: capture(cfg),
                },
            )?))),
        }
    }
}

impl AnySource {
    /// The connector, told to make nothing at the source (for `check`): where capture
    /// would make what it lacks (a PostgreSQL replication slot that was dropped), it says
    /// so instead.
    pub fn reading_only(self) -> AnySource {
        match self {
            AnySource::Postgres(mut s) => {
                s.reading_only();
                AnySource::Postgres(s)
            }
            other => other,
        }
    }
}

/// Forwards a [`Source`] method to the connector. Each connector's future is boxed: the
/// drivers' futures are large, and nested inline in the pipeline's they would pass a
/// worker thread's stack in unoptimized builds.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnySource::Mysql($s) => Box::pin(async move { $call }).await,
            AnySource::Sqlserver($s) => Box::pin(async move { $call }).await,
            AnySource::Oracle($s) => Box::pin(async move { $call }).await,
            AnySource::Postgres($s) => Box::pin(async move { $call }).await,
        }
    };
}

impl Source for AnySource {
    async fn check(&mut self) -> Result<(), SourceError> {
        each!(self, s => s.check().await)
    }

    async fn head(&mut self) -> Result<Position, SourceError> {
        each!(self, s => s.head().await)
    }

    async fn snapshot_chunk(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        each!(self, s => s.snapshot_chunk(table, after, limit, version).await)
    }

    async fn changes(&mut self, after: &Position, limit: usize) -> Result<Batch, SourceError> {
        each!(self, s => s.changes(after, limit).await)
    }

    async fn keys(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        each!(self, s => s.keys(table, after, limit).await)
    }

    async fn rows_by_keys(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        each!(self, s => s.rows_by_keys(table, keys, version).await)
    }

    async fn clock(&mut self) -> Result<Clock, SourceError> {
        each!(self, s => s.clock().await)
    }

    async fn acknowledge(&mut self, stored: &Position) -> Result<u64, SourceError> {
        each!(self, s => s.acknowledge(stored).await)
    }

    async fn count(&mut self, table: &str) -> Result<u64, SourceError> {
        each!(self, s => s.count(table).await)
    }

    async fn backlog(&mut self) -> Result<Option<u64>, SourceError> {
        each!(self, s => s.backlog().await)
    }

    async fn column_types(&mut self, table: &str) -> Result<Vec<(String, String)>, SourceError> {
        each!(self, s => s.column_types(table).await)
    }

    async fn capture_notes(&mut self) -> Result<Vec<String>, SourceError> {
        each!(self, s => s.capture_notes().await)
    }

    async fn close(self) {
        each!(self, s => s.close().await)
    }
}

/// The connector side of `setup-source`: its scripts, and running them.
pub mod setup {
    use super::*;

    /// The setup (`remove`: the removal) of a source's capture, in its dialect.
    pub fn script(
        cfg: &SourceConfig,
        req: &SetupRequest<'_>,
        remove: bool,
    ) -> Result<SetupScript, String> {
        match cfg.dialect {
            Dialect::Mysql if remove => ebis_mysql::setup::removal(req),
            Dialect::Mysql => ebis_mysql::setup::script(req),
            Dialect::Sqlserver if remove => ebis_sqlserver::setup::removal(req),
            Dialect::Sqlserver => ebis_sqlserver::setup::script(req),
            Dialect::Oracle if remove => ebis_oracle::setup::removal(req),
            Dialect::Oracle => ebis_oracle::setup::script(req),
            Dialect::Postgres if remove => ebis_postgres::setup::removal(req),
            Dialect::Postgres => ebis_postgres::setup::script(req),
        }
    }

    /// What the reviewed script must add, as the source's own account finds it (capture
    /// a rename left behind, say).
    pub async fn review_note(cfg: &SourceConfig, req: &SetupRequest<'_>) -> String {
        let password = match password(cfg) {
            Ok(p) => p,
            Err(e) => return format!("\n-- Could not look at the source: {e}\n"),
        };
        match cfg.dialect {
            Dialect::Mysql => {
                ebis_mysql::setup::review_note(
                    &cfg.connection.url,
                    password.as_deref(),
                    &cfg.connection.tls,
                    req,
                )
                .await
            }
            _ => String::new(),
        }
    }

    /// Runs statements with an account, then whatever repair the connector does; one line
    /// per repair.
    pub async fn apply(
        cfg: &SourceConfig,
        url: &str,
        password: Option<&str>,
        statements: &[String],
        plans: &[TablePlan],
    ) -> Result<Vec<String>, SourceError> {
        match cfg.dialect {
            Dialect::Mysql => {
                ebis_mysql::setup::apply(url, password, &cfg.connection.tls, statements, plans)
                    .await
            }
            Dialect::Sqlserver => {
                ebis_sqlserver::setup::apply(url, password, statements, plans).await
            }
            Dialect::Oracle => ebis_oracle::setup::apply(url, password, statements, plans).await,
            Dialect::Postgres => {
                ebis_postgres::setup::apply(url, password, &cfg.connection.tls, statements).await
            }
        }
    }

    /// Whether an error says the account may not do this.
    pub fn denied(cfg: &SourceConfig, message: &str) -> bool {
        match cfg.dialect {
            Dialect::Mysql => ebis_mysql::setup::denied(message),
            Dialect::Sqlserver => ebis_sqlserver::setup::denied(message),
            Dialect::Oracle => ebis_oracle::setup::denied(message),
            Dialect::Postgres => ebis_postgres::setup::denied(message),
        }
    }

    /// An example privileged URL for the dialect.
    pub fn admin_url_example(cfg: &SourceConfig) -> &'static str {
        match cfg.dialect {
            Dialect::Mysql => ebis_mysql::setup::ADMIN_URL_EXAMPLE,
            Dialect::Sqlserver => ebis_sqlserver::setup::ADMIN_URL_EXAMPLE,
            Dialect::Oracle => ebis_oracle::setup::ADMIN_URL_EXAMPLE,
            Dialect::Postgres => ebis_postgres::setup::ADMIN_URL_EXAMPLE,
        }
    }
}
