//! What an operator does around a running pipeline from the command line: `status` as a
//! check with exit codes, and `reset-source` to make a source start over.

use crate::support::harness::{AIC_CHANGELOG, Env, Rng, aic_insert};
use crate::support::{ebis, root, run};
use std::time::Duration;

const LIVE: &str = "select count(*) from exchange.aic_establishment where deleted_at is null";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_source_is_refused_while_running_and_makes_a_stopped_source_start_over() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let cli = |args: &[&str]| {
        run(ebis(&root())
            .arg("--config")
            .arg(env.config_path())
            .args(args))
    };
    // `reset-source aic_city`: its exit code, and what it says.
    let reset = |code: i32, says: &str| {
        let out = cli(&["reset-source", "aic_city"]);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, code, "{text}");
        assert!(text.contains(says), "{text}");
    };
    reset(0, "has no stored position");
    let out = cli(&["reset-source", "aic_town"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no source `aic_town`") && out.stderr.contains("aic_city"),
        "{}",
        out.stderr
    );

    let mut rng = Rng::new(11);
    for id in 0..20 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let running = env.start();
    env.wait_count(LIVE, 20, Duration::from_secs(60)).await;
    reset(
        1,
        "source aic_city is being captured by a running ebis process",
    );
    assert!(running.stop().await.is_empty());
    let requested: Option<String> = env
        .one("select reset_requested from ebis.checkpoint where source = 'aic_city'")
        .await;
    assert_eq!(requested, None, "refused: nothing was changed");

    // While ebis is stopped, the bureau's changes reach its table but not its change
    // table (a DBA emptied it, a restore): streaming alone would never see them.
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市重置之后有限公司' WHERE PRIPID = 3")
        .await;
    aic.exec("DELETE FROM E_BASEINFO WHERE PRIPID = 4").await;
    aic.exec("DELETE FROM ebis_change").await;

    reset(0, "will start over at its next run");
    let running = env.start();
    env.wait_verified(Duration::from_secs(60)).await;
    let name: String = env
        .one("select name from exchange.aic_establishment where source = 'aic_city' and source_key = '3'")
        .await;
    assert_eq!(name, "乌海市重置之后有限公司");
    let gone: bool = env
        .one("select deleted_at is not null from exchange.aic_establishment where source = 'aic_city' and source_key = '4'")
        .await;
    assert!(gone, "the row deleted meanwhile is found by key comparison");
    let (count, reason): (i32, String) = {
        let row = env
            .pg()
            .await
            .query_one(
                "select resnapshots, last_resnapshot_reason from ebis.source_status where source = 'aic_city'",
                &[],
            )
            .await
            .expect("status");
        (row.get(0), row.get(1))
    };
    assert_eq!(count, 1, "one re-snapshot");
    assert!(
        reason.starts_with("reset by an operator (ebis reset-source) at "),
        "{reason}"
    );
    let reset: Option<String> = env
        .one("select reset_requested from ebis.checkpoint where source = 'aic_city'")
        .await;
    assert_eq!(
        reset, None,
        "the request is done once the restart is stored"
    );
    // Streaming goes on from the new head.
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市重置再改有限公司' WHERE PRIPID = 5")
        .await;
    env.wait_verified(Duration::from_secs(30)).await;
    assert!(running.stop().await.is_empty());
    let still: i32 = env
        .one("select resnapshots from ebis.source_status where source = 'aic_city'")
        .await;
    assert_eq!(still, 1, "a restart happens once per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_4_when_a_source_lags_more_than_max_lag() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(12);
    for id in 0..5 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let running = env.start();
    env.wait_count(LIVE, 5, Duration::from_secs(60)).await;
    assert!(running.stop().await.is_empty());
    let status = |max_lag: &str| {
        run(ebis(&root()).arg("--config").arg(env.config_path()).args([
            "status",
            "--max-lag",
            max_lag,
        ]))
    };
    let out = status("1h");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("(times in UTC"), "{}", out.stdout);
    // Stopped, the source falls behind: its lag grows past a small limit.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = status("1s");
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("lag over 1s: aic_city (exit 4)"),
        "{}",
        out.stdout
    );
    let out = status("1m30s");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = status("soon");
    assert_eq!(out.code, 2, "clap refuses the value: {}", out.stderr);
    assert!(
        out.stderr.contains("`soon` is not a duration"),
        "{}",
        out.stderr
    );
}
