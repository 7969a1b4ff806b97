//! Reaching SQL Server: the URL ebis configs use, the tiberius config it becomes (TLS by
//! rustls, named instances through the SQL Browser), a small pool, and every driver error
//! classified once as retryable or fatal — with the legacy-TLS case explained.
//!
//! URL: `sqlserver://user@host[:port]/database[?instance=NAME&encrypt=…&trust_cert=true&ca=/path.pem]`.
//! `encrypt` is `required` (the default: the whole session is encrypted), `login` (only
//! the login packet, as old drivers did) or `off`. The password comes from the
//! environment, never the URL.

use ebis_source::{SourceError, scrub_values};
use std::time::Duration;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, SqlBrowser};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// A connection.
pub type Conn = Client<Compat<TcpStream>>;

/// Where and how to connect, parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port (none with an instance name: the SQL Browser says).
    pub port: Option<u16>,
    /// Named instance.
    pub instance: Option<String>,
    /// Database.
    pub database: String,
    /// SQL login.
    pub user: String,
    /// Encryption level.
    pub encrypt: Encrypt,
    /// Accept any server certificate (a test server's self-signed one).
    pub trust_cert: bool,
    /// A CA certificate file to trust.
    pub ca: Option<String>,
}

/// How much of the session TLS protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encrypt {
    /// All of it.
    Required,
    /// The login packet only.
    Login,
    /// Nothing (a server that cannot do TLS at all).
    Off,
}

use ebis_source::percent_decode as unescape;

/// Parses a `sqlserver://` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("sqlserver://")
        .or_else(|| url.strip_prefix("mssql://"))
        .ok_or("a SQL Server URL starts with sqlserver://")?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let (user, hostport) = authority
        .rsplit_once('@')
        .ok_or("the URL names no login: sqlserver://user@host:1433/database")?;
    if user.contains(':') {
        return Err("the URL holds a password: put it in the environment variable the config's password_env names".to_owned());
    }
    let user = unescape(user);
    if user.contains('\\') {
        return Err(format!(
            "`{user}` is a Windows account: Windows (integrated) authentication is not in this build (it needs Kerberos/SSPI libraries); use a SQL Server login"
        ));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("port `{p}` is not a number"))?,
            ),
        ),
        _ => (hostport.to_owned(), None),
    };
    if host.is_empty() {
        return Err("the URL names no host".to_owned());
    }
    let database = unescape(path);
    if database.is_empty() {
        return Err("the URL names no database: sqlserver://user@host:1433/database".to_owned());
    }
    let mut target = Target {
        host,
        port,
        instance: None,
        database,
        user,
        encrypt: Encrypt::Required,
        trust_cert: false,
        ca: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = unescape(v);
        match k {
            "instance" => target.instance = Some(v),
            "encrypt" => {
                target.encrypt = match v.as_str() {
                    "required" | "true" | "strict" => Encrypt::Required,
                    "login" => Encrypt::Login,
                    "off" | "false" => Encrypt::Off,
                    other => {
                        return Err(format!("encrypt={other}: expected required, login or off"));
                    }
                }
            }
            "trust_cert" | "trustservercertificate" => target.trust_cert = v == "true",
            "ca" => target.ca = Some(v),
            "password" => {
                return Err("the URL holds a password: put it in the environment variable the config's password_env names".to_owned());
            }
            other => return Err(format!("unknown URL parameter `{other}`")),
        }
    }
    Ok(target)
}

impl Target {
    /// The tiberius config, with the password.
    pub fn config(&self, password: Option<&str>) -> Config {
        let mut c = Config::new();
        c.host(&self.host);
        if let Some(p) = self.port {
            c.port(p);
        }
        if let Some(i) = &self.instance {
            c.instance_name(i);
        }
        c.database(&self.database);
        c.application_name("ebis");
        c.authentication(AuthMethod::sql_server(&self.user, password.unwrap_or("")));
        c.encryption(match self.encrypt {
            Encrypt::Required => EncryptionLevel::Required,
            Encrypt::Login => EncryptionLevel::Off,
            Encrypt::Off => EncryptionLevel::NotSupported,
        });
        if self.trust_cert {
            c.trust_cert();
        } else if let Some(ca) = &self.ca {
            c.trust_cert_ca(ca);
        }
        c.handshake_timeout(Some(Duration::from_secs(15)));
        c.command_timeout(Some(Duration::from_secs(120)));
        c
    }

