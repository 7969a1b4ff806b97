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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_of_a_whole_run_carry_fields_and_never_an_enterprise_value() {
    use mysql_async::prelude::Queryable;
    use std::process::Stdio;
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(13);
    for id in 0..40 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    // A row the warehouse refuses (a NUL in its name): quarantined, with a warning logged.
    aic.exec(&aic_insert(40, &mut rng)).await;
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = CONCAT('乌海泄露测试', CHAR(0), '有限公司') WHERE PRIPID = 40")
        .await;
    let log = crate::support::TempDir::new("ebis_json_log");
    let log_path = log.path().join("stderr.log");
    let mut child = ebis(&root())
        .env("EBIS_LOG", "debug")
        .arg("--log-format")
        .arg("json")
        .arg("--config")
        .arg(env.config_path())
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn ebis run");
    env.wait_count(LIVE, 40, Duration::from_secs(60)).await;
    // Streaming too: renames, a move, a delete.
    for id in 0..10 {
        aic.exec(&format!(
            "UPDATE E_BASEINFO SET ENTNAME = '乌海市日志第{id}号有限公司', DOM = '乌海市滨河路{id}号' WHERE PRIPID = {id}"
        ))
        .await;
    }
    aic.exec("DELETE FROM E_BASEINFO WHERE PRIPID = 39").await;
    env.wait_count(LIVE, 39, Duration::from_secs(30)).await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment where name like '乌海市日志第%'",
        10,
        Duration::from_secs(30),
    )
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(child.wait().expect("wait").success());

    // Every value the bureau holds, as it holds it.
    let rows: Vec<(String, String, String, String)> = aic
        .conn()
        .await
        .query("SELECT ENTNAME, REGNO, NAME, DOM FROM E_BASEINFO")
        .await
        .expect("source rows");
    let mut values: Vec<String> = rows
        .into_iter()
        .flat_map(|(a, b, c, d)| [a, b, c, d])
        .collect();
    values.extend([
        "乌海泄露测试".to_owned(),
        "乌海市日志第3号有限公司".to_owned(),
    ]);
    let text = std::fs::read_to_string(&log_path).expect("log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 5, "a run logs: {text}");
    let mut with_position = 0;
    let mut with_table = 0;
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            event.get("level").is_some() && event.get("message").is_some(),
            "{line}"
        );
        if event.get("position").is_some() && event.get("batch").is_some() {
            assert_eq!(event["source"], "aic_city", "{line}");
            with_position += 1;
        }
        if event.get("table").is_some() {
            with_table += 1;
        }
        for v in &values {
            if v.chars().count() >= 4 {
                assert!(
                    !line.contains(v.as_str()),
                    "a log line carries `{v}`: {line}"
                );
            }
        }
    }
    assert!(
        with_position >= 2,
        "batches are logged with their position:\n{text}"
    );
    assert!(
        with_table >= 1,
        "snapshot chunks are logged with their table:\n{text}"
    );
    let quarantined: i64 = env
        .one("select count(*) from ebis.quarantine where source_key = '40' and resolved_at is null")
        .await;
    assert_eq!(quarantined, 1, "the refused row went through the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotated_at_the_server_and_in_its_file_is_picked_up_without_a_restart() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let user = format!("{}_pw", aic.name);
    aic.create_reader(&user, " IDENTIFIED BY 'first-secret'")
        .await;
    let secrets = crate::support::TempDir::new("ebis_secrets");
    let file = secrets.path().join("aic_password");
    std::fs::write(&file, "first-secret\n").expect("password file");
    // The source logs in as that account, its password from the file.
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let host = aic.url.split('@').nth(1).expect("host");
    let mut rewritten = Vec::new();
    let mut skip_env = false;
    for line in config.lines() {
        if skip_env && line.trim_start().starts_with("password_env:") {
            skip_env = false;
            continue;
        }
        skip_env = false;
        if line.trim() == format!("url: {}", aic.url) {
            rewritten.push(format!("      url: mysql://{user}@{host}"));
            rewritten.push(format!("      password_file: '{}'", file.display()));
            skip_env = true;
            continue;
        }
        rewritten.push(line.to_owned());
    }
    std::fs::write(env.config_path(), rewritten.join("\n") + "\n").expect("config");

    let mut rng = Rng::new(14);
    for id in 0..10 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let running = env.start();
    env.wait_count(LIVE, 10, Duration::from_secs(60)).await;

    // The bureau's DBA rotates the password; the server's connections are cut (a restart,
    // an idle timeout), so the next login needs it.
    aic.exec(&format!(
        "ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY 'second-secret'"
    ))
    .await;
    let kill_sessions = || async {
        use mysql_async::prelude::Queryable;
        let mut c = aic.conn().await;
        let ids: Vec<u64> = c
            .query(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
            ))
            .await
            .expect("sessions");
        for id in ids {
            let _ = c.query_drop(format!("KILL {id}")).await;
        }
    };
    kill_sessions().await;
    for id in 10..20 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    // Refused logins are retried, not fatal, and say why.
    let start = std::time::Instant::now();
    loop {
        let (state, error): (String, Option<String>) = {
            let row = env
                .pg()
                .await
                .query_one(
                    "select state, last_error from ebis.source_status where source = 'aic_city'",
                    &[],
                )
                .await
                .expect("status");
            (row.get(0), row.get(1))
        };
        if state == "retrying"
            && error
                .as_deref()
                .is_some_and(|e| e.contains("the server refused the login"))
        {
            break;
        }
        assert_ne!(state, "failed", "{error:?}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never saw the refused login retried: {state} {error:?}"
        );
        kill_sessions().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new password reaches the file (a secret manager, a systemd credential): the
    // source goes on, without a restart, and nothing is lost.
    std::fs::write(&file, "second-secret\n").expect("password file");
    env.wait_count(LIVE, 20, Duration::from_secs(60)).await;
    env.wait_verified(Duration::from_secs(30)).await;
    assert!(running.stop().await.is_empty(), "no source failed");
    aic.exec(&format!("DROP USER '{user}'@'127.0.0.1'")).await;
}

