//! What a DBA runs to set up capture on Oracle, for review or to apply, rendered from
//! `sql/sources/oracle/` with checked, quoted names: the change table, its sequence, the
//! `EBIS_KEY` package and one row trigger per table (changelog); for timestamp mode
//! nothing but grants and index advice. Statements end with a `/` line, as SQL*Plus and
//! SQL Developer run them. Also removal, and applying a script.

use crate::changelog::{CHANGE_SEQUENCE, CHANGE_TABLE};
use crate::connect::{Session, parse_url};
use crate::names::{check_identifier, literal, quote, quote_table, trigger_name};
use ebis_capture::keys::split_table;
use ebis_source::{Capture, SetupRequest, SetupScript, SourceError, TablePlan};

const CHANGE_SETUP: &str = include_str!("../../../sql/sources/oracle/changelog.sql");
const TRIGGER: &str = include_str!("../../../sql/sources/oracle/triggers.sql");
const REMOVE_TRIGGER: &str = include_str!("../../../sql/sources/oracle/remove.sql");
const REMOVE_CHANGE_TABLE: &str = include_str!("../../../sql/sources/oracle/remove_changelog.sql");

/// The most key columns the change table logs.
pub const MAX_KEY_COLUMNS: usize = 4;

/// An example of the privileged URL for `setup-source --apply`.
pub const ADMIN_URL_EXAMPLE: &str = "oracle://system@host:1521/SERVICE";

/// Whether a key column of this type is logged exactly as text by `EBIS_KEY.TXT`.
pub fn loggable(ty: &str) -> bool {
    let base = ty.split('(').next().unwrap_or(ty).trim();
    matches!(
        base,
        "NUMBER" | "INTEGER" | "DATE" | "CHAR" | "VARCHAR2" | "VARCHAR" | "NCHAR" | "NVARCHAR2"
    )
}

/// A name as Oracle stores it when written without quotes: a plain lower-case name is
/// folded to upper case (as the catalog resolves it), anything else stays as written.
pub fn fold(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_$#".contains(c));
    if plain {
        name.to_ascii_uppercase()
    } else {
        name.to_owned()
    }
}

/// A name inside a `'…'` literal.
fn in_literal(s: &str) -> String {
    s.replace('\'', "''")
}

/// Splits a script into statements at `/` lines, dropping comment-only lines.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim() == "/" {
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

/// A plan's table as (owner, table), folded as Oracle stores unquoted names; the owner
/// defaults to the reading account's schema.
fn place(plan: &TablePlan, reader: &str) -> Result<(String, String), String> {
    let (owner, table) = match split_table(&plan.table) {
        (Some(o), t) => (fold(o), fold(t)),
        (None, t) => (fold(reader), fold(t)),
    };
    for n in [&owner, &table] {
        if let Some(why) = check_identifier(n) {
            return Err(format!("table {}: {why}", plan.table));
        }
    }
    Ok((owner, table))
}

/// The schema holding the change table: the first captured table's.
fn change_owner(req: &SetupRequest<'_>) -> Result<String, String> {
    match req.plans.first() {
        Some(p) => Ok(place(p, req.reader)?.0),
        None => Ok(fold(req.reader)),
    }
}

