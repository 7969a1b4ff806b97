//! The enterprise base off the apply path (migration 0019): applies only queue what they
//! touched, a drainer in `ebis run` takes the queue in behind them, and the comparison
//! trusts the base no further than it has taken records in.

use crate::support::harness::{AIC_CHANGELOG, Env, Rng, aic_insert};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_never_wait_for_the_base_and_the_comparison_waits_for_it() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(13);
    for id in 1..=20 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count(
        "select count(*) from core.enterprise where reg_no is not null",
        20,
        T,
    )
    .await;

    // A long drain (or a comparison settling the base) holds the base's lock.
    let holder = env.pg().await;
    holder
        .execute("select pg_advisory_lock(hashtext('ebis.core'))", &[])
        .await
        .expect("hold the base's lock");
    for id in 21..=30 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市改名商贸有限公司' WHERE PRIPID = 1")
        .await;
    // Capture goes on regardless: the rows arrive while the lock is held.
    env.wait_count(
        "select count(*) from exchange.aic_establishment where deleted_at is null",
        30,
        T,
    )
    .await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment where name = '乌海市改名商贸有限公司'",
        1,
        T,
    )
    .await;
    let pg = env.pg().await;
    let base: i64 = pg
        .query_one("select count(*) from core.enterprise", &[])
        .await
        .expect("base")
        .get(0);
    assert_eq!(base, 20, "the base has not taken the new rows in yet");
    let queued: i64 = pg
        .query_one("select count(*) from core.pending", &[])
        .await
        .expect("queue")
        .get(0);
    assert!(queued > 0, "what the applies touched is queued");
    // Operators see it without reading logs.
    let line = ebis::status::render_base(
        &env.wh.base_status().await.expect("base status"),
        chrono::Utc::now(),
    );
    assert!(
        line.contains(&format!("{queued} statement(s) queued")),
        "{line}"
    );
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert!(
        page.contains(&format!("ebis_base_queued_statements {queued}")),
        "{page}"
    );
    // The comparison trusts AIC no further than the base has taken it in: behind the
    // source's own completeness.
    let (source, trusted): (
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = {
        let r = pg
            .query_one(
                "select (select complete_up_to from ebis.source_status where source = 'aic_city'),
                        (select max(complete_at) from compare.completeness where bureau = 'aic')",
                &[],
            )
            .await
            .expect("completeness");
        (r.get(0), r.get(1))
    };
    assert!(
        trusted.is_some_and(|t| t < source),
        "completeness {trusted:?} must stay behind the source's {source}"
    );

    // Released: the drainer catches up by itself.
    holder
        .execute("select pg_advisory_unlock(hashtext('ebis.core'))", &[])
        .await
        .expect("release");
    env.wait_count("select count(*) from core.enterprise", 30, T)
        .await;
    env.wait_count(
        "select count(*) from core.enterprise where name = '乌海市改名商贸有限公司'",
        1,
        T,
    )
    .await;
    env.wait_count("select count(*) from core.pending", 0, T)
        .await;
    let line = ebis::status::render_base(
        &env.wh.base_status().await.expect("base status"),
        chrono::Utc::now(),
    );
    assert!(line.starts_with("enterprise base: up to date"), "{line}");
    assert!(run.stop().await.is_empty());
    // A comparison settles whatever is still queued, and then trusts AIC as far as
    // the source itself.
    let summary = env.wh.compare().await.expect("compare");
    assert!(summary.held_back.is_empty(), "{:?}", summary.held_back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_base_refuses_is_parked_and_the_rest_goes_on() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let pg = env.pg().await;
    // Something the base refuses that the exchange table takes: here a check the base
    // has and the exchange table has not.
    pg.batch_execute(
        "alter table core.enterprise add constraint no_poison check (name not like '%投毒%')",
    )
    .await
    .expect("a check the base has");
    let mut rng = Rng::new(17);
    for id in 1..=5 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count("select count(*) from core.enterprise", 5, T)
        .await;
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市投毒商贸有限公司' WHERE PRIPID = 1")
        .await;
    for id in 6..=8 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    // Capture has everything; the base takes in all but the refused statement.
    env.wait_count(
        "select count(*) from exchange.aic_establishment where name like '%投毒%'",
        1,
        T,
    )
    .await;
    env.wait_count("select count(*) from core.pending_parked", 1, T)
        .await;
    env.wait_count("select count(*) from core.enterprise", 8, T)
        .await;
    env.wait_count("select count(*) from core.pending", 0, T)
        .await;
    let reason: String = pg
        .query_one("select reason from core.pending_parked", &[])
        .await
        .expect("parked")
        .get(0);
    assert!(reason.contains("no_poison"), "{reason}");
    assert!(!reason.contains("投毒"), "no value in the reason: {reason}");
    let line = ebis::status::render_base(
        &env.wh.base_status().await.expect("base status"),
        chrono::Utc::now(),
    );
    assert!(line.contains("1 statement(s) parked"), "{line}");
    assert!(run.stop().await.is_empty());
}
