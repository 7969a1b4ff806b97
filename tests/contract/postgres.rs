//! The contract kit against PostgreSQL as a bureau's database (a database of its own on
//! the test server), in changelog, timestamp and logical mode (`scripts/services.sh`
//! starts the server with `wal_level = logical`).
//!
//! The kit's database is encoded EUC_CN (GB2312), as a bureau's legacy PostgreSQL-family
//! database often is: every Chinese text the kit writes and reads crosses the server's
//! conversion to the UTF-8 ebis asks for.

use super::{KitDb, KitHeld, KitServer, SAMPLE};
use crate::support::pg::{SourcePg, connect};
use chrono::{NaiveDate, NaiveDateTime};
use ebis::config::ConnectionConfig;
use ebis_source::Value;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// PostgreSQL.
pub struct Postgres;

const KIT_ENT: &str = "CREATE TABLE KIT_ENT (
    ID           integer      NOT NULL PRIMARY KEY,
    REGNO        varchar(30)  NULL,
    ENTNAME      varchar(200) NULL,
    ESTDATE      date         NULL,
    LAST_UPDATED timestamp(6) NOT NULL
);
CREATE INDEX KIT_ENT_UPD ON KIT_ENT (LAST_UPDATED, ID)";

const KIT_TYPES: &str = "CREATE TYPE kit_status AS ENUM ('开业', '注销');
CREATE TABLE KIT_TYPES (
    ID integer NOT NULL PRIMARY KEY,
    C_SMALLINT smallint, C_INT integer, C_BIGINT bigint, C_NUMERIC numeric(20,6),
    C_REAL real, C_DOUBLE double precision, C_BOOL boolean,
    C_CHAR char(4), C_VARCHAR varchar(50), C_TEXT text,
    C_DATE date, C_TIMESTAMP timestamp(6), C_TIMESTAMPTZ timestamptz, C_TIME time,
    C_INTERVAL interval, C_BYTEA bytea, C_UUID uuid, C_JSONB jsonb, C_ARRAY integer[],
    C_ENUM kit_status, C_NULL varchar(10)
);
INSERT INTO KIT_TYPES VALUES (1,
    30000, 2147483647, -9223372036854775808, 12345678901234.567891,
    0.25, 0.1, true,
    'AB', '乌海', '长文本',
    '2006-03-01', '2006-03-01 08:30:00.123456', '2006-03-01 08:30:00', '08:30:00',
    '1 day 02:03:04', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '{1,2}',
    '注销', NULL)";

fn kit_text() -> String {
    format!(
        "CREATE TABLE KIT_TEXT (ID integer NOT NULL PRIMARY KEY, C_TEXT text, C_VARCHAR varchar(100), C_CHAR char(40));
         INSERT INTO KIT_TEXT VALUES (1, '{SAMPLE}', '{SAMPLE}', '{SAMPLE}')"
    )
}

/// A transaction on a connection of its own.
pub struct Held(Client);

impl KitHeld for Held {
    async fn commit(self) {
        self.0.batch_execute("COMMIT").await.expect("commit");
    }
    async fn rollback(self) {
        self.0.batch_execute("ROLLBACK").await.expect("rollback");
    }
}

impl KitServer for Postgres {
    type Db = SourcePg;
    const DIALECT: &'static str = "postgres";

    async fn create() -> Option<SourcePg> {
        Some(SourcePg::create(&[KIT_ENT.to_owned(), KIT_TYPES.to_owned(), kit_text()]).await)
    }
}

fn datetime(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("a datetime")
}

impl KitDb for SourcePg {
    type Held = Held;

    fn connection(&self) -> ConnectionConfig {
        self.conn.clone()
    }

    async fn exec(&self, sql: &str) {
        SourcePg::exec(self, sql).await;
    }

    async fn hold(&self, statements: &[String]) -> Held {
        let c = connect(&self.conn).await;
        c.batch_execute("BEGIN").await.expect("begin");
        for s in statements {
            c.batch_execute(s)
                .await
                .unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        Held(c)
    }

    fn now(&self) -> &'static str {
        "clock_timestamp()::timestamp"
    }

    fn text(&self, s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    fn capture(&self, capture: &str) -> String {
        // Slots and publications are named server-wide: each kit database has its own.
        if super::mode_of(capture) == "logical" {
            format!("{capture}\nslot: {}", self.name)
        } else {
            capture.to_owned()
        }
    }

    async fn supports(&self, mode: &str) -> Result<(), String> {
        if mode != "logical" {
            return Ok(());
        }
        let level: String = connect(&self.conn)
            .await
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if level == "logical" {
            Ok(())
        } else {
            Err(format!(
                "the test server runs with wal_level = {level} (scripts/services.sh sets logical)"
            ))
        }
    }

    async fn expire_position(&self, mode: &str) -> Result<(), String> {
        match mode {
            "changelog" => {
                SourcePg::exec(self, "TRUNCATE ebis_capture.change RESTART IDENTITY").await;
                Ok(())
            }
            "logical" => {
                // The slot dropped while ebis was stopped (a DBA freeing pg_wal, say).
                // The stopped reader's session may hold it a moment longer.
                let c = connect(&self.conn).await;
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match c
                        .batch_execute(&format!("SELECT pg_drop_replication_slot('{}')", self.name))
                        .await
                    {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            assert!(Instant::now() < deadline, "drop the slot: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
            other => Err(format!(
                "{other} capture keeps no position on the server that could expire"
            )),
        }
    }

    fn types(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("C_SMALLINT", Value::Int(30000)),
            ("C_INT", Value::Int(2_147_483_647)),
            ("C_BIGINT", Value::Int(i64::MIN)),
            (
                "C_NUMERIC",
                Value::Decimal("12345678901234.567891".to_owned()),
            ),
            ("C_REAL", Value::Float(0.25)),
            ("C_DOUBLE", Value::Float(0.1)),
            ("C_BOOL", Value::Bool(true)),
            ("C_CHAR", Value::Text("AB".to_owned())),
            ("C_VARCHAR", Value::Text("乌海".to_owned())),
            ("C_TEXT", Value::Text("长文本".to_owned())),
            (
                "C_DATE",
                Value::Date(NaiveDate::from_ymd_opt(2006, 3, 1).expect("date")),
            ),
            (
                "C_TIMESTAMP",
                Value::DateTime(datetime("2006-03-01 08:30:00.123456")),
            ),
            (
                "C_TIMESTAMPTZ",
                Value::DateTime(datetime("2006-03-01 08:30:00.0")),
            ),
            ("C_TIME", Value::Text("08:30:00".to_owned())),
            ("C_INTERVAL", Value::Text("1 day 02:03:04".to_owned())),
            ("C_BYTEA", Value::Bytes(vec![0x00, 0xFF, 0x10])),
            (
                "C_UUID",
                Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned()),
            ),
            ("C_JSONB", Value::Text("{\"a\": 1}".to_owned())),
            ("C_ARRAY", Value::Text("{1,2}".to_owned())),
            ("C_ENUM", Value::Text("注销".to_owned())),
            ("C_NULL", Value::Null),
        ]
    }

    fn encodings(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("C_TEXT", "EUC_CN text"),
            ("C_VARCHAR", "EUC_CN varchar"),
            ("C_CHAR", "EUC_CN char(40), blank-padded"),
        ]
    }
}

crate::contract_kit!(
    Postgres,
    changelog: "mode: changelog\ngap_timeout: 30s",
    timestamp: "mode: timestamp\noverlap: 2s\nkey_scan_every: 1s",
    logical: "mode: logical",
);
