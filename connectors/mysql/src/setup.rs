//! What a DBA runs to set up capture on MySQL/MariaDB, for review or to apply: for
//! changelog mode the change table and, per captured table, three triggers — rendered
//! from `sql/sources/mysql/` with validated, quoted names — with the grants the reading
//! account needs; for timestamp mode, nothing but grants and index advice. Also the
//! repair of triggers a rename took along, and removal.

use crate::table::{quote, split_table};
use ebis_source::{Capture, SetupRequest, SetupScript, SourceError, TablePlan};
use mysql_async::Conn;

const CHANGE_TABLE: &str = include_str!("../../../sql/sources/mysql/changelog.sql");
const TRIGGERS: &str = include_str!("../../../sql/sources/mysql/triggers.sql");
const REMOVE_TRIGGERS: &str = include_str!("../../../sql/sources/mysql/remove.sql");
const REMOVE_CHANGE_TABLE: &str = include_str!("../../../sql/sources/mysql/remove_changelog.sql");

/// The setup of a source, statements and commented script.
pub fn script(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let reader = req.reader;
    let mut script = String::new();
    let statements = match req.capture {
        Capture::Changelog { purge, .. } => {
            let stmts = changelog_statements(req.plans)?;
            for s in &stmts {
                script.push_str(s);
                script.push_str(";\n\n");
            }
            script.push_str(&format!(
                "-- The account ebis reads with needs SELECT on the tables and on ebis_change:\n-- GRANT SELECT ON <database>.* TO '{reader}'@'<ebis host>';\n-- With PROCESS it also sees open transactions, so a rolled-back gap settles in seconds:\n-- GRANT PROCESS ON *.* TO '{reader}'@'<ebis host>';\n"
            ));
            script.push_str(if *purge {
                "\n-- capture.purge_every is set: ebis deletes the ebis_change rows the warehouse has\n-- stored, so the account also needs:\n-- GRANT DELETE ON <database>.ebis_change TO '<reader>'@'<ebis host>';\n"
            } else {
                "\n-- ebis does not delete from ebis_change (capture.purge_every is not set). Never purge\n-- it by age: changes ebis has not read yet would be lost while it is stopped. Delete\n-- only below the position `ebis status` shows (seq N, and below the first open gap).\n-- Never TRUNCATE it: its numbering would start again, and ebis would have to snapshot\n-- the source anew.\n"
            });
            stmts
        }
        Capture::Timestamp { .. } => {
            script.push_str(
                "-- Timestamp capture installs nothing. ebis polls each table's modified column:\n",
            );
            for p in req.plans {
                script.push_str(&format!(
                    "--   {}: {}  (an index on ({}, {}) keeps polls cheap)\n",
                    p.table,
                    p.modified_column
                        .as_deref()
                        .unwrap_or("(none: set modified_column!)"),
                    p.modified_column.as_deref().unwrap_or("?"),
                    p.key.join(", ")
                ));
            }
            script.push_str(&format!(
                "-- The account needs SELECT on these tables:\n-- GRANT SELECT ON <database>.* TO '{reader}'@'<ebis host>';\n-- Deletes are found by comparing keys every capture.key_scan_every.\n"
            ));
            Vec::new()
        }
        Capture::ChangeTracking | Capture::Logical { .. } => {
            return Err(format!(
                "MySQL has no {} capture: use capture mode changelog (triggers), timestamp or binlog",
                req.capture.name()
            ));
        }
        Capture::Binlog { server_id } => {
            script.push_str(&binlog_script(req, *server_id));
            Vec::new()
        }
    };
    Ok(SetupScript { statements, script })
}

