//! `ebis bench capture` end to end on the test servers, small: it runs every phase, leaves
//! no database behind, and reports what each phase cost in CPU beside its time. No figure
//! is asserted: they are read by people, on a quiet machine.

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
    };
    let report = ebis::bench::run(&opts, |_| ())
        .await
        .expect("the bench runs");

    assert!(report.snapshot_secs > 0.0 && report.base_secs >= report.snapshot_secs);
    assert!(report.stream_secs > 0.0 && report.catch_up_secs > 0.0);
    assert!(report.catch_up_base_secs >= report.catch_up_secs);
    assert!(report.cores >= 1);
    // ebis's own CPU is always read; the servers' when they run here (as in CI).
    assert!(report.load_cpu.ebis > 0.0, "{:?}", report.load_cpu);
    let text = report.render();
    assert!(
        text.contains("CPU of the first load until the base was complete: "),
        "{text}"
    );
    assert!(
        text.contains("CPU of the catch-up until the base was complete: "),
        "{text}"
    );
    if let (Some(wh), Some(src)) = (report.load_cpu.warehouse, report.load_cpu.source) {
        assert!(wh > 0.0 && src >= 0.0, "{:?}", report.load_cpu);
        assert!(
            text.contains("core-seconds (") && text.contains(" rows/s\n"),
            "{text}"
        );
        assert!(text.contains(" changes/s\n"), "{text}");
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
            floor.exchange_secs > 0.0 && floor.base_secs > 0.0,
            "{floor:?}"
        );
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
    }

    // Its throwaway databases are gone.
    let pg_admin = pg::connect(&pg::admin()).await;
    let left: i64 = pg_admin
        .query_one(
            "select count(*) from pg_database where datname = $1",
            &[&format!("ebis_bench_{}", std::process::id())],
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
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = 'ebis_bench_{}'",
            std::process::id()
        ))
        .await
        .expect("listing schemas");
    assert!(schemas.is_empty(), "the source database was dropped");
}
