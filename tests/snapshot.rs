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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_chunk_meeting_rows_already_there_applies_as_upserts() {
    use ebis::pipeline::map_changes;
    use ebis::warehouse::SourceMeta;
    use ebis_source::{Change, Op, Row, Value};
    let (pg, wh, mappings) = one_table_warehouse().await;
    let changes = |name: &str, version: i64| -> Vec<Change> {
        (1..=3)
            .map(|id| {
                let mut row = Row::new();
                row.push("ID", Value::Int(id));
                row.push("REGNO", Value::Text(format!("15030200000000{id}")));
                row.push("NAME", Value::Text(format!("{name}{id}")));
                Change {
                    table: "T".to_owned(),
                    op: Op::Upsert,
                    key: vec![Value::Int(id)],
                    row,
                    version,
                    commit_time: None,
                }
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
    use ebis_source::{Change, Op, Position, Row, Value};
    let (pg, wh, mappings) = one_table_warehouse().await;
    // Rows `ids`, with the checkpoint a snapshot would store after them.
    let half = |ids: std::ops::RangeInclusive<i64>| {
        let changes: Vec<Change> = ids
            .clone()
            .map(|id| {
                let mut row = Row::new();
                row.push("ID", Value::Int(id));
                row.push("REGNO", Value::Text(format!("1503020000{id:05}")));
                row.push("NAME", Value::Text(format!("乌海市第{id}商贸有限公司")));
                Change {
                    table: "T".to_owned(),
                    op: Op::Upsert,
                    key: vec![Value::Int(id)],
                    row,
                    version: 1,
                    commit_time: None,
                }
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
