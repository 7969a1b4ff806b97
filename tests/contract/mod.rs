//! The `Source` contract kit: one set of scenarios every connector must pass against its
//! own real server, in every capture mode it supports. A dialect supplies a [`KitServer`]
//! (a throwaway database holding the kit's tables, and the few SQL spellings that differ);
//! the scenarios write through it and check what a user would: the warehouse agrees with
//! the source (`ebis verify`), row by row.
//!
//! Scenarios: snapshot then stream with no gap under concurrent writers; rollbacks and a
//! long transaction; one key updated, deleted and re-inserted; a key changed; `kill -9`
//! mid-batch and restart; Chinese text in each encoding the dialect has; every column type
//! the dialect has; a position that expired. A scenario a server cannot run says so by
//! name (on stderr) rather than failing obscurely.
//!
//! The kit's tables, in each dialect's types:
//! - `KIT_ENT (ID int primary key, REGNO, ENTNAME (Unicode text), ESTDATE date,
//!   LAST_UPDATED datetime)`, mapped to `aic_establishment` by `kit_mapping`;
//! - `KIT_TYPES (ID, one column per type)`, one row whose values [`KitDb::types`] lists;
//! - `KIT_TEXT (ID, one text column per encoding)`, read back as [`KitDb::encodings`] says.

pub mod mysql;
pub mod oracle;
pub mod postgres;
pub mod sqlserver;

use crate::support::TempDir;
use crate::support::harness::{Env, SourceDef};
use ebis::config::ConnectionConfig;
use ebis::pipeline::AnySource;
use ebis_source::{Source, TablePlan, Value};
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A server the kit runs against.
pub trait KitServer: Sized + Send + Sync {
    /// The database the kit writes through.
    type Db: KitDb;
    /// The dialect's name in the config.
    const DIALECT: &'static str;
    /// A throwaway database with the kit's tables; `None` (after saying why on stderr)
    /// when the server is not configured here.
    fn create() -> impl Future<Output = Option<Self::Db>> + Send;
}

/// One of the kit's databases.
pub trait KitDb: Send + Sync {
    /// A transaction left open.
    type Held: KitHeld;
    /// How ebis connects to it (no password in the URL).
    fn connection(&self) -> ConnectionConfig;
    /// Runs one statement.
    fn exec(&self, sql: &str) -> impl Future<Output = ()> + Send;
    /// Runs statements in a transaction it leaves open.
    fn hold(&self, statements: &[String]) -> impl Future<Output = Self::Held> + Send;
    /// The dialect's expression for the current time (for `LAST_UPDATED`).
    fn now(&self) -> &'static str;
    /// A Unicode string literal.
    fn text(&self, s: &str) -> String;
    /// A date literal (`YYYY-MM-DD`).
    fn date(&self, d: &str) -> String {
        format!("'{d}'")
    }
    /// Whether the server can capture in `mode` (`Err(why)`: the kit reports the
    /// scenario as not run, by name).
    fn supports(&self, _mode: &str) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
    /// The capture block the kit's source uses for `capture` (a server whose capture
    /// objects are named server-wide gives each kit database its own).
    fn capture(&self, capture: &str) -> String {
        capture.to_owned()
    }
    /// Makes the stored position of `mode` unusable the way an operator could by mistake
    /// (a change table truncated); `Err(why)` when this mode has no such position.
    fn expire_position(&self, mode: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// The `KIT_TYPES` row's columns and the values the connector must read.
    fn types(&self) -> Vec<(&'static str, Value)>;
    /// The `KIT_TEXT` columns and the encoding each is stored in; every one holds
    /// [`SAMPLE`] after the kit's insert.
    fn encodings(&self) -> Vec<(&'static str, &'static str)>;
}

/// A transaction left open.
pub trait KitHeld: Send {
    /// Commits it.
    fn commit(self) -> impl Future<Output = ()> + Send;
    /// Rolls it back.
    fn rollback(self) -> impl Future<Output = ()> + Send;
}

/// Chinese text every encoding a bureau uses can hold (GB2312 characters only, and the
/// full-width punctuation forms bureaus type).
pub const SAMPLE: &str = "乌海市海勃湾区（滨河）商贸有限责任公司";

const LIVE: &str = "select count(*) from exchange.aic_establishment where deleted_at is null";

/// The kit's mapping: `KIT_ENT` as AIC establishments.
fn kit_mapping() -> &'static str {
    "record_kind: aic_establishment
source:
  table: KIT_ENT
  key: [ID]
  modified_column: LAST_UPDATED
fields:
  reg_no: {column: REGNO}
  name: {column: ENTNAME}
  established_on: {column: ESTDATE}
"
}

/// A name for row `id`, version `v`.
fn name(id: i64, v: u32) -> String {
    format!("乌海市第{id}号商贸有限公司（{v}）")
}

/// The kit's DML, in the dialect's spelling.
pub struct Dml<'a, D: KitDb>(&'a D);

