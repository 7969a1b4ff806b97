//! The warehouse server's settings that decide how fast ebis can load and apply: read
//! once, printed beside every benchmark figure (`ebis bench`), and turned into advice by
//! `ebis check --online`.
//!
//! The advice rests on what the capture bench measured on a 2-core machine with the
//! Debian defaults (shared_buffers 128 MB, wal_compression off, max_wal_size 1 GB): a
//! 5,000-row catch-up upsert into a 1.3 GB exchange table spent a quarter of its time
//! copying pages between the kernel and PostgreSQL, and took 185 ms against 145 ms with
//! shared_buffers 2 GB and wal_compression lz4.

use super::WarehouseError;

/// Below this size the exchange and core tables are no reason to advise on
/// shared_buffers: a test or demo warehouse fits anywhere.
const SIZEABLE_TABLES: i64 = 256 << 20;

/// The settings read from a warehouse server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    /// `server_version`, e.g. `15.14 (Debian 15.14-0+deb12u1)`.
    pub version: String,
    /// `shared_buffers`, bytes.
    pub shared_buffers: i64,
    /// The exchange and core tables with their indexes, bytes.
    pub tables: i64,
    /// `wal_compression`: `off`, `pglz`, `lz4`, `zstd` (`on` is pglz).
    pub wal_compression: String,
    /// `max_wal_size`, bytes.
    pub max_wal_size: i64,
    /// Checkpoints since the statistics were reset: on schedule, and forced by WAL volume.
    pub checkpoints_timed: i64,
    /// Checkpoints forced because `max_wal_size` of WAL was written.
    pub checkpoints_requested: i64,
    /// `max_parallel_workers_per_gather`: the rebuild's scans and sorts.
    pub parallel_per_gather: i32,
    /// `max_parallel_maintenance_workers`: the rebuild's index builds.
    pub parallel_maintenance: i32,
    /// The database's default collation (`datcollate`, or the ICU locale).
    pub collation: String,
}

impl ServerSettings {
    /// Reads them with the warehouse account (no privilege beyond connecting is needed).
    pub async fn read(client: &tokio_postgres::Client) -> Result<ServerSettings, WarehouseError> {
        let row = client
            .query_one(
                "select current_setting('server_version'),
                        pg_size_bytes(current_setting('shared_buffers')),
                        (select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                           from pg_class c join pg_namespace n on n.oid = c.relnamespace
                          where n.nspname in ('exchange', 'core') and c.relkind = 'r'),
                        current_setting('wal_compression'),
                        pg_size_bytes(current_setting('max_wal_size')),
                        current_setting('max_parallel_workers_per_gather')::int,
                        current_setting('max_parallel_maintenance_workers')::int,
                        -- Read through to_jsonb: the ICU columns are PostgreSQL 15's
                        -- (17 renames daticulocale to datlocale), and 13 and 14 lack them.
                        (select case when j->>'datlocprovider' = 'i'
                                     then coalesce(j->>'daticulocale', j->>'datlocale') || ' (ICU)'
                                     else j->>'datcollate' end
                           from pg_database d, to_jsonb(d) j where d.datname = current_database()),
                        current_setting('server_version_num')::int >= 170000",
                &[],
            )
            .await?;
        // PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer.
        let checkpoints = client
            .query_one(
                if row.get::<_, bool>(8) {
                    "select num_timed, num_requested from pg_stat_checkpointer"
                } else {
                    "select checkpoints_timed, checkpoints_req from pg_stat_bgwriter"
                },
                &[],
            )
            .await?;
        Ok(ServerSettings {
            version: row.get(0),
            shared_buffers: row.get(1),
            tables: row.get(2),
            wal_compression: row.get(3),
            max_wal_size: row.get(4),
            parallel_per_gather: row.get(5),
            parallel_maintenance: row.get(6),
            collation: row.get::<_, Option<String>>(7).unwrap_or_default(),
            checkpoints_timed: checkpoints.get(0),
            checkpoints_requested: checkpoints.get(1),
        })
    }

    /// One line for a benchmark's report: the settings its figures depend on.
    pub fn summary(&self) -> String {
        format!(
            "PostgreSQL {}, shared_buffers {}, wal_compression {}, max_wal_size {}, parallel workers {} per gather / {} per index build, default collation {}",
            self.version
                .split_whitespace()
                .next()
                .unwrap_or(&self.version),
            size(self.shared_buffers),
            self.wal_compression,
            size(self.max_wal_size),
            self.parallel_per_gather,
            self.parallel_maintenance,
            self.collation
        )
    }

