//! Connector errors, classified once: retryable (the pipeline backs off and tries again)
//! or fatal (the pipeline stops that source and shows the error).
//!
//! Messages name tables and columns, never row values.

use thiserror::Error;

/// Why a source read failed.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The connection was refused, lost or timed out; the server may be restarting.
    #[error("source unreachable: {0}")]
    Unreachable(String),
    /// A transient server condition: deadlock, lock wait timeout, too many connections.
    #[error("transient source error: {0}")]
    Transient(String),
    /// A table a mapping reads does not exist (or is not visible to this account).
    #[error("source table {table} does not exist or is not readable")]
    MissingTable {
        /// The table.
        table: String,
    },
    /// A column a mapping reads does not exist.
    #[error("source table {table} has no column {column}")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// The source does not guarantee a mapped key: rows could merge in the warehouse.
    #[error("source table {table}: {problem}")]
    Key {
        /// The table.
        table: String,
        /// What is not guaranteed, and what to do.
        problem: String,
    },
    /// A mapping's expression the source cannot evaluate (a typo, a table or column that
    /// is not there); `origin` names the mapping file, line and field.
    #[error("{origin}: the source cannot evaluate this expression: {message}")]
    Expression {
        /// `file:line:column field `name``.
        origin: String,
        /// What the source said (values scrubbed).
        message: String,
    },
    /// Change capture is not installed or not usable on this table.
    #[error("change capture not set up: {0}")]
    CaptureNotInstalled(String),
    /// The stored position does not fit this source (another mode, or corrupted).
    #[error("position does not fit this source: {0}")]
    BadPosition(String),
    /// The stored position can no longer be resumed from: the changes after it are gone
    /// (a change table purged or truncated past it, Change Tracking's minimum valid
    /// version passed it, a binary log or replication slot removed). The pipeline records
    /// why and re-snapshots the source; nothing else can recover what was missed.
    #[error("stored position expired: {0}")]
    PositionExpired(String),
    /// Any other error the server reported; fatal unless it is known to be transient.
    #[error("source query failed: {0}")]
    Query(String),
}

/// A server's error message with every quoted literal that is not an identifier replaced
/// by `'…'`, so values a statement carried (a date that would not parse, a key) never
/// reach logs or `ebis status`. An identifier — quoted table, column, user or constraint
/// names — starts with a letter or `_` and holds only `[A-Za-z0-9_$.@%-]`; ID numbers,
/// codes and Chinese text do not.
pub fn scrub_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['\'', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('\'');
        out.push_str(&rest[..=start]);
        let inner = &rest[start + 1..];
        let Some(len) = inner.find(quote) else {
            // An unterminated quote: the rest may be a value.
            out.push('…');
            return out;
        };
        let text = &inner[..len];
        let identifier = text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_$.@%-".contains(c));
        out.push_str(if identifier { text } else { "…" });
        out.push(quote);
        rest = &inner[len + 1..];
    }
    out.push_str(rest);
    out
}

impl SourceError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable(_) | SourceError::Transient(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_keep_names_and_lose_values() {
        assert_eq!(
            scrub_values("Incorrect DATETIME value: '2006-13-45' for column 'ESTDATE' at row 1"),
            "Incorrect DATETIME value: '…' for column 'ESTDATE' at row 1"
        );
        assert_eq!(
            scrub_values(
                "DELETE command denied to user 'ebis_reader'@'10.0.0.5' for table 'ebis_change'"
            ),
            "DELETE command denied to user 'ebis_reader'@'…' for table 'ebis_change'"
        );
        assert_eq!(
            scrub_values("Duplicate entry '乌海市宏达商贸有限公司' for key 'uk_name'"),
            "Duplicate entry '…' for key 'uk_name'"
        );
        assert_eq!(
            scrub_values(r#"invalid input syntax for type date: "20061301""#),
            r#"invalid input syntax for type date: "…""#
        );
        assert_eq!(
            scrub_values(
                r#"new row for relation "tax_registration" violates check constraint "c1""#
            ),
            r#"new row for relation "tax_registration" violates check constraint "c1""#
        );
        assert_eq!(scrub_values("value '769538264"), "value '…");
        assert_eq!(scrub_values("no quotes at all"), "no quotes at all");
    }
}
