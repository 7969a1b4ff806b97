//! Throwaway PostgreSQL databases on the server named by `EBIS_TEST_PG_URL` (its password,
//! if the account has one, in `EBIS_TEST_PG_PASSWORD` — never in the URL, which ends up in
//! pipeline configs).

use ebis::config::ConnectionConfig;
use std::str::FromStr;
use tokio_postgres::{Client, NoTls};

/// The variable holding the test account's password.
pub const PASSWORD_ENV: &str = "EBIS_TEST_PG_PASSWORD";

/// The admin account of the test server.
pub fn admin() -> ConnectionConfig {
    let url = std::env::var("EBIS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    ConnectionConfig::from_url(&url, PASSWORD_ENV, "EBIS_TEST_PG_URL")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The admin URL of the test server (no password).
pub fn base_url() -> String {
    admin().url
}

/// `url` with the password of the test account in it, for `EBIS_WAREHOUSE_URL` (a
/// variable, where a secret may live).
pub fn with_password(url: &str) -> String {
    match std::env::var(PASSWORD_ENV) {
        Ok(pw) if !pw.is_empty() => {
            let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
            let (user, host) = rest.split_once('@').expect("a user in the URL");
            format!("{scheme}://{user}:{pw}@{host}")
        }
        _ => url.to_owned(),
    }
}

pub async fn connect(account: &ConnectionConfig) -> Client {
    let mut config = tokio_postgres::Config::from_str(&account.url).expect("a postgres URL");
    if let Some(pw) = account.password().expect("password") {
        config.password(pw.expose());
    }
    let (client, conn) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to test PostgreSQL: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A connection whose server notices (RAISE NOTICE, and LOG lines when
/// `client_min_messages` allows them) are collected, for tests that look at what a server
/// said to a client.
pub async fn connect_collecting_notices(
    account: &ConnectionConfig,
) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio_postgres::AsyncMessage;
    let mut config = tokio_postgres::Config::from_str(&account.url).expect("a postgres URL");
    if let Some(pw) = account.password().expect("password") {
        config.password(pw.expose());
    }
    let (client, mut conn) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to test PostgreSQL: {e}"));
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notice(n)) => {
                    sink.lock().expect("notices").push(n.message().to_owned())
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, notices)
}

/// A database created for one test and dropped afterwards.
pub struct PgDb {
    pub name: String,
    pub url: String,
    /// The test account on this database.
    pub conn: ConnectionConfig,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = super::unique_name("ebis_t");
        let admin_conn = admin();
        let admin = connect(&admin_conn).await;
        // A Chinese ICU collation, as a bureau deployment would choose: plans that compare a
        // `name` with a text column differ from those on a C-collation database.
        let icu = format!(
            "create database {name} template template0 encoding 'UTF8' locale_provider icu icu_locale 'zh-Hans-CN'"
        );
        if admin.batch_execute(&icu).await.is_err() {
            admin
                .batch_execute(&format!("create database {name}"))
                .await
                .expect("create database");
        }
        let conn = admin_conn.with_database(&name);
        PgDb {
            url: conn.url.clone(),
            conn,
            name,
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.conn).await
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        crate::support::cleanup(move || async move {
            let c = connect(&admin()).await;
            let _ = c
                .batch_execute(&format!("drop database if exists {name} with (force)"))
                .await;
        });
    }
}

/// A bureau's PostgreSQL database on the test server, encoded EUC_CN (GB2312) as a
/// legacy bureau database often is, dropped — with any replication slot on it — when the
/// test ends.
pub struct SourcePg {
    /// The database's name (also the name its tests give its replication slot).
    pub name: String,
    /// The test account on it.
    pub conn: ConnectionConfig,
}

impl SourcePg {
    /// A new database holding what `statements` make.
    pub async fn create(statements: &[String]) -> SourcePg {
        let name = super::unique_name("ebis_k");
        let admin_conn = admin();
        connect(&admin_conn)
            .await
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'EUC_CN' LC_COLLATE 'C' LC_CTYPE 'C'"
            ))
            .await
            .expect("create the bureau database");
        let db = SourcePg {
            conn: admin_conn.with_database(&name),
            name,
        };
        let c = connect(&db.conn).await;
        for s in statements {
            c.batch_execute(s)
                .await
                .unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        db
    }

    /// Runs statements (one batch).
    pub async fn exec(&self, sql: &str) {
        connect(&self.conn)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }
}

impl Drop for SourcePg {
    fn drop(&mut self) {
        let name = self.name.clone();
        crate::support::cleanup(move || async move {
            let c = connect(&admin()).await;
            // A slot keeps its database; one still held a moment by a reader that just
            // stopped is dropped on a later try.
            for _ in 0..50 {
                let dropped = c
                    .batch_execute(&format!(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"
                    ))
                    .await;
                if dropped.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let _ = c
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        });
    }
}

/// The first column of every row `sql` returns, as text.
pub async fn texts(pg: &Client, sql: &str) -> Vec<String> {
    pg.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The enterprise base as a text per row (every column but when it was written).
pub async fn base_rows(pg: &Client) -> Vec<String> {
    texts(
        pg,
        "select (to_jsonb(e) - 'updated_at')::text from core.enterprise e order by enterprise_key",
    )
    .await
}
