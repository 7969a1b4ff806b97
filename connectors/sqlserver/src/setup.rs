//! What a DBA runs to set up capture on SQL Server, for review or to apply, rendered from
//! `sql/sources/sqlserver/` with validated, bracket-quoted names: Change Tracking on the
//! database and each table; or the change table and one trigger per table (changelog);
//! for timestamp mode nothing but grants and index advice. Batches are separated by `GO`
//! lines, as SQL Server's own tools write them. Also removal, and applying a script.

use crate::connect::{Target, classify, connect};
use crate::table::{quote, quote_table};
use ebis_capture::keys::split_table;
use ebis_source::{Capture, SetupRequest, SetupScript, SourceError, TablePlan};

const CHANGE_TABLE: &str = include_str!("../../../sql/sources/sqlserver/changelog.sql");
const TRIGGERS: &str = include_str!("../../../sql/sources/sqlserver/triggers.sql");
const REMOVE_TRIGGER: &str = include_str!("../../../sql/sources/sqlserver/remove.sql");
const REMOVE_CHANGE_TABLE: &str =
    include_str!("../../../sql/sources/sqlserver/remove_changelog.sql");
const TRACKING_DB: &str = include_str!("../../../sql/sources/sqlserver/change_tracking.sql");
const TRACKING_TABLE: &str =
    include_str!("../../../sql/sources/sqlserver/change_tracking_table.sql");
const REMOVE_TRACKING: &str =
    include_str!("../../../sql/sources/sqlserver/remove_change_tracking.sql");

/// The most key columns the change table logs.
pub const MAX_KEY_COLUMNS: usize = 4;

/// An example of the privileged URL for `setup-source --apply`.
pub const ADMIN_URL_EXAMPLE: &str = "sqlserver://sa@host:1433/";

/// A name inside an `N'…'` literal.
fn in_literal(s: &str) -> String {
    s.replace('\'', "''")
}

/// The trigger ebis puts on a table: its quoted name, schema and all.
pub fn trigger_name(table: &str) -> String {
    let (_, name) = split_table(table);
    format!("ebis_{name}_capture")
}

fn trigger_qualified(table: &str) -> String {
    match split_table(table) {
        (Some(s), _) => format!("{}.{}", quote(s), quote(&trigger_name(table))),
        (None, _) => quote(&trigger_name(table)),
    }
}

