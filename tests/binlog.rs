//! Binlog capture (MySQL/MariaDB's row-based binary log) beyond the contract kit: a
//! transaction larger than a batch, the table's definition changed mid-stream, a
//! TRUNCATE (logged as a statement, without rows), connections cut mid-stream, what
//! `check --online` says of an account that may not read the log, and rows taken from
//! the log's row images (equal to a read by key; GBK text as the server converts it).

use crate::support::TempDir;
use crate::support::harness::{Env, Running, SourceDef};
use crate::support::mysql::MyDb;
use crate::support::parts::{assert_rows_read_alike, read_in_parts};
use ebis::pipeline::AnySource;
use ebis_source::{Position, Source};
use mysql_async::prelude::Queryable;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

const ENT: &str = "CREATE TABLE ENT (
    ID      INT          NOT NULL PRIMARY KEY,
    REGNO   VARCHAR(30)  NULL,
    ENTNAME VARCHAR(200) NULL,
    ESTDATE DATE         NULL
) DEFAULT CHARSET=utf8mb4";

const MAPPING: &str = "record_kind: aic_establishment
source:
  table: ENT
  key: [ID]
fields:
  reg_no: {column: REGNO}
  name: {column: ENTNAME}
  established_on: {column: ESTDATE}
";

const LIVE: &str = "select count(*) from exchange.aic_establishment where deleted_at is null";

/// A bureau database with `ENT`, captured in binlog mode.
struct Bureau {
    db: MyDb,
    env: Env,
    _mappings: TempDir,
    /// No test purges the server's binary log meanwhile.
    _no_purge: tokio::sync::RwLockReadGuard<'static, ()>,
}

async fn bureau() -> Bureau {
    bureau_with(ENT, MAPPING, "mode: binlog").await
}

/// A bureau database with the table `ddl` creates, mapped by `mapping`, captured as
/// `capture` says.
async fn bureau_with(ddl: &str, mapping: &str, capture: &str) -> Bureau {
    let guard = crate::support::mysql::BINLOG_FILES.read().await;
    let db = MyDb::create(&[ddl.to_owned()]).await;
    let mappings = TempDir::new("ebis_binlog_mappings");
    std::fs::write(mappings.path().join("aic_establishment.yaml"), mapping).expect("mapping");
    let env = Env::custom(vec![SourceDef {
        name: "aic_binlog".to_owned(),
        bureau: "aic".to_owned(),
        division: "150302".to_owned(),
        capture: capture.to_owned(),
        connection: db.conn.clone(),
        mappings: mappings.path().to_owned(),
    }])
    .await;
    Bureau {
        db,
        env,
        _mappings: mappings,
        _no_purge: guard,
    }
}

/// The bureau's source opened through the `Source` API, its capture checked.
async fn checked_source(b: &Bureau) -> AnySource {
    let config = b.env.config();
    let cfg = &config.sources[0];
    let mappings =
        ebis::mapping::MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau)).expect("maps");
    let mut source = AnySource::open(cfg, ebis::pipeline::plans(cfg, &mappings)).expect("source");
    source.check().await.expect("check");
    source
}

fn insert(from: u32, to: u32) -> String {
    format!(
        "INSERT INTO ENT (ID, REGNO, ENTNAME, ESTDATE) SELECT seq, LPAD(150302000000000 + seq, 15, '0'), CONCAT('乌海市第', seq, '号商贸有限公司'), '2006-03-01' FROM seq_{from}_to_{to}"
    )
}

async fn started(b: &Bureau, rows: u32) -> Running {
    b.db.exec(&insert(1, rows)).await;
    let run = b.env.start();
    b.env.wait_count(LIVE, i64::from(rows), T).await;
    run
}