/// What binlog capture needs of the server and the account: it installs nothing.
fn binlog_script(req: &SetupRequest<'_>, server_id: u32) -> String {
    let reader = req.reader;
    let tables: Vec<&str> = req.plans.iter().map(|p| p.table.as_str()).collect();
    format!(
        "-- Binlog capture installs nothing on the source: no triggers, no tables. ebis reads the
-- server's binary log as a replica does (replica id {server_id}; set capture.server_id if
-- another replica of this server already uses it) and reads changed rows by key from:
--   {tables}
--
-- 1. The server (my.cnf, [mysqld] section; log_bin needs a restart, the rest do not):
--      log_bin              = mysql-bin    # any base name
--      server_id            = 1            # any id no replica uses
--      binlog_format        = ROW
--      binlog_row_image     = FULL
--      binlog_row_metadata  = FULL         # MariaDB 10.5+ / MySQL 8.0+: column names in the log
--      log_bin_compress     = OFF          # MariaDB: compressed events cannot be read
--      binlog_expire_logs_seconds = 604800 # keep a week: longer than ebis may be stopped
--    Check: SHOW GLOBAL VARIABLES LIKE 'binlog%'; SHOW MASTER STATUS;
--
-- 2. The account ebis reads with:
--      GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{reader}'@'<ebis host>';
--      GRANT SELECT ON <database>.* TO '{reader}'@'<ebis host>';
--    (MariaDB 10.5+ shows REPLICATION CLIENT as BINLOG MONITOR.) The account must be
--    allowed at least 4 connections (MAX_USER_CONNECTIONS). On Oracle MySQL 8 also
--      GRANT XA_RECOVER_ADMIN ON *.* TO '{reader}'@'<ebis host>';
--    so a snapshot can wait for XA transactions prepared before it starts.
--
-- What it costs the source: the binary log itself (disk, and a little at each commit),
-- one connection reading the log while ebis polls, and reads of changed rows by key.
-- Binlog files purged before ebis read them (stopped longer than they are kept) make ebis
-- snapshot the source again: `ebis status` says so.
--
-- To remove: stop ebis, remove the source from the config, then
--      REVOKE REPLICATION SLAVE, REPLICATION CLIENT ON *.* FROM '{reader}'@'<ebis host>';
--    (and turn log_bin off if nothing else needs it).
",
        tables = tables.join(", ")
    )
}

/// The removal of a source's capture (changelog: its triggers, then the change table).
pub fn removal(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let statements = match req.capture {
        Capture::Changelog { .. } => removal_statements(req.plans)?,
        _ => Vec::new(),
    };
    let mut script = format!(
        "-- The triggers of {} table(s), then the change table. Changes ebis has not read yet\n-- are lost with it: stop `ebis run` first, and remove the source from the config (or\n-- its checkpoint, to capture it anew).\n\n",
        req.plans.len()
    );
    for s in &statements {
        script.push_str(s);
        script.push_str(";\n");
    }
    Ok(SetupScript { statements, script })
}

/// What the printed script must add to move capture off ebis triggers a rename left on a
/// captured table, as the source's own account finds them (an account that may not see
/// triggers finds none, and the note says how to look).
pub async fn review_note(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    req: &SetupRequest<'_>,
) -> String {
    if !matches!(req.capture, Capture::Changelog { .. }) {
        return String::new();
    }
    match crate::find_stale_triggers(url, password, tls, req.plans).await {
        Ok(stale) if stale.is_empty() => "\n-- No ebis triggers of other tables were found on the captured tables (an account\n-- without the TRIGGER privilege sees none; `--apply` looks again with the admin URL).\n".to_owned(),
        Ok(stale) => {
            let mut out = String::from(
                "\n-- Captured tables carry ebis triggers of another name (a table was renamed with\n-- its triggers): after the statements above, drop them and relabel the changes\n-- they logged, so ebis reads those under the new name and loses none of them.\n",
            );
            for s in repair_statements(&stale) {
                out.push_str(&s);
                out.push_str(";\n");
            }
            out
        }
        Err(e) => format!("\n-- Could not look for triggers a rename left: {e}\n"),
    }
}

