//! Timestamp capture against what its modified column cannot promise: a row deleted and
//! re-created by a transaction that commits late, rows whose modified time lies behind
//! the mark (a client clock behind, an application that sets the column), and a row
//! dated an hour ahead. Nothing is lost, and what was found late is reported.

use crate::support::harness::{Env, Spec};
use crate::support::mysql::gbk;
use mysql_async::prelude::Queryable;
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

const LTAX_SCAN_3S: Spec = Spec {
    name: "ltax_hbw",
    bureau: "ltax",
    division: "150302",
    capture: "mode: timestamp\n      overlap: 5s\n      key_scan_every: 3s",
};

const LTAX_SCAN_HOURLY: Spec = Spec {
    name: "ltax_hbw",
    bureau: "ltax",
    division: "150302",
    capture: "mode: timestamp\n      overlap: 2s\n      key_scan_every: 1h",
};

fn taxpayer(key: &str, name: &str, modified: &str) -> String {
    format!(
        "INSERT INTO DJ_JL_JBSJ (JSJDM, SWDJZH, NSRMC, KYDJRQ, NSRZT, GXSJ)
         VALUES ('{key}', '150302769538264', {}, '20060320', '01', {modified})",
        gbk(name)
    )
}

async fn live(env: &Env, key: &str) -> i64 {
    env.pg()
        .await
        .query_one(
            "select count(*) from exchange.tax_registration where source_key = $1 and deleted_at is null",
            &[&key],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_deleted_and_recreated_by_a_late_commit_is_not_lost() {
    let env = Env::new(&[&LTAX_SCAN_3S]).await;
    let ltax = env.db("ltax_hbw");
    ltax.exec(&taxpayer("L0001", "乌海市甲商贸有限公司", "NOW(6)"))
        .await;
    ltax.exec(&taxpayer("L0002", "乌海市乙商贸有限公司", "NOW(6)"))
        .await;
    let run = env.start();
    env.wait_count(
        "select count(*) from exchange.tax_registration where deleted_at is null",
        2,
        T,
    )
    .await;
    ltax.exec("DELETE FROM DJ_JL_JBSJ WHERE JSJDM = 'L0001'")
        .await;
    // Another session re-creates the row and holds its transaction past the overlap
    // window, while a later write moves the mark on.
    let mut late = ltax.conn().await;
    late.query_drop("START TRANSACTION").await.expect("begin");
    late.query_drop(taxpayer("L0001", "乌海市甲商贸有限公司", "NOW(6)"))
        .await
        .expect("re-create");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ltax.exec(&format!(
        "UPDATE DJ_JL_JBSJ SET NSRMC = {} WHERE JSJDM = 'L0002'",
        gbk("乌海市乙商贸有限责任公司")
    ))
    .await;
    // A key comparison sees the row gone meanwhile.
    env.wait_count(
        "select count(*) from exchange.tax_registration where source_key = 'L0001' and deleted_at is not null",
        1,
        T,
    )
    .await;
    // Writes go on for 8 s: the mark moves well past the re-created row's time.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ltax.exec(&format!(
            "UPDATE DJ_JL_JBSJ SET NSRMC = {} WHERE JSJDM = 'L0002'",
            gbk(&format!("乌海市乙商贸有限责任公司{i}"))
        ))
        .await;
    }
    late.query_drop("COMMIT").await.expect("commit");
    // The next comparison finds it back, and its tombstone does not outrank it.
    let deadline = std::time::Instant::now() + T;
    while live(&env, "L0001").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the re-created row never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_verified(T).await;
    let status = env.wh.status().await.expect("status");
    assert!(status[0].late_changes >= 1, "{status:?}");
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_dated_behind_the_mark_are_found_and_reported() {
    let env = Env::new(&[&LTAX_SCAN_3S]).await;
    let ltax = env.db("ltax_hbw");
    ltax.exec(&taxpayer("L0001", "乌海市甲商贸有限公司", "NOW(6)"))
        .await;
    let run = env.start();
    env.wait_count("select count(*) from exchange.tax_registration", 1, T)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A client whose clock is an hour behind inserts one row and updates another.
    ltax.exec(&taxpayer(
        "L0002",
        "乌海市乙商贸有限公司",
        "NOW(6) - INTERVAL 1 HOUR",
    ))
    .await;
    ltax.exec(&format!(
        "UPDATE DJ_JL_JBSJ SET NSRMC = {}, GXSJ = NOW(6) - INTERVAL 1 HOUR WHERE JSJDM = 'L0001'",
        gbk("乌海市甲商贸有限责任公司")
    ))
    .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration where taxpayer_name = '乌海市甲商贸有限责任公司'",
        1,
        T,
    )
    .await;
    env.wait_verified(T).await;
    let status = env.wh.status().await.expect("status");
    assert!(status[0].late_changes >= 2, "{status:?}");
    let shown = ebis::status::render(&status, ebis::zone::Zone::Local);
    assert!(
        shown.contains("found by key comparison that the timestamp mark had passed by"),
        "{shown}"
    );
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_dated_an_hour_ahead_does_not_hide_the_writes_of_that_hour() {
    let env = Env::new(&[&LTAX_SCAN_HOURLY]).await;
    let ltax = env.db("ltax_hbw");
    ltax.exec(&taxpayer("L0001", "乌海市甲商贸有限公司", "NOW(6)"))
        .await;
    ltax.exec(&taxpayer(
        "L0009",
        "乌海市未来商贸有限公司",
        "NOW(6) + INTERVAL 1 HOUR",
    ))
    .await;
    let run = env.start();
    env.wait_count("select count(*) from exchange.tax_registration", 2, T)
        .await;
    // Ordinary writes keep arriving by polling alone (the next key comparison is an hour
    // away).
    tokio::time::sleep(Duration::from_secs(1)).await;
    ltax.exec(&taxpayer("L0002", "乌海市乙商贸有限公司", "NOW(6)"))
        .await;
    ltax.exec(&format!(
        "UPDATE DJ_JL_JBSJ SET NSRMC = {} WHERE JSJDM = 'L0001'",
        gbk("乌海市甲商贸有限责任公司")
    ))
    .await;
    // One more row dated ahead while streaming must not move the mark either.
    ltax.exec(&taxpayer(
        "L0010",
        "乌海市未来二商贸有限公司",
        "NOW(6) + INTERVAL 1 HOUR",
    ))
    .await;
    ltax.exec(&taxpayer("L0003", "乌海市丙商贸有限公司", "NOW(6)"))
        .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration where source_key in ('L0002', 'L0003')",
        2,
        T,
    )
    .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration where taxpayer_name = '乌海市甲商贸有限责任公司'",
        1,
        T,
    )
    .await;
    // The mark stays at or behind the source's clock.
    let mark: Option<String> = env
        .pg()
        .await
        .query_one(
            "select position -> 'tables' -> 'DJ_JL_JBSJ' ->> 'modified' from ebis.checkpoint",
            &[],
        )
        .await
        .expect("checkpoint")
        .get(0);
    let mark = chrono::NaiveDateTime::parse_from_str(
        mark.as_deref().expect("a mark"),
        "%Y-%m-%dT%H:%M:%S%.f",
    )
    .expect("a timestamp");
    let mut c = ltax.conn().await;
    let now: chrono::NaiveDateTime = c
        .query_first("SELECT NOW(6)")
        .await
        .expect("now")
        .expect("a row");
    assert!(
        mark <= now,
        "the mark {mark} passed the source's clock {now}"
    );
    // The first key comparison counted the row dated ahead, and status says so.
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].future_rows, 1, "{status:?}");
    assert!(
        ebis::status::render(&status, ebis::zone::Zone::Local)
            .contains("1 row(s) dated ahead of the source's clock"),
        "{}",
        ebis::status::render(&status, ebis::zone::Zone::Local)
    );
    assert!(run.stop().await.is_empty());
}

