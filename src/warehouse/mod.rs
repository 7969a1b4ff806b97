//! The PostgreSQL warehouse: connecting, migrating, and (in `apply`) writing batches.
//!
//! Every write that moves a source forward happens in one transaction together with that
//! source's checkpoint. Errors are classified here, once, as retryable or fatal; their
//! messages carry SQLSTATE and the server's message (never its DETAIL, which quotes keys),
//! with quoted values scrubbed.

mod apply;
mod base;
mod batch;
mod copy;
mod keyscan;
mod layout;
mod lease;
mod migrate;
mod settings;
mod state;

pub use apply::SourceMeta;
pub(crate) use apply::upsert_statement;
pub use base::{BaseStatus, BaseWork, BaseWorkKind, LONG_DRAIN};
pub use batch::{
    Applied, ApplyBatch, Checkpoint, KindBatch, RawRow, StagedDelete, StagedRecord,
    StagedRejection, StatusUpdate,
};
pub use keyscan::KeyScan;
pub use lease::{Lease, LeaseHolder, LeaseKeeper, holder_name};
pub use migrate::{MIGRATIONS, MigrateReport, Migration, migrate, pending};
pub use settings::ServerSettings;
pub use state::{ResetOutcome, StoredCheckpoint};

use crate::config::ConnectionConfig;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;
use thiserror::Error;

/// A warehouse failure.
#[derive(Debug, Error)]
pub enum WarehouseError {
    /// The URL or password could not be used.
    #[error("warehouse configuration: {0}")]
    Config(String),
    /// Could not reach the server, or the connection broke.
    #[error("warehouse unreachable: {0}")]
    Unreachable(String),
    /// The server refused a statement.
    #[error("warehouse error {code}: {message}")]
    Db {
        /// SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
        /// The column the error is about, when the server names one.
        column: Option<String>,
    },
    /// A migration problem (changed or unknown applied migration, failed script).
    #[error("{0}")]
    Migration(String),
    /// This process no longer holds the source's lease (it expired, or another process
    /// took the source over): nothing was written.
    #[error(
        "the lease of source {0} is no longer this process's: another ebis process may capture it now"
    )]
    LeaseLost(String),
}

impl WarehouseError {
    /// True when trying again later may succeed (connection loss, server restart,
    /// serialization failure, deadlock).
    pub fn is_retryable(&self) -> bool {
        match self {
            WarehouseError::Unreachable(_) => true,
            WarehouseError::Db { code, .. } => {
                // 40001 serialization_failure, 40P01 deadlock, 57P0x shutdown/crash,
                // 08xxx connection exceptions, 53300 too many connections.
                code == "40001"
                    || code == "40P01"
                    || code.starts_with("57P")
                    || code.starts_with("08")
                    || code == "53300"
                    || code == "55P03"
                    // invalid authorization: a password rotated at the server before
                    // (or after) its file; each new connection reads it again
                    || code.starts_with("28")
            }
            _ => false,
        }
    }
}

impl WarehouseError {
    /// True when a unique key was already taken.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, WarehouseError::Db { code, .. } if code == "23505")
    }

    /// True when the server refused a value of the rows being written — bad data
    /// (SQLSTATE class 22: invalid encoding, out-of-range date or number, …), a NOT NULL
    /// or CHECK violation, or a value too large for an index — rather than the statement
    /// or the connection: the row goes to quarantine and the rest of the batch applies.
    pub fn is_refused_value(&self) -> bool {
        match self {
            WarehouseError::Db { code, .. } => {
                code.starts_with("22") || code == "23502" || code == "23514" || code == "54000"
            }
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for WarehouseError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => WarehouseError::Db {
                code: db.code().code().to_owned(),
                message: ebis_source::scrub_values(db.message()),
                column: db.column().map(str::to_owned),
            },
            // A refused certificate says which check failed.
            None => WarehouseError::Unreachable(ebis_postgres::tls::describe(&e).0),
        }
    }
}

impl From<deadpool_postgres::PoolError> for WarehouseError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(b) => b.into(),
            other => WarehouseError::Unreachable(other.to_string()),
        }
    }
}

