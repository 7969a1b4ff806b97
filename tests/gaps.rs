//! Changelog gaps under real concurrency: several writers, random rollbacks, transactions
//! held open while later ones commit. Every committed change must reach the warehouse;
//! every gap is logged as detected and then filled, rolled back, or expired — and an
//! expired one that commits after all is read late, not lost.

use crate::support::harness::{Env, Rng, Spec, aic_insert};
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

const AIC_SHORT_GAPS: Spec = Spec {
    name: "aic_city",
    bureau: "aic",
    division: "150300",
    capture: "mode: changelog\n      gap_timeout: 8s",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_rollbacks_and_long_transactions_lose_nothing() {
    let env = Env::new(&[&AIC_SHORT_GAPS]).await;
    let run = env.start();
    let aic = env.db("aic_city");
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let pool = aic.pool.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + w);
            let mut conn = pool.get_conn().await.expect("conn");
            conn.query_drop("SET NAMES utf8mb4").await.expect("names");
            let mut next_id = w * 1_000_000;
            let mut mine: Vec<u64> = Vec::new();
            let (mut committed, mut rolled_back, mut held) = (0, 0, 0);
            let deadline = Instant::now() + Duration::from_secs(6);
            while Instant::now() < deadline {
                let mut tx = conn
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .expect("begin");
                let mut inserted = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    match rng.below(4) {
                        0 | 1 => {
                            tx.query_drop(aic_insert(next_id, &mut rng)).await.expect("insert");
                            inserted.push(next_id);
                            next_id += 1;
                        }
                        2 if !mine.is_empty() => {
                            let id = mine[rng.below(mine.len() as u64) as usize];
                            tx.query_drop(format!(
                                "UPDATE E_BASEINFO SET ENTNAME = '{}', TEL = '{}' WHERE PRIPID = {id}",
                                crate::support::harness::company_name(&mut rng),
                                rng.below(1_000_000)
                            ))
                            .await
                            .expect("update");
                        }
                        3 if mine.len() > 5 => {
                            let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            tx.query_drop(format!("DELETE FROM E_BASEINFO WHERE PRIPID = {id}"))
                                .await
                                .expect("delete");
                        }
                        _ => {}
                    }
                }
                if rng.below(10) == 0 {
                    // Hold it open while the others commit later sequence numbers.
                    tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
                    held += 1;
                }
                if rng.below(4) == 0 {
                    tx.rollback().await.expect("rollback");
                    rolled_back += 1;
                } else {
                    tx.commit().await.expect("commit");
                    mine.extend(inserted);
                    committed += 1;
                }
            }
            (committed, rolled_back, held)
        }));
    }
    let mut totals = (0, 0, 0);
    for w in writers {
        let (c, r, h) = w.await.expect("writer");
        totals = (totals.0 + c, totals.1 + r, totals.2 + h);
    }
    assert!(
        totals.1 > 0 && totals.2 > 0,
        "the writers rolled back and held transactions: {totals:?}"
    );
    let reports = env.wait_verified(Duration::from_secs(60)).await;
    let est = reports
        .iter()
        .find(|r| r.kind == "aic_establishment")
        .expect("kind");
    assert_eq!(est.source_rows, aic.count("E_BASEINFO").await);
    assert!(est.source_rows > 0);

    // Rolled-back numbers are given up after the timeout; then no gap is open.
    env.wait_count(
        "select open_gaps::bigint from ebis.source_status",
        0,
        Duration::from_secs(30),
    )
    .await;
    let pg = env.pg().await;
    let fates: Vec<(String, i64)> = pg
        .query(
            "select fate, count(*) from ebis.gap_log group by fate order by fate",
            &[],
        )
        .await
        .expect("gap log")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let count = |f: &str| {
        fates
            .iter()
            .find(|(x, _)| x == f)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    assert!(count("detected") > 0, "{fates:?}");
    assert!(
        count("filled") > 0,
        "held transactions fill their gaps: {fates:?}"
    );
    assert!(
        count("rolled_back") > 0,
        "rolled-back numbers are settled as such (the test account sees open transactions): {fates:?}"
    );
    assert!(run.stop().await.is_empty());
}

