//! What a DBA runs to set up capture on PostgreSQL, for review or to apply:
//! - **changelog**: the `ebis_capture` schema (change table and trigger function), and a
//!   trigger per captured table — rendered from `sql/sources/postgres/` with validated,
//!   quoted names;
//! - **timestamp**: nothing but grants and index advice;
//! - **logical**: a publication of the captured tables and a logical replication slot,
//!   with the server settings and grants it needs and what it costs the source.
//!
//! Names in mappings are written as a DBA writes them unquoted; the scripts use the name
//! PostgreSQL gives such a name (lower case). `check` verifies what was installed against
//! the catalog's own names.

use crate::table::{fold, quote, split_table};
use ebis_source::{Capture, SetupRequest, SetupScript, SourceError, TablePlan};

const CHANGE_TABLE: &str = include_str!("../../../sql/sources/postgres/changelog.sql");
const TRIGGER: &str = include_str!("../../../sql/sources/postgres/trigger.sql");

/// An example of the privileged URL for `setup-source --apply`.
pub const ADMIN_URL_EXAMPLE: &str = "postgres://dba:password@host:5432/";

/// Why a mode is not PostgreSQL's.
pub fn not_postgres(capture: &Capture) -> String {
    let whose = match capture {
        Capture::ChangeTracking => "SQL Server's Change Tracking",
        Capture::Binlog { .. } => "MySQL/MariaDB's binary log",
        _ => "not PostgreSQL's",
    };
    format!(
        "capture mode {} is {whose}: a PostgreSQL source captures with changelog (triggers), timestamp or logical (logical decoding)",
        capture.name()
    )
}

/// A table as the scripts name it: `"schema"."table"`, each part as PostgreSQL names it
/// when written unquoted.
fn table_name(plan: &TablePlan) -> String {
    let (schema, name) = split_table(&plan.table);
    match schema {
        Some(s) => format!("{}.{}", quote(&fold(s)), quote(&fold(name))),
        None => quote(&fold(name)),
    }
}