/// The trigger statements of one table.
fn trigger_statements(plan: &TablePlan, owner: &str, reader: &str) -> Result<Vec<String>, String> {
    if plan.key.len() > MAX_KEY_COLUMNS {
        return Err(format!(
            "table {}: a key of {} columns is more than the change table logs ({MAX_KEY_COLUMNS})",
            plan.table,
            plan.key.len()
        ));
    }
    for k in &plan.key {
        if let Some(why) = check_identifier(k) {
            return Err(format!("table {} key column: {why}", plan.table));
        }
    }
    let (table_owner, table) = place(plan, reader)?;
    let keys: Vec<String> = plan.key.iter().map(|k| fold(k)).collect();
    let txt = format!("{}.\"EBIS_KEY\".TXT", quote(owner));
    let logged = |side: &str| {
        keys.iter()
            .map(|k| format!("{txt}(:{side}.{})", quote(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let changed = keys
        .iter()
        .map(|k| format!(":OLD.{0} <> :NEW.{0}", quote(k)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let cols: Vec<String> = (1..=keys.len()).map(|i| format!("K{i}")).collect();
    let text = TRIGGER
        .replace(
            "{{trigger}}",
            &quote_table(&table_owner, &trigger_name(&plan.table)),
        )
        .replace("{{table}}", &quote_table(&table_owner, &table))
        .replace("{{change_table}}", &quote_table(owner, CHANGE_TABLE))
        .replace("{{sequence}}", &quote_table(owner, CHANGE_SEQUENCE))
        .replace("{{table_literal}}", &literal(&plan.table))
        .replace("{{key_columns}}", &cols.join(", "))
        .replace("{{new_keys}}", &logged("NEW"))
        .replace("{{old_keys}}", &logged("OLD"))
        .replace("{{key_changed}}", &changed);
    let mut out = Vec::new();
    if table_owner != owner {
        // A trigger reaches objects of another schema only through direct grants.
        let to = quote(&table_owner);
        out.push(format!(
            "GRANT INSERT ON {} TO {to}",
            quote_table(owner, CHANGE_TABLE)
        ));
        out.push(format!(
            "GRANT SELECT ON {} TO {to}",
            quote_table(owner, CHANGE_SEQUENCE)
        ));
        out.push(format!(
            "GRANT EXECUTE ON {} TO {to}",
            quote_table(owner, "EBIS_KEY")
        ));
    }
    out.extend(split_statements(&text));
    Ok(out)
}

/// The statements that install changelog capture, in order.
pub fn changelog_statements(req: &SetupRequest<'_>) -> Result<Vec<String>, String> {
    let owner = change_owner(req)?;
    let mut out = split_statements(
        &CHANGE_SETUP
            .replace("{{owner_literal}}", &literal(&owner))
            .replace("{{owner_in_literal}}", &in_literal(&quote(&owner)))
            .replace("{{owner}}", &quote(&owner)),
    );
    for p in req.plans {
        out.extend(trigger_statements(p, &owner, req.reader)?);
    }
    Ok(out)
}

/// The grants of the reading account, as comments.
fn grants(req: &SetupRequest<'_>) -> Result<String, String> {
    let reader = quote(&fold(req.reader));
    let mut out =
        format!("-- The account ebis reads with needs:\n--   GRANT CREATE SESSION TO {reader};\n");
    for p in req.plans {
        let (o, t) = place(p, req.reader)?;
        out.push_str(&format!(
            "--   GRANT SELECT ON {} TO {reader};\n",
            quote_table(&o, &t)
        ));
    }
    out.push_str(&format!(
        "-- Snapshots read every table as of one SCN (flashback query), so the tables agree\n-- with each other; without these they are read chunk by chunk as they are:\n--   GRANT EXECUTE ON SYS.DBMS_FLASHBACK TO {reader};\n"
    ));
    for p in req.plans {
        let (o, t) = place(p, req.reader)?;
        out.push_str(&format!(
            "--   GRANT FLASHBACK ON {} TO {reader};\n",
            quote_table(&o, &t)
        ));
    }
    match req.capture {
        Capture::Changelog { purge, .. } => {
            let owner = change_owner(req)?;
            let table = quote_table(&owner, CHANGE_TABLE);
            out.push_str(&format!(
                "--   GRANT SELECT ON {table} TO {reader};\n--   GRANT SELECT ON {} TO {reader};\n-- With SELECT on GV_$TRANSACTION it also sees open transactions, so a rolled-back gap\n-- settles in seconds instead of waiting for capture.gap_timeout:\n--   GRANT SELECT ON SYS.GV_$TRANSACTION TO {reader};\n-- With SELECT on DBA_TRIGGERS `ebis check` confirms each table's trigger is there and\n-- enabled (ALL_TRIGGERS shows an account only the triggers of tables it owns):\n--   GRANT SELECT ON SYS.DBA_TRIGGERS TO {reader};\n",
                quote_table(&owner, CHANGE_SEQUENCE)
            ));
            if *purge {
                out.push_str(&format!(
                    "-- capture.purge_every is set: ebis deletes the change rows the warehouse has stored:\n--   GRANT DELETE ON {table} TO {reader};\n"
                ));
            } else {
                out.push_str(&format!(
                    "-- ebis does not delete from {table} (capture.purge_every is not set). Delete only\n-- below the seq `ebis status` shows, never by age, and never TRUNCATE it or recreate\n-- the sequence (numbering would start again, and ebis would snapshot the source anew).\n"
                ));
            }
        }
        Capture::Timestamp { .. } => {
            if req.plans.iter().any(|p| {
                p.modified_column
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(crate::ROWSCN))
            }) {
                out.push_str(
                    "-- ORA_ROWSCN tables need the SCN (EXECUTE ON SYS.DBMS_FLASHBACK above).\n",
                );
            }
        }
        Capture::ChangeTracking | Capture::Binlog { .. } | Capture::Logical { .. } => {}
    }
    Ok(out)
}

/// Why a capture mode of another dialect is refused.
pub fn not_oracle(capture: &Capture) -> String {
    let whose = match capture {
        Capture::Binlog { .. } => "MySQL/MariaDB's binary log",
        Capture::Logical { .. } => "PostgreSQL's logical decoding",
        _ => "SQL Server's Change Tracking",
    };
    format!(
        "{} is {whose}; an Oracle source uses changelog or timestamp",
        capture.name()
    )
}

/// The setup of a source, statements and commented script.
pub fn script(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let statements = match req.capture {
        Capture::Changelog { .. } => changelog_statements(req)?,
        Capture::Timestamp { .. } => Vec::new(),
        Capture::ChangeTracking | Capture::Binlog { .. } | Capture::Logical { .. } => {
            return Err(not_oracle(req.capture));
        }
    };
    let mut script = String::new();
    for s in &statements {
        script.push_str(s);
        script.push_str("\n/\n\n");
    }
    if let Capture::Timestamp { .. } = req.capture {
        script.push_str("-- Timestamp capture installs nothing. ebis polls each table's modified column (a\n-- DATE or TIMESTAMP the application sets on every write), or ORA_ROWSCN:\n");
        for p in req.plans {
            let m = p.modified_column.as_deref();
            let advice = match m {
                Some(m) if m.eq_ignore_ascii_case(crate::ROWSCN) => "(the commit SCN of the row's block: each poll scans the table; a table created with ROWDEPENDENCIES keeps it per row)".to_owned(),
                Some(m) => format!("(an index on ({m}, {}) keeps polls cheap)", p.key.join(", ")),
                None => "(none: set modified_column!)".to_owned(),
            };
            script.push_str(&format!(
                "--   {}: {}  {advice}\n",
                p.table,
                m.unwrap_or("-")
            ));
        }
        script.push_str("-- Deletes are found by comparing keys every capture.key_scan_every.\n");
    }
    script.push_str(&grants(req)?);
    Ok(SetupScript { statements, script })
}

/// The removal of a source's capture.
pub fn removal(req: &SetupRequest<'_>) -> Result<SetupScript, String> {
    let mut statements = Vec::new();
    if let Capture::Changelog { .. } = req.capture {
        for p in req.plans {
            let (o, _) = place(p, req.reader)?;
            let q = quote_table(&o, &trigger_name(&p.table));
            statements.extend(split_statements(
                &REMOVE_TRIGGER.replace("{{trigger_in_literal}}", &in_literal(&q)),
            ));
        }
        let owner = change_owner(req)?;
        statements.extend(split_statements(
            &REMOVE_CHANGE_TABLE.replace("{{owner_in_literal}}", &in_literal(&quote(&owner))),
        ));
    }
    let mut script = format!(
        "-- Capture of {} table(s). Changes ebis has not read yet are lost with it: stop\n-- `ebis run` first.\n\n",
        req.plans.len()
    );
    for s in &statements {
        script.push_str(s);
        script.push_str("\n/\n");
    }
    Ok(SetupScript { statements, script })
}

/// Runs statements one at a time with a (privileged) account, committing at the end.
pub async fn apply(
    url: &str,
    password: Option<&str>,
    statements: &[String],
    _plans: &[TablePlan],
) -> Result<Vec<String>, SourceError> {
    let target = parse_url(url).map_err(SourceError::Query)?;
    let session = Session::new(target, password.map(str::to_owned));
    let statements = statements.to_vec();
    let result = session
        .run(None, move |conn| {
            for s in &statements {
                conn.execute(s, &[])?;
            }
            conn.commit()
        })
        .await;
    session.close().await;
    result.map(|()| Vec::new())
}

/// Whether an error says the account may not do this.
pub fn denied(message: &str) -> bool {
    [
        "ORA-01031",
        "ORA-01749",
        "ORA-04089",
        "ORA-01045",
        "insufficient privileges",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebis_source::GapRules;
    use std::time::Duration;

    fn plan(table: &str, key: &[&str], modified: &str) -> TablePlan {
        TablePlan {
            table: table.to_owned(),
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            columns: Vec::new(),
            expressions: Vec::new(),
            modified_column: Some(modified.to_owned()),
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
            plan("NTAX.DJ_NSRXX", &["NSRDZDAH"], "XGRQ"),
            plan("zs.zs_jks", &["djxh", "jksxh"], "XGRQ"),
        ];
        let s = script(&req(&plans, &CHANGELOG)).expect("script");
        golden("changelog.sql", &s.script);
        // Statements are sent as they are: PL/SQL keeps its END;, SQL has no terminator.
        assert!(s.statements[0].starts_with("DECLARE") && s.statements[0].ends_with("END;"));
        assert!(s.statements.iter().all(|st| !st.ends_with('/')));
        let grant = s
            .statements
            .iter()
            .find(|st| st.starts_with("GRANT INSERT"))
            .expect("a cross-schema grant");
        assert_eq!(grant, "GRANT INSERT ON \"NTAX\".\"EBIS_CHANGE\" TO \"ZS\"");
        golden(
            "changelog_removal.sql",
            &removal(&req(&plans, &CHANGELOG)).expect("removal").script,
        );
    }

    #[test]
    fn timestamp_script_installs_nothing() {
        let plans = [
            plan("NTAX.DJ_NSRXX", &["NSRDZDAH"], "XGRQ"),
            plan("NTAX.DJ_ZXDJ", &["NSRDZDAH"], "ORA_ROWSCN"),
        ];
        let ts = Capture::Timestamp {
            overlap: Duration::from_secs(5),
        };
        let s = script(&req(&plans, &ts)).expect("script");
        assert!(s.statements.is_empty());
        golden("timestamp.sql", &s.script);
        assert!(
            script(&req(&plans, &Capture::ChangeTracking))
                .expect_err("not Oracle's")
                .contains("SQL Server")
        );
        assert!(
            script(&req(&plans, &Capture::Binlog { server_id: 7 }))
                .expect_err("not Oracle's")
                .contains("binlog is MySQL/MariaDB's binary log")
        );
    }

    #[test]
    fn hostile_names_stay_names() {
        let plans = [plan("NTAX.T'; DROP TABLE x--", &["K'"], "XGRQ")];
        let s = script(&req(&plans, &CHANGELOG)).expect("script");
        let trigger = s
            .statements
            .iter()
            .find(|st| st.starts_with("CREATE OR REPLACE TRIGGER"))
            .expect("a trigger");
        assert!(
            trigger.contains("ON \"NTAX\".\"T'; DROP TABLE x--\""),
            "{trigger}"
        );
        assert!(
            trigger.contains("'NTAX.T''; DROP TABLE x--', 'U'"),
            "{trigger}"
        );
        assert!(trigger.contains(":OLD.\"K'\" <> :NEW.\"K'\""), "{trigger}");
        let removal = removal(&req(&plans, &CHANGELOG)).expect("removal");
        assert!(
            removal.statements[0].contains("'DROP TRIGGER \"NTAX\".\"EBIS_TDROPTABLEX_"),
            "{}",
            removal.statements[0]
        );
        let quoted = [plan("NTAX.T\"X", &["K"], "XGRQ")];
        assert!(
            script(&req(&quoted, &CHANGELOG))
                .expect_err("no quote can be quoted")
                .contains("double quote")
        );
    }

    #[test]
    fn wide_keys_are_refused_and_key_types_checked() {
        let wide = [plan("NTAX.T", &["A", "B", "C", "D", "E"], "XGRQ")];
        assert!(
            script(&req(&wide, &CHANGELOG))
                .expect_err("refused")
                .contains("more than the change table logs")
        );
        assert!(loggable("NUMBER") && loggable("VARCHAR2") && loggable("DATE"));
        assert!(!loggable("TIMESTAMP(6)") && !loggable("RAW") && !loggable("BINARY_DOUBLE"));
    }

    #[test]
    fn statements_split_at_slash_lines() {
        assert_eq!(
            split_statements("-- c\nBEGIN\n  NULL;\nEND;\n/\n\nGRANT X TO Y\n/\n"),
            vec!["BEGIN\n  NULL;\nEND;".to_owned(), "GRANT X TO Y".to_owned()]
        );
        assert_eq!(fold("dj_nsrxx"), "DJ_NSRXX");
        assert_eq!(fold("纳税人"), "纳税人");
        assert_eq!(fold("Mixed Case"), "Mixed Case");
    }
}
