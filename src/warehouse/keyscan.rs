//! Finding rows deleted at a source whose capture mode cannot see deletes: the keys the
//! warehouse holds (taken first) minus the keys the source has (read after).
//!
//! Both sets live in temporary tables on one dedicated connection, so memory stays
//! bounded however large the table.

use super::{Warehouse, WarehouseError};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::Client;

/// An open key comparison.
pub struct KeyScan {
    client: Client,
}

impl Warehouse {
    /// Starts a comparison: records the live keys of `source` in the given record kinds.
    pub async fn start_key_scan(
        &self,
        source: &str,
        kinds: &[&str],
    ) -> Result<KeyScan, WarehouseError> {
        let client = self.dedicated().await?;
        let union = kinds
            .iter()
            .map(|k| {
                format!(
                    "select source_key from exchange.{} where source = $1 and deleted_at is null",
                    escape_identifier(k)
                )
            })
            .collect::<Vec<_>>()
            .join(" union ");
        client
            .batch_execute("create temp table ebis_scan_src (source_key text primary key)")
            .await?;
        client
            .execute(
                &format!("create temp table ebis_scan_wh as {union}"),
                &[&source],
            )
            .await?;
        Ok(KeyScan { client })
    }
}

impl KeyScan {
    /// Adds keys the source has.
    pub async fn add(&self, keys: &[String]) -> Result<(), WarehouseError> {
        self.client
            .execute(
                "insert into ebis_scan_src select distinct unnest($1::text[]) on conflict do nothing",
                &[&keys],
            )
            .await?;
        Ok(())
    }

    /// The keys the warehouse holds that the source does not.
    pub async fn missing(self) -> Result<Vec<String>, WarehouseError> {
        let rows = self
            .client
            .query(
                "select source_key from ebis_scan_wh except select source_key from ebis_scan_src order by 1",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