/// One transaction of 6,000 inserts, 500 renames and 50 deletes against batches of 500:
/// the connector returns it in parts, each position at the transaction's start with the
/// row changes already read, and the warehouse ends up equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_a_batch_is_read_in_parts_and_lands_whole() {
    let b = bureau().await;
    b.db.exec(&insert(1, 10)).await;
    let cfg = b.env.config().sources[0].clone();
    let plans = vec![ebis_source::TablePlan {
        table: "ENT".to_owned(),
        key: vec!["ID".to_owned()],
        columns: vec![
            "REGNO".to_owned(),
            "ENTNAME".to_owned(),
            "ESTDATE".to_owned(),
        ],
        expressions: Vec::new(),
        modified_column: None,
        trust_key: false,
    }];
    let mut source = AnySource::open(&cfg, plans).expect("open");
    source
        .check()
        .await
        .expect("binlog capture can read this server");
    let head = source.head().await.expect("head");
    let mut c = b.db.conn().await;
    c.query_drop("START TRANSACTION").await.expect("begin");
    c.query_drop(insert(1001, 7000)).await.expect("insert");
    c.query_drop(
        "UPDATE ENT SET ENTNAME = CONCAT(ENTNAME, '（更名）') WHERE ID BETWEEN 1001 AND 1500",
    )
    .await
    .expect("rename");
    c.query_drop("DELETE FROM ENT WHERE ID BETWEEN 6951 AND 7000")
        .await
        .expect("delete");
    c.query_drop("COMMIT").await.expect("commit");
    drop(c);

    let parts = read_in_parts(
        source,
        head,
        500,
        // Other databases on the server log too: the transaction's start is not the head.
        |p| match p {
            Position::Binlog { pos, skip, .. } if *skip > 0 => Some((*pos, *skip)),
            _ => None,
        },
        |_| None,
    )
    .await;
    parts.assert_the_transaction_landed_whole();
    assert!(
        matches!(parts.end, Position::Binlog { skip: 0, .. }),
        "the last part ends at the commit: {:?}",
        parts.end
    );

    // And through the pipeline, batch after batch of 500.
    let run = b.env.start();
    b.env.wait_verified(T).await;
    let renamed: i64 = b
        .env
        .pg()
        .await
        .query_one(
            "select count(*) from exchange.aic_establishment where name like '%（更名）' and deleted_at is null",
            &[],
        )
        .await
        .expect("renamed")
        .get(0);
    assert_eq!(renamed, 500);
    assert!(run.stop().await.is_empty());
}

