//! PostgreSQL errors classified into retryable and fatal source errors, in one place.
//! Messages keep table and column names; any other quoted literal the server put in a
//! message (a value) is scrubbed.

use ebis_source::{SourceError, scrub_values};
use tokio_postgres::error::SqlState;

/// Classifies a driver error. `table` names the table the statement read, if one.
pub fn classify(e: tokio_postgres::Error, table: Option<&str>) -> SourceError {
    let Some(db) = e.as_db_error() else {
        // No server error: the connection failed, closed or timed out.
        return SourceError::Unreachable(e.to_string());
    };
    let message = format!("{} ({})", scrub_values(db.message()), db.code().code());
    classify_code(db.code(), message, table)
}

/// Classifies a server error by its SQLSTATE.
pub fn classify_code(code: &SqlState, message: String, table: Option<&str>) -> SourceError {
    let class = &code.code()[..2];
    if *code == SqlState::UNDEFINED_TABLE {
        return SourceError::MissingTable {
            table: table.unwrap_or("?").to_owned(),
        };
    }
    if *code == SqlState::UNDEFINED_COLUMN {
        return SourceError::MissingColumn {
            table: table.unwrap_or("?").to_owned(),
            column: quoted_name(&message).unwrap_or_default(),
        };
    }
    match class {
        // connection exceptions, insufficient resources, operator intervention
        // (shutdown, cannot connect now), system errors
        "08" | "53" | "57" | "58" if *code != SqlState::QUERY_CANCELED => {
            SourceError::Unreachable(message)
        }
        // invalid authorization (a wrong or rotated password): retried with backoff,
        // the password read again when it changes
        "28" => SourceError::Transient(format!(
            "{message}: the server refused the login: check the account in the URL and its password (connection.password_env or password_file); retried, so a password rotated at the server and in the file is picked up"
        )),
        // serialization failures, deadlocks, a lock not available, a cancelled statement,
        // an object in use (a replication slot another session holds for a moment)
        "40" => SourceError::Transient(message),
        _ if *code == SqlState::QUERY_CANCELED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::OBJECT_IN_USE =>
        {
            SourceError::Transient(message)
        }
        _ => SourceError::Query(message),
    }
}

/// The first `"…"` in a server message (the column it is about).
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_retryable_only_when_trying_again_can_help() {
        let c = |code: &str, m: &str| {
            classify_code(&SqlState::from_code(code), m.to_owned(), Some("t"))
        };
        assert!(c("40P01", "deadlock detected").is_retryable());
        assert!(
            c(
                "57P01",
                "terminating connection due to administrator command"
            )
            .is_retryable()
        );
        assert!(c("53300", "too many connections").is_retryable());
        assert!(c("55006", "replication slot \"ebis_x\" is active for PID 7").is_retryable());
        assert!(!c("42501", "permission denied for table t").is_retryable());
        assert!(
            matches!(c("42P01", "relation \"t\" does not exist"), SourceError::MissingTable { table } if table == "t")
        );
        assert!(matches!(
            c("42703", "column \"entname\" does not exist"),
            SourceError::MissingColumn { column, .. } if column == "entname"
        ));
    }
}
