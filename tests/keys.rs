//! Keys the source does not guarantee: refused before anything is captured, or — when a
//! mapping vouches for one — NULL keys quarantined row by row and shared keys reported.

use crate::support::harness::{Env, SourceDef};
use crate::support::mysql::MyDb;
use crate::support::{TempDir, ebis, root, run};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A table kept by an application that never declared a key.
const TABLE: &str = "CREATE TABLE QY_DJ (
    REGNO   VARCHAR(20) NULL,
    ENTNAME VARCHAR(200) NOT NULL,
    ESTDATE DATE NULL
) DEFAULT CHARSET=utf8mb4";

fn mapping(trust: bool) -> String {
    format!(
        "record_kind: aic_establishment
source:
  table: QY_DJ
  key: [REGNO]{}
fields:
  reg_no: {{column: REGNO}}
  name: {{column: ENTNAME}}
  established_on: {{column: ESTDATE}}
",
        if trust { "\n  trust_key: true" } else { "" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_source_does_not_enforce_is_refused_unless_a_mapping_vouches_for_it() {
    let db = MyDb::create(&[TABLE.to_owned()]).await;
    db.exec(
        "INSERT INTO QY_DJ VALUES ('150302000000011', '乌海市甲商贸有限公司', '2006-01-01'),
                                  ('150302000000011', '乌海市乙商贸有限公司', '2006-02-01'),
                                  (NULL, '乌海市丙商贸有限公司', '2006-03-01'),
                                  (NULL, '乌海市丁商贸有限公司', '2006-04-01'),
                                  ('150302000000022', '乌海市戊商贸有限公司', '2006-05-01')",
    )
    .await;
    let mappings = TempDir::new("ebis_keys");
    let file = mappings.path().join("aic_establishment.yaml");
    std::fs::write(&file, mapping(false)).expect("mapping");
    let env = Env::custom(vec![SourceDef {
        name: "aic_keys".to_owned(),
        bureau: "aic".to_owned(),
        division: "150302".to_owned(),
        capture: "mode: changelog".to_owned(),
        connection: db.conn.clone(),
        mappings: mappings.path().to_owned(),
    }])
    .await;

    // check --online says what is wrong and what to do.
    let out = run(ebis(&root())
        .arg("--config")
        .arg(env.config_path())
        .args(["check", "--online"]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "source aic_keys: error: source table QY_DJ: key (REGNO) is not guaranteed unique"
        ) && out.stdout.contains("source.trust_key: true"),
        "{}",
        out.stdout
    );
    // So does `run`: the source stops before capturing anything.
    let running = env.start();
    env.wait_count(
        "select count(*) from ebis.source_status where state = 'failed'",
        1,
        T,
    )
    .await;
    let failed = running.stop().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].1.contains("not guaranteed unique"), "{failed:?}");
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "failed");
    let n: i64 = env
        .pg()
        .await
        .query_one("select count(*) from exchange.aic_establishment", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "nothing is captured under a refused key");

    // A unique index that is not the key's does not help; one within it does, but the
    // column still allows NULL.
    db.exec("CREATE UNIQUE INDEX QY_DJ_NAME ON QY_DJ (ENTNAME)")
        .await;
    let out = run(ebis(&root())
        .arg("--config")
        .arg(env.config_path())
        .args(["check", "--online"]));
    assert!(
        out.stdout.contains("key (REGNO) is not guaranteed unique"),
        "{}",
        out.stdout
    );

    // The DBA vouches for the key: NULL-key rows go to quarantine one by one, and the
    // shared key is reported by verify rather than passing as "ok".
    std::fs::write(&file, mapping(true)).expect("mapping");
    let running = env.start();
    env.wait_count(
        "select count(*) from ebis.quarantine where field = 'key' and resolved_at is null",
        2,
        T,
    )
    .await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment where deleted_at is null",
        2,
        T,
    )
    .await;
    let reports = env.verify().await.expect("verify");
    assert_eq!(reports[0].duplicate_keys, 1, "{reports:?}");
    assert!(
        !reports[0].agrees(),
        "3 rows became 2: verify must not say ok"
    );
    assert!(
        ebis::verify::render(&reports).contains("DIFFERS"),
        "{}",
        ebis::verify::render(&reports)
    );
    let reason: String = env
        .pg()
        .await
        .query_one(
            "select reason from ebis.quarantine where field = 'key' limit 1",
            &[],
        )
        .await
        .expect("reason")
        .get(0);
    assert!(reason.contains("key column REGNO is NULL"), "{reason}");
    assert_eq!(running.stop().await, Vec::<(String, String)>::new());
}
