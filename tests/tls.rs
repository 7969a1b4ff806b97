//! TLS to the warehouse and to MySQL sources (`connection.tls`, in libpq's sslmode
//! terms) against the test servers, which `scripts/services.sh` runs with a certificate
//! for `localhost` signed by a test CA: each mode, a refused CA, a name mismatch, and the
//! whole pipeline encrypted.

use crate::support::TempDir;
use crate::support::harness::{AIC_CHANGELOG, Env, Rng, aic_insert};
use ebis::config::ConnectionConfig;
use ebis::warehouse::Warehouse;
use ebis_source::tls::{Tls, TlsMode};
use std::path::PathBuf;
use std::time::Duration;

/// The test CA that signed the servers' certificate.
fn test_ca() -> PathBuf {
    std::env::var_os("EBIS_TEST_TLS_CA")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/lib/ebis-test-tls/ca.pem".into())
}

/// A CA that signed nothing the servers hold.
fn other_ca(dir: &TempDir) -> PathBuf {
    let ca = dir.path().join("other-ca.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the test CA"])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    ca
}

fn tls(mode: TlsMode, ca: Option<PathBuf>) -> Tls {
    Tls {
        mode,
        ca_file: ca,
        ..Tls::default()
    }
}

/// `url` with its host replaced: `localhost` (the name in the certificate) reached at
/// 127.0.0.1, or the bare address.
fn on_host(url: &str, by_name: bool) -> String {
    let url = url.replace("@127.0.0.1:", "@localhost:");
    if !by_name {
        return url.replace("@localhost:", "@127.0.0.1:");
    }
    if url.starts_with("postgres") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}hostaddr=127.0.0.1")
    } else {
        url
    }
}