/// A table whose key columns come last, after a column of every type MariaDB logs (NULL
/// in every other row): each row image is walked column by column to reach the key, so
/// a value read one byte too long or too short would give wrong keys for every later row
/// of the event. Rows inserted, updated (two images each) and deleted many to an event,
/// with a GBK text key and an unsigned key above the signed range. Two defects this
/// found: the log's table map gave the GBK column the table's default character set (its
/// keys were bytes that matched no row), and MariaDB's row `IN` list of two or more keys
/// finds no GBK row by UTF-8 text — in every capture mode, so changelog capture runs it
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_after_a_column_of_every_type_are_read_from_the_log() {
    keys_after_a_column_of_every_type("mode: binlog").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_gbk_keys_are_read_by_key_in_changelog_mode() {
    keys_after_a_column_of_every_type("mode: changelog").await;
}

async fn keys_after_a_column_of_every_type(capture: &str) {
    const WIDE: &str = "CREATE TABLE WIDE (
        C_TINY TINYINT NULL, C_SMALL SMALLINT UNSIGNED NULL, C_MEDIUM MEDIUMINT NULL,
        C_INT INT NULL, C_BIG BIGINT NULL, C_DEC DECIMAL(20,4) NULL, C_FLOAT FLOAT NULL,
        C_DOUBLE DOUBLE NULL, C_BIT BIT(10) NULL, C_DATE DATE NULL, C_TIME TIME(3) NULL,
        C_DATETIME DATETIME(6) NULL, C_STAMP TIMESTAMP(6) NULL, C_YEAR YEAR NULL,
        C_CHAR CHAR(5) NULL, C_VARCHAR VARCHAR(300) NULL, C_BINARY BINARY(4) NULL,
        C_VARBINARY VARBINARY(20) NULL, C_TINYBLOB TINYBLOB NULL, C_TEXT TEXT NULL,
        C_MEDIUMTEXT MEDIUMTEXT NULL, C_LONGBLOB LONGBLOB NULL, C_ENUM ENUM('甲', '乙') NULL,
        C_SET SET('x', 'y') NULL, C_JSON JSON NULL, C_POINT POINT NULL,
        NAME VARCHAR(200) NOT NULL,
        CODE VARCHAR(20) CHARACTER SET gbk NOT NULL,
        SEQ BIGINT UNSIGNED NOT NULL,
        PRIMARY KEY (CODE, SEQ)
    ) DEFAULT CHARSET=utf8mb4";
    const WIDE_MAPPING: &str = "record_kind: aic_establishment
source:
  table: WIDE
  key: [CODE, SEQ]
fields:
  reg_no: {column: CODE}
  name: {column: NAME}
";
    let b = bureau_with(WIDE, WIDE_MAPPING, capture).await;
    let insert = |from: u32, to: u32| {
        format!(
            "INSERT INTO WIDE SELECT
               IF(seq % 2, NULL, -5), IF(seq % 2, NULL, 65000), IF(seq % 2, NULL, -8000000),
               IF(seq % 2, NULL, seq), IF(seq % 2, NULL, -9000000000000 * CAST(seq AS SIGNED)),
               IF(seq % 2, NULL, 1234567890123.4567), IF(seq % 2, NULL, 1.5), IF(seq % 2, NULL, 2.25e100),
               IF(seq % 2, NULL, b'1010101010'), IF(seq % 2, NULL, '2006-03-01'),
               IF(seq % 2, NULL, '-838:59:58.123'), IF(seq % 2, NULL, '2026-12-03 10:11:12.654321'),
               IF(seq % 2, NULL, '2026-12-03 10:11:12.000001'), IF(seq % 2, NULL, 2006),
               IF(seq % 2, NULL, '乌海'), IF(seq % 2, NULL, REPEAT('海勃湾', 90)),
               IF(seq % 2, NULL, 'ab'), IF(seq % 2, NULL, UNHEX('00FF00FF')),
               IF(seq % 2, NULL, REPEAT('b', 200)), IF(seq % 2, NULL, REPEAT('文本', 300)),
               IF(seq % 2, NULL, REPEAT('中', IF(seq % 50 = 0, 22000, 3))), IF(seq % 2, NULL, REPEAT(UNHEX('FE'), 300)),
               IF(seq % 2, NULL, '乙'), IF(seq % 2, NULL, 'x,y'), IF(seq % 2, NULL, '{{\"a\": [1, \"乌海\"]}}'),
               IF(seq % 2, NULL, POINT(106.8, 39.67)),
               CONCAT('乌海市第', seq, '号商贸有限公司'), CONCAT('海南区', seq % 7), 18446744073709551000 + seq
             FROM seq_{from}_to_{to}"
        )
    };
    let run = changed_many_to_a_statement(&b, "WIDE", insert).await;
    let name: String = b
        .env
        .pg()
        .await
        .query_one(
            "select name from exchange.aic_establishment
             where source_key = '海南区0|18446744073709551007' and reg_no = '海南区0' and deleted_at is null",
            &[],
        )
        .await
        .expect("the row keyed by GBK text and an unsigned number above the signed range")
        .get(0);
    assert_eq!(name, "乌海市第7号商贸有限公司");
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_latin1_keys_with_accents_are_read_by_key_in_changelog_mode() {
    latin1_composite_keys("mode: changelog").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_latin1_keys_with_accents_are_read_from_the_log() {
    latin1_composite_keys("mode: binlog").await;
}

/// A key of latin1 text beyond ASCII and a number: rows changed many to a statement are
/// found again by key (MariaDB compares a multi-row `IN` list without converting text).
async fn latin1_composite_keys(capture: &str) {
    const LAT: &str = "CREATE TABLE LAT (
        NAME VARCHAR(200) NOT NULL,
        CODE VARCHAR(20) CHARACTER SET latin1 NOT NULL,
        SEQ INT NOT NULL,
        PRIMARY KEY (CODE, SEQ)
    ) DEFAULT CHARSET=utf8mb4";
    const LAT_MAPPING: &str = "record_kind: aic_establishment
source:
  table: LAT
  key: [CODE, SEQ]
fields:
  reg_no: {column: SEQ}
  name: {column: NAME}
";
    let b = bureau_with(LAT, LAT_MAPPING, capture).await;
    let insert = |from: u32, to: u32| {
        format!(
            "INSERT INTO LAT SELECT CONCAT('乌海市第', seq, '号商贸有限公司'),
                    CONCAT('Café Zoë ', seq % 7), seq
             FROM seq_{from}_to_{to}"
        )
    };
    let run = changed_many_to_a_statement(&b, "LAT", insert).await;
    assert!(run.stop().await.is_empty());
}

/// Rows `insert(from, to)` makes with keys `seq`: 10 captured first, then 390 more,
/// every third renamed and every tenth deleted, each statement one rows event (or a few)
/// of many rows; the warehouse ends as the source is, with 360 rows, 120 of them renamed.
async fn changed_many_to_a_statement(
    b: &Bureau,
    table: &str,
    insert: impl Fn(u32, u32) -> String,
) -> crate::support::harness::Running {
    b.db.exec(&insert(1, 10)).await;
    let run = b.env.start();
    b.env.wait_count(LIVE, 10, T).await;
    b.db.exec(&insert(11, 400)).await;
    b.db.exec(&format!(
        "UPDATE {table} SET NAME = CONCAT(NAME, '（更名）') WHERE SEQ % 3 = 0"
    ))
    .await;
    b.db.exec(&format!("DELETE FROM {table} WHERE SEQ % 10 = 1"))
        .await;
    b.env.wait_verified(T).await;
    let counts: (i64, i64) = b
        .env
        .pg()
        .await
        .query_one(
            "select count(*) filter (where deleted_at is null),
                    count(*) filter (where deleted_at is null and name like '%（更名）')
             from exchange.aic_establishment",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("counts");
    assert_eq!(counts, (360, 120));
    run
}

/// A column added to the captured table mid-stream changes nothing; a mapped column
/// dropped stops the source with an error naming the table and the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_mid_stream_is_harmless_and_a_mapped_column_dropped_stops_the_source_by_name()
 {
    let b = bureau().await;
    let run = started(&b, 20).await;
    b.db.exec("ALTER TABLE ENT ADD COLUMN NOTE VARCHAR(20) NULL FIRST")
        .await;
    b.db.exec("UPDATE ENT SET ENTNAME = '乌海市新名称有限公司', NOTE = 'x' WHERE ID = 3")
        .await;
    b.db.exec(&insert(21, 30)).await;
    b.env.wait_verified(T).await;
    b.db.exec("ALTER TABLE ENT DROP COLUMN ENTNAME").await;
    b.db.exec(
        &insert(31, 31)
            .replace(", ENTNAME", "")
            .replace(", CONCAT('乌海市第', seq, '号商贸有限公司')", ""),
    )
    .await;
    b.env
        .wait_count(
            "select count(*) from ebis.source_status where state = 'failed'",
            1,
            T,
        )
        .await;
    let failed = run.stop().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (source, error) = &failed[0];
    assert_eq!(source, "aic_binlog");
    assert!(
        error.contains("ENT") && error.contains("ENTNAME"),
        "the error names the table and the column: {error}"
    );
}

/// TRUNCATE is logged as a statement, without its rows: the source is snapshotted again
/// (said in its status), and the warehouse holds what the table holds afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_table_is_snapshotted_again() {
    let b = bureau().await;
    let run = started(&b, 30).await;
    b.db.exec("TRUNCATE TABLE ENT").await;
    b.db.exec(&insert(100, 104)).await;
    b.env
        .wait_count(
            "select count(*) from ebis.source_status where resnapshots = 1",
            1,
            T,
        )
        .await;
    b.env.wait_verified(T).await;
    b.env.wait_count(LIVE, 5, T).await;
    let reason: String = b
        .env
        .pg()
        .await
        .query_one(
            "select last_resnapshot_reason from ebis.source_status where source = 'aic_binlog'",
            &[],
        )
        .await
        .expect("status")
        .get(0);
    assert!(reason.contains("truncated"), "{reason}");
    assert!(run.stop().await.is_empty());
}

/// Every connection to the source cut for 4 s while the bureau writes (the binlog
/// reader's among them): the source retries, resumes from its stored position, and the
/// warehouse ends up equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_stream_resume_from_the_stored_position() {
    use crate::faults::{addr_of, reroute};
    use crate::support::harness::{AIC_BINLOG, Rng, aic_insert};
    use crate::support::proxy::Proxy;
    let _no_purge = crate::support::mysql::BINLOG_FILES.read().await;
    let proxy = Proxy::start(addr_of(&crate::support::mysql::base_url())).await;
    let to = proxy.addr;
    let env = Env::with_urls(&[&AIC_BINLOG], move |_, url| reroute(url, to), None).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(14);
    for id in 0..50 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count("select count(*) from exchange.aic_establishment", 50, T)
        .await;
    let writes = async {
        for id in 50..250 {
            aic.exec(&aic_insert(id, &mut rng)).await;
            aic.exec(&format!(
                "UPDATE E_BASEINFO SET ENTNAME = CONCAT(ENTNAME, '分公司') WHERE PRIPID = {}",
                id / 2
            ))
            .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.cut(Duration::from_secs(4))
    };
    let ((), cut) = tokio::join!(writes, cut);
    assert!(cut > 0, "the pipeline's source connections were cut");
    env.wait_verified(T).await;
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming");
    assert_eq!(status[0].resnapshots, 0, "resumed, not snapshotted again");
    assert!(run.stop().await.is_empty());
}

/// The server writes a transaction to its binlog, and sends it to log readers, before the
/// storage engine makes its rows visible. Semi-synchronous replication waiting
/// `AFTER_SYNC` (for a replica that never answers, here) holds a commit in exactly that
/// moment for its timeout: the insert is in the log, a read by key does not find it yet.
/// ebis must not take it for a delete (the row would be lost for good: nothing else is
/// logged for it); it reads the row once the commit is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_logged_before_its_commit_is_visible_is_not_taken_for_a_delete() {
    let b = bureau().await;
    let run = started(&b, 10).await;
    let mut admin = b.db.conn().await;
    let saved: (String, u64) = admin
        .query_first(
            "SELECT @@GLOBAL.rpl_semi_sync_master_wait_point, @@GLOBAL.rpl_semi_sync_master_timeout",
        )
        .await
        .expect("semi-sync settings")
        .expect("a row");
    /// Puts the server's semi-sync settings back, even when the test fails.
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let sql = std::mem::take(&mut self.0);
            crate::support::cleanup(move || async move {
                let pool = crate::support::mysql::pool(&crate::support::mysql::admin());
                match pool.get_conn().await {
                    Ok(mut c) => {
                        if let Err(e) = c.query_drop(sql).await {
                            eprintln!("restoring the semi-sync settings: {e}");
                        }
                    }
                    Err(e) => eprintln!("restoring the semi-sync settings: {e}"),
                }
                let _ = pool.disconnect().await;
            });
        }
    }
    let _restore = Restore(format!(
        "SET GLOBAL rpl_semi_sync_master_enabled = OFF; \
         SET GLOBAL rpl_semi_sync_master_wait_point = '{}'; \
         SET GLOBAL rpl_semi_sync_master_timeout = {}",
        saved.0, saved.1
    ));
    admin
        .query_drop(
            "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'; \
             SET GLOBAL rpl_semi_sync_master_timeout = 3000",
        )
        .await
        .expect("semi-sync settings");
    // The first commit after semi-sync is switched on waits out the timeout; another
    // test's commit on this server may be the one, so the insert is tried again until
    // it was held itself.
    let mut held = None;
    for id in 100..105 {
        admin
            .query_drop("SET GLOBAL rpl_semi_sync_master_enabled = ON")
            .await
            .expect("semi-sync on");
        let started = std::time::Instant::now();
        b.db.exec(&insert(id, id)).await;
        let took = started.elapsed();
        admin
            .query_drop("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
            .await
            .expect("semi-sync off");
        if took >= Duration::from_millis(2500) {
            held = Some(id);
            break;
        }
    }
    let held = held.expect("one insert was held between its binlog write and its commit");
    b.env.wait_verified(T).await;
    let pg = b.env.pg().await;
    let live: i64 = pg
        .query_one(
            "select count(*) from exchange.aic_establishment where source_key = $1 and deleted_at is null",
            &[&held.to_string()],
        )
        .await
        .expect("the held row")
        .get(0);
    assert_eq!(live, 1, "the row whose commit was held is in the warehouse");
    assert!(run.stop().await.is_empty());
}

