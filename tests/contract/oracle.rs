//! The contract kit against Oracle, when `EBIS_TEST_ORACLE_URL` names one (a DBA
//! account's URL, e.g. `oracle://system@127.0.0.1:1521/FREEPDB1`, its password in
//! `EBIS_TEST_ORACLE_PASSWORD`; the Oracle client library on `LD_LIBRARY_PATH` or in
//! `EBIS_ORACLE_CLIENT_DIR`): changelog and timestamp. Each test makes and drops its own
//! schema (a user owning the kit's tables, with the same password), which ebis reads as
//! its owner. Without the variable every test says so on stderr and passes.

use super::{KitDb, KitHeld, KitServer, SAMPLE};
use chrono::NaiveDateTime;
use ebis::config::ConnectionConfig;
use ebis_oracle::connect::{Session, parse_url};
use ebis_source::Value;

/// Oracle 11g or later.
pub struct Oracle;

const URL_ENV: &str = "EBIS_TEST_ORACLE_URL";
const PASSWORD_ENV: &str = "EBIS_TEST_ORACLE_PASSWORD";

const KIT_ENT: &str = "CREATE TABLE KIT_ENT (
    ID           NUMBER(10)     NOT NULL PRIMARY KEY,
    REGNO        VARCHAR2(30),
    ENTNAME      NVARCHAR2(200),
    ESTDATE      DATE,
    LAST_UPDATED TIMESTAMP(6)   NOT NULL
)";

const KIT_ENT_INDEX: &str = "CREATE INDEX KIT_ENT_UPD ON KIT_ENT (LAST_UPDATED, ID)";

const KIT_TYPES: &str = "CREATE TABLE KIT_TYPES (
    ID NUMBER(10) NOT NULL PRIMARY KEY,
    C_NUMBER_INT NUMBER(10), C_NUMBER_BIG NUMBER(19), C_NUMBER_DEC NUMBER(20, 6),
    C_NUMBER NUMBER, C_NUMBER_HUGE NUMBER(38), C_INTEGER INTEGER, C_FLOAT FLOAT,
    C_BINARY_FLOAT BINARY_FLOAT, C_BINARY_DOUBLE BINARY_DOUBLE,
    C_DATE DATE, C_TIMESTAMP TIMESTAMP(6), C_TSTZ TIMESTAMP(6) WITH TIME ZONE,
    C_CHAR CHAR(4), C_VARCHAR2 VARCHAR2(50), C_NCHAR NCHAR(4), C_NVARCHAR2 NVARCHAR2(50),
    C_CLOB CLOB, C_NCLOB NCLOB, C_RAW RAW(8), C_BLOB BLOB,
    C_EMPTY VARCHAR2(10), C_NULL VARCHAR2(10)
)";

const KIT_TYPES_ROW: &str = "INSERT INTO KIT_TYPES VALUES (1,
    2147483647, -9223372036854775808, 12345678901234.567891,
    0.1, 123456789012345678901234567890, 42, 0.5,
    0.25, 0.1,
    TO_DATE('2006-03-01 08:30:00', 'YYYY-MM-DD HH24:MI:SS'),
    TIMESTAMP '2006-03-01 08:30:00.123456', TIMESTAMP '2006-03-01 08:30:00.123456 +08:00',
    'AB', 'abc', N'乌海', N'乌海市',
    'clob text', N'长文本', HEXTORAW('00FF10'), HEXTORAW('0102'),
    '', NULL)";

const KIT_TEXT: &str = "CREATE TABLE KIT_TEXT (
    ID NUMBER(10) NOT NULL PRIMARY KEY,
    C_VARCHAR2 VARCHAR2(200),
    C_CHAR CHAR(100 CHAR),
    C_NVARCHAR2 NVARCHAR2(100),
    C_CLOB CLOB,
    C_NCLOB NCLOB
)";

fn text_row() -> String {
    let v = format!("'{SAMPLE}'");
    let n = format!("N'{SAMPLE}'");
    format!("INSERT INTO KIT_TEXT VALUES (1, {v}, {v}, {n}, {v}, {n})")
}