impl<D: KitDb> Dml<'_, D> {
    fn insert(&self, id: i64, v: u32) -> String {
        format!(
            "INSERT INTO KIT_ENT (ID, REGNO, ENTNAME, ESTDATE, LAST_UPDATED) VALUES ({id}, '{:015}', {}, {}, {})",
            150_302_000_000_000i64 + id,
            self.0.text(&name(id, v)),
            self.0.date("2006-03-01"),
            self.0.now()
        )
    }
    fn rename(&self, id: i64, v: u32) -> String {
        format!(
            "UPDATE KIT_ENT SET ENTNAME = {}, LAST_UPDATED = {} WHERE ID = {id}",
            self.0.text(&name(id, v)),
            self.0.now()
        )
    }
    fn delete(&self, id: i64) -> String {
        format!("DELETE FROM KIT_ENT WHERE ID = {id}")
    }
    fn rekey(&self, from: i64, to: i64) -> String {
        format!(
            "UPDATE KIT_ENT SET ID = {to}, LAST_UPDATED = {} WHERE ID = {from}",
            self.0.now()
        )
    }
}

/// A kit environment: the server's database, a warehouse, a config with one source in
/// `capture` (YAML lines), capture installed.
pub struct Kit<D: KitDb> {
    pub db: D,
    pub env: Env,
    _mappings: TempDir,
}

impl<D: KitDb> Kit<D> {
    fn dml(&self) -> Dml<'_, D> {
        Dml(&self.db)
    }

    async fn exec(&self, sql: &str) {
        self.db.exec(sql).await;
    }

    async fn name_of(&self, id: i64) -> Option<String> {
        self.env
            .pg()
            .await
            .query_opt(
                "select name from exchange.aic_establishment where source = 'kit' and source_key = $1 and deleted_at is null",
                &[&id.to_string()],
            )
            .await
            .expect("read the warehouse")
            .map(|r| r.get(0))
    }
}

/// Builds a kit environment, or `None` when the server is not configured here.
pub async fn kit<S: KitServer>(capture: &str) -> Option<Kit<S::Db>> {
    let db = S::create().await?;
    if let Err(why) = db.supports(mode_of(capture)).await {
        eprintln!(
            "contract kit {}/{}: not run: {why}",
            S::DIALECT,
            mode_of(capture)
        );
        return None;
    }
    let mappings = TempDir::new("ebis_kit_mappings");
    std::fs::write(
        mappings.path().join("aic_establishment.yaml"),
        kit_mapping(),
    )
    .expect("write the kit mapping");
    let env = Env::custom_in(
        S::DIALECT,
        vec![SourceDef {
            name: "kit".to_owned(),
            bureau: "aic".to_owned(),
            division: "150302".to_owned(),
            capture: db.capture(capture),
            connection: db.connection(),
            mappings: mappings.path().to_owned(),
        }],
    )
    .await;
    Some(Kit {
        db,
        env,
        _mappings: mappings,
    })
}

/// The mode named by a capture block (`mode: changelog …`).
fn mode_of(capture: &str) -> &str {
    capture.split_whitespace().nth(1).unwrap_or("?")
}

/// Says a scenario does not apply, by name.
fn not_applicable(dialect: &str, capture: &str, scenario: &str, why: &str) {
    eprintln!(
        "contract kit {dialect}/{}: scenario `{scenario}` not run: {why}",
        mode_of(capture)
    );
}

