//! Faults: `kill -9` of a running `ebis run`, and a source or the warehouse unreachable
//! for a few seconds. The pipeline recovers by itself; nothing is lost or doubled.

use crate::support::harness::{AIC_CHANGELOG, Env, LTAX_TIMESTAMP, Rng, aic_insert};
use crate::support::proxy::Proxy;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub(crate) fn addr_of(url: &str) -> SocketAddr {
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("url");
    let host_port = authority.rsplit('@').next().expect("host");
    host_port.parse().expect("host:port")
}

pub(crate) fn reroute(url: &str, to: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("url");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{to}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ebis_run_mid_stream_then_restart_loses_and_doubles_nothing() {
    let env = Env::new(&[&AIC_CHANGELOG, &LTAX_TIMESTAMP]).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(99);
    let spawn = || env.spawn_run(Stdio::null());
    let mut child = spawn();
    for round in 0..3u64 {
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut i = 0;
        while Instant::now() < deadline {
            let id = round * 10_000 + i;
            aic.exec(&aic_insert(id, &mut rng)).await;
            aic.exec(&format!(
                "UPDATE E_BASEINFO SET ENTNAME = CONCAT(ENTNAME, '分公司') WHERE PRIPID = {}",
                id / 3
            ))
            .await;
            i += 1;
        }
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        child = spawn();
    }
    // Catch up and compare everything, then stop the child politely.
    env.wait_verified(Duration::from_secs(60)).await;
    let status = env.wh.status().await.expect("status");
    assert!(
        status
            .iter()
            .all(|s| s.last_error.is_none() || s.state == "streaming"),
        "{status:?}"
    );
    child.kill().expect("kill");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_unreachable_for_seconds_is_retried_until_it_returns() {
    let proxy = Proxy::start(addr_of(&crate::support::mysql::base_url())).await;
    let to = proxy.addr;
    let env = Env::with_urls(&[&AIC_CHANGELOG], move |_, url| reroute(url, to), None).await;
    let aic = env.db("aic_city");
    let mut rng = Rng::new(5);
    let run = env.start();
    for id in 0..50 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        50,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        proxy.cut(Duration::from_secs(4)) > 0,
        "the pipeline's source connections were cut"
    );
    for id in 50..150 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    // While cut off, the source shows as retrying with its error.
    let c = env.pg().await;
    let start = Instant::now();
    loop {
        let row = c
            .query_one(
                "select state, last_error from ebis.source_status where source = 'aic_city'",
                &[],
            )
            .await
            .expect("status");
        let (state, error): (String, Option<String>) = (row.get(0), row.get(1));
        if state == "retrying" {
            assert!(error.is_some_and(|e| e.contains("unreachable") || e.contains("source")));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never saw the source retrying"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.wait_verified(Duration::from_secs(60)).await;
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming");
    assert_eq!(
        status[0].last_error, None,
        "the error clears once recovered"
    );
    // … and stays visible as cleared, for the operator who arrives afterwards.
    let cleared = status[0].cleared_error.clone().unwrap_or_default();
    assert!(
        cleared.contains("unreachable") || cleared.contains("source"),
        "{:?}",
        status[0]
    );
    assert!(status[0].error_cleared_at >= status[0].cleared_error_at);
    let shown = ebis::status::render(&status, ebis::zone::Zone::Local);
    assert!(shown.contains("aic_city: cleared at "), "{shown}");
    assert!(run.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_unreachable_for_seconds_is_retried_until_it_returns() {
    let pg_base = crate::support::pg::base_url();
    let proxy = Proxy::start(addr_of(&pg_base)).await;
    let env = Env::new(&[&LTAX_TIMESTAMP]).await;
    // The pipeline reaches the warehouse only through the proxy; the test checks directly.
    let proxied = ebis::warehouse::Warehouse::new(
        &ebis::config::ConnectionConfig {
            url: reroute(&env.pg.url, proxy.addr),
            password_env: env.pg.conn.password_env.clone(),
            password_file: None,
            tls: Default::default(),
        },
        4,
    )
    .expect("warehouse");
    let config = env.config();
    let (trigger, shutdown) = ebis::pipeline::Shutdown::new();
    let task =
        tokio::spawn(async move { ebis::pipeline::run_sources(&config, &proxied, shutdown).await });
    let ltax = env.db("ltax_hbw");
    let mut rng = Rng::new(11);
    for id in 0..100u64 {
        let name = crate::support::harness::company_name(&mut rng);
        ltax.exec(&format!(
            "INSERT INTO WF_WZJYHU (WZXH, QYMC, JYDZ, FXRQ) VALUES ({id}, {}, NULL, '20061010')",
            crate::support::mysql::gbk(&name)
        ))
        .await;
        if id == 30 {
            assert!(
                proxy.cut(Duration::from_secs(4)) > 0,
                "the pipeline's warehouse connections were cut"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.wait_verified(Duration::from_secs(60)).await;
    trigger.trigger();
    let failed = task.await.expect("task").expect("pipeline");
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_column_dropped_at_the_source_stops_only_that_source() {
    let env = Env::new(&[&AIC_CHANGELOG, &LTAX_TIMESTAMP]).await;
    let run = env.start();
    let aic = env.db("aic_city");
    let mut rng = Rng::new(1);
    aic.exec(&aic_insert(1, &mut rng)).await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        1,
        Duration::from_secs(30),
    )
    .await;
    aic.exec("ALTER TABLE E_BASEINFO DROP COLUMN POSTALCODE")
        .await;
    aic.exec(&aic_insert(2, &mut rng)).await;
    env.wait_count(
        "select count(*) from ebis.source_status where source = 'aic_city' and state = 'failed'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let c = env.pg().await;
    let error: String = c
        .query_one(
            "select last_error from ebis.source_status where source = 'aic_city'",
            &[],
        )
        .await
        .expect("status")
        .get(0);
    assert!(
        error.contains("E_BASEINFO") && error.contains("POSTALCODE"),
        "{error}"
    );
    // The other source keeps going.
    let ltax = env.db("ltax_hbw");
    ltax.exec(&format!(
        "INSERT INTO WF_WZJYHU (WZXH, QYMC) VALUES (1, {})",
        crate::support::mysql::gbk("乌海市无照经营户")
    ))
    .await;
    env.wait_count(
        "select count(*) from exchange.tax_unlicensed",
        1,
        Duration::from_secs(30),
    )
    .await;
    let failed = run.stop().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "aic_city");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_ebis_run_cleanly() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let mut child = env.spawn_run(Stdio::piped());
    env.wait_count(
        "select count(*) from ebis.source_status where state = 'streaming'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit {status:?}");
    env.wait_count(
        "select count(*) from ebis.source_status where state = 'stopped'",
        1,
        Duration::from_secs(5),
    )
    .await;
}

/// A value of one series on a metrics page (`name{labels}` exactly as written).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// GETs `path` from the metrics endpoint: the status line and the whole response.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    // Sent in two pieces, as a slow client or a proxy may.
    write!(s, "GET {path} HTTP/1.1\r\n").expect("send");
    s.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(20));
    write!(s, "host: x\r\nconnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_in_every_state_and_pass_promtool() {
    // The child reaches the source and the warehouse through proxies the test can cut.
    let source_proxy = Proxy::start(addr_of(&crate::support::mysql::base_url())).await;
    let to = source_proxy.addr;
    let env = Env::with_urls(&[&AIC_CHANGELOG], move |_, url| reroute(url, to), None).await;
    let wh_proxy = Proxy::start(addr_of(&env.pg.url)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let config = std::fs::read_to_string(env.config_path())
        .expect("config")
        .replace(
            &format!("url: {}", env.pg.url),
            &format!("url: {}", reroute(&env.pg.url, wh_proxy.addr)),
        );
    std::fs::write(
        env.config_path(),
        format!("{config}metrics:\n  listen: 127.0.0.1:{port}\n"),
    )
    .expect("config");
    let aic = env.db("aic_city");
    let mut rng = Rng::new(3);
    aic.exec(&aic_insert(1, &mut rng)).await;
    let mut child = env.spawn_run(Stdio::null());
    env.wait_count(
        "select count(*) from ebis.source_status where state = 'streaming'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let page = |want: &dyn Fn(&str) -> bool, what: &str| -> String {
        let start = Instant::now();
        loop {
            let got = http_get(port, "/metrics");
            if want(&got) {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never saw {what}:\n{got}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let src = |name: &str| format!("{name}{{source=\"aic_city\"}}");
    let state = |s: &str| format!("ebis_source_state{{source=\"aic_city\",state=\"{s}\"}}");

    // Streaming.
    let streaming = page(
        &|p| sample(p, &state("streaming")) == Some(1.0),
        "the source streaming",
    );
    assert!(streaming.starts_with("HTTP/1.1 200"), "{streaming}");
    for series in [
        src("ebis_rows_applied_total"),
        src("ebis_replication_lag_seconds"),
        src("ebis_last_poll_timestamp_seconds"),
        src("ebis_change_rows_purged_total"),
        "ebis_warehouse_up".to_owned(),
        "ebis_base_queued_statements".to_owned(),
        "process_resident_memory_bytes".to_owned(),
        "process_cpu_seconds_total".to_owned(),
    ] {
        assert!(
            sample(&streaming, &series).is_some(),
            "{series} in:\n{streaming}"
        );
    }
    assert_eq!(sample(&streaming, &src("ebis_up")), Some(1.0));
    assert_eq!(sample(&streaming, &state("failed")), Some(0.0));
    assert_eq!(sample(&streaming, "ebis_warehouse_up"), Some(1.0));
    assert!(
        streaming.contains(&format!(
            "ebis_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{streaming}"
    );
    assert_eq!(
        sample(
            &streaming,
            "ebis_findings_open{rule=\"registered_not_tax_registered\"}"
        ),
        Some(0.0),
        "{streaming}"
    );
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(port, "/readyz").starts_with("HTTP/1.1 200"));
    assert!(http_get(port, "/nope").starts_with("HTTP/1.1 404"));
    // promtool accepts a live page.
    let body = streaming
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .expect("body");
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/services.sh installs it)");
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write");
    }
    let checked = check.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The source unreachable: retrying, not up, its errors counted, its lag still there.
    let cut = source_proxy.cut(Duration::from_secs(8));
    assert!(cut > 0, "the child's source connections were cut");
    aic.exec(&aic_insert(2, &mut rng)).await;
    let retrying = page(
        &|p| sample(p, &state("retrying")) == Some(1.0),
        "the source retrying",
    );
    assert_eq!(sample(&retrying, &src("ebis_up")), Some(0.0), "{retrying}");
    assert!(
        sample(&retrying, &src("ebis_replication_lag_seconds")).is_some(),
        "{retrying}"
    );
    assert!(
        retrying
            .lines()
            .any(|l| l.starts_with("ebis_source_errors_total{source=\"aic_city\",kind=\"source_")),
        "{retrying}"
    );
    assert!(
        sample(&retrying, &src("ebis_source_retries_total")).is_some_and(|n| n >= 1.0),
        "{retrying}"
    );
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        2,
        Duration::from_secs(60),
    )
    .await;

    // The warehouse unreachable: the page still answers, says so, and the lag grows.
    let before = page(
        &|p| sample(p, &state("streaming")) == Some(1.0),
        "the source streaming again",
    );
    let lag_before = sample(&before, &src("ebis_replication_lag_seconds")).expect("lag");
    wh_proxy.cut(Duration::from_secs(12));
    std::thread::sleep(Duration::from_secs(3));
    let away = page(
        &|p| sample(p, "ebis_warehouse_up") == Some(0.0),
        "the warehouse reported unreachable",
    );
    assert!(away.starts_with("HTTP/1.1 200"), "{away}");
    let lag_away = sample(&away, &src("ebis_replication_lag_seconds")).expect("lag");
    assert!(
        lag_away >= lag_before + 2.0,
        "the lag keeps growing while nothing can be applied: {lag_before} then {lag_away}"
    );
    assert!(http_get(port, "/readyz").starts_with("HTTP/1.1 503"));
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    // The source's lease could not be renewed meanwhile: counted by this process.
    let failed_renewals = page(
        &|p| sample(p, &src("ebis_lease_renewals_failed_total")).is_some_and(|n| n >= 1.0),
        "failed lease renewals counted",
    );
    assert!(
        failed_renewals.starts_with("HTTP/1.1 200"),
        "{failed_renewals}"
    );
    child.kill().expect("kill");
    let _ = child.wait();
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let rules = crate::support::root().join("deploy/prometheus/ebis-alerts.yml");
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (scripts/services.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Every alert links its runbook entry, and the entry exists.
    let yaml = std::fs::read_to_string(&rules).expect("rules");
    let manual = std::fs::read_to_string(crate::support::root().join("docs/operations.md"))
        .expect("docs/operations.md");
    let alerts: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for line in yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: "))
    {
        let anchor = line
            .trim_matches('"')
            .strip_prefix("docs/operations.md#")
            .expect("a runbook in docs/operations.md");
        assert!(
            manual
                .lines()
                .any(|l| l.starts_with('#') && l.to_lowercase().replace(['#', ' '], "") == anchor),
            "no heading for #{anchor} in docs/operations.md"
        );
    }
    assert_eq!(
        yaml.matches("runbook: ").count(),
        alerts.len(),
        "every alert has a runbook"
    );
}
