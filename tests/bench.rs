//! `ebis bench capture` and `ebis bench compare` end to end on the test servers, small:
//! they run every phase and leave no database behind; the capture bench reports what each
//! phase cost in CPU beside its time, the comparison bench that its runs found the
//! simulator's truth and that its incremental run agreed with a full one. No figure is
//! asserted: they are read by people, on a quiet machine.

use crate::support::{mysql, pg};
use ebis::bench::{BenchMode, BenchOptions};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_capture_bench_runs_every_phase_and_reports_its_cpu() {
    let opts = BenchOptions {
        mysql: mysql::admin(),
        pg: pg::admin(),
        rows: 3000,
        changes: 300,
        writers: 2,
        batch_size: 500,
        keep: false,
        mode: BenchMode::Changelog,
        rate: None,
        // As a bureau's deployment would collate its warehouse.
        warehouse_locale: Some("zh-Hans-CN".to_owned()),
    };
    let report = ebis::bench::run(&opts, |_| ())
        .await
        .expect("the bench runs");

    assert!(report.snapshot_secs > 0.0 && report.base_secs >= report.snapshot_secs);
    assert!(report.stream_secs > 0.0 && report.catch_up_secs > 0.0);
    assert!(report.catch_up_base_secs >= report.catch_up_secs);
    assert!(report.cores >= 1);
    // The warehouse was created with the ICU locale asked for, and the report says so.
    assert!(
        report
            .server
            .ends_with("default collation zh-Hans-CN (ICU)"),
        "{}",
        report.server
    );
    // ebis's own CPU is always read; the servers' when they run here (as in CI).
    assert!(report.load_cpu.ebis > 0.0, "{:?}", report.load_cpu);
    let text = report.render();
    assert!(
        text.contains("CPU of the first load's snapshot: ")
            && text.contains("CPU of the first load until the base was complete: "),
        "{text}"
    );
    // The snapshot is part of the first load.
    assert!(
        report.snapshot_cpu.ebis > 0.0 && report.snapshot_cpu.ebis <= report.load_cpu.ebis,
        "{:?} {:?}",
        report.snapshot_cpu,
        report.load_cpu
    );
    assert!(
        text.contains("CPU of the catch-up until every change was applied: "),
        "{text}"
    );
    assert!(
        text.contains("CPU of the catch-up until the base was complete: "),
        "{text}"
    );
    // The apply's CPU is part of the whole catch-up's (which goes on while the base
    // takes the changes in).
    assert!(
        report.catch_up_apply_cpu.ebis > 0.0
            && report.catch_up_apply_cpu.ebis <= report.catch_up_cpu.ebis,
        "{:?} {:?}",
        report.catch_up_apply_cpu,
        report.catch_up_cpu
    );
    if let (Some(wh), Some(src)) = (report.load_cpu.warehouse, report.load_cpu.source) {
        assert!(wh > 0.0 && src >= 0.0, "{:?}", report.load_cpu);
        assert!(
            text.contains("core-seconds (") && text.contains(" rows/s; of the machine's "),
            "{text}"
        );
        assert!(text.contains(" changes/s; of the machine's "), "{text}");
        // The machine's cores counted at least what the three processes used, and say
        // where the rest went.
        let m = report.load_cpu.machine.expect("/proc/stat is read");
        assert!(
            m.total >= 0.9 * (wh + src + report.load_cpu.ebis) && m.idle >= 0.0 && m.iowait >= 0.0,
            "{m:?} {:?}",
            report.load_cpu
        );
        assert!(text.contains(" idle waiting on I/O, "), "{text}");
    }
    assert!(text.contains("`psql \\copy` load"), "{text}");
    // Where psql ran the raw \copy, it also wrote the first load's output alone: the
    // exchange rows, then the base, each part timed and printed.
    if report.raw_copy.is_some() {
        let floor = report
            .floor
            .as_ref()
            .expect("psql ran, so the first load's writes alone were measured");
        assert!(
            floor.exchange_secs() > 0.0 && floor.base_secs() > 0.0,
            "{floor:?}"
        );
        // Each table's rows and its keys and indexes apart: where a narrower design saves.
        let tables: Vec<&str> = floor.parts.iter().map(|p| p.table).collect();
        assert_eq!(
            tables,
            [
                "exchange.aic_establishment",
                "core.identifier",
                "core.enterprise"
            ]
        );
        for p in &floor.parts {
            assert!(p.rows_secs > 0.0 && p.index_secs > 0.0, "{p:?}");
            assert!(
                text.contains(&format!(
                    "{} rows {:.1} s, keys and indexes {:.1} s",
                    p.table, p.rows_secs, p.index_secs
                )),
                "{text}"
            );
        }
        assert!(text.contains("the first load's writes alone ("), "{text}");
        // And the catch-up's: the rows it upserted, upserted again by ebis's statement.
        let catch_up = report
            .catch_up_floor
            .as_ref()
            .expect("psql ran, so the catch-up's writes alone were measured");
        assert!(
            catch_up.rows > 0 && catch_up.rows <= report.changes && catch_up.secs > 0.0,
            "{catch_up:?}"
        );
        assert!(text.contains("the catch-up's writes alone (the "), "{text}");
        // With the servers on this machine, the warehouse's CPU for those writes was read,
        // table by table, and the ceiling line is made from it.
        if let (Some(w), Some(_)) = (floor.warehouse_cpu(), report.snapshot_cpu.source) {
            // (Read for each table; a few thousand rows may take less than the 10 ms
            // tick the kernel counts CPU in.)
            assert!(
                w >= 0.0
                    && floor
                        .parts
                        .iter()
                        .all(|p| p.warehouse_cpu.is_some_and(|c| c >= 0.0)),
                "{floor:?}"
            );
            assert!(
                text.contains(&format!(
                    "ceiling of a first load that writes what ebis writes: the writes alone took {w:.1} core-seconds of the warehouse server; "
                )),
                "{text}"
            );
        }
    }

    // Its throwaway databases are gone.
    throwaway_databases_are_gone(&format!("ebis_bench_{}", std::process::id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_compare_bench_finds_the_truth_and_its_incremental_run_agrees() {
    let report =
        ebis::bench::compare_bench(&mysql::admin(), &pg::admin(), 400, false, None, |_| ())
            .await
            .expect("the bench runs");
    assert!(report.base_rows > 0 && report.findings > 0, "{report:?}");
    // Every rule found exactly the planted discrepancies.
    for s in &report.scores {
        assert_eq!((s.false_positives, s.false_negatives), (0, 0), "{s:?}");
    }
    // The enterprises and tax reports changed, then an incremental run over them found
    // what a full run finds.
    assert!(report.changed > 0 && report.changed_reports > 0);
    assert_eq!(report.incremental.0, "incremental", "{report:?}");
    let evaluated = report
        .incremental
        .1
        .expect("an incremental run counts its keys");
    assert!(evaluated >= report.changed as i64, "{report:?}");
    assert_eq!(report.full_after, (0, 0), "{}", report.render());

    throwaway_databases_are_gone(&format!("ebis_bench_compare_{}", std::process::id())).await;

    // A run that fails once the bureaus' databases exist (no warehouse server answers on
    // port 1) says why and leaves none of them behind.
    let nowhere = ebis::config::ConnectionConfig::from_url(
        "postgres://postgres@127.0.0.1:1/postgres",
        "EBIS_TEST_PG_PASSWORD",
        "--pg-url",
    )
    .expect("a URL");
    let e = ebis::bench::compare_bench(&mysql::admin(), &nowhere, 50, false, None, |_| ())
        .await
        .expect_err("no warehouse server there");
    assert!(format!("{e:#}").contains("127.0.0.1"), "{e:#}");
    throwaway_databases_are_gone(&format!("ebis_bench_compare_{}", std::process::id())).await;
}

/// No warehouse database `name` is left, and no MariaDB database `name` or `name_…`.
async fn throwaway_databases_are_gone(name: &str) {
    let pg_admin = pg::connect(&pg::admin()).await;
    let left: i64 = pg_admin
        .query_one(
            "select count(*) from pg_database where datname = $1",
            &[&name],
        )
        .await
        .expect("counting databases")
        .get(0);
    assert_eq!(left, 0, "the warehouse database was dropped");
    let mut c = mysql::pool(&mysql::admin())
        .get_conn()
        .await
        .expect("MariaDB");
    let schemas: Vec<String> = c
        .query(format!(
            "SELECT schema_name FROM information_schema.schemata
             WHERE schema_name = '{name}' OR schema_name LIKE '{name}\\_%'"
        ))
        .await
        .expect("listing schemas");
    assert!(
        schemas.is_empty(),
        "the source databases were dropped: {schemas:?}"
    );
}
