//! MySQL errors classified into retryable and fatal source errors, in one place.
//! Messages keep table and column names; any other quoted literal the server put in a
//! message (a value) is scrubbed.

use ebis_source::{SourceError, scrub_values};
use mysql_async::{DriverError, Error};

/// Classifies a driver error. `table` names the table the statement read, if one.
pub fn classify(e: Error, table: Option<&str>) -> SourceError {
    match e {
        Error::Io(io) => {
            let text = io.to_string();
            // A certificate refused will be refused again: say which check failed.
            if text.contains("certificate") {
                SourceError::Query(ebis_source::tls::explain(&text))
            } else {
                SourceError::Unreachable(text)
            }
        }
        Error::Driver(DriverError::ConnectionClosed | DriverError::PoolDisconnected) => {
            SourceError::Unreachable("connection closed".to_owned())
        }
        Error::Driver(d) => SourceError::Query(d.to_string()),
        Error::Url(u) => SourceError::Query(format!("bad MySQL URL: {u}")),
        Error::Other(o) => SourceError::Unreachable(o.to_string()),
        Error::Server(s) => match s.code {
            // deadlock, lock wait timeout, too many connections, query interrupted,
            // MariaDB "connection was killed", out of resources
            // 4052: a replica with this id is still connected (a binlog reader of an
            // earlier run the server has not let go of yet).
            1213 | 1205 | 1040 | 1203 | 1317 | 1927 | 1041 | 4052 => {
                SourceError::Transient(format!("{} ({})", scrub_values(&s.message), s.code))
            }
            // server shutdown in progress, gone away, lost connection
            1053 | 2006 | 2013 | 1077 | 1078 | 1079 | 1080 => {
                SourceError::Unreachable(format!("{} ({})", scrub_values(&s.message), s.code))
            }
            // Access denied: a wrong or rotated password. Retried (with backoff): the
            // password is read again when it changes.
            1045 => SourceError::Transient(format!(
                "{} (1045): the server refused the login: check the account in the URL and its password (connection.password_env or password_file); retried, so a password rotated at the server and in the file is picked up",
                scrub_values(&s.message)
            )),
            1146 => SourceError::MissingTable {
                table: quoted_name(&s.message)
                    .or_else(|| table.map(str::to_owned))
                    .unwrap_or_default(),
            },
            1054 => SourceError::MissingColumn {
                table: table.unwrap_or("?").to_owned(),
                column: quoted_name(&s.message).unwrap_or_default(),
            },
            _ => SourceError::Query(format!("{} ({})", scrub_values(&s.message), s.code)),
        },
    }
}

/// The first `'…'` in a server message (the table or column it is about).
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::ServerError;

    fn server(code: u16, message: &str) -> Error {
        Error::Server(ServerError {
            code,
            message: message.to_owned(),
            state: "HY000".to_owned(),
        })
    }

    #[test]
    fn values_in_server_messages_are_scrubbed() {
        let e = classify(
            server(
                1292,
                "Incorrect DATETIME value: '2006-13-45' for column 'ESTDATE'",
            ),
            Some("E_BASEINFO"),
        );
        assert_eq!(
            e.to_string(),
            "source query failed: Incorrect DATETIME value: '…' for column 'ESTDATE' (1292)"
        );
    }

    #[test]
    fn deadlocks_and_lost_connections_are_retryable() {
        assert!(classify(server(1213, "Deadlock found"), None).is_retryable());
        assert!(classify(server(2013, "Lost connection"), None).is_retryable());
        assert!(classify(Error::Driver(DriverError::ConnectionClosed), None).is_retryable());
    }

    #[test]
    fn schema_problems_are_fatal_and_named() {
        let e = classify(
            server(1054, "Unknown column 'REGNOX' in 'field list'"),
            Some("E_BASEINFO"),
        );
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "source table E_BASEINFO has no column REGNOX"
        );
        let e = classify(server(1146, "Table 'aic.E_GONE' doesn't exist"), None);
        assert_eq!(
            e.to_string(),
            "source table aic.E_GONE does not exist or is not readable"
        );
    }
}