/// A string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Statements of a script: split at a `;` ending a line, outside `$$` bodies; comment
/// and blank lines dropped.
fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_body = false;
    for line in script.lines() {
        if !in_body && (line.trim_start().starts_with("--") || line.trim().is_empty()) {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
        if line.matches("$$").count() % 2 == 1 {
            in_body = !in_body;
        }
        if !in_body && line.trim_end().ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The changelog statements to run, in order.
pub fn changelog_statements(plans: &[TablePlan]) -> Vec<String> {
    let mut out = split_statements(CHANGE_TABLE);
    for plan in plans {
        let arguments: Vec<String> = std::iter::once(literal(&plan.table))
            .chain(plan.key.iter().map(|k| literal(&fold(k))))
            .collect();
        let text = TRIGGER
            .replace("{{table}}", &table_name(plan))
            .replace("{{arguments}}", &arguments.join(", "));
        out.extend(split_statements(&text));
    }
    out
}

/// The logical-decoding statements: the publication (made, or set to exactly these
/// tables), then the slot where it is missing.
pub fn logical_statements(plans: &[TablePlan], slot: &str, publication: &str) -> Vec<String> {
    let tables: Vec<String> = plans.iter().map(table_name).collect();
    let tables = tables.join(", ");
    let publication_q = quote(publication);
    // From PostgreSQL 13 a partitioned table's changes can be published under its own
    // name (otherwise under its partitions', which match no captured table).
    let via_root = literal(&format!(
        "ALTER PUBLICATION {publication_q} SET (publish_via_partition_root = true)"
    ));
    vec![
        format!(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = {}) THEN ALTER PUBLICATION {publication_q} SET TABLE {tables}; ELSE CREATE PUBLICATION {publication_q} FOR TABLE {tables}; END IF; IF current_setting('server_version_num')::int >= 130000 THEN EXECUTE {via_root}; END IF; END $$",
            literal(publication)
        ),
        format!(
            "SELECT pg_create_logical_replication_slot({0}, 'pgoutput') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {0})",
            literal(slot)
        ),
    ]
}

/// The setup of a source, statements and commented script.
pub fn script(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let reader = req.reader;
    let tables: Vec<String> = req.plans.iter().map(table_name).collect();
    let mut script = String::new();
    let statements = match req.capture {
        Capture::Changelog { purge, .. } => {
            let stmts = changelog_statements(req.plans);
            for s in &stmts {
                script.push_str(s);
                script.push_str(";\n\n");
            }
            script.push_str(&format!(
                "-- The account ebis reads with needs:\n--   GRANT USAGE ON SCHEMA ebis_capture TO {reader};\n--   GRANT SELECT ON ebis_capture.change, ebis_capture.change_seq_seq TO {reader};\n--   GRANT SELECT ON {} TO {reader};\n-- With pg_read_all_stats it also sees other sessions' transactions, so a rolled-back\n-- gap settles in seconds instead of after capture.gap_timeout:\n--   GRANT pg_read_all_stats TO {reader};\n",
                tables.join(", ")
            ));
            script.push_str(if *purge {
                "\n-- capture.purge_every is set: ebis deletes the change rows the warehouse has stored,\n-- so the account also needs:\n--   GRANT DELETE ON ebis_capture.change TO <reader>;\n"
            } else {
                "\n-- ebis does not delete from ebis_capture.change (capture.purge_every is not set).\n-- Never purge it by age: changes ebis has not read yet would be lost while it is\n-- stopped. Delete only below the position `ebis status` shows. Never TRUNCATE it with\n-- RESTART IDENTITY: its numbering would start again, and ebis would snapshot anew.\n"
            });
            stmts
        }
        Capture::Timestamp { .. } => {
            script.push_str(
                "-- Timestamp capture installs nothing. ebis polls each table's modified column:\n",
            );
            for (p, t) in req.plans.iter().zip(&tables) {
                script.push_str(&format!(
                    "--   {t}: {}  (an index on ({}, {}) keeps polls cheap)\n",
                    p.modified_column
                        .as_deref()
                        .unwrap_or("(none: set modified_column!)"),
                    p.modified_column.as_deref().unwrap_or("?"),
                    p.key.join(", ")
                ));
            }
            script.push_str(&format!(
                "-- The account needs SELECT on these tables:\n--   GRANT SELECT ON {} TO {reader};\n-- Deletes are found by comparing keys every capture.key_scan_every.\n",
                tables.join(", ")
            ));
            Vec::new()
        }
        Capture::Logical { slot, publication } => {
            let stmts = logical_statements(req.plans, slot, publication);
            script.push_str(&logical_script(req, slot, publication, &tables, &stmts));
            stmts
        }
        other => return Err(not_postgres(other)),
    };
    Ok(SetupScript { statements, script })
}

/// The commented logical-decoding setup: settings, statements, grants, cost, removal.
fn logical_script(
    req: &SetupRequest<'_>,
    slot: &str,
    publication: &str,
    tables: &[String],
    statements: &[String],
) -> String {
    let reader = req.reader;
    let mut out = format!(
        "-- Logical decoding installs no triggers and no tables on the captured tables. The
-- server keeps every change of the publication's tables in the replication slot until
-- ebis confirms it has stored it in the warehouse; ebis reads the slot over an ordinary
-- connection and reads changed rows by key from:
--   {}
--
-- 1. In postgresql.conf (a restart is needed when wal_level changes):
--      wal_level = logical
--      max_replication_slots = 10          # at least one per ebis source, plus others'
--      max_slot_wal_keep_size = 50GB       # PostgreSQL 13+: how much WAL a stopped ebis
--                                          # may hold back before the slot is given up
--    A table without a primary key logs no key for deletes: give it one, or
--      ALTER TABLE <table> REPLICA IDENTITY USING INDEX <unique index on the key>;
--      (or REPLICA IDENTITY FULL, which logs whole old rows: more WAL)
--
-- 2. The publication and the slot (`--apply` runs these):
",
        tables.join(", ")
    );
    for s in statements {
        out.push_str(s);
        out.push_str(";\n");
    }
    out.push_str(&format!(
        "
-- 3. The account ebis reads with peeks and advances the slot, and reads the tables:
--      ALTER ROLE {reader} REPLICATION;
--      GRANT SELECT ON {} TO {reader};
--    With REPLICATION it also makes the slot again after it was dropped or invalidated
--    (ebis then snapshots the source anew and `ebis status` says why).
--
-- What it costs the source: the WAL of the publication's changes is kept until ebis
-- confirms it (a stopped ebis makes pg_wal grow: watch `ebis status` and the slot's
-- retained WAL in pg_replication_slots; max_slot_wal_keep_size bounds it), and each poll
-- decodes the new WAL once; the server logs two LOG lines ('starting logical decoding
-- for slot ...') for each poll that finds new WAL. No extra writes on the bureau's own
-- transactions.
--
-- To remove: stop ebis, remove the source from the config, then
--      SELECT pg_drop_replication_slot({}) FROM pg_replication_slots WHERE slot_name = {};
--      DROP PUBLICATION IF EXISTS {};
--    (`ebis setup-source {} --remove --apply` runs these.) Never leave an unused slot:
--    the server keeps WAL for it until the disk is full.
",
        tables.join(", "),
        literal(slot),
        literal(slot),
        quote(publication),
        req.source
    ));
    out
}

/// The removal of a source's capture.
pub fn removal(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let statements = match req.capture {
        Capture::Changelog { .. } => {
            let mut out: Vec<String> = req
                .plans
                .iter()
                .map(|p| format!("DROP TRIGGER IF EXISTS ebis_capture ON {}", table_name(p)))
                .collect();
            out.push("DROP SCHEMA IF EXISTS ebis_capture CASCADE".to_owned());
            out
        }
        Capture::Logical { slot, publication } => vec![
            format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {}",
                literal(slot)
            ),
            format!("DROP PUBLICATION IF EXISTS {}", quote(publication)),
        ],
        _ => Vec::new(),
    };
    let what = match req.capture {
        Capture::Logical { .. } => "The replication slot and the publication",
        _ => "The triggers, then the ebis_capture schema with the change table",
    };
    let mut script = format!(
        "-- {what}. Changes ebis has not read yet are lost with them: stop `ebis run` first,\n-- and remove the source from the config (or its checkpoint, to capture it anew).\n\n"
    );
    for s in &statements {
        script.push_str(s);
        script.push_str(";\n");
    }
    Ok(SetupScript { statements, script })
}

/// Runs a setup (or removal) on the source; nothing to repair afterwards.
pub async fn apply(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    statements: &[String],
) -> Result<Vec<String>, SourceError> {
    crate::run_statements(url, password, tls, statements).await?;
    Ok(Vec::new())
}

/// Whether an error says the account may not do this (SQLSTATE 42501, or a role
/// attribute missing).
pub fn denied(message: &str) -> bool {
    [
        "permission denied",
        "(42501)",
        "must be superuser",
        "must be owner",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebis_source::GapRules;
    use std::time::Duration;

    fn plan(table: &str, key: &[&str]) -> TablePlan {
        TablePlan {
            table: table.to_owned(),
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            columns: Vec::new(),
            expressions: Vec::new(),
            modified_column: Some("LAST_UPDATED".to_owned()),
            trust_key: false,
        }
    }

    fn req<'a>(plans: &'a [TablePlan], capture: &'a Capture) -> SetupRequest<'a> {
        SetupRequest {
            source: "ntax_city",
            plans,
            capture,
            reader: "ebis_reader",
        }
    }

    #[test]
    fn changelog_setup_is_a_schema_a_function_and_a_trigger_per_table() {
        let plans = [plan("DJ_NSRXX", &["NSRSBH"]), plan("tax.ZX", &["ID", "NO"])];
        let capture = Capture::Changelog {
            gaps: GapRules {
                timeout: Duration::from_secs(60),
                watch: Duration::from_secs(60),
            },
            purge: false,
        };
        let s = script(&req(&plans, &capture)).expect("script");
        assert_eq!(s.statements.len(), 4 + 2 * 2, "{:#?}", s.statements);
        assert!(
            s.statements[3].starts_with("CREATE OR REPLACE FUNCTION ebis_capture.log_change()")
        );
        assert!(s.statements[3].ends_with("$$"), "the body stays whole");
        assert_eq!(
            s.statements[4],
            "DROP TRIGGER IF EXISTS ebis_capture ON \"dj_nsrxx\""
        );
        assert!(
            s.statements[7].contains("ON \"tax\".\"zx\"")
                && s.statements[7].ends_with("ebis_capture.log_change('tax.ZX', 'id', 'no')"),
            "{}",
            s.statements[7]
        );
        assert!(s.script.contains("GRANT pg_read_all_stats TO ebis_reader"));
        let r = removal(&req(&plans, &capture)).expect("removal");
        assert_eq!(
            r.statements.last().map(String::as_str),
            Some("DROP SCHEMA IF EXISTS ebis_capture CASCADE")
        );
    }

    #[test]
    fn logical_setup_is_a_publication_and_a_slot_and_says_what_it_costs() {
        let plans = [plan("DJ_NSRXX", &["NSRSBH"])];
        let capture = Capture::Logical {
            slot: "ebis_ntax_city".to_owned(),
            publication: "ebis_ntax_city".to_owned(),
        };
        let s = script(&req(&plans, &capture)).expect("script");
        assert_eq!(s.statements.len(), 2);
        assert!(
            s.statements[0]
                .contains("CREATE PUBLICATION \"ebis_ntax_city\" FOR TABLE \"dj_nsrxx\"")
        );
        assert!(
            s.statements[0].contains("ALTER PUBLICATION \"ebis_ntax_city\" SET TABLE \"dj_nsrxx\"")
        );
        assert!(s.statements[1].starts_with(
            "SELECT pg_create_logical_replication_slot('ebis_ntax_city', 'pgoutput')"
        ));
        for needed in [
            "wal_level = logical",
            "ALTER ROLE ebis_reader REPLICATION",
            "max_slot_wal_keep_size",
            "pg_drop_replication_slot",
        ] {
            assert!(s.script.contains(needed), "{needed}");
        }
        let r = removal(&req(&plans, &capture)).expect("removal");
        assert_eq!(r.statements.len(), 2);
        assert!(script(&req(&plans, &Capture::Binlog { server_id: 1 })).is_err());
    }

    #[test]
    fn dollar_quoted_bodies_stay_whole() {
        let s =
            split_statements("-- c\nSELECT 1;\nCREATE FUNCTION f() AS $$\nBEGIN\n  x;\nEND\n$$;\n");
        assert_eq!(
            s,
            [
                "SELECT 1",
                "CREATE FUNCTION f() AS $$\nBEGIN\n  x;\nEND\n$$"
            ]
        );
    }
}
