//! A stored position the source can no longer resume from no longer stops the source:
//! ebis records why, snapshots it again from a new head while streaming goes on, deletes
//! what vanished meanwhile, and keeps versions above every one stored (a recreated change
//! table numbers from 1 again).

use crate::support::harness::{AIC_CHANGELOG, Env, Rng, aic_insert};
use std::time::Duration;

const LIVE: &str = "select count(*) from exchange.aic_establishment where deleted_at is null";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_change_table_is_recovered_by_snapshotting_again() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(5);
    for id in 0..30 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count(LIVE, 30, Duration::from_secs(60)).await;
    for id in 30..40 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    env.wait_count(LIVE, 40, Duration::from_secs(30)).await;
    assert!(run.stop().await.is_empty());

    // While ebis is stopped, a DBA empties the change table the wrong way: TRUNCATE
    // starts its numbering again, below ebis's stored position. Then the bureau writes on.
    aic.exec("TRUNCATE TABLE ebis_change").await;
    aic.exec("DELETE FROM E_BASEINFO WHERE PRIPID = 5").await;
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市重新快照有限公司' WHERE PRIPID = 7")
        .await;
    for id in 40..45 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }

    let run = env.start();
    env.wait_verified(Duration::from_secs(60)).await;
    let pg = env.pg().await;
    let row = pg
        .query_one(
            "select resnapshots, last_resnapshot_reason, state from ebis.source_status where source = 'aic_city'",
            &[],
        )
        .await
        .expect("status");
    assert_eq!(row.get::<_, i32>(0), 1, "one re-snapshot recorded");
    let reason: String = row.get(1);
    assert!(reason.contains("truncated or recreated"), "{reason}");
    let name: String = pg
        .query_one(
            "select name from exchange.aic_establishment where source = 'aic_city' and source_key = '7'",
            &[],
        )
        .await
        .expect("row 7")
        .get(0);
    assert_eq!(name, "乌海市重新快照有限公司");
    let deleted: bool = pg
        .query_one(
            "select deleted_at is not null from exchange.aic_establishment where source = 'aic_city' and source_key = '5'",
            &[],
        )
        .await
        .expect("row 5")
        .get(0);
    assert!(
        deleted,
        "the row deleted while capture was blind is deleted"
    );

    // The change table's new, lower numbers still win over versions stored before.
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市之后再改有限公司' WHERE PRIPID = 8")
        .await;
    aic.exec("DELETE FROM E_BASEINFO WHERE PRIPID = 9").await;
    env.wait_verified(Duration::from_secs(30)).await;
    let text = ebis::status::render(
        &env.wh.status().await.expect("status"),
        ebis::zone::Zone::Local,
    );
    assert!(
        text.contains("aic_city: snapshotted again from a new head at"),
        "status shows why the source was snapshotted again:\n{text}"
    );
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_capture_mode_snapshots_again_instead_of_stopping() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(6);
    for id in 0..20 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count(LIVE, 20, Duration::from_secs(60)).await;
    assert!(run.stop().await.is_empty());

    // The operator switches the source to timestamp capture on its modified column.
    let path = env.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    let switched = text.replace(
        "mode: changelog\n      gap_timeout: 30s",
        "mode: timestamp\n      overlap: 2s\n      key_scan_every: 1s\n      modified_column: LAST_UPDATED",
    );
    assert_ne!(switched, text, "the capture block was found");
    std::fs::write(&path, switched).expect("write config");
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市换模式有限公司' WHERE PRIPID = 3")
        .await;
    aic.exec("DELETE FROM E_BASEINFO WHERE PRIPID = 4").await;

    let run = env.start();
    env.wait_verified(Duration::from_secs(60)).await;
    let reason: String = env
        .pg()
        .await
        .query_one(
            "select last_resnapshot_reason from ebis.source_status where source = 'aic_city'",
            &[],
        )
        .await
        .expect("status")
        .get(0);
    assert!(
        reason.contains("changed from changelog to timestamp"),
        "{reason}"
    );
    assert!(run.stop().await.is_empty());
}
