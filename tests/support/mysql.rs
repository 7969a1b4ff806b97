//! Throwaway MySQL/MariaDB databases on the server named by `EBIS_TEST_MYSQL_URL` (its
//! password, if the account has one, in `EBIS_TEST_MYSQL_PASSWORD`).

use ebis::config::ConnectionConfig;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};

/// The variable holding the test account's password.
pub const PASSWORD_ENV: &str = "EBIS_TEST_MYSQL_PASSWORD";

/// The test server's binary log files: a test that purges them (as a DBA's purge by age)
/// holds it for writing; a binlog test that counts re-snapshots, or reads positions
/// itself, holds it for reading, so a purge never expires its position mid-test.
pub static BINLOG_FILES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The admin account of the test server.
pub fn admin() -> ConnectionConfig {
    let url = std::env::var("EBIS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/".to_owned());
    ConnectionConfig::from_url(&url, PASSWORD_ENV, "EBIS_TEST_MYSQL_URL")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The admin URL of the test server (no password).
pub fn base_url() -> String {
    admin().url
}

/// A pool on a test account.
pub fn pool(account: &ConnectionConfig) -> Pool {
    Pool::new(pool_opts(account))
}

/// What connecting as `account` takes (its URL, and its password from the environment).
pub fn pool_opts(account: &ConnectionConfig) -> mysql_async::OptsBuilder {
    let mut opts = mysql_async::OptsBuilder::from_opts(
        mysql_async::Opts::from_url(&account.url).expect("url"),
    );
    if let Some(pw) = account.password().expect("password") {
        opts = opts.pass(Some(pw.expose().to_owned()));
    }
    opts
}

/// The statements of a reference bureau schema (`sql/demo/mysql/<bureau>.sql`).
pub fn bureau_schema(bureau: &str) -> Vec<String> {
    ebis::assets::schema_statements(bureau)
}

/// A database created for one test and dropped afterwards.
pub struct MyDb {
    pub name: String,
    /// The admin account of its server.
    admin: ConnectionConfig,
    pub url: String,
    /// The test account on this database.
    pub conn: ConnectionConfig,
    pub pool: Pool,
}

impl MyDb {
    pub async fn create(statements: &[String]) -> MyDb {
        Self::create_on(&admin(), statements).await
    }

    /// A database on another server (a private one), through its admin account.
    pub async fn create_on(admin_conn: &ConnectionConfig, statements: &[String]) -> MyDb {
        let name = super::unique_name("ebis_t");
        let admin_conn = admin_conn.clone();
        let admin = pool(&admin_conn);
        let mut c = admin.get_conn().await.expect("connect to test MariaDB");
        c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create database");
        drop(c);
        let _ = admin.disconnect().await;
        let conn = admin_conn.with_database(&name);
        let url = conn.url.clone();
        let pool = pool(&conn);
        let mut c = pool.get_conn().await.expect("connect");
        c.query_drop("SET NAMES utf8mb4").await.expect("names");
        for s in statements {
            c.query_drop(s).await.unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        MyDb {
            name,
            admin: admin_conn,
            url,
            conn,
            pool,
        }
    }

    pub async fn conn(&self) -> Conn {
        let mut c = self.pool.get_conn().await.expect("connect");
        c.query_drop("SET NAMES utf8mb4").await.expect("names");
        c
    }

    /// A reading account on this database (SELECT only, as bureau DBAs grant at first),
    /// with the test account's password; dropped with the returned guard.
    pub async fn reader(&self) -> (DropUser, ConnectionConfig) {
        self.reader_limited(None).await
    }

    /// A reading account that may hold at most `limit` connections at once (set when it
    /// is created: the server keeps an account's limit while any of its connections
    /// lives, so a later ALTER USER may not apply to the next one).
    pub async fn reader_limited(&self, limit: Option<u32>) -> (DropUser, ConnectionConfig) {
        let user = match limit {
            None => format!("{}_ro", self.name),
            Some(n) => format!("{}_ro{n}", self.name),
        };
        let guard = DropUser(user.clone());
        let identified = std::env::var(PASSWORD_ENV)
            .map(|pw| format!(" IDENTIFIED BY '{pw}'"))
            .unwrap_or_default();
        let with = limit
            .map(|n| format!(" WITH MAX_USER_CONNECTIONS {n}"))
            .unwrap_or_default();
        self.create_reader(&user, &format!("{identified}{with}"))
            .await;
        let (_, rest) = self.url.split_once("://").expect("url");
        let host = rest.rsplit('@').next().unwrap_or(rest);
        let mut account = self.conn.clone();
        account.url = format!("mysql://{user}@{host}");
        (guard, account)
    }

    /// Creates `user`@127.0.0.1 (`options`: its `IDENTIFIED BY …`, limits) with SELECT on
    /// this database.
    pub async fn create_reader(&self, user: &str, options: &str) {
        self.exec(&format!("CREATE USER '{user}'@'127.0.0.1'{options}"))
            .await;
        self.exec(&format!(
            "GRANT SELECT ON `{}`.* TO '{user}'@'127.0.0.1'",
            self.name
        ))
        .await;
    }

    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    pub async fn count(&self, table: &str) -> u64 {
        let mut c = self.conn().await;
        c.query_first::<u64, _>(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("count")
            .unwrap_or(0)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_conn = self.admin.clone();
        crate::support::cleanup(move || async move {
            let admin = pool(&admin_conn);
            if let Ok(mut c) = admin.get_conn().await {
                let _ = c
                    .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await;
            }
            let _ = admin.disconnect().await;
        });
    }
}

/// GBK bytes of a text as a hex literal, for latin1 columns that hold GBK.
pub fn gbk(s: &str) -> String {
    let (bytes, _, _) = encoding_rs::GBK.encode(s);
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("X'{hex}'")
}

/// Drops a MariaDB account (`'name'@'127.0.0.1'`) when the test ends, passed or failed.
pub struct DropUser(pub String);

impl Drop for DropUser {
    fn drop(&mut self) {
        let user = self.0.clone();
        crate::support::cleanup(move || async move {
            let admin = pool(&admin());
            if let Ok(mut c) = admin.get_conn().await {
                let _ = c
                    .query_drop(format!("DROP USER IF EXISTS '{user}'@'127.0.0.1'"))
                    .await;
            }
            let _ = admin.disconnect().await;
        });
    }
}

/// The admin URL with its password in it, for a variable that may carry one
/// (`EBIS_SOURCE_ADMIN_URL`).
pub fn admin_url_with_password() -> String {
    let url = base_url();
    match std::env::var(PASSWORD_ENV) {
        Ok(pw) if !pw.is_empty() => {
            let (scheme, rest) = url.split_once("://").expect("a mysql:// URL");
            let (user, host) = rest.split_once('@').expect("a user in the URL");
            format!("{scheme}://{user}:{pw}@{host}")
        }
        _ => url,
    }
}