/// An XA transaction's rows are logged at `XA PREPARE` and become visible only at its
/// `XA COMMIT`, a later group of the log without rows. One stays prepared across polls
/// and commits: its insert arrives (it was read as a delete and lost before). Another is
/// prepared while ebis runs, ebis stops, and it commits before ebis starts again: the
/// stored position stayed at its start, so it arrives too. One rolled back leaves
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xa_transaction_committed_after_its_prepare_was_read_arrives() {
    let b = bureau().await;
    let run = started(&b, 10).await;
    let xid = |n: &str| format!("{}_{n}", b.db.name);
    let _leftovers = RollBackXa(vec![xid("a"), xid("r"), xid("b")]);
    // A prepared XA transaction belongs to its session while that lives: each is
    // prepared and ended on a connection of its own, outside the pool.
    let session = || async {
        mysql_async::Conn::new(crate::support::mysql::pool_opts(&b.db.conn))
            .await
            .expect("connect")
    };
    let prepare = |xid: &str, id: u32| {
        format!(
            "XA START '{xid}'; {}; XA END '{xid}'; XA PREPARE '{xid}'",
            insert(id, id)
        )
    };
    let mut a = session().await;
    a.query_drop(prepare(&xid("a"), 100))
        .await
        .expect("prepare a");
    let mut r = session().await;
    r.query_drop(prepare(&xid("r"), 300))
        .await
        .expect("prepare r");
    // Later transactions go on meanwhile, and ebis reads past the prepared ones.
    b.db.exec(&insert(11, 20)).await;
    b.env.wait_count(LIVE, 20, T).await;
    a.query_drop(format!("XA COMMIT '{}'", xid("a")))
        .await
        .expect("commit a");
    r.query_drop(format!("XA ROLLBACK '{}'", xid("r")))
        .await
        .expect("roll back r");
    b.env.wait_count(LIVE, 21, T).await;
    b.env.wait_verified(T).await;
    let mut c = session().await;
    c.query_drop(prepare(&xid("b"), 200))
        .await
        .expect("prepare b");
    b.db.exec(&insert(21, 25)).await;
    b.env.wait_count(LIVE, 26, T).await;
    assert!(run.stop().await.is_empty());
    c.query_drop(format!("XA COMMIT '{}'", xid("b")))
        .await
        .expect("commit b");
    let run = b.env.start();
    b.env.wait_count(LIVE, 27, T).await;
    b.env.wait_verified(T).await;
    let pg = b.env.pg().await;
    let live: Vec<String> = crate::support::pg::texts(
        &pg,
        "select source_key from exchange.aic_establishment where source_key in ('100', '200', '300') and deleted_at is null order by 1",
    )
    .await;
    assert_eq!(live, ["100", "200"]);
    assert!(run.stop().await.is_empty());
    for s in [a, r, c] {
        let _ = s.disconnect().await;
    }
}