/// Rows in the source before capture starts, rows written while the snapshot runs and
/// after: the warehouse ends up equal to the source, nothing missed at the seam.
pub async fn snapshot_then_stream_under_writers<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    for id in 0..400 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    let run = k.env.start();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut id = 1000;
    while Instant::now() < deadline {
        k.exec(&k.dml().insert(id, 0)).await;
        k.exec(&k.dml().rename(id % 400, 1)).await;
        if id % 7 == 0 {
            k.exec(&k.dml().delete((id * 13) % 400)).await;
        }
        id += 1;
    }
    k.env.wait_verified(Duration::from_secs(90)).await;
    assert!(run.stop().await.is_empty());
}

/// A rolled-back insert never arrives; an insert whose transaction stays open across
/// several polls arrives when it commits; writes around them are not held up for good.
pub async fn rollbacks_and_a_long_transaction<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    for id in 0..10 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    let run = k.env.start();
    k.env.wait_count(LIVE, 10, Duration::from_secs(60)).await;
    let doomed = k.db.hold(&[k.dml().insert(100, 0)]).await;
    let long = k.db.hold(&[k.dml().insert(101, 0)]).await;
    for id in 10..20 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    k.env.wait_count(LIVE, 20, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    doomed.rollback().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    long.commit().await;
    k.env.wait_verified(Duration::from_secs(60)).await;
    assert!(k.name_of(101).await.is_some(), "the long transaction's row");
    assert!(k.name_of(100).await.is_none(), "the rolled-back row");
    assert!(run.stop().await.is_empty());
}

/// One key inserted, updated, deleted and inserted again, fast and then between polls:
/// the warehouse holds its last state.
pub async fn one_key_updated_deleted_and_reinserted<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    k.exec(&k.dml().insert(1, 0)).await;
    let run = k.env.start();
    k.env.wait_count(LIVE, 1, Duration::from_secs(60)).await;
    for round in 0..3u32 {
        k.exec(&k.dml().insert(7, round * 10)).await;
        k.exec(&k.dml().rename(7, round * 10 + 1)).await;
        k.exec(&k.dml().delete(7)).await;
        k.exec(&k.dml().insert(7, round * 10 + 2)).await;
        k.exec(&k.dml().rename(7, round * 10 + 3)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        k.exec(&k.dml().delete(7)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    k.exec(&k.dml().insert(7, 99)).await;
    k.env.wait_verified(Duration::from_secs(60)).await;
    assert_eq!(k.name_of(7).await, Some(name(7, 99)));
    assert!(run.stop().await.is_empty());
}

/// A row whose key changes: the old key is deleted, the new one holds the row.
pub async fn a_key_changes<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    for id in 0..5 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    let run = k.env.start();
    k.env.wait_count(LIVE, 5, Duration::from_secs(60)).await;
    k.exec(&k.dml().rekey(3, 5000)).await;
    k.env.wait_verified(Duration::from_secs(60)).await;
    assert_eq!(k.name_of(5000).await, Some(name(3, 0)));
    assert_eq!(k.name_of(3).await, None);
    assert!(run.stop().await.is_empty());
}

/// `ebis run` killed with SIGKILL while writers go on, three times: after a restart the
/// warehouse agrees with the source — nothing lost, nothing doubled.
pub async fn kill_9_mid_batch_and_restart<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    for id in 0..200 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    let mut child = k.env.spawn_run(Stdio::null());
    let mut id = 1000;
    for round in 0..3u32 {
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            k.exec(&k.dml().insert(id, round)).await;
            k.exec(&k.dml().rename(id % 200, round + 1)).await;
            id += 1;
        }
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        child = k.env.spawn_run(Stdio::null());
    }
    k.env.wait_verified(Duration::from_secs(90)).await;
    child.kill().expect("stop the child");
    child.wait().expect("reaped");
}

