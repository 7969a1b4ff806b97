//! PostgreSQL sources beyond the contract kit, in logical mode: a transaction larger than
//! a batch (read in parts, and resumed from inside it by a new reader), the table's
//! definition changed mid-stream, a TRUNCATE, what `check --online` says of an account
//! that may not read a slot, and what `setup-source` prints for the DBA.

use crate::support::TempDir;
use crate::support::harness::{Env, Running, SourceDef};
use crate::support::parts::{assert_rows_read_alike, read_in_parts};
use crate::support::pg::{self, SourcePg, connect};
use ebis::config::ConnectionConfig;
use ebis::pipeline::AnySource;
use ebis_source::{Position, Source};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

const ENT: &str = "CREATE TABLE ENT (
    ID      integer      NOT NULL PRIMARY KEY,
    REGNO   varchar(30)  NULL,
    ENTNAME varchar(200) NULL,
    ESTDATE date         NULL
)";

const MAPPING: &str = "record_kind: aic_establishment
source:
  table: ENT
  key: [ID]
fields:
  reg_no: {column: REGNO}
  name: {column: ENTNAME}
  established_on: {column: ESTDATE}
";

/// [`MAPPING`] with the name read through an expression (which only the server
/// evaluates): the table's rows are read by key, never taken from the log's tuples.
const MAPPING_BY_KEY: &str = "record_kind: aic_establishment
source:
  table: ENT
  key: [ID]
fields:
  reg_no: {column: REGNO}
  name: {expression: ENTNAME}
  established_on: {column: ESTDATE}
";

const LIVE: &str = "select count(*) from exchange.aic_establishment where deleted_at is null";

/// A bureau database with `ENT`, captured by logical decoding.
struct Bureau {
    db: SourcePg,
    env: Env,
    _mappings: TempDir,
}

async fn bureau() -> Bureau {
    bureau_reached(|c| c).await
}

/// A bureau whose connection ebis reaches as `reach` says (through a proxy, say).
async fn bureau_reached(reach: impl FnOnce(ConnectionConfig) -> ConnectionConfig) -> Bureau {
    bureau_captured(reach, None, ENT).await
}

/// A bureau captured in logical mode, or with the `capture` block given, its `ENT` made
/// by `create`.
async fn bureau_captured(
    reach: impl FnOnce(ConnectionConfig) -> ConnectionConfig,
    capture: Option<&str>,
    create: &str,
) -> Bureau {
    let db = SourcePg::create(&[create.to_owned()]).await;
    // Slots are named server-wide: one per test database.
    let capture = capture
        .map(str::to_owned)
        .unwrap_or_else(|| format!("mode: logical\nslot: {}", db.name));
    let (env, mappings) = env_reading(reach(db.conn.clone()), capture, MAPPING).await;
    Bureau {
        db,
        env,
        _mappings: mappings,
    }
}

/// A pipeline whose source `aic_pg` is read through `connection` as `capture` says, with
/// `ENT` mapped by `mapping` (the mappings' folder lives as long as the returned one).
async fn env_reading(
    connection: ConnectionConfig,
    capture: String,
    mapping: &str,
) -> (Env, TempDir) {
    let mappings = TempDir::new("ebis_pg_mappings");
    std::fs::write(mappings.path().join("aic_establishment.yaml"), mapping).expect("mapping");
    let env = Env::custom_in(
        "postgres",
        vec![SourceDef {
            name: "aic_pg".to_owned(),
            bureau: "aic".to_owned(),
            division: "150302".to_owned(),
            capture,
            connection,
            mappings: mappings.path().to_owned(),
        }],
    )
    .await;
    (env, mappings)
}

fn insert(from: u32, to: u32) -> String {
    format!(
        "INSERT INTO ENT (ID, REGNO, ENTNAME, ESTDATE) SELECT s, lpad((150302000000000 + s)::text, 15, '0'), '乌海市第' || s || '号商贸有限公司', '2006-03-01' FROM generate_series({from}, {to}) AS s"
    )
}