/// The AIC source registered and its lease taken by `host-a:1:1` for `ttl`.
async fn leased_by_a(ttl: Duration) -> (Env, ebis::warehouse::Lease) {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    env.wh
        .register_sources(&env.config().sources)
        .await
        .expect("register");
    let a = env
        .wh
        .acquire_lease("aic_city", "host-a:1:1", ttl)
        .await
        .expect("acquire")
        .expect("free");
    (env, a)
}

/// The AIC source's lease as stored: holder, epoch, seconds until it expires.
async fn lease_row(env: &Env) -> (String, i64, f64) {
    let row = env
        .pg()
        .await
        .query_one(
            "select holder, epoch, extract(epoch from expires_at - clock_timestamp())::float8
             from ebis.lease where source = 'aic_city'",
            &[],
        )
        .await
        .expect("lease");
    (row.get(0), row.get(1), row.get(2))
}

/// The AIC source's lease runs out, as when its holder stalls (a GC pause, a partition).
async fn expire_lease(env: &Env) {
    env.pg()
        .await
        .execute(
            "update ebis.lease set expires_at = clock_timestamp() - interval '1 second' where source = 'aic_city'",
            &[],
        )
        .await
        .expect("expire");
}

/// What an apply of the AIC source writes when it has no rows: its status.
fn status_only() -> ebis::warehouse::ApplyBatch {
    let mut b = ebis::warehouse::ApplyBatch::new();
    b.status = ebis::warehouse::StatusUpdate {
        state: Some("streaming"),
        ..Default::default()
    };
    b
}

