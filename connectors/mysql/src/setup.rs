//! The DDL a DBA runs to set up changelog capture: the change table and, per captured
//! table, three triggers — rendered from `sql/sources/mysql/` with validated, quoted names.

use crate::table::{quote, split_table};
use ebis_source::{SourceError, TablePlan};
use mysql_async::Conn;

const CHANGE_TABLE: &str = include_str!("../../../sql/sources/mysql/changelog.sql");
const TRIGGERS: &str = include_str!("../../../sql/sources/mysql/triggers.sql");
const REMOVE_TRIGGERS: &str = include_str!("../../../sql/sources/mysql/remove.sql");
const REMOVE_CHANGE_TABLE: &str = include_str!("../../../sql/sources/mysql/remove_changelog.sql");

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

    #[test]
    fn schema_qualified_tables_get_triggers_in_their_schema() {
        let plan = TablePlan {
            table: "DJDB.DJ_JL_JBSJ".into(),
            key: vec!["JSJDM".into()],
            columns: vec![],
            expressions: vec![],
            modified_column: None,
            trust_key: false,
        };
        let stmts = changelog_statements(&[plan]).expect("renders");
        assert_eq!(
            stmts[1],
            "DROP TRIGGER IF EXISTS `DJDB`.`ebis_dj_jl_jbsj_ai`"
        );
        assert!(stmts[2].contains("ON `DJDB`.`DJ_JL_JBSJ`"));
    }
}