async fn started(b: &Bureau, rows: u32) -> Running {
    b.db.exec(&insert(1, rows)).await;
    let run = b.env.start();
    b.env.wait_count(LIVE, i64::from(rows), T).await;
    run
}

/// The bureau's source opened on [`plans`] and checked, its configuration, and a head.
async fn checked_source(b: &Bureau) -> (ebis::config::SourceConfig, AnySource, Position) {
    let cfg = b.env.config().sources[0].clone();
    let mut source = AnySource::open(&cfg, plans()).expect("open");
    source
        .check()
        .await
        .expect("logical capture can read this server");
    let head = source.head().await.expect("head");
    (cfg, source, head)
}

/// [`plans`] with an expression, which only the server evaluates: rows are read by key.
fn plans_read_by_key() -> Vec<ebis_source::TablePlan> {
    let mut plans = plans();
    plans[0].expressions.push(ebis_source::Expression {
        alias: "ebis_x0".to_owned(),
        sql: "ENTNAME || ''".to_owned(),
        origin: "test".to_owned(),
    });
    plans
}

fn plans() -> Vec<ebis_source::TablePlan> {
    vec![ebis_source::TablePlan {
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
    }]
}

/// One transaction of 6,000 inserts, 500 renames and 50 deletes against batches of 500:
/// the connector returns it in parts, each position at the transaction's start with the
/// row changes already read; a new reader resumes from inside it; and the warehouse ends
/// up equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_a_batch_is_read_in_parts_and_lands_whole() {
    let b = bureau().await;
    b.db.exec(&insert(1, 10)).await;
    let (cfg, source, head) = checked_source(&b).await;
    b.db.exec(&format!(
        "BEGIN;
         {};
         UPDATE ENT SET ENTNAME = ENTNAME || '（更名）' WHERE ID BETWEEN 1001 AND 1500;
         DELETE FROM ENT WHERE ID BETWEEN 6951 AND 7000;
         COMMIT",
        insert(1001, 7000)
    ))
    .await;

    let mut reopened = false;
    let parts = read_in_parts(
        source,
        head.clone(),
        500,
        |p| match p {
            Position::Logical { lsn, skip } if *skip > 0 => Some((*lsn, *skip)),
            _ => None,
        },
        |part| {
            // A restart inside the transaction: a new reader, from the position reached.
            (part == 4 && !std::mem::replace(&mut reopened, true))
                .then(|| AnySource::open(&cfg, plans()).expect("open again"))
        },
    )
    .await;
    parts.assert_the_transaction_landed_whole();
    assert!(reopened);
    assert!(
        matches!(parts.end, Position::Logical { skip: 0, .. }),
        "the last part ends at the commit: {:?}",
        parts.end
    );

    // And through the pipeline, batch after batch of 500.
    let run = b.env.start();
    b.env.wait_verified(T).await;
    let renamed: i64 = b
        .env.one("select count(*) from exchange.aic_establishment where name like '%（更名）' and deleted_at is null").await;
    assert_eq!(renamed, 500);
    // The slot's retained WAL is shown beside the lag, and exported.
    let status = b.env.wh.status().await.expect("status");
    assert!(
        status[0].backlog_bytes.is_some_and(|b| b >= 0),
        "{:?}",
        status[0].backlog_bytes
    );
    assert!(
        ebis::status::render(&status, ebis::zone::Zone::Local)
            .contains("the replication slot keeps"),
        "{}",
        ebis::status::render(&status, ebis::zone::Zone::Local)
    );
    let page = ebis::metrics::render(&b.env.wh).await.expect("metrics");
    assert!(
        page.contains("ebis_source_backlog_bytes{source=\"aic_pg\"}"),
        "{page}"
    );
    assert!(run.stop().await.is_empty());
    // The slot was confirmed as the warehouse stored batches, never past what it stored.
    let confirmed: String = connect(&b.db.conn)
        .await
        .query_one(
            "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = current_database()",
            &[],
        )
        .await
        .expect("slot")
        .get(0);
    let confirmed = Position::parse_lsn(&confirmed).expect("an lsn");
    let stored: serde_json::Value = b
        .env
        .one("select position from ebis.checkpoint where source = 'aic_pg'")
        .await;
    let stored = stored["lsn"].as_u64().expect("a logical position");
    let Position::Logical { lsn: head_lsn, .. } = head else {
        panic!("a logical head: {head:?}");
    };
    assert!(
        confirmed > head_lsn && confirmed <= stored,
        "confirmed {confirmed} after the head {head_lsn}, never past the stored {stored}"
    );
}

