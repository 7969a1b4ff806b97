//! The contract kit against SQL Server, when `EBIS_TEST_MSSQL_URL` names one (an admin
//! login's URL, e.g. `sqlserver://sa@127.0.0.1:1433/master?trust_cert=true`, its
//! password in `EBIS_TEST_MSSQL_PASSWORD`): changelog, timestamp and Change Tracking.
//! Without the variable every test says so on stderr and passes; a server without Change
//! Tracking (Babelfish) has the change_tracking scenarios reported as not run, by name.

use super::{KitDb, KitHeld, KitServer, SAMPLE};
use chrono::{NaiveDate, NaiveDateTime};
use ebis::config::ConnectionConfig;
use ebis_source::Value;
use ebis_sqlserver::connect::{Conn, connect, parse_url};
use tokio::sync::Mutex;

/// SQL Server (or a TDS server such as Babelfish).
pub struct SqlServer;

const URL_ENV: &str = "EBIS_TEST_MSSQL_URL";
const PASSWORD_ENV: &str = "EBIS_TEST_MSSQL_PASSWORD";

const KIT_ENT: &str = "CREATE TABLE KIT_ENT (
    ID           INT           NOT NULL PRIMARY KEY,
    REGNO        VARCHAR(30)   NULL,
    ENTNAME      NVARCHAR(200) NULL,
    ESTDATE      DATE          NULL,
    LAST_UPDATED DATETIME2(6)  NOT NULL
)";

const KIT_ENT_INDEX: &str = "CREATE INDEX KIT_ENT_UPD ON KIT_ENT (LAST_UPDATED, ID)";

/// Fractions of six digits: Babelfish keeps microseconds where SQL Server keeps seven
/// digits (the decoding of seven is unit-tested).
const KIT_TYPES: &str = "CREATE TABLE KIT_TYPES (
    ID INT NOT NULL PRIMARY KEY,
    C_TINYINT TINYINT, C_SMALLINT SMALLINT, C_INT INT, C_BIGINT BIGINT, C_BIT BIT,
    C_DECIMAL DECIMAL(20, 6), C_NUMERIC NUMERIC(10, 0), C_MONEY MONEY, C_SMALLMONEY SMALLMONEY,
    C_FLOAT FLOAT, C_REAL REAL,
    C_DATE DATE, C_DATETIME DATETIME, C_DATETIME2 DATETIME2(6), C_SMALLDATETIME SMALLDATETIME,
    C_DTO DATETIMEOFFSET(6), C_TIME TIME(6), C_GUID UNIQUEIDENTIFIER,
    C_CHAR CHAR(4), C_VARCHAR VARCHAR(50), C_TEXT TEXT,
    C_NCHAR NCHAR(4), C_NVARCHAR NVARCHAR(50), C_NTEXT NTEXT,
    C_VARBINARY VARBINARY(8), C_NULL NVARCHAR(10)
)";

const KIT_TYPES_ROW: &str = "INSERT INTO KIT_TYPES VALUES (1,
    255, -32768, 2147483647, -9223372036854775808, 1,
    12345678901234.567891, 1234567890, 922337203685477.5807, -214748.3648,
    0.1, 0.25,
    '2006-03-01', '2006-03-01 08:30:00.123', '2006-03-01 08:30:00.123456', '2006-03-01 08:30',
    '2006-03-01 08:30:00.123456 +08:00', '08:30:00.123456', '6F9619FF-8B86-D011-B42D-00C04FC964FF',
    'AB', 'abc', 'text',
    N'乌海', N'乌海市', N'长文本',
    0x00FF10, NULL)";

const KIT_TEXT: &str = "CREATE TABLE KIT_TEXT (
    ID INT NOT NULL PRIMARY KEY,
    C_NVARCHAR NVARCHAR(100),
    C_NCHAR_MAX NVARCHAR(MAX),
    C_CHINESE_PRC VARCHAR(100) COLLATE Chinese_PRC_CI_AS,
    C_CHINESE_PRC_CS VARCHAR(100) COLLATE Chinese_PRC_CS_AS,
    C_CHINESE_TEXT TEXT COLLATE Chinese_PRC_CI_AS
)";

