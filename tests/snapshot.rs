//! Snapshots: the first snapshot of a source while writers keep changing it, and the
//! operator's `ebis snapshot` after changes that bypassed capture.

use crate::support::harness::{AIC_CHANGELOG, Env, Rng, aic_insert, company_name};
use crate::support::{ebis, root, run};
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

async fn preload(env: &Env, rows: u64) {
    let aic = env.db("aic_city");
    let mut rng = Rng::new(3);
    let mut conn = aic.conn().await;
    for chunk in 0..rows / 1000 {
        let values: Vec<String> = (0..1000)
            .map(|i| {
                let stmt = aic_insert(chunk * 1000 + i, &mut rng);
                stmt.split_once(" VALUES ")
                    .map(|(_, v)| v.to_owned())
                    .expect("values")
            })
            .collect();
        let head = aic_insert(0, &mut rng);
        let head = head
            .split_once(" VALUES ")
            .map(|(h, _)| h.to_owned())
            .expect("head");
        conn.query_drop(format!("{head} VALUES {}", values.join(", ")))
            .await
            .expect("bulk insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_under_concurrent_writes_ends_equal() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    preload(&env, 20_000).await;
    let run_ = env.start();
    let aic = env.db("aic_city");
    let pool = aic.pool.clone();
    let writer = tokio::spawn(async move {
        let mut rng = Rng::new(17);
        let mut conn = pool.get_conn().await.expect("conn");
        conn.query_drop("SET NAMES utf8mb4").await.expect("names");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut n = 0u64;
        while Instant::now() < deadline {
            let id = rng.below(20_000);
            match rng.below(3) {
                0 => conn
                    .query_drop(format!(
                        "UPDATE E_BASEINFO SET ENTNAME = '{}' WHERE PRIPID = {id}",
                        company_name(&mut rng)
                    ))
                    .await
                    .expect("update"),
                1 => conn
                    .query_drop(format!("DELETE FROM E_BASEINFO WHERE PRIPID = {id}"))
                    .await
                    .expect("delete"),
                _ => conn
                    .query_drop(aic_insert(100_000 + n, &mut rng))
                    .await
                    .expect("insert"),
            }
            n += 1;
        }
        n
    });
    // The writes must overlap the snapshot.
    let pg = env.pg().await;
    let mut saw_snapshotting = false;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let state: Option<String> = pg
            .query_opt(
                "select state from ebis.source_status where source = 'aic_city'",
                &[],
            )
            .await
            .expect("status")
            .map(|r| r.get(0));
        if state.as_deref() == Some("snapshotting") {
            saw_snapshotting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writes = writer.await.expect("writer");
    assert!(saw_snapshotting, "the snapshot ran while the writer wrote");
    assert!(writes > 100, "{writes}");
    let reports = env.wait_verified(Duration::from_secs(90)).await;
    let est = reports
        .iter()
        .find(|r| r.kind == "aic_establishment")
        .expect("kind");
    assert_eq!(est.source_rows, aic.count("E_BASEINFO").await);
    assert!(run_.stop().await.is_empty());
}

/// Kills `child` (`kill -9`) once `stored`, a query of the warehouse giving one boolean,
/// holds (within two minutes, or the test fails saying `what`).
async fn kill_once_stored(
    pg: &tokio_postgres::Client,
    mut child: std::process::Child,
    stored: &str,
    what: &str,
) {
    let start = Instant::now();
    while !pg
        .query_one(stored, &[])
        .await
        .expect("checkpoint")
        .get::<_, bool>(0)
    {
        assert!(start.elapsed() < Duration::from_secs(120), "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
}

/// An operator watching a first load sees how far it has read against the source's
/// estimate of each table's rows, and how long it has left: from the checkpoint, so also
/// while ebis is down after a `kill -9` midway; the line is gone once the snapshot ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebis_status_shows_a_first_snapshots_progress_against_the_sources_estimates() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    preload(&env, 30_000).await;
    let aic = env.db("aic_city");
    // Statistics as a server keeps them for a table loaded a while ago.
    aic.conn()
        .await
        .query_drop("ANALYZE TABLE E_BASEINFO")
        .await
        .expect("analyze");
    let pg = env.pg().await;
    kill_once_stored(
        &pg,
        env.spawn_run(std::process::Stdio::null()),
        "select coalesce((select (snapshot->>'table_rows')::bigint >= 2000 from ebis.checkpoint
                          where source = 'aic_city'), false)",
        "no chunk of E_BASEINFO stored",
    )
    .await;

    let status = |json: bool| {
        let mut cmd = ebis(&root());
        cmd.args([
            "--config".as_ref(),
            env.config_path().as_os_str(),
            "status".as_ref(),
        ]);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let shown = status(true);
    let rows: serde_json::Value = serde_json::from_str(&shown.stdout).expect("status json");
    let snap = &rows[0]["snapshot"];
    assert_eq!(snap["table_name"], "E_BASEINFO", "{}", shown.stdout);
    assert_eq!(snap["while_streaming"], false);
    let read = snap["table_rows"].as_u64().expect("rows read");
    assert!((2_000..30_000).contains(&read), "{read}");
    // InnoDB's estimate is sampled: near the 30,000 rows, not exact.
    let estimate = snap["table_estimate"].as_u64().expect("an estimate");
    assert!((15_000..=60_000).contains(&estimate), "{estimate}");
    let left = snap["rows_left"].as_u64().expect("rows left");
    assert_eq!(
        left,
        estimate.saturating_sub(read),
        "the other tables are empty"
    );
    let tables = snap["tables"].as_u64().expect("tables");
    let text = status(false).stdout;
    assert!(
        text.contains(&format!(
            "aic_city: first snapshot, table {} of {tables} (E_BASEINFO): {read} rows read of about {estimate};",
            snap["table"]
        )),
        "{text}"
    );
    assert!(text.contains(" left\n") || left == 0, "{text}");

    // Taken up again, and stopped again once it has read more: its rate counts from
    // where it resumed, not over the time it stood still.
    let in_all = snap["rows"].as_u64().expect("rows in all");
    let stopped = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill_once_stored(
        &pg,
        env.spawn_run(std::process::Stdio::null()),
        "select exists (select from ebis.checkpoint where source = 'aic_city'
                          and (snapshot->>'rows')::bigint > (snapshot->'resumed'->>'rows')::bigint)",
        "no chunk stored after the snapshot resumed",
    )
    .await;
    let shown = status(true);
    let rows: serde_json::Value = serde_json::from_str(&shown.stdout).expect("status json");
    let resumed = &rows[0]["snapshot"]["resumed"];
    assert_eq!(resumed["rows"].as_u64(), Some(in_all), "{}", shown.stdout);
    let at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(resumed["at"].clone()).expect("resumed at");
    assert!(at > stopped, "{at} {stopped}");
    let text = status(false).stdout;
    assert!(text.contains(" rows/s since it resumed at "), "{text}");

    // Resumed, it ends equal, and the line is gone.
    let run_ = env.start();
    env.wait_verified(Duration::from_secs(90)).await;
    assert!(run_.stop().await.is_empty());
    let text = status(false).stdout;
    assert!(!text.contains("snapshot"), "{text}");
    let rows: serde_json::Value = serde_json::from_str(&status(true).stdout).expect("json");
    assert!(rows[0]["snapshot"].is_null(), "{rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebis_snapshot_repairs_changes_that_bypassed_capture() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    preload(&env, 2_000).await;
    let running = env.start();
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        2000,
        Duration::from_secs(60),
    )
    .await;
    assert!(running.stop().await.is_empty());
    // A DBA's maintenance without triggers: renames and deletes ebis never saw.
    let aic = env.db("aic_city");
    let mut conn = aic.conn().await;
    for t in ["ai", "au", "ad"] {
        conn.query_drop(format!("DROP TRIGGER ebis_e_baseinfo_{t}"))
            .await
            .expect("drop trigger");
    }
    conn.query_drop(
        "UPDATE E_BASEINFO SET ENTNAME = CONCAT(ENTNAME, '（已更名）') WHERE PRIPID < 100",
    )
    .await
    .expect("update");
    conn.query_drop("DELETE FROM E_BASEINFO WHERE PRIPID >= 1900")
        .await
        .expect("delete");
    assert!(
        !env.verify()
            .await
            .expect("verify")
            .iter()
            .all(|r| r.agrees()),
        "the warehouse is stale now"
    );
    let cfg = [
        std::ffi::OsString::from("--config"),
        env.config_path().into_os_string(),
    ];
    let setup = run(ebis(&root())
        .args(&cfg)
        .args(["setup-source", "aic_city", "--apply"]));
    assert_eq!(setup.code, 0, "{}{}", setup.stdout, setup.stderr);
    assert!(
        setup
            .stdout
            .contains("installed change capture on aic_city"),
        "{}",
        setup.stdout
    );

    let out = run(ebis(&root()).args([
        "--config".as_ref(),
        env.config_path().as_os_str(),
        "snapshot".as_ref(),
        "aic_city".as_ref(),
        "--table".as_ref(),
        "E_BASEINFO".as_ref(),
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("snapshot of aic_city: 100 rows changed, 100 marked deleted"),
        "{}",
        out.stdout
    );
    env.wait_verified(Duration::from_secs(10)).await;
    let status = run(ebis(&root()).args([
        "--config".as_ref(),
        env.config_path().as_os_str(),
        "status".as_ref(),
    ]));
    assert_eq!(status.code, 0);
    assert!(
        status.stdout.contains("aic_city") && status.stdout.contains("changelog"),
        "{}",
        status.stdout
    );
}

/// A first snapshot's chunks are copied straight into the warehouse; should one meet rows
/// already there (a checkpoint deleted by hand, two tables mapped onto one kind), the
/// chunk applies again as upserts: nothing fails, newer versions win.
/// A migrated warehouse and a mapping of table `T` (ID, REGNO, NAME) to AIC
/// establishments.
async fn one_table_warehouse() -> (
    crate::support::pg::PgDb,
    ebis::warehouse::Warehouse,
    ebis::mapping::MappingSet,
) {
    let pg = crate::support::pg::PgDb::create().await;
    let wh = ebis::warehouse::Warehouse::new(&pg.conn, 4).expect("warehouse");
    ebis::warehouse::migrate(&wh).await.expect("migrate");
    let dir = crate::support::TempDir::new("ebis_one_table");
    std::fs::write(
        dir.path().join("aic_establishment.yaml"),
        "record_kind: aic_establishment\nsource: {table: T, key: [ID]}\nfields:\n  reg_no: {column: REGNO}\n  name: {column: NAME}\n",
    )
    .expect("mapping");
    let mappings =
        ebis::mapping::MappingSet::load_dir(dir.path(), Some(ebis::indicators::Bureau::Aic))
            .expect("mappings");
    (pg, wh, mappings)
}

/// A change to row `id` of table `T`: its registration number, its name, and further
/// columns no field maps.
fn t_change(
    id: i64,
    reg_no: String,
    name: String,
    more: &[(&str, &str)],
    version: i64,
    op: ebis_source::Op,
) -> ebis_source::Change {
    use ebis_source::{Row, Value};
    let mut row = Row::new();
    row.push("ID", Value::Int(id));
    row.push("REGNO", Value::Text(reg_no));
    row.push("NAME", Value::Text(name));
    for (column, value) in more {
        row.push(*column, Value::Text((*value).to_owned()));
    }
    ebis_source::Change {
        table: "T".to_owned(),
        op,
        key: vec![Value::Int(id)],
        row,
        version,
        commit_time: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_chunk_meeting_rows_already_there_applies_as_upserts() {
    use ebis::pipeline::map_changes;
    use ebis::warehouse::SourceMeta;
    use ebis_source::{Change, Op};
    let (pg, wh, mappings) = one_table_warehouse().await;
    let changes = |name: &str, version: i64| -> Vec<Change> {
        (1..=3)
            .map(|id| {
                let reg_no = format!("15030200000000{id}");
                t_change(id, reg_no, format!("{name}{id}"), &[], version, Op::Upsert)
            })
            .collect()
    };
    let meta = SourceMeta {
        name: "aic_fresh",
        bureau: "aic",
    };
    let mut first = map_changes(&mappings, "150302", &changes("乌海市甲商贸有限公司", 1));
    first.fresh = true;
    assert_eq!(
        wh.apply(meta, "seq 1", &first)
            .await
            .expect("copied")
            .upserted,
        3
    );
    let mut again = map_changes(&mappings, "150302", &changes("乌海市乙商贸有限公司", 2));
    again.fresh = true;
    assert_eq!(
        wh.apply(meta, "seq 2", &again)
            .await
            .expect("applied as upserts")
            .upserted,
        3
    );
    let names: Vec<String> = pg
        .client()
        .await
        .query(
            "select name from exchange.aic_establishment where source = 'aic_fresh' order by source_key",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        names,
        [
            "乌海市乙商贸有限公司1",
            "乌海市乙商贸有限公司2",
            "乌海市乙商贸有限公司3"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_two_halves_never_commits_past_a_half_that_did_not() {
    use ebis::pipeline::map_changes;
    use ebis::warehouse::{Checkpoint, SourceMeta};
    use ebis_source::{Change, Op, Position};
    let (pg, wh, mappings) = one_table_warehouse().await;
    // Rows `ids`, with the checkpoint a snapshot would store after them.
    let half = |ids: std::ops::RangeInclusive<i64>| {
        let changes: Vec<Change> = ids
            .clone()
            .map(|id| {
                let (reg_no, name) = (
                    format!("1503020000{id:05}"),
                    format!("乌海市第{id}商贸有限公司"),
                );
                t_change(id, reg_no, name, &[], 1, Op::Upsert)
            })
            .collect();
        let mut batch = map_changes(&mappings, "150302", &changes);
        batch.checkpoint = Some(Checkpoint {
            position: Position::Initial,
            snapshot: Some(serde_json::json!({ "after": ids.end() })),
            mode: "changelog".to_owned(),
            captured: Default::default(),
            version_base: 0,
        });
        batch
    };
    let meta = SourceMeta {
        name: "aic_halves",
        bureau: "aic",
    };
    let client = pg.client().await;
    let stored = || async {
        let r = client
            .query_one(
                "select (select count(*) from exchange.aic_establishment where source = 'aic_halves'),
                        (select snapshot->>'after' from ebis.checkpoint where source = 'aic_halves')",
                &[],
            )
            .await
            .expect("stored");
        (r.get::<_, i64>(0), r.get::<_, Option<String>>(1))
    };
    wh.apply(meta, "snapshot", &half(1..=10))
        .await
        .expect("a chunk before");
    assert_eq!(stored().await, (10, Some("10".to_owned())));

    // The first half of the next batch fails: the second, applying at the same time, is
    // rolled back, and the checkpoint stays where the last committed batch left it.
    let (committed, before) = tokio::sync::watch::channel(None);
    let second = half(21..=30);
    let waiting = wh.apply_after(meta, "snapshot", &second, Some(&before));
    let (result, ()) = tokio::join!(waiting, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        committed.send(Some(false)).expect("send");
    });
    let e = result.expect_err("refused");
    assert!(e.is_retryable(), "{e}");
    assert_eq!(stored().await, (10, Some("10".to_owned())));

    // A large batch in two halves: both land, the checkpoint with the second.
    let applied = wh
        .apply_split(meta, "snapshot", half(11..=400))
        .await
        .expect("both halves");
    assert_eq!(applied.upserted, 390);
    assert_eq!(stored().await, (400, Some("400".to_owned())));
}

/// The warehouse's temporary files: how many its backends wrote, read once every backend
/// but the reader's has ended (a backend's counts reach the statistics by its exit at the
/// latest).
async fn temp_files_written(pg: &crate::support::pg::PgDb) -> i64 {
    let client = pg.client().await;
    let start = Instant::now();
    loop {
        let others: i64 = client
            .query_one(
                "select count(*) from pg_stat_activity
                 where datname = current_database() and pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("backends")
            .get(0);
        if others == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{others} backends stay"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .query_one(
            "select temp_files from pg_stat_database where datname = current_database()",
            &[],
        )
        .await
        .expect("temp files")
        .get(0)
}

/// A chunk of a first snapshot, then the same rows changed, then deleted: 10,000 rows a
/// statement, each with a long column no field maps (kept in the raw row), 8 MB where
/// the base queue's triggers see them, twice PostgreSQL's default work_mem. Applies hold
/// them in memory: the warehouse writes no temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_writes_no_temporary_file_in_the_warehouse() {
    use ebis::pipeline::map_changes;
    use ebis::warehouse::SourceMeta;
    use ebis_source::{Change, Op};
    let (pg, wh, mappings) = one_table_warehouse().await;
    let note = "乌海市海勃湾区滨河区".repeat(24);
    let changes = |name: &str, version: i64, op: Op| -> Vec<Change> {
        (1..=10_000)
            .map(|id| {
                let (reg_no, name) = (
                    format!("1503020{id:08}"),
                    format!("乌海市{name}{id}商贸有限公司"),
                );
                t_change(id, reg_no, name, &[("NOTE", &note)], version, op)
            })
            .collect()
    };
    let meta = SourceMeta {
        name: "aic_large",
        bureau: "aic",
    };
    let mut first = map_changes(&mappings, "150302", &changes("甲", 1, Op::Upsert));
    first.fresh = true;
    let renamed = map_changes(&mappings, "150302", &changes("乙", 2, Op::Upsert));
    let deleted = map_changes(&mappings, "150302", &changes("乙", 3, Op::Delete));
    for (what, batch, rows) in [
        ("copied", &first, 10_000),
        ("renamed", &renamed, 10_000),
        ("deleted", &deleted, 10_000),
    ] {
        let applied = wh.apply(meta, "seq 1", batch).await.expect(what);
        assert_eq!(applied.upserted + applied.deleted, rows, "{what}");
    }
    let client = pg.client().await;
    let queued: i64 = client
        .query_one(
            "select coalesce(sum(cardinality(resolve_reg)), 0) from core.pending",
            &[],
        )
        .await
        .expect("queue")
        .get(0);
    assert_eq!(queued, 20_000, "each insert's and delete's numbers queued");
    let bytes: i64 = client
        .query_one(
            "select sum(pg_column_size(t.*)) from exchange.aic_establishment t",
            &[],
        )
        .await
        .expect("size")
        .get(0);
    assert!(
        bytes > 8 << 20,
        "the rows are larger than work_mem: {bytes}"
    );
    drop(client);
    drop(wh);
    assert_eq!(temp_files_written(&pg).await, 0);

    // Temporary files are counted: a sort beyond a small work_mem writes some.
    let client = pg.client().await;
    client
        .batch_execute(
            "set work_mem = '64kB';
             select count(*) from (select g from generate_series(1, 100000) g order by g desc) s",
        )
        .await
        .expect("sort");
    drop(client);
    assert!(temp_files_written(&pg).await > 0);
}
