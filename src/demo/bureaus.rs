//! The four bureau databases of the demo: created, loaded with the simulated world in one
//! go, then changed row by row with each bureau's own SQL as the world changes.
//!
//! Local tax writes over a latin1 connection, so its GBK bytes land in its latin1 columns
//! untouched — as the era's applications did.

use super::native::{NativeRow, Rows, table};
use crate::config::ConnectionConfig;
use crate::indicators::Bureau;
use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value as My};

/// Database name of a bureau: `<prefix>_<bureau>` (the demo uses `ebis_demo`).
pub fn database(prefix: &str, bureau: Bureau) -> String {
    format!("{prefix}_{}", bureau.code())
}

/// Connections to the four bureau databases.
pub struct Bureaus {
    pools: Vec<(Bureau, Pool)>,
    /// The account on each database (for the pipeline config).
    pub conns: Vec<(Bureau, ConnectionConfig)>,
}

/// A pool on a MySQL/MariaDB account (its password from the environment) whose
/// connections start with `names` (`SET NAMES …`), over TCP as the URL says.
pub fn pool_of(conn: &ConnectionConfig, names: &str) -> Result<Pool> {
    let mut opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&conn.url)?)
        .setup(vec![names.to_owned()])
        .prefer_socket(Some(false));
    if let Some(pw) = conn.password().map_err(anyhow::Error::msg)? {
        opts = opts.pass(Some(pw.expose().to_owned()));
    }
    Ok(Pool::new(opts))
}

impl Bureaus {
    /// (Re)creates the four databases `<prefix>_<bureau>` with the reference schemas.
    pub async fn create(admin: &ConnectionConfig, prefix: &str) -> Result<Bureaus> {
        let admin_pool = pool_of(admin, "SET NAMES utf8mb4")?;
        let mut c = admin_pool
            .get_conn()
            .await
            .context("connecting to MariaDB")?;
        let mut pools = Vec::new();
        let mut conns = Vec::new();
        for b in Bureau::ALL {
            let db = database(prefix, b);
            c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
                .await?;
            c.query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
                .await?;
            let conn = admin.with_database(&db);
            let names = if b == Bureau::Ltax {
                "SET NAMES latin1"
            } else {
                "SET NAMES utf8mb4"
            };
            let pool = pool_of(&conn, names)?;
            let mut bc = pool.get_conn().await?;
            for s in crate::assets::schema_statements(b.code()) {
                bc.query_drop(s).await?;
            }
            pools.push((b, pool));
            conns.push((b, conn));
        }
        drop(c);
        let _ = admin_pool.disconnect().await;
        Ok(Bureaus { pools, conns })
    }

    fn pool(&self, b: Bureau) -> &Pool {
        self.pools
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, p)| p)
            .unwrap_or(&self.pools[0].1)
    }

    /// The account on a bureau's database.
    pub fn conn(&self, b: Bureau) -> &ConnectionConfig {
        self.conns
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, c)| c)
            .unwrap_or(&self.conns[0].1)
    }

    /// Bulk-inserts rows (the initial load, before capture is installed).
    pub async fn load(&self, rows: &Rows) -> Result<u64> {
        let mut n = 0;
        for (name, list) in rows {
            let t = table(name);
            let mut c = self.pool(t.bureau).get_conn().await?;
            for chunk in list.chunks(500) {
                let cols = columns(&chunk[0]);
                let values: Vec<String> = chunk.iter().map(literal_row).collect();
                c.query_drop(format!(
                    "INSERT INTO {name} ({cols}) VALUES {}",
                    values.join(", ")
                ))
                .await
                .with_context(|| format!("loading {name}"))?;
                n += chunk.len() as u64;
            }
        }
        Ok(n)
    }

    /// Loads a whole simulated world, a slice of enterprises at a time (bounded memory).
    pub async fn load_world(&self, world: &super::world::World) -> Result<u64> {
        let mut n = 0;
        for slice in world.enterprises.chunks(5000) {
            n += self.load(&super::native::rows_of(slice)).await?;
        }
        n += self
            .load(&super::native::unlicensed_rows_all(world))
            .await?;
        Ok(n)
    }

    /// Applies a change: upserts and deletes, each as its own statement, as the bureau's
    /// application would.
    pub async fn apply(&self, upserts: &Rows, deletes: &[(&'static str, My)]) -> Result<u64> {
        let mut n = 0;
        for (name, list) in upserts {
            let t = table(name);
            let mut c = self.pool(t.bureau).get_conn().await?;
            for r in list {
                let updates: Vec<String> = r[1..]
                    .iter()
                    .map(|(col, _)| format!("{col} = VALUES({col})"))
                    .collect();
                c.query_drop(format!(
                    "INSERT INTO {name} ({}) VALUES {} ON DUPLICATE KEY UPDATE {}",
                    columns(r),
                    literal_row(r),
                    updates.join(", ")
                ))
                .await
                .with_context(|| format!("writing {name}"))?;
                n += 1;
            }
        }
        for (name, key) in deletes {
            let t = table(name);
            let mut c = self.pool(t.bureau).get_conn().await?;
            c.query_drop(format!(
                "DELETE FROM {name} WHERE {} = {}",
                t.key,
                key.as_sql(false)
            ))
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Rows per table of a bureau (for the summary).
    pub async fn count(&self, name: &str) -> Result<u64> {
        let t = table(name);
        let mut c = self.pool(t.bureau).get_conn().await?;
        Ok(c.query_first(format!("SELECT COUNT(*) FROM {name}"))
            .await?
            .unwrap_or(0))
    }

    /// Closes the connections.
    pub async fn close(self) {
        for (_, p) in self.pools {
            let _ = p.disconnect().await;
        }
    }

    /// Drops the four databases.
    pub async fn drop_all(self, admin: &ConnectionConfig) -> Result<()> {
        let names: Vec<String> = self
            .conns
            .iter()
            .map(|(_, c)| c.url.rsplit('/').next().unwrap_or("").to_owned())
            .map(|db| db.split('?').next().unwrap_or("").to_owned())
            .collect();
        self.close().await;
        let admin_pool = pool_of(admin, "SET NAMES utf8mb4")?;
        let mut c = admin_pool.get_conn().await?;
        for n in names {
            c.query_drop(format!("DROP DATABASE IF EXISTS `{n}`"))
                .await?;
        }
        drop(c);
        let _ = admin_pool.disconnect().await;
        Ok(())
    }
}

fn columns(r: &NativeRow) -> String {
    r.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
}

fn literal_row(r: &NativeRow) -> String {
    format!(
        "({})",
        r.iter()
            .map(|(_, v)| v.as_sql(false))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
