//! Reaching Oracle: the URL ebis configs use and the connect string it becomes, one
//! session run on the blocking pool (the driver is synchronous), and every driver error
//! classified once as retryable or fatal — with a missing client library (DPI-1047)
//! turned into one error that says what to install.
//!
//! URL: `oracle://user@host[:port]/SERVICE` (Easy Connect), `oracle://user@host[:port]?sid=ORCL`
//! (a SID, for databases older than service names), or `oracle://user@ALIAS` (a TNS alias
//! from `tnsnames.ora`, found through `TNS_ADMIN`). `?protocol=tcps` connects with TLS
//! (the wallet or trusted certificates from `TNS_ADMIN`). The password comes from the
//! environment, never the URL.

use ebis_source::{SourceError, scrub_values};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The environment variable naming the directory of the Oracle client library
/// (Instant Client), when it is not on the library path.
pub const CLIENT_DIR_ENV: &str = "EBIS_ORACLE_CLIENT_DIR";

/// The longest one call may run before the session is broken off (a hung server must not
/// hold a source for ever).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Where and how to connect, parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The account.
    pub user: String,
    /// What the client library is given: an Easy Connect string, a descriptor or an alias.
    pub connect_string: String,
    /// Shown in messages (host and service, no account).
    pub display: String,
}

use ebis_source::percent_decode as unescape;

/// Whether a name can stand in a connect string without quoting.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-$#".contains(c))
}

