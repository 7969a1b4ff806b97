//! Throwaway MySQL/MariaDB databases on the server named by `EBIS_TEST_MYSQL_URL`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};

pub fn base_url() -> String {
    std::env::var("EBIS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/".to_owned())
}

/// `url` with its database replaced by `db`.
pub fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a mysql:// URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{db}")
}

/// The statements of a reference bureau schema (`sql/demo/mysql/<bureau>.sql`).
pub fn bureau_schema(bureau: &str) -> Vec<String> {
    ebis::assets::schema_statements(bureau)
}

/// A database created for one test and dropped afterwards.
pub struct MyDb {
    pub name: String,
    pub url: String,
    pub pool: Pool,
}

impl MyDb {
    pub async fn create(statements: &[String]) -> MyDb {
        let name = super::unique_name("ebis_t");
        let admin = Pool::new(base_url().as_str());
        let mut c = admin.get_conn().await.expect("connect to test MariaDB");
        c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create database");
        drop(c);
        let _ = admin.disconnect().await;
        let url = with_db(&base_url(), &name);
        let pool = Pool::new(url.as_str());
        let mut c = pool.get_conn().await.expect("connect");
        c.query_drop("SET NAMES utf8mb4").await.expect("names");
        for s in statements {
            c.query_drop(s).await.unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        MyDb { name, url, pool }
    }

    pub async fn conn(&self) -> Conn {
        let mut c = self.pool.get_conn().await.expect("connect");
        c.query_drop("SET NAMES utf8mb4").await.expect("names");
        c
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
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = Pool::new(base_url().as_str());
                if let Ok(mut c) = admin.get_conn().await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                }
                let _ = admin.disconnect().await;
            });
        })
        .join();
    }
}

/// GBK bytes of a text as a hex literal, for latin1 columns that hold GBK.
pub fn gbk(s: &str) -> String {
    let (bytes, _, _) = encoding_rs::GBK.encode(s);
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("X'{hex}'")
}