/// An XA transaction prepared before a first snapshot starts, and committed after the
/// snapshot would have read its table: its rows are logged before the snapshot's start
/// position, where the stream begins, and were in neither (lost). The snapshot now waits
/// for it to end before reading, so its insert arrives with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xa_transaction_prepared_before_the_first_snapshot_and_committed_after_arrives() {
    let b = bureau().await;
    b.db.exec(&insert(1, 10)).await;
    let xid = format!("{}_s", b.db.name);
    let _leftovers = RollBackXa(vec![xid.clone()]);
    let mut session = mysql_async::Conn::new(crate::support::mysql::pool_opts(&b.db.conn))
        .await
        .expect("connect");
    session
        .query_drop(format!(
            "XA START '{xid}'; {}; XA END '{xid}'; XA PREPARE '{xid}'",
            insert(100, 100)
        ))
        .await
        .expect("prepare");
    let run = b.env.start();
    // Time for the snapshot to read the table, had it not waited.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg = b.env.pg().await;
    let read: i64 = pg.query_one(LIVE, &[]).await.expect("count").get(0);
    assert_eq!(
        read, 0,
        "the snapshot reads nothing while a transaction prepared before its start is open"
    );
    session
        .query_drop(format!("XA COMMIT '{xid}'"))
        .await
        .expect("commit");
    b.env.wait_count(LIVE, 11, T).await;
    b.env.wait_verified(T).await;
    let live: Vec<String> = crate::support::pg::texts(
        &pg,
        "select source_key from exchange.aic_establishment where source_key = '100' and deleted_at is null",
    )
    .await;
    assert_eq!(live, ["100"]);
    assert!(run.stop().await.is_empty());
    let _ = session.disconnect().await;
}