fn text_row() -> String {
    let v = format!("N'{SAMPLE}'");
    format!("INSERT INTO KIT_TEXT VALUES (1, {v}, {v}, {v}, {v}, {v})")
}

/// A throwaway database on the configured server.
pub struct MsDb {
    /// Its name.
    name: String,
    admin_url: String,
    conn: Mutex<Conn>,
}

async fn open(url: &str) -> Conn {
    let target = parse_url(url).unwrap_or_else(|e| panic!("{URL_ENV}: {e}"));
    let password = std::env::var(PASSWORD_ENV).ok();
    connect(&target, password.as_deref())
        .await
        .unwrap_or_else(|e| panic!("connect to {URL_ENV}: {e}"))
}

async fn run(conn: &mut Conn, sql: &str) -> Result<(), String> {
    let stream = conn.simple_query(sql).await.map_err(|e| e.to_string())?;
    stream.into_results().await.map_err(|e| e.to_string())?;
    Ok(())
}

fn db_url(admin: &str, db: &str) -> String {
    ConnectionConfig {
        url: admin.to_owned(),
        password_env: None,
        password_file: None,
        tls: Default::default(),
    }
    .with_database(db)
    .url
}

impl KitServer for SqlServer {
    type Db = MsDb;
    const DIALECT: &'static str = "sqlserver";

    async fn create() -> Option<MsDb> {
        let Ok(admin_url) = std::env::var(URL_ENV) else {
            eprintln!("contract kit sqlserver: not run: {URL_ENV} is not set (see README, Tests)");
            return None;
        };
        let name = crate::support::unique_name("ebis_kit");
        {
            // One CREATE DATABASE at a time: Babelfish's catalog refuses concurrent ones.
            static CREATING: std::sync::OnceLock<Mutex<()>> = std::sync::OnceLock::new();
            let _one = CREATING.get_or_init(|| Mutex::new(())).lock().await;
            let mut admin = open(&admin_url).await;
            let mut tries = 0;
            while let Err(e) = run(&mut admin, &format!("CREATE DATABASE [{name}]")).await {
                tries += 1;
                assert!(
                    tries < 5 && e.contains("concurrently"),
                    "create database: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let _ = admin.close().await;
        }
        let mut conn = open(&db_url(&admin_url, &name)).await;
        for s in [
            KIT_ENT.to_owned(),
            KIT_ENT_INDEX.to_owned(),
            KIT_TYPES.to_owned(),
            KIT_TYPES_ROW.to_owned(),
            KIT_TEXT.to_owned(),
            text_row(),
        ] {
            run(&mut conn, &s)
                .await
                .unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        Some(MsDb {
            name,
            admin_url,
            conn: Mutex::new(conn),
        })
    }
}

impl Drop for MsDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        crate::support::cleanup(move || async move {
            let mut admin = open(&admin_url).await;
            let _ = run(
                &mut admin,
                &format!("ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE"),
            )
            .await;
            let _ = run(&mut admin, &format!("DROP DATABASE [{name}]")).await;
        });
    }
}

/// A transaction on a connection of its own.
pub struct Held(Conn);

impl KitHeld for Held {
    async fn commit(mut self) {
        run(&mut self.0, "COMMIT TRANSACTION")
            .await
            .expect("commit");
    }
    async fn rollback(mut self) {
        run(&mut self.0, "ROLLBACK TRANSACTION")
            .await
            .expect("rollback");
    }
}

fn datetime(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("a datetime")
}

impl KitDb for MsDb {
    type Held = Held;

    fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            url: db_url(&self.admin_url, &self.name),
            password_env: std::env::var(PASSWORD_ENV)
                .ok()
                .map(|_| PASSWORD_ENV.to_owned()),
            password_file: None,
            tls: Default::default(),
        }
    }

    async fn exec(&self, sql: &str) {
        let mut c = self.conn.lock().await;
        run(&mut c, sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    async fn hold(&self, statements: &[String]) -> Held {
        let mut c = open(&db_url(&self.admin_url, &self.name)).await;
        run(&mut c, "BEGIN TRANSACTION").await.expect("begin");
        for s in statements {
            run(&mut c, s).await.unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        Held(c)
    }

    fn now(&self) -> &'static str {
        "SYSDATETIME()"
    }

    fn text(&self, s: &str) -> String {
        format!("N'{}'", s.replace('\'', "''"))
    }

    async fn supports(&self, mode: &str) -> Result<(), String> {
        if mode != "change_tracking" {
            return Ok(());
        }
        let mut c = self.conn.lock().await;
        run(
            &mut c,
            "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)",
        )
        .await
        .map_err(|e| format!("this server has no Change Tracking ({e})"))
    }

    async fn expire_position(&self, mode: &str) -> Result<(), String> {
        match mode {
            "changelog" => {
                self.exec("TRUNCATE TABLE dbo.ebis_change").await;
                Ok(())
            }
            "change_tracking" => Err(
                "Change Tracking cleans up only after CHANGE_RETENTION (days): the expiry path is covered by the unit tests of its minimum-valid-version check".to_owned(),
            ),
            other => Err(format!(
                "{other} capture keeps no position on the server that could expire"
            )),
        }
    }

    fn types(&self) -> Vec<(&'static str, Value)> {
        let text = |s: &str| Value::Text(s.to_owned());
        let dec = |s: &str| Value::Decimal(s.to_owned());
        vec![
            ("C_TINYINT", Value::Int(255)),
            ("C_SMALLINT", Value::Int(-32768)),
            ("C_INT", Value::Int(2_147_483_647)),
            ("C_BIGINT", Value::Int(i64::MIN)),
            ("C_BIT", Value::Bool(true)),
            ("C_DECIMAL", dec("12345678901234.567891")),
            ("C_NUMERIC", dec("1234567890")),
            ("C_MONEY", dec("922337203685477.5807")),
            ("C_SMALLMONEY", dec("-214748.3648")),
            ("C_FLOAT", Value::Float(0.1)),
            ("C_REAL", Value::Float(0.25)),
            (
                "C_DATE",
                Value::Date(NaiveDate::from_ymd_opt(2006, 3, 1).expect("date")),
            ),
            (
                "C_DATETIME",
                Value::DateTime(datetime("2006-03-01 08:30:00.123")),
            ),
            (
                "C_DATETIME2",
                Value::DateTime(datetime("2006-03-01 08:30:00.123456")),
            ),
            (
                "C_SMALLDATETIME",
                Value::DateTime(datetime("2006-03-01 08:30:00.0")),
            ),
            (
                "C_DTO",
                Value::DateTime(datetime("2006-03-01 08:30:00.123456")),
            ),
            ("C_TIME", text("08:30:00.123456")),
            ("C_GUID", text("6F9619FF-8B86-D011-B42D-00C04FC964FF")),
            ("C_CHAR", text("AB  ")),
            ("C_VARCHAR", text("abc")),
            ("C_TEXT", text("text")),
            ("C_NCHAR", text("乌海  ")),
            ("C_NVARCHAR", text("乌海市")),
            ("C_NTEXT", text("长文本")),
            ("C_VARBINARY", Value::Bytes(vec![0x00, 0xFF, 0x10])),
            ("C_NULL", Value::Null),
        ]
    }

    fn encodings(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("C_NVARCHAR", "UTF-16 (nvarchar)"),
            ("C_NCHAR_MAX", "UTF-16 (nvarchar(max))"),
            ("C_CHINESE_PRC", "code page 936 (Chinese_PRC_CI_AS)"),
            ("C_CHINESE_PRC_CS", "code page 936 (Chinese_PRC_CS_AS)"),
            ("C_CHINESE_TEXT", "code page 936 (text, Chinese_PRC_CI_AS)"),
        ]
    }
}

crate::contract_kit!(
    SqlServer,
    changelog: "mode: changelog\ngap_timeout: 30s",
    timestamp: "mode: timestamp\noverlap: 2s\nkey_scan_every: 1s",
    change_tracking: "mode: change_tracking",
);