/// A column added to the captured table mid-stream changes nothing; a mapped column
/// dropped stops the source with an error naming the table and the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_mid_stream_is_harmless_and_a_mapped_column_dropped_stops_the_source_by_name()
 {
    let b = bureau().await;
    let run = started(&b, 20).await;
    b.db.exec("ALTER TABLE ENT ADD COLUMN NOTE varchar(20) NULL")
        .await;
    b.db.exec("UPDATE ENT SET ENTNAME = '乌海市新名称有限公司', NOTE = 'x' WHERE ID = 3")
        .await;
    b.db.exec(&insert(21, 30)).await;
    b.env.wait_verified(T).await;
    b.db.exec("ALTER TABLE ENT DROP COLUMN NOTE").await;
    b.db.exec("UPDATE ENT SET ENTNAME = '乌海市又一新名称有限公司' WHERE ID = 4")
        .await;
    b.env.wait_verified(T).await;
    b.db.exec("ALTER TABLE ENT DROP COLUMN ENTNAME").await;
    b.db.exec("INSERT INTO ENT (ID, REGNO) VALUES (31, '150302000000031')")
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
    assert_eq!(source, "aic_pg");
    assert!(
        error.contains("ENT") && error.to_uppercase().contains("ENTNAME"),
        "the error names the table and the column: {error}"
    );
}

/// A TRUNCATE holds no rows in the log: the source is snapshotted again (said in its
/// status), and the warehouse holds what the table holds afterwards.
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
        .one("select last_resnapshot_reason from ebis.source_status where source = 'aic_pg'")
        .await;
    assert!(reason.contains("truncated"), "{reason}");
    // Read again after the new snapshot, the TRUNCATE (before its head) is no news.
    b.db.exec(&insert(105, 105)).await;
    b.env.wait_count(LIVE, 6, T).await;
    let resnapshots: i32 = b
        .env
        .one("select resnapshots from ebis.source_status where source = 'aic_pg'")
        .await;
    assert_eq!(resnapshots, 1, "snapshotted again once, not over and over");
    assert!(run.stop().await.is_empty());
}

/// A role made for one test, dropped (with its grants in the bureau's database) when the
/// test ends.
struct DropRole {
    role: String,
    database: String,
}

impl Drop for DropRole {
    fn drop(&mut self) {
        let (role, database) = (self.role.clone(), self.database.clone());
        crate::support::cleanup(move || async move {
            let admin = pg::admin();
            let c = connect(&admin.with_database(&database)).await;
            let _ = c.batch_execute(&format!("DROP OWNED BY {role}")).await;
            drop(c);
            let c = connect(&admin).await;
            let _ = c
                .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                .await;
        });
    }
}