/// Parses an `oracle://` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("oracle://")
        .ok_or("an Oracle URL starts with oracle://")?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let (user, hostport) = authority
        .rsplit_once('@')
        .ok_or("an Oracle URL names the account: oracle://user@host:1521/SERVICE")?;
    if user.contains(':') {
        return Err(
            "the password does not belong in the URL: set connection.password_env".to_owned(),
        );
    }
    let user = unescape(user);
    if user.is_empty() {
        return Err("an Oracle URL names the account: oracle://user@host:1521/SERVICE".to_owned());
    }
    let mut sid = None;
    let mut protocol = "tcp".to_owned();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sid" => sid = Some(unescape(v)),
            "protocol" => {
                let p = v.to_ascii_lowercase();
                if p != "tcp" && p != "tcps" {
                    return Err(format!("`protocol={v}`: expected tcp or tcps"));
                }
                protocol = p;
            }
            other => {
                return Err(format!(
                    "unknown URL option `{other}` (known: sid, protocol)"
                ));
            }
        }
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` is not a port number"))?,
            ),
        ),
        _ => (hostport, None),
    };
    if host.is_empty() {
        return Err("an Oracle URL names the host: oracle://user@host:1521/SERVICE".to_owned());
    }
    let service = path.map(unescape).filter(|s| !s.is_empty());
    let port_n = port.unwrap_or(1521);
    let connect_string = match (&service, &sid) {
        (Some(_), Some(_)) => {
            return Err("give a service name (the path) or `sid=`, not both".to_owned());
        }
        (Some(s), None) => {
            if !plain(s) {
                return Err(format!("`{s}` is not a service name"));
            }
            let scheme = if protocol == "tcps" { "tcps://" } else { "//" };
            format!("{scheme}{host}:{port_n}/{s}")
        }
        (None, Some(sid)) => {
            if !plain(sid) {
                return Err(format!("`{sid}` is not a SID"));
            }
            format!(
                "(DESCRIPTION=(ADDRESS=(PROTOCOL={})(HOST={host})(PORT={port_n}))(CONNECT_DATA=(SID={sid})))",
                protocol.to_ascii_uppercase()
            )
        }
        (None, None) if port.is_none() && path.is_none() => {
            // A TNS alias: the client library resolves it.
            if !plain(host) {
                return Err(format!("`{host}` is not a TNS alias"));
            }
            host.to_owned()
        }
        (None, None) => {
            return Err(
                "an Oracle URL names the service: oracle://user@host:1521/SERVICE (or ?sid=NAME, or a TNS alias alone: oracle://user@ALIAS)"
                    .to_owned(),
            );
        }
    };
    let display = match (&service, &sid) {
        (Some(s), _) => format!("{host}:{port_n}/{s}"),
        (None, Some(sid)) => format!("{host}:{port_n} SID {sid}"),
        (None, None) => format!("TNS alias {host}"),
    };
    Ok(Target {
        user,
        connect_string,
        display,
    })
}

/// What ebis says when the client library cannot be loaded.
pub fn client_missing(detail: &str) -> SourceError {
    SourceError::Query(format!(
        "the Oracle client library (libclntsh) could not be loaded, so no Oracle source can be read: install Oracle Instant Client 19c or later (Basic or Basic Light) and put its directory on LD_LIBRARY_PATH or name it in {CLIENT_DIR_ENV}; the driver said: {detail}"
    ))
}

/// Classifies a driver error by its Oracle (`ORA-`) or ODPI-C (`DPI-`) code. `table`
/// names the table being read, for the errors that are about it.
pub fn classify_code(
    ora: Option<i32>,
    dpi: Option<i32>,
    message: &str,
    table: Option<&str>,
) -> SourceError {
    let m = scrub_values(message);
    if let Some(code) = dpi {
        return match code {
            // What the loader said holds no row value: kept whole.
            1047 | 1072 => client_missing(message),
            // Not connected, connection closed, call timeout, session unusable.
            1010 | 1080 | 1067 | 1012 => SourceError::Unreachable(m),
            _ => SourceError::Query(m),
        };
    }
    let Some(code) = ora else {
        return SourceError::Query(m);
    };
    match code {
        // Lost, refused, timed out, shutting down, killed, idle too long, no listener,
        // the service not yet registered after a restart.
        28 | 1012 | 1033 | 1034 | 1089 | 1090 | 2396 | 3113 | 3114 | 3135 | 12152 | 12170
        | 12514 | 12518 | 12519 | 12520 | 12521 | 12526 | 12527 | 12528 | 12537 | 12541 | 12543
        | 12547 | 12560 | 12571 | 25408 | 25409 => SourceError::Unreachable(m),
        // Deadlock, resource busy, cannot serialize, too many sessions or processes.
        60 | 54 | 8177 | 18 | 20 | 51 | 30006 => SourceError::Transient(m),
        // Table or view does not exist.
        942 => match table {
            Some(t) => SourceError::MissingTable {
                table: t.to_owned(),
            },
            None => SourceError::Query(m),
        },
        // Snapshot too old; an SCN flashback cannot reach; the table's definition changed
        // since that SCN: what was to be read consistently is gone.
        1555 | 8180 | 8181 | 1466 => SourceError::PositionExpired(format!(
            "Oracle can no longer read the data as of the stored SCN: {m}"
        )),
        // A wrong or rotated password: retried with backoff, the password read again.
        1017 => SourceError::Transient(format!(
            "{m} (check the account in the URL and the password in connection.password_env or password_file; retried, so a password rotated at the server and in the file is picked up)"
        )),
        28000 => SourceError::Query(format!("{m} (the account is locked)")),
        28001 => SourceError::Query(format!("{m} (the account's password has expired)")),
        _ => SourceError::Query(m),
    }
}

/// Classifies a driver error.
pub fn classify(e: &oracle::Error, table: Option<&str>) -> SourceError {
    let message = match e.db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    classify_code(e.oci_code(), e.dpi_code(), &message, table)
}

/// Loads the client library once, from `EBIS_ORACLE_CLIENT_DIR` when set.
fn init_client() -> Result<(), SourceError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = INIT.get_or_init(|| {
        let Ok(dir) = std::env::var(CLIENT_DIR_ENV) else {
            return Ok(());
        };
        let mut params = oracle::InitParams::new();
        params
            .oracle_client_lib_dir(dir)
            .and_then(|p| p.init())
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(client_missing(e)),
    }
}

/// The session settings every connection starts with: numbers and dates in one fixed
/// format (implicit conversions never depend on the server's NLS defaults), and binary
/// comparison and sorting, so `ORDER BY` of a key pages exactly as `>` compares.
pub const SESSION_SETUP: &[&str] = &[
    "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,' NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS' NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6' NLS_SORT = BINARY NLS_COMP = BINARY",
];

/// Opens one connection.
pub fn connect(target: &Target, password: Option<&str>) -> Result<oracle::Connection, SourceError> {
    init_client()?;
    let conn = oracle::Connector::new(
        target.user.as_str(),
        password.unwrap_or_default(),
        target.connect_string.as_str(),
    )
    .driver_name("ebis")
    .connect()
    .map_err(|e| classify(&e, None))?;
    conn.set_call_timeout(Some(CALL_TIMEOUT))
        .map_err(|e| classify(&e, None))?;
    for sql in SESSION_SETUP {
        conn.execute(sql, &[]).map_err(|e| classify(&e, None))?;
    }
    Ok(conn)
}

/// One session with the source, used from async code: each call runs on the blocking
/// pool while it holds the connection, which is opened on first use and dropped after
/// an error that leaves it unusable (the next call reconnects).
#[derive(Clone)]
pub struct Session {
    target: Arc<Target>,
    password: Option<Arc<str>>,
    conn: Arc<Mutex<Option<oracle::Connection>>>,
}

impl Session {
    /// A session; nothing is opened yet.
    pub fn new(target: Target, password: Option<String>) -> Session {
        Session {
            target: Arc::new(target),
            password: password.map(Arc::from),
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `f` on the connection, on the blocking pool. `table` names what is read, for
    /// errors about it.
    pub async fn run<T, F>(&self, table: Option<&str>, f: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce(&oracle::Connection) -> Result<T, oracle::Error> + Send + 'static,
    {
        let me = self.clone();
        let table = table.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut guard = me.conn.lock().map_err(|_| {
                SourceError::Transient("an earlier Oracle call panicked".to_owned())
            })?;
            if guard.is_none() {
                *guard = Some(connect(&me.target, me.password.as_deref())?);
            }
            let Some(conn) = guard.as_ref() else {
                return Err(SourceError::Unreachable("not connected".to_owned()));
            };
            match f(conn) {
                Ok(v) => Ok(v),
                Err(e) => {
                    let err = classify(&e, table.as_deref());
                    if err.is_retryable() {
                        *guard = None;
                    } else {
                        // A failed statement may leave a transaction open (a flashback
                        // query, a purge): end it so the next call starts clean.
                        let _ = conn.rollback();
                    }
                    Err(err)
                }
            }
        })
        .await
        .map_err(|e| SourceError::Transient(format!("an Oracle call did not finish: {e}")))?
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let conn = self.conn.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut g) = conn.lock()
                && let Some(c) = g.take()
            {
                let _ = c.close();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_connect_strings() {
        let t = parse_url("oracle://ebis_reader@db.ntax.local:1522/NTAXPDB").expect("easy connect");
        assert_eq!(t.user, "ebis_reader");
        assert_eq!(t.connect_string, "//db.ntax.local:1522/NTAXPDB");
        assert_eq!(t.display, "db.ntax.local:1522/NTAXPDB");
        let t = parse_url("oracle://ebis_reader@10.0.0.5/ORCL").expect("default port");
        assert_eq!(t.connect_string, "//10.0.0.5:1521/ORCL");
        let t = parse_url("oracle://ebis_reader@10.0.0.5?sid=ORCL").expect("a SID");
        assert_eq!(
            t.connect_string,
            "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=10.0.0.5)(PORT=1521))(CONNECT_DATA=(SID=ORCL)))"
        );
        let t = parse_url("oracle://ebis_reader@NTAX_PROD").expect("an alias");
        assert_eq!(t.connect_string, "NTAX_PROD");
        assert_eq!(t.display, "TNS alias NTAX_PROD");
        let t = parse_url("oracle://ebis_reader@db:2484/NTAX?protocol=tcps").expect("TLS");
        assert_eq!(t.connect_string, "tcps://db:2484/NTAX");
        let t = parse_url("oracle://c%23%23ebis@db/NTAX").expect("an escaped user");
        assert_eq!(t.user, "c##ebis");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let e = |u: &str| parse_url(u).expect_err(u);
        assert!(e("mysql://x@h/db").contains("oracle://"));
        assert!(e("oracle://u:secret@h/S").contains("password_env"));
        assert!(e("oracle://h/S").contains("names the account"));
        assert!(e("oracle://u@h:15x/S").contains("port"));
        assert!(e("oracle://u@h:1521").contains("names the service"));
        assert!(e("oracle://u@h/S?sid=X").contains("not both"));
        assert!(e("oracle://u@h/S?wallet=/x").contains("unknown URL option"));
        assert!(e("oracle://u@h/S)(X").contains("not a service name"));
        assert!(e("oracle://u@h/S?protocol=ipc").contains("tcp or tcps"));
    }

    #[test]
    fn a_missing_client_library_is_one_clear_error() {
        let msg = "DPI-1047: Cannot locate a 64-bit Oracle Client library: \"libclntsh.so: cannot open shared object file: No such file or directory\". See https://oracle.github.io/odpi/doc/installation.html#linux for help";
        let e = classify_code(None, Some(1047), msg, None);
        let text = e.to_string();
        assert!(text.contains("Instant Client"), "{text}");
        assert!(text.contains(CLIENT_DIR_ENV), "{text}");
        assert!(text.contains("LD_LIBRARY_PATH"), "{text}");
        assert!(!e.is_retryable(), "installing a library is not a retry");
    }

    #[test]
    fn errors_are_classified_by_code() {
        let c = |ora, m: &str| classify_code(Some(ora), None, m, Some("DJ_NSRXX"));
        assert!(c(3113, "ORA-03113: end-of-file on communication channel").is_retryable());
        assert!(c(12541, "ORA-12541: TNS:no listener").is_retryable());
        assert!(
            c(
                60,
                "ORA-00060: deadlock detected while waiting for resource"
            )
            .is_retryable()
        );
        assert!(matches!(
            c(942, "ORA-00942: table or view does not exist"),
            SourceError::MissingTable { table } if table == "DJ_NSRXX"
        ));
        assert!(matches!(
            c(
                1555,
                "ORA-01555: snapshot too old: rollback segment number 9 with name \"_SYSSMU9$\" too small"
            ),
            SourceError::PositionExpired(_)
        ));
        assert!(matches!(
            c(
                8181,
                "ORA-08181: specified number is not a valid system change number"
            ),
            SourceError::PositionExpired(_)
        ));
        let e = c(1017, "ORA-01017: invalid username/password; logon denied");
        assert!(e.is_retryable(), "a rotated password is retried");
        assert!(e.to_string().contains("password_env"));
        // Values in a message never pass through.
        let e = c(1722, "ORA-01722: invalid number '91150302MA0N1X2Y3Z'");
        assert!(!e.to_string().contains("91150302"), "{e}");
        assert!(matches!(
            classify_code(
                None,
                Some(1080),
                "DPI-1080: connection was closed by ORA-3113",
                None
            ),
            SourceError::Unreachable(_)
        ));
    }
}