/// A row kept before migration 0053 holds its raw row as an object with no column list;
/// ebis keeps rows as values since. A key comparison reads the modified time from either,
/// so neither is read again for nothing, and a row the source changes is kept as values
/// from then on, its columns the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_comparisons_read_raw_rows_kept_as_objects_and_as_values() {
    let env = Env::new(&[&LTAX_SCAN_3S]).await;
    let ltax = env.db("ltax_hbw");
    // L0001 dated well before the others: polling, which reads again the rows dated
    // within its overlap of the latest, never reads it again.
    for (key, name, modified) in [
        (
            "L0001",
            "乌海市甲商贸有限公司",
            "NOW(6) - INTERVAL 10 MINUTE",
        ),
        (
            "L0002",
            "乌海市乙商贸有限公司",
            "NOW(6) - INTERVAL 1 MINUTE",
        ),
        (
            "L0003",
            "乌海市丙商贸有限公司",
            "NOW(6) - INTERVAL 1 MINUTE",
        ),
    ] {
        ltax.exec(&taxpayer(key, name, modified)).await;
    }
    let run = env.start();
    env.wait_count("select count(*) from exchange.tax_registration", 3, T)
        .await;
    let pg = env.pg().await;
    let objects = pg
        .execute(
            "update exchange.tax_registration
             set raw_row = ebis.raw_row(raw_layout, raw_row), raw_layout = null
             where source_key = 'L0001' and raw_layout is not null",
            &[],
        )
        .await
        .expect("L0001 as an earlier ebis kept it");
    assert_eq!(objects, 1);
    // A key comparison that begins after this sees every row.
    ltax.exec("DELETE FROM DJ_JL_JBSJ WHERE JSJDM = 'L0003'")
        .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration where source_key = 'L0003' and deleted_at is not null",
        1,
        T,
    )
    .await;
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].late_changes, 0, "rows read again: {status:?}");
    let layouts = "select source_key || ' ' || coalesce(raw_layout::text, 'object') from exchange.tax_registration
                   where source_key in ('L0001', 'L0002') order by 1";
    let kept = crate::support::pg::texts(&pg, layouts).await;
    assert!(
        kept[0] == "L0001 object" && kept[1].starts_with("L0002 ") && kept[1] != "L0002 object",
        "{kept:?}"
    );
    // Changed at the source, L0001 is kept as values, with L0002's list.
    ltax.exec(&format!(
        "UPDATE DJ_JL_JBSJ SET NSRMC = {}, GXSJ = NOW(6) WHERE JSJDM = 'L0001'",
        gbk("乌海市甲商贸有限责任公司")
    ))
    .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration
         where source_key = 'L0001' and taxpayer_name = '乌海市甲商贸有限责任公司'
           and raw_layout = (select raw_layout from exchange.tax_registration where source_key = 'L0002')
           and json_typeof(raw_row) = 'array'",
        1,
        T,
    )
    .await;
    let columns = "select string_agg(k, ',') from exchange.tax_registration,
                          json_object_keys(ebis.raw_row(raw_layout, raw_row)) k
                   where source_key in ('L0001', 'L0002') group by source_key";
    let columns = crate::support::pg::texts(&pg, columns).await;
    assert_eq!(columns.len(), 2);
    assert_eq!(columns[0], columns[1]);
    assert!(columns[0].contains("NSRMC,"), "{columns:?}");
    assert!(run.stop().await.is_empty());
}