/// An account that may only SELECT: `check --online` says it may not use replication
/// slots, and with REPLICATION it passes and shows the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_names_what_logical_capture_lacks() {
    let b = bureau().await;
    let role = format!("{}_ro", b.db.name);
    let _role = DropRole {
        role: role.clone(),
        database: b.db.name.clone(),
    };
    let password = std::env::var(pg::PASSWORD_ENV)
        .map(|pw| format!(" PASSWORD '{pw}'"))
        .unwrap_or_default();
    b.db.exec(&format!(
        "CREATE ROLE {role} LOGIN{password}; GRANT SELECT ON ENT TO {role}"
    ))
    .await;
    let config = std::fs::read_to_string(b.env.config_path()).expect("config");
    let (_, rest) = b.db.conn.url.split_once("://").expect("url");
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let reader = format!("postgres://{role}@{host}");
    std::fs::write(b.env.config_path(), config.replace(&b.db.conn.url, &reader)).expect("config");
    let out = crate::check::check_online(&b.env.config_path());
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("source aic_pg: error: ")
            && out.stdout.contains("may not use replication slots")
            && out.stdout.contains("ALTER ROLE <reader> REPLICATION"),
        "{}",
        out.stdout
    );
    b.db.exec(&format!("ALTER ROLE {role} REPLICATION")).await;
    let out = crate::check::check_online(&b.env.config_path());
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("head: lsn "), "{}", out.stdout);
    // A check reads only: a slot dropped by mistake is reported, not made again.
    b.db.exec(&format!("SELECT pg_drop_replication_slot('{}')", b.db.name))
        .await;
    let out = crate::check::check_online(&b.env.config_path());
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "replication slot {} does not exist: `ebis run` makes it anew",
            b.db.name
        )),
        "{}",
        out.stdout
    );
    let slots: i64 = connect(&b.db.conn)
        .await
        .query_one(
            "select count(*) from pg_replication_slots where database = current_database()",
            &[],
        )
        .await
        .expect("slots")
        .get(0);
    assert_eq!(slots, 0, "check made no slot");
}

/// `setup-source` prints, for a DBA to review, the settings, the publication and slot,
/// the grants, the cost and the removal; `--remove --apply` takes the slot and the
/// publication away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_source_prints_the_logical_setup_and_removes_it() {
    let b = bureau().await;
    let out = crate::support::ebis(b.env.config_path().parent().expect("dir"))
        .args(["--config"])
        .arg(b.env.config_path())
        .args(["setup-source", "aic_pg"])
        .output()
        .expect("run ebis");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needed in [
        "wal_level = logical",
        "CREATE PUBLICATION \"ebis_aic_pg\" FOR TABLE \"ent\"",
        "pg_create_logical_replication_slot",
        "REPLICATION",
        "max_slot_wal_keep_size",
        "pg_drop_replication_slot",
    ] {
        assert!(text.contains(needed), "{needed}: {text}");
    }
    let slots = |c: tokio_postgres::Client| async move {
        c.query_one(
            "select count(*) from pg_replication_slots where database = current_database()",
            &[],
        )
        .await
        .expect("slots")
        .get::<_, i64>(0)
    };
    assert_eq!(
        slots(connect(&b.db.conn).await).await,
        1,
        "installed by the harness"
    );
    let out = crate::support::ebis(b.env.config_path().parent().expect("dir"))
        .args(["--config"])
        .arg(b.env.config_path())
        .args(["setup-source", "aic_pg", "--remove", "--apply"])
        .output()
        .expect("run ebis");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        slots(connect(&b.db.conn).await).await,
        0,
        "the slot is gone"
    );
}