/// Whether the warehouse connection is encrypted, or the error connecting.
async fn warehouse_ssl(base: &ConnectionConfig, url: String, tls: Tls) -> Result<bool, String> {
    let conn = ConnectionConfig {
        url,
        tls,
        ..base.clone()
    };
    let wh = Warehouse::new(&conn, 1).map_err(|e| e.to_string())?;
    let client = wh.client().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_checks_the_servers_certificate_in_each_mode() {
    let pg = crate::support::pg::PgDb::create().await;
    let dir = TempDir::new("ebis_tls");
    let ca = test_ca();
    let by_name = on_host(&pg.url, true);
    let by_address = on_host(&pg.url, false);
    let ssl = |url: &String, t: Tls| warehouse_ssl(&pg.conn, url.clone(), t);
    assert_eq!(
        ssl(&by_address, Tls::default()).await,
        Ok(false),
        "disable: plain"
    );
    assert_eq!(
        ssl(&by_address, tls(TlsMode::Require, None)).await,
        Ok(true)
    );
    assert_eq!(
        ssl(&by_address, tls(TlsMode::VerifyCa, Some(ca.clone()))).await,
        Ok(true),
        "verify-ca: the chain, whatever the name"
    );
    assert_eq!(
        ssl(&by_name, tls(TlsMode::VerifyFull, Some(ca.clone()))).await,
        Ok(true),
        "verify-full: chain and name"
    );
    let mismatch = ssl(&by_address, tls(TlsMode::VerifyFull, Some(ca.clone())))
        .await
        .expect_err("127.0.0.1 is not the name in the certificate");
    assert!(
        mismatch.contains("does not name the host in the URL"),
        "{mismatch}"
    );
    let refused = ssl(&by_name, tls(TlsMode::VerifyFull, Some(other_ca(&dir))))
        .await
        .expect_err("a CA that did not sign it");
    assert!(
        refused.contains("not signed by the CA in tls.ca_file"),
        "{refused}"
    );
    // TLS asked for in the URL alone is refused, not silently dropped.
    let downgrade = ssl(&format!("{by_address}?sslmode=require"), Tls::default())
        .await
        .expect_err("sslmode in the URL");
    assert!(
        downgrade.contains("write `tls: {mode: require}`"),
        "{downgrade}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_source_is_read_over_tls_and_a_wrong_ca_is_refused() {
    use mysql_async::prelude::Queryable;
    let my = crate::support::mysql::MyDb::create(&[]).await;
    let dir = TempDir::new("ebis_tls");
    let password = my.conn.password().expect("password");
    let pw = password.as_ref().map(|p| p.expose());
    let cipher = |url: String, t: Tls| async move {
        let pool = ebis_mysql::pool(&url, pw, &t, 1).map_err(|e| e.to_string())?;
        let mut c = pool.get_conn().await.map_err(|e| e.to_string())?;
        let row: Option<(String, String)> = c
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .await
            .map_err(|e| e.to_string())?;
        drop(c);
        let _ = pool.disconnect().await;
        Ok::<String, String>(row.map(|r| r.1).unwrap_or_default())
    };
    let by_name = on_host(&my.url, true);
    let by_address = on_host(&my.url, false);
    assert_eq!(
        cipher(by_address.clone(), Tls::default()).await,
        Ok(String::new())
    );
    let full = cipher(by_name.clone(), tls(TlsMode::VerifyFull, Some(test_ca())))
        .await
        .expect("verify-full");
    assert!(full.starts_with("TLS_") || full.contains("AES"), "{full}");
    assert!(
        !cipher(by_address.clone(), tls(TlsMode::Require, None))
            .await
            .expect("require")
            .is_empty()
    );
    let refused = cipher(by_name, tls(TlsMode::VerifyFull, Some(other_ca(&dir))))
        .await
        .expect_err("a CA that did not sign it");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_over_verified_tls() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    // Both connections by the certificate's name, checked against the test CA.
    let ca = test_ca();
    let block = format!(
        "tls:\n        mode: verify-full\n        ca_file: '{}'",
        ca.display()
    );
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let mut out = Vec::new();
    for line in config.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(url) = trimmed.strip_prefix("url: ") {
            // The pipeline's warehouse connections carry a name of their own (the test's
            // own, plain, are `ebis`).
            let url = if url.starts_with("postgres") {
                format!("{}&application_name=ebis_tls", on_host(url, true))
            } else {
                on_host(url, true)
            };
            out.push(format!("{indent}url: {url}"));
            out.push(format!(
                "{indent}{}",
                block.replace("\n        ", &format!("\n{indent}  "))
            ));
        } else {
            out.push(line.to_owned());
        }
    }
    std::fs::write(env.config_path(), out.join("\n") + "\n").expect("config");
    let cfg = env.config();
    assert_eq!(cfg.sources[0].connection.tls.mode, TlsMode::VerifyFull);
    let wh_conn = cfg.warehouse.clone().expect("warehouse");
    assert_eq!(wh_conn.tls.mode, TlsMode::VerifyFull);
    let wh = Warehouse::new(&wh_conn, 4).expect("warehouse");
    let mut rng = Rng::new(17);
    for id in 0..30 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let (trigger, shutdown) = ebis::pipeline::Shutdown::new();
    let run = {
        let (cfg, wh) = (cfg.clone(), wh.clone());
        tokio::spawn(async move { ebis::pipeline::run_sources(&cfg, &wh, shutdown).await })
    };
    for id in 30..40 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    env.wait_verified(Duration::from_secs(60)).await;
    // Every connection ebis holds to the warehouse is encrypted.
    let plain: i64 = env
        .one(
            "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid)
             where a.application_name = 'ebis_tls' and a.datname = current_database() and not s.ssl",
        )
        .await;
    let encrypted: i64 = env
        .one(
            "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid)
             where a.application_name = 'ebis_tls' and a.datname = current_database() and s.ssl",
        )
        .await;
    assert_eq!(plain, 0);
    assert!(encrypted >= 1);
    trigger.trigger();
    let failed = run.await.expect("task").expect("pipeline");
    assert!(failed.is_empty(), "{failed:?}");
}