/// The stored position made unusable while ebis is stopped, and writes meanwhile: ebis
/// snapshots the source again instead of stopping, says why, and misses nothing.
pub async fn a_position_that_expired<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    for id in 0..20 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    let run = k.env.start();
    k.env.wait_count(LIVE, 20, Duration::from_secs(60)).await;
    assert!(run.stop().await.is_empty());
    if let Err(why) = k.db.expire_position(mode_of(capture)).await {
        not_applicable(S::DIALECT, capture, "a_position_that_expired", &why);
        return;
    }
    k.exec(&k.dml().delete(5)).await;
    k.exec(&k.dml().rename(6, 1)).await;
    for id in 20..25 {
        k.exec(&k.dml().insert(id, 0)).await;
    }
    let run = k.env.start();
    k.env.wait_verified(Duration::from_secs(60)).await;
    k.exec(&k.dml().rename(7, 2)).await;
    k.env.wait_verified(Duration::from_secs(30)).await;
    let resnapshots: i32 = k
        .env
        .pg()
        .await
        .query_one(
            "select resnapshots from ebis.source_status where source = 'kit'",
            &[],
        )
        .await
        .expect("status")
        .get(0);
    assert_eq!(resnapshots, 1);
    assert!(run.stop().await.is_empty());
}

/// Opens the connector on one kit table, as the pipeline would, and reads it whole.
async fn read_table<S: KitServer>(k: &Kit<S::Db>, table: &str, columns: &[&str]) -> Vec<Value> {
    let cfg = k.env.config().sources[0].clone();
    let plan = TablePlan {
        table: table.to_owned(),
        key: vec!["ID".to_owned()],
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        expressions: Vec::new(),
        modified_column: None,
        trust_key: false,
    };
    let mut source = AnySource::open(&cfg, vec![plan]).expect("open the connector");
    let rows = source
        .snapshot_chunk(table, None, 10, 1)
        .await
        .expect("read the table");
    source.close().await;
    assert_eq!(rows.len(), 1, "{table} holds one row");
    columns
        .iter()
        .map(|c| rows[0].row.get(c).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Every column type the dialect has arrives as the value it holds, no float rounding
/// of exact numbers, no shifted times.
pub async fn every_column_type<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    let expected = k.db.types();
    let columns: Vec<&str> = expected.iter().map(|(c, _)| *c).collect();
    let read = read_table::<S>(&k, "KIT_TYPES", &columns).await;
    for ((column, want), got) in expected.iter().zip(read) {
        assert_eq!(&got, want, "KIT_TYPES.{column}");
    }
}

/// Chinese text in each encoding the dialect stores arrives as the same Unicode text.
pub async fn chinese_text_in_every_encoding<S: KitServer>(capture: &str) {
    let Some(k) = kit::<S>(capture).await else {
        return;
    };
    let encodings = k.db.encodings();
    let columns: Vec<&str> = encodings.iter().map(|(c, _)| *c).collect();
    let read = read_table::<S>(&k, "KIT_TEXT", &columns).await;
    for ((column, encoding), got) in encodings.iter().zip(read) {
        assert_eq!(
            got,
            Value::Text(SAMPLE.to_owned()),
            "KIT_TEXT.{column} ({encoding})"
        );
    }
}

/// The kit's tests for one server: each scenario in each capture mode given (a module
/// per mode), the type and text scenarios once.
#[macro_export]
macro_rules! contract_kit {
    ($server:ty, $($mode:ident: $capture:expr),+ $(,)?) => {
        $(
            mod $mode {
                use super::*;
                use $crate::contract as kit;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn snapshot_then_stream_under_writers() {
                    kit::snapshot_then_stream_under_writers::<$server>($capture).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn rollbacks_and_a_long_transaction() {
                    kit::rollbacks_and_a_long_transaction::<$server>($capture).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn one_key_updated_deleted_and_reinserted() {
                    kit::one_key_updated_deleted_and_reinserted::<$server>($capture).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_key_changes() {
                    kit::a_key_changes::<$server>($capture).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kill_9_mid_batch_and_restart() {
                    kit::kill_9_mid_batch_and_restart::<$server>($capture).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_position_that_expired() {
                    kit::a_position_that_expired::<$server>($capture).await;
                }
            }
        )+

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_column_type() {
            $crate::contract::every_column_type::<$server>("mode: timestamp").await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn chinese_text_in_every_encoding() {
            $crate::contract::chinese_text_in_every_encoding::<$server>("mode: timestamp").await;
        }
    };
}