/// Rolls back the named XA transactions a failed test left prepared (they outlive their
/// session and would hold the test database's tables, so it could not be dropped).
struct RollBackXa(Vec<String>);

impl Drop for RollBackXa {
    fn drop(&mut self) {
        let xids = std::mem::take(&mut self.0);
        crate::support::cleanup(move || async move {
            let pool = crate::support::mysql::pool(&crate::support::mysql::admin());
            let Ok(mut c) = pool.get_conn().await else {
                return;
            };
            // A session that just dropped may take a moment to let go of its own.
            for _ in 0..50 {
                let prepared: Vec<String> = c
                    .query::<mysql_async::Row, _>("XA RECOVER")
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|row| row.get::<Vec<u8>, _>(3))
                    .map(|d| String::from_utf8_lossy(&d).into_owned())
                    .collect();
                let ours: Vec<&String> = xids.iter().filter(|x| prepared.contains(x)).collect();
                if ours.is_empty() {
                    break;
                }
                for x in ours {
                    let _ = c.query_drop(format!("XA ROLLBACK '{x}'")).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            drop(c);
            let _ = pool.disconnect().await;
        });
    }
}

/// An account that may only SELECT: `check --online` says which grants binlog capture
/// lacks, and the account with them passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_names_the_grants_binlog_capture_lacks() {
    let b = bureau().await;
    let config = std::fs::read_to_string(b.env.config_path()).expect("config");
    let (_reader, reader) = b.db.reader().await;
    std::fs::write(b.env.config_path(), config.replace(&b.db.url, &reader.url)).expect("config");
    let out = crate::check::check_online(&b.env.config_path());
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("source aic_binlog: error: ")
            && out.stdout.contains("lacks REPLICATION SLAVE")
            && out.stdout.contains("lacks REPLICATION CLIENT"),
        "{}",
        out.stdout
    );
    let user = reader
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .expect("user");
    b.db.exec(&format!(
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'127.0.0.1'"
    ))
    .await;
    let out = crate::check::check_online(&b.env.config_path());
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("binlog capture installed") && out.stdout.contains("head: binlog "),
        "{}",
        out.stdout
    );
    // MariaDB says which binlog position a snapshot sees, so capture can wait for a
    // logged transaction to become visible: no warning.
    assert!(
        !out.stdout.contains("binlog_snapshot_position"),
        "{}",
        out.stdout
    );
}