    /// `host:port` or `host\instance`, for messages.
    pub fn place(&self) -> String {
        match (&self.instance, self.port) {
            (Some(i), _) => format!("{}\\{i}", self.host),
            (None, Some(p)) => format!("{}:{p}", self.host),
            (None, None) => format!("{}:1433", self.host),
        }
    }
}

/// Opens one connection, following a routing redirect once.
pub async fn connect(target: &Target, password: Option<&str>) -> Result<Conn, SourceError> {
    let config = target.config(password);
    let tcp = if target.instance.is_some() {
        TcpStream::connect_named(&config).await
    } else {
        TcpStream::connect(config.get_addr())
            .await
            .map_err(tiberius::error::Error::from)
    }
    .map_err(|e| classify_connect(e, target))?;
    let _ = tcp.set_nodelay(true);
    match Client::connect(config.clone(), tcp.compat_write()).await {
        Ok(c) => Ok(c),
        Err(tiberius::error::Error::Routing { host, port }) => {
            let mut routed = config;
            routed.host(&host);
            routed.port(port);
            let tcp = TcpStream::connect(routed.get_addr())
                .await
                .map_err(|e| classify_connect(e.into(), target))?;
            Client::connect(routed, tcp.compat_write())
                .await
                .map_err(|e| classify_connect(e, target))
        }
        Err(e) => Err(classify_connect(e, target)),
    }
}

/// A connection error, with what to do about it.
fn classify_connect(e: tiberius::error::Error, target: &Target) -> SourceError {
    use tiberius::error::Error;
    match e {
        Error::Tls(m) => SourceError::Query(format!(
            "TLS with SQL Server at {} failed ({m}). ebis speaks TLS 1.2 or later only: SQL Server 2008/2012 without the TLS 1.2 update offer TLS 1.0/1.1 and cannot be reached encrypted. Install the server's TLS 1.2 update; for a self-signed certificate add trust_cert=true (or ca=/path/to/ca.pem) to the URL; on a trusted network, encrypt=login encrypts only the login",
            target.place()
        )),
        Error::Server(t) if t.code() == 18456 => SourceError::Transient(format!(
            "SQL Server at {} refused the login of {} (18456): check the password (connection.password_env or password_file); retried, so a password rotated at the server and in the file is picked up",
            target.place(),
            target.user
        )),
        Error::Server(t) if t.code() == 4060 => SourceError::Query(format!(
            "SQL Server at {} has no database {} this login may open (4060)",
            target.place(),
            target.database
        )),
        other => match classify(other, None) {
            SourceError::Unreachable(m) => {
                SourceError::Unreachable(format!("SQL Server at {}: {m}", target.place()))
            }
            e => e,
        },
    }
}

/// Classifies a driver error (`table`, when known, names what was read).
pub fn classify(e: tiberius::error::Error, table: Option<&str>) -> SourceError {
    use tiberius::error::Error;
    match e {
        Error::Io { message, .. } => SourceError::Unreachable(message),
        Error::Server(t) => {
            let message = format!("{} ({})", scrub_values(t.message()), t.code());
            match t.code() {
                // Deadlock victim, lock timeout, snapshot conflicts, resource limits,
                // a database failing over or starting.
                1205 | 1222 | 3960 | 3961 | 701 | 8645 | 40613 | 40501 | 40197 | 49918 | 49919
                | 49920 | 983 | 976 | 978 => SourceError::Transient(message),
                208 => match table {
                    Some(t) => SourceError::MissingTable {
                        table: t.to_owned(),
                    },
                    None => SourceError::Query(message),
                },
                _ => SourceError::Query(message),
            }
        }
        Error::Routing { host, port } => {
            SourceError::Unreachable(format!("routed to {host}:{port}"))
        }
        Error::Tls(m) => SourceError::Query(format!("TLS: {m}")),
        other => SourceError::Query(scrub_values(&other.to_string())),
    }
}