/// A throwaway schema on the configured server.
pub struct OraDb {
    /// The user owning it.
    user: String,
    admin_url: String,
    session: Session,
}

fn password() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok()
}

/// The admin URL with another account.
fn url_as(admin: &str, user: &str) -> String {
    let rest = admin.strip_prefix("oracle://").unwrap_or(admin);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("oracle://{user}@{host}")
}

fn session(url: &str) -> Session {
    let target = parse_url(url).unwrap_or_else(|e| panic!("{URL_ENV}: {e}"));
    Session::new(target, password())
}

async fn run(s: &Session, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    s.run(None, move |conn| {
        conn.execute(&sql, &[])?;
        conn.commit()
    })
    .await
    .map_err(|e| e.to_string())
}

impl KitServer for Oracle {
    type Db = OraDb;
    const DIALECT: &'static str = "oracle";

    async fn create() -> Option<OraDb> {
        let Ok(admin_url) = std::env::var(URL_ENV) else {
            eprintln!("contract kit oracle: not run: {URL_ENV} is not set (see README, Tests)");
            return None;
        };
        // Within 30 bytes, for servers before 12.2.
        let unique = crate::support::unique_name("K");
        let digest: u32 = unique.bytes().fold(0x811c_9dc5, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let user = format!("EBIS_KIT_{digest:08X}");
        let admin = session(&admin_url);
        let pw = password().unwrap_or_default().replace('"', "");
        run(
            &admin,
            &format!("CREATE USER {user} IDENTIFIED BY \"{pw}\" QUOTA UNLIMITED ON USERS"),
        )
        .await
        .unwrap_or_else(|e| panic!("create the kit's user: {e}"));
        run(
            &admin,
            &format!(
                "GRANT CREATE SESSION, CREATE TABLE, CREATE SEQUENCE, CREATE TRIGGER, CREATE PROCEDURE TO {user}"
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("grant the kit's user: {e}"));
        for grant in [
            "EXECUTE ON SYS.DBMS_FLASHBACK",
            "SELECT ON SYS.GV_$TRANSACTION",
            "SELECT ON SYS.V_$DATABASE",
        ] {
            if let Err(e) = run(&admin, &format!("GRANT {grant} TO {user}")).await {
                eprintln!("contract kit oracle: GRANT {grant} refused ({e}); going on without it");
            }
        }
        admin.close().await;
        let session = session(&url_as(&admin_url, &user));
        for s in [
            KIT_ENT.to_owned(),
            KIT_ENT_INDEX.to_owned(),
            KIT_TYPES.to_owned(),
            KIT_TYPES_ROW.to_owned(),
            KIT_TEXT.to_owned(),
            text_row(),
        ] {
            run(&session, &s)
                .await
                .unwrap_or_else(|e| panic!("{e}: {s}"));
        }
        Some(OraDb {
            user,
            admin_url,
            session,
        })
    }
}

impl Drop for OraDb {
    fn drop(&mut self) {
        let user = self.user.clone();
        let admin_url = self.admin_url.clone();
        let own = self.session.clone();
        crate::support::cleanup(move || async move {
            own.close().await;
            let admin = session(&admin_url);
            for _ in 0..10 {
                // ebis's own sessions may still be closing.
                if run(&admin, &format!("DROP USER {user} CASCADE"))
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            admin.close().await;
        });
    }
}

/// A transaction on a session of its own.
pub struct Held(Session);

impl KitHeld for Held {
    async fn commit(self) {
        self.0
            .run(None, |conn| conn.commit())
            .await
            .expect("commit");
        self.0.close().await;
    }
    async fn rollback(self) {
        self.0
            .run(None, |conn| conn.rollback())
            .await
            .expect("rollback");
        self.0.close().await;
    }
}

fn datetime(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("a datetime")
}

impl KitDb for OraDb {
    type Held = Held;

    fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            url: url_as(&self.admin_url, &self.user),
            password_env: password().map(|_| PASSWORD_ENV.to_owned()),
            password_file: None,
            tls: Default::default(),
        }
    }

    async fn exec(&self, sql: &str) {
        run(&self.session, sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    async fn hold(&self, statements: &[String]) -> Held {
        let s = session(&url_as(&self.admin_url, &self.user));
        for st in statements {
            let sql = st.clone();
            s.run(None, move |conn| conn.execute(&sql, &[]).map(|_| ()))
                .await
                .unwrap_or_else(|e| panic!("{e}: {st}"));
        }
        Held(s)
    }

    fn now(&self) -> &'static str {
        "SYSTIMESTAMP"
    }

    fn text(&self, s: &str) -> String {
        format!("N'{}'", s.replace('\'', "''"))
    }

    fn date(&self, d: &str) -> String {
        format!("DATE '{d}'")
    }

    async fn expire_position(&self, mode: &str) -> Result<(), String> {
        match mode {
            "changelog" => {
                // What re-running removal and setup does: the numbering starts again.
                for s in [
                    "DROP SEQUENCE EBIS_CHANGE_SEQ",
                    "CREATE SEQUENCE EBIS_CHANGE_SEQ START WITH 1 INCREMENT BY 1 CACHE 100 ORDER NOCYCLE",
                    "TRUNCATE TABLE EBIS_CHANGE",
                ] {
                    run(&self.session, s)
                        .await
                        .map_err(|e| format!("{e}: {s}"))?;
                }
                Ok(())
            }
            other => Err(format!(
                "{other} capture keeps no position on the server that could expire"
            )),
        }
    }

    fn types(&self) -> Vec<(&'static str, Value)> {
        let text = |s: &str| Value::Text(s.to_owned());
        let dec = |s: &str| Value::Decimal(s.to_owned());
        vec![
            ("C_NUMBER_INT", Value::Int(2_147_483_647)),
            ("C_NUMBER_BIG", Value::Int(i64::MIN)),
            ("C_NUMBER_DEC", dec("12345678901234.567891")),
            ("C_NUMBER", dec("0.1")),
            ("C_NUMBER_HUGE", dec("123456789012345678901234567890")),
            ("C_INTEGER", Value::Int(42)),
            ("C_FLOAT", dec("0.5")),
            ("C_BINARY_FLOAT", Value::Float(0.25)),
            ("C_BINARY_DOUBLE", Value::Float(0.1)),
            ("C_DATE", Value::DateTime(datetime("2006-03-01 08:30:00.0"))),
            (
                "C_TIMESTAMP",
                Value::DateTime(datetime("2006-03-01 08:30:00.123456")),
            ),
            (
                "C_TSTZ",
                Value::DateTime(datetime("2006-03-01 08:30:00.123456")),
            ),
            ("C_CHAR", text("AB")),
            ("C_VARCHAR2", text("abc")),
            ("C_NCHAR", text("乌海")),
            ("C_NVARCHAR2", text("乌海市")),
            ("C_CLOB", text("clob text")),
            ("C_NCLOB", text("长文本")),
            ("C_RAW", Value::Bytes(vec![0x00, 0xFF, 0x10])),
            ("C_BLOB", Value::Bytes(vec![0x01, 0x02])),
            ("C_EMPTY", Value::Null),
            ("C_NULL", Value::Null),
        ]
    }

    fn encodings(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("C_VARCHAR2", "the database character set (VARCHAR2)"),
            ("C_CHAR", "the database character set (CHAR, padded)"),
            ("C_NVARCHAR2", "the national character set (NVARCHAR2)"),
            ("C_CLOB", "CLOB"),
            ("C_NCLOB", "NCLOB"),
        ]
    }
}

crate::contract_kit!(
    Oracle,
    changelog: "mode: changelog\ngap_timeout: 30s",
    timestamp: "mode: timestamp\noverlap: 2s\nkey_scan_every: 1s",
);