/// Splits a script into batches at `GO` lines, dropping comment-only lines.
pub fn split_batches(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim().eq_ignore_ascii_case("GO") {
            if !current.trim().is_empty() {
                out.push(current.trim().to_owned());
            }
            current.clear();
            continue;
        }
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The trigger statements of one table.
fn trigger_statements(plan: &TablePlan) -> Result<Vec<String>, String> {
    if plan.key.len() > MAX_KEY_COLUMNS {
        return Err(format!(
            "table {}: a key of {} columns is more than the change table logs ({MAX_KEY_COLUMNS})",
            plan.table,
            plan.key.len()
        ));
    }
    if trigger_name(&plan.table).chars().count() > 128 {
        return Err(format!(
            "table name {} is too long for a trigger name (ebis_<table>_capture must fit 128 characters)",
            plan.table
        ));
    }
    let cols: Vec<String> = (1..=plan.key.len()).map(|i| format!("k{i}")).collect();
    let logged = |alias: &str| {
        plan.key
            .iter()
            .map(|k| format!("CAST({alias}.{} AS NVARCHAR(450))", quote(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matched = plan
        .key
        .iter()
        .map(|k| format!("i.{0} = d.{0}", quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let qualified = trigger_qualified(&plan.table);
    let text = TRIGGERS
        .replace("{{trigger_qualified}}", &in_literal(&qualified))
        .replace("{{trigger}}", &qualified)
        .replace("{{table}}", &quote_table(&plan.table))
        .replace("{{table_literal}}", &crate::table::literal(&plan.table))
        .replace("{{key_columns}}", &cols.join(", "))
        .replace("{{inserted_keys}}", &logged("i"))
        .replace("{{deleted_keys}}", &logged("d"))
        .replace("{{key_match}}", &matched);
    Ok(split_batches(&text))
}

/// The statements that install changelog capture, in order.
pub fn changelog_statements(plans: &[TablePlan]) -> Result<Vec<String>, String> {
    let mut out = split_batches(CHANGE_TABLE);
    for p in plans {
        out.extend(trigger_statements(p)?);
    }
    Ok(out)
}

/// The statements that enable Change Tracking on the database and the tables.
pub fn tracking_statements(plans: &[TablePlan]) -> Vec<String> {
    let mut out = split_batches(TRACKING_DB);
    for p in plans {
        out.extend(split_batches(
            &TRACKING_TABLE
                .replace("{{table_qualified}}", &in_literal(&quote_table(&p.table)))
                .replace("{{table}}", &quote_table(&p.table)),
        ));
    }
    out
}

/// The grants of the reading account, as comments.
fn grants(req: &SetupRequest<'_>) -> String {
    let reader = quote(req.reader);
    let mut out = String::from("-- The account ebis reads with needs:\n");
    for p in req.plans {
        let what = match req.capture {
            Capture::ChangeTracking => "SELECT, VIEW CHANGE TRACKING",
            _ => "SELECT",
        };
        out.push_str(&format!(
            "--   GRANT {what} ON {} TO {reader};\n",
            quote_table(&p.table)
        ));
    }
    match req.capture {
        Capture::Changelog { purge, .. } => {
            out.push_str(&format!(
                "--   GRANT SELECT ON dbo.ebis_change TO {reader};\n-- With VIEW SERVER STATE it also sees open transactions, so a rolled-back gap settles in\n-- seconds instead of waiting for capture.gap_timeout:\n--   GRANT VIEW SERVER STATE TO {reader};  -- (a server-level grant, on its login)\n"
            ));
            if *purge {
                out.push_str(&format!(
                    "-- capture.purge_every is set: ebis deletes the change rows the warehouse has stored:\n--   GRANT DELETE ON dbo.ebis_change TO {reader};\n"
                ));
            } else {
                out.push_str("-- ebis does not delete from dbo.ebis_change (capture.purge_every is not set). Delete\n-- only below the seq `ebis status` shows, never by age, and never TRUNCATE it (its\n-- numbering would start again, and ebis would snapshot the source anew).\n");
            }
        }
        Capture::ChangeTracking => out.push_str(
            "-- Optional: with snapshot isolation allowed, nothing else is needed; ebis reads the\n-- version first and the rows after, so a change in between is read again, never lost.\n",
        ),
        Capture::Timestamp { .. } | Capture::Binlog { .. } | Capture::Logical { .. } => {}
    }
    out
}

/// Why a log-reading mode of another dialect is refused.
pub fn not_sqlserver(capture: &Capture) -> String {
    let whose = match capture {
        Capture::Logical { .. } => "PostgreSQL's logical decoding",
        _ => "MySQL/MariaDB's binary log",
    };
    format!(
        "{} is {whose}; a SQL Server source uses changelog, timestamp or change_tracking",
        capture.name()
    )
}

/// The setup of a source, statements and commented script.
pub fn script(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let statements = match req.capture {
        Capture::Changelog { .. } => changelog_statements(req.plans)?,
        Capture::ChangeTracking => tracking_statements(req.plans),
        Capture::Timestamp { .. } => Vec::new(),
        Capture::Binlog { .. } | Capture::Logical { .. } => {
            return Err(not_sqlserver(req.capture));
        }
    };
    let mut script = String::new();
    for s in &statements {
        script.push_str(s);
        script.push_str("\nGO\n\n");
    }
    if let Capture::Timestamp { .. } = req.capture {
        script.push_str("-- Timestamp capture installs nothing. ebis polls each table's modified column (a\n-- datetime/datetime2 the application sets on every write):\n");
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
        script.push_str("-- Deletes are found by comparing keys every capture.key_scan_every.\n");
    }
    script.push_str(&grants(req));
    Ok(SetupScript { statements, script })
}

/// The removal of a source's capture.
pub fn removal(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let mut statements = Vec::new();
    match req.capture {
        Capture::Changelog { .. } => {
            for p in req.plans {
                let q = trigger_qualified(&p.table);
                statements.extend(split_batches(
                    &REMOVE_TRIGGER
                        .replace("{{trigger_qualified}}", &in_literal(&q))
                        .replace("{{trigger}}", &q),
                ));
            }
            statements.extend(split_batches(REMOVE_CHANGE_TABLE));
        }
        Capture::ChangeTracking => {
            for p in req.plans {
                statements.extend(split_batches(
                    &REMOVE_TRACKING
                        .replace("{{table_qualified}}", &in_literal(&quote_table(&p.table)))
                        .replace("{{table}}", &quote_table(&p.table)),
                ));
            }
        }
        Capture::Timestamp { .. } | Capture::Binlog { .. } | Capture::Logical { .. } => {}
    }
    let mut script = format!(
        "-- Capture of {} table(s). Changes ebis has not read yet are lost with it: stop\n-- `ebis run` first. Change Tracking stays enabled on the database (other applications\n-- may use it): ALTER DATABASE CURRENT SET CHANGE_TRACKING = OFF once no table has it.\n\n",
        req.plans.len()
    );
    for s in &statements {
        script.push_str(s);
        script.push_str("\nGO\n");
    }
    Ok(SetupScript { statements, script })
}

/// Nothing to add from the server yet (a rename is found by `check`).
pub async fn review_note(_url: &str, _password: Option<&str>, _req: &SetupRequest<'_>) -> String {
    String::new()
}

/// Runs statements one batch at a time with a (privileged) account.
pub async fn apply(
    url: &str,
    password: Option<&str>,
    statements: &[String],
    _plans: &[TablePlan],
) -> Result<Vec<String>, SourceError> {
    let target: Target = crate::connect::parse_url(url).map_err(SourceError::Query)?;
    let mut conn = connect(&target, password).await?;
    for s in statements {
        conn.simple_query(s.as_str())
            .await
            .map_err(|e| classify(e, None))?
            .into_results()
            .await
            .map_err(|e| classify(e, None))?;
    }
    let _ = conn.close().await;
    Ok(Vec::new())
}

/// Whether an error says the account may not do this (permission denied, 229/230/262/
/// 1088/15247/4606/8104).
pub fn denied(message: &str) -> bool {
    [
        "permission",
        "denied",
        "(229)",
        "(230)",
        "(262)",
        "(1088)",
        "(15247)",
        "(4606)",
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
            modified_column: Some("XGRQ".to_owned()),
            trust_key: false,
        }
    }

    fn golden(name: &str, actual: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        ebis_source::assert_golden(&dir, name, actual);
    }

    fn req<'a>(plans: &'a [TablePlan], capture: &'a Capture) -> SetupRequest<'a> {
        SetupRequest {
            source: "ntax_city",
            plans,
            capture,
            reader: "ebis_reader",
        }
    }

    const CHANGELOG: Capture = Capture::Changelog {
        gaps: GapRules {
            timeout: Duration::from_secs(600),
            watch: Duration::from_secs(3600),
        },
        purge: true,
    };

    #[test]
    fn changelog_script_matches_its_golden_file() {
        let plans = [
            plan("DJ_NSRXX", &["DJXH"]),
            plan("ZS.ZS_JKS", &["DJXH", "JKSXH"]),
        ];
        golden(
            "changelog.sql",
            &script(&req(&plans, &CHANGELOG)).expect("script").script,
        );
        golden(
            "changelog_removal.sql",
            &removal(&req(&plans, &CHANGELOG)).expect("removal").script,
        );
    }

    #[test]
    fn change_tracking_script_matches_its_golden_file() {
        let plans = [plan("DJ_NSRXX", &["DJXH"])];
        let ct = Capture::ChangeTracking;
        golden(
            "change_tracking.sql",
            &script(&req(&plans, &ct)).expect("script").script,
        );
        golden(
            "change_tracking_removal.sql",
            &removal(&req(&plans, &ct)).expect("removal").script,
        );
    }

    #[test]
    fn timestamp_script_installs_nothing() {
        let plans = [plan("DJ_NSRXX", &["DJXH"])];
        let ts = Capture::Timestamp {
            overlap: Duration::from_secs(5),
        };
        let s = script(&req(&plans, &ts)).expect("script");
        assert!(s.statements.is_empty());
        golden("timestamp.sql", &s.script);
    }

    #[test]
    fn hostile_names_stay_names() {
        let plans = [plan("T'; DROP TABLE x--]", &["K]'"])];
        let s = script(&req(&plans, &CHANGELOG)).expect("script");
        let trigger = &s.statements[2];
        assert!(
            trigger.contains("ON [T'; DROP TABLE x--]]] AFTER"),
            "{trigger}"
        );
        assert!(
            trigger.contains("SELECT N'T''; DROP TABLE x--]', 'U'"),
            "{trigger}"
        );
        assert!(trigger.contains("i.[K]]'] = d.[K]]']"), "{trigger}");
        let drop = &s.statements[1];
        assert!(
            drop.contains("OBJECT_ID(N'[ebis_T''; DROP TABLE x--]]_capture]', N'TR')"),
            "{drop}"
        );
    }

    #[test]
    fn wide_keys_and_long_names_are_refused() {
        let wide = [plan("T", &["A", "B", "C", "D", "E"])];
        assert!(
            script(&req(&wide, &CHANGELOG))
                .expect_err("refused")
                .contains("more than the change table logs")
        );
        let long = [plan(&"T".repeat(130), &["A"])];
        assert!(
            script(&req(&long, &CHANGELOG))
                .expect_err("refused")
                .contains("too long for a trigger name")
        );
    }

    #[test]
    fn batches_split_at_go_lines() {
        assert_eq!(
            split_batches(
                "-- c\nSELECT 1;\nSELECT 2\nGO\n\ngo\nCREATE TRIGGER t AS\nBEGIN\n  SET NOCOUNT ON;\nEND\nGO\n"
            ),
            vec![
                "SELECT 1;\nSELECT 2".to_owned(),
                "CREATE TRIGGER t AS\nBEGIN\n  SET NOCOUNT ON;\nEND".to_owned()
            ]
        );
    }
}
