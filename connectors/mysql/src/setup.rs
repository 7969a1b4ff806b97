//! The DDL a DBA runs to set up changelog capture: the change table and, per captured
//! table, three triggers — rendered from `sql/sources/mysql/` with validated, quoted names.

use crate::table::{quote, split_table};
use ebis_source::TablePlan;

const CHANGE_TABLE: &str = include_str!("../../../sql/sources/mysql/changelog.sql");
const TRIGGERS: &str = include_str!("../../../sql/sources/mysql/triggers.sql");

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
        let t = format!("ebis_{}_{suffix}", name.to_ascii_lowercase());
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
