//! Forward-only warehouse migrations, embedded in the binary and applied in order.
//!
//! Each applied file is recorded with a checksum. Re-running is a no-op; an applied file
//! whose content has since changed, or an applied migration this build does not know, is
//! refused before anything else runs. Concurrent migrators are serialized by an advisory
//! lock; each migration runs in its own transaction.

use super::{Warehouse, WarehouseError};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// One migration file.
#[derive(Debug)]
pub struct Migration {
    /// File name, `NNNN_description.sql`.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

macro_rules! migration {
    ($name:literal) => {
        Migration {
            name: $name,
            sql: include_str!(concat!("../../sql/warehouse/", $name)),
        }
    };
}

/// Every migration of this build, in order. A test checks this list against the folder.
pub static MIGRATIONS: &[Migration] = &[
    migration!("0001_ebis_state.sql"),
    migration!("0002_exchange.sql"),
    migration!("0003_capture_state.sql"),
    migration!("0004_identifiers.sql"),
    migration!("0005_enterprise_base.sql"),
    migration!("0006_compare.sql"),
    migration!("0007_roles.sql"),
    migration!("0008_change_purge.sql"),
    migration!("0009_base_lookup_collation.sql"),
    migration!("0010_worklist_barrier.sql"),
    migration!("0011_gap_fates.sql"),
    migration!("0012_timestamp_clock.sql"),
    migration!("0013_captured_tables.sql"),
    migration!("0014_findings_held_back.sql"),
    migration!("0015_enterprise_links.sql"),
    migration!("0016_latest_voided_code.sql"),
    migration!("0017_faster_refresh.sql"),
    migration!("0018_position_expired.sql"),
    migration!("0019_base_queue.sql"),
    migration!("0020_set_based_resolve.sql"),
    migration!("0021_statistics.sql"),
    migration!("0022_faster_compare.sql"),
    migration!("0023_bulk_resolve.sql"),
    migration!("0024_base_rebuild.sql"),
    migration!("0025_compare_keeps_up.sql"),
    migration!("0026_source_backlog.sql"),
    migration!("0027_operator_controls.sql"),
    migration!("0028_source_leases.sql"),
    migration!("0029_lease_grants.sql"),
    migration!("0030_analyst_schema.sql"),
    migration!("0031_cheaper_updates.sql"),
    migration!("0032_refresh_in_place.sql"),
    migration!("0033_catch_up_first.sql"),
    migration!("0034_parallel_rebuild.sql"),
    migration!("0035_faster_identifier_checks.sql"),
    migration!("0036_norm_text_shortcut.sql"),
    migration!("0037_cheaper_base_queue.sql"),
    migration!("0038_bytewise_rebuild_sorts.sql"),
    migration!("0039_hashed_trigger_join.sql"),
    migration!("0040_analyze_in_one_order.sql"),
    migration!("0041_finding_episodes.sql"),
    migration!("0042_parallel_comparison.sql"),
    migration!("0043_org_code_conflict_semi_join.sql"),
    migration!("0044_incremental_report_rules.sql"),
    migration!("0045_raw_row_as_json.sql"),
    migration!("0046_sorted_base_writes.sql"),
    migration!("0047_cheaper_rebuild.sql"),
    migration!("0048_loads_held_back.sql"),
    migration!("0049_loads_held_by_lease.sql"),
    migration!("0050_rebuild_shows_progress.sql"),
    migration!("0051_statuses_in_the_picks.sql"),
    migration!("0052_completeness_not_yet.sql"),
    migration!("0053_raw_row_values.sql"),
];

const BOOTSTRAP: &str = include_str!("../../sql/warehouse/_bootstrap.sql");
/// Advisory lock key shared by all migrators (`ebis` in ASCII).
const LOCK_KEY: i64 = 0x6562_6973;

impl Migration {
    /// The version number: the file name's numeric prefix.
    pub fn version(&self) -> i32 {
        self.name
            .split('_')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// SHA-256 of the SQL, hex.
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.sql.as_bytes());
        let mut s = String::with_capacity(64);
        for b in digest {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// What `migrate` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied now, in order.
    pub applied: Vec<String>,
    /// Migrations that were already applied.
    pub already: usize,
}

/// Applies every pending migration.
pub async fn migrate(wh: &Warehouse) -> Result<MigrateReport, WarehouseError> {
    let mut client = wh.client().await?;
    client
        .execute("select pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = migrate_locked(&mut client).await;
    // Unlock even after a failure; a lost connection releases the lock anyway.
    let _ = client
        .execute("select pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

/// What the warehouse has applied, checked against this build: the names of the
/// migrations still pending. Reads only; refuses (like `migrate`) an applied migration
/// that changed or that this build does not know. A warehouse never migrated has them all
/// pending.
pub async fn pending(wh: &Warehouse) -> Result<Vec<&'static str>, WarehouseError> {
    let client = wh.client().await?;
    let exists: bool = client
        .query_one("select to_regclass('ebis.migration') is not null", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(MIGRATIONS.iter().map(|m| m.name).collect());
    }
    let rows = applied(&client).await?;
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !rows.contains(&m.version()))
        .map(|m| m.name)
        .collect())
}

/// The applied versions, each checked against this build's file.
async fn applied(client: &tokio_postgres::Client) -> Result<Vec<i32>, WarehouseError> {
    let rows = client
        .query(
            "select version, name, checksum, to_char(applied_at, 'YYYY-MM-DD HH24:MI') from ebis.migration order by version",
            &[],
        )
        .await?;
    let mut versions = Vec::new();
    for row in &rows {
        let (version, name, checksum, applied_at): (i32, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let Some(known) = MIGRATIONS.iter().find(|m| m.version() == version) else {
            return Err(WarehouseError::Migration(format!(
                "the warehouse has migration {name} (applied {applied_at}) that this ebis build does not know: upgrade ebis before migrating"
            )));
        };
        let expected = known.checksum();
        if checksum != expected {
            return Err(WarehouseError::Migration(format!(
                "migration {name} was applied on {applied_at} but its file has changed since (checksum {} applied, {} now): applied migrations must not change; restore the file and put the change in a new migration",
                &checksum[..12.min(checksum.len())],
                &expected[..12]
            )));
        }
        versions.push(version);
    }
    Ok(versions)
}

async fn migrate_locked(
    client: &mut deadpool_postgres::Object,
) -> Result<MigrateReport, WarehouseError> {
    client.batch_execute(BOOTSTRAP).await?;
    let done = applied(client).await?;
    let mut report = MigrateReport {
        already: done.len(),
        ..MigrateReport::default()
    };
    for m in MIGRATIONS {
        if done.contains(&m.version()) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await.map_err(|e| {
            let inner = WarehouseError::from(e);
            WarehouseError::Migration(format!("migration {} failed: {inner}", m.name))
        })?;
        tx.execute(
            "insert into ebis.migration (version, name, checksum) values ($1, $2, $3)",
            &[&m.version(), &m.name, &m.checksum()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(migration = m.name, "applied");
        report.applied.push(m.name.to_owned());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_folder_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/warehouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("sql/warehouse")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql") && !n.starts_with('_'))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version(),
                i32::try_from(i + 1).expect("small"),
                "{}",
                m.name
            );
        }
    }
}