/// Every GBK byte pair the image reading decodes itself ([`ebis_mysql::gb_text`])
/// becomes the text the server's own conversion gives a read: pairs where the two
/// could differ are left to a read by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gbk_text_taken_from_the_log_is_what_the_server_converts_it_to() {
    let db = MyDb::create(&["CREATE TABLE P (B VARBINARY(2) NOT NULL)".to_owned()]).await;
    db.exec(
        "INSERT INTO P SELECT UNHEX(CONCAT(HEX(l.seq), HEX(t.seq))) FROM seq_129_to_254 l, seq_64_to_254 t WHERE t.seq <> 127",
    )
    .await;
    let mut conn = db.conn().await;
    let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
        .query("SELECT B, CAST(CONVERT(CAST(B AS CHAR CHARACTER SET gbk) USING utf8mb4) AS BINARY) FROM P")
        .await
        .expect("pairs");
    assert_eq!(rows.len(), 126 * 190);
    for (pair, server) in &rows {
        // GB2312's hanzi (all but five unassigned places) and full-width forms are
        // what enterprise names are written in: all of them are taken from the log.
        let hanzi = (0xB0..=0xF7).contains(&pair[0])
            && pair[1] >= 0xA1
            && pair[1] <= 0xFE
            && !(pair[0] == 0xD7 && pair[1] >= 0xFA);
        let full_width = pair[0] == 0xA3 && pair[1] >= 0xA1 && pair[1] <= 0xFE;
        // GBK's hanzi beyond GB2312 (镕 in 王镕 is E9 46).
        let gbk_hanzi = ((0x81..=0xA0).contains(&pair[0])
            || ((0xAA..=0xFD).contains(&pair[0]) && pair[1] <= 0xA0))
            && pair[1] != 0x7F;
        let text = ebis_mysql::gb_text(pair);
        assert!(
            text.is_some() || !(hanzi || full_width || gbk_hanzi),
            "pair {pair:02X?} is read by key"
        );
        if let Some(text) = text {
            assert_eq!(
                text.as_bytes(),
                server.as_slice(),
                "pair {pair:02X?}: decoded {text:?}, the server gives {:?}",
                String::from_utf8_lossy(server)
            );
        }
    }
}

/// Rows of a table whose columns all read the same from the log come from its row
/// images: each change carries the row as its transaction wrote it (a read by key
/// would give its newer state), equal to what a read by key gives for it; a table with
/// a column the log holds otherwise (TIMESTAMP, ENUM, …) is read by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_taken_from_the_logs_images_as_a_read_by_key_gives_them() {
    const SAFE: &str = "CREATE TABLE ENT (
        ID BIGINT UNSIGNED NOT NULL PRIMARY KEY, C_TINY TINYINT NULL, C_SMALL SMALLINT UNSIGNED NULL,
        C_MEDIUM MEDIUMINT NULL, C_INT INT NULL, C_DEC DECIMAL(18,4) NULL, C_ZERO DECIMAL(10,2) NULL,
        C_FLOAT FLOAT NULL, C_DOUBLE DOUBLE NULL, ESTDATE DATE NULL, C_DATETIME DATETIME(6) NULL,
        C_DT0 DATETIME NULL, C_CHAR CHAR(6) CHARACTER SET gbk NULL, ENTNAME VARCHAR(200) CHARACTER SET gbk NULL,
        C_UTF VARCHAR(100) NULL, C_LATIN VARCHAR(40) CHARACTER SET latin1 NULL, C_TEXT TEXT NULL,
        C_VARBIN VARBINARY(20) NULL, C_BLOB BLOB NULL, REGNO VARCHAR(30) NULL
    ) DEFAULT CHARSET=utf8mb4";
    let b = bureau_with(SAFE, MAPPING, "mode: binlog").await;
    let mut source = checked_source(&b).await;
    let head = source.head().await.expect("head");
    b.db.exec(
        "INSERT INTO ENT SELECT 18446744073709551000 + seq, IF(seq % 2, NULL, -5), 65000, -8000000, seq,
            IF(seq % 3, -1234567890.0501, 0), 0, 1.5, 2.25e100, '2006-03-01', '2026-12-03 10:11:12.654321',
            '2026-12-03 10:11:12', IF(seq % 2, '乌海  ', 'ab'), CONCAT('乌海市第', seq, '号（有限公司）'),
            '𠀀 emoji 🙂', IF(seq % 2, 'Café', 'plain'), REPEAT('文本', 300), UNHEX('00FF00'),
            IF(seq % 2, NULL, REPEAT(UNHEX('FE'), 300)), LPAD(seq, 15, '0')
         FROM seq_1_to_40",
    )
    .await;
    // Later changes, not in the first batch: a rename and a delete.
    b.db.exec("UPDATE ENT SET ENTNAME = '后来的名称' WHERE ID = 18446744073709551001")
        .await;
    b.db.exec("DELETE FROM ENT WHERE ID = 18446744073709551002")
        .await;
    let first = source.changes(&head, 40).await.expect("changes");
    assert_eq!(first.changes.len(), 40);
    let name_of = |c: &ebis_source::Change| c.row.get("ENTNAME").cloned();
    let one = first
        .changes
        .iter()
        .find(|c| c.key == [ebis_source::Value::UInt(18_446_744_073_709_551_001)])
        .expect("row 1");
    assert_eq!(
        name_of(one),
        Some(ebis_source::Value::Text(
            "乌海市第1号（有限公司）".to_owned()
        )),
        "the row as the insert wrote it"
    );
    let two = first
        .changes
        .iter()
        .find(|c| c.key == [ebis_source::Value::UInt(18_446_744_073_709_551_002)])
        .expect("row 2");
    assert_eq!(
        two.op,
        ebis_source::Op::Upsert,
        "inserted then; deleted later"
    );
    // Every other row is unchanged since: the image gives what a read gives.
    let changed_since = [one.key[0].clone(), two.key[0].clone()];
    assert_rows_read_alike(&mut source, "ENT", &first.changes, &changed_since).await;
    let next = source.changes(&first.position, 40).await.expect("changes");
    let ops: Vec<(ebis_source::Op, Option<ebis_source::Value>)> =
        next.changes.iter().map(|c| (c.op, name_of(c))).collect();
    assert_eq!(
        ops,
        [
            (
                ebis_source::Op::Upsert,
                Some(ebis_source::Value::Text("后来的名称".to_owned()))
            ),
            (ebis_source::Op::Delete, None),
        ]
    );
    source.close().await;
    drop(b);

    // A TIMESTAMP column: rows are read by key, so a change gives the row as it is now
    // (keyed by a negative MEDIUMINT, which the log holds without its sign).
    let stamped = SAFE
        .replace(
            "REGNO VARCHAR(30) NULL",
            "REGNO VARCHAR(30) NULL, C_STAMP TIMESTAMP NULL",
        )
        .replace("ID BIGINT UNSIGNED NOT NULL", "ID MEDIUMINT NOT NULL");
    let b = bureau_with(&stamped, MAPPING, "mode: binlog").await;
    let mut source = checked_source(&b).await;
    let head = source.head().await.expect("head");
    b.db.exec("INSERT INTO ENT (ID, ENTNAME, C_STAMP) VALUES (-5, '当初', '2026-12-03 10:11:12')")
        .await;
    b.db.exec("UPDATE ENT SET ENTNAME = '如今' WHERE ID = -5")
        .await;
    let first = source.changes(&head, 1).await.expect("changes");
    let got: Vec<_> = first
        .changes
        .iter()
        .map(|c| (c.key.clone(), name_of(c)))
        .collect();
    assert_eq!(
        got,
        [(
            vec![ebis_source::Value::Int(-5)],
            Some(ebis_source::Value::Text("如今".to_owned()))
        )]
    );
    // The poll left its stream open (the batch was full): closing the source ends it.
    tokio::time::timeout(T, source.close())
        .await
        .expect("the source closes with a binlog stream open");
}