/// A pool of connections to one database.
pub struct Manager {
    target: Target,
    password: Option<String>,
}

impl deadpool::managed::Manager for Manager {
    type Type = Conn;
    type Error = SourceError;

    /// Connects in a task of its own: a TDS login's futures are large, and polled deep
    /// inside the pipeline's they would pass a worker thread's stack in unoptimized
    /// builds.
    async fn create(&self) -> Result<Conn, SourceError> {
        let (target, password) = (self.target.clone(), self.password.clone());
        tokio::spawn(async move { connect(&target, password.as_deref()).await })
            .await
            .map_err(|e| SourceError::Unreachable(format!("connecting: {e}")))?
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<SourceError> {
        conn.simple_query("SELECT 1")
            .await
            .map_err(|e| deadpool::managed::RecycleError::Backend(classify(e, None)))?
            .into_results()
            .await
            .map_err(|e| deadpool::managed::RecycleError::Backend(classify(e, None)))?;
        Ok(())
    }
}

/// A pool.
pub type Pool = deadpool::managed::Pool<Manager>;

/// Builds a pool of at most `max` connections (none opened until used).
pub fn pool(target: Target, password: Option<String>, max: usize) -> Result<Pool, SourceError> {
    Pool::builder(Manager { target, password })
        .max_size(max.max(1))
        .wait_timeout(Some(Duration::from_secs(120)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| SourceError::Query(format!("SQL Server pool: {e}")))
}

/// A connection from the pool.
pub async fn get(pool: &Pool) -> Result<deadpool::managed::Object<Manager>, SourceError> {
    pool.get().await.map_err(|e| match e {
        deadpool::managed::PoolError::Backend(e) => e,
        deadpool::managed::PoolError::Timeout(_) => {
            SourceError::Unreachable("timed out waiting for a SQL Server connection".to_owned())
        }
        other => SourceError::Unreachable(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_instance_database_and_tls() {
        let t = parse_url("sqlserver://ebis_reader@10.1.2.3:1433/NTAX?trust_cert=true")
            .expect("parses");
        assert_eq!(t.host, "10.1.2.3");
        assert_eq!(t.port, Some(1433));
        assert_eq!(t.database, "NTAX");
        assert_eq!(t.user, "ebis_reader");
        assert_eq!(t.encrypt, Encrypt::Required);
        assert!(t.trust_cert);
        let n = parse_url("sqlserver://ebis@dbhost/DJ_DB?instance=SQLEXPRESS&encrypt=login")
            .expect("parses");
        assert_eq!(n.instance.as_deref(), Some("SQLEXPRESS"));
        assert_eq!(n.port, None);
        assert_eq!(n.encrypt, Encrypt::Login);
        assert_eq!(n.place(), "dbhost\\SQLEXPRESS");
    }

    #[test]
    fn passwords_windows_accounts_and_strange_parameters_are_refused() {
        for (url, says) in [
            ("sqlserver://sa:secret@h/db", "holds a password"),
            ("sqlserver://sa@h/db?password=x", "holds a password"),
            ("sqlserver://CITY%5Cebis@h/db", "Windows account"),
            ("sqlserver://sa@h", "names no database"),
            ("sqlserver://h/db", "names no login"),
            ("sqlserver://sa@h/db?encrypt=maybe", "expected required"),
            ("sqlserver://sa@h/db?tls=1", "unknown URL parameter"),
            ("mysql://sa@h/db", "starts with sqlserver://"),
        ] {
            let e = parse_url(url).expect_err(url);
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
