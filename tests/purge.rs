//! Purging the changelog table (`capture.purge_every`): only what the warehouse has
//! stored goes, never a sequence number still awaited as a gap, and an account that may
//! not delete gets a visible error while capture goes on.

use crate::support::harness::{Env, Rng, Spec, aic_insert};
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

const AIC_PURGED: Spec = Spec {
    name: "aic_city",
    bureau: "aic",
    division: "150300",
    capture: "mode: changelog\n      gap_timeout: 60s\n      purge_every: 200ms",
};

const LIVE: &str = "select count(*) from exchange.aic_establishment where deleted_at is null";

/// Polls a MariaDB count until `done(n)`.
async fn wait_source(
    db: &crate::support::mysql::MyDb,
    sql: &str,
    done: impl Fn(u64) -> bool,
) -> u64 {
    let start = Instant::now();
    loop {
        let n: u64 = db
            .conn()
            .await
            .query_first(sql)
            .await
            .expect(sql)
            .unwrap_or(0);
        if done(n) {
            return n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "`{sql}` is still {n} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_table_is_purged_only_below_what_the_warehouse_stored() {
    let env = Env::new(&[&AIC_PURGED]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(11);
    for id in 0..30 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count(LIVE, 30, Duration::from_secs(60)).await;
    for id in 30..35 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    env.wait_count(LIVE, 35, Duration::from_secs(30)).await;

    // A transaction left open: its change-table row is a gap ebis must keep awaiting.
    let mut held = aic.conn().await;
    let mut tx = held
        .start_transaction(mysql_async::TxOpts::default())
        .await
        .expect("begin");
    tx.query_drop(aic_insert(100, &mut rng))
        .await
        .expect("insert");
    let gap: u64 = tx
        .query_first("SELECT MAX(seq) FROM ebis_change")
        .await
        .expect("seq")
        .expect("a change row");
    for id in 35..45 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    aic.exec("UPDATE E_BASEINFO SET TEL = '0473-1234567' WHERE PRIPID = 3")
        .await;
    env.wait_count(LIVE, 45, Duration::from_secs(30)).await;

    // Below the gap only the newest committed row stays (the purge's boundary); the
    // gap's successors stay while it is awaited, though they are in the warehouse.
    wait_source(
        aic,
        &format!("SELECT COUNT(*) FROM ebis_change WHERE seq < {gap}"),
        |n| n == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after: u64 = aic
        .conn()
        .await
        .query_first(format!(
            "SELECT COUNT(*) FROM ebis_change WHERE seq > {gap}"
        ))
        .await
        .expect("count")
        .unwrap_or(0);
    assert_eq!(after, 11, "changes after an open gap must not be purged");

    tx.commit().await.expect("commit");
    drop(held);
    env.wait_count(LIVE, 46, Duration::from_secs(30)).await;
    // 35 + 1 + 10 + 1 change rows: all but the newest are purged once stored.
    let start = Instant::now();
    let status = loop {
        let s = env.wh.status().await.expect("status").remove(0);
        if s.changes_purged == 46 || start.elapsed() > Duration::from_secs(30) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.changes_purged, 46, "{status:?}");
    assert!(status.last_purge_at.is_some());
    assert!(status.last_error.is_none(), "{status:?}");
    assert_eq!(aic.count("ebis_change").await, 1, "the newest row is kept");
    let reports = env.wait_verified(Duration::from_secs(30)).await;
    assert!(reports.iter().any(|r| r.source_rows == 46));
    let rendered = ebis::status::render(
        &env.wh.status().await.expect("status"),
        ebis::zone::Zone::Local,
    );
    assert!(
        rendered.contains("aic_city: 46 change-table rows purged"),
        "{rendered}"
    );
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_that_may_not_delete_sees_an_error_and_capture_goes_on() {
    let env = Env::new(&[&AIC_PURGED]).await;
    let aic = env.db("aic_city");
    // A reading account with SELECT only, as many bureau DBAs will grant at first.
    let (_cleanup, reader) = aic.reader().await;
    let reader = reader.url;
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    std::fs::write(env.config_path(), config.replace(&aic.url, &reader)).expect("config");

    let mut rng = Rng::new(12);
    for id in 0..5 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count(LIVE, 5, Duration::from_secs(60)).await;
    let start = Instant::now();
    let status = loop {
        let s = env.wh.status().await.expect("status").remove(0);
        if s.last_error.is_some() || start.elapsed() > Duration::from_secs(30) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("purging the change table failed (capture goes on)")
            && error.contains("DELETE"),
        "{status:?}"
    );
    assert_eq!(status.state, "streaming");
    for id in 5..8 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    env.wait_count(LIVE, 8, Duration::from_secs(30)).await;
    assert_eq!(aic.count("ebis_change").await, 8, "nothing was deleted");
    assert!(run.stop().await.is_empty());
}