const AIC_META: ebis::warehouse::SourceMeta<'static> = ebis::warehouse::SourceMeta {
    name: "aic_city",
    bureau: "aic",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_lease_was_taken_over_writes_nothing_more() {
    let ttl = Duration::from_secs(5);
    let (env, a) = leased_by_a(ttl).await;
    let b_wh = env.wh.clone();
    // While A holds it, B cannot take it.
    assert_eq!(
        b_wh.acquire_lease("aic_city", "host-b:2:2", ttl)
            .await
            .expect("acquire"),
        None
    );
    env.wh.fence(a.clone());
    env.wh
        .apply(AIC_META, "seq 1", &status_only())
        .await
        .expect("A applies while it holds the lease");
    env.wh
        .set_state("aic_city", "retrying", Some("A's source refused a login"))
        .await
        .expect("A sets its state");
    let state = "select state || ' / ' || coalesce(last_error, '-') from ebis.source_status where source = 'aic_city'";
    assert_eq!(
        env.one::<String>(state).await,
        "retrying / A's source refused a login",
        "the holder writes its source's state and error"
    );
    env.wh
        .apply(AIC_META, "seq 1", &status_only())
        .await
        .expect("A streams again");
    // A stalls (a GC pause, a partition) past its lease; B takes the source over.
    expire_lease(&env).await;
    let b = b_wh
        .acquire_lease("aic_city", "host-b:2:2", ttl)
        .await
        .expect("acquire")
        .expect("expired: B takes it");
    assert_eq!(b.epoch, a.epoch + 1, "a take-over raises the epoch");
    let before: String = env
        .one("select updated_at::text from ebis.source_status where source = 'aic_city'")
        .await;
    let err = env
        .wh
        .apply(AIC_META, "seq 2", &status_only())
        .await
        .expect_err("A's apply is refused");
    assert!(
        matches!(err, ebis::warehouse::WarehouseError::LeaseLost(_)),
        "{err}"
    );
    assert!(
        !env.wh.renew_lease(&a, ttl).await.expect("renew"),
        "A cannot renew"
    );
    // Before it learns of the take-over, A fails (or retries, or stops): the state and
    // error it would write are not B's, and are not written.
    for (st, error) in [
        ("retrying", Some("A lost its source")),
        ("failed", Some("A's mapping is wrong")),
        ("stopped", None),
    ] {
        env.wh
            .set_state("aic_city", st, error)
            .await
            .expect("A's status write runs, and changes nothing");
    }
    assert_eq!(
        env.one::<String>(state).await,
        "streaming / A's source refused a login",
        "the state is the last A wrote while it held the source"
    );
    let after: String = env
        .one("select updated_at::text from ebis.source_status where source = 'aic_city'")
        .await;
    assert_eq!(
        before, after,
        "nothing of A's apply or status writes was written"
    );
    let holders = env.wh.lease_holders().await.expect("holders");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].holder, "host-b:2:2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_waits_for_an_apply_in_flight_but_the_holders_renewals_do_not() {
    let ttl = Duration::from_secs(30);
    let (env, a) = leased_by_a(ttl).await;
    env.wh.fence(a.clone());
    let (meta, batch) = (AIC_META, status_only());
    // An apply in flight: the second half of a split batch, held open (its fence taken,
    // its rows written) until the first half says it committed.
    let (first_half, before) = tokio::sync::watch::channel(None);
    let in_flight = {
        let wh = env.wh.clone();
        let batch = batch.clone();
        tokio::spawn(async move { wh.apply_after(meta, "seq 1", &batch, Some(&before)).await })
    };
    let fenced = "select count(*) from pg_stat_activity
                  where datname = current_database() and state = 'idle in transaction'
                    and query like '%from ebis.lease%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.one::<i64>(fenced).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never took its fence"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The holder renews its lease while its apply is in flight, without waiting for it.
    let renewed = tokio::time::timeout(Duration::from_secs(5), env.wh.renew_lease(&a, ttl))
        .await
        .expect("a renewal does not wait for the holder's own apply")
        .expect("renew");
    assert!(renewed, "the holder keeps its lease");
    // The holder stalls past its lease; another process takes the source over, and its
    // take-over waits for the apply in flight.
    expire_lease(&env).await;
    let take_over = {
        let wh = env.wh.clone();
        tokio::spawn(async move { wh.acquire_lease("aic_city", "host-b:2:2", ttl).await })
    };
    let waiting = "select count(*) from pg_stat_activity
                   where datname = current_database() and wait_event_type = 'Lock'
                     and query like '%from ebis.lease where source = $1 for update%'";
    while env.one::<i64>(waiting).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the take-over never waited for the apply in flight"
        );
        assert!(!take_over.is_finished(), "the take-over did not wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_half.send(Some(true)).expect("the apply waits");
    in_flight
        .await
        .expect("join")
        .expect("the apply in flight commits: it held the lease when it began");
    let b = take_over
        .await
        .expect("join")
        .expect("acquire")
        .expect("expired: the other process takes it once the apply committed");
    assert_eq!(b.epoch, a.epoch + 1);
    let err = env
        .wh
        .apply(meta, "seq 2", &batch)
        .await
        .expect_err("the old holder's next apply is refused");
    assert!(
        matches!(err, ebis::warehouse::WarehouseError::LeaseLost(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_keeps_its_lease_while_every_pooled_connection_is_busy() {
    // The capture bench lost its lease this way: a catch-up's base drain, the bench's own
    // queries and the source's applies held the whole pool for longer than the lease
    // lasts, and the renewals waited for a connection until the lease had run out.
    let ttl = Duration::from_secs(2);
    let (env, a) = leased_by_a(ttl).await;
    let keeper = env.wh.keep_lease(a.clone(), ttl);
    let mut busy = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), env.wh.client()).await {
        busy.push(c);
    }
    assert!(!busy.is_empty(), "the pool gave out connections");
    // Three times the lease's length with no pooled connection free.
    tokio::time::sleep(ttl * 3).await;
    assert!(keeper.is_held(), "the holder still holds its lease");
    let (holder, epoch, left) = lease_row(&env).await;
    assert_eq!((holder.as_str(), epoch), ("host-a:1:1", a.epoch));
    assert!(left > 0.0, "the lease is unexpired ({left:.1} s left)");
    drop(busy);
    // Dropped, the keeper renews no more: the lease runs out.
    drop(keeper);
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    assert!(
        !env.wh.renew_lease(&a, ttl).await.expect("renew"),
        "a dropped keeper leaves the lease to expire"
    );
}

/// The AIC source leased by A, its lease kept through a proxy the test cuts or silences;
/// renewed through it once already.
async fn kept_through_a_proxy(
    ttl: Duration,
) -> (
    Env,
    ebis::warehouse::Lease,
    crate::support::proxy::Proxy,
    ebis::warehouse::LeaseKeeper,
) {
    let (env, a) = leased_by_a(ttl).await;
    let proxy = crate::support::proxy::Proxy::start(crate::faults::addr_of(&env.pg.url)).await;
    let mut through = env.config().warehouse.expect("warehouse");
    through.url = crate::faults::reroute(&env.pg.url, proxy.addr);
    let wh = ebis::warehouse::Warehouse::new(&through, 1).expect("warehouse");
    let keeper = wh.keep_lease(a.clone(), ttl);
    tokio::time::sleep(ttl / 2).await;
    assert_eq!(keeper.failed_renewals(), 0, "renewed through the proxy");
    (env, a, proxy, keeper)
}

/// The warehouse out of reach for less than the lease lasts: the renewals that failed are
/// counted (and `/metrics` shows them), a new connection renews once it is back, and the
/// holder never lost the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_that_fail_while_the_warehouse_is_away_are_counted_and_the_lease_survives_a_short_cut()
 {
    let ttl = Duration::from_secs(4);
    let (env, a, proxy, keeper) = kept_through_a_proxy(ttl).await;
    assert!(
        proxy.cut(Duration::from_millis(1800)) > 0,
        "the keeper's connection was cut"
    );
    tokio::time::sleep(ttl).await;
    let failed = keeper.failed_renewals();
    assert!(failed >= 1, "the renewals during the cut failed: {failed}");
    assert!(
        keeper.is_held(),
        "the lease survived a cut shorter than it lasts"
    );
    let (holder, epoch, left) = lease_row(&env).await;
    assert_eq!((holder.as_str(), epoch), ("host-a:1:1", a.epoch));
    assert!(
        left > ttl.as_secs_f64() / 2.0,
        "renewed since the cut ({left:.1} s left)"
    );
    // No more failures once the warehouse is back.
    tokio::time::sleep(ttl / 2).await;
    assert_eq!(keeper.failed_renewals(), failed);
}

/// The keeper's connection gone silent (packets dropped, nothing closed: a firewall that
/// lost its state) for less than the lease lasts: the hung renewal is given up in time
/// and a new connection renews the lease, so the holder keeps the source. (Waiting for an
/// answer as long as the lease lasts, it lapsed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_hung_on_a_silent_connection_is_given_up_before_the_lease_lapses() {
    let ttl = Duration::from_secs(6);
    let (env, a, proxy, keeper) = kept_through_a_proxy(ttl).await;
    proxy.silence(Duration::from_millis(2500));
    // Past the moment the lease would have lapsed behind the hung renewal.
    tokio::time::sleep(ttl + Duration::from_secs(3)).await;
    assert!(
        keeper.failed_renewals() >= 1,
        "the hung renewal was given up"
    );
    assert!(keeper.is_held(), "the holder kept its lease");
    let (holder, epoch, left) = lease_row(&env).await;
    assert_eq!((holder.as_str(), epoch), ("host-a:1:1", a.epoch));
    assert!(left > 0.0, "the lease is unexpired ({left:.1} s left)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_seconds_of_kill_9_of_the_holder_under_load() {
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(15);
    for id in 0..200 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let mut first = env.spawn_run(Stdio::null());
    env.wait_count(LIVE, 200, Duration::from_secs(60)).await;
    let mut second = env.spawn_run(Stdio::null());
    // Writers keep the bureau busy throughout.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = aic.url.clone();
        let conn = aic.conn.clone();
        tokio::spawn(async move {
            let pool = crate::support::mysql::pool(&ebis::config::ConnectionConfig { url, ..conn });
            let mut c = pool.get_conn().await.expect("conn");
            let mut rng = Rng::new(16);
            let mut id = 1000;
            while !stop.load(Ordering::Relaxed) {
                use mysql_async::prelude::Queryable;
                c.query_drop(aic_insert(id, &mut rng))
                    .await
                    .expect("insert");
                c.query_drop(format!(
                    "UPDATE E_BASEINFO SET DOM = CONCAT(DOM, '号') WHERE PRIPID = {}",
                    id % 200
                ))
                .await
                .expect("update");
                id += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            id - 1000
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let holder: String = env
        .one("select holder from ebis.lease where source = 'aic_city' and expires_at > clock_timestamp()")
        .await;
    let pid = |c: &std::process::Child| format!(":{}:", c.id());
    let (holder_child, standby_pid) = if holder.contains(&pid(&first)) {
        (&mut first, second.id())
    } else {
        assert!(holder.contains(&pid(&second)), "{holder}");
        (&mut second, first.id())
    };
    let epoch: i64 = env
        .one("select epoch from ebis.lease where source = 'aic_city'")
        .await;
    holder_child.kill().expect("kill -9");
    let killed = std::time::Instant::now();
    let _ = holder_child.wait();
    // The standby takes the source over and applies again.
    let taken = loop {
        let row = env
            .pg()
            .await
            .query_opt(
                "select holder from ebis.lease where source = 'aic_city' and epoch > $1
                   and expires_at > clock_timestamp()",
                &[&epoch],
            )
            .await
            .expect("lease");
        if let Some(r) = row {
            let h: String = r.get(0);
            assert!(h.contains(&format!(":{standby_pid}:")), "{h}");
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no take-over 20 s after the holder was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "take-over after kill -9 of the holder: {:.1} s",
        taken.as_secs_f64()
    );
    assert!(
        taken < Duration::from_secs(10),
        "the standby took over after {taken:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert!(written > 50, "the writers kept going: {written}");
    env.wait_verified(Duration::from_secs(60)).await;
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming");
    let shown = ebis::status::render(&status, ebis::zone::Zone::Local);
    assert!(
        shown.contains(&format!(":{standby_pid}:")) && shown.contains("aic_city: captured by "),
        "status shows who holds the source:\n{shown}"
    );
    let _ = first.kill();
    let _ = second.kill();
    let _ = first.wait();
    let _ = second.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_the_warehouse_is_replaced_and_writes_nothing_when_it_returns() {
    use crate::support::proxy::Proxy;
    use std::process::Stdio;
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    // Process A reaches the warehouse through a proxy the test cuts; B directly.
    let proxy = Proxy::start(crate::faults::addr_of(&env.pg.url)).await;
    let direct = std::fs::read_to_string(env.config_path()).expect("config");
    let through = direct.replace(
        &format!("url: {}", env.pg.url),
        &format!("url: {}", crate::faults::reroute(&env.pg.url, proxy.addr)),
    );
    assert_ne!(direct, through);
    let config_a = env.config_path().with_file_name("a.yaml");
    std::fs::write(&config_a, &through).expect("config");
    let spawn = |config: &std::path::Path| {
        ebis(&root())
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ebis run")
    };
    let mut rng = Rng::new(18);
    for id in 0..50 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let mut a = spawn(&config_a);
    env.wait_count(LIVE, 50, Duration::from_secs(60)).await;
    let mut b = spawn(&env.config_path());
    let holder = || async {
        env.pg()
            .await
            .query_opt(
                "select holder from ebis.lease where source = 'aic_city' and expires_at > clock_timestamp()",
                &[],
            )
            .await
            .expect("lease")
            .map(|r| r.get::<_, String>(0))
    };
    let of = |c: &std::process::Child| format!(":{}:", c.id());
    assert!(
        holder().await.is_some_and(|h| h.contains(&of(&a))),
        "A holds the source"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A loses the warehouse for 15 s; the bureau goes on writing.
    assert!(proxy.cut(Duration::from_secs(15)) > 0);
    let cut = std::time::Instant::now();
    let taken = loop {
        aic.exec(&aic_insert(
            100 + cut.elapsed().as_millis() as u64 % 100_000,
            &mut rng,
        ))
        .await;
        if holder().await.is_some_and(|h| h.contains(&of(&b))) {
            break cut.elapsed();
        }
        assert!(cut.elapsed() < Duration::from_secs(20), "B never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "take-over after the holder lost the warehouse: {:.1} s",
        taken.as_secs_f64()
    );
    assert!(taken < Duration::from_secs(10), "took {taken:?}");
    // A comes back after its lease went to B: it writes nothing and stands by.
    tokio::time::sleep(Duration::from_secs(16).saturating_sub(cut.elapsed())).await;
    for id in 200_000..200_020 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        holder().await.is_some_and(|h| h.contains(&of(&b))),
        "B keeps the source"
    );
    env.wait_verified(Duration::from_secs(60)).await;
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming", "{:?}", status[0]);
    assert!(
        status[0]
            .held_by
            .as_deref()
            .is_some_and(|h| h.contains(&of(&b))),
        "{:?}",
        status[0]
    );
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_as_a_login_role_granted_only_ebis_pipeline() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let role = crate::support::unique_name("ebis_run");
    let admin = crate::support::pg::connect(&crate::support::pg::admin()).await;
    admin
        .batch_execute(&format!(
            "create role {role} login; grant ebis_pipeline to {role}; grant connect on database {} to {role}",
            env.pg.name
        ))
        .await
        .expect("role");
    struct DropRole(String, String);
    impl Drop for DropRole {
        fn drop(&mut self) {
            let (role, db) = (self.0.clone(), self.1.clone());
            crate::support::cleanup(move || async move {
                let c =
                    crate::support::pg::connect(&crate::support::pg::admin().with_database(&db))
                        .await;
                let _ = c
                    .batch_execute(&format!("drop owned by {role}; drop role if exists {role}"))
                    .await;
            });
        }
    }
    let _guard = DropRole(role.clone(), env.pg.name.clone());
    let (scheme, rest) = env.pg.url.split_once("://").expect("url");
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    let as_role = ebis::config::ConnectionConfig {
        url: format!("{scheme}://{role}@{host}"),
        ..env.pg.conn.clone()
    };
    let wh = ebis::warehouse::Warehouse::new(&as_role, 4).expect("warehouse");
    let mut rng = Rng::new(19);
    for id in 0..20 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let config = env.config();
    let (trigger, shutdown) = ebis::pipeline::Shutdown::new();
    let run =
        tokio::spawn(async move { ebis::pipeline::run_sources(&config, &wh, shutdown).await });
    env.wait_count(LIVE, 20, Duration::from_secs(60)).await;
    let holder: Option<String> = env
        .one("select holder from ebis.lease where source = 'aic_city'")
        .await;
    assert!(holder.is_some(), "the role took the source's lease");
    trigger.trigger();
    let failed = run.await.expect("task").expect("pipeline");
    assert!(failed.is_empty(), "{failed:?}");
}
