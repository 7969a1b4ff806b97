//! The contract kit against MySQL/MariaDB (the test server), in changelog, timestamp and
//! binlog mode (the test server logs rows: `scripts/services.sh` starts it so).

use super::{KitDb, KitHeld, KitServer, SAMPLE};
use crate::support::mysql::MyDb;
use chrono::{NaiveDate, NaiveDateTime};
use ebis::config::ConnectionConfig;
use ebis_source::Value;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

/// MySQL/MariaDB.
pub struct Mysql;

const KIT_ENT: &str = "CREATE TABLE KIT_ENT (
    ID           INT          NOT NULL PRIMARY KEY,
    REGNO        VARCHAR(30)  NULL,
    ENTNAME      VARCHAR(200) NULL,
    ESTDATE      DATE         NULL,
    LAST_UPDATED DATETIME(6)  NOT NULL,
    KEY KIT_ENT_UPD (LAST_UPDATED, ID)
) DEFAULT CHARSET=utf8mb4";

const KIT_TYPES: &str = "CREATE TABLE KIT_TYPES (
    ID          INT NOT NULL PRIMARY KEY,
    C_TINYINT   TINYINT, C_SMALLINT SMALLINT, C_MEDIUMINT MEDIUMINT, C_INT INT,
    C_BIGINT    BIGINT, C_UBIGINT BIGINT UNSIGNED,
    C_DECIMAL   DECIMAL(20,6), C_DOUBLE DOUBLE, C_FLOAT FLOAT,
    C_BIT1      BIT(1), C_BIT12 BIT(12),
    C_CHAR      CHAR(4), C_VARCHAR VARCHAR(50), C_TEXT TEXT,
    C_DATE      DATE, C_DATETIME DATETIME(6), C_TIMESTAMP TIMESTAMP NULL, C_TIME TIME, C_YEAR YEAR,
    C_VARBINARY VARBINARY(8), C_BLOB BLOB, C_ENUM ENUM('开业','注销'), C_SET SET('a','b'),
    C_NULL      VARCHAR(10)
) DEFAULT CHARSET=utf8mb4";

const KIT_TYPES_ROW: &str = "INSERT INTO KIT_TYPES VALUES (1,
    -5, 30000, -8000000, 2147483647,
    -9223372036854775808, 18446744073709551615,
    12345678901234.567891, 0.1, 0.25,
    b'1', b'101010101010',
    'AB', '乌海', '长文本',
    '2006-03-01', '2006-03-01 08:30:00.123456', '2006-03-01 08:30:00', '-01:02:03', 2006,
    0x00FF10, 0xDEADBEEF, '注销', 'a,b',
    NULL)";

const KIT_TEXT: &str = "CREATE TABLE KIT_TEXT (
    ID INT NOT NULL PRIMARY KEY,
    C_UTF8MB4 VARCHAR(100) CHARACTER SET utf8mb4,
    C_UTF8MB3 VARCHAR(100) CHARACTER SET utf8mb3,
    C_GBK     VARCHAR(100) CHARACTER SET gbk,
    C_GB2312  VARCHAR(100) CHARACTER SET gb2312,
    C_UCS2    VARCHAR(100) CHARACTER SET ucs2,
    C_UTF16   VARCHAR(100) CHARACTER SET utf16,
    C_UTF32   VARCHAR(100) CHARACTER SET utf32
) DEFAULT CHARSET=utf8mb4";

fn text_row() -> String {
    let v = format!("'{SAMPLE}'");
    format!("INSERT INTO KIT_TEXT VALUES (1, {v}, {v}, {v}, {v}, {v}, {v}, {v})")
}

/// A transaction on a connection of its own.
pub struct Held(Conn);

impl KitHeld for Held {
    async fn commit(mut self) {
        self.0.query_drop("COMMIT").await.expect("commit");
    }
    async fn rollback(mut self) {
        self.0.query_drop("ROLLBACK").await.expect("rollback");
    }
}

impl KitServer for Mysql {
    type Db = MyDb;
    const DIALECT: &'static str = "mysql";

    async fn create() -> Option<MyDb> {
        Some(
            MyDb::create(&[
                KIT_ENT.to_owned(),
                KIT_TYPES.to_owned(),
                KIT_TYPES_ROW.to_owned(),
                KIT_TEXT.to_owned(),
                text_row(),
            ])
            .await,
        )
    }
}

fn datetime(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("a datetime")
}

impl KitDb for MyDb {
    type Held = Held;

