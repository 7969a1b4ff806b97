//! `ebis migrate` on a throwaway database: every table and comment, idempotence, refusal
//! of changed or unknown applied migrations.

use crate::support::{ebis, pg::PgDb, root, run};
use ebis::indicators::{Owner, RECORD_KINDS};
use ebis::warehouse::MIGRATIONS;

fn migrate(db: &PgDb) -> crate::support::Ran {
    run(ebis(&root())
        .env(
            "EBIS_WAREHOUSE_URL",
            crate::support::pg::with_password(&db.url),
        )
        .arg("migrate"))
}

#[tokio::test]
async fn migrate_creates_every_record_kind_with_its_fields_and_comments() {
    let db = PgDb::create().await;
    let out = migrate(&db);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("applied 0002_exchange.sql"),
        "{}",
        out.stdout
    );
    let c = db.client().await;
    for kind in RECORD_KINDS {
        let comment: Option<String> = c
            .query_one(
                "select obj_description(format('exchange.%I', $1::text)::regclass, 'pg_class')",
                &[&kind.name],
            )
            .await
            .unwrap_or_else(|e| panic!("table exchange.{}: {e}", kind.name))
            .get(0);
        assert!(
            comment
                .as_deref()
                .is_some_and(|t| t.starts_with(kind.label)),
            "{}: {comment:?}",
            kind.name
        );
        let cols = c
            .query(
                "select column_name::text, data_type::text,
                        col_description(format('exchange.%I', table_name)::regclass, ordinal_position::int)
                 from information_schema.columns
                 where table_schema = 'exchange' and table_name = $1 order by ordinal_position",
                &[&kind.name],
            )
            .await
            .expect("columns");
        let names: Vec<String> = cols.iter().map(|r| r.get(0)).collect();
        for (i, f) in kind.fields.iter().enumerate() {
            assert_eq!(names[i], f.name, "{} column {i}", kind.name);
            assert_eq!(
                cols[i].get::<_, String>(1),
                f.ty.sql_type(),
                "{}.{}",
                kind.name,
                f.name
            );
            assert_eq!(
                cols[i].get::<_, Option<String>>(2).as_deref(),
                Some(f.label),
                "{}.{} comment",
                kind.name,
                f.name
            );
        }
        let provenance = [
            "source",
            "bureau",
            "division",
            "source_key",
            "change_position",
            "change_version",
            "source_commit_time",
            "applied_at",
            "mapping_version",
            "raw_row",
            "deleted_at",
            "raw_layout",
        ];
        assert_eq!(&names[kind.fields.len()..], provenance, "{}", kind.name);
        for r in &cols {
            let comment: Option<String> = r.get(2);
            assert!(
                comment.is_some_and(|t| !t.is_empty()),
                "{}.{} has no comment",
                kind.name,
                r.get::<_, String>(0)
            );
        }
        let pk: String = c
            .query_one(
                "select pg_get_constraintdef(oid) from pg_constraint
                 where conrelid = format('exchange.%I', $1::text)::regclass and contype = 'p'",
                &[&kind.name],
            )
            .await
            .expect("primary key")
            .get(0);
        assert_eq!(pk, "PRIMARY KEY (source, source_key)", "{}", kind.name);
        // Tax kinds accept only the two tax bureaus.
        let other = if kind.owner == Owner::Tax {
            "aic"
        } else {
            "ntax"
        };
        let bad = c
            .execute(
                &format!(
                    "insert into exchange.{} (source, bureau, division, source_key, change_position, change_version, mapping_version, raw_row)
                     values ('s', $1, '150302', 'k', 'p', 1, 'v', '{{}}')",
                    kind.name
                ),
                &[&other],
            )
            .await;
        assert!(bad.is_err(), "{} accepted bureau {other}", kind.name);
    }
    let state_tables: Vec<String> = c
        .query(
            "select table_name::text from information_schema.tables where table_schema = 'ebis' order by 1",
            &[],
        )
        .await
        .expect("ebis tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in [
        "checkpoint",
        "coverage",
        "gap_log",
        "migration",
        "quarantine",
        "raw_layout",
        "replication_lag",
        "source_status",
    ] {
        assert!(
            state_tables.iter().any(|x| x == t),
            "ebis.{t} missing: {state_tables:?}"
        );
    }
}