/// A pool of warehouse connections.
#[derive(Clone)]
pub struct Warehouse {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The account: its password is read again for every new connection.
    account: ConnectionConfig,
    /// Plain or TLS, as the account's `tls` says.
    connector: ebis_postgres::tls::Connector,
    /// The leases this process's applies must still hold, by source.
    fences: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Lease>>>,
    /// Wakes this process's base drainer between drains ([`Warehouse::wake_drainer`]).
    drainer_wake: std::sync::Arc<tokio::sync::Notify>,
    /// `host:port/database`, for errors that say where the warehouse could not be reached.
    target: String,
    /// The raw rows' column lists this process has numbered (`ebis.raw_layout`).
    layouts: layout::Known,
}

/// Where a connection config points, as `host:port/database`.
fn target_of(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or(""))
}

/// The connection settings with the account's password as it is now (a rotated
/// `password_file` is picked up by the next connection; should it not be readable, the
/// connection goes without and the server's refusal says so).
fn with_current_password(
    pg: &tokio_postgres::Config,
    account: &ConnectionConfig,
) -> tokio_postgres::Config {
    let mut pg = pg.clone();
    match account.password() {
        Ok(Some(pw)) => {
            pg.password(pw.expose());
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "the warehouse password could not be read again"),
    }
    pg
}

/// Opens the pool's connections, each with the password read at that moment.
struct PasswordConnect {
    account: ConnectionConfig,
    connector: ebis_postgres::tls::Connector,
}

impl deadpool_postgres::Connect for PasswordConnect {
    fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let pg = with_current_password(pg, &self.account);
        let connector = self.connector.clone();
        Box::pin(async move { connector.connect(&pg).await })
    }
}

impl Warehouse {
    /// Builds a pool (connections open lazily, so this succeeds while the server is down).
    pub fn new(conn: &ConnectionConfig, max_size: usize) -> Result<Warehouse, WarehouseError> {
        let mut pg = tokio_postgres::Config::from_str(&conn.url).map_err(|e| {
            WarehouseError::Config(format!("bad warehouse URL {}: {e}", conn.display_url()))
        })?;
        // Read once now, so a missing variable or unreadable file stops the start.
        conn.password().map_err(WarehouseError::Config)?;
        if pg.get_application_name().is_none() {
            pg.application_name("ebis");
        }
        pg.connect_timeout(std::time::Duration::from_secs(10));
        let connector = ebis_postgres::tls::Connector::new(&conn.tls, &mut pg)
            .map_err(|e| WarehouseError::Config(format!("warehouse {e}")))?;
        let manager = Manager::from_connect(
            pg.clone(),
            PasswordConnect {
                account: conn.clone(),
                connector: connector.clone(),
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size.max(1))
            .build()
            .map_err(|e| WarehouseError::Config(e.to_string()))?;
        let target = target_of(&pg);
        Ok(Warehouse {
            pool,
            config: pg,
            account: conn.clone(),
            connector,
            fences: Default::default(),
            drainer_wake: Default::default(),
            target,
            layouts: Default::default(),
        })
    }

    /// Tells this process's base drainer that a drain is worth running now (a source's
    /// snapshot ended: its load waits in the queue for it; a catch-up ended: the drainer
    /// waited for it), instead of after its idle wait. Remembered if the drainer is at
    /// work: its next wait ends at once.
    pub fn wake_drainer(&self) {
        self.drainer_wake.notify_one();
    }

    /// Returns once [`Warehouse::wake_drainer`] was called (since the last return).
    pub async fn drainer_woken(&self) {
        self.drainer_wake.notified().await;
    }

    /// A connection outside the pool, for session state that must live as long as the
    /// caller holds it (advisory locks).
    pub async fn dedicated(&self) -> Result<tokio_postgres::Client, WarehouseError> {
        let (client, _) = self
            .connector
            .connect(&with_current_password(&self.config, &self.account))
            .await
            .map_err(|e| self.located(e.into()))?;
        Ok(client)
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, WarehouseError> {
        self.pool.get().await.map_err(|e| self.located(e.into()))
    }

    /// An unreachable-warehouse error that says which server it tried.
    fn located(&self, e: WarehouseError) -> WarehouseError {
        match e {
            WarehouseError::Unreachable(m) => {
                WarehouseError::Unreachable(format!("{}: {m}", self.target))
            }
            other => other,
        }
    }
}