    /// What an operator could change, each with why (empty: nothing to say).
    pub fn advice(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.tables >= SIZEABLE_TABLES && self.shared_buffers < self.tables {
            notes.push(format!(
                "shared_buffers ({}) holds {:.0} % of the exchange and core tables ({}): applies read and write the rest of their pages through the operating system (on the capture bench, a 5,000-row catch-up upsert into a 1.3 GB table took a fifth less time with 2 GB and wal_compression lz4); about a quarter of the server's memory is the usual setting (a restart applies it)",
                size(self.shared_buffers),
                100.0 * self.shared_buffers as f64 / self.tables as f64,
                size(self.tables)
            ));
        }
        if self.wal_compression == "off" {
            notes.push(
                "wal_compression is off: the first change to each page after a checkpoint writes the whole 8 kB page to the WAL, which catch-up updates spread over a large table do for nearly every row (on the capture bench, 100,000 updates of a 1M-row table wrote 800 MB of WAL, 86 % of it whole pages); `wal_compression = lz4` (or `pglz`) writes a fraction of it (228-449 MB there; a reload applies it), or, for ebis's sessions alone, a superuser can run `ALTER ROLE <ebis's role> SET wal_compression = lz4`"
                    .to_owned(),
            );
        }
        if self.checkpoints_requested > self.checkpoints_timed && self.checkpoints_requested >= 10 {
            notes.push(format!(
                "{} of {} checkpoints were forced by WAL volume (max_wal_size {}): each one makes the next changes to every page write it whole again; a larger max_wal_size (e.g. 4GB, disk permitting) spaces them out (a reload applies it)",
                self.checkpoints_requested,
                self.checkpoints_requested + self.checkpoints_timed,
                size(self.max_wal_size)
            ));
        }
        if self.parallel_per_gather == 0 || self.parallel_maintenance == 0 {
            notes.push(format!(
                "parallel workers are off (max_parallel_workers_per_gather {}, max_parallel_maintenance_workers {}): a rebuild of the enterprise base, after a first load, then computes and indexes on one core",
                self.parallel_per_gather, self.parallel_maintenance
            ));
        }
        notes
    }
}

/// Bytes as `SHOW` writes sizes: in the largest unit that divides them (`128MB`, `1GB`,
/// `1536MB`, `100000kB`).
fn size(bytes: i64) -> String {
    const KB: i64 = 1 << 10;
    const MB: i64 = 1 << 20;
    const GB: i64 = 1 << 30;
    const TB: i64 = 1 << 40;
    match bytes {
        0 => "0".to_owned(),
        b if b % TB == 0 => format!("{}TB", b / TB),
        b if b % GB == 0 => format!("{}GB", b / GB),
        b if b % MB == 0 => format!("{}MB", b / MB),
        b if b % KB == 0 => format!("{}kB", b / KB),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian_defaults() -> ServerSettings {
        ServerSettings {
            version: "15.14 (Debian 15.14-0+deb12u1)".to_owned(),
            shared_buffers: 128 << 20,
            tables: 1300 << 20,
            wal_compression: "off".to_owned(),
            max_wal_size: 1 << 30,
            checkpoints_timed: 3,
            checkpoints_requested: 40,
            parallel_per_gather: 2,
            parallel_maintenance: 2,
            collation: "C.UTF-8".to_owned(),
        }
    }

    #[test]
    fn the_summary_names_every_setting_a_figure_depends_on() {
        assert_eq!(
            debian_defaults().summary(),
            "PostgreSQL 15.14, shared_buffers 128MB, wal_compression off, max_wal_size 1GB, parallel workers 2 per gather / 2 per index build, default collation C.UTF-8"
        );
    }

    #[test]
    fn untuned_defaults_under_a_large_warehouse_get_three_notes() {
        let notes = debian_defaults().advice();
        assert_eq!(notes.len(), 3, "{notes:#?}");
        assert!(notes[0].starts_with(
            "shared_buffers (128MB) holds 10 % of the exchange and core tables (1300MB)"
        ));
        assert!(notes[1].starts_with("wal_compression is off"));
        assert!(
            notes[2]
                .starts_with("40 of 43 checkpoints were forced by WAL volume (max_wal_size 1GB)")
        );
    }

    #[test]
    fn a_tuned_server_or_a_small_warehouse_gets_none() {
        let tuned = ServerSettings {
            shared_buffers: 2 << 30,
            wal_compression: "lz4".to_owned(),
            max_wal_size: 4 << 30,
            checkpoints_timed: 20,
            checkpoints_requested: 2,
            ..debian_defaults()
        };
        assert_eq!(tuned.advice(), Vec::<String>::new());
        let small = ServerSettings {
            tables: 40 << 20,
            wal_compression: "pglz".to_owned(),
            checkpoints_requested: 0,
            ..debian_defaults()
        };
        assert_eq!(small.advice(), Vec::<String>::new());
    }

    #[test]
    fn parallel_workers_switched_off_are_named() {
        let serial = ServerSettings {
            parallel_maintenance: 0,
            wal_compression: "lz4".to_owned(),
            checkpoints_requested: 0,
            tables: 0,
            ..debian_defaults()
        };
        let notes = serial.advice();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("max_parallel_maintenance_workers 0"));
    }

    #[test]
    fn sizes_read_as_postgresql_writes_them() {
        assert_eq!(size(128 << 20), "128MB");
        assert_eq!(size(1 << 30), "1GB");
        assert_eq!(size(1536 << 20), "1536MB");
        assert_eq!(size(8 << 10), "8kB");
        assert_eq!(size(100_000 << 10), "100000kB");
    }
}