/// Every connection to the source cut for 4 s while the bureau writes (the slot's stream
/// among them): the source retries, the slot is taken up again from the stored position
/// once the server has let go of it, and the warehouse ends up equal to the source with
/// no re-snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_stream_resume_from_the_stored_position() {
    use crate::faults::{addr_of, reroute};
    use crate::support::proxy::Proxy;
    let proxy = Proxy::start(addr_of(&pg::base_url())).await;
    let to = proxy.addr;
    let b = bureau_reached(|mut c| {
        c.url = reroute(&c.url, to);
        c
    })
    .await;
    let run = started(&b, 50).await;
    let writes = async {
        for id in 0..200u32 {
            b.db.exec(&insert(100 + id, 100 + id)).await;
            b.db.exec(&format!(
                "UPDATE ENT SET ENTNAME = ENTNAME || '分公司' WHERE ID = {}",
                1 + id % 50
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
    b.env.wait_verified(T).await;
    let status = b.env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming");
    assert_eq!(status[0].resnapshots, 0, "resumed, not snapshotted again");
    assert!(run.stop().await.is_empty());
}

/// A partitioned table (rows by year in their partitions, as tax records often are):
/// `setup-source` publishes its changes under its own name, so inserts, updates that
/// move a row to another partition, and deletes all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_is_captured_through_its_root() {
    let db = SourcePg::create(&["CREATE TABLE PENT (
            ID      integer      NOT NULL,
            NJND    integer      NOT NULL,
            REGNO   varchar(30)  NULL,
            ENTNAME varchar(200) NULL,
            PRIMARY KEY (ID, NJND)
        ) PARTITION BY RANGE (NJND);
        CREATE TABLE PENT_2005 PARTITION OF PENT FOR VALUES FROM (2005) TO (2006);
        CREATE TABLE PENT_2006 PARTITION OF PENT FOR VALUES FROM (2006) TO (2007)"
        .to_owned()])
    .await;
    let mappings = TempDir::new("ebis_pg_mappings");
    std::fs::write(
        mappings.path().join("aic_establishment.yaml"),
        "record_kind: aic_establishment
source:
  table: PENT
  key: [ID, NJND]
fields:
  reg_no: {column: REGNO}
  name: {column: ENTNAME}
",
    )
    .expect("mapping");
    let env = Env::custom_in(
        "postgres",
        vec![SourceDef {
            name: "aic_pg".to_owned(),
            bureau: "aic".to_owned(),
            division: "150302".to_owned(),
            capture: format!("mode: logical\nslot: {}", db.name),
            connection: db.conn.clone(),
            mappings: mappings.path().to_owned(),
        }],
    )
    .await;
    let row = |id: u32, year: u32| {
        format!(
            "INSERT INTO PENT VALUES ({id}, {year}, '{:015}', '乌海市第{id}号商贸有限公司')",
            150_302_000_000_000u64 + u64::from(id)
        )
    };
    db.exec(&row(1, 2005)).await;
    let run = env.start();
    env.wait_count(LIVE, 1, T).await;
    db.exec(&row(2, 2005)).await;
    db.exec(&row(3, 2006)).await;
    db.exec("UPDATE PENT SET NJND = 2006 WHERE ID = 2").await;
    db.exec("UPDATE PENT SET ENTNAME = '乌海市更名商贸有限公司' WHERE ID = 3")
        .await;
    db.exec("DELETE FROM PENT WHERE ID = 1").await;
    env.wait_verified(T).await;
    env.wait_count(LIVE, 2, T).await;
    let renamed: i64 = env.one("select count(*) from exchange.aic_establishment where name = '乌海市更名商贸有限公司' and deleted_at is null").await;
    assert_eq!(renamed, 1);
    assert!(run.stop().await.is_empty());
}

/// Changelog mode: a transaction that took a sequence number and rolled back leaves a
/// gap, which holds lag back while the transaction is open and settles as rolled back
/// within seconds of the rollback (the server's sessions say no transaction can still
/// fill it), not after the 10-minute gap timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changelog_a_rollback_holds_lag_back_for_seconds_not_for_the_gap_timeout() {
    let b = bureau_captured(|c| c, Some("mode: changelog\ngap_timeout: 10m"), ENT).await;
    let run = started(&b, 1).await;
    let doomed = connect(&b.db.conn).await;
    doomed.batch_execute("BEGIN").await.expect("begin");
    doomed.batch_execute(&insert(2, 2)).await.expect("insert");
    let held: i64 = doomed
        .query_one("SELECT max(seq) FROM ebis_capture.change", &[])
        .await
        .expect("seq")
        .get(0);
    b.db.exec(&insert(3, 3)).await;
    b.env.wait_count(LIVE, 2, T).await;
    b.env
        .wait_count(
            "select open_gaps::bigint from ebis.source_status",
            1,
            Duration::from_secs(10),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    doomed.batch_execute("ROLLBACK").await.expect("rollback");
    b.env
        .wait_count(
            "select open_gaps::bigint from ebis.source_status",
            0,
            Duration::from_secs(30),
        )
        .await;
    let fates: Vec<String> = b
        .env
        .pg()
        .await
        .query(
            "select fate from ebis.gap_log where from_seq <= $1 and to_seq >= $1 order by id",
            &[&held],
        )
        .await
        .expect("gap log")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(fates, ["detected", "rolled_back"]);
    b.env.wait_verified(T).await;
    assert!(run.stop().await.is_empty());
}

/// PostgreSQL decodes a transaction once its commit record is flushed, a moment before
/// the transaction is visible to other sessions; with synchronous replication that
/// moment lasts until the standby confirms. A private server whose synchronous standby
/// never answers holds one insert there (only its session asks for synchronous commit):
/// the slot hands the insert to ebis while a read by key does not find the row yet. ebis
/// must not take it for a delete (nothing else is logged for it: it would be lost); it
/// reads the row once the commit is visible (here, once the wait is cancelled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_decoded_before_its_commit_is_visible_is_not_taken_for_a_delete() {
    let dir = TempDir::new("ebis_pg_syncrep");
    let server = ebis::demo::servers::PrivatePostgres::start(
        &dir.path().join("pg"),
        &[
            "wal_level=logical",
            "synchronous_standby_names=nobody",
            "synchronous_commit=local",
        ],
    )
    .await
    .expect("a private PostgreSQL");
    let account = ConnectionConfig::from_url(&server.url(), "EBIS_NO_PASSWORD", "private")
        .expect("the private server's URL");
    let source = connect(&account).await;
    source.batch_execute(ENT).await.expect("ENT");
    source.batch_execute(&insert(1, 10)).await.expect("rows");
    // The name read through an expression: rows are read by key, not taken from the log.
    let (env, _mappings) =
        env_reading(account.clone(), "mode: logical".to_owned(), MAPPING_BY_KEY).await;
    let run = env.start();
    env.wait_count(LIVE, 10, T).await;
    let held = connect(&account).await;
    let pid: i32 = held
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    held.batch_execute("SET synchronous_commit = on")
        .await
        .expect("synchronous commit");
    let insert = tokio::spawn(async move { held.batch_execute(&insert(100, 100)).await });
    // The commit record is written and flushed; the session waits for the standby.
    let mut waiting = false;
    for _ in 0..100 {
        let event: Option<String> = source
            .query_one(
                "SELECT wait_event FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .expect("activity")
            .get(0);
        if event.as_deref() == Some("SyncRep") {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting, "the insert waits for its synchronous standby");
    let hidden: i64 = source
        .query_one("SELECT count(*) FROM ENT WHERE ID = 100", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(hidden, 0, "the row is not visible while its commit waits");
    // ebis polls meanwhile and is handed the insert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    source
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .await
        .expect("cancel the wait");
    insert
        .await
        .expect("the insert's task")
        .expect("the insert commits (its wait cancelled)");
    env.wait_verified(T).await;
    let live: i64 = env
        .pg()
        .await
        .query_one(
            "select count(*) from exchange.aic_establishment where source_key = '100' and deleted_at is null",
            &[],
        )
        .await
        .expect("the held row")
        .get(0);
    assert_eq!(live, 1, "the row whose commit was held is in the warehouse");
    assert!(run.stop().await.is_empty());
    drop(server);
}

/// Every column's type a bureau's table may have, beside the mapped ones.
const WIDE: &str = "CREATE TABLE ENT (
    ID integer NOT NULL PRIMARY KEY, REGNO varchar(30) NULL, ENTNAME varchar(200) NULL,
    ESTDATE date NULL, C_SMALL smallint NULL, C_BIG bigint NULL, C_DEC numeric(18,4) NULL,
    C_REAL real NULL, C_DOUBLE double precision NULL, C_BOOL boolean NULL,
    C_TS timestamp(6) NULL, C_CHAR char(6) NULL, C_TEXT text NULL, C_BYTES bytea NULL,
    C_SPAN interval NULL, C_UUID uuid NULL, C_JSON jsonb NULL, C_NUMS integer[] NULL
)";

/// Each change's integer key, op and name, in key order.
fn names_of(changes: &[ebis_source::Change]) -> Vec<(i64, ebis_source::Op, Option<String>)> {
    let mut got: Vec<_> = changes
        .iter()
        .map(|c| {
            let id = match c.key[0] {
                ebis_source::Value::Int(i) => i,
                ref other => panic!("an integer key: {other:?}"),
            };
            let name = c.row.get("ENTNAME").and_then(|v| v.to_text());
            (id, c.op, name)
        })
        .collect();
    got.sort_by_key(|g| g.0);
    got
}

/// Inserts, updates and deletes are taken from the log's tuples: a change carries the row
/// as its transaction wrote it (a read by key would give it as it is now), and a row
/// unchanged since equals what a read by key gives, for every column type. What a tuple
/// cannot give exactly is read by key: an update that left a TOASTed value alone, a
/// mapping's expression, a `timestamptz` column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_taken_from_the_logs_tuples_as_a_read_by_key_gives_them() {
    use ebis_source::Op::{Delete, Upsert};
    let b = bureau_captured(|c| c, None, WIDE).await;
    let (cfg, mut source, head) = checked_source(&b).await;
    // Odd rows hold a text long enough to be stored out of line (TOASTed).
    b.db.exec(
        "INSERT INTO ENT SELECT s, lpad((150302000000000 + s)::text, 15, '0'),
            '乌海市第' || s || '号（有限公司）', '2006-03-01', -32000, 9007199254740993,
            CASE WHEN s % 3 = 0 THEN 0 ELSE -1234567890.0501 END, 1.1, 2.25e100, s % 2 = 0,
            '2026-12-03 10:11:12.654321', CASE WHEN s % 2 = 0 THEN '乌海' ELSE 'ab' END,
            CASE WHEN s % 2 = 1 THEN (SELECT string_agg(md5(s::text || g::text), '')
                                      FROM generate_series(1, 400) g) ELSE '短' END,
            CASE WHEN s % 4 = 0 THEN NULL ELSE '\\x00ff00'::bytea END, '1 day 02:03:04',
            md5(s::text)::uuid, '{\"名\": [1, 2.5]}', ARRAY[s, NULL]
         FROM generate_series(1, 40) s",
    )
    .await;
    for sql in [
        "UPDATE ENT SET ENTNAME = '甲' WHERE ID IN (1, 4)",
        "UPDATE ENT SET ENTNAME = '乙' WHERE ID IN (1, 4)",
        "DELETE FROM ENT WHERE ID = 2",
        "UPDATE ENT SET ID = 1000 WHERE ID = 6",
    ] {
        b.db.exec(sql).await;
    }
    let inserted = |id: i64| Some(format!("乌海市第{id}号（有限公司）"));

    let first = source.changes(&head, 40).await.expect("the insert");
    assert_eq!(first.changes.len(), 40);
    let got = names_of(&first.changes);
    assert_eq!(got[0], (1, Upsert, inserted(1)), "as the insert wrote it");
    assert_eq!(
        got[1],
        (2, Upsert, inserted(2)),
        "inserted then; deleted later"
    );
    let changed_since = [1, 2, 4, 6].map(ebis_source::Value::Int);
    assert_rows_read_alike(&mut source, "ENT", &first.changes, &changed_since).await;

    // The first rename: row 4's from its tuple; row 1's TOASTed text was left alone, so
    // its tuple lacks it and the row is read by key, as it is now.
    let second = source.changes(&first.position, 2).await.expect("a rename");
    assert_eq!(
        names_of(&second.changes),
        [
            (1, Upsert, Some("乙".to_owned())),
            (4, Upsert, Some("甲".to_owned()))
        ]
    );
    let rest = source
        .changes(&second.position, 40)
        .await
        .expect("the rest");
    assert_eq!(
        names_of(&rest.changes),
        [
            (1, Upsert, Some("乙".to_owned())),
            (2, Delete, None),
            (4, Upsert, Some("乙".to_owned())),
            (6, Delete, None),
            (1000, Upsert, inserted(6)),
        ],
        "a delete, and a key changed: the old key gone, the new one with the row"
    );
    source.close().await;

    // A mapping's expression: every row is read by key, as it is now.
    let mut source = AnySource::open(&cfg, plans_read_by_key()).expect("open");
    let first = source.changes(&head, 40).await.expect("the insert");
    let got = names_of(&first.changes);
    assert_eq!(got[0], (1, Upsert, Some("乙".to_owned())));
    assert_eq!(got[1], (2, Delete, None));
    source.close().await;

    // A timestamptz column: the same.
    b.db.exec("ALTER TABLE ENT ADD COLUMN C_AT timestamptz NULL")
        .await;
    b.db.exec("UPDATE ENT SET ENTNAME = '丙', C_AT = now() WHERE ID = 4")
        .await;
    b.db.exec("UPDATE ENT SET ENTNAME = '丁' WHERE ID = 4")
        .await;
    let mut source = AnySource::open(&cfg, plans()).expect("open");
    // The slot confirmed up to what was read (as the pipeline's stored batches confirm
    // it): a read of one change starts there, not at the 40-row insert.
    source
        .acknowledge(&rest.position)
        .await
        .expect("the slot confirmed");
    let stamped = source.changes(&rest.position, 1).await.expect("a rename");
    assert_eq!(
        names_of(&stamped.changes),
        [(4, Upsert, Some("丁".to_owned()))]
    );
    source.close().await;
}

/// A table keyed by a `real` column: the key the log gives (its shortest text) and the
/// key a read by key returns (the driver's f32, widened) are the same value, so a row read
/// by key is found, not taken for deleted (before, "1.1" was read as the double 1.1 and
/// every changed row of such a table became a delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_keyed_by_a_real_is_found_when_read_by_key() {
    let b = bureau_captured(|c| c, None, &ENT.replace("ID      integer", "ID      real")).await;
    let cfg = b.env.config().sources[0].clone();
    // An expression: the rows are read by key.
    let mut source = AnySource::open(&cfg, plans_read_by_key()).expect("open");
    source.check().await.expect("check");
    let head = source.head().await.expect("head");
    b.db.exec("INSERT INTO ENT (ID, ENTNAME) VALUES (1.1, '乌海')")
        .await;
    let read = source.changes(&head, 10).await.expect("changes");
    let got: Vec<_> = read
        .changes
        .iter()
        .map(|c| (c.key.clone(), c.op, c.row.get("ENTNAME").cloned()))
        .collect();
    assert_eq!(
        got,
        [(
            vec![ebis_source::Value::Float(f64::from(1.1f32))],
            ebis_source::Op::Upsert,
            Some(ebis_source::Value::Text("乌海".to_owned()))
        )]
    );
    source.close().await;
}

