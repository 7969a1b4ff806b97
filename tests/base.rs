//! The enterprise base off the apply path (migration 0019): applies only queue what they
//! touched, a drainer in `ebis run` takes the queue in behind them, and the comparison
//! trusts the base no further than it has taken records in.

use crate::support::harness::{AIC_CHANGELOG, Env, Rng, Running, aic_insert};
use crate::support::pg::{base_rows, texts};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// `rows` establishments registered at AIC (from `seed`), then `ebis run` started and
/// waited for until the base holds every one of them.
async fn loaded(env: &Env, rows: u64, seed: u64) -> (Running, Rng) {
    let aic = env.db("aic_city");
    let mut rng = Rng::new(seed);
    for id in 1..=rows {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_count(
        "select count(*) from core.enterprise where reg_no is not null",
        i64::try_from(rows).expect("rows"),
        T,
    )
    .await;
    (run, rng)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_never_wait_for_the_base_and_the_comparison_waits_for_it() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let (run, mut rng) = loaded(&env, 20, 13).await;

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
        ebis::zone::Zone::Local,
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
    // source's own completeness. (Nothing at all, `-infinity`, when the drain that took
    // the first load in ran before the source's first poll set its completeness: the
    // snapshot's end wakes the drainer.)
    let r = pg
        .query_one(
            "select (select complete_up_to from ebis.source_status where source = 'aic_city')::text,
                    (select max(complete_at) from compare.completeness where bureau = 'aic')::text,
                    (select max(complete_at) from compare.completeness where bureau = 'aic')
                      < (select complete_up_to from ebis.source_status where source = 'aic_city')",
            &[],
        )
        .await
        .expect("completeness");
    let (source, trusted, behind): (Option<String>, Option<String>, Option<bool>) =
        (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        behind,
        Some(true),
        "completeness {trusted:?} must stay behind the source's {source:?}"
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
        ebis::zone::Zone::Local,
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
        ebis::zone::Zone::Local,
    );
    assert!(line.contains("1 statement(s) parked"), "{line}");
    assert!(run.stop().await.is_empty());
}

/// `count` AIC establishments inserted into the warehouse in one statement, as an apply
/// of a snapshot chunk would; registration numbers `prefix` + number.
async fn insert_establishments(pg: &tokio_postgres::Client, prefix: &str, from: i64, count: i64) {
    pg.execute(
        "insert into exchange.aic_establishment
           (reg_no, name, address, established_on, source, bureau, division, source_key,
            change_position, change_version, mapping_version, raw_row)
         select $1 || lpad(n::text, 9, '0'), '乌海市第' || n || '商贸有限公司', '乌海市新华街' || n || '号',
                date '2006-03-01', 'aic_city', 'aic', '150302', n::text, 'snapshot', 1, 'v1', '{}'
         from generate_series($2::bigint, $2::bigint + $3::bigint - 1) n",
        &[&prefix, &from, &count],
    )
    .await
    .expect("insert establishments");
}

/// The base's keys and indexes, as definitions.
async fn base_indexes(pg: &tokio_postgres::Client) -> Vec<String> {
    texts(
        pg,
        "select indexdef from pg_indexes where schemaname = 'core'
           and tablename in ('identifier', 'enterprise') order by indexname",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_goes_into_the_base_by_one_rebuild_and_applies_never_wait_for_it() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let pg = env.pg().await;
    let indexes = base_indexes(&pg).await;
    assert!(indexes.len() >= 8, "{indexes:?}");
    // A first snapshot's chunks: three statements naming more identifiers than a rebuild
    // costs (20,000 at least), and a QTS code for one registration number.
    for chunk in 0..3 {
        insert_establishments(&pg, "150302", 1 + chunk * 11_000, 11_000).await;
    }
    pg.batch_execute(
        "insert into exchange.qts_code_issuance
           (reg_no, org_code, org_name, source, bureau, division, source_key, change_position,
            change_version, mapping_version, raw_row)
         values ('150302000000007', '100000016', '乌海市第7商贸有限公司', 'qts_city', 'qts', '150302',
                 '1', 'snapshot', 1, 'v1', '{}')",
    )
    .await
    .expect("a QTS code");
    let queued: i64 = pg
        .query_one("select count(*) from core.pending", &[])
        .await
        .expect("queue")
        .get(0);
    assert_eq!(queued, 4);
    // Each chunk's statement names its 11,000 registration numbers, stored compressed with
    // lz4 (compressing them with pglz took a third of the trigger's time).
    let stored: Vec<(i32, Option<String>)> = pg
        .query(
            "select cardinality(resolve_reg), pg_column_compression(resolve_reg)
             from core.pending where cardinality(resolve_reg) > 1 order by seq",
            &[],
        )
        .await
        .expect("queued statements")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored, vec![(11_000, Some("lz4".to_owned())); 3]);

    // Without rebuilds, a drain of one statement takes one.
    let took: i64 = pg
        .query_one("select core.drain(1, false)", &[])
        .await
        .expect("drain")
        .get(0);
    assert_eq!(took, 1);
    // With them, the rest goes in at once: the queue is larger than a quarter of the base.
    let took: i64 = pg
        .query_one("select core.drain(1)", &[])
        .await
        .expect("drain")
        .get(0);
    assert_eq!(took, 3, "the whole queue, by a rebuild");
    let row = pg
        .query_one(
            "select (select count(*) from core.enterprise),
                    (select count(*) from core.identifier),
                    (select count(*) from core.pending),
                    (select enterprise_key from core.identifier where reg_no = '150302000000007'
                       and record_kind = 'aic_establishment'),
                    (select count(*) from core.enterprise where name_norm is null)",
            &[],
        )
        .await
        .expect("base");
    let (enterprises, identifiers, pending, linked, unnamed): (i64, i64, i64, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(enterprises, 33_000, "one enterprise per registration");
    assert_eq!(identifiers, 33_001);
    assert_eq!(pending, 0);
    assert_eq!(linked, "100000016", "linked to the code QTS issued");
    assert_eq!(unnamed, 0);
    assert_eq!(
        base_indexes(&pg).await,
        indexes,
        "keys and indexes built again"
    );

    // While a rebuild holds the base, an apply goes on, and its statement stays queued
    // for the next drain.
    let rebuilding = env.pg().await;
    rebuilding
        .batch_execute("begin; select core.rebuild();")
        .await
        .expect("a rebuild in progress");
    tokio::time::timeout(
        Duration::from_secs(10),
        insert_establishments(&pg, "150303", 50_000, 10),
    )
    .await
    .expect("an apply never waits for a rebuild");
    rebuilding.batch_execute("commit").await.expect("commit");
    let queued: i64 = pg
        .query_one("select count(*) from core.pending", &[])
        .await
        .expect("queue")
        .get(0);
    assert_eq!(queued, 1, "the apply's statement, unseen by the rebuild");
    pg.execute("select core.settle()", &[])
        .await
        .expect("settle");
    env.wait_count("select count(*) from core.enterprise", 33_010, T)
        .await;
    assert_eq!(base_indexes(&pg).await, indexes);

    // After a rebuild every enterprise may have changed: the next comparison is full,
    // while one after a small drain is incremental.
    env.wh.compare().await.expect("a first comparison");
    insert_establishments(&pg, "150304", 60_000, 5).await;
    let small = env.wh.compare().await.expect("after a small drain");
    assert_eq!(small.kind, "incremental");
    pg.execute("select core.rebuild()", &[])
        .await
        .expect("rebuild");
    let after = env.wh.compare().await.expect("after a rebuild");
    assert_eq!(after.kind, "full");
}

/// The registered enterprise an unlicensed-business report names, as the comparison sees
/// it (completeness set aside, as a run collects its candidates).
async fn report_matches(pg: &tokio_postgres::Client) -> Vec<(String, Option<String>)> {
    pg.batch_execute("set ebis.all_candidates = 'on'")
        .await
        .expect("set");
    let rows = pg
        .query(
            "select subject, detail->>'matched_reg_no' from compare.unlicensed_business order by 1",
            &[],
        )
        .await
        .expect("reports");
    pg.batch_execute("reset ebis.all_candidates")
        .await
        .expect("reset");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_names_the_registered_enterprise_with_the_smallest_registration_number_whatever_its_length()
 {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let pg = env.pg().await;
    // Three registered enterprises of one name (in width variants the normalization
    // folds), and one whose name is longer than a B-tree entry may be.
    let long: String = "乌海市".to_owned() + &"长".repeat(3000) + "有限公司";
    pg.execute(
        "insert into exchange.aic_establishment
           (reg_no, name, address, established_on, source, bureau, division, source_key,
            change_position, change_version, mapping_version, raw_row)
         select r, n, '乌海市新华街1号', date '2006-03-01', 'aic_city', 'aic', '150302', r,
                'snapshot', 1, 'v1', '{}'
         from (values ('150302000000300', '乌海市同名商贸有限公司'),
                      ('150302000000100', '乌海市同名商贸 有限公司'),
                      ('150302000000200', '乌海市同名商贸有限公司'),
                      ('150302000000400', $1)) v(r, n)",
        &[&long],
    )
    .await
    .expect("establishments");
    pg.execute(
        "insert into exchange.tax_unlicensed
           (name, address, source, bureau, division, source_key, change_position, change_version,
            mapping_version, raw_row)
         values ('乌海市同名商贸有限公司', '乌海市新华街1号', 'ntax_city', 'ntax', '150302', 'a', 'snapshot', 1, 'v1', '{}'),
                ($1, '乌海市新华街1号', 'ntax_city', 'ntax', '150302', 'b', 'snapshot', 1, 'v1', '{}'),
                ('乌海市无照烧烤店', '乌海市滨河路8号', 'ntax_city', 'ntax', '150302', 'c', 'snapshot', 1, 'v1', '{}')",
        &[&long],
    )
    .await
    .expect("reports");
    pg.execute("select core.settle()", &[])
        .await
        .expect("settle");
    let expected = vec![
        (
            "U:ntax_city/a".to_owned(),
            Some("150302000000100".to_owned()),
        ),
        (
            "U:ntax_city/b".to_owned(),
            Some("150302000000400".to_owned()),
        ),
        ("U:ntax_city/c".to_owned(), None),
    ];
    assert_eq!(report_matches(&pg).await, expected);
    // With the smallest one's record removed, the next smallest is named.
    pg.execute(
        "delete from exchange.aic_establishment where reg_no = '150302000000100'",
        &[],
    )
    .await
    .expect("delete");
    pg.execute("select core.settle()", &[])
        .await
        .expect("settle");
    assert_eq!(
        report_matches(&pg).await[0],
        (
            "U:ntax_city/a".to_owned(),
            Some("150302000000200".to_owned())
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_refreshing_a_few_percent_of_the_base_probes_by_key_and_builds_what_a_rebuild_builds()
 {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let pg = env.pg().await;
    // A base of 160,000 enterprises (taken in by one rebuild), with statistics.
    for chunk in 0..4 {
        insert_establishments(&pg, "150302", 1 + chunk * 40_000, 40_000).await;
    }
    pg.batch_execute("select core.settle(); analyze core.enterprise")
        .await
        .expect("first load");
    // A catch-up batch: 6,400 renamed and moved, 10 deleted (more than a refresh by key
    // takes, under 5 % of the base).
    pg.batch_execute(
        "update exchange.aic_establishment set name = name || '（改）', address = address || '2楼',
                change_version = change_version + 1
         where source_key::bigint % 25 = 3;
         update exchange.aic_establishment set deleted_at = now() where source_key::bigint % 25 = 7 and source_key::bigint < 250",
    )
    .await
    .expect("changes");
    pg.batch_execute(
        "begin; set local track_functions = 'pl'; select core.drain(1000, false);
         create temp table ebis_t_calls as
           select funcname::text, calls from pg_stat_xact_user_functions
           where funcname in ('refresh_enterprises_probing', 'refresh_enterprises_scanning');
         commit",
    )
    .await
    .expect("drain");
    let calls: Vec<(String, i64)> = pg
        .query("select funcname, calls from ebis_t_calls order by 1", &[])
        .await
        .expect("calls")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(calls, [("refresh_enterprises_probing".to_owned(), 1)]);
    let drained = base_rows(&pg).await;
    assert_eq!(drained.len(), 159_990);
    let renamed: i64 = pg
        .query_one(
            "select count(*) from core.enterprise where name like '%（改）' and address like '%2楼'",
            &[],
        )
        .await
        .expect("renamed")
        .get(0);
    assert_eq!(renamed, 6_400);
    pg.execute("select core.rebuild()", &[])
        .await
        .expect("rebuild");
    assert!(
        base_rows(&pg).await == drained,
        "the probing refresh and a rebuild build the same base"
    );
}

/// Waits until the statistics collector shows at least `n` rows changed in
/// `exchange.aic_establishment` since its last analyze.
async fn wait_changes_counted(pg: &tokio_postgres::Client, n: i64) {
    let start = std::time::Instant::now();
    loop {
        let counted: i64 = pg
            .query_one(
                "select coalesce((select n_mod_since_analyze from pg_stat_user_tables
                                  where relid = 'exchange.aic_establishment'::regclass), 0)",
                &[],
            )
            .await
            .expect("statistics")
            .get(0);
        if counted >= n {
            return;
        }
        assert!(
            start.elapsed() < T,
            "the server never counted {n} changed rows ({counted})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn analyzed_now(pg: &tokio_postgres::Client) -> bool {
    let done: Vec<String> = pg
        .query_one("select ebis.analyze_stale()", &[])
        .await
        .expect("analyze_stale")
        .get(0);
    done.iter().any(|t| t == "exchange.aic_establishment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_of_renames_stays_on_its_pages_and_is_not_analyzed_again_but_a_load_is() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let pg = env.pg().await;
    insert_establishments(&pg, "150302", 1, 20_000).await;
    wait_changes_counted(&pg, 20_000).await;
    assert!(
        analyzed_now(&pg).await,
        "a table never analyzed is analyzed"
    );

    // A catch-up: a third of the enterprises renamed or moved, in batches.
    for part in 0..3i64 {
        pg.execute(
            "update exchange.aic_establishment set name = name || '（改）', address = address || '2楼',
                    change_version = change_version + 1
             where source_key::bigint % 9 = $1",
            &[&part],
        )
        .await
        .expect("renames");
    }
    wait_changes_counted(&pg, 6_600).await;
    assert!(
        !analyzed_now(&pg).await,
        "updates that moved no row count do not re-analyze the table"
    );
    let (updated, on_page): (i64, i64) = pg
        .query_one(
            "select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables
             where relid = 'exchange.aic_establishment'::regclass",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("update counts");
    assert!(updated >= 6_600, "{updated} updates counted");
    assert!(
        on_page * 2 > updated,
        "most renames stay on their page and touch no index: {on_page} of {updated}"
    );

    // A load: a quarter more rows. The plans' row counts moved: analyzed again.
    insert_establishments(&pg, "150303", 20_001, 5_000).await;
    wait_changes_counted(&pg, 11_600).await;
    assert!(
        analyzed_now(&pg).await,
        "a table that grew by a quarter is analyzed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_rewrites_only_the_enterprises_that_changed_and_a_move_touches_no_index() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let pg = env.pg().await;
    insert_establishments(&pg, "150302", 1, 2_000).await;
    pg.batch_execute("select core.settle()")
        .await
        .expect("first load");
    let before: Vec<String> = texts(
        &pg,
        "select enterprise_key || ' ' || updated_at from core.enterprise order by 1",
    )
    .await;
    // 200 moved, 100 renamed, 50 renamed and renamed back, 10 deleted, 20 new.
    pg.batch_execute(
        "update exchange.aic_establishment set address = address || '2楼', change_version = change_version + 1
          where source_key::bigint % 10 = 1;
         update exchange.aic_establishment set name = name || '（改）', change_version = change_version + 1
          where source_key::bigint % 20 = 2;
         update exchange.aic_establishment set name = name || '（暂）', change_version = change_version + 1
          where source_key::bigint % 40 = 4;
         update exchange.aic_establishment set name = left(name, -3), change_version = change_version + 1
          where source_key::bigint % 40 = 4;
         update exchange.aic_establishment set deleted_at = now() where source_key::bigint % 200 = 7",
    )
    .await
    .expect("changes");
    insert_establishments(&pg, "150302", 2_001, 20).await;
    // On a connection of its own: a backend's counters of transactions it ran less than a
    // second ago are not yet flushed and would show in this transaction's.
    let drainer = env.pg().await;
    drainer
        .batch_execute(
            "begin; select core.drain(1000, false);
         create temp table ebis_t_writes as
           select n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del from pg_stat_xact_user_tables
           where relid = 'core.enterprise'::regclass;
         commit",
        )
        .await
        .expect("drain");
    let (inserted, updated, on_page, deleted): (i64, i64, i64, i64) = drainer
        .query_one("select * from ebis_t_writes", &[])
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .expect("writes");
    assert_eq!(
        (inserted, updated, deleted),
        (20, 300, 10),
        "only the new, the changed and the gone enterprises are written"
    );
    assert!(
        on_page >= 180,
        "a move changes no indexed column and stays on its page: {on_page} of 200"
    );
    let after: Vec<String> = texts(
        &pg,
        "select enterprise_key || ' ' || updated_at from core.enterprise order by 1",
    )
    .await;
    let unchanged = after.iter().filter(|r| before.contains(r)).count();
    assert_eq!(
        unchanged,
        2_000 - 200 - 100 - 10,
        "an enterprise whose row did not change keeps its time of last change"
    );
    let drained = base_rows(&pg).await;
    assert_eq!(drained.len(), 2_010);
    pg.execute("select core.rebuild()", &[])
        .await
        .expect("rebuild");
    assert!(
        base_rows(&pg).await == drained,
        "the refresh in place and a rebuild build the same base"
    );
    // After a rebuild the next comparison is full: refreshes log no more keys for it.
    let logged = || async {
        texts(
            &pg,
            "select count(*) || ' ' || count(*) filter (where enterprise_key = '*') from compare.changed",
        )
        .await
    };
    let before = logged().await;
    pg.batch_execute(
        "update exchange.aic_establishment set address = address || '3楼', change_version = change_version + 1
          where source_key::bigint % 10 = 3;
         select core.settle()",
    )
    .await
    .expect("more moves");
    assert_eq!(logged().await, before);
    assert!(before[0].ends_with(" 1"), "a full run is due: {before:?}");
}

/// A warehouse with the AIC changelog source registered, and the source's name for applies.
async fn registered_aic_city() -> (Env, ebis::warehouse::SourceMeta<'static>) {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    env.wh
        .register_sources(&env.config().sources)
        .await
        .expect("register");
    let meta = ebis::warehouse::SourceMeta {
        name: "aic_city",
        bureau: "aic",
    };
    (env, meta)
}

/// A status that only sets the source's state.
fn state(state: &'static str) -> ebis::warehouse::StatusUpdate {
    ebis::warehouse::StatusUpdate {
        state: Some(state),
        ..ebis::warehouse::StatusUpdate::default()
    }
}

/// A batch that only writes the source's status.
fn status_only(status: ebis::warehouse::StatusUpdate) -> ebis::warehouse::ApplyBatch {
    let mut b = ebis::warehouse::ApplyBatch::new();
    b.status = status;
    b
}

/// A first load's records go into the base by one rebuild at its end. Taken in while it
/// runs, each drain would be a full rebuild of the base, wasted (the one at the end
/// repeats it): the drainer, and a comparison's settle, leave a loading source's
/// statements queued, and take the other sources' changes as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_waits_in_the_queue_while_other_sources_changes_reach_the_base() {
    use ebis::pipeline::{Shutdown, drain_base};
    let (env, meta) = registered_aic_city().await;
    env.wh
        .apply(meta, "seq 500", &status_only(state("snapshotting")))
        .await
        .expect("apply");
    let pg = env.pg().await;
    let queued = || async {
        texts(
            &pg,
            "select coalesce(source, '-') from core.pending order by seq",
        )
        .await
    };
    // A chunk the load applied an hour ago: an apply names its source in the transaction
    // (as `Warehouse::apply` does), and the trigger's statement is marked with it.
    pg.batch_execute("begin; select set_config('ebis.source', 'aic_city', true)")
        .await
        .expect("begin");
    insert_establishments(&pg, "150302", 1, 3).await;
    pg.batch_execute(
        "commit; update core.pending set queued_at = clock_timestamp() - interval '1 hour'",
    )
    .await
    .expect("commit");
    assert_eq!(queued().await, ["aic_city"]);
    // Another source's change; and a statement queued outside an apply has no source.
    insert_establishments(&pg, "150303", 100, 1).await;
    pg.batch_execute(
        "insert into core.pending (resolve_reg, source) values ('{110000000000002}', 'ntax_city')",
    )
    .await
    .expect("queue");
    assert_eq!(queued().await, ["aic_city", "-", "ntax_city"]);
    let (stop, shutdown) = Shutdown::new();
    let drainer = tokio::spawn(drain_base(
        env.wh.clone(),
        shutdown,
        Duration::from_millis(100),
    ));
    let until = |want: Vec<&'static str>| {
        let queued = &queued;
        async move {
            let mut now = Vec::new();
            for _ in 0..50 {
                now = queued().await;
                if now == want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            now
        }
    };
    assert_eq!(
        until(vec!["aic_city"]).await,
        ["aic_city"],
        "the other source's change is drained, the load's stays"
    );
    // A load's worth from a source whose load ended while this one's goes on (a new
    // city's first loads): no rebuild until the last load ends.
    pg.batch_execute(
        "insert into core.pending (resolve_reg, source)
           select array_agg((110000000000000 + g)::text), 'qts_city' from generate_series(10, 30009) g",
    )
    .await
    .expect("queue");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        env.wh
            .apply(meta, "seq 600", &status_only(state("snapshotting")))
            .await
            .expect("apply");
        assert_eq!(
            queued().await,
            ["aic_city", "qts_city"],
            "taken in while loading"
        );
    }
    // A comparison run meanwhile settles the base without taking the loads in.
    env.wh.compare().await.expect("compare");
    assert_eq!(queued().await, ["aic_city", "qts_city"]);
    // Operators see what waits for a load (qts_city's load ended; it waits for the rebuild
    // with aic_city's, but is not aic_city's).
    let line = ebis::status::render_base(
        &env.wh.base_status().await.expect("base status"),
        chrono::Utc::now(),
        ebis::zone::Zone::Local,
    );
    assert!(
        line.contains("2 statement(s) queued")
            && line.contains("1 of them wait for their source's first snapshot to end"),
        "{line}"
    );
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert!(
        page.contains("ebis_base_statements_waiting_for_loads 1"),
        "{page}"
    );
    // The base's lag, which alerts fire on, leaves out the load's hour-old statement that
    // waits for its end (the status line's oldest does not).
    assert!(line.contains("the oldest 60m"), "{line}");
    let lag: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("ebis_base_lag_seconds "))
        .expect("the base's lag")
        .parse()
        .expect("a number");
    assert!(lag < 600.0, "a load's wait counted as lag: {lag}");
    // Without a lease (status written by something other than `ebis run`), a load silent
    // for 2 minutes counts as dead (seen inside a transaction the drainer never sees).
    let loading = || async { texts(&pg, "select unnest(core.loading_sources())").await };
    assert_eq!(loading().await, ["aic_city"]);
    pg.batch_execute(
        "begin; update ebis.source_status set updated_at = clock_timestamp() - interval '121 seconds'",
    )
    .await
    .expect("silent");
    assert!(loading().await.is_empty());
    pg.batch_execute("rollback").await.expect("rollback");
    // A chunk slower than that while the process holds the source's lease (renewed in the
    // background, as `ebis run` does): the load still holds its statements back.
    pg.batch_execute(
        "insert into ebis.lease (source, holder, epoch, acquired_at, renewed_at, expires_at)
         values ('aic_city', 'host:1:a', 1, now(), now(), clock_timestamp() + interval '1 hour');
         update ebis.source_status set updated_at = clock_timestamp() - interval '121 seconds'",
    )
    .await
    .expect("lease");
    assert_eq!(loading().await, ["aic_city"]);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            queued().await,
            ["aic_city", "qts_city"],
            "taken in while a slow load held its lease"
        );
    }
    // The process died: its lease expires, and everything is taken in (however recently
    // its status was written).
    pg.batch_execute(
        "update ebis.source_status set updated_at = clock_timestamp();
         update ebis.lease set expires_at = clock_timestamp() - interval '1 second'",
    )
    .await
    .expect("expired");
    let left = until(vec![]).await;
    stop.trigger();
    drainer.await.expect("drainer");
    assert!(
        left.is_empty(),
        "a load whose lease expired held the drains back: {left:?}"
    );
    let base: i64 = pg
        .query_one("select count(*) from core.enterprise", &[])
        .await
        .expect("base")
        .get(0);
    assert_eq!(base, 4, "the load's and the other establishments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_catching_up_holds_the_drainer_back_a_minute_at_most_and_operators_see_it() {
    use ebis::pipeline::DEFER_DURING_CATCH_UP;
    use ebis::warehouse::StatusUpdate;
    let (env, meta) = registered_aic_city().await;
    let read = |backlog: bool| {
        status_only(StatusUpdate {
            state: Some("streaming"),
            backlog: Some(backlog),
            ..StatusUpdate::default()
        })
    };
    let pg = env.pg().await;
    // Something applied and queued for the base; then a batch that read a full batch.
    pg.execute("insert into core.pending default values", &[])
        .await
        .expect("queue");
    env.wh
        .apply(meta, "seq 500", &read(true))
        .await
        .expect("apply");
    let defer = || env.wh.defer_drain(DEFER_DURING_CATCH_UP);
    assert!(
        defer().await.expect("defer"),
        "the drainer waits for the catch-up"
    );
    let since = {
        let status = env.wh.status().await.expect("status");
        let since = status[0].backlog_since.expect("catching up since");
        let text = ebis::status::render(&status, ebis::zone::Zone::Local);
        assert!(
            text.contains("aic_city: catching up a backlog since"),
            "{text}"
        );
        since
    };
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert!(
        page.contains("ebis_catching_up{source=\"aic_city\"} 1"),
        "{page}"
    );
    // The next full batch keeps the time it began.
    env.wh
        .apply(meta, "seq 1000", &read(true))
        .await
        .expect("apply");
    assert_eq!(
        env.wh.status().await.expect("status")[0].backlog_since,
        Some(since)
    );
    // Not longer than the oldest queued statement may wait ...
    assert!(
        !env.wh.defer_drain(Duration::ZERO).await.expect("defer"),
        "a statement queued longer than the wait allows is drained"
    );
    // ... nor for a process that stopped writing (it died mid-way).
    pg.execute(
        "update ebis.source_status set updated_at = now() - interval '31 seconds'",
        &[],
    )
    .await
    .expect("stale");
    assert!(!defer().await.expect("defer"));
    // Caught up: the flag clears, and the drainer goes on.
    env.wh
        .apply(meta, "seq 1200", &read(false))
        .await
        .expect("apply");
    assert!(!defer().await.expect("defer"));
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].backlog_since, None);
    let text = ebis::status::render(&status, ebis::zone::Zone::Local);
    assert!(!text.contains("catching up"), "{text}");
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert!(
        page.contains("ebis_catching_up{source=\"aic_city\"} 0"),
        "{page}"
    );
    // A source that stops streaming (an error it retries) is not catching up either.
    env.wh
        .apply(meta, "seq 1700", &read(true))
        .await
        .expect("apply");
    env.wh
        .set_state("aic_city", "retrying", Some("source unreachable"))
        .await
        .expect("state");
    assert_eq!(
        env.wh.status().await.expect("status")[0].backlog_since,
        None
    );
    assert!(!defer().await.expect("defer"));
}

/// Calls of a warehouse function counted by the statistics collector (the server flushes
/// them about once a second), waited for until at least `want`.
async fn wait_calls(pg: &tokio_postgres::Client, function: &str, want: i64) -> i64 {
    let deadline = std::time::Instant::now() + T;
    loop {
        let calls: i64 = pg
            .query_one(
                "select coalesce(sum(calls), 0)::bigint from pg_stat_user_functions
                 where schemaname = 'core' and funcname = $1",
                &[&function],
            )
            .await
            .expect("function statistics")
            .get(0);
        if calls >= want || std::time::Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_drain_refreshes_on_two_connections_survives_dying_midway_and_builds_what_a_rebuild_builds()
 {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    env.wh
        .register_sources(&env.config().sources)
        .await
        .expect("register");
    let pg = env.pg().await;
    // Function calls counted, for connections opened from now on.
    pg.batch_execute(
        "do $$ begin execute format('alter database %I set track_functions = ''pl''', current_database()); end $$",
    )
    .await
    .expect("track functions");
    insert_establishments(&pg, "150302", 1, 40_000).await;
    pg.batch_execute("select core.settle(); analyze core.enterprise")
        .await
        .expect("first load");
    // A catch-up: 24,000 renamed, 300 deleted, 300 new, 200 moved to another
    // registration number (their enterprises change).
    pg.batch_execute(
        "update exchange.aic_establishment set name = name || '（改）', change_version = change_version + 1
         where source_key::bigint % 10 < 6 and source_key::bigint <= 40000;
         update exchange.aic_establishment set deleted_at = now() where source_key::bigint between 1001 and 1300;
         update exchange.aic_establishment set reg_no = '150303' || substr(reg_no, 7), change_version = change_version + 1
         where source_key::bigint between 2001 and 2200",
    )
    .await
    .expect("changes");
    insert_establishments(&pg, "150302", 40_001, 300).await;
    let queued: i64 = env.one("select count(*) from core.pending").await;
    assert!(queued > 0);

    // A drainer dies after taking and resolving, before refreshing: the statements stay
    // queued, the base is not complete past them, and its lock goes with its session.
    let drained_before: Option<chrono::DateTime<chrono::Utc>> = env
        .one("select max(drained_at) from core.base_complete")
        .await;
    {
        let dying = env.pg().await;
        dying
            .execute("select pg_advisory_lock(hashtext('ebis.core'))", &[])
            .await
            .expect("lock");
        let keys: Vec<String> = dying
            .query_one(
                "select keys from core.drain_prepare(500, false, 20000)",
                &[],
            )
            .await
            .expect("prepare")
            .get(0);
        assert!(keys.len() > 24_000, "{} enterprises to refresh", keys.len());
    }
    let still: i64 = env.one("select count(*) from core.pending").await;
    assert_eq!(still, queued + 1, "nothing left the queue");
    let moved_from: i64 = env
        .one("select sum(cardinality(refresh_keys))::bigint from core.pending")
        .await;
    assert!(
        moved_from >= 500,
        "the enterprises the resolve moved records away from (deleted, moved) stay queued: {moved_from}"
    );
    let renamed: i64 = env
        .one("select count(*) from core.enterprise where name like '%（改）'")
        .await;
    assert_eq!(renamed, 0, "not refreshed yet");

    // The next drain takes it all, on two connections.
    let wh =
        ebis::warehouse::Warehouse::new(env.config().warehouse.as_ref().expect("warehouse"), 4)
            .expect("warehouse");
    let deadline = std::time::Instant::now() + T;
    let taken = loop {
        match wh.drain_base(500, false).await.expect("drain") {
            // The dying session's lock may take a moment to go.
            -1 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n => break n,
        }
    };
    assert_eq!(taken, queued + 1);
    assert_eq!(env.one::<i64>("select count(*) from core.pending").await, 0);
    let drained_after: Option<chrono::DateTime<chrono::Utc>> = env
        .one("select max(drained_at) from core.base_complete")
        .await;
    assert!(drained_after > drained_before, "the base is complete again");
    assert_eq!(wait_calls(&pg, "drain_finish", 1).await, 1);
    assert!(
        wait_calls(&pg, "refresh_enterprises_now", 2).await >= 2,
        "both halves refreshed"
    );
    let renamed: i64 = env
        .one("select count(*) from core.enterprise where name like '%（改）'")
        .await;
    assert_eq!(renamed, 23_820, "24,000 renamed, 180 of them deleted since");
    // With no connection to spare for a helper (a pool of one), the lead refreshes all.
    pg.execute(
        "update exchange.aic_establishment set address = address || '2楼', change_version = change_version + 1
         where source_key::bigint % 10 >= 4",
        &[],
    )
    .await
    .expect("moves");
    let alone =
        ebis::warehouse::Warehouse::new(env.config().warehouse.as_ref().expect("warehouse"), 1)
            .expect("warehouse");
    assert!(alone.drain_base(500, false).await.expect("drain") > 0);
    assert_eq!(env.one::<i64>("select count(*) from core.pending").await, 0);
    let moved: i64 = env
        .one("select count(*) from core.enterprise where address like '%2楼'")
        .await;
    assert_eq!(moved, 24_000, "60 % of 40,000 moved");
    let drained = base_rows(&pg).await;
    assert_eq!(drained.len(), 40_000);
    pg.execute("select core.rebuild()", &[])
        .await
        .expect("rebuild");
    assert!(
        base_rows(&pg).await == drained,
        "the parallel drain and a rebuild build the same base"
    );
}

/// A rebuild is one long transaction (minutes for a city): `ebis status` and `/metrics`
/// show that it is at work, since when and at which step, while it runs.
#[tokio::test]
async fn a_rebuild_at_work_shows_in_status_and_metrics() {
    let (env, _meta) = registered_aic_city().await;
    let pg = env.pg().await;
    let gauge = |page: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix("ebis_base_rebuild_running_seconds "))
            .unwrap_or_else(|| panic!("no rebuild gauge: {page}"))
            .parse()
            .expect("a number")
    };
    let before = env.wh.base_status().await.expect("status");
    assert_eq!(before.rebuild, None);
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert_eq!(gauge(&page), 0.0);
    // A rebuild by hand whose transaction is still open: it has done its work and commits.
    pg.batch_execute("begin; select core.rebuild()")
        .await
        .expect("rebuild");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let at_work = env.wh.base_status().await.expect("status");
    let rebuild = at_work.rebuild.clone().expect("a rebuild at work is shown");
    assert_eq!(rebuild.step, "commit");
    let age = chrono::Utc::now() - rebuild.started;
    assert!(
        age > chrono::Duration::zero() && age < chrono::Duration::seconds(60),
        "{age}"
    );
    let line = ebis::status::render_base(&at_work, chrono::Utc::now(), ebis::zone::Zone::Local);
    assert!(
        line.contains("a rebuild of the base has been at work for")
            && line.ends_with("now committing"),
        "{line}"
    );
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert!(gauge(&page) > 0.0, "{page}");
    // Committed: nothing at work any more, and the connection's own name is back.
    pg.batch_execute("commit").await.expect("commit");
    assert_eq!(env.wh.base_status().await.expect("status").rebuild, None);
    assert_eq!(
        gauge(&ebis::metrics::render(&env.wh).await.expect("metrics")),
        0.0
    );
    let name = texts(&pg, "select current_setting('application_name')").await;
    assert!(!name[0].starts_with("ebis:base-rebuild"), "{name:?}");
}

/// A large drain (the refresh after a catch-up, minutes at a city's scale) shows in
/// `ebis status` and `/metrics` while it runs, with what it refreshes; nothing is left
/// shown once it ended.
#[tokio::test]
async fn a_long_drain_at_work_shows_in_status_and_metrics() {
    let (env, _meta) = registered_aic_city().await;
    let pg = env.pg().await;
    let gauge = |page: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix("ebis_base_drain_running_seconds "))
            .unwrap_or_else(|| panic!("no drain gauge: {page}"))
            .parse()
            .expect("a number")
    };
    insert_establishments(&pg, "150302", 1, 24_000).await;
    pg.batch_execute("select core.settle()")
        .await
        .expect("first load");
    assert_eq!(env.wh.base_status().await.expect("status").drain, None);
    assert_eq!(
        gauge(&ebis::metrics::render(&env.wh).await.expect("metrics")),
        0.0
    );
    // A catch-up renames 21,000 enterprises (more than a drain refreshes in its first
    // step, on one connection); another session holds one of them, so the drain's refresh
    // waits for it.
    pg.execute(
        "update exchange.aic_establishment set name = name || '（改）', change_version = change_version + 1
         where source_key::bigint <= 21000",
        &[],
    )
    .await
    .expect("renames");
    let holder = env.pg().await;
    holder
        .batch_execute(
            "begin; select 1 from core.enterprise
                     where enterprise_key = (select enterprise_key from core.identifier where source_key = '10')
                     for update",
        )
        .await
        .expect("hold one enterprise");
    let wh = env.wh.clone();
    let drain = tokio::spawn(async move { wh.drain_base(1_000, false).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let at_work = loop {
        let b = env.wh.base_status().await.expect("status");
        if let Some(d) = b.drain.as_ref()
            && d.step.starts_with("refresh:")
        {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drain shown refreshing: {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let d = at_work.drain.clone().expect("a drain");
    assert_eq!(d.kind, ebis::warehouse::BaseWorkKind::Drain);
    assert_eq!(d.doing(), "refreshing 21000 enterprises");
    assert_eq!(at_work.rebuild, None);
    let page = ebis::metrics::render(&env.wh).await.expect("metrics");
    assert!(gauge(&page) > 0.0, "{page}");
    // Short, it is left out of the status line; long, it is in.
    let line = ebis::status::render_base(&at_work, d.started, ebis::zone::Zone::Local);
    assert!(!line.contains("at work"), "{line}");
    let later = d.started + chrono::Duration::seconds(7);
    let line = ebis::status::render_base(&at_work, later, ebis::zone::Zone::Local);
    assert!(
        line.contains("a drain of the base has been at work for 7s")
            && line.ends_with("now refreshing 21000 enterprises"),
        "{line}"
    );
    holder.batch_execute("commit").await.expect("let go");
    let taken = drain.await.expect("task").expect("drain");
    assert!(taken > 0, "{taken}");
    let renamed: i64 = env
        .one("select count(*) from core.enterprise where name like '%（改）'")
        .await;
    assert_eq!(renamed, 21_000);
    assert_eq!(env.wh.base_status().await.expect("status").drain, None);
    assert_eq!(
        gauge(&ebis::metrics::render(&env.wh).await.expect("metrics")),
        0.0
    );
    // The pool's connections carry their own name again.
    let names = texts(
        &pg,
        "select application_name from pg_stat_activity
          where datname = current_database() and application_name like 'ebis:%'",
    )
    .await;
    assert!(names.is_empty(), "{names:?}");
}

/// The environment's config with `poll_interval: 60s`: the drainer of `ebis run` then
/// waits a minute between short drains.
fn poll_every_minute(env: &Env) {
    let path = env.config_path();
    let yaml = std::fs::read_to_string(&path).expect("config");
    assert!(yaml.contains("poll_interval: 200ms"), "{yaml}");
    std::fs::write(
        &path,
        yaml.replace("poll_interval: 200ms", "poll_interval: 60s"),
    )
    .expect("config");
    assert_eq!(env.config().poll_interval, Duration::from_secs(60));
}

/// A first load waits in the base's queue until its snapshot ends (migration 0048); then
/// its rebuild starts at once, not after the drainer's idle wait, which is the poll
/// interval: a minute, where a bureau is polled that slowly.
#[tokio::test]
async fn a_first_load_reaches_the_base_when_its_snapshot_ends_whatever_the_poll_interval() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    poll_every_minute(&env);
    // In the base well within the minute the drainer would otherwise sleep after its
    // first drain, which ran while the snapshot did.
    let (run, _) = loaded(&env, 50, 29).await;
    let complete: i64 = env
        .one("select count(*) from core.base_complete where source = 'aic_city'")
        .await;
    assert_eq!(complete, 1, "the base is complete for the source");
    assert!(run.stop().await.is_empty());
}

/// A catch-up holds the drainer back (a minute at most, migration 0033); its end wakes it,
/// so the base takes the backlog in then, not one idle wait (the poll interval) later.
#[tokio::test]
async fn a_catch_up_reaches_the_base_when_it_ends_whatever_the_poll_interval() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let (run, _) = loaded(&env, 50, 31).await;
    assert!(run.stop().await.is_empty());
    poll_every_minute(&env);
    // A backlog while stopped: 1,500 changes, three batches of 500.
    for round in 0..30 {
        aic.exec(&format!(
            "UPDATE E_BASEINFO SET ENTNAME = CONCAT('乌海市第{round}轮商贸有限公司', PRIPID)"
        ))
        .await;
    }
    let run = env.start();
    env.wait_count(
        "select count(*) from exchange.aic_establishment where name like '乌海市第29轮%'",
        50,
        T,
    )
    .await;
    // Well within the minute the drainer would otherwise sleep after a pass that found
    // the queue empty or the source catching up.
    env.wait_count(
        "select count(*) from core.enterprise where name like '乌海市第29轮%'",
        50,
        Duration::from_secs(30),
    )
    .await;
    assert!(run.stop().await.is_empty());
}
