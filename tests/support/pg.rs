//! Throwaway PostgreSQL databases on the server named by `EBIS_TEST_PG_URL`.

use tokio_postgres::{Client, NoTls};

/// The admin URL of the test server.
pub fn base_url() -> String {
    std::env::var("EBIS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database replaced by `db`.
pub fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{db}{query}")
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to test PostgreSQL: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A database created for one test and dropped afterwards.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = super::unique_name("ebis_t");
        let admin = connect(&base_url()).await;
        admin
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("create database");
        PgDb {
            url: with_db(&base_url(), &name),
            name,
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&base_url(), NoTls).await {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = c
                        .batch_execute(&format!("drop database if exists {name} with (force)"))
                        .await;
                }
            });
        })
        .join();
    }
}
