//! The source's schema and the mappings change under a running capture: a mapping added
//! later (a new table, a new record kind of a table already captured) brings the rows
//! that existed before it; a captured table renamed with its triggers loses nothing.

use crate::support::harness::{Env, Rng, SourceDef, aic_insert};
use crate::support::mysql::{MyDb, bureau_schema};
use crate::support::{TempDir, copy_dir, ebis, root, run};
use mysql_async::prelude::Queryable;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

/// An AIC source on its own database with a copy of the mappings the test may edit.
async fn aic_env(mappings: &Path) -> (MyDb, Env) {
    let db = MyDb::create(&bureau_schema("aic")).await;
    let env = Env::custom(vec![SourceDef {
        name: "aic_city".to_owned(),
        bureau: "aic".to_owned(),
        division: "150300".to_owned(),
        capture: "mode: changelog\ngap_timeout: 30s".to_owned(),
        connection: db.conn.clone(),
        mappings: mappings.to_owned(),
    }])
    .await;
    (db, env)
}

async fn wait_state(env: &Env, state: &str) {
    env.wait_count(
        &format!("select count(*) from ebis.source_status where state = '{state}'"),
        1,
        T,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_added_to_a_running_source_bring_the_rows_that_existed_before() {
    let mappings = TempDir::new("ebis_added");
    copy_dir(&root().join("mappings/aic"), mappings.path());
    // At first the source maps neither annual inspections (a table of its own) nor
    // revocations (a record kind of E_BASEINFO, which is captured).
    let held = TempDir::new("ebis_added_later");
    for f in ["aic_annual_inspection.yaml", "aic_revocation.yaml"] {
        std::fs::rename(mappings.path().join(f), held.path().join(f)).expect("move");
    }
    let (db, env) = aic_env(mappings.path()).await;
    let mut rng = Rng::new(5);
    for id in 1..=20 {
        db.exec(&aic_insert(id, &mut rng)).await;
    }
    db.exec("UPDATE E_BASEINFO SET REGSTATE = '2', REVDATE = '2006-10-01', REVREA = '未年检' WHERE PRIPID <= 4")
        .await;
    db.exec(
        "INSERT INTO E_NJ_BASEINFO (NJ_ID, PRIPID, NJND, NJJG) VALUES (1, 1, '2005', '1'), (2, 2, '2005', '3'), (3, 3, '2006', '1')",
    )
    .await;
    let running = env.start();
    env.wait_count("select count(*) from exchange.aic_establishment", 20, T)
        .await;
    wait_state(&env, "streaming").await;
    assert!(running.stop().await.is_empty());

    // More inspections while nothing captures the table; then the DBA adds both mappings
    // and installs capture for the new table.
    db.exec("INSERT INTO E_NJ_BASEINFO (NJ_ID, PRIPID, NJND, NJJG) VALUES (4, 4, '2006', '2')")
        .await;
    db.exec("DELETE FROM E_NJ_BASEINFO WHERE NJ_ID = 3").await;
    for f in ["aic_annual_inspection.yaml", "aic_revocation.yaml"] {
        std::fs::rename(held.path().join(f), mappings.path().join(f)).expect("move back");
    }
    ebis::setup::install_all(&env.config())
        .await
        .expect("install capture on the new table");
    let running = env.start();
    // Streaming goes on meanwhile.
    db.exec(&aic_insert(21, &mut rng)).await;
    db.exec("INSERT INTO E_NJ_BASEINFO (NJ_ID, PRIPID, NJND, NJJG) VALUES (5, 21, '2006', '1')")
        .await;
    env.wait_count(
        "select count(*) from exchange.aic_annual_inspection where deleted_at is null",
        4,
        T,
    )
    .await;
    env.wait_count(
        "select count(*) from exchange.aic_revocation where deleted_at is null",
        4,
        T,
    )
    .await;
    env.wait_verified(T).await;
    // Recorded as covered: the next start snapshots nothing again.
    let captured: serde_json::Value = env
        .pg()
        .await
        .query_one("select captured from ebis.checkpoint", &[])
        .await
        .expect("checkpoint")
        .get(0);
    assert_eq!(
        captured["E_NJ_BASEINFO"],
        serde_json::json!(["aic_annual_inspection"])
    );
    assert!(
        captured["E_BASEINFO"]
            .as_array()
            .is_some_and(|k| k.contains(&serde_json::json!("aic_revocation"))),
        "{captured}"
    );
    assert!(running.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_table_renamed_with_its_triggers_loses_nothing() {
    let mappings = TempDir::new("ebis_rename");
    copy_dir(&root().join("mappings/aic"), mappings.path());
    let (db, env) = aic_env(mappings.path()).await;
    let mut rng = Rng::new(6);
    for id in 1..=5 {
        db.exec(&aic_insert(id, &mut rng)).await;
    }
    db.exec(
        "INSERT INTO E_NJ_BASEINFO (NJ_ID, PRIPID, NJND, NJJG) VALUES (1, 1, '2005', '1'), (2, 2, '2005', '3')",
    )
    .await;
    let running = env.start();
    env.wait_count("select count(*) from exchange.aic_annual_inspection", 2, T)
        .await;
    wait_state(&env, "streaming").await;

    // The bureau renames the table; its triggers go along and keep logging the old name.
    db.exec("RENAME TABLE E_NJ_BASEINFO TO E_NJ_INFO").await;
    db.exec("INSERT INTO E_NJ_INFO (NJ_ID, PRIPID, NJND, NJJG) VALUES (3, 3, '2006', '1')")
        .await;
    db.exec("UPDATE E_NJ_INFO SET NJJG = '2' WHERE NJ_ID = 1")
        .await;
    db.exec("DELETE FROM E_NJ_INFO WHERE NJ_ID = 2").await;
    // ebis stops that source with the repair, instead of skipping the changes.
    wait_state(&env, "failed").await;
    let status = env.wh.status().await.expect("status");
    let error = status[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("E_NJ_BASEINFO does not exist any more") && error.contains("setup-source"),
        "{error}"
    );
    let failed = running.stop().await;
    assert_eq!(failed.len(), 1);

    // The DBA points the mapping at the new name. Without re-running setup-source, the
    // check says what is wrong and how to repair it.
    let file = mappings.path().join("aic_annual_inspection.yaml");
    let text = std::fs::read_to_string(&file).expect("mapping");
    std::fs::write(&file, text.replace("E_NJ_BASEINFO", "E_NJ_INFO")).expect("edit");
    let cli = |args: &[&str]| {
        run(ebis(&root())
            .arg("--config")
            .arg(env.config_path())
            .args(args))
    };
    let out = cli(&["check", "--online"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("table E_NJ_INFO carries the ebis trigger ebis_e_nj_baseinfo_")
            && out.stdout.contains("logs its changes as E_NJ_BASEINFO"),
        "{}",
        out.stdout
    );
    // The printed script holds the repair; --apply runs it.
    let out = cli(&["setup-source", "aic_city"]);
    assert!(
        out.stdout.contains(
            "UPDATE `ebis_change` SET table_name = 'E_NJ_INFO' WHERE table_name = 'E_NJ_BASEINFO'"
        ) && out
            .stdout
            .contains("DROP TRIGGER IF EXISTS `ebis_e_nj_baseinfo_ai`"),
        "{}",
        out.stdout
    );
    let out = cli(&["setup-source", "aic_city", "--apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("dropped trigger ebis_e_nj_baseinfo_ai on E_NJ_INFO"),
        "{}",
        out.stdout
    );
    let mut c = db.conn().await;
    // Catalog queries through the text protocol (see ebis-mysql's catalog module).
    let triggers: Vec<String> = c
        .query(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
             WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'E_NJ_INFO' ORDER BY 1",
        )
        .await
        .expect("triggers");
    assert_eq!(
        triggers,
        [
            "ebis_e_nj_info_ad",
            "ebis_e_nj_info_ai",
            "ebis_e_nj_info_au"
        ]
    );
    // One write logs one change now.
    let before: i64 = c
        .query_first("SELECT COUNT(*) FROM ebis_change")
        .await
        .expect("count")
        .expect("row");
    c.query_drop("UPDATE E_NJ_INFO SET NJJG = '3' WHERE NJ_ID = 3")
        .await
        .expect("update");
    let after: i64 = c
        .query_first("SELECT COUNT(*) FROM ebis_change")
        .await
        .expect("count")
        .expect("row");
    assert_eq!(after - before, 1, "a write must be logged once");

    // Everything logged in between arrives.
    let running = env.start();
    env.wait_verified(T).await;
    let pg = env.pg().await;
    let rows: Vec<(String, Option<String>, bool)> = pg
        .query(
            "select source_key, result, deleted_at is null from exchange.aic_annual_inspection order by source_key",
            &[],
        )
        .await
        .expect("inspections")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("1".to_owned(), Some("基本合格".to_owned()), true),
            ("2".to_owned(), Some("不合格".to_owned()), false),
            ("3".to_owned(), Some("不合格".to_owned()), true),
        ]
    );
    assert!(running.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dba_installs_capture_for_a_reading_account_and_removes_it_again() {
    use crate::support::mysql::admin_url_with_password;
    let mappings = TempDir::new("ebis_setup");
    copy_dir(&root().join("mappings/aic"), mappings.path());
    let db = MyDb::create(&bureau_schema("aic")).await;
    // The reading account ebis runs with: SELECT only.
    let (_cleanup, reader) = db.reader().await;
    // Timestamp mode installs nothing; the source then moves to changelog capture.
    let env = Env::custom(vec![SourceDef {
        name: "aic_city".to_owned(),
        bureau: "aic".to_owned(),
        division: "150300".to_owned(),
        capture: "mode: timestamp".to_owned(),
        connection: reader,
        mappings: mappings.path().to_owned(),
    }])
    .await;
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    std::fs::write(
        env.config_path(),
        config.replace("mode: timestamp", "mode: changelog"),
    )
    .expect("config");
    let cli = |args: &[&str], admin: Option<&str>| {
        let mut cmd = ebis(&root());
        cmd.arg("--config").arg(env.config_path()).args(args);
        if let Some(url) = admin {
            cmd.env("EBIS_SOURCE_ADMIN_URL", url);
        }
        run(&mut cmd)
    };
    // The reader may not install: the error says how a DBA does it.
    let out = cli(&["setup-source", "aic_city", "--apply"], None);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("EBIS_SOURCE_ADMIN_URL") && out.stderr.contains("aic_city"),
        "{}",
        out.stderr
    );
    // A DBA account given without a database installs into the source's.
    let admin = admin_url_with_password();
    assert!(
        admin.ends_with('/'),
        "the admin URL names no database: {admin}"
    );
    let out = cli(&["setup-source", "aic_city", "--apply"], Some(&admin));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut c = db.conn().await;
    const TRIGGERS: &str = "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE 'ebis\\_%'";
    assert_eq!(
        c.query_first::<i64, _>(TRIGGERS).await.expect("count"),
        Some(9)
    );
    let out = cli(&["check", "--online"], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Removing capture: printed for review, then run.
    let out = cli(&["setup-source", "aic_city", "--remove"], None);
    assert!(
        out.stdout
            .contains("DROP TRIGGER IF EXISTS `ebis_e_baseinfo_ai`")
            && out.stdout.contains("DROP TABLE IF EXISTS `ebis_change`"),
        "{}",
        out.stdout
    );
    let out = cli(
        &["setup-source", "aic_city", "--remove", "--apply"],
        Some(&admin),
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        c.query_first::<i64, _>(TRIGGERS).await.expect("count"),
        Some(0)
    );
    let tables: Option<i64> = c
        .query_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ebis_change'",
        )
        .await
        .expect("tables");
    assert_eq!(tables, Some(0));
}