const AIC_3S_GAPS: Spec = Spec {
    name: "aic_city",
    bureau: "aic",
    division: "150300",
    capture: "mode: changelog\n      gap_timeout: 3s",
};

const AIC_LONG_GAPS: Spec = Spec {
    name: "aic_city",
    bureau: "aic",
    division: "150300",
    capture: "mode: changelog\n      gap_timeout: 10m",
};

/// Fates logged for gaps starting at `seq`.
async fn fates_of(env: &Env, seq: i64) -> Vec<String> {
    env.pg()
        .await
        .query(
            "select fate from ebis.gap_log where from_seq <= $1 and to_seq >= $1 order by id",
            &[&seq],
        )
        .await
        .expect("gap log")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_longer_than_the_gap_timeout_arrives_late_and_is_reported() {
    let env = Env::new(&[&AIC_3S_GAPS]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(8);
    aic.exec(&aic_insert(1, &mut rng)).await;
    let run = env.start();
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        1,
        Duration::from_secs(30),
    )
    .await;
    // An 8 s transaction holds a sequence number while a later change commits.
    let mut long = aic.conn().await;
    long.query_drop("START TRANSACTION").await.expect("begin");
    long.query_drop(aic_insert(2, &mut rng))
        .await
        .expect("insert");
    let held: i64 = long
        .query_first("SELECT MAX(seq) FROM ebis_change")
        .await
        .expect("seq")
        .expect("a row");
    aic.exec(&aic_insert(3, &mut rng)).await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        2,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Past the timeout the gap no longer holds lag back.
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].open_gaps, 0, "{status:?}");
    assert_eq!(status[0].expired_gaps, 1, "{status:?}");
    assert!(
        status[0].lag_seconds.is_some_and(|l| l < 5.0),
        "an expired gap must not hold lag: {status:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    long.query_drop("COMMIT").await.expect("commit");
    // The late change is read, and said to be late.
    env.wait_count(
        "select count(*) from exchange.aic_establishment where source_key = '2'",
        1,
        Duration::from_secs(30),
    )
    .await;
    env.wait_verified(Duration::from_secs(30)).await;
    assert_eq!(fates_of(&env, held).await, ["detected", "expired", "late"]);
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].late_changes, 1, "{status:?}");
    assert_eq!(status[0].expired_gaps, 0, "{status:?}");
    let shown = ebis::status::render(&status, ebis::zone::Zone::Local);
    assert!(shown.contains("1 change(s) arrived late"), "{shown}");
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_holds_lag_back_for_seconds_not_for_the_gap_timeout() {
    let env = Env::new(&[&AIC_LONG_GAPS]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(9);
    aic.exec(&aic_insert(1, &mut rng)).await;
    let run = env.start();
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        1,
        Duration::from_secs(30),
    )
    .await;
    let mut doomed = aic.conn().await;
    doomed.query_drop("START TRANSACTION").await.expect("begin");
    doomed
        .query_drop(aic_insert(2, &mut rng))
        .await
        .expect("insert");
    let held: i64 = doomed
        .query_first("SELECT MAX(seq) FROM ebis_change")
        .await
        .expect("seq")
        .expect("a row");
    aic.exec(&aic_insert(3, &mut rng)).await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        2,
        Duration::from_secs(30),
    )
    .await;
    // Open: the gap holds lag back, as it must.
    env.wait_count(
        "select open_gaps::bigint from ebis.source_status",
        1,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    doomed.query_drop("ROLLBACK").await.expect("rollback");
    let rolled_back = Instant::now();
    env.wait_count(
        "select open_gaps::bigint from ebis.source_status",
        0,
        Duration::from_secs(30),
    )
    .await;
    let settled_in = rolled_back.elapsed();
    assert!(
        settled_in < Duration::from_secs(60),
        "a rollback was settled after {settled_in:?}, not within seconds"
    );
    assert_eq!(fates_of(&env, held).await, ["detected", "rolled_back"]);
    let status = env.wh.status().await.expect("status");
    assert!(
        status[0].lag_seconds.is_some_and(|l| l < 60.0),
        "lag after a rollback: {status:?}"
    );
    assert_eq!(status[0].expired_gaps, 0);
    env.wait_verified(Duration::from_secs(30)).await;
    assert!(run.stop().await.is_empty());
}