/// Runs a setup (or removal) on the source and moves capture off stale ebis triggers on
/// the planned tables; one line per repair done.
pub async fn apply(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    statements: &[String],
    plans: &[TablePlan],
) -> Result<Vec<String>, SourceError> {
    let stale = crate::run_statements(url, password, tls, statements, plans).await?;
    Ok(stale
        .iter()
        .map(|s| {
            format!(
                "dropped trigger {} on {} (it logged changes as {}); its logged changes now read as {}",
                s.trigger,
                s.table,
                s.logs_as.as_deref().unwrap_or("?"),
                s.table
            )
        })
        .collect())
}

/// Whether an error says the account may not do this (MySQL's access-denied codes).
pub fn denied(message: &str) -> bool {
    ["denied", "(1142)", "(1044)", "(1227)", "(1419)"]
        .iter()
        .any(|m| message.contains(m))
}

/// An example of the privileged URL for `setup-source --apply`.
pub const ADMIN_URL_EXAMPLE: &str = "mysql://dba:password@host:3306/";

/// The statements that remove changelog capture: each table's triggers, then the change
/// table (with any changes ebis has not read yet).
pub fn removal_statements(plans: &[TablePlan]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for plan in plans {
        let (schema, _) = split_table(&plan.table);
        let qualified = |suffix: &str| {
            let t = trigger_name(&plan.table, suffix);
            match schema {
                Some(s) => format!("{}.{}", quote(s), quote(&t)),
                None => quote(&t),
            }
        };
        let text = REMOVE_TRIGGERS
            .replace("{{trigger_insert}}", &qualified("ai"))
            .replace("{{trigger_update}}", &qualified("au"))
            .replace("{{trigger_delete}}", &qualified("ad"));
        out.extend(split_statements(&text));
    }
    out.extend(split_statements(REMOVE_CHANGE_TABLE));
    Ok(out)
}

/// The statements to run, in order, each a single SQL statement without comments.
pub fn changelog_statements(plans: &[TablePlan]) -> Result<Vec<String>, String> {
    let mut out = split_statements(CHANGE_TABLE);
    for plan in plans {
        out.extend(trigger_statements(plan)?);
    }
    Ok(out)
}