/// The rows a snapshot's progress is measured against: a table never analyzed is counted,
/// an analyzed one is read from the planner's statistics (no scan), scaled to the table's
/// size now as the planner does, so rows added since still show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_rows_for_progress_come_from_its_statistics_or_a_count() {
    let b = bureau().await;
    // Statistics only as this test sets them.
    b.db.exec("ALTER TABLE ENT SET (autovacuum_enabled = false)")
        .await;
    b.db.exec(&insert(1, 3_000)).await;
    let (_cfg, mut source, _head) = checked_source(&b).await;
    // Never analyzed (reltuples -1): counted.
    assert_eq!(source.count("ENT").await.expect("count"), 3_000);
    // Analyzed at 3,000 rows, then 2,000 deleted (a count would say 1,000): the
    // statistics, not a scan.
    b.db.exec("ANALYZE ENT").await;
    b.db.exec("DELETE FROM ENT WHERE ID > 1000").await;
    let estimate = source.count("ENT").await.expect("estimate");
    assert!((2_900..=3_100).contains(&estimate), "{estimate}");
    // 6,000 rows added in new pages (a count would say 7,000): scaled to the table's
    // pages now, about 9,000.
    b.db.exec(&insert(3_001, 9_000)).await;
    let estimate = source.count("ENT").await.expect("estimate");
    assert!((8_000..=10_000).contains(&estimate), "{estimate}");
    source.close().await;
}
