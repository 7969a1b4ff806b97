//! What the server's catalog (`information_schema`) says of a table: its columns, unique
//! indexes and ebis triggers, and whether it exists.
//!
//! Always through the text protocol, with names as escaped literals, never as prepared
//! statements: MariaDB 10.11 crashed (signal 11 in `free_tmp_table`) executing a prepared
//! `information_schema.TRIGGERS` query while other sessions dropped databases. Names come
//! from validated mappings or the server itself; they are escaped all the same.

use crate::error::classify;
use ebis_source::SourceError;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

/// A string literal for a name.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The schema a name lives in: the one written, or the connection's database.
fn schema_of(schema: Option<&str>) -> String {
    schema.map(lit).unwrap_or_else(|| "DATABASE()".to_owned())
}

/// Each column in order: name, data type, character set, nullable.
pub async fn columns(
    conn: &mut Conn,
    schema: Option<&str>,
    table: &str,
    display: &str,
) -> Result<Vec<(String, String, Option<String>, bool)>, SourceError> {
    let rows: Vec<(String, String, Option<String>, String)> = conn
        .query(format!(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME, IS_NULLABLE FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            schema_of(schema),
            lit(table)
        ))
        .await
        .map_err(|e| classify(e, Some(display)))?;
    Ok(rows
        .into_iter()
        .map(|(c, t, cs, n)| (c, t, cs, n == "YES"))
        .collect())
}

/// (index, column) of each unique index (PRIMARY or UNIQUE), columns in index order.
pub async fn unique_indexes(
    conn: &mut Conn,
    schema: Option<&str>,
    table: &str,
    display: &str,
) -> Result<Vec<(String, String)>, SourceError> {
    conn.query(format!(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND NON_UNIQUE = 0
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        schema_of(schema),
        lit(table)
    ))
    .await
    .map_err(|e| classify(e, Some(display)))
}

/// Whether a table exists and is visible to the account.
pub async fn table_exists(
    conn: &mut Conn,
    schema: Option<&str>,
    table: &str,
) -> Result<bool, SourceError> {
    let n: Option<i64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            schema_of(schema),
            lit(table)
        ))
        .await
        .map_err(|e| classify(e, None))?;
    Ok(n.unwrap_or(0) > 0)
}

/// The next value a table's AUTO_INCREMENT column will assign (in the connection's
/// database), when the server says. MySQL 8 caches this in its catalog for a day unless
/// the session asks for fresh statistics, which is done first (MariaDB has no such cache,
/// and no such variable: that error is ignored).
pub async fn next_auto_increment(conn: &mut Conn, table: &str) -> Result<Option<i64>, SourceError> {
    let _ = conn
        .query_drop("SET SESSION information_schema_stats_expiry = 0")
        .await;
    let next: Option<Option<u64>> = conn
        .query_first(format!(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {}",
            lit(table)
        ))
        .await
        .map_err(|e| classify(e, Some(table)))?;
    Ok(next.flatten().and_then(|n| i64::try_from(n).ok()))
}

/// The ebis triggers (`ebis_…`) on a table: name and body. An account without the
/// TRIGGER privilege sees none.
pub async fn ebis_triggers(
    conn: &mut Conn,
    schema: Option<&str>,
    table: &str,
    display: &str,
) -> Result<Vec<(String, String)>, SourceError> {
    conn.query(format!(
        "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS
         WHERE EVENT_OBJECT_SCHEMA = {} AND EVENT_OBJECT_TABLE = {} AND TRIGGER_NAME LIKE 'ebis\\_%'",
        schema_of(schema),
        lit(table)
    ))
    .await
    .map_err(|e| classify(e, Some(display)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_escaped_literals() {
        assert_eq!(lit("E_BASEINFO"), "'E_BASEINFO'");
        assert_eq!(lit("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(schema_of(None), "DATABASE()");
        assert_eq!(schema_of(Some("DJDB")), "'DJDB'");
    }
}