fn trigger_statements(plan: &TablePlan) -> Result<Vec<String>, String> {
    let (schema, name) = split_table(&plan.table);
    let trigger = |suffix: &str| -> Result<String, String> {
        let t = trigger_name(&plan.table, suffix);
        if t.len() > 64 {
            return Err(format!(
                "table name {name} is too long for a trigger name (ebis_<table>_ai must fit 64 characters)"
            ));
        }
        Ok(match schema {
            Some(s) => format!("{}.{}", quote(s), quote(&t)),
            None => quote(&t),
        })
    };
    let keys = |prefix: &str| {
        plan.key
            .iter()
            .map(|k| format!("{prefix}.{}", quote(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unchanged = plan
        .key
        .iter()
        .map(|k| format!("OLD.{0} <=> NEW.{0}", quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let table = match schema {
        Some(s) => format!("{}.{}", quote(s), quote(name)),
        None => quote(name),
    };
    let text = TRIGGERS
        .replace("{{trigger_insert}}", &trigger("ai")?)
        .replace("{{trigger_update}}", &trigger("au")?)
        .replace("{{trigger_delete}}", &trigger("ad")?)
        .replace("{{table_literal}}", &format!("'{}'", plan.table))
        .replace("{{table}}", &table)
        .replace("{{new_key}}", &keys("NEW"))
        .replace("{{old_key}}", &keys("OLD"))
        .replace("{{key_unchanged}}", &unchanged);
    Ok(split_statements(&text))
}

/// The name ebis gives a capture trigger of `table` (`ai`, `au`, `ad`).
fn trigger_name(table: &str, suffix: &str) -> String {
    let (_, name) = split_table(table);
    format!("ebis_{}_{suffix}", name.to_ascii_lowercase())
}

/// An ebis capture trigger found on a captured table that is not the table's own: it
/// came along when the table was renamed, and logs its changes under the old name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleTrigger {
    /// The captured table (as the mapping names it).
    pub table: String,
    /// The trigger's name.
    pub trigger: String,
    /// The table name it logs changes under.
    pub logs_as: Option<String>,
}

/// The ebis triggers on each planned table that are not its own (a rename, most often;
/// or a copy left behind). Needs an account that may see triggers (TRIGGER privilege);
/// one that may not sees none.
pub async fn stale_triggers(
    conn: &mut Conn,
    plans: &[TablePlan],
) -> Result<Vec<StaleTrigger>, SourceError> {
    let mut out = Vec::new();
    for p in plans {
        let (schema, name) = split_table(&p.table);
        let found = crate::catalog::ebis_triggers(conn, schema, name, &p.table).await?;
        out.extend(sort_triggers(p, found).1);
    }
    Ok(out)
}

/// A table's ebis triggers (name, body) sorted into how many are its own, and the stale
/// ones (another table's name, or logging another table).
pub fn sort_triggers(plan: &TablePlan, found: Vec<(String, String)>) -> (usize, Vec<StaleTrigger>) {
    let own = ["ai", "au", "ad"].map(|s| trigger_name(&plan.table, s));
    let mut mine = 0;
    let mut stale = Vec::new();
    for (trigger, body) in found {
        let logs_as = first_literal(&body);
        if own.iter().any(|o| o.eq_ignore_ascii_case(&trigger))
            && logs_as.as_deref() == Some(plan.table.as_str())
        {
            mine += 1;
        } else {
            stale.push(StaleTrigger {
                table: plan.table.clone(),
                trigger,
                logs_as,
            });
        }
    }
    (mine, stale)
}

/// What moves capture off stale triggers, to run after the table's own triggers exist:
/// drop them, then relabel the changes they logged under the old name, so ebis reads
/// those under the table's name and nothing logged in between is lost.
pub fn repair_statements(stale: &[StaleTrigger]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stale {
        let (schema, _) = split_table(&s.table);
        out.push(match schema {
            Some(sc) => format!("DROP TRIGGER IF EXISTS {}.{}", quote(sc), quote(&s.trigger)),
            None => format!("DROP TRIGGER IF EXISTS {}", quote(&s.trigger)),
        });
    }
    let mut relabeled: Vec<(&str, &str)> = Vec::new();
    for s in stale {
        if let Some(old) = s.logs_as.as_deref()
            && old != s.table
            && !relabeled.contains(&(old, s.table.as_str()))
        {
            relabeled.push((old, &s.table));
        }
    }
    for (old, new) in relabeled {
        out.push(format!(
            "UPDATE `ebis_change` SET table_name = {} WHERE table_name = {}",
            literal(new),
            literal(old)
        ));
    }
    out
}

/// A string literal (names come from validated mappings or from the server's own
/// catalog; quotes and backslashes are escaped all the same).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The first `'…'` literal of a trigger body: the table name an ebis trigger logs.
fn first_literal(body: &str) -> Option<String> {
    let start = body.find('\'')? + 1;
    let len = body[start..].find('\'')?;
    Some(body[start..start + len].to_owned())
}

/// Splits a script at `;` line ends, dropping comment-only lines.
fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
        if line.trim_end().ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').to_owned();
            out.push(stmt);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_quote_names_and_compare_keys() {
        let plan = TablePlan {
            table: "E_ALTER_RECODER".into(),
            key: vec!["PRIPID".into(), "ALT_ID".into()],
            columns: vec![],
            expressions: vec![],
            modified_column: None,
            trust_key: false,
        };
        let stmts = changelog_statements(&[plan]).expect("renders");
        assert_eq!(stmts.len(), 7);
        assert!(stmts[0].contains("CREATE TABLE IF NOT EXISTS `ebis_change`"));
        assert_eq!(stmts[1], "DROP TRIGGER IF EXISTS `ebis_e_alter_recoder_ai`");
        assert!(stmts[2].contains("AFTER INSERT ON `E_ALTER_RECODER`"));
        assert!(
            stmts[2].contains(
                "VALUES ('E_ALTER_RECODER', 'I', JSON_ARRAY(NEW.`PRIPID`, NEW.`ALT_ID`))"
            )
        );
        assert!(stmts[4].contains(
            "WHERE NOT (OLD.`PRIPID` <=> NEW.`PRIPID` AND OLD.`ALT_ID` <=> NEW.`ALT_ID`)"
        ));
        assert!(stmts[6].contains("JSON_ARRAY(OLD.`PRIPID`, OLD.`ALT_ID`)"));
        assert!(stmts.iter().all(|s| !s.ends_with(';')));
    }

    #[test]
    fn stale_triggers_are_dropped_and_their_changes_relabeled() {
        let stale = vec![
            StaleTrigger {
                table: "E_NJ_INFO".into(),
                trigger: "ebis_e_nj_baseinfo_ai".into(),
                logs_as: Some("E_NJ_BASEINFO".into()),
            },
            StaleTrigger {
                table: "E_NJ_INFO".into(),
                trigger: "ebis_e_nj_baseinfo_ad".into(),
                logs_as: Some("E_NJ_BASEINFO".into()),
            },
        ];
        assert_eq!(
            repair_statements(&stale),
            [
                "DROP TRIGGER IF EXISTS `ebis_e_nj_baseinfo_ai`",
                "DROP TRIGGER IF EXISTS `ebis_e_nj_baseinfo_ad`",
                "UPDATE `ebis_change` SET table_name = 'E_NJ_INFO' WHERE table_name = 'E_NJ_BASEINFO'",
            ]
        );
        assert_eq!(
            first_literal("INSERT INTO `ebis_change` (table_name, op, row_key) VALUES ('E_X', 'I', JSON_ARRAY(NEW.`ID`))")
                .as_deref(),
            Some("E_X")
        );
        assert_eq!(literal("a'b"), "'a''b'");
    }

    /// A table in another schema than the connection's.
    fn djdb_plan() -> TablePlan {
        TablePlan {
            table: "DJDB.DJ_JL_JBSJ".into(),
            key: vec!["JSJDM".into()],
            columns: vec![],
            expressions: vec![],
            modified_column: None,
            trust_key: false,
        }
    }

    #[test]
    fn schema_qualified_tables_get_triggers_in_their_schema() {
        let plan = djdb_plan();
        let stmts = changelog_statements(&[plan]).expect("renders");
        assert_eq!(
            stmts[1],
            "DROP TRIGGER IF EXISTS `DJDB`.`ebis_dj_jl_jbsj_ai`"
        );
        assert!(stmts[2].contains("ON `DJDB`.`DJ_JL_JBSJ`"));
    }

    #[test]
    fn binlog_installs_nothing_and_says_what_to_set_and_grant() {
        let plan = djdb_plan();
        let capture = Capture::Binlog {
            server_id: 1_157_627_904,
        };
        let s = script(&SetupRequest {
            source: "ntax_city",
            plans: &[plan],
            capture: &capture,
            reader: "ebis",
        })
        .expect("script");
        assert!(s.statements.is_empty(), "nothing to run on the source");
        for expected in [
            "replica id 1157627904",
            "DJDB.DJ_JL_JBSJ",
            "binlog_format        = ROW",
            "binlog_row_metadata  = FULL",
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'ebis'@'<ebis host>';",
            "REVOKE REPLICATION SLAVE, REPLICATION CLIENT",
        ] {
            assert!(s.script.contains(expected), "{expected} in:\n{}", s.script);
        }
        assert!(
            s.script
                .lines()
                .all(|l| l.is_empty() || l.starts_with("--")),
            "comments only: {}",
            s.script
        );
    }
}
