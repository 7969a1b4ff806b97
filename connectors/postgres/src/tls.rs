//! Connecting to PostgreSQL with or without TLS (`ebis_source::tls`): one place for the
//! warehouse's pool and for PostgreSQL sources.

use ebis_source::tls::Tls;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How connections are made: plain, or TLS with a client configuration read once.
#[derive(Clone)]
pub enum Connector {
    /// Plain TCP (`tls.mode: disable`).
    Plain,
    /// TLS, required.
    Tls(MakeRustlsConnect),
}

impl Connector {
    /// From a connection's TLS settings (CA and client files are read now), setting
    /// `config`'s sslmode to match: with TLS on, a server that does not offer it is
    /// refused, never fallen back from.
    pub fn new(tls: &Tls, config: &mut tokio_postgres::Config) -> Result<Connector, String> {
        if !tls.enabled() {
            // Never a silent downgrade: TLS asked for in the URL is asked for here.
            if config.get_ssl_mode() == SslMode::Require {
                return Err(
                    "the URL asks for sslmode=require, which ebis sets in the connection's `tls:` instead: write `tls: {mode: require}` (or verify-full with a ca_file)".to_owned(),
                );
            }
            config.ssl_mode(SslMode::Disable);
            return Ok(Connector::Plain);
        }
        config.ssl_mode(SslMode::Require);
        Ok(Connector::Tls(MakeRustlsConnect::new(tls.client_config()?)))
    }

    /// Opens a connection; its I/O runs on a task of its own (logged at debug when it
    /// ends with an error).
    pub async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        match self {
            Connector::Plain => {
                let (client, conn) = config.connect(NoTls).await?;
                Ok((client, spawn(conn)))
            }
            Connector::Tls(tls) => {
                let (client, conn) = config.connect(tls.clone()).await?;
                Ok((client, spawn(conn)))
            }
        }
    }
}

fn spawn<F>(conn: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "a PostgreSQL connection ended");
        }
    })
}

/// A connection error as an operator reads it: the error with its causes (each once), and
/// whether it is TLS refusing the server — then the text says which check failed.
pub fn describe(e: &tokio_postgres::Error) -> (String, bool) {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    let tls = e.as_db_error().is_none()
        && (text.contains("certificate")
            || text.contains("tls")
            || text.contains("TLS")
            || text.contains("server does not support TLS"));
    if tls {
        (ebis_source::tls::explain(&text), true)
    } else {
        (text, false)
    }
}