/// A column's character set changed mid-stream while a poll kept its stream open: the
/// rows after the change are read with the column as it is now (its GBK reading, kept
/// from before, would take UTF-8 bytes for GBK pairs and garble the names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_after_a_column_changed_its_character_set_read_as_it_is_now() {
    let gbk = ENT.replace(
        "ENTNAME VARCHAR(200) NULL",
        "ENTNAME VARCHAR(200) CHARACTER SET gbk NULL",
    );
    let b = bureau_with(&gbk, MAPPING, "mode: binlog").await;
    let mut source = checked_source(&b).await;
    let head = source.head().await.expect("head");
    b.db.exec(&insert(1, 3)).await;
    b.db.exec("ALTER TABLE ENT MODIFY ENTNAME VARCHAR(200) CHARACTER SET utf8mb4 NULL")
        .await;
    b.db.exec(&insert(4, 6)).await;
    // UTF-8 bytes that also read as three GBK pairs: E4 B9, 8C E6, B5 B7.
    b.db.exec(&insert(7, 9).replace("CONCAT('乌海市第', seq, '号商贸有限公司')", "'乌海'"))
        .await;
    let mut at = head;
    let mut names = Vec::new();
    for _ in 0..6 {
        let read = source.changes(&at, 3).await.expect("changes");
        at = read.position;
        names.extend(
            read.changes
                .into_iter()
                .map(|c| (c.key[0].clone(), c.row.get("ENTNAME").cloned())),
        );
    }
    names.sort_by_key(|(k, _)| k.to_text());
    names.dedup();
    let want: Vec<_> = (1..=9)
        .map(|i| {
            let name = if i < 7 {
                format!("乌海市第{i}号商贸有限公司")
            } else {
                "乌海".to_owned()
            };
            (
                ebis_source::Value::Int(i),
                Some(ebis_source::Value::Text(name)),
            )
        })
        .collect();
    assert_eq!(names, want);
    tokio::time::timeout(T, source.close())
        .await
        .expect("the source closes");
}