    fn connection(&self) -> ConnectionConfig {
        self.conn.clone()
    }

    async fn exec(&self, sql: &str) {
        MyDb::exec(self, sql).await;
    }

    async fn hold(&self, statements: &[String]) -> Held {
        let mut c = self.conn().await;
        c.query_drop("START TRANSACTION").await.expect("begin");
        for s in statements {
            c.query_drop(s).await.unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        Held(c)
    }

    fn now(&self) -> &'static str {
        "NOW(6)"
    }

    fn text(&self, s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    async fn expire_position(&self, mode: &str) -> Result<(), String> {
        match mode {
            "changelog" => {
                MyDb::exec(self, "TRUNCATE TABLE ebis_change").await;
                Ok(())
            }
            "binlog" => {
                // The files ebis has not read yet, gone: a DBA's purge by age while ebis
                // was stopped.
                let _purging = crate::support::mysql::BINLOG_FILES.write().await;
                let mut c = self.conn().await;
                c.query_drop("FLUSH BINARY LOGS").await.expect("flush");
                let current: Option<(String, u64)> = c
                    .query_first("SHOW MASTER STATUS")
                    .await
                    .map(|r: Option<mysql_async::Row>| {
                        r.map(|r| (r.get(0).unwrap_or_default(), r.get(1).unwrap_or(0)))
                    })
                    .expect("master status");
                let (file, _) = current.expect("the test server logs rows");
                // The server keeps a file a replica connection still reads (ebis's last
                // one may linger a moment after it stopped): purge until it is gone.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                loop {
                    c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
                        .await
                        .expect("purge");
                    let oldest: Option<String> = c
                        .query_first("SHOW BINARY LOGS")
                        .await
                        .map(|r: Option<mysql_async::Row>| r.and_then(|r| r.get(0)))
                        .expect("binary logs");
                    if oldest.as_deref() == Some(file.as_str()) {
                        return Ok(());
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the server would not purge its binary logs before {file}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
            other => Err(format!(
                "{other} capture keeps no position on the server that could expire"
            )),
        }
    }

    fn types(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("C_TINYINT", Value::Int(-5)),
            ("C_SMALLINT", Value::Int(30000)),
            ("C_MEDIUMINT", Value::Int(-8_000_000)),
            ("C_INT", Value::Int(2_147_483_647)),
            ("C_BIGINT", Value::Int(i64::MIN)),
            ("C_UBIGINT", Value::UInt(u64::MAX)),
            (
                "C_DECIMAL",
                Value::Decimal("12345678901234.567891".to_owned()),
            ),
            ("C_DOUBLE", Value::Float(0.1)),
            ("C_FLOAT", Value::Float(0.25)),
            ("C_BIT1", Value::Bool(true)),
            ("C_BIT12", Value::Int(0b1010_1010_1010)),
            ("C_CHAR", Value::Text("AB".to_owned())),
            ("C_VARCHAR", Value::Text("乌海".to_owned())),
            ("C_TEXT", Value::Text("长文本".to_owned())),
            (
                "C_DATE",
                Value::Date(NaiveDate::from_ymd_opt(2006, 3, 1).expect("date")),
            ),
            (
                "C_DATETIME",
                Value::DateTime(datetime("2006-03-01 08:30:00.123456")),
            ),
            (
                "C_TIMESTAMP",
                Value::DateTime(datetime("2006-03-01 08:30:00.0")),
            ),
            ("C_TIME", Value::Text("-01:02:03".to_owned())),
            ("C_YEAR", Value::Int(2006)),
            ("C_VARBINARY", Value::Bytes(vec![0x00, 0xFF, 0x10])),
            ("C_BLOB", Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
            ("C_ENUM", Value::Text("注销".to_owned())),
            ("C_SET", Value::Text("a,b".to_owned())),
            ("C_NULL", Value::Null),
        ]
    }

    fn encodings(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("C_UTF8MB4", "utf8mb4"),
            ("C_UTF8MB3", "utf8mb3"),
            ("C_GBK", "gbk"),
            ("C_GB2312", "gb2312"),
            ("C_UCS2", "ucs2"),
            ("C_UTF16", "utf16"),
            ("C_UTF32", "utf32"),
        ]
    }
}

crate::contract_kit!(
    Mysql,
    changelog: "mode: changelog\ngap_timeout: 30s",
    timestamp: "mode: timestamp\noverlap: 2s\nkey_scan_every: 1s",
    binlog: "mode: binlog",
);