#[tokio::test]
async fn migrating_twice_changes_nothing() {
    let db = PgDb::create().await;
    assert_eq!(migrate(&db).code, 0);
    let c = db.client().await;
    let before: Vec<(i32, String)> = c
        .query(
            "select version, applied_at::text from ebis.migration order by 1",
            &[],
        )
        .await
        .expect("q")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(before.len(), MIGRATIONS.len());
    let again = migrate(&db);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("is up to date"), "{}", again.stdout);
    let after: Vec<(i32, String)> = c
        .query(
            "select version, applied_at::text from ebis.migration order by 1",
            &[],
        )
        .await
        .expect("q")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused() {
    let db = PgDb::create().await;
    assert_eq!(migrate(&db).code, 0);
    let c = db.client().await;
    // What the warehouse would hold had 0002 been applied from different content.
    c.execute(
        "update ebis.migration set checksum = repeat('0', 64) where version = 2",
        &[],
    )
    .await
    .expect("tamper");
    let out = migrate(&db);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("migration 0002_exchange.sql was applied on")
            && out.stderr.contains("its file has changed since"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_migration_from_a_newer_build_is_refused() {
    let db = PgDb::create().await;
    assert_eq!(migrate(&db).code, 0);
    let c = db.client().await;
    c.execute(
        "insert into ebis.migration (version, name, checksum) values (999, '0999_future.sql', 'x')",
        &[],
    )
    .await
    .expect("insert");
    let out = migrate(&db);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("0999_future.sql") && out.stderr.contains("upgrade ebis"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn migrate_without_a_warehouse_says_how_to_give_one() {
    let dir = crate::support::TempDir::new("ebis_nowh");
    let out = run(ebis(dir.path()).arg("migrate"));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("EBIS_WAREHOUSE_URL"), "{}", out.stderr);
}

#[tokio::test]
async fn the_base_trigger_looks_identifiers_up_by_primary_key_on_a_chinese_collation() {
    // A bureau warehouse runs on a non-C collation; there a `name` compared with a text
    // column cannot use an index, and the base trigger scanned core.identifier whole.
    let db = PgDb::create().await;
    assert_eq!(migrate(&db).code, 0);
    let c = db.client().await;
    let collation: String = c
        .query_one(
            "select coalesce(nullif(daticulocale, ''), datcollate) from pg_database where datname = current_database()",
            &[],
        )
        .await
        .expect("collation")
        .get(0);
    assert!(
        !matches!(collation.as_str(), "C" | "POSIX"),
        "the test warehouse must not use the C collation: {collation}"
    );
    c.batch_execute(
        "insert into exchange.aic_establishment (reg_no, name, address, source, bureau, division, source_key,
                change_position, change_version, mapping_version, raw_row)
         select '150302' || lpad(g::text, 9, '0'), '乌海市企业' || g, '新华街' || g, 'aic_city', 'aic', '150302',
                g::text, 'p', 1, 'v', '{}'
         from generate_series(1, 300) g;
         analyze;",
    )
    .await
    .expect("load");
    let (c, notices) = crate::support::pg::connect_collecting_notices(&db.conn).await;
    c.batch_execute(
        "load 'auto_explain';
         set auto_explain.log_min_duration = 0;
         set auto_explain.log_nested_statements = on;
         set client_min_messages = log;
         select core.settle();
         update exchange.aic_establishment set name = name || '分公司', change_version = 2
          where source_key in ('7', '8', '9');
         select core.drain(10);",
    )
    .await
    .expect("rename three enterprises");
    let plans = notices.lock().expect("notices").join("\n");
    assert!(
        plans.contains("Index Cond: ((record_kind = "),
        "the refresh lookup must use core.identifier's primary key:\n{plans}"
    );
    assert!(
        !plans.contains("Filter: (record_kind = "),
        "no lookup may filter core.identifier by record kind row by row:\n{plans}"
    );
}
